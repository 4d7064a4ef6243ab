"""The REST API's request and response bodies, and its opaque page cursors.

Output models mirror the facades' typed results field by field (a route builds them from
``to_dict()`` or the result's attributes and adds nothing of its own), so the API answers the
same numbers the CLI prints. Input models check only what makes a record a record at all (an
object with its id): the values themselves are the ingest stage's business, which keeps a bad
row in the quarantine with its reason, exactly as from a file.

Every list answers one page, ``{"items": [...], "next_cursor": ...}``: pass ``next_cursor`` back
as ``cursor`` for the next page; it is null on the last one. A cursor is opaque to clients
(base64 of the last row's sort key, tagged with the list it belongs to).

Every response model derives from :class:`ResponseModel`, whose one serializer writes every
timestamp of an answer as RFC 3339 in UTC (``2026-12-06T10:17:13.222933Z``): the fields typed
``datetime`` (documented ``format: date-time``) and the datetimes inside free-form objects
(live traits, a campaign list's rows) alike. A timestamp in a request body is a
:data:`UtcTimestampIn`: ISO 8601 with or without an offset, a naive one taken as UTC and one
with an offset converted to UTC, handed to the core as naive UTC (as the store holds times).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    StringConstraints,
    field_serializer,
)

from jingzhun.api.problems import Problem

T = TypeVar("T")

#: A JSON scalar: what a user or item field may hold before the ingest stage types it.
Scalar = str | int | float | bool | None
Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]


# -- timestamps ---------------------------------------------------------------------------------


def rfc3339(value: datetime) -> str:
    """``value`` as the API writes a timestamp: RFC 3339 in UTC, six fraction digits and ``Z``.

    The store's times are naive UTC (``jingzhun.contracts.time``), so a naive value is taken as
    UTC; an aware one is converted to UTC. ``Z`` rather than ``+00:00``: it is the spelling the
    API already used for UTC (jobs' times, the ``receivedAt`` the tracking routes stamp) and the
    one Segment's SDKs and JavaScript's ``Date.toISOString()`` send, so a client sees one form
    of UTC in and out. Always six fraction digits (the store's precision, nothing invented):
    fixed-width text sorts as the times do, which ``...:00Z`` after ``...:00.5Z`` would not.

    Examples
    --------
    >>> rfc3339(datetime(2026, 12, 6, 10, 17, 13))
    '2026-12-06T10:17:13.000000Z'
    >>> from datetime import timedelta, timezone
    >>> rfc3339(datetime(2026, 12, 6, 18, 17, 13, 222933, tzinfo=timezone(timedelta(hours=8))))
    '2026-12-06T10:17:13.222933Z'
    """
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # at the ends of the calendar: its own offset, still RFC 3339
            return value.isoformat(timespec="microseconds")
    return value.isoformat(timespec="microseconds") + "Z"


def _timestamps_as_text(value: Any) -> Any:
    """``value`` with every datetime in it (nested in dicts, lists and tuples) as
    :func:`rfc3339` text; anything else, text that looks like a time included, as it is."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, dict):
        return {k: _timestamps_as_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_timestamps_as_text(v) for v in value]
    return value


def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError("the time is out of range in UTC") from None


#: A timestamp a request sends: naive is UTC, an offset is converted; the core gets naive UTC.
#: Echoed back (a job's ``params``) it is written as answers write timestamps (:func:`rfc3339`).
UtcTimestampIn = Annotated[
    datetime, AfterValidator(_naive_utc), PlainSerializer(rfc3339, when_used="json")
]


class ResponseModel(BaseModel):
    """Base of every response body: its one serializer writes timestamps as :func:`rfc3339`.

    It runs for JSON only (FastAPI's answers, ``model_dump(mode="json")``); Python dumps keep
    the datetimes. Nested response models serialize themselves, so each must derive from this
    class too (``tests/api/test_timestamps.py`` walks the app's routes to check it).
    """

    # No return annotation, on purpose: pydantic would take it as every field's JSON type, and
    # the schema would lose each field's own (``format: date-time`` included).
    @field_serializer("*", mode="wrap", when_used="json")
    def _rfc3339_timestamps(self, value: Any, handler: SerializerFunctionWrapHandler):
        if isinstance(value, datetime):
            return rfc3339(value)
        if isinstance(value, dict | list | tuple):
            value = _timestamps_as_text(value)
        return handler(value)


# -- pages and cursors --------------------------------------------------------------------------


class Page(ResponseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null on the last page."
    )


def encode_cursor(tag: str, *key: Any) -> str:
    """An opaque cursor for list ``tag`` after the row whose sort key is ``key``."""
    raw = json.dumps([tag, *key], separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_cursor() -> Problem:
    return Problem(
        422,
        "cursor: not a cursor of this list; pass next_cursor from the previous page as it "
        "is, or leave cursor out for the first page",
        errors=[{"field": "query.cursor", "message": "not a cursor of this list"}],
    )


def decode_cursor(cursor: str, tag: str, types: tuple[type, ...]) -> tuple[Any, ...]:
    """The sort key in ``cursor``, checked against the list ``tag`` and the key's ``types``
    (``datetime`` for a timestamp, sent as ISO text).

    Raises
    ------
    Problem
        A 422 naming ``cursor`` when it is not one this list gave.
    """
    if len(cursor) > 2048:
        raise _bad_cursor()
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise _bad_cursor() from None
    if not isinstance(value, list) or len(value) != len(types) + 1 or value[0] != tag:
        raise _bad_cursor()
    key: list[Any] = []
    for v, t in zip(value[1:], types, strict=True):
        if t is datetime and isinstance(v, str):
            try:
                v = datetime.fromisoformat(v)
            except ValueError:
                raise _bad_cursor() from None
        if not isinstance(v, t) or isinstance(v, bool):
            raise _bad_cursor()
        key.append(v)
    return tuple(key)


# -- users --------------------------------------------------------------------------------------


class UserSegmentOut(ResponseModel):
    """The user's segment in one active run."""

    run_id: str
    name: str = Field(description="The run's name (rfm, value …).")
    segment: str
    label: str | None = Field(description="The segment's readable name, in the asked lang.")
    fitted: bool = Field(description="False: placed after the fit, without refitting.")


class ScoreOut(ResponseModel):
    """The user's latest score of one kind."""

    score: str = Field(description="The kind: propensity, churn, clv, uplift …")
    value: float | None
    percentile: float | None = Field(description="0-1, 1 = the highest scored.")
    model_id: str | None
    reasons: list[dict[str, Any]] | None = Field(
        description="The features behind the score, strongest first."
    )
    as_of: datetime | None
    computed_at: datetime | None


class ConsentOut(ResponseModel):
    """A consent in force: the newest statement for its purpose and channel."""

    purpose: str = Field(description="marketing, analytics or personalization.")
    channel: str = Field(description="email, sms, push, webhook, ads, or any.")
    status: str = Field(description="GRANTED, DENIED or REVOKED.")
    ts: datetime = Field(description="When it was stated.")
    source: str = Field(description="Where it came from (events:BATCH, users:BATCH, api:KEY …).")


class UserOut(ResponseModel):
    """One user's 360° view: profile traits, tags, linked devices, segments and scores."""

    user_id: str = Field(description="The user's id (also when a linked device id was asked).")
    traits: dict[str, Any] = Field(description="Every profile column, as of the last build.")
    tags: dict[str, str]
    anonymous_ids: list[str] = Field(description="Devices linked to the user, oldest first.")
    segments: list[UserSegmentOut] = Field(description="One per active run, newest run first.")
    scores: list[ScoreOut] = Field(description="The latest score of each kind.")
    live: dict[str, Any] = Field(
        description="Traits kept up to date as events arrive (recency, counts, monetary, "
        "category affinity, last items), equal to what a build now would compute."
    )
    consents: list[ConsentOut] = Field(
        default_factory=list,
        description="Consents in force per purpose and channel (a user with none is treated "
        "as [privacy] default_marketing_consent for marketing).",
    )


class EventOut(ResponseModel):
    """One event of a user's timeline."""

    event_id: str
    event: str
    ts: datetime
    user_id: str | None
    anonymous_id: str | None
    item_id: str | None
    order_id: str | None
    quantity: float | None
    price: float | None
    revenue: float | None
    currency: str | None
    channel: str | None
    campaign_id: str | None
    properties: Any = Field(None, description="Every source field that is not a column above.")


class RecommendedItem(ResponseModel):
    rank: int
    item_id: str
    title: str | None
    score: float
    reason: str | None = Field(description="A code: bought:ITEM, viewed:ITEM, interest:CAT …")
    explanation: str = Field(description="The reason in words, in the asked lang.")


class RecommendationsOut(ResponseModel):
    """Top items for one user, each with its reason."""

    user_id: str
    model: str = Field(description="The model that ranked them.")
    cold_start: bool = Field(
        description="True when nothing the user (or the context) did was known: popular items."
    )
    known_to_model: bool
    segment: str | None
    context: list[str] = Field(description="The context items asked, oldest first.")
    unknown_items: list[str] = Field(description="Context items the model does not know.")
    items: list[RecommendedItem]


class UserIn(BaseModel):
    """One user record. Other fields are kept too: email, phone, name and address in the
    personal-data table, anything else in ``attributes``."""

    model_config = ConfigDict(extra="allow")

    user_id: Id
    created_at: Scalar = Field(None, description="Sign-up time: ISO 8601 or epoch seconds.")
    gender: Scalar = None
    birth_year: Scalar = None
    city: Scalar = None
    region: Scalar = None
    signup_channel: Scalar = None


class UsersIn(BaseModel):
    users: list[UserIn] = Field(min_length=1, max_length=10_000)


class IngestAnswer(ResponseModel):
    """What became of the records: one ingest batch, counted as file ingest counts it."""

    batch_id: str
    kind: str
    rows_read: int
    inserted: int
    updated: int
    duplicates: int
    quarantined: int = Field(description="Rows kept in the quarantine: see GET /v1/quarantine.")
    seconds: float


# -- items --------------------------------------------------------------------------------------


class ItemIn(BaseModel):
    """One catalog item. Other fields are kept in ``attributes``."""

    model_config = ConfigDict(extra="allow")

    item_id: Id
    title: Scalar = None
    description: Scalar = None
    category: Scalar = None
    brand: Scalar = None
    price: Scalar = None
    active: Scalar = Field(None, description="true/false; true when absent.")
    stock: Scalar = None


class ItemsIn(BaseModel):
    items: list[ItemIn] = Field(min_length=1, max_length=10_000)


class SimilarItem(ResponseModel):
    rank: int
    item_id: str
    title: str | None
    score: float


class SimilarOut(ResponseModel):
    """The items most like one item, by the model's item neighbours."""

    item_id: str
    model: str
    known_to_model: bool = Field(
        description="False for an item new since training: its list is empty."
    )
    items: list[SimilarItem]


# -- segments -----------------------------------------------------------------------------------


class SegmentSize(ResponseModel):
    segment: str
    label: str
    users: int
    share: float


class SegmentRunSummary(ResponseModel):
    """A stored segment run: its method, quality and segment sizes."""

    run_id: str
    name: str
    method: str
    active: bool
    users: int | None
    segments: int | None
    silhouette: float | None = Field(description="-1..1, higher is better separated.")
    stability: float | None = Field(description="Adjusted Rand index over resamples, 0..1.")
    created_at: datetime
    sizes: list[SegmentSize] = Field(description="Each segment's size, largest first.")


class PortraitOut(ResponseModel):
    """One segment against the whole population."""

    segment: str
    label: str = Field(description="The readable name, in the asked lang.")
    users: int
    share: float
    revenue_share: float | None
    traits: dict[str, dict[str, float | None]] = Field(
        description="trait -> mean, median, population_mean, z."
    )
    top_categories: list[list[Any]] = Field(description="[category, share, lift], top first.")


class SegmentRunOut(ResponseModel):
    """A segment run with its portraits."""

    run_id: str
    name: str
    method: str
    params: dict[str, Any]
    features: list[str]
    metrics: dict[str, Any]
    users: int | None
    segments: int | None
    as_of: datetime | None
    active: bool
    created_at: datetime
    portraits: list[PortraitOut]


# -- models -------------------------------------------------------------------------------------


class ModelOut(ResponseModel):
    """A trained model in the registry."""

    model_id: str
    kind: str
    name: str
    method: str
    active: bool
    as_of: datetime | None
    created_at: datetime
    fit_seconds: float | None
    artefact_bytes: int | None


# -- quarantine ---------------------------------------------------------------------------------


class QuarantineRowOut(ResponseModel):
    """A row the ingest stage kept out, with why and where it came from."""

    quarantine_id: int
    batch_id: str
    kind: str
    source: str | None
    line_no: int | None
    reason: str
    raw: Any = Field(description="The row as it came, under the source's own names.")
    received_at: datetime | None
    resolved_at: datetime | None
    resolved_batch_id: str | None


class ReasonCount(ResponseModel):
    kind: str
    reason: str
    rows: int


class QuarantinePage(Page[QuarantineRowOut]):
    reasons: list[ReasonCount] = Field(
        description="The selected rows counted by reason, most common first (at most 50)."
    )
