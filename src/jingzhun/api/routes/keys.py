"""``/v1/keys``: API keys, managed by admin keys (as ``jingzhun apikey`` does on the CLI)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from jingzhun.api.deps import State, require
from jingzhun.api.schemas import ResponseModel
from jingzhun.store import apikeys

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[require("admin")])


class KeyIn(BaseModel):
    name: str = Field(description="1-64 letters, digits, - _ or .; unique among active keys")
    scope: Literal["ingest", "read", "admin"]


class KeyOut(ResponseModel):
    key_id: str
    name: str
    scope: str
    active: bool
    created_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class NewKey(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only as its hash.")


class KeyList(ResponseModel):
    items: list[KeyOut]


@router.get("", response_model=KeyList, summary="Every key (never the keys themselves)")
def list_keys(state: State) -> KeyList:
    keys = apikeys.list_keys(state.readers.get().store)
    return KeyList(items=[KeyOut(**k.to_dict()) for k in keys])


@router.post("", response_model=NewKey, status_code=status.HTTP_201_CREATED, summary="Create a key")
async def create(body: KeyIn, state: State) -> NewKey:
    record, key = await asyncio.wrap_future(
        state.run_write(lambda ws: apikeys.create(ws.store, body.name, body.scope))
    )
    return NewKey(**record.to_dict(), key=key)


@router.delete("/{name}", response_model=KeyOut, summary="Revoke a key (at once, on this server)")
async def revoke(name: str, state: State) -> KeyOut:
    record = await asyncio.wrap_future(state.run_write(lambda ws: apikeys.revoke(ws.store, name)))
    state.keys.forget()
    return KeyOut(**record.to_dict())
