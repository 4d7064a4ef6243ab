"""``/v1/models``: the registry of every trained model (segment runs, recommenders, scores)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from jingzhun.api.deps import State, require
from jingzhun.api.schemas import ModelOut, Page, decode_cursor, encode_cursor

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[require("read")])


@router.get("", response_model=Page[ModelOut], summary="Trained models, newest first")
def list_models(
    state: State,
    kind: Annotated[
        str | None,
        Query(max_length=64, description="Only this kind (segment, recommender, propensity …)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Models per page.")] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> Page[ModelOut]:
    # A kind that is not one is the registry's InputError: a 422 naming kind and the kinds.
    records = state.readers.get().models.list(kind)  # created_at, then model_id, descending
    if cursor is not None:
        at, model_id = decode_cursor(cursor, "models", (datetime, str))
        records = [r for r in records if (r.created_at, r.model_id) < (at, model_id)]
    page = records[:limit]
    last = page[-1] if len(records) > limit else None
    return Page[ModelOut](
        items=[r.to_dict(full=False) for r in page],
        next_cursor=None
        if last is None
        else encode_cursor("models", last.created_at, last.model_id),
    )
