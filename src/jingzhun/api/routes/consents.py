"""``/v1/users/{user_id}/consents``: a user's consents in force, and a statement recorded.

The shop's backend (a preference centre, a sign-up form) states consent here; a website that
already sends Segment calls can instead track ``Consent Updated`` with ``properties.purpose``,
``status`` and ``channel``. Both land in the same history (:mod:`jingzhun.ingest.consent`),
which every later audience and delivery asks.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from jingzhun.api.deps import State, require
from jingzhun.api.schemas import ConsentOut, ResponseModel, UtcTimestampIn
from jingzhun.contracts.results import json_ready
from jingzhun.ingest.consent import CHANNELS, PURPOSES, STATUSES
from jingzhun.store import apikeys
from jingzhun.workspace import Workspace

router = APIRouter(prefix="/v1/users", tags=["consent"])
UserId = Annotated[str, Path(min_length=1, max_length=256, description="A user id.")]


class ConsentsOut(ResponseModel):
    user_id: str
    consents: list[ConsentOut] = Field(description="In force, per purpose and channel.")
    default_marketing_consent: str = Field(
        description="What marketing is for a user with no statement ([privacy] setting)."
    )


class ConsentIn(BaseModel):
    """One statement: the user granted, denied or revoked a purpose on a channel."""

    model_config = ConfigDict(extra="forbid")

    purpose: Literal[PURPOSES]  # type: ignore[valid-type]
    status: Literal[STATUSES]  # type: ignore[valid-type]
    channel: Literal[CHANNELS] = "any"  # type: ignore[valid-type]
    ts: UtcTimestampIn | None = Field(
        None, description="When the user said it (ISO 8601, UTC if naive); now when absent."
    )


def _answer(ws: Workspace, user_id: str) -> ConsentsOut:
    held = json_ready(ws.privacy.consents(user_id).drop(columns="user_id"))
    return ConsentsOut(
        user_id=user_id,
        consents=[ConsentOut(**r) for r in held],
        default_marketing_consent=ws.settings.privacy.default_marketing_consent,
    )


@router.get(
    "/{user_id}/consents",
    response_model=ConsentsOut,
    summary="A user's consents in force",
    dependencies=[require("read")],
)
def get_consents(user_id: UserId, state: State) -> ConsentsOut:
    return _answer(state.readers.get(), user_id)


@router.post(
    "/{user_id}/consents",
    response_model=ConsentsOut,
    status_code=201,
    summary="Record a consent statement (audited); answers the consents now in force",
)
async def post_consent(
    user_id: UserId,
    body: ConsentIn,
    state: State,
    key: Annotated[apikeys.ApiKey, require("ingest")],
) -> ConsentsOut:
    actor = f"api:{key.name}"

    def write(ws: Workspace) -> ConsentsOut:
        ws.privacy.set_consent(
            user_id,
            body.purpose,
            body.status,
            channel=body.channel,
            ts=body.ts,  # naive UTC
            source=actor,
            actor=actor,
        )
        return _answer(ws, user_id)

    return await asyncio.wrap_future(state.run_write(write))
