"""Segment / RudderStack messages mapped to event and user fields (jingzhun.ingest.segment).

The generated SQL runs on a real DuckDB database over ``tests/data/segment_messages.jsonl``,
40 hand-written messages (line 13 is not valid JSON), read into a relation the way the JSON
Lines source reads a file: ``_line``, ``t`` (the line's text) and ``_error`` for a line that is
not a JSON object. Expected values are written out by hand from the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingzhun.config import IngestSettings
from jingzhun.errors import InputError
from jingzhun.ingest.schema import pii_in_name
from jingzhun.ingest.segment import (
    EVENTS_COLUMNS,
    MESSAGE_TYPES,
    USERS_COLUMNS,
    anonymous_identify_sql,
    events_sql,
    is_segment,
    users_sql,
)
from jingzhun.ingest.validate import IngestOptions, RowValidator

DATA = Path(__file__).parent.parent / "data" / "segment_messages.jsonl"
#: An email address anywhere in a text (the validator's test for one, unanchored).
EMAIL = re.compile(r'[^@\s"]+@[^@\s"]+\.[^@\s"]+')

#: What the context of the web messages adds to properties.
PAGE_001 = {
    "page_url": "https://shop.example.cn/p/P-100",
    "page_path": "/p/P-100",
    "page_referrer": "https://www.baidu.com/",
}
UTM = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring_sale"}


# -- helpers ---------------------------------------------------------------------------------


def load(con: duckdb.DuckDBPyConnection, lines: list[bytes], name: str = "msgs") -> None:
    """Create ``name`` (_line, _error, t) from raw lines, as the JSON Lines source does."""
    con.register(
        "_lines", pa.table({"_line": range(1, len(lines) + 1), "b": pa.array(lines, pa.binary())})
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE {name} AS
        SELECT _line,
               CASE WHEN t IS NULL THEN 'invalid UTF-8'
                    WHEN NOT json_valid(t) THEN 'not valid JSON'
                    WHEN json_type(t::JSON) <> 'OBJECT' THEN 'not a JSON object' END AS _error,
               t
        FROM (SELECT _line, rtrim(try(decode(b)), chr(13) || chr(10)) AS t FROM _lines)
        """
    )
    con.unregister("_lines")


def load_messages(con: duckdb.DuckDBPyConnection, messages: list[dict], name: str) -> None:
    load(con, [json.dumps(m).encode() for m in messages], name)


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "segment.duckdb"))
    connection.execute("SET TimeZone = 'UTC'")
    load(connection, DATA.read_bytes().split(b"\n")[:-1])
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def events(con: duckdb.DuckDBPyConnection) -> list[dict]:
    return rows(con, events_sql("msgs"))


@pytest.fixture
def text() -> dict[int, str]:
    """Each line's text, by line number."""
    return dict(enumerate(DATA.read_text(encoding="utf-8").split("\n")[:-1], start=1))


def on_line(events: list[dict], line: int) -> list[dict]:
    return [e for e in events if e["_line"] == line]


def one(events: list[dict], line: int) -> dict:
    (row,) = on_line(events, line)
    return row


def props(row: dict) -> dict | None:
    return None if row["properties"] is None else json.loads(row["properties"])


# -- shape -----------------------------------------------------------------------------------


def test_columns_are_the_event_and_user_fields_then_the_meta_columns(
    con: duckdb.DuckDBPyConnection,
) -> None:
    assert EVENTS_COLUMNS == (
        "event_id",
        "event",
        "user_id",
        "anonymous_id",
        "order_id",
        "item_id",
        "quantity",
        "price",
        "revenue",
        "currency",
        "channel",
        "campaign_id",
        "ts",
        "properties",
        "_line",
        "_error",
        "_raw_line",
    )
    assert USERS_COLUMNS == (
        "user_id",
        "created_at",
        "gender",
        "birth_year",
        "city",
        "region",
        "signup_channel",
        "attributes",
        "email",
        "phone",
        "name",
        "address",
        "_line",
        "_error",
        "_raw_line",
    )
    for sql, columns in ((events_sql("msgs"), EVENTS_COLUMNS), (users_sql("msgs"), USERS_COLUMNS)):
        described = con.execute(f"DESCRIBE {sql}").fetchall()
        assert [(r[0], r[1]) for r in described] == [
            (c, "BIGINT" if c == "_line" else "VARCHAR") for c in columns
        ]


def test_one_row_per_message_and_one_per_product_of_an_order_in_line_order(
    events: list[dict],
) -> None:
    # 40 lines; the 3 products of line 8 give 2 rows more; lines 18 and 39 have 1 product.
    assert len(events) == 42
    assert [e["_line"] for e in events] == sorted(e["_line"] for e in events)
    assert sorted({e["_line"] for e in events}) == list(range(1, 41))
    assert [len(on_line(events, n)) for n in (8, 18, 19, 33, 39)] == [3, 1, 1, 1, 1]


def test_event_names_are_given_for_tracks_and_named_for_the_other_types(
    events: list[dict],
) -> None:
    names = {n: one(events, n)["event"] for n in (1, 2, 4, 5, 6, 7, 9, 10, 11, 30, 37, 40)}
    assert names == {
        1: "Product Viewed",
        2: "page_viewed",
        4: "Product Added to Wishlist",
        5: "Products Searched",
        6: "Video Played",
        7: "identify",
        9: "alias",
        10: "group",
        11: "screen_viewed",
        30: "Email Link Clicked",
        37: "screen_viewed",
        40: "Unsubscribed",
    }
    assert {e["event"] for e in on_line(events, 39)} == {"order completed"}  # as given


# -- order lines -----------------------------------------------------------------------------


def test_an_order_gives_one_row_per_product_with_the_orders_id_and_currency(
    events: list[dict],
) -> None:
    lines = on_line(events, 8)
    fields = ("event_id", "order_id", "item_id", "quantity", "price", "revenue", "currency")
    assert [tuple(r[f] for f in fields) for r in lines] == [
        # The order's revenue (187.7) is the sum of its lines: each line's is its gross.
        ("ajs-oc-008:1", "O-1001", "P-100", "2", "59.9", "119.8", "CNY"),
        ("ajs-oc-008:2", "O-1001", "P-205", "1", "45", "45.0", "CNY"),
        ("ajs-oc-008:3", "O-1001", "SKU-310", "2", "11.45", "22.9", "CNY"),  # no product_id: sku
    ]
    for r in lines:
        assert (r["event"], r["user_id"], r["anonymous_id"]) == (
            "Order Completed",
            "u-1001",
            "anon-7f3a",
        )
        assert (r["campaign_id"], r["ts"], r["_error"]) == (
            "spring_sale",
            "2024-03-01T10:00:02Z",
            None,
        )
    order = {
        "checkout_id": "chk-55",
        "affiliation": "Acme Online",
        "total": 199.7,
        "subtotal": 187.7,
        "shipping": 8,
        "tax": 4,
        "discount": 10,
        "coupon": "SPRING10",
        "page_url": "https://shop.example.cn/checkout/done",
        "page_path": "/checkout/done",
        "page_referrer": "https://www.baidu.com/",
        **UTM,
    }
    assert [props(r) for r in lines] == [
        {
            **order,
            "sku": "SKU-100-RED",
            "name": "Trail Runner",
            "brand": "Acme",
            "category": "Shoes",
            "variant": "red",
        },
        {**order, "sku": "SKU-205", "name": "Canvas Tote", "brand": "Globex", "category": "Bags"},
        # The sku that became the item id is not kept twice.
        {**order, "name": "Wool Socks", "brand": "Acme", "category": "Socks"},
    ]


def test_refunds_and_any_spelling_of_an_order_event_explode(events: list[dict]) -> None:
    fields = (
        "event_id",
        "event",
        "order_id",
        "item_id",
        "quantity",
        "price",
        "currency",
        "properties",
    )
    assert [tuple(r[f] for f in fields) for r in on_line(events, 18)] == [
        ("ajs-or-018:1", "Order Refunded", "O-1001", "P-205", "1", "45", "CNY", None)
    ]
    assert [tuple(r[f] for f in fields) for r in on_line(events, 39)] == [
        ("srv-oc-039:1", "order completed", "O-2003", "P-900", "4", "5", "USD", None)
    ]


def test_an_order_without_products_is_one_row_whose_revenue_falls_back_to_total(
    events: list[dict],
) -> None:
    row = one(events, 19)
    assert (row["event_id"], row["order_id"], row["item_id"], row["revenue"]) == (
        "srv-oc-019",
        "O-2002",  # orderId
        None,
        "88.5",  # no revenue, no subtotal: total
    )
    assert props(row) == {"total": 88.5}


def test_a_list_of_products_explodes_only_for_order_events(events: list[dict]) -> None:
    row = one(events, 33)  # Product List Viewed
    assert (row["event_id"], row["item_id"]) == ("ajs-plv-033", None)
    assert props(row) == {"list_id": "shoes", "category": "Shoes"}


def test_the_event_map_makes_other_names_order_events(con: duckdb.DuckDBPyConnection) -> None:
    purchase = {
        "type": "track",
        "event": "Purchase",
        "messageId": "m1",
        "userId": "u1",
        "timestamp": "2024-03-01T10:00:00Z",
        "properties": {"order_id": "o1", "products": [{"sku": "a"}, {"sku": "b"}]},
    }
    load_messages(con, [purchase], "purchase")
    plain = rows(con, events_sql("purchase"))
    mapped = rows(con, events_sql("purchase", event_map={"Purchase": "order_completed"}))
    assert [(r["event_id"], r["item_id"]) for r in plain] == [("m1", None)]
    assert [(r["event_id"], r["item_id"]) for r in mapped] == [("m1:1", "a"), ("m1:2", "b")]


def test_lines_of_an_order_without_a_message_id_get_ids_from_its_content(
    con: duckdb.DuckDBPyConnection,
) -> None:
    order = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "timestamp": "2024-03-01T10:00:00Z",
        "properties": {"order_id": "o1", "products": [{"sku": "a"}, {"sku": "a"}]},
    }
    load_messages(con, [order], "anonymous_order")
    digest = hashlib.md5(json.dumps(order).encode()).hexdigest()
    assert [r["event_id"] for r in rows(con, events_sql("anonymous_order"))] == [
        f"jz_{digest}:1",
        f"jz_{digest}:2",
    ]


# -- ids -------------------------------------------------------------------------------------


def test_alias_links_the_previous_id_and_identify_carries_both_ids(events: list[dict]) -> None:
    ids = ("event_id", "user_id", "anonymous_id")
    assert tuple(one(events, 9)[k] for k in ids) == ("ajs-al-009", "u-1001", "anon-7f3a")
    assert tuple(one(events, 7)[k] for k in ids) == ("ajs-id-007", "u-1001", "anon-7f3a")
    assert tuple(one(events, 16)[k] for k in ids) == ("ajs-id-016", None, "anon-88")
    assert tuple(one(events, 14)[k] for k in ids) == ("srv-pv-014", None, None)


def test_numeric_ids_keep_their_json_text(events: list[dict]) -> None:
    row = one(events, 15)
    assert (row["event_id"], row["user_id"], row["item_id"], row["price"]) == (
        "900015",
        "12345",
        "7788",
        "10",
    )
    assert one(events, 17)["user_id"] == "67890"


# -- times -----------------------------------------------------------------------------------


def test_timestamps_are_skew_corrected_only_where_segment_corrects_them(
    events: list[dict],
) -> None:
    ts = {n: on_line(events, n)[0]["ts"] for n in (1, 8, 24, 25, 26, 27)}
    assert ts == {
        1: "2024-03-01T09:00:00.000Z",  # originalTimestamp present: already corrected
        8: "2024-03-01T10:00:02Z",  # 10:00:00 + (10:00:07 receivedAt - 10:00:05 sentAt)
        24: "2024-03-01T13:00:00Z",  # no sentAt
        25: "yesterday",  # not a time: left for the validator to refuse
        26: "2024-03-01T13:10:00.250Z",  # no timestamp: receivedAt
        27: "2024-03-01T14:00:01.5Z",  # 22:00:00+08:00 + (14:00:11.5 - 14:00:10)
    }


def test_the_servers_receive_time_stands_in_for_received_at(
    con: duckdb.DuckDBPyConnection,
) -> None:
    message = {
        "type": "track",
        "event": "Cart Viewed",
        "messageId": "m1",
        "anonymousId": "a1",
        "timestamp": "2024-03-01T10:00:00Z",
        "sentAt": "2024-03-01T10:00:05Z",
    }
    load_messages(con, [message, {**message, "messageId": "m2", "timestamp": None}], "http")
    sql = events_sql("http", received_at="2024-03-01T10:00:09Z")
    assert [(r["event_id"], r["ts"]) for r in rows(con, sql)] == [
        ("m1", "2024-03-01T10:00:04Z"),
        ("m2", "2024-03-01T10:00:09Z"),
    ]
    assert [r["ts"] for r in rows(con, events_sql("http"))] == ["2024-03-01T10:00:00Z", None]


@pytest.mark.parametrize("bad", ["", "soon", "2024-13-01T00:00:00Z", "x'); DROP TABLE msgs; --"])
def test_a_received_at_that_is_not_a_time_is_refused(bad: str) -> None:
    with pytest.raises(InputError, match=r"received_at .* is not an ISO 8601 time"):
        events_sql("msgs", received_at=bad)


# -- errors and raw lines --------------------------------------------------------------------


def test_bad_messages_are_errors_with_every_field_null(
    events: list[dict], text: dict[int, str]
) -> None:
    errors = {e["_line"]: e["_error"] for e in events if e["_error"] is not None}
    assert errors == {
        12: "type: 'foo' is not a Segment message type "
        "(track, identify, page, screen, alias, group)",
        13: "not valid JSON",
        22: "type: missing",
        32: "messageId: must be a string or a number, not an object",
    }
    for line in errors:
        row = one(events, line)
        assert all(row[c] is None for c in EVENTS_COLUMNS[:14])
    # A line that never parsed keeps the sources' raw form; a message, its text.
    assert json.loads(one(events, 13)["_raw_line"]) == {"_raw_line": text[13]}
    assert one(events, 12)["_raw_line"] == text[12]


def test_every_row_keeps_its_message_as_the_raw_line(
    events: list[dict], text: dict[int, str]
) -> None:
    for row in events:
        if row["_line"] != 13:
            assert row["_raw_line"] == text[row["_line"]]
    assert {r["_raw_line"] for r in on_line(events, 8)} == {text[8]}


def test_properties_that_are_not_an_object_are_passed_on(events: list[dict]) -> None:
    # For the validator to refuse ("properties: must be a JSON object").
    assert one(events, 31)["properties"] == "P-100"


# -- properties ------------------------------------------------------------------------------


def test_properties_lose_the_keys_that_became_fields_and_gain_the_context(
    events: list[dict],
) -> None:
    row = one(events, 1)
    fields = ("item_id", "quantity", "price", "currency", "channel", "campaign_id")
    assert tuple(row[f] for f in fields) == ("P-100", "1", "59.9", "CNY", "client", "spring_sale")
    assert props(row) == {
        "sku": "SKU-100-RED",
        "category": "Shoes",
        "name": "Trail Runner",
        "brand": "Acme",
        "variant": "red",
        "position": 3,
        "url": "https://shop.example.cn/p/P-100",
        "image_url": "https://cdn.example.cn/P-100.jpg",
        **PAGE_001,
        **UTM,
    }
    assert props(one(events, 36)) == {"name": "Wool Socks"}  # its sku became the item id
    row = one(events, 30)
    assert row["campaign_id"] == "cmp-7"
    assert props(row) == {
        "email_id": "em-123",
        "email_subject": "Spring is here",
        "link_id": "l-2",
        "link_url": "https://shop.example.cn/sale",
    }
    assert props(one(events, 6)) == {
        "video_id": "vid-9",
        "content_asset_id": "a-9",
        "position": 12,
        "total_length": 300,
        "sound": 80,
        "full_screen": False,
    }


def test_pages_and_screens_name_themselves_unless_their_properties_do(
    events: list[dict],
) -> None:
    assert props(one(events, 2)) == {
        "path": "/",
        "referrer": "https://www.baidu.com/",
        "search": "",
        "title": "Acme Shop",
        "url": "https://shop.example.cn/",
        "name": "Home",
        "category": "Landing",
        "page_url": "https://shop.example.cn/",
        "page_path": "/",
        "page_referrer": "https://www.baidu.com/",
    }
    assert props(one(events, 37)) == {"name": "Cart", "category": "Checkout"}
    row = one(events, 11)
    assert (row["item_id"], row["channel"]) == ("P-100", "mobile")
    assert props(row) == {"variation": "b", "name": "Product Detail"}


def test_a_property_of_the_same_name_wins_over_the_context(
    con: duckdb.DuckDBPyConnection,
) -> None:
    message = {
        "type": "page",
        "name": "Sale",
        "messageId": "m1",
        "anonymousId": "a1",
        "timestamp": "2024-03-01T10:00:00Z",
        "properties": {"name": "Own", "utm_source": "own", "title": 'say "hi", {"x": 1}'},
        "context": {"campaign": {"source": "ctx", "medium": "cpc"}, "page": {"url": "u"}},
    }
    load_messages(con, [message], "clash")
    (row,) = rows(con, events_sql("clash"))
    assert props(row) == {
        "name": "Own",
        "utm_source": "own",
        "title": 'say "hi", {"x": 1}',
        "page_url": "u",
        "utm_medium": "cpc",
    }


def test_group_rows_hold_the_group_id_and_traits_that_are_not_personal(
    events: list[dict],
) -> None:
    # name (a company's, but a ...name key) and email are dropped with the personal keys.
    assert props(one(events, 10)) == {
        "industry": "Retail",
        "employees": 120,
        "plan": "enterprise",
        "group_id": "g-42",
    }
    assert props(one(events, 7)) is None  # identify: traits go to users
    assert props(one(events, 9)) is None  # alias


def test_no_event_properties_hold_an_email_address(events: list[dict]) -> None:
    assert [e["_line"] for e in events if e["properties"] and EMAIL.search(e["properties"])] == []
    # Line 20 has one under "email", line 21 one inside a nested object.
    assert props(one(events, 20)) == {
        "method": "wechat",
        "plan": "free",
        "email": "[email]",
        "first_name": "Mei",
        "phone_number": "+86 139 0000 0000",
    }
    assert props(one(events, 21)) == {
        "value": 120,
        "customer": {"contact": "[email]", "tier": "gold"},
    }


# -- users -----------------------------------------------------------------------------------


def test_identify_messages_with_a_user_id_give_users_with_their_personal_data_apart(
    con: duckdb.DuckDBPyConnection, text: dict[int, str]
) -> None:
    users = rows(con, users_sql("msgs"))
    assert [{k: u[k] for k in USERS_COLUMNS if k != "_raw_line"} for u in users] == [
        {
            "user_id": "u-1001",
            "created_at": "2023-11-02T08:15:00Z",
            "gender": "female",
            "birth_year": "1990",  # from birthday
            "city": "Shanghai",
            "region": "SH",
            "signup_channel": None,
            "attributes": '{"plan":"pro","logins":12}',
            "email": "wei.zhang@example.com",
            "phone": "+86 138 0013 8000",
            "name": "Wei Zhang",  # firstName lastName
            "address": "88 Nanjing Rd, Shanghai, SH 200001, CN",
            "_line": 7,
            "_error": None,
        },
        {  # RudderStack: traits in context.traits
            "user_id": "67890",
            "created_at": "2022-01-09",
            "gender": None,
            "birth_year": "1985",
            "city": "Beijing",
            "region": "BJ",
            "signup_channel": "wechat",
            "attributes": '{"vip":true}',  # user_name is personal: dropped
            "email": "li.lei@example.cn",
            "phone": "13900139000",
            "name": "Li Lei",
            "address": "1 Main St, Springfield",
            "_line": 17,
            "_error": None,
        },
        {
            "user_id": "u-2002",
            "created_at": None,
            "gender": None,
            "birth_year": None,
            "city": None,
            "region": None,
            "signup_channel": "app",
            "attributes": '{"plan":"free"}',
            "email": None,
            "phone": None,
            "name": None,
            "address": None,
            "_line": 35,
            "_error": None,
        },
    ]
    assert [u["_raw_line"] for u in users] == [text[7], text[17], text[35]]


def test_identify_messages_without_a_user_id_are_counted(con: duckdb.DuckDBPyConnection) -> None:
    assert con.execute(anonymous_identify_sql("msgs")).fetchall() == [(1,)]  # line 16
    shouted = [
        {"type": "IDENTIFY", "userId": "u7", "traits": {"plan": "pro"}},
        {"type": "Identify", "anonymousId": "a7"},
        {"type": "track", "event": "identify", "userId": "u8"},  # a track named so
    ]
    load_messages(con, shouted, "shouted")
    assert [(u["user_id"], u["attributes"]) for u in rows(con, users_sql("shouted"))] == [
        ("u7", '{"plan":"pro"}')
    ]
    assert con.execute(anonymous_identify_sql("shouted")).fetchall() == [(1,)]


def test_attributes_keep_only_traits_no_personal_data_field_is_named_in(
    con: duckdb.DuckDBPyConnection,
) -> None:
    traits = {
        "plan": "pro",
        "company_size": 50,
        "Ｐｌａｎ２": "wide",
        "E-Mail": "a@b.example",
        "ｅｍａｉｌ": "c@d.example",
        "phoneNumber": "1",
        "Address_Line1": "x",
        "first name": "Wei",
        "userName": "w",
        "nickname": "wz",
        "tags": ["vip", "mailto:e@f.example"],
        "website": "https://wei.example",
    }
    load_messages(con, [{"type": "identify", "userId": "u9", "traits": traits}], "traits")
    ((attributes,),) = con.execute(f"SELECT attributes FROM ({users_sql('traits')})").fetchall()
    kept = json.loads(attributes)
    assert kept == {
        "plan": "pro",
        "company_size": 50,
        "Ｐｌａｎ２": "wide",
        "tags": ["vip", "[email]"],
        "website": "https://wei.example",
    }
    assert sorted(kept) == sorted(k for k in traits if pii_in_name(k) is None)


# -- detection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"type": "track", "event": "Order Completed", "userId": "u1"}, True),
        ({"type": "page", "anonymousId": "a1"}, True),
        ({"type": "alias", "previousId": "a1", "userId": "u1"}, True),
        ({"type": "identify", "messageId": "m1", "traits": {}}, True),
        ({"type": "track", "user_id": "u1", "event": "order_completed"}, False),  # an event row
        ({"type": "purchase", "userId": "u1"}, False),
        ({"type": "Track", "userId": "u1"}, False),
        ({"event": "Order Completed", "userId": "u1"}, False),
        ({"type": "track"}, False),
        (["track"], False),
        ("track", False),
    ],
)
def test_is_segment(obj: object, expected: bool) -> None:
    assert is_segment(obj) is expected


# -- with the validator ----------------------------------------------------------------------


def test_the_validator_types_the_mapped_rows_as_a_csvs(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE TABLE mapped AS {events_sql('msgs')}")
    validator = RowValidator(
        IngestOptions("events", custom_events=True), IngestSettings(), datetime(2024, 3, 2)
    )
    columns = [(c, "BIGINT" if c == "_line" else "VARCHAR") for c in EVENTS_COLUMNS]
    sql = validator.select("segment_messages.jsonl", columns, "mapped", 0, strict=False)
    checked = rows(
        con, f"SELECT _line, event, item_id, quantity, revenue, ts, _reason FROM ({sql})"
    )
    lines = [
        (r["event"], r["item_id"], r["quantity"], r["revenue"]) for r in checked if r["_line"] == 8
    ]
    assert [(e, i, q, round(v, 2)) for e, i, q, v in lines] == [
        ("order_completed", "P-100", 2.0, 119.8),
        ("order_completed", "P-205", 1.0, 45.0),
        ("order_completed", "SKU-310", 2.0, 22.9),
    ]
    by_line = {r["_line"]: r for r in checked}
    assert by_line[6]["event"] == "video_played"  # a custom event
    assert by_line[30]["event"] == "email_clicked"  # the spec's name for it
    assert by_line[27]["ts"] == datetime(2024, 3, 1, 14, 0, 1, 500000)
    reasons = {r["_line"]: r["_reason"] for r in checked if r["_reason"] is not None}
    assert sorted(reasons) == [12, 13, 14, 19, 22, 25, 31, 32]
    assert reasons[14] == "needs a user_id or an anonymous_id"
    assert reasons[19] == "order_completed needs item_id"


# -- any message -----------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), _text)
_emails = st.builds(
    lambda a, b: f"{a}@{b}.example",
    st.from_regex(r"[a-z.]{1,8}", fullmatch=True),
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
)
_values = st.one_of(_scalar, _emails, st.lists(_scalar, max_size=3))
_objects = st.dictionaries(
    st.one_of(_text, st.sampled_from(["product_id", "sku", "price", "name", '"', "{"])),
    _values,
    max_size=5,
)
_messages = st.fixed_dictionaries(
    {
        "type": st.one_of(st.sampled_from(MESSAGE_TYPES), _text),
        "messageId": st.one_of(_text, st.integers(0, 10**12), st.just({"id": 1})),
        "event": st.one_of(
            st.sampled_from(["Order Completed", "Order Refunded", "Product Viewed"]), _text
        ),
        "timestamp": st.sampled_from(["2024-03-01T10:00:00Z", "2024-03-01T10:00:00+08:00", "x"]),
    },
    optional={
        "userId": _text,
        "anonymousId": _text,
        "name": _text,
        "sentAt": st.just("2024-03-01T10:00:05Z"),
        "receivedAt": st.just("2024-03-01T10:00:07Z"),
        "properties": st.one_of(
            _objects,
            _text,
            st.lists(_scalar, max_size=2),
            st.builds(lambda o, p: {**o, "products": p}, _objects, st.lists(_objects, max_size=3)),
        ),
        "traits": _objects,
        "context": st.fixed_dictionaries(
            {},
            optional={
                "page": st.fixed_dictionaries(
                    {}, optional={"url": _text, "path": _text, "referrer": _text}
                ),
                "campaign": st.fixed_dictionaries({}, optional={"name": _text, "source": _text}),
            },
        ),
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(messages=st.lists(_messages, min_size=1, max_size=8))
def test_any_messages_map_to_rows_with_object_properties_and_no_email(
    con: duckdb.DuckDBPyConnection, messages: list[dict]
) -> None:
    load_messages(con, messages, "generated")
    out = rows(con, events_sql("generated"))
    assert sorted({r["_line"] for r in out}) == list(range(1, len(messages) + 1))
    for r in out:
        assert r["_raw_line"] == json.dumps(messages[r["_line"] - 1])
        if r["_error"] is not None:
            assert all(r[c] is None for c in EVENTS_COLUMNS[:14])
        elif r["properties"] is not None and isinstance(
            messages[r["_line"] - 1].get("properties", {}), dict
        ):
            assert isinstance(json.loads(r["properties"]), dict)
            assert not EMAIL.search(r["properties"])


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        # 100 of products, 90 paid: every line gets 90% of its gross.
        ({"revenue": 90}, ["18.0", "72.0"]),
        ({"subtotal": 90, "total": 99}, ["18.0", "72.0"]),  # subtotal: tax and shipping out
        ({"discount": 10}, ["18.0", "72.0"]),
        ({"total": 99}, [None, None]),  # total alone is no product amount: quantity × price
        ({}, [None, None]),
    ],
)
def test_an_orders_lines_share_what_was_paid_for_its_products(
    con: duckdb.DuckDBPyConnection, order: dict, expected: list
) -> None:
    products = [{"product_id": "a", "price": 10, "quantity": 2}, {"product_id": "b", "price": 80}]
    message = {
        "type": "track",
        "event": "Order Completed",
        "messageId": "m",
        "userId": "u",
        "properties": {"order_id": "o", **order, "products": products},
    }
    load_messages(con, [message], "one_order")
    got = rows(con, f"SELECT item_id, revenue FROM ({events_sql('one_order')})")
    assert [r["revenue"] for r in got] == expected
