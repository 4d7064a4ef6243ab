"""The Segment HTTP Tracking API: ``/v1/batch``, ``/v1/track``, ``/v1/identify``, ``/v1/page``,
``/v1/screen``, ``/v1/alias``, ``/v1/group`` (and the one-letter paths analytics.js uses).

Segment's and RudderStack's SDKs send here unchanged once their host points at the server.
Each message is checked for what makes it a message at all (an object, a known type, a track's
event name, a user id or anonymous id): a request with one that is not is refused whole (400,
naming the item), so nothing of it is written. Everything else about a message — its
timestamp, its properties, its products — is the ingest stage's business: the writer hands the
messages to :meth:`jingzhun.ingest.facade.Ingest.messages`, the same Segment mapping, validator
and quarantine that read an archive from a file, and the answer counts what became of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import zlib
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from pydantic import Field

from jingzhun.api.deps import authorize, get_state
from jingzhun.api.problems import Problem
from jingzhun.api.schemas import ResponseModel
from jingzhun.api.state import ServerState

router = APIRouter(prefix="/v1", tags=["tracking"])

TYPES = ("track", "identify", "page", "screen", "alias", "group")
_ID_FIELDS = ("userId", "anonymousId")


class TrackAnswer(ResponseModel):
    """What became of the request's messages, counted as file ingest counts event rows (an
    ``Order Completed`` with three products is three rows)."""

    success: bool = Field(True, description="Segment's SDKs look at this.")
    batch_id: str = Field(description="The ingest batch the messages went in with.")
    messages: int
    rows: int
    inserted: int
    duplicates: int
    quarantined: int = Field(description="Rows kept in the quarantine: see GET /v1/quarantine.")
    skipped: int


async def _body(request: Request, limit: int) -> bytes:
    """The request body, unzipped when gzip, refused with 413 once unzipped past ``limit``.

    The raw body is limited (by Content-Length, or as it streams in) by the app's outermost
    layer, which gives the tracking paths this same limit: see ``jingzhun.api.app._Guard``.
    """
    data = await request.body()
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        try:
            data = zlib.decompressobj(wbits=31).decompress(data, limit + 1)
        except zlib.error:
            raise Problem(400, "the body says Content-Encoding: gzip but is not gzip") from None
        if len(data) > limit:
            raise Problem(
                413,
                f"the body is larger than {limit // 1024:,} KB once unzipped, the most one "
                "request may send; send fewer messages per batch",
            )
    elif encoding not in ("", "identity"):
        raise Problem(415, f"Content-Encoding {encoding[:20]!r} is not supported; use gzip or none")
    return data


def _parse(data: bytes) -> Any:
    if not data.strip():
        raise Problem(400, "the body is empty; send a JSON object")
    try:
        # Decoded here, strictly: json.loads on bytes would guess UTF-16 or UTF-32 from the
        # first bytes.
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8 text; send JSON in UTF-8") from None
    except json.JSONDecodeError as exc:
        raise Problem(
            400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise Problem(400, "the body's JSON is nested too deeply") from None


def _has_id(msg: dict[str, Any], name: str) -> bool:
    value = msg.get(name)
    return isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) != ""


def _prepare(
    msg: Any,
    where: str,
    kind: str | None,
    context: dict[str, Any] | None,
    received_at: str,
    max_bytes: int,
    sent_at: Any = None,
) -> bytes:
    """One message as a JSON line for the writer, or a 400/413 naming ``where`` it is."""
    if not isinstance(msg, dict):
        raise Problem(400, f"{where} is not a JSON object; each message is an object")
    msg = dict(msg)
    msg.pop("writeKey", None)  # a secret: never stored with the event
    if kind is not None:
        msg["type"] = kind
    typ = msg.get("type")
    if typ not in TYPES:
        shown = json.dumps(typ)[:40] if typ is not None else "missing"
        raise Problem(
            400, f"{where}.type {shown} is not a message type; use one of {', '.join(TYPES)}"
        )
    if typ == "track":
        event = msg.get("event")
        if not isinstance(event, str) or not event.strip():
            raise Problem(400, f"{where}.event: missing; a track message needs an event name")
    if typ == "alias":
        if not (_has_id(msg, "userId") and _has_id(msg, "previousId")):
            raise Problem(400, f"{where}: an alias needs userId and previousId")
    elif not any(_has_id(msg, f) for f in _ID_FIELDS):
        raise Problem(400, f"{where}: needs a userId or an anonymousId (a string)")
    if context:
        own = msg.get("context")
        msg["context"] = {**context, **own} if isinstance(own, dict) else dict(context)
    if sent_at is not None and msg.get("sentAt") is None:
        msg["sentAt"] = sent_at  # the SDKs stamp the batch, not each message
    msg["receivedAt"] = received_at
    line = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode()
    if len(line) > max_bytes:
        raise Problem(
            413,
            f"{where} is {len(line):,} bytes; a message may be at most {max_bytes // 1024} KB",
        )
    return line


async def _accept(request: Request, kind: str | None) -> TrackAnswer:
    state = get_state(request)
    data = await _body(request, state.settings.max_batch_bytes)
    # Parsing and checking a batch is ~5 ms of Python per 100 messages: on a worker thread,
    # not on the event loop, which meanwhile goes on reading and answering other requests.
    lines = await anyio.to_thread.run_sync(_lines, request, state, data, kind)
    future = state.writer.submit(lines)
    state.metrics.messages.inc(len(lines))
    done = await asyncio.wrap_future(future)
    return TrackAnswer(**dataclasses.asdict(done))


def _lines(request: Request, state: ServerState, data: bytes, kind: str | None) -> list[bytes]:
    """The body's messages as JSON lines for the writer, after the key is checked."""
    limits = state.settings
    body = _parse(data)
    if not isinstance(body, dict):
        raise Problem(400, 'the body is not a JSON object; send a message or {"batch": [...]}')
    write_key = body.get("writeKey")
    authorize(state, request, "ingest", write_key if isinstance(write_key, str) else None)
    received_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if kind is None:
        items = body.get("batch")
        if not isinstance(items, list):
            raise Problem(400, 'batch: missing or not a list; send {"batch": [message, ...]}')
        if not items:
            raise Problem(400, "batch is empty; send at least one message")
        context = body.get("context")
        if context is not None and not isinstance(context, dict):
            raise Problem(400, "context is not a JSON object")
        lines = [
            _prepare(
                m,
                f"batch[{i}]",
                None,
                context,
                received_at,
                limits.max_event_bytes,
                body.get("sentAt"),
            )
            for i, m in enumerate(items)
        ]
    else:
        lines = [_prepare(body, "message", kind, None, received_at, limits.max_event_bytes)]
    return lines


_DOC = "Segment HTTP Tracking API: {what}. Key as Basic user name, Bearer token or writeKey."


@router.post("/batch", response_model=TrackAnswer, summary="A batch of messages")
@router.post("/b", response_model=TrackAnswer, include_in_schema=False)
async def batch(request: Request) -> TrackAnswer:
    return await _accept(request, None)


def _single(kind: str, short: str) -> None:
    async def route(request: Request) -> TrackAnswer:
        return await _accept(request, kind)

    route.__name__ = kind
    route.__doc__ = _DOC.format(what=f"one {kind} message")
    router.post(f"/{kind}", response_model=TrackAnswer, summary=f"One {kind} message")(route)
    router.post(f"/{short}", response_model=TrackAnswer, include_in_schema=False)(route)


for _kind, _short in (
    ("track", "t"),
    ("identify", "i"),
    ("page", "p"),
    ("screen", "s"),
    ("alias", "a"),
    ("group", "g"),
):
    _single(_kind, _short)
