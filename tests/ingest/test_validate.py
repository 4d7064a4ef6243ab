"""Row validation: every rule's reason, typing, defaults, derived ids, extras, users and items.

Each rule test ingests one good row and one bad row: the bad row is quarantined with exactly
the documented reason and its record number, the good row is stored untouched.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingzhun.config import IngestSettings, Settings
from jingzhun.contracts.events import EVENT_NAMES
from jingzhun.errors import InputError
from jingzhun.store import Store
from jingzhun.workspace import Workspace
from tests.conftest import plain_pii

Write = Callable[..., Path]

HEADER = "event,user_id,anonymous_id,order_id,item_id,quantity,price,ts"
GOOD_ROW = "product_viewed,good,,,i0,,,2024-01-01"
UNKNOWN_HINT = "; map it with --event-map NAME=EVENT or [ingest.event_map]"
ORDER_HINT = " (for a log without order ids: --order-id row or user-time)"


def quarantined(ws: Workspace, batch_id: str) -> list[tuple[int | None, str]]:
    return ws.store.sql(
        "SELECT line_no, reason FROM quarantine WHERE batch_id = ? ORDER BY line_no", [batch_id]
    ).fetchall()


def one(ws: Workspace, query: str, params: list | None = None) -> tuple:
    rows = ws.store.sql(query, params).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def parquet(path: Path, table: pa.Table) -> str:
    pq.write_table(table, path)
    return str(path)


# -- one rule per row ------------------------------------------------------------------------

LONG_ID = "x" * 257
RULES = [
    # (bad row, reason)
    (",u1,,,i1,,,2024-01-01", "event: missing"),
    ("product_viewed,u1,,,i1,,,", "ts: missing"),
    (
        "product_viewed,u1,,,i1,,,yesterday",
        "ts: 'yesterday' is not a timestamp (use ISO 8601 or epoch seconds, or pass --ts-format or --ts-unit)",
    ),
    (
        "product_viewed,u1,,,i1,,,2024-02-30",
        "ts: '2024-02-30' is not a timestamp (use ISO 8601 or epoch seconds, or pass --ts-format or --ts-unit)",
    ),
    (
        "product_viewed,u1,,,i1,,,1989-12-31T23:59:59Z",
        "ts: '1989-12-31 23:59:59' is before 1990-01-01",
    ),
    ("product_viewed,u1,,,i1,,,0", "ts: '1970-01-01 00:00:00' is before 1990-01-01"),
    ("product_added,u1,,,i1,-1,5,2024-01-01", "quantity: '-1' is below 0"),
    ("product_added,u1,,,i1,1,-0.01,2024-01-01", "price: '-0.01' is below 0"),
    ("product_added,u1,,,i1,NaN,5,2024-01-01", "quantity: must be a finite number"),
    ("product_added,u1,,,i1,1,nan,2024-01-01", "price: must be a finite number"),
    ("product_added,u1,,,i1,1,inf,2024-01-01", "price: must be a finite number"),
    ("product_added,u1,,,i1,1,-Infinity,2024-01-01", "price: must be a finite number"),
    ("product_added,u1,,,i1,two,5,2024-01-01", "quantity: 'two' is not a number"),
    ("product_added,u1,,,i1,1,5 CNY,2024-01-01", "price: '5 CNY' is not a number"),
    (f"product_viewed,{LONG_ID},,,i1,,,2024-01-01", "user_id: longer than 256 characters"),
    (f"product_viewed,u1,,,{'中' * 257},,,2024-01-01", "item_id: longer than 256 characters"),
    ('product_viewed,"   ",,,i1,,,2024-01-01', "user_id: blank"),
    ('product_viewed,u1,,,"  ",,,2024-01-01', "item_id: blank"),
    ("purchase,u1,,o1,i1,,,2024-01-01", "event: 'purchase' is not a known event" + UNKNOWN_HINT),
    ("page_viewed,,,,,,,2024-01-01", "needs a user_id or an anonymous_id"),
    ("order_completed,u1,,,i1,1,5,2024-01-01", "order_completed needs order_id" + ORDER_HINT),
    ("order_completed,u1,,o1,,1,5,2024-01-01", "order_completed needs item_id"),
    (
        "order_completed,u1,,,,1,5,2024-01-01",
        "order_completed needs item_id; order_completed needs order_id" + ORDER_HINT,
    ),
    ("order_refunded,u1,,,i1,1,5,2024-01-01", "order_refunded needs order_id" + ORDER_HINT),
    ("product_viewed,u1,,,,,,2024-01-01", "product_viewed needs item_id"),
    ("product_added,u1,,,,1,5,2024-01-01", "product_added needs item_id"),
    # (A line of empty fields holds no row and is skipped; one value makes it a row.)
    (",,,,,,5,", "event: missing; ts: missing; needs a user_id or an anonymous_id"),
    (
        "product_added,u1,,,i1,-1,x,2024-01-01",
        "quantity: '-1' is below 0; price: 'x' is not a number",
    ),
]


@pytest.mark.parametrize(("row", "reason"), RULES, ids=[r for _, r in RULES])
def test_rule_quarantines_the_row_with_its_reason(
    ws: Workspace, write: Write, row: str, reason: str
) -> None:
    text = f"{HEADER}\n{GOOD_ROW}\n{row}\n"
    result = ws.ingest("events", [write("rule.csv", text)])

    assert (result.rows_read, result.inserted, result.quarantined) == (2, 1, 1)
    assert quarantined(ws, result.batch_id) == [(3, reason)]
    assert one(ws, "SELECT event, user_id, item_id, ts FROM events") == (
        "product_viewed",
        "good",
        "i0",
        datetime(2024, 1, 1),
    )


def test_quarantined_row_keeps_its_raw_values(ws: Workspace, write: Write) -> None:
    result = ws.ingest(
        "events", [write("raw.csv", f"{HEADER}\nproduct_added,u1,,,i1,two,,2024-01-01\n")]
    )

    raw = one(ws, "SELECT raw FROM quarantine WHERE batch_id = ?", [result.batch_id])[0]
    assert json.loads(raw) == {
        "event": "product_added",
        "user_id": "u1",
        "anonymous_id": None,
        "order_id": None,
        "item_id": "i1",
        "quantity": "two",
        "price": None,
        "ts": "2024-01-01",
    }


@pytest.mark.parametrize("blank", ["\t", "\n", " \t "])
def test_whitespace_only_ids_are_blank(ws: Workspace, write: Write, blank: str) -> None:
    text = f'{HEADER}\n{GOOD_ROW}\nproduct_viewed,"{blank}",,,i1,,,2024-01-01\n'
    result = ws.ingest("events", [write("blank.csv", text)])

    assert quarantined(ws, result.batch_id) == [(3, "user_id: blank")]


def test_id_of_exactly_256_characters_is_accepted(ws: Workspace, write: Write) -> None:
    text = f"{HEADER}\nproduct_viewed,{'中' * 256},,,{'i' * 256},,,2024-01-01\n"
    result = ws.ingest("events", [write("ids.csv", text)])

    assert (result.inserted, result.quarantined) == (1, 0)
    assert one(ws, "SELECT length(user_id), length(item_id) FROM events") == (256, 256)


# -- timestamps ------------------------------------------------------------------------------


def test_future_timestamps(ws: Workspace, write: Write) -> None:
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    soon = now + timedelta(hours=23)
    late = now + timedelta(hours=25)
    text = (
        f"{HEADER}\n"
        f"product_viewed,u1,,,i1,,,{soon.isoformat()}Z\n"
        f"product_viewed,u2,,,i1,,,{late.isoformat()}Z\n"
    )
    result = ws.ingest("events", [write("future.csv", text)])

    assert quarantined(ws, result.batch_id) == [
        (3, f"ts: '{late.isoformat(sep=' ')}' is more than 24 hours in the future")
    ]
    assert one(ws, "SELECT user_id, ts FROM events") == ("u1", soon)


def test_future_tolerance_is_configurable(tmp_path: Path) -> None:
    settings_ = Settings(ingest=IngestSettings(max_future_hours=0, min_timestamp="2000-01-01"))
    path = tmp_path / "t.csv"
    soon = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
    path.write_text(
        f"{HEADER}\nproduct_viewed,u1,,,i1,,,{soon.isoformat()}\nproduct_viewed,u2,,,i1,,,1999-12-31\n"
    )
    with Workspace(Store.open(tmp_path / "s.duckdb", settings_), settings_) as ws:
        result = ws.ingest("events", [str(path)])
        assert quarantined(ws, result.batch_id) == [
            (2, f"ts: '{soon.isoformat(sep=' ')}' is more than 0 hours in the future"),
            (3, "ts: '1999-12-31 00:00:00' is before 2000-01-01"),
        ]


TIMESTAMPS = [
    ("2024-03-01", datetime(2024, 3, 1)),
    ("2024-03-01 12:30:00", datetime(2024, 3, 1, 12, 30)),
    ("2024-03-01T12:30:00Z", datetime(2024, 3, 1, 12, 30)),
    ("2024-03-01T12:30:00.123456Z", datetime(2024, 3, 1, 12, 30, 0, 123456)),
    ("2024-03-01T08:00:00+08:00", datetime(2024, 3, 1, 0, 0)),
    ("2024-03-01 10:00:00-05:00", datetime(2024, 3, 1, 15, 0)),
    ("2024-03-01T23:30:00-02:30", datetime(2024, 3, 2, 2, 0)),
    ("1709296200", datetime(2024, 3, 1, 12, 30)),
    ("1709296200.5", datetime(2024, 3, 1, 12, 30, 0, 500000)),
    (" 1709296200 ", datetime(2024, 3, 1, 12, 30)),
]


@pytest.mark.parametrize(("text", "expected"), TIMESTAMPS, ids=[t for t, _ in TIMESTAMPS])
def test_timestamps_are_parsed_to_utc(
    ws: Workspace, write: Write, text: str, expected: datetime
) -> None:
    result = ws.ingest(
        "events", [write("ts.csv", f'{HEADER}\nproduct_viewed,u1,,,i1,,,"{text}"\n')]
    )

    assert result.quarantined == 0, quarantined(ws, result.batch_id)
    assert one(ws, "SELECT ts FROM events") == (expected,)


def test_parquet_timestamps_and_epochs(ws: Workspace, tmp_path: Path) -> None:
    """A zoned timestamp, a naive one (UTC) and epoch seconds of the same instant agree."""
    base = pa.table(
        {"event": ["product_viewed"] * 2, "user_id": ["u1", "u2"], "item_id": ["i1", "i2"]}
    )
    moment = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    columns = {
        "zoned": pa.array([moment, moment], pa.timestamp("us", tz="Asia/Shanghai")),
        "naive": pa.array([datetime(2024, 3, 1, 8, 0)] * 2, pa.timestamp("ms")),
        "epoch": pa.array([1709280000, 1709280000], pa.int64()),
        "epoch-float": pa.array([1709280000.0, 1709280000.0], pa.float64()),
    }
    results = {
        name: ws.ingest(
            "events", [parquet(tmp_path / f"{name}.parquet", base.append_column("ts", ts))]
        )
        for name, ts in columns.items()
    }

    assert ws.store.sql("SELECT user_id, ts FROM events ORDER BY user_id").fetchall() == [
        ("u1", datetime(2024, 3, 1, 8, 0)),
        ("u2", datetime(2024, 3, 1, 8, 0)),
    ]
    # Same content, so the same derived ids: every later file is all duplicates.
    assert [(r.inserted, r.duplicates, r.quarantined) for r in results.values()] == [(2, 0, 0)] + [
        (0, 2, 0)
    ] * 3


def test_ts_format(ws: Workspace, write: Write) -> None:
    text = f"{HEADER}\nproduct_viewed,u1,,,i1,,,31/12/2023 23:30\nproduct_viewed,u2,,,i1,,,2023-12-31\n"
    result = ws.ingest("events", [write("fmt.csv", text)], ts_format="%d/%m/%Y %H:%M")

    assert one(ws, "SELECT user_id, ts FROM events") == ("u1", datetime(2023, 12, 31, 23, 30))
    assert quarantined(ws, result.batch_id) == [
        (
            3,
            "ts: '2023-12-31' is not a timestamp (use ISO 8601 or epoch seconds, or pass --ts-format or --ts-unit)",
        )
    ]


def test_ts_format_with_offset_is_converted_to_utc(ws: Workspace, write: Write) -> None:
    text = f"{HEADER}\nproduct_viewed,u1,,,i1,,,01.03.2024 08:00 +0800\n"
    ws.ingest("events", [write("fmt.csv", text)], ts_format="%d.%m.%Y %H:%M %z")

    assert one(ws, "SELECT ts FROM events") == (datetime(2024, 3, 1, 0, 0),)


def test_ts_format_without_directives_is_refused(ws: Workspace, write: Write) -> None:
    with pytest.raises(InputError, match="has no % directives"):
        ws.ingest("events", [write("fmt.csv", f"{HEADER}\n{GOOD_ROW}\n")], ts_format="dd/mm/yyyy")
    assert ws.store.count("ingest_batches") == 0


# -- event names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Order Completed", "order_completed"),
        ("product-viewed", "product_viewed"),
        ("  PAGE VIEWED  ", "page_viewed"),
        ("Product.Added", "product_added"),
        ("checkout_started", "checkout_started"),
    ],
)
def test_event_names_are_normalised(ws: Workspace, write: Write, given: str, expected: str) -> None:
    text = f'{HEADER}\n"{given}",u1,,o1,i1,,,2024-01-01\n'
    result = ws.ingest("events", [write("names.csv", text)])

    assert result.quarantined == 0, quarantined(ws, result.batch_id)
    assert one(ws, "SELECT event FROM events") == (expected,)


def test_event_map_maps_custom_names(ws: Workspace, write: Write) -> None:
    text = (
        f"{HEADER}\n"
        "purchase,u1,,o1,i1,2,5,2024-01-01\n"  # mapped by its normalised name
        "VIEW,u2,,,i1,,,2024-01-01\n"  # normalised "view" is mapped
        "Add To Cart,u3,,,i1,,,2024-01-01\n"  # mapped by its exact text
        "click,u4,,,i1,,,2024-01-01\n"  # not mapped
    )
    result = ws.ingest(
        "events",
        [write("map.csv", text)],
        event_map={
            "purchase": "order_completed",
            "view": "product_viewed",
            "Add To Cart": "product_added",
        },
    )

    assert ws.store.sql("SELECT user_id, event FROM events ORDER BY user_id").fetchall() == [
        ("u1", "order_completed"),
        ("u2", "product_viewed"),
        ("u3", "product_added"),
    ]
    assert quarantined(ws, result.batch_id) == [
        (5, "event: 'click' is not a known event" + UNKNOWN_HINT)
    ]


def test_event_map_from_settings(tmp_path: Path) -> None:
    settings_ = Settings(ingest=IngestSettings(event_map={"buy": "order_completed"}))
    path = tmp_path / "e.csv"
    path.write_text(f"{HEADER}\nbuy,u1,,o1,i1,1,3,2024-01-01\n")
    with Workspace(Store.open(tmp_path / "s.duckdb", settings_), settings_) as ws:
        ws.ingest("events", [str(path)])
        assert one(ws, "SELECT event, revenue FROM events") == ("order_completed", 3.0)


def test_event_map_to_an_unknown_event_is_refused(ws: Workspace, write: Write) -> None:
    with pytest.raises(InputError, match="'buy' is not a known event"):
        ws.ingest(
            "events", [write("e.csv", f"{HEADER}\n{GOOD_ROW}\n")], event_map={"purchase": "buy"}
        )
    assert ws.store.count("ingest_batches") == 0


# -- defaults --------------------------------------------------------------------------------


def test_quantity_and_revenue_defaults(ws: Workspace, write: Write) -> None:
    text = (
        "event,user_id,order_id,item_id,quantity,price,revenue,ts\n"
        "product_viewed,u1,,i1,,4,,2024-01-01\n"
        "product_added,u2,,i1,,4,,2024-01-01\n"
        "product_removed,u3,,i1,,4,,2024-01-01\n"
        "order_completed,u4,o4,i1,,4,,2024-01-01\n"
        "order_completed,u5,o5,i1,3,4,,2024-01-01\n"
        "order_completed,u6,o6,i1,3,4,10,2024-01-01\n"
        "order_refunded,u7,o7,i1,2,4,,2024-01-01\n"
        "order_completed,u8,o8,i1,2,,,2024-01-01\n"
        "checkout_started,u9,,,2,4,,2024-01-01\n"
    )
    result = ws.ingest("events", [write("defaults.csv", text)])

    assert result.quarantined == 0
    assert ws.store.sql(
        "SELECT user_id, quantity, price, revenue FROM events ORDER BY user_id"
    ).fetchall() == [
        ("u1", None, 4.0, None),  # a view has no quantity
        ("u2", 1.0, 4.0, None),  # cart lines default to 1, no revenue
        ("u3", 1.0, 4.0, None),
        ("u4", 1.0, 4.0, 4.0),  # order line: 1 × 4
        ("u5", 3.0, 4.0, 12.0),  # 3 × 4
        ("u6", 3.0, 4.0, 10.0),  # given revenue (after discount) is kept
        ("u7", 2.0, 4.0, 8.0),  # refunds too
        ("u8", 2.0, None, None),  # no price, no revenue
        ("u9", 2.0, 4.0, None),  # not an order line
    ]


def test_constants_and_mapping(ws: Workspace, write: Write) -> None:
    text = "kind,customer,sku,when,user_id\nproduct_viewed,c1,s1,2024-01-01,other\n"
    ws.ingest(
        "events",
        [write("m.csv", text)],
        mapping={"kind": "event", "customer": "user_id", "sku": "item_id", "when": "ts"},
        constants={"channel": "app", "currency": "CNY"},
    )

    # The file's own user_id column was displaced by the mapping and stays an extra.
    assert one(
        ws, "SELECT event, user_id, item_id, ts, channel, currency, properties FROM events"
    ) == (
        "product_viewed",
        "c1",
        "s1",
        datetime(2024, 1, 1),
        "app",
        "CNY",
        '{"user_id":"other"}',
    )


def test_map_of_a_missing_column_names_it(ws: Workspace, write: Write) -> None:
    text = "event,user_id,item_id,ts\nproduct_viewed,u1,i1,2024-01-01\n"
    with pytest.raises(InputError) as info:
        ws.ingest("events", [write("m.csv", text)], mapping={"cust": "user_id"})

    assert "no file has a column 'cust'" in info.value.message


def test_map_onto_an_unknown_field_is_refused(ws: Workspace, write: Write) -> None:
    with pytest.raises(InputError, match="'customer' is not a field of events"):
        ws.ingest(
            "events", [write("m.csv", f"{HEADER}\n{GOOD_ROW}\n")], mapping={"user_id": "customer"}
        )
    assert ws.store.count("ingest_batches") == 0


# -- derived event ids -----------------------------------------------------------------------


def derived_id(*fields: str) -> str:
    """The documented recipe: md5 of the content fields joined by chr(31)."""
    return "jz_" + hashlib.md5("\x1f".join(fields).encode()).hexdigest()


def test_event_without_event_id_gets_a_deterministic_id(ws: Workspace, write: Write) -> None:
    text = f"{HEADER}\nproduct_viewed,u1,,,i1,,,2024-01-01\norder_completed,u2,,o2,i2,2,2.5,2024-01-02T10:00:00Z\n"
    path = write("ids.csv", text)
    first = ws.ingest("events", [path])
    again = ws.ingest("events", [path])

    ids = [r[0] for r in ws.store.sql("SELECT event_id FROM events ORDER BY user_id").fetchall()]
    assert ids == [
        derived_id(
            "product_viewed", "u1", "", "", "i1", "", "", "", "", "", "", "2024-01-01 00:00:00"
        ),
        # quantity and revenue as given (before their defaults): revenue was not given
        derived_id(
            "order_completed",
            "u2",
            "",
            "o2",
            "i2",
            "2.0",
            "2.5",
            "",
            "",
            "",
            "",
            "2024-01-02 10:00:00",
        ),
    ]
    assert (first.inserted, again.inserted, again.duplicates) == (2, 0, 2)
    assert ws.store.count("events") == 2


def test_csv_and_parquet_of_the_same_rows_get_the_same_ids(
    ws: Workspace, write: Write, tmp_path: Path
) -> None:
    csv_text = (
        "event,user_id,order_id,item_id,quantity,price,ts,note\n"
        "order_completed,u1,o1,i1,2,9.9,2024-05-01T10:00:00Z,a\n"
        "product_viewed,u2,,i2,,19.5,2024-05-02T11:30:00+08:00,b\n"
    )
    table = pa.table(
        {
            "event": ["order_completed", "product_viewed"],
            "user_id": ["u1", "u2"],
            "order_id": ["o1", None],
            "item_id": ["i1", "i2"],
            "quantity": pa.array([2, None], pa.int64()),
            "price": [9.9, 19.5],
            "ts": pa.array(
                [datetime(2024, 5, 1, 10), datetime(2024, 5, 2, 3, 30)],
                pa.timestamp("us", tz="UTC"),
            ),
            "note": ["a", "b"],
        }
    )
    from_csv = ws.ingest("events", [write("same.csv", csv_text)])
    from_parquet = ws.ingest("events", [parquet(tmp_path / "same.parquet", table)])

    assert (from_csv.inserted, from_parquet.inserted, from_parquet.duplicates) == (2, 0, 2)


def test_given_event_ids_are_kept_and_deduplicated(ws: Workspace, write: Write) -> None:
    text = (
        "event_id,event,user_id,item_id,ts\n"
        "e1,product_viewed,u1,i1,2024-01-01\n"
        "e1,product_viewed,u2,i2,2024-01-02\n"  # same id later in the batch: a duplicate
        "e2,product_viewed,u1,i1,2024-01-01\n"  # same content, other id: stored
    )
    result = ws.ingest("events", [write("given.csv", text)])

    assert (result.inserted, result.duplicates) == (2, 1)
    assert ws.store.sql("SELECT event_id, user_id FROM events ORDER BY event_id").fetchall() == [
        ("e1", "u1"),
        ("e2", "u1"),
    ]


# -- extras ----------------------------------------------------------------------------------


def test_unknown_event_columns_land_in_properties(ws: Workspace, write: Write) -> None:
    text = (
        "event,user_id,item_id,ts,color,size,properties\n"
        'product_viewed,u1,i1,2024-01-01,red,L,"{""page"": ""/p/1""}"\n'
        "product_viewed,u2,i1,2024-01-01,,,\n"
        "product_viewed,u3,i1,2024-01-01,blue,,\n"
        "product_viewed,u4,i1,2024-01-01,,,[1]\n"
    )
    result = ws.ingest("events", [write("extras.csv", text)])

    assert ws.store.sql("SELECT user_id, properties FROM events ORDER BY user_id").fetchall() == [
        ("u1", '{"page":"/p/1","color":"red","size":"L"}'),
        ("u2", None),
        ("u3", '{"color":"blue"}'),
    ]
    assert quarantined(ws, result.batch_id) == [(5, "properties: must be a JSON object")]


def test_unknown_parquet_columns_keep_their_json_types(ws: Workspace, tmp_path: Path) -> None:
    table = pa.table(
        {
            "event": ["page_viewed", "page_viewed"],
            "user_id": ["u1", "u2"],
            "ts": ["2024-01-01", "2024-01-02"],
            "score": [1.5, float("nan")],
            "count": [3, None],
            "flag": [True, False],
        }
    )
    ws.ingest("events", [parquet(tmp_path / "x.parquet", table)])

    assert ws.store.sql("SELECT user_id, properties FROM events ORDER BY user_id").fetchall() == [
        ("u1", '{"score":1.5,"count":3,"flag":true}'),
        ("u2", '{"flag":false}'),  # NaN is not JSON: left out
    ]


# -- users -----------------------------------------------------------------------------------

USERS = (
    "user_id,created_at,gender,birth_year,city,email,phone,name,address,vip\n"
    "u1,2023-01-01,f,1990,Beijing,li@example.cn,13800000000,Li Lei,1 Road,yes\n"
    "u2,2023-01-02,m,1850,Shanghai,wang@example.cn,,,,\n"
    "u3,2023-01-03,m,1980,Shanghai,not-an-email,,,,\n"
    "u4,2023-01-04,,,Xian,,,,,no\n"
)


def test_users_pii_goes_to_pii_never_to_users(ws: Workspace, write: Write) -> None:
    result = ws.ingest("users", [write("users.csv", USERS)])

    assert (result.rows_read, result.inserted, result.quarantined) == (4, 2, 2)
    assert quarantined(ws, result.batch_id) == [
        (3, "birth_year: '1850' is below 1900"),
        (4, "email: 'not-an-email' is not an email address"),
    ]
    assert ws.store.sql(
        "SELECT user_id, created_at, gender, birth_year, city, attributes FROM users ORDER BY user_id"
    ).fetchall() == [
        ("u1", datetime(2023, 1, 1), "f", 1990, "Beijing", '{"vip":"yes"}'),
        ("u4", datetime(2023, 1, 4), None, None, "Xian", '{"vip":"no"}'),
    ]
    assert [
        r for r in plain_pii(ws.store, ["email", "phone", "name", "address"]) if r[1] is not None
    ] == [("u1", "li@example.cn", "13800000000", "Li Lei", "1 Road")]
    columns = {
        r[0]
        for r in ws.store.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'"
        ).fetchall()
    }
    assert not columns & {"email", "phone", "name", "address"}
    text = ws.store.sql("SELECT string_agg(CAST(users AS VARCHAR), '|') FROM users").fetchone()[0]
    for secret in ("li@example.cn", "13800000000", "Li Lei", "1 Road"):
        assert secret not in text


@pytest.mark.parametrize(
    ("birth_year", "reason"),
    [
        ("1899", "birth_year: '1899' is below 1900"),
        ("1990.5", "birth_year: '1990.5' is not a whole number"),
        ("nineteen", "birth_year: 'nineteen' is not a whole number"),
        (
            str(datetime.now(UTC).year + 1),
            f"birth_year: '{datetime.now(UTC).year + 1}' is above {datetime.now(UTC).year}",
        ),
    ],
)
def test_users_birth_year(ws: Workspace, write: Write, birth_year: str, reason: str) -> None:
    result = ws.ingest(
        "users", [write("u.csv", f"user_id,birth_year\nok,1990\nbad,{birth_year}\n")]
    )

    assert quarantined(ws, result.batch_id) == [(3, reason)]
    assert ws.store.sql("SELECT user_id, birth_year FROM users").fetchall() == [("ok", 1990)]


def test_users_need_a_user_id_column(ws: Workspace, write: Write) -> None:
    with pytest.raises(InputError, match="missing required column 'user_id'"):
        ws.ingest("users", [write("u.csv", "customer,city\nc1,Beijing\n")])


# -- items -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("true", True),
        ("false", False),
        ("TRUE", True),
        ("False", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("no", False),
        ("Y", True),
        ("n", False),
        ("", True),  # empty: the default
    ],
)
def test_items_active_parses_booleans(
    ws: Workspace, write: Write, given: str, expected: bool
) -> None:
    result = ws.ingest("items", [write("items.csv", f"item_id,active\ni1,{given}\n")])

    assert result.quarantined == 0
    assert one(ws, "SELECT active FROM items") == (expected,)


def test_items_active_defaults_to_true_and_bad_values_are_quarantined(
    ws: Workspace, write: Write
) -> None:
    text = "item_id,title,price,stock,active,color\ni1,Tea,12.5,3,maybe,red\ni2,Cup,8,0,no,\n"
    result = ws.ingest("items", [write("items.csv", text)])
    ws.ingest("items", [write("more.csv", "item_id,title\ni3,Pot\ni2,Mug\n")])

    assert quarantined(ws, result.batch_id) == [(2, "active: 'maybe' is not true or false")]
    assert ws.store.sql(
        "SELECT item_id, title, price, stock, active, attributes FROM items ORDER BY item_id"
    ).fetchall() == [
        ("i2", "Mug", 8.0, 0, False, None),  # a file without the column keeps the stored value
        ("i3", "Pot", None, None, True, None),  # a new item without the column is active
    ]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("i1,-1,1", "price: '-1' is below 0"),
        ("i1,1,-2", "stock: '-2' is below 0"),
        ("i1,1,2.5", "stock: '2.5' is not a whole number"),
        ("i1,NaN,1", "price: must be a finite number"),
    ],
)
def test_items_number_rules(ws: Workspace, write: Write, row: str, reason: str) -> None:
    result = ws.ingest("items", [write("items.csv", f"item_id,price,stock\nok,1,1\n{row}\n")])

    assert quarantined(ws, result.batch_id) == [(3, reason)]
    assert ws.store.sql("SELECT item_id FROM items").fetchall() == [("ok",)]


# -- Parquet NaN (DuckDB trusted min/max statistics, which leave NaN out) ----------------------


def test_nan_in_parquet_is_quarantined(ws: Workspace, tmp_path: Path) -> None:
    nan = float("nan")
    table = pa.table(
        {
            "event": ["order_completed"] * 5,
            "user_id": [f"u{i}" for i in range(5)],
            "order_id": [f"o{i}" for i in range(5)],
            "item_id": ["i1"] * 5,
            "ts": pa.array([datetime(2024, 1, 1)] * 5, pa.timestamp("us", tz="UTC")),
            "price": [1.0, nan, 2.0, 3.0, math.inf],
            "quantity": [1.0, 1.0, nan, 2.0, 1.0],
        }
    )
    path = tmp_path / "nan.parquet"
    pq.write_table(table, path, write_statistics=True)
    result = ws.ingest("events", [str(path)])

    assert quarantined(ws, result.batch_id) == [
        (2, "price: must be a finite number"),
        (3, "quantity: must be a finite number"),
        (5, "price: must be a finite number"),
    ]
    assert ws.store.sql(
        "SELECT user_id, quantity, price, revenue FROM events ORDER BY user_id"
    ).fetchall() == [
        ("u0", 1.0, 1.0, 1.0),
        ("u3", 2.0, 3.0, 6.0),
    ]


def test_nan_item_price_in_parquet_is_quarantined(ws: Workspace, tmp_path: Path) -> None:
    table = pa.table({"item_id": ["i1", "i2", "i3"], "price": [1.0, float("nan"), 2.0]})
    result = ws.ingest("items", [parquet(tmp_path / "items.parquet", table)])

    assert quarantined(ws, result.batch_id) == [(2, "price: must be a finite number")]
    assert ws.store.sql("SELECT item_id, price FROM items ORDER BY item_id").fetchall() == [
        ("i1", 1.0),
        ("i3", 2.0),
    ]


# -- users and items: merge ------------------------------------------------------------------


def test_reingesting_the_same_users_counts_duplicates(ws: Workspace, write: Write) -> None:
    text = "user_id,city,vip\nu1,Beijing,yes\nu2,Xian,no\n"
    first = ws.ingest("users", [write("u.csv", text)])
    again = ws.ingest("users", [write("u.csv", text)])

    assert (first.inserted, first.updated) == (2, 0)
    assert (again.inserted, again.duplicates, again.updated) == (0, 2, 0)
    assert ws.store.count("users") == 2


def test_later_users_file_updates_changed_columns_only(ws: Workspace, write: Write) -> None:
    ws.ingest(
        "users",
        [write("a.csv", "user_id,city,gender,vip,tier\nu1,Beijing,f,yes,gold\nu2,Xian,m,no,\n")],
    )
    later = ws.ingest(
        "users", [write("b.csv", "user_id,city,tier\nu1,Hangzhou,silver\nu2,Xian,\nu3,Wuhan,\n")]
    )

    # u1 changed, u2 did not, u3 is new.
    assert (later.rows_read, later.inserted, later.updated, later.duplicates) == (3, 2, 1, 1)
    assert ws.store.sql(
        "SELECT user_id, city, gender, attributes FROM users ORDER BY user_id"
    ).fetchall() == [
        ("u1", "Hangzhou", "f", '{"vip":"yes","tier":"silver"}'),  # gender kept, attributes merged
        ("u2", "Xian", "m", '{"vip":"no"}'),
        ("u3", "Wuhan", None, None),
    ]


def test_last_row_per_user_wins_within_a_batch(ws: Workspace, write: Write) -> None:
    text = "user_id,city,tier\nu1,Beijing,gold\nu2,Xian,\nu1,Chengdu,\nu1,Nanjing,bronze\n"
    result = ws.ingest("users", [write("u.csv", text)])

    assert (result.rows_read, result.inserted, result.duplicates) == (4, 2, 2)
    assert ws.store.sql(
        "SELECT user_id, city, attributes FROM users ORDER BY user_id"
    ).fetchall() == [
        ("u1", "Nanjing", '{"tier":"bronze"}'),
        ("u2", "Xian", None),
    ]


def test_pii_change_alone_counts_as_an_update(ws: Workspace, write: Write) -> None:
    ws.ingest("users", [write("a.csv", "user_id,city,email\nu1,Beijing,a@example.cn\n")])
    later = ws.ingest("users", [write("b.csv", "user_id,email\nu1,b@example.cn\n")])

    assert (later.inserted, later.updated) == (1, 1)
    assert plain_pii(ws.store) == [("u1", "b@example.cn")]
    assert ws.store.sql("SELECT user_id, city FROM users").fetchall() == [("u1", "Beijing")]


def test_items_merge(ws: Workspace, write: Write) -> None:
    ws.ingest("items", [write("a.csv", "item_id,title,price,color\ni1,Tea,10,red\ni2,Cup,5,\n")])
    later = ws.ingest("items", [write("b.csv", "item_id,price,size\ni1,12,L\ni2,5,\n")])

    assert (later.inserted, later.updated, later.duplicates) == (1, 1, 1)
    assert ws.store.sql(
        "SELECT item_id, title, price, active, attributes FROM items ORDER BY item_id"
    ).fetchall() == [
        ("i1", "Tea", 12.0, True, '{"color":"red","size":"L"}'),
        ("i2", "Cup", 5.0, True, None),
    ]


# -- property: nothing crashes, every row is accounted for ------------------------------------

_TRICKY = [
    "",
    " ",
    "NULL",
    "null",
    "\\N",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "-0",
    "0",
    "1e308",
    "1e999",
    "-1e-320",
    "0x1F",
    "1_000",
    "١٢٣",
    "12,5",
    "2024-01-01",
    "2024-02-30",
    "2024-01-01T25:00:00Z",
    "1704067200",
    "99999999999",
    "1704067200.123456789",
    "+08:00",
    "infinity",
    "epoch",
    "today",
    "'",
    '"',
    "\\",
    "x" * 300,
    "中" * 257,
    "a\nb",
    "\r",
    "\t",
    ";",
    "--",
    "' OR 1=1 --",
    "😀",
    "\u200b",
    "\ufeff",
]
_text = st.one_of(
    st.sampled_from(_TRICKY),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24),
)
_event = st.sampled_from([*sorted(EVENT_NAMES), "purchase", "Order Completed", "", " "])
_row = st.fixed_dictionaries(
    {
        "event_id": st.one_of(st.just(""), _text),
        "event": _event,
        "user_id": _text,
        "anonymous_id": _text,
        "order_id": _text,
        "item_id": _text,
        "quantity": _text,
        "price": _text,
        "revenue": _text,
        "ts": _text,
        "extra": _text,
    }
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(_row, min_size=1, max_size=8), ts_format=st.sampled_from([None, "%d/%m/%Y %H:%M"])
)
def test_random_text_never_crashes_and_every_row_is_accounted_for(
    ws: Workspace, tmp_path: Path, rows: list[dict[str, str]], ts_format: str | None
) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL, lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / "random.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")

    result = ws.ingest("events", [str(path)], ts_format=ts_format)

    assert result.rows_read == len(rows)
    assert result.rows_read == result.inserted + result.duplicates + result.quarantined
    stored = ws.store.sql(
        "SELECT count(*) FROM events WHERE batch_id = ?", [result.batch_id]
    ).fetchone()[0]
    lines = [
        r[0]
        for r in ws.store.sql(
            "SELECT line_no FROM quarantine WHERE batch_id = ?", [result.batch_id]
        ).fetchall()
    ]
    assert stored == result.inserted
    assert len(lines) == result.quarantined == len(set(lines))
    assert all(2 <= line <= len(rows) + 1 for line in lines)
    # What went in is well-formed.
    bad = ws.store.sql(
        "SELECT count(*) FROM events WHERE batch_id = ? AND (NOT isfinite(coalesce(price, 0)) "
        "OR coalesce(price, 0) < 0 OR coalesce(quantity, 0) < 0 OR ts < TIMESTAMP '1990-01-01' "
        "OR (user_id IS NULL AND anonymous_id IS NULL) OR length(coalesce(user_id, '')) > 256)",
        [result.batch_id],
    ).fetchone()[0]
    assert bad == 0


# -- headers name fields as a person reads them; personal data never becomes an extra ----------
# (issue 12: 'Email,user_id,email' put the second address into users.attributes, unvalidated)

HEADER_CLASHES = [
    # (kind, header, row, the two columns the error names)
    (
        "events",
        "event,user_id,User__ID,ts",
        "product_viewed,u1,u2,2024-01-01",
        ("user_id", "User__ID"),
    ),
    (
        "events",
        "event,ts,user_id,user - id",
        "product_viewed,2024-01-01,u1,u2",
        ("user_id", "user - id"),
    ),
    (
        "events",
        "event,ts,Item_ID,item-id",
        "product_viewed,2024-01-01,i1,i2",
        ("Item_ID", "item-id"),
    ),
    ("users", "user_id,ＥＭＡＩＬ,email", "u1,a@x.com,b@x.com", ("ＥＭＡＩＬ", "email")),
    ("users", "user_id,Birth Year,birth-year", "u1,1990,1991", ("Birth Year", "birth-year")),
    ("items", "item_id,Title,_title_", "i1,a,b", None),  # '_title_' is no field: an extra
    ("items", "item_id,Title,TITLE", "i1,a,b", ("Title", "TITLE")),
    ("items", "item_id,Stock,stock_", "i1,1,2", None),
    ("items", "item_id, Stock ,s-t-o-c-k,STOCK", "i1,1,2,3", ("Stock", "STOCK")),
]


@pytest.mark.parametrize(("kind", "header", "row", "named"), HEADER_CLASHES)
def test_two_headers_for_one_field_are_an_error_naming_both(
    ws: Workspace, write: Write, kind: str, header: str, row: str, named: tuple[str, str] | None
) -> None:
    path = write(f"{kind}.csv", f"{header}\n{row}\n")
    if named is None:
        ws.ingest(kind, [path])
        return
    with pytest.raises(InputError) as info:
        ws.ingest(kind, [path])
    message = str(info.value)
    assert str(path) in message and all(repr(n) in message for n in named), message
    assert ws.store.count(kind) == 0 and ws.store.count("quarantine") == 0


def test_json_keys_that_differ_only_in_case_are_an_error_not_a_lost_value(
    ws: Workspace, write: Write
) -> None:
    """Line 2's 'email' was silently dropped (DuckDB read it as 'email_1') and u2 reached pii
    without its address."""
    path = write(
        "users.jsonl",
        '{"user_id": "u1", "Email": "a@x.com"}\n{"user_id": "u2", "email": "b@x.com"}\n',
    )
    with pytest.raises(InputError, match=r"JSON keys 'Email' and 'email' \(line 2\)"):
        ws.ingest("users", [path])
    assert ws.store.count("users") == 0 and ws.store.count("pii") == 0


def test_parquet_columns_that_differ_only_in_case_are_an_error(
    ws: Workspace, tmp_path: Path
) -> None:
    """DuckDB reads a Parquet file's second 'email' as 'email_1' and an unnamed column as
    'C3': both went into users.attributes."""
    table = pa.table({"user_id": ["u1"], "Email": ["a@x.com"], "email": ["b@x.com"]})
    with pytest.raises(InputError, match="'Email' and 'email' differ only in case"):
        ws.ingest("users", [parquet(tmp_path / "u.parquet", table)])
    table = pa.table({"user_id": ["u1"], "": ["b@x.com"]})
    with pytest.raises(InputError, match="column '' cannot name a column"):
        ws.ingest("users", [parquet(tmp_path / "v.parquet", table)])
    assert ws.store.count("users") == 0 and ws.store.count("pii") == 0


@pytest.mark.parametrize(
    ("header", "column", "field"),
    [
        ("user_id,E-Mail", "E-Mail", "email"),
        ("user_id,email_address", "email_address", "email"),
        ("user_id,Mobile Phone", "Mobile Phone", "phone"),
        ("user_id,first_name", "first_name", "name"),
        ("user_id,HomeAddress", "HomeAddress", "address"),
        ("user_id,ｅｍａｉｌ２", "ｅｍａｉｌ２", "email"),
    ],
)
def test_a_header_naming_personal_data_never_lands_in_attributes(
    ws: Workspace, write: Write, header: str, column: str, field: str
) -> None:
    path = write("users.csv", f"{header}\nu1,secret@x.com\n")
    with pytest.raises(InputError) as info:
        ws.ingest("users", [path])
    assert f"column {column!r} looks like personal data ({field})" in str(info.value)
    assert f"--map {column}={field}" in str(info.value)
    assert ws.store.count("users") == 0
    # Mapped, it goes where personal data goes.
    ws.ingest("users", [path], mapping={column: field})
    assert [r[1:] for r in plain_pii(ws.store, [field])] == [("secret@x.com",)]
    assert one(ws, "SELECT attributes FROM users") == (None,)


def test_a_json_key_naming_personal_data_is_refused_too(ws: Workspace, write: Write) -> None:
    path = write("users.jsonl", '{"user_id": "u1", "contact_email": "secret@x.com"}\n')
    with pytest.raises(InputError, match="'contact_email' looks like personal data"):
        ws.ingest("users", [path])
    assert ws.store.count("users") == 0


def test_a_column_pushed_aside_by_map_is_not_kept_as_personal_data(
    ws: Workspace, write: Write
) -> None:
    """--map Mail=email left the file's own 'email' column as an extra in attributes."""
    path = write("users.csv", "user_id,Mail,email\nu1,a@x.com,b@x.com\n")
    with pytest.raises(InputError, match="another column is mapped to email"):
        ws.ingest("users", [path], mapping={"Mail": "email"})
    assert ws.store.count("users") == 0


def test_events_and_items_keep_name_columns_as_extras(ws: Workspace, write: Write) -> None:
    """Only users have personal-data fields: a product's or a page's name is not one."""
    ws.ingest("items", [write("items.csv", "item_id,brand_name\ni1,Acme\n")])
    assert json.loads(one(ws, "SELECT attributes FROM items")[0]) == {"brand_name": "Acme"}
    ws.ingest(
        "events", [write("e.csv", "event,user_id,ts,page_name\npage_viewed,u1,2024-01-01,Home\n")]
    )
    assert json.loads(one(ws, "SELECT properties FROM events")[0]) == {"page_name": "Home"}


def test_an_invalid_utf8_id_is_quarantined_naming_the_field_only(
    ws: Workspace, write: Write
) -> None:
    """It said 'user_id: missing; user_id: invalid UTF-8': the id was given, just not text."""
    path = write("users.csv", b"user_id,city\n\xff\xfeu1,SH\nu2,BJ\n")
    result = ws.ingest("users", [path])
    assert quarantined(ws, result.batch_id) == [(2, "user_id: invalid UTF-8")]
    assert one(ws, "SELECT user_id FROM users") == ("u2",)


def test_a_json_chunk_without_a_required_key_is_quarantined(ws: Workspace, write: Write) -> None:
    """No line of the chunk had 'ts' (or 'event'): a NOT NULL constraint traceback."""
    path = write("e.jsonl", '{"event": "page_viewed", "user_id": "u1"}\n')
    result = ws.ingest("events", [path])
    assert quarantined(ws, result.batch_id) == [(1, "ts: missing")]
    path = write("u.jsonl", '{"city": "SH"}\n')
    result = ws.ingest("users", [path])
    assert quarantined(ws, result.batch_id) == [(1, "user_id: missing")]
    assert ws.store.count("events") == 0 and ws.store.count("users") == 0
