"""What an ingested row may contain: one definition per field, used by validation and docs.

Each kind (events, users, items) is a list of :class:`Field`. A source column whose name (after
``--map``) is a field is validated and typed; any other column is kept as JSON in the row's
``properties`` (events) or ``attributes`` (users, items) column, so nothing is lost. For users,
the personal-data fields (email, phone, name, address) go to the separate ``pii`` table.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Kind = Literal["events", "users", "items"]
FieldType = Literal["id", "event", "text", "timestamp", "number", "integer", "boolean", "json"]

KINDS: tuple[Kind, ...] = ("events", "users", "items")

#: Event names jingzhun knows (snake_case). Others only through ``[ingest.event_map]``.
EVENT_NAMES: frozenset[str] = frozenset(
    {
        "page_viewed",
        "product_viewed",
        "product_added",
        "product_removed",
        "checkout_started",
        "order_completed",
        "order_refunded",
        "signed_up",
        "identify",
        "message_sent",
        "email_delivered",
        "email_opened",
        "email_clicked",
        "campaign_converted",
    }
)

#: Fields an event must carry beyond the always-required ones, by event name.
EVENT_REQUIRES: dict[str, tuple[str, ...]] = {
    "product_viewed": ("item_id",),
    "product_added": ("item_id",),
    "product_removed": ("item_id",),
    "order_completed": ("order_id", "item_id"),
    "order_refunded": ("order_id",),
}


@dataclass(frozen=True)
class Field:
    """One column of a kind.

    ``minimum``/``maximum`` bound numbers and integers (inclusive); ``maximum`` of ``"now"`` on
    an integer means the current year (a birth year).
    """

    name: str
    type: FieldType
    required: bool = False
    minimum: float | None = None
    maximum: float | str | None = None
    pii: bool = False
    doc: str = ""


EVENT_FIELDS: tuple[Field, ...] = (
    Field("event_id", "id", doc="Unique id; derived from the row's content when absent."),
    Field("event", "event", required=True, doc="Event name, known or mapped."),
    Field("user_id", "id", doc="Known user; an event needs user_id or anonymous_id."),
    Field("anonymous_id", "id", doc="Device or cookie id of a visitor before sign-in."),
    Field("order_id", "id", doc="Order; required for order_completed and order_refunded."),
    Field("item_id", "id", doc="Product; required for product_* events and order lines."),
    Field("quantity", "number", minimum=0, doc="Units; 1 when an item event gives none."),
    Field("price", "number", minimum=0, doc="Unit list price."),
    Field(
        "revenue",
        "number",
        minimum=0,
        doc="Line amount after discount; quantity × price if absent.",
    ),
    Field("currency", "text", doc="ISO 4217 code, e.g. CNY."),
    Field("channel", "text", doc="web, app, mini_program, store, email …"),
    Field("campaign_id", "id", doc="Campaign that caused the event, if any."),
    Field("ts", "timestamp", required=True, doc="Event time: ISO 8601 or epoch seconds; UTC."),
    Field("properties", "json", doc="Free-form JSON; unknown columns are merged in."),
)

USER_FIELDS: tuple[Field, ...] = (
    Field("user_id", "id", required=True),
    Field("created_at", "timestamp", doc="Sign-up time."),
    Field("gender", "text"),
    Field("birth_year", "integer", minimum=1900, maximum="now"),
    Field("city", "text"),
    Field("region", "text"),
    Field("signup_channel", "text"),
    Field("attributes", "json", doc="Free-form JSON; unknown non-PII columns are merged in."),
    Field("email", "text", pii=True),
    Field("phone", "text", pii=True),
    Field("name", "text", pii=True),
    Field("address", "text", pii=True),
)

ITEM_FIELDS: tuple[Field, ...] = (
    Field("item_id", "id", required=True),
    Field("title", "text"),
    Field("description", "text"),
    Field("category", "text"),
    Field("brand", "text"),
    Field("price", "number", minimum=0),
    Field("active", "boolean", doc="true/false, 1/0, yes/no; true when absent."),
    Field("stock", "integer", minimum=0),
    Field("attributes", "json", doc="Free-form JSON; unknown columns are merged in."),
)

FIELDS: dict[Kind, tuple[Field, ...]] = {
    "events": EVENT_FIELDS,
    "users": USER_FIELDS,
    "items": ITEM_FIELDS,
}

#: The key that identifies a row of each kind (rows with an equal key are duplicates).
KEY: dict[Kind, str] = {"events": "event_id", "users": "user_id", "items": "item_id"}

#: The JSON column that collects a kind's unknown columns.
EXTRAS_COLUMN: dict[Kind, str] = {
    "events": "properties",
    "users": "attributes",
    "items": "attributes",
}


#: The personal-data fields: they go to the ``pii`` table, never to an analytics table.
PII_FIELDS: tuple[str, ...] = tuple(f.name for f in USER_FIELDS if f.pii)


def pii_in_name(name: str) -> str | None:
    """The personal-data field a column name speaks of, if any, whatever its case, width
    and separators: ``E-Mail``, ``email_address``, ``Mobile Phone``, ``first_name``."""
    compact = re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", name).casefold())
    return next((f for f in PII_FIELDS if f in compact), None)


def field_names(kind: Kind) -> list[str]:
    return [f.name for f in FIELDS[kind]]


def required_columns(kind: Kind) -> list[str]:
    """Columns a source must have (after mapping); ``event_id`` is derived, so not listed."""
    return [f.name for f in FIELDS[kind] if f.required]
