"""``/v1/segments``: segment runs with their quality and sizes, and one run's portraits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from jingzhun.api.deps import State, require
from jingzhun.api.schemas import (
    Page,
    SegmentRunOut,
    SegmentRunSummary,
    decode_cursor,
    encode_cursor,
)
from jingzhun.workspace import Workspace

router = APIRouter(prefix="/v1/segments", tags=["segments"], dependencies=[require("read")])

Lang = Annotated[Literal["en", "zh"], Query(description="The language of segment names.")]


@router.get(
    "",
    response_model=Page[SegmentRunSummary],
    summary="Segment runs, newest first: method, quality and segment sizes",
)
def list_runs(
    state: State,
    limit: Annotated[int, Query(ge=1, le=100, description="Runs per page.")] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
    lang: Lang = "en",
) -> Page[SegmentRunSummary]:
    ws = state.readers.get()
    # One snapshot for the list and each run's details: a run activated meanwhile must not
    # leave the page without an active run of its name.
    with ws.store.transaction():
        return _runs_page(ws, limit, cursor, lang)


def _runs_page(ws: Workspace, limit: int, cursor: str | None, lang: str) -> Page[SegmentRunSummary]:
    runs = ws.segments.list().to_dict("records")  # newest first: created_at, then id
    if cursor is not None:
        at, run_id = decode_cursor(cursor, "segments", (datetime, str))
        runs = [r for r in runs if (r["created_at"], r["run_id"]) < (at, run_id)]
    page = runs[:limit]
    items = []
    for r in page:
        info = ws.segments.get(r["run_id"], lang=lang)
        items.append(
            SegmentRunSummary(
                run_id=info.run_id,
                name=info.name,
                method=info.method,
                active=info.active,
                users=info.users,
                segments=info.segments,
                silhouette=info.metrics.get("silhouette"),
                stability=info.metrics.get("stability_ari"),
                created_at=info.created_at,
                sizes=[
                    {k: p[k] for k in ("segment", "label", "users", "share")}
                    for p in info.portraits
                ],
            )
        )
    last = page[-1] if len(runs) > limit else None
    return Page[SegmentRunSummary](
        items=items,
        next_cursor=None
        if last is None
        else encode_cursor("segments", last["created_at"], last["run_id"]),
    )


@router.get(
    "/{name}",
    response_model=SegmentRunOut,
    summary="A segment run (by name: its active run; or by run id) with its portraits",
)
def get_run(
    name: Annotated[str, Path(min_length=1, max_length=256, description="Run name or id.")],
    state: State,
    lang: Lang = "en",
) -> SegmentRunOut:
    # An unknown name is the core's NotFoundError: a 404 naming it and the known names.
    return SegmentRunOut(**state.readers.get().segments.get(name, lang=lang).to_dict())
