"""The REST API's request and response bodies, and its opaque page cursors.

Output models mirror the facades' typed results field by field (a route builds them from
``to_dict()`` or the result's attributes and adds nothing of its own), so the API answers the
same numbers the CLI prints. Input models check only what makes a record a record at all (an
object with its id): the values themselves are the ingest stage's business, which keeps a bad
row in the quarantine with its reason, exactly as from a file.

Every list answers one page, ``{"items": [...], "next_cursor": ...}``: pass ``next_cursor`` back
as ``cursor`` for the next page; it is null on the last one. A cursor is opaque to clients
(base64 of the last row's sort key, tagged with the list it belongs to).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from jingzhun.api.problems import Problem

T = TypeVar("T")

#: A JSON scalar: what a user or item field may hold before the ingest stage types it.
Scalar = str | int | float | bool | None
Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]


# -- pages and cursors --------------------------------------------------------------------------


class Page(BaseModel, Generic[T]):
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


class UserSegmentOut(BaseModel):
    """The user's segment in one active run."""

    run_id: str
    name: str = Field(description="The run's name (rfm, value …).")
    segment: str
    label: str | None = Field(description="The segment's readable name, in the asked lang.")
    fitted: bool = Field(description="False: placed after the fit, without refitting.")


class ScoreOut(BaseModel):
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


class ConsentOut(BaseModel):
    """A consent in force: the newest statement for its purpose and channel."""

    purpose: str = Field(description="marketing, analytics or personalization.")
    channel: str = Field(description="email, sms, push, webhook, ads, or any.")
    status: str = Field(description="GRANTED, DENIED or REVOKED.")
    ts: datetime = Field(description="When it was stated.")
    source: str = Field(description="Where it came from (events:BATCH, users:BATCH, api:KEY …).")


class UserOut(BaseModel):
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


class EventOut(BaseModel):
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


class RecommendedItem(BaseModel):
    rank: int
    item_id: str
    title: str | None
    score: float
    reason: str | None = Field(description="A code: bought:ITEM, viewed:ITEM, interest:CAT …")
    explanation: str = Field(description="The reason in words, in the asked lang.")


class RecommendationsOut(BaseModel):
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


class IngestAnswer(BaseModel):
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


class SimilarItem(BaseModel):
    rank: int
    item_id: str
    title: str | None
    score: float


class SimilarOut(BaseModel):
    """The items most like one item, by the model's item neighbours."""

    item_id: str
    model: str
    known_to_model: bool = Field(
        description="False for an item new since training: its list is empty."
    )
    items: list[SimilarItem]


# -- segments -----------------------------------------------------------------------------------


class SegmentSize(BaseModel):
    segment: str
    label: str
    users: int
    share: float


class SegmentRunSummary(BaseModel):
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


class PortraitOut(BaseModel):
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


class SegmentRunOut(BaseModel):
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


class ModelOut(BaseModel):
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


class QuarantineRowOut(BaseModel):
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


class ReasonCount(BaseModel):
    kind: str
    reason: str
    rows: int


class QuarantinePage(Page[QuarantineRowOut]):
    reasons: list[ReasonCount] = Field(
        description="The selected rows counted by reason, most common first (at most 50)."
    )
