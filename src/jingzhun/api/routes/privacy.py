"""``/v1/privacy`` and ``/v1/audit``: a person's data on request, for admin keys only (as
``jingzhun privacy`` and ``jingzhun audit`` do on the CLI). Each request that reads or removes
a person's data writes an audit entry naming the key (``api:<key name>``) and the person by
keyed token."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from jingzhun.api.deps import State, require
from jingzhun.api.schemas import ResponseModel
from jingzhun.contracts.results import plain
from jingzhun.store import apikeys

router = APIRouter(tags=["privacy"])
Admin = Annotated[apikeys.ApiKey, require("admin")]


class Found(ResponseModel):
    users: list[str]


class Erased(ResponseModel):
    subject: str
    erased_at: datetime
    rows: dict[str, int]
    anonymous_ids: int
    models_holding_erased: list[str]


class AuditEntries(ResponseModel):
    items: list[dict[str, Any]]


def _actor(key: apikeys.ApiKey) -> str:
    return f"api:{key.name}"


@router.get(
    "/v1/privacy/find", response_model=Found, summary="Users with this email or phone (blind index)"
)
async def find(
    state: State,
    key: Admin,
    email: Annotated[str | None, Query(max_length=320)] = None,
    phone: Annotated[str | None, Query(max_length=64)] = None,
) -> Found:
    users = await asyncio.wrap_future(
        state.run_write(lambda ws: ws.privacy.find(email=email, phone=phone, actor=_actor(key)))
    )
    return Found(users=users)


@router.get("/v1/privacy/users/{user_id}", summary="All of a user's data, personal data decrypted")
async def export(user_id: str, state: State, key: Admin) -> dict[str, Any]:
    return await asyncio.wrap_future(
        state.run_write(lambda ws: ws.privacy.export(user_id, actor=_actor(key)))
    )


@router.delete("/v1/privacy/users/{user_id}", response_model=Erased, summary="Erase a user")
async def erase(user_id: str, state: State, key: Admin) -> Erased:
    done = await asyncio.wrap_future(
        state.run_write(lambda ws: ws.privacy.erase(user_id, actor=_actor(key)))
    )
    # Nothing of them stays in the server's memory either: live traits, served lists.
    state.live.invalidate()
    state.recs.refresh()
    return Erased(**done.to_dict())


@router.get("/v1/audit", response_model=AuditEntries, summary="The audit log, newest first")
def audit_log(
    state: State,
    key: Admin,
    action: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> AuditEntries:
    frame = state.readers.get().privacy.audit(action=action, limit=limit)
    return AuditEntries(items=plain(frame))
