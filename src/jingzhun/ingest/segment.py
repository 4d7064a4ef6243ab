"""Segment / RudderStack messages as the store's events and users: one definition, as SQL.

A Segment-format source (the JSON Lines that Segment's and RudderStack's S3 and warehouse
destinations archive, one message per line, and the messages their HTTP tracking API takes)
holds *messages*, not event rows. :func:`events_sql` and :func:`users_sql` generate the
``SELECT`` that turns a relation of messages into the store's event fields and user fields as
text cells, which the validator then types and checks exactly as it does a CSV's.

The input relation has ``_line BIGINT`` (the line), ``_error VARCHAR`` (set when the line was
not a JSON object) and ``t VARCHAR`` (the message text). Each message is parsed once: one
``json_extract_string`` with the list of every path the mapping reads (:data:`_PATHS`).

Events (one row per message, except order lines)
-------------------------------------------------
``event``     track: the message's event name *as given* ("Order Completed"; the validator maps
              spec names and snake_cases the rest); page: ``page_viewed``; screen:
              ``screen_viewed``; identify, alias, group: their type. Another type, or none, is
              an error (``type: missing``, ``type: 'foo' is not a Segment message type (…)``)
              and the row's fields are null. Types are read case-insensitively.
ids           ``event_id`` messageId, ``user_id`` userId, ``anonymous_id`` anonymousId; for an
              alias, ``anonymous_id`` is previousId (else anonymousId), so that the pipeline's
              identity linking (rows carrying both ids) links aliases and identifies. A numeric
              id keeps its JSON text ("12345"). An id that is an object or an array is an error
              naming the key.
``ts``        Segment's clock-skew correction. With ``originalTimestamp`` present, ``timestamp``
              is already corrected (archives): it is used as given. Else, with ``sentAt`` and a
              receive time (``receivedAt``, else the ``received_at`` argument):
              ``timestamp + (receive time - sentAt)``, written as ISO 8601 UTC text
              (``2024-03-01T10:00:02Z``). Else ``timestamp``, else ``receivedAt``, else
              ``received_at``, as given (the validator reads any ISO 8601 offset). A timestamp
              that does not parse is passed on as given, for the validator to quarantine with
              its own message.
fields        From ``properties``: ``order_id`` (order_id, else orderId), ``item_id``
              (product_id, else sku, else id), ``quantity``, ``price``, ``currency``,
              ``campaign_id`` (else ``context.campaign.name``, the UTM campaign) and
              ``revenue``: properties.revenue; for an order event without products it falls
              back to ``subtotal`` (after discounts, before tax and shipping: the data model's
              revenue) and then ``total`` (which includes tax and shipping). ``channel`` is the
              message's top-level ``channel`` (client, server, web, mobile …), as given.
order lines   A track whose event the validator reads as ``order_completed`` or
              ``order_refunded`` (its snake_case form is one of them, or ``event_map`` maps it
              to one) and whose ``properties.products`` is a non-empty array gives ONE ROW PER
              PRODUCT, in the array's order: ``event_id`` messageId:1, messageId:2 … (without
              a messageId, ``jz_`` and the md5 of the message text stand for it);
              ``order_id`` the order's; ``currency`` the order's, else the product's;
              ``item_id`` (product_id, else sku, else id), ``quantity`` and ``price`` the
              product's; ``revenue`` the line's share of the order's: quantity × price
              (quantity 1 when not given) scaled by the order's ``revenue`` (else
              ``subtotal``; both after discounts) over the sum of its lines', so that an
              order's lines add up to what the customer paid for its products; with only a
              ``discount``, by (sum − discount) / sum; with neither, null (the validator
              computes quantity × price). Every product row carries the message's ``_line``.
``properties`` A JSON object, or null when empty: the message's properties without
              ``products`` and the keys that became fields (order_id, orderId, product_id,
              quantity, price, revenue, currency, campaign_id; sku or id when it became the
              item_id). A product row merges the product's keys (those that became fields
              removed) over the order's: a product's category, brand, name and variant are
              top-level keys, so ``--item-columns category=category,brand=brand,title=name``
              fills the items table from them. Added unless the properties have the key:
              a page's or screen's ``name`` and ``category``; ``context.page``'s url, path and
              referrer as ``page_url``, ``page_path``, ``page_referrer``; ``context.campaign``'s
              source, medium and name (the UTM parameters) as ``utm_source``, ``utm_medium``,
              ``utm_campaign``. A group row holds ``group_id`` and the group's traits that are
              not personal; identify and alias rows have none (an identify's traits go to
              users). Emails are replaced (see below).
``_raw_line`` The message text, on every row of it: the quarantine keeps the message as the raw
              row, so that a replay maps it again. A line that never parsed (input ``_error``)
              keeps ``{"_raw_line": text}``, the sources' form, when ``t`` holds its text.

Personal data
-------------
Personal data never reaches an analytics table:

- *Traits* describe a person (identify traits, ``context.traits``, group traits): every key for
  which :func:`jingzhun.ingest.schema.pii_in_name` names a personal-data field is dropped
  (email, phone, any ``…name``, address; the test runs in SQL, as ``pii_in_name`` compares:
  case, separators and full-width forms ignored). For users, the email, phone, name and
  address go to their own columns first, which the pipeline stores in the ``pii`` table.
- *Event properties* describe products, pages and orders (a product's ``name`` is no one's
  name), so their keys are not filtered by name.
- In both, every email address in a value, at any depth and under any key (a ``mailto:``
  link, a nested ``customer.email``), is replaced by ``[email]``.

Users (one row per identify message that has a userId)
------------------------------------------------------
Traits are ``context.traits`` (RudderStack's place for them) overlaid by ``traits``.
``created_at`` createdAt / created_at; ``gender``; ``birth_year`` birth_year / birthYear,
else the year of ``birthday``; ``city`` address.city, else city; ``region`` address.state /
address.region, else state, else region; ``signup_channel`` signup_channel / signupChannel;
``email``; ``phone``; ``name`` name, else first and last name; ``address`` the address object
as one line ("street, city, state postalCode, country") or the address text; ``attributes``
every other trait that is not personal (plan, logins …), null when none. An identify without
a userId gives an identify event but no user row: :func:`anonymous_identify_sql` counts them.

Examples
--------
>>> import duckdb
>>> con = duckdb.connect()
>>> _ = con.execute(
...     "CREATE TABLE m AS SELECT 1::BIGINT AS _line, NULL::VARCHAR AS _error, "
...     "'{\\"type\\":\\"page\\",\\"userId\\":42,\\"timestamp\\":\\"2024-03-01T10:00:00Z\\"}' AS t"
... )
>>> con.sql(f"SELECT event, user_id, ts FROM ({events_sql('m')})").fetchall()
[('page_viewed', '42', '2024-03-01T10:00:00Z')]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime

from jingzhun.contracts.events import EVENT_FIELDS, PII_FIELDS, field_names
from jingzhun.errors import InputError
from jingzhun.store.sql import Sql, lit

__all__ = [
    "EVENTS_COLUMNS",
    "ID_KEYS",
    "MESSAGE_TYPES",
    "USERS_COLUMNS",
    "anonymous_identify_sql",
    "events_sql",
    "is_segment",
    "users_sql",
]

#: Segment's message types (the ``type`` of every message).
MESSAGE_TYPES: tuple[str, ...] = ("track", "identify", "page", "screen", "alias", "group")
#: The id keys every Segment message carries at least one of (camelCase, as on the wire).
ID_KEYS: tuple[str, ...] = ("messageId", "userId", "anonymousId", "previousId")
_META = ("_line", "_error", "_raw_line")
#: Columns of :func:`events_sql`: the event fields (VARCHAR; ``properties`` JSON text), then
#: ``_line`` (BIGINT), ``_error`` and ``_raw_line``.
EVENTS_COLUMNS: tuple[str, ...] = (*(f.name for f in EVENT_FIELDS), *_META)
#: Columns of :func:`users_sql`: the user fields (VARCHAR; ``attributes`` JSON text, personal
#: data in email, phone, name, address), then ``_line`` (BIGINT), ``_error`` and ``_raw_line``.
USERS_COLUMNS: tuple[str, ...] = (*field_names("users"), *_META)

#: Events whose products are exploded into order lines (the validator's names).
_ORDER_EVENTS: tuple[str, ...] = ("order_completed", "order_refunded")
#: An email address inside JSON text: it never crosses a quote or a backslash, so a match
#: stays inside one JSON string and replacing it keeps the JSON valid.
_EMAIL_IN_JSON = r'[^\s"\\@]+@[^\s"\\@]+\.[^\s"\\@]+'
_EMAIL_MARK = "[email]"

#: The keys of ``context.page`` added to properties (as page_url, page_path, page_referrer).
_PAGE = ("url", "path", "referrer")
#: The keys of ``context.campaign`` (the UTM parameters) added to properties, by their name
#: there (utm_source, utm_medium, utm_campaign).
_CAMPAIGN = {"source": "source", "medium": "medium", "campaign": "name"}
#: Keys of properties that become fields (a product's too), removed from properties.
_EXTRACTED = ("order_id", "orderId", "product_id", "quantity", "price", "revenue", "currency")
#: Every value the event mapping reads from a message, by name: its JSON path. They are read
#: in one parse (``json_extract_string`` with a list of paths): scalars as their text (a JSON
#: number keeps its text), objects and arrays as JSON text. Each path costs about 30 ns a
#: message.
_PATHS: dict[str, str] = {
    **{k: f"$.{k}" for k in ("type", "event", "name", "category", *ID_KEYS, "groupId")},
    **{k: f"$.{k}" for k in ("timestamp", "originalTimestamp", "sentAt", "receivedAt")},
    **{k: f"$.{k}" for k in ("channel", "properties", "traits")},
    **{f"page_{k}": f"$.context.page.{k}" for k in _PAGE},
    **{f"utm_{k}": f"$.context.campaign.{v}" for k, v in _CAMPAIGN.items()},
    **{
        f"p_{k}": f"$.properties.{k}"
        for k in (
            *_EXTRACTED,
            *("sku", "id", "subtotal", "total", "discount", "campaign_id", "products"),
        )
    },
}
#: A product's keys that feed fields.
_PRODUCT = dict.fromkeys(("product_id", "sku", "id", "quantity", "price", "currency"), "VARCHAR")
# An identify's traits that feed user fields (the personal ones included).
_TRAITS = {
    **dict.fromkeys(
        (
            "createdAt",
            "created_at",
            "gender",
            "birth_year",
            "birthYear",
            "birthday",
            "city",
            "state",
            "region",
            "signup_channel",
            "signupChannel",
            "email",
            "phone",
            "name",
            "firstName",
            "first_name",
            "lastName",
            "last_name",
        ),
        "VARCHAR",
    ),
    "address": "JSON",
}
_ADDRESS = dict.fromkeys(
    ("street", "city", "state", "region", "postalCode", "postal_code", "zip", "country"),
    "VARCHAR",
)
#: Traits that became user fields and are not personal: kept out of ``attributes``.
_USER_TRAITS = (
    "createdAt",
    "created_at",
    "gender",
    "birth_year",
    "birthYear",
    "birthday",
    "city",
    "state",
    "region",
    "signup_channel",
    "signupChannel",
)


def is_segment(obj: object) -> bool:
    """Whether a parsed JSON value (a source's first object) looks like a Segment message.

    It does when its ``type`` is one of :data:`MESSAGE_TYPES` and it has at least one of the
    camelCase id keys (:data:`ID_KEYS`). An event row with a ``type`` column and snake_case
    ids is not one.

    >>> is_segment({"type": "track", "event": "Order Completed", "userId": "u1"})
    True
    >>> is_segment({"type": "track", "user_id": "u1", "event": "order_completed"})
    False
    """
    return (
        isinstance(obj, dict)
        and obj.get("type") in MESSAGE_TYPES
        and any(key in obj for key in ID_KEYS)
    )


def events_sql(
    relation: Sql,
    *,
    received_at: str | None = None,
    event_map: Mapping[str, str] | None = None,
) -> Sql:
    """The ``SELECT`` of :data:`EVENTS_COLUMNS` from the messages in ``relation``.

    Parameters
    ----------
    relation : Sql
        A relation (a name, or a query in parentheses) with ``_line``, ``_error`` and ``t``.
    received_at : str, optional
        The server's receive time (ISO 8601) for messages without ``receivedAt`` (the HTTP
        API's); None for files.
    event_map : Mapping[str, str], optional
        The event-name mapping the validator applies (configured and given): names it maps to
        order_completed or order_refunded are exploded into order lines too.

    Raises
    ------
    InputError
        ``received_at`` is not an ISO 8601 time.
    """
    received = _received_at(received_at)
    messages = _messages(relation, received, event_map)
    # One row per product of an order, one for every other message. Only text columns cross
    # the unnest, which copies them for every row it makes.
    lines = (
        "SELECT * EXCLUDE (_x), _x.p AS _prod, _x.i AS _pos, CASE WHEN starts_with(_x.p, '{') "
        f"THEN json_transform(_x.p, {lit(json.dumps(_PRODUCT))}) END AS pr "
        "FROM (SELECT * EXCLUDE (m_p_products), unnest(CASE WHEN _explode "
        "THEN list_transform(json_transform(m_p_products, '[\"JSON\"]'), "
        "lambda x, i: {'p': x, 'i': i}) ELSE [{'p': NULL::JSON, 'i': NULL::BIGINT}] END) AS _x "
        f"FROM ({messages}))"
    )
    # A product row's properties: the product's keys merged over the order's.
    product = "CASE WHEN starts_with(_prod, '{') THEN _prod ELSE '{}' END"
    merged = (
        f"json_merge_patch(coalesce(_a, '{{}}'), {product}, "
        f"{_removal('pr.product_id', 'pr.sku', 'pr.id')})"
    )
    products = (
        "SELECT *, CASE WHEN _pos IS NOT NULL "
        f"THEN NULLIF(CAST({merged} AS VARCHAR), '{{}}') END AS _pm FROM ({lines})"
    )
    # The factor from a line's gross (quantity × price) to what was paid for it: the order's
    # net over its gross (the sum over its products, read at the message's level).
    factor = (
        "CASE WHEN NOT _ogross > 0 THEN NULL "
        "WHEN _onet IS NOT NULL THEN try_cast(_onet AS DOUBLE) / _ogross "
        "WHEN _odisc IS NOT NULL THEN (_ogross - try_cast(_odisc AS DOUBLE)) / _ogross END"
    )
    products = f"SELECT *, {factor} AS _factor FROM ({products})"
    own = {
        # A line of an order without a messageId: the message's content, hashed, and its
        # position (the validator would give equal products of one order one id).
        "event_id": "CASE WHEN _pos IS NULL THEN _mid "
        "ELSE coalesce(_mid, 'jz_' || md5(t)) || ':' || _pos END",
        "item_id": "CASE WHEN _pos IS NULL THEN item_id "
        "ELSE coalesce(pr.product_id, pr.sku, pr.id) END",
        "quantity": "CASE WHEN _pos IS NULL THEN quantity ELSE pr.quantity END",
        "price": "CASE WHEN _pos IS NULL THEN price ELSE pr.price END",
        "revenue": "CASE WHEN _pos IS NULL THEN revenue "
        f"ELSE CAST(round({_gross('pr')} * _factor, 6) AS VARCHAR) END",
        "currency": "CASE WHEN _pos IS NULL THEN currency ELSE coalesce(currency, pr.currency) END",
        "properties": f"CASE WHEN _pos IS NULL THEN coalesce(_props_bad, _mprops) ELSE {_redact('_pm')} END",
    }
    outputs = [f"{own.get(f.name, f.name)} AS {f.name}" for f in EVENT_FIELDS]
    raw = (
        "CASE WHEN _in IS NULL THEN t "
        "WHEN t IS NOT NULL THEN json_object('_raw_line', t)::VARCHAR END"
    )
    return (
        f"SELECT {', '.join(outputs)}, _line, _err AS _error, {raw} AS _raw_line FROM ({products})"
    )


def _messages(relation: Sql, received: str | None, event_map: Mapping[str, str] | None) -> Sql:
    """One row per message: every field of it, its properties (``_mprops``; ``_a``, where its
    order lines' start from) and whether it explodes into order lines (``_explode``)."""
    # Each level is its own SELECT: DuckDB repeats an expression at every use of its alias.
    # 1. The message, parsed once; every value it gives, named.
    paths = ", ".join(lit(p) for p in _PATHS.values())
    values = ", ".join(f"v[{i}] AS m_{name}" for i, name in enumerate(_PATHS, start=1))
    parsed = (
        f"SELECT _line, _in, t, {values} FROM (SELECT _line, _error AS _in, t, "
        f"CASE WHEN _error IS NULL THEN json_extract_string(t, [{paths}]) END AS v "
        f"FROM {relation})"
    )
    # 2. Its type and error; its properties when they are an object (others are passed on
    #    for the validator to refuse); whether it is an order.
    content = "list_contains(['track', 'page', 'screen'], lower(m_type))"
    typed = (
        "SELECT *, lower(m_type) AS _type, "
        f"CASE WHEN _in IS NOT NULL THEN _in ELSE {_message_error()} END AS _err, "
        f"CASE WHEN {content} AND starts_with(m_properties, '{{') THEN m_properties END AS _props, "
        f"CASE WHEN {content} AND NOT starts_with(m_properties, '{{') THEN m_properties END "
        f"AS _props_bad, coalesce({_order_event('m_event', event_map)}, FALSE) AS _order "
        f"FROM ({parsed})"
    )
    # 3. Its fields, its properties without the keys that became fields, what it adds to
    #    them, and whether it explodes.
    explode = (
        "_type = 'track' AND _order AND starts_with(m_p_products, '[') AND m_p_products <> '[]'"
    )
    message = {
        "_mid": "m_messageId",
        "event": "CASE _type WHEN 'track' THEN m_event WHEN 'page' THEN 'page_viewed' "
        "WHEN 'screen' THEN 'screen_viewed' ELSE _type END",
        "user_id": "m_userId",
        "anonymous_id": "CASE WHEN _type = 'alias' THEN coalesce(m_previousId, m_anonymousId) "
        "ELSE m_anonymousId END",
        "order_id": "coalesce(m_p_order_id, m_p_orderId)",
        "item_id": "coalesce(m_p_product_id, m_p_sku, m_p_id)",
        "quantity": "m_p_quantity",
        "price": "m_p_price",
        "revenue": "coalesce(m_p_revenue, CASE WHEN _type = 'track' AND _order "
        "THEN coalesce(m_p_subtotal, m_p_total) END)",
        "currency": "m_p_currency",
        "channel": "m_channel",
        "campaign_id": "coalesce(m_p_campaign_id, m_utm_campaign)",
        "ts": _ts(received),
        "_k": _message_properties(),
        "_add": _additions(),
    }
    fields = ", ".join(f"CASE WHEN _err IS NULL THEN {v} END AS {k}" for k, v in message.items())
    # What an exploded order's lines share: its net amount of products, else its discount.
    amounts = lit(json.dumps([{"quantity": "VARCHAR", "price": "VARCHAR"}]))
    shares = (
        "CASE WHEN _explode THEN coalesce(m_p_revenue, m_p_subtotal) END AS _onet, "
        "CASE WHEN _explode THEN m_p_discount END AS _odisc, "
        "CASE WHEN _explode THEN list_sum(list_transform("
        f"json_transform(m_p_products, {amounts}), lambda x: {_gross('x')})) END AS _ogross"
    )
    messages = (
        f"SELECT *, {shares} FROM ("
        "SELECT _line, _in, t, _err, CASE WHEN _err IS NULL THEN _props_bad END AS _props_bad, "
        "m_p_products, m_p_revenue, m_p_subtotal, m_p_discount, "
        f"coalesce(_err IS NULL AND {explode}, FALSE) AS _explode, {fields} FROM ({typed}))"
    )
    # 4. Its properties (``_a``; an order line's start from them): the additions appended
    #    (merged under the properties when they have a key of the same name); emails
    #    replaced in a message row's (``_mprops``).
    clash = "(contains(_k, '\"page_') OR contains(_k, '\"utm_'))"
    appended = (
        "CASE WHEN _k IS NULL OR (_k = '{}' AND _add = '') THEN NULL "
        "WHEN _add = '' THEN _k WHEN _k = '{}' THEN '{' || _add || '}' "
        f"WHEN {clash} THEN CAST(json_merge_patch('{{' || _add || '}}', _k) AS VARCHAR) "
        "ELSE left(_k, -1) || ',' || _add || '}' END"
    )
    return (
        f"SELECT * EXCLUDE (_k, _add), CASE WHEN NOT _explode THEN {_redact('_a')} END AS _mprops "
        f"FROM (SELECT *, {appended} AS _a FROM ({messages}))"
    )


def users_sql(relation: Sql) -> Sql:
    """The ``SELECT`` of :data:`USERS_COLUMNS`: one row per identify message with a userId.

    Personal data (email, phone, name, address) is in its own columns; ``attributes`` holds
    the other traits, none of them personal (see the module's rules).
    """
    spec = {"type": "VARCHAR", "userId": "VARCHAR", "traits": "JSON", "context": {"traits": "JSON"}}
    # Only lines that mention identify are parsed (their type is then checked).
    parsed = (
        f"SELECT _line, t, json_transform(t, {lit(json.dumps(spec))}) AS m FROM {relation} "
        f"WHERE _error IS NULL AND {_MENTIONS_IDENTIFY}"
    )
    # context.traits (RudderStack's place for them) overlaid by traits; objects only.
    own = "CASE WHEN starts_with(m.traits, '{') THEN m.traits END"
    context = "CASE WHEN starts_with(m.context.traits, '{') THEN m.context.traits END"
    identifies = (
        f"SELECT _line, t, m.userId AS _uid, CASE WHEN {context} IS NULL THEN {own} "
        f"WHEN {own} IS NULL THEN {context} ELSE json_merge_patch({context}, {own}) END AS _traits "
        f"FROM ({parsed}) WHERE lower(m.type) = 'identify' AND {_identified('m')}"
    )
    typed = (
        f"SELECT *, json_transform(_traits, {lit(json.dumps(_TRAITS))}) AS u FROM ({identifies})"
    )
    # The traits that are neither user fields nor personal, and the address's parts.
    rest = lit(json.dumps(dict.fromkeys(_USER_TRAITS)))
    other = f"json_merge_patch({_drop_keys('_traits', _personal_key)}, {rest})"
    parts = (
        "SELECT *, CASE WHEN starts_with(u.address, '{') "
        f"THEN json_transform(u.address, {lit(json.dumps(_ADDRESS))}) END AS a, "
        f"{other} AS _other FROM ({typed})"
    )

    def text(x: str) -> str:
        return f"NULLIF(trim({x}), '')"

    state_zip = text(
        "concat_ws(' ', coalesce(a.state, a.region), coalesce(a.postalCode, a.postal_code, a.zip))"
    )
    one_line = (
        f"NULLIF(concat_ws(', ', {text('a.street')}, {text('a.city')}, {state_zip}, "
        f"{text('a.country')}), '')"
    )
    first, last = "coalesce(u.firstName, u.first_name)", "coalesce(u.lastName, u.last_name)"
    fields = {
        "user_id": "_uid",
        "created_at": "coalesce(u.createdAt, u.created_at)",
        "gender": "u.gender",
        "birth_year": "coalesce(u.birth_year, u.birthYear, "
        "CASE WHEN regexp_matches(u.birthday, '^[0-9]{4}-') THEN left(u.birthday, 4) END)",
        "city": "coalesce(a.city, u.city)",
        "region": "coalesce(a.state, a.region, u.state, u.region)",
        "signup_channel": "coalesce(u.signup_channel, u.signupChannel)",
        "attributes": _nonempty(_redact("CAST(_other AS VARCHAR)")),
        "email": "u.email",
        "phone": "u.phone",
        "name": f"coalesce(u.name, NULLIF(concat_ws(' ', {first}, {last}), ''))",
        "address": f"CASE WHEN starts_with(u.address, '\"') THEN u.address->>'$' ELSE {one_line} END",
    }
    outputs = [f"{fields[name]} AS {name}" for name in field_names("users")]
    return (
        f"SELECT {', '.join(outputs)}, _line, NULL::VARCHAR AS _error, t AS _raw_line "
        f"FROM ({parts})"
    )


def anonymous_identify_sql(relation: Sql) -> Sql:
    """``SELECT count(*) AS n``: the identify messages in ``relation`` without a userId (each
    gives an identify event, but no user row)."""
    spec = {"type": "VARCHAR", "userId": "VARCHAR"}
    return (
        "SELECT count(*) AS n FROM "
        f"(SELECT json_transform(t, {lit(json.dumps(spec))}) AS m FROM {relation} "
        f"WHERE _error IS NULL AND {_MENTIONS_IDENTIFY}) "
        f"WHERE lower(m.type) = 'identify' AND NOT {_identified('m')}"
    )


# -- pieces -----------------------------------------------------------------------------------

#: Whether a message's text may be an identify: a fast test (a text search) before parsing.
_MENTIONS_IDENTIFY = "(contains(t, 'dentify') OR contains(t, 'DENTIFY'))"


def _message_error() -> str:
    """Why a parsed message cannot be mapped (null when it can): its type, or an id that is
    an object or an array."""
    quote = lit("'")
    known = ", ".join(lit(t) for t in MESSAGE_TYPES)
    unknown = lit(f" is not a Segment message type ({', '.join(MESSAGE_TYPES)})")
    ids = " ".join(
        f"WHEN left(m_{k}, 1) IN ('{{', '[') THEN {lit(k + ': must be a string or a number, not ')} "
        f"|| CASE WHEN left(m_{k}, 1) = '{{' THEN 'an object' ELSE 'an array' END"
        for k in ID_KEYS
    )
    return (
        "CASE WHEN m_type IS NULL THEN 'type: missing' "
        f"WHEN NOT list_contains([{known}], lower(m_type)) "
        f"THEN 'type: ' || {quote} || left(m_type, 60) || {quote} || {unknown} {ids} END"
    )


def _identified(m: str) -> str:
    """Whether an identify message names its user: a userId that is not blank, an object or
    an array."""
    return f"coalesce(trim({m}.userId) <> '' AND left({m}.userId, 1) NOT IN ('{{', '['), FALSE)"


def _gross(product: str) -> str:
    """A product's quantity × price (quantity 1 when not given; null when either is not a
    number), from a struct of their texts."""
    return (
        f"(CASE WHEN {product}.quantity IS NULL THEN 1.0 "
        f"ELSE try_cast({product}.quantity AS DOUBLE) END * try_cast({product}.price AS DOUBLE))"
    )


def _received_at(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError):
        raise InputError(
            f"received_at {str(value)[:60]!r} is not an ISO 8601 time",
            hint="pass the server's receive time, e.g. 2024-03-01T10:00:00Z",
        ) from None
    return value


def _order_event(text: str, event_map: Mapping[str, str] | None) -> str:
    """Whether the event name ``text`` is one the validator reads as an order event: its
    snake_case form is one, or the mapping sends it (as given, or its snake_case form) to
    one."""
    mapped = sorted(k for k, v in (event_map or {}).items() if v in _ORDER_EVENTS)
    names = ", ".join(lit(n) for n in sorted({*_ORDER_EVENTS, *mapped}))
    snake = f"trim(regexp_replace(lower(trim({text})), '[^a-z0-9]+', '_', 'g'), '_')"
    test = f"list_contains([{names}], {snake})"
    if not mapped:
        # Only a name holding "order" can be one: the regular expression runs for those only.
        return f"(contains(lower({text}), 'order') AND {test})"
    given = ", ".join(lit(k) for k in mapped)
    return f"(list_contains([{given}], {text}) OR {test})"


def _ts(received: str | None) -> str:
    """The event time as text: skew-corrected where Segment corrects it, else as given."""

    def tstz(x: str) -> str:
        return f"TRY_CAST({x} AS TIMESTAMPTZ)"

    receive = f"coalesce(m_receivedAt, {lit(received)})" if received else "m_receivedAt"
    corrected = f"{tstz('m_timestamp')} + ({tstz(receive)} - {tstz('m_sentAt')})"
    iso = f"replace(CAST(timezone('UTC', {corrected}) AS VARCHAR), ' ', 'T') || 'Z'"
    return (
        f"CASE WHEN m_timestamp IS NULL THEN {receive} "
        f"WHEN m_originalTimestamp IS NULL AND m_sentAt IS NOT NULL AND {receive} IS NOT NULL "
        f"THEN coalesce({iso}, m_timestamp) ELSE m_timestamp END"
    )


def _removal(product_id: str, sku: str, id_: str) -> str:
    """A merge patch (JSON text) deleting the keys that became fields: the extracted keys,
    ``products``, and sku or id when it became the item id."""
    removed = lit(json.dumps(dict.fromkeys((*_EXTRACTED, "campaign_id", "products")))[:-1])
    used = (
        f"CASE WHEN {product_id} IS NOT NULL THEN '' WHEN {sku} IS NOT NULL THEN ', \"sku\": null' "
        f"WHEN {id_} IS NOT NULL THEN ', \"id\": null' ELSE '' END"
    )
    return f"({removed} || {used} || '}}')"


def _message_properties() -> str:
    """A message row's properties without the keys that became fields (JSON text or null).

    A merge patch deletes them; a message that has none of them (a page view, a search) is
    not parsed again. A group's are its traits that are not personal, and its group_id.
    """
    given = " OR ".join(f"m_p_{k} IS NOT NULL" for k in (*_EXTRACTED, "campaign_id", "products"))
    item_from = "(m_p_product_id IS NULL AND (m_p_sku IS NOT NULL OR m_p_id IS NOT NULL))"
    traits = "CASE WHEN starts_with(m_traits, '{') THEN m_traits END"
    group = (
        f"json_merge_patch(coalesce({_drop_keys(traits, _personal_key)}, '{{}}'), "
        "json_object('group_id', m_groupId))"
    )
    removal = _removal("m_p_product_id", "m_p_sku", "m_p_id")
    return (
        "CASE WHEN _props_bad IS NOT NULL OR _type IN ('identify', 'alias') THEN NULL "
        f"WHEN _type = 'group' THEN CAST({group} AS VARCHAR) "
        f"WHEN {given} OR {item_from} THEN CAST(json_merge_patch(_props, {removal}) AS VARCHAR) "
        "ELSE coalesce(_props, '{}') END"
    )


def _additions() -> str:
    """The members a message adds to its row's properties, as JSON text ('' for none): a
    page's or screen's name and category (unless its properties have them), the context's
    page url, path and referrer (``page_…``) and campaign (``utm_…``)."""

    def member(key: str, value: str, unless: str | None = None) -> str:
        name = lit(json.dumps(key) + ":")
        test = f"{value} IS NOT NULL"
        if unless is not None:
            test += f" AND NOT coalesce(contains(_props, {name}), FALSE) AND {unless}"
        return f"CASE WHEN {test} THEN {name} || CAST(to_json({value}) AS VARCHAR) END"

    page = "_type IN ('page', 'screen')"
    members = [
        member("name", "m_name", page),
        member("category", "m_category", page),
        *(member(f"page_{k}", f"m_page_{k}") for k in _PAGE),
        *(member(f"utm_{k}", f"m_utm_{k}") for k in _CAMPAIGN),
    ]
    return (
        "CASE WHEN _type IN ('identify', 'alias') THEN '' "
        f"ELSE concat_ws(',', {', '.join(members)}) END"
    )


def _wide(word: str) -> str:
    """A regular expression for ``word`` (lower-case ASCII) in ASCII or full-width letters:
    ``pii_in_name``'s NFKC folds the full-width forms (U+FF01-FF5E) to ASCII. The full-width
    letters are written as RE2 escapes (``\\x{FF45}``), so the statement stays ASCII: DuckDB's
    Python layer maps every character of a non-ASCII statement in a Python loop before running
    it (≈ 10 ms of held GIL per batch for this one, a fifth of a busy server's)."""
    return "".join(f"[{c}\\x{{{ord(c) - 0x21 + 0xFF01:04X}}}]" for c in word)


def _personal_key(key: str) -> str:
    """Whether a key (SQL text) is personal, tested as ``pii_in_name`` tests: its compact form
    (lower case, letters and digits only) contains a personal-data field's name."""
    compact = f"regexp_replace(lower({key}), '[^\\pL\\pN]+', '', 'g')"
    return f"regexp_matches({compact}, {lit('|'.join(_wide(w) for w in PII_FIELDS))})"


def _drop_keys(obj: str, personal: Callable[[str], str]) -> str:
    """``obj`` (a JSON object, or null) without its top-level keys for which ``personal(key)``
    (an SQL test) holds."""
    entries = f"map_entries(json_transform({obj}, '\"MAP(VARCHAR, JSON)\"'))"
    kept = f"list_filter({entries}, lambda e: NOT {personal('e.key')})"
    return f"CASE WHEN {obj} IS NOT NULL THEN to_json(map_from_entries({kept})) END"


def _redact(obj: str) -> str:
    """``obj`` (JSON text) with every email address in it replaced by ``[email]``."""
    return (
        f"CASE WHEN contains({obj}, '@') "
        f"THEN regexp_replace({obj}, {lit(_EMAIL_IN_JSON)}, {lit(_EMAIL_MARK)}, 'g') "
        f"ELSE {obj} END"
    )


def _nonempty(obj: str) -> str:
    """JSON text, null for an empty object."""
    return f"NULLIF({obj}, '{{}}')"
