"""``/v1/users``: one user's 360° view, timeline and recommendations; users sent in batches.

Reads run in the request's thread over its own reader (``state.readers.get()`` inside the
route: a dependency runs in another worker thread, and a reader must stay in its thread).
Writes go through the server's one writer (:meth:`ServerState.run_write`), between tracking
batches, into the same ingest stage that reads files.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from jingzhun.api.deps import State, require
from jingzhun.api.problems import Problem
from jingzhun.api.schemas import (
    EventOut,
    IngestAnswer,
    Page,
    RecommendationsOut,
    UserOut,
    UsersIn,
    decode_cursor,
    encode_cursor,
)
from jingzhun.api.state import ServerState
from jingzhun.contracts.results import plain
from jingzhun.errors import NotFoundError
from jingzhun.store.desensitize import user_key
from jingzhun.workspace import Workspace

router = APIRouter(prefix="/v1/users", tags=["users"])

#: Context items one request may send: a session's recent views, not a history.
MAX_CONTEXT = 50

#: How to find a user, said with every 404 about one.
FIND_USERS = (
    "user ids are the userId tracking calls send and the user_id of POST /v1/users; a user "
    "known since the last profile build has a profile after the next one "
    '(POST /v1/jobs {"kind": "profile_build"})'
)

UserId = Annotated[str, Path(min_length=1, max_length=256, description="A user id.")]
Lang = Annotated[Literal["en", "zh"], Query(description="The language of names and reasons.")]


def _ingest(kind: str, records: list[dict[str, Any]]) -> Callable[[Workspace], Any]:
    """The write: ``records`` as JSON Lines through the ingest stage, as one batch."""
    data = b"".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for r in records
    )

    def write(ws: Workspace) -> Any:
        return ws.ingest.files(kind, ["-"], format="jsonl", stdin=io.BytesIO(data))

    return write


async def ingest_records(
    state: ServerState, kind: str, records: list[dict[str, Any]]
) -> IngestAnswer:
    """Ingest ``records`` of ``kind`` in the writer thread and answer the batch's counts."""
    done = await asyncio.wrap_future(state.run_write(_ingest(kind, records)))
    return IngestAnswer(
        batch_id=done.batch_id,
        kind=done.kind,
        rows_read=done.rows_read,
        inserted=done.inserted,
        updated=done.updated,
        duplicates=done.duplicates,
        quarantined=done.quarantined,
        seconds=round(done.seconds, 3),
    )


@router.get(
    "/{user_id}",
    response_model=UserOut,
    summary="One user: profile traits, tags, devices, segments and scores",
    dependencies=[require("read")],
)
def get_user(user_id: UserId, state: State, lang: Lang = "en") -> UserOut:
    ws = state.readers.get()
    user_id = user_key(ws.store, user_id)  # the pseudonym in a pseudonymized store
    try:
        profile = ws.profiles.user(user_id, events=0)
    except NotFoundError as exc:
        # Not built yet, but sending events: the live traits are all there is so far.
        live = state.live.get(user_id)
        if not live["events"]:
            raise Problem(404, f"{exc.message}; {FIND_USERS}") from None
        return UserOut(
            user_id=user_id,
            traits={},
            tags={},
            anonymous_ids=[],
            segments=[],
            scores=[],
            live=live,
        )
    scores = ws.predict.of_user(profile.user_id)
    # NaN (a missing number in the frame) is no JSON: None instead.
    rows = scores.astype(object).where(scores.notna(), None).to_dict("records")
    return UserOut(
        user_id=profile.user_id,
        traits=plain(profile.traits),  # datetimes kept: the answer writes them as RFC 3339
        tags=profile.tags,
        anonymous_ids=profile.anonymous_ids,
        segments=[s.to_dict() for s in ws.segments.of_user(profile.user_id, lang=lang)],
        scores=rows,
        live=state.live.get(profile.user_id),
        consents=profile.consents,
    )


@router.get(
    "/{user_id}/events",
    response_model=Page[EventOut],
    summary="A user's timeline, newest first (with their linked devices' events)",
    dependencies=[require("read")],
)
def user_events(
    user_id: UserId,
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000, description="Events per page.")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> Page[EventOut]:
    before = None if cursor is None else decode_cursor(cursor, "events", (datetime, str))
    ws = state.readers.get()
    try:
        rows = ws.ingest.timeline(user_id, limit=limit + 1, before=before)
    except NotFoundError as exc:
        raise Problem(404, f"{exc.message}; {FIND_USERS}") from None
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return Page[EventOut](
        items=rows,
        next_cursor=None if last is None else encode_cursor("events", last["ts"], last["event_id"]),
    )


@router.get(
    "/{user_id}/recommendations",
    response_model=RecommendationsOut,
    summary="Top items for a user, each with its reason (unknown users: cold start)",
    dependencies=[require("read")],
)
def recommendations(
    user_id: UserId,
    state: State,
    k: Annotated[int, Query(ge=1, le=100, description="How many items.")] = 10,
    context: Annotated[
        str | None,
        Query(
            max_length=MAX_CONTEXT * 257,
            description="Items the user is looking at now, comma-separated, oldest first "
            f"(at most {MAX_CONTEXT}): the list follows them.",
        ),
    ] = None,
    lang: Lang = "en",
) -> RecommendationsOut:
    items = [i.strip() for i in (context or "").split(",") if i.strip()]
    if len(items) > MAX_CONTEXT:
        raise Problem(
            422,
            f"context: {len(items)} items; send at most {MAX_CONTEXT}, the latest ones",
            errors=[{"field": "query.context", "message": f"at most {MAX_CONTEXT} items"}],
        )
    if any(len(i) > 256 for i in items):
        raise Problem(
            422,
            "context: an item id is longer than 256 characters",
            errors=[{"field": "query.context", "message": "item ids are 1 to 256 characters"}],
        )
    # The server's one recommender, scoring from the user's live interactions: no query.
    user_id = user_key(state.readers.get().store, user_id)
    history = state.live.interactions(user_id)
    if items:
        return RecommendationsOut(
            **state.recs.in_context(items, k, user_id=user_id, lang=lang, history=history).to_dict()
        )
    result = state.recs.for_user(user_id, k, lang=lang, history=history).to_dict()
    return RecommendationsOut(**result, context=[], unknown_items=[])


@router.post(
    "",
    response_model=IngestAnswer,
    summary="Add or update users (one ingest batch; bad rows go to the quarantine)",
    dependencies=[require("ingest")],
)
async def post_users(body: UsersIn, state: State) -> IngestAnswer:
    records = [u.model_dump(exclude_unset=True) for u in body.users]
    return await ingest_records(state, "users", records)
