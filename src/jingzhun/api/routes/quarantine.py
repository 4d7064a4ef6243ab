"""``/v1/quarantine``: the rows ingest kept out (tracking, files, POST /v1/users …), why, and
where they came from; oldest first."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query

from jingzhun.api.deps import State, require
from jingzhun.api.schemas import QuarantinePage, decode_cursor, encode_cursor
from jingzhun.ingest.quarantine import Selection

router = APIRouter(prefix="/v1/quarantine", tags=["quarantine"], dependencies=[require("read")])


@router.get("", response_model=QuarantinePage, summary="Quarantined rows with their reasons")
def list_rows(
    state: State,
    batch: Annotated[str | None, Query(max_length=256, description="Only this batch.")] = None,
    reason: Annotated[
        str | None, Query(max_length=256, description="Only reasons holding this text.")
    ] = None,
    resolved: Annotated[bool, Query(description="Also rows replayed or discarded.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000, description="Rows per page.")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> QuarantinePage:
    after = None if cursor is None else decode_cursor(cursor, "quarantine", (int,))[0]
    selection = Selection(batch_id=batch or None, reason=reason or None, include_resolved=resolved)
    q = state.readers.get().ingest.quarantine
    # An unknown batch is the core's NotFoundError: a 404 naming it.
    frame = q.page(selection, limit=limit + 1, after=after)
    more = len(frame) > limit
    frame = frame.head(limit)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for row in rows:  # the raw row is JSON text
        if isinstance(row["raw"], str):
            row["raw"] = json.loads(row["raw"])
    return QuarantinePage(
        items=rows,
        next_cursor=encode_cursor("quarantine", int(rows[-1]["quarantine_id"])) if more else None,
        reasons=q.reasons(selection).to_dict("records"),
    )
