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
    "COUNTED_EVENTS",
    "EVENT_COLUMNS",
    "EVENT_FIELDS",
    "EVENT_ID_CONTENT",
    "EVENT_NAMES",
    "EVENT_REQUIRES",
    "EVENT_TYPES",
    "FIELDS",
    "INTEREST_WEIGHTS",
    "ITEM_FIELDS",
    "KEY",
    "KINDS",
    "PII_FIELDS",
    "SEGMENT_NAMES",
    "USER_FIELDS",
    "EventType",
    "Field",
    "FieldType",
    "Kind",
    "field_names",
]

Kind = Literal["events", "users", "items"]
FieldType = Literal["id", "event", "text", "timestamp", "number", "integer", "boolean", "json"]

KINDS: tuple[Kind, ...] = ("events", "users", "items")


@dataclass(frozen=True)
class EventType:
    """One event of the vocabulary.

    ``segment`` is its name in Segment's specs (e-commerce v2, email, the message types), which
    sources such as Segment and RudderStack send; ``weight`` its default interaction weight (how
    strongly it signals interest in its item: profile affinity and the recommenders' implicit
    feedback; 0 = none); ``counted`` whether profiles count it (the ``n_<name>`` trait);
    ``requires`` the fields a row of it must carry beyond the always-required ones.
    """

    name: str
    doc: str
    segment: str | None = None
    weight: float = 0.0
    counted: bool = False
    requires: tuple[str, ...] = ()


_ITEM = ("item_id",)

#: The event vocabulary (snake_case), in the order of a shopper's journey. Names outside it
#: reach the store only through a mapping (``--event-map``, ``[ingest.event_map]``) or, from
#: Segment-format sources, as *custom* events that analytics ignore until they are mapped.
EVENT_TYPES: tuple[EventType, ...] = (
    # browsing
    EventType("page_viewed", "A page view: the start of a visit.", "Page Viewed", counted=True),
    EventType(
        "screen_viewed", "A screen of an app was shown (Segment's screen call).", "Screen Viewed"
    ),
    EventType("products_searched", "A product search.", "Products Searched", counted=True),
    EventType(
        "product_list_viewed",
        "A category or search result list was shown.",
        "Product List Viewed",
        counted=True,
    ),
    EventType(
        "product_list_filtered", "A product list was filtered or sorted.", "Product List Filtered"
    ),
    EventType("promotion_viewed", "A promotion was shown.", "Promotion Viewed"),
    EventType("promotion_clicked", "A promotion was clicked.", "Promotion Clicked"),
    EventType(
        "product_clicked",
        "A product in a list was clicked.",
        "Product Clicked",
        weight=1.0,
        counted=True,
        requires=_ITEM,
    ),
    EventType(
        "product_viewed",
        "A product's detail page was viewed.",
        "Product Viewed",
        weight=1.0,
        counted=True,
        requires=_ITEM,
    ),
    EventType(
        "product_shared", "A product was shared.", "Product Shared", weight=2.0, requires=_ITEM
    ),
    EventType(
        "product_reviewed",
        "A product was reviewed.",
        "Product Reviewed",
        weight=2.0,
        requires=_ITEM,
    ),
    # wishlist
    EventType(
        "product_added_to_wishlist",
        "A product was added to a wishlist (a favourite).",
        "Product Added to Wishlist",
        weight=2.0,
        counted=True,
        requires=_ITEM,
    ),
    EventType(
        "product_removed_from_wishlist",
        "A product was removed from a wishlist.",
        "Product Removed from Wishlist",
        requires=_ITEM,
    ),
    EventType(
        "wishlist_product_added_to_cart",
        "A wishlisted product was added to the cart.",
        "Wishlist Product Added to Cart",
        weight=3.0,
        requires=_ITEM,
    ),
    # cart and checkout
    EventType(
        "product_added",
        "A product was added to the cart.",
        "Product Added",
        weight=3.0,
        counted=True,
        requires=_ITEM,
    ),
    EventType(
        "product_removed",
        "A product was removed from the cart.",
        "Product Removed",
        counted=True,
        requires=_ITEM,
    ),
    EventType("cart_viewed", "The cart was viewed.", "Cart Viewed", counted=True),
    EventType("cart_shared", "The cart was shared.", "Cart Shared"),
    EventType("coupon_entered", "A coupon code was entered.", "Coupon Entered"),
    EventType(
        "coupon_applied",
        "A coupon was applied (price sensitivity).",
        "Coupon Applied",
        counted=True,
    ),
    EventType("coupon_denied", "A coupon was refused.", "Coupon Denied"),
    EventType("coupon_removed", "A coupon was removed.", "Coupon Removed"),
    EventType("checkout_started", "Checkout began.", "Checkout Started", weight=3.0, counted=True),
    EventType("checkout_step_viewed", "A checkout step was shown.", "Checkout Step Viewed"),
    EventType(
        "checkout_step_completed", "A checkout step was completed.", "Checkout Step Completed"
    ),
    EventType("payment_info_entered", "Payment details were entered.", "Payment Info Entered"),
    # orders
    EventType(
        "order_completed",
        "One line of a completed order.",
        "Order Completed",
        weight=5.0,
        counted=True,
        requires=("order_id", "item_id"),
    ),
    EventType("order_updated", "An order was changed.", "Order Updated"),
    EventType(
        "order_refunded",
        "A refund: one returned line, or a whole order.",
        "Order Refunded",
        counted=True,
        requires=("order_id",),
    ),
    EventType("order_cancelled", "An order was cancelled before it shipped.", "Order Cancelled"),
    # account and identity
    EventType("signed_up", "An account was created.", "Signed Up", counted=True),
    EventType(
        "identify", "Who the visitor is (Segment's identify call).", "Identify", counted=True
    ),
    EventType("alias", "Two ids are one person (Segment's alias call).", "Alias"),
    EventType("group", "The user belongs to a company or group (Segment's group call).", "Group"),
    # messages
    EventType("message_sent", "A marketing message was sent.", "Message Sent", counted=True),
    EventType("email_delivered", "An email was delivered.", "Email Delivered", counted=True),
    EventType("email_opened", "An email was opened.", "Email Opened", counted=True),
    EventType(
        "email_clicked", "A link in an email was clicked.", "Email Link Clicked", counted=True
    ),
    EventType("email_bounced", "An email bounced.", "Email Bounced"),
    EventType("email_marked_as_spam", "An email was reported as spam.", "Email Marked as Spam"),
    EventType("unsubscribed", "The user unsubscribed from marketing messages.", "Unsubscribed"),
    EventType(
        "campaign_converted",
        "A purchase attributed to a campaign.",
        "Campaign Converted",
        counted=True,
    ),
    # consent
    EventType(
        "consent_updated",
        "The user granted, denied or revoked consent: properties purpose (marketing, "
        "analytics, personalization), status (GRANTED, DENIED, REVOKED) and channel (email, "
        "sms, push, webhook, ads; any when absent).",
        "Consent Updated",
        requires=("user_id",),
    ),
)

#: Event names jingzhun knows (snake_case). Others only through ``[ingest.event_map]``.
EVENT_NAMES: frozenset[str] = frozenset(e.name for e in EVENT_TYPES)

#: Segment's spec names (and the message types) to ours, for names whose snake_case form
#: differs from ours ("Email Link Clicked" is email_clicked); every other spec name is its
#: snake_case form.
SEGMENT_NAMES: dict[str, str] = {
    e.segment: e.name
    for e in EVENT_TYPES
    if e.segment and e.segment.lower().replace(" ", "_") != e.name
}

#: Default interaction weight per event (view 1, wishlist 2, cart 3, purchase 5): the profile's
#: category affinity and the recommenders' implicit feedback start from the same weights.
INTEREST_WEIGHTS: dict[str, float] = {e.name: e.weight for e in EVENT_TYPES if e.weight > 0}

#: Events the profiles count, one ``n_<name>`` trait each.
COUNTED_EVENTS: tuple[str, ...] = tuple(sorted(e.name for e in EVENT_TYPES if e.counted))

#: Fields an event must carry beyond the always-required ones, by event name.
EVENT_REQUIRES: dict[str, tuple[str, ...]] = {e.name: e.requires for e in EVENT_TYPES if e.requires}


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
