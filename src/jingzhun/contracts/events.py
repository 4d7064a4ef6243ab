"""The data model's rows: event names and the fields of events, users and items.

One definition per field, read by every layer that speaks of them: ingest validates and types
a source's columns by it, the store's ``events``, ``users`` and ``items`` tables hold exactly
these columns, settings check the event names they mention against :data:`EVENT_NAMES`, and
profile traits may name the :data:`EVENT_COLUMNS`.

Each kind (events, users, items) is a tuple of :class:`Field`. For users, the personal-data
fields (:data:`PII_FIELDS`: email, phone, name, address) live in the separate ``pii`` table,
never in an analytics table.

Examples
--------
>>> "order_completed" in EVENT_NAMES
True
>>> field_names("items")[:3]
['item_id', 'title', 'description']
>>> EVENT_COLUMNS[:3]
('event_id', 'event', 'user_id')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_FIELDS",
    "EVENT_ID_CONTENT",
    "EVENT_NAMES",
    "FIELDS",
    "ITEM_FIELDS",
    "KEY",
    "KINDS",
    "PII_FIELDS",
    "USER_FIELDS",
    "Field",
    "FieldType",
    "Kind",
    "field_names",
]

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

#: The personal-data fields: they go to the ``pii`` table, never to an analytics table.
PII_FIELDS: tuple[str, ...] = tuple(f.name for f in USER_FIELDS if f.pii)

#: An event's own columns, in the order of the fields: every field but the free-form JSON.
EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS if f.type != "json")

#: What an event id derived from a row's content hashes: every column of the event but the id.
#: Changing it changes the id of every event ingested without one, so re-ingesting a file
#: would no longer find its duplicates; ``tests/contracts/test_events.py`` pins it.
EVENT_ID_CONTENT: tuple[str, ...] = tuple(c for c in EVENT_COLUMNS if c != KEY["events"])


def field_names(kind: Kind) -> list[str]:
    """The names of ``kind``'s fields, in their order."""
    return [f.name for f in FIELDS[kind]]
