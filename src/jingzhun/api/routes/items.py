"""``/v1/items``: items like an item (the model's item neighbours); items sent in batches."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query

from jingzhun.api.deps import State, require
from jingzhun.api.routes.users import ingest_records
from jingzhun.api.schemas import IngestAnswer, ItemsIn, SimilarOut

router = APIRouter(prefix="/v1/items", tags=["items"])

ItemId = Annotated[str, Path(min_length=1, max_length=256, description="An item id.")]


@router.get(
    "/{item_id}/similar",
    response_model=SimilarOut,
    summary="Items like this one, by the active model's item neighbours",
    dependencies=[require("read")],
)
def similar(
    item_id: ItemId,
    state: State,
    k: Annotated[int, Query(ge=1, le=100, description="How many items.")] = 10,
) -> SimilarOut:
    # An item neither the catalog nor the model knows is the core's NotFoundError: a 404
    # naming the id.
    result = state.recs.similar(item_id, k)
    return SimilarOut(**result.to_dict())


@router.post(
    "",
    response_model=IngestAnswer,
    summary="Add or update catalog items (one ingest batch; bad rows go to the quarantine)",
    dependencies=[require("ingest")],
)
async def post_items(body: ItemsIn, state: State) -> IngestAnswer:
    records = [i.model_dump(exclude_unset=True) for i in body.items]
    answer = await ingest_records(state, "items", records)
    if answer.inserted or answer.updated:
        # In this request's thread, not the writer's: tracking batches go on meanwhile.
        await asyncio.to_thread(state.catalog_changed)
    return answer
