"""Reading real logs as they are (issue 14): headerless files, epoch units, purchases without
order ids, returns, skipping events, items from the log, and re-ingest as a no-op for the
quarantine and for events ``clean --remove`` moved out."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from jingzhun.errors import InputError
from jingzhun.workspace import Workspace

Write = Callable[..., Path]

TAOBAO = (
    "1,2268318,2520377,pv,1511544070\n"
    "1,2268318,2520377,cart,1511618000\n"
    "1,4365585,2520377,fav,1511596146\n"
    "1,2268318,2520377,buy,1511618120\n"
    "1,3830808,4181361,buy,1511618120\n"
    "100,2971043,4869428,buy,1511680485\n"
)
TAOBAO_COLUMNS = ["user_id", "item_id", "category_id", "event", "ts"]
TAOBAO_EVENTS = {
    "pv": "product_viewed",
    "cart": "product_added",
    "fav": "product_added_to_wishlist",
    "buy": "order_completed",
}


def rows(ws: Workspace, query: str, params: list | None = None) -> list[tuple]:
    return ws.store.sql(query, params).fetchall()


def options(ws: Workspace, batch_id: str) -> dict:
    (text,) = rows(ws, "SELECT options FROM ingest_batches WHERE batch_id = ?", [batch_id])[0]
    return json.loads(text)


# -- headerless files -------------------------------------------------------------------------


def test_columns_name_a_headerless_file_whose_first_line_is_a_row(ws, write) -> None:
    path = write("UserBehavior.csv", TAOBAO)
    r = ws.ingest.files(
        "events", [path], columns=TAOBAO_COLUMNS, event_map=TAOBAO_EVENTS, order_id="user-time"
    )
    assert (r.rows_read, r.inserted, r.quarantined) == (6, 6, 0)
    first = rows(ws, "SELECT user_id, item_id, event, ts FROM events ORDER BY ts LIMIT 1")
    assert first == [("1", "2268318", "product_viewed", datetime(2017, 11, 24, 17, 21, 10))]
    # Unknown columns keep their names in properties, as with a header.
    assert rows(
        ws, "SELECT DISTINCT properties->>'category_id' FROM events WHERE item_id = '2268318'"
    ) == [("2520377",)]
    recorded = options(ws, r.batch_id)
    assert recorded["columns"] == TAOBAO_COLUMNS and recorded["header"] is False


def test_a_header_that_looks_like_data_says_so_and_names_the_option(ws, write) -> None:
    path = write("UserBehavior.csv", TAOBAO)
    with pytest.raises(InputError) as err:
        ws.ingest.files("events", [path])
    assert (
        "UserBehavior.csv: the first line (1,2268318,2520377,pv,1511544070) looks like data"
        in str(err.value)
    )
    assert "--columns" in err.value.hint and "5 columns" in err.value.hint
    assert ws.store.count("events") == 0


def test_a_columns_list_of_the_wrong_width_names_both_counts(ws, write) -> None:
    path = write("UserBehavior.csv", TAOBAO)
    with pytest.raises(InputError, match="--columns gives 4 names but the first line has 5 fields"):
        ws.ingest.files("events", [path], columns=["user_id", "item_id", "event", "ts"])
    assert ws.store.count("ingest_batches") == 0


def test_no_header_names_columns_by_position(ws, write) -> None:
    path = write("e.csv", "u1,product_viewed,i1,2024-01-01\n")
    r = ws.ingest.files(
        "events",
        [path],
        header=False,
        mapping={
            "column_1": "user_id",
            "column_2": "event",
            "column_3": "item_id",
            "column_4": "ts",
        },
    )
    assert r.inserted == 1
    assert rows(ws, "SELECT user_id, item_id FROM events") == [("u1", "i1")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": ["a", "a"]}, "--columns names 'a' twice"),
        ({"columns": ["a", " "]}, "--columns: name 2 is empty"),
        ({"columns": ["a"], "format": "jsonl"}, "--columns applies to CSV and TSV files"),
    ],
)
def test_bad_column_lists_are_refused(ws, write, kwargs, message) -> None:
    path = write("e.csv", "u1,product_viewed,i1,2024-01-01\n")
    with pytest.raises(InputError, match=message):
        ws.ingest.files("events", [path], **kwargs)


def test_columns_on_a_json_lines_file_are_refused_naming_the_file(ws, write) -> None:
    path = write("e.jsonl", '{"event": "page_viewed", "user_id": "u", "ts": "2024-01-01"}\n')
    with pytest.raises(InputError, match=r"e\.jsonl: --columns applies to CSV and TSV files"):
        ws.ingest.files("events", [path], columns=["a"])


# -- epoch units ---------------------------------------------------------------------------------

RETAILROCKET = (
    "timestamp,visitorid,event,itemid,transactionid\n"
    "1433221332117,257597,view,355908,\n"
    "1433221955914,483717,addtocart,253185,\n"
    "1433221337106,951259,transaction,367447,4000\n"
)
RR_MAP = {
    "timestamp": "ts",
    "visitorid": "user_id",
    "itemid": "item_id",
    "transactionid": "order_id",
}
RR_EVENTS = {
    "view": "product_viewed",
    "addtocart": "product_added",
    "transaction": "order_completed",
}


def test_epoch_milliseconds_are_found_from_their_magnitude_and_recorded(ws, write) -> None:
    path = write("events.csv", RETAILROCKET)
    r = ws.ingest.files("events", [path], mapping=RR_MAP, event_map=RR_EVENTS)
    assert (r.inserted, r.quarantined, r.ts_unit) == (3, 0, "ms")
    assert rows(ws, "SELECT ts FROM events WHERE user_id = '257597'") == [
        (datetime(2015, 6, 2, 5, 2, 12, 117000),)
    ]
    assert options(ws, r.batch_id)["ts_unit"] == "ms"
    assert r.to_dict()["ts_unit"] == "ms"


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("1433221332", "s", datetime(2015, 6, 2, 5, 2, 12)),
        ("1433221332117", "ms", datetime(2015, 6, 2, 5, 2, 12, 117000)),
        ("1433221332117654", "us", datetime(2015, 6, 2, 5, 2, 12, 117654)),
        ("1433221332117654321", "ns", datetime(2015, 6, 2, 5, 2, 12, 117654)),
    ],
)
def test_each_unit_by_magnitude_and_when_given(ws, write, value, unit, expected) -> None:
    path = write("e.csv", f"event,user_id,ts\npage_viewed,u1,{value}\n")
    found = ws.ingest.files("events", [path])
    assert found.ts_unit == unit
    given = ws.ingest.files(
        "events", [write("f.csv", f"event,user_id,ts\npage_viewed,u2,{value}\n")], ts_unit=unit
    )
    assert given.inserted == 1
    assert rows(ws, "SELECT DISTINCT ts FROM events") == [(expected,)]


def test_a_wrong_unit_quarantines_with_the_option_named(ws, write) -> None:
    path = write("events.csv", RETAILROCKET)
    r = ws.ingest.files("events", [path], mapping=RR_MAP, event_map=RR_EVENTS, ts_unit="s")
    assert r.quarantined == 3
    reasons = {x for (x,) in rows(ws, "SELECT reason FROM quarantine")}
    assert reasons == {
        f"ts: '{v}' is not a timestamp (use ISO 8601 or epoch seconds, or pass --ts-format or --ts-unit)"
        for v in ("1433221332117", "1433221955914", "1433221337106")
    }


def test_iso_timestamps_keep_no_unit(ws, write) -> None:
    r = ws.ingest.files("events", [write("e.csv", "event,user_id,ts\npage_viewed,u1,2024-01-01\n")])
    assert r.ts_unit is None and "ts_unit" not in r.to_dict()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ts_unit": "sec"}, "--ts-unit 'sec' is not valid"),
        ({"ts_unit": "ms", "ts_format": "%Y"}, "--ts-unit and --ts-format both say how to read ts"),
        ({"order_id": "invoice"}, "--order-id 'invoice' is not valid"),
        ({"returns": ["negative"]}, "--returns 'negative' is not valid"),
        ({"returns": ["cancel-prefix="]}, "--returns 'cancel-prefix=' is not valid"),
        ({"only_events": ["pv"]}, "--only-events: 'pv' is not a known event"),
        ({"skip_events": ["x"], "only_events": ["page_viewed"]}, "both choose events"),
        (
            {"item_columns": {"colour": "c"}},
            "--item-columns colour=c: 'colour' is not a field of items",
        ),
    ],
)
def test_every_new_option_refuses_a_bad_value_listing_the_valid_ones(
    ws, write, kwargs, message
) -> None:
    path = write("e.csv", "event,user_id,ts\npage_viewed,u1,2024-01-01\n")
    with pytest.raises(InputError) as err:
        ws.ingest.files("events", [path], **kwargs)
    assert message in str(err.value)
    if "is not valid" in message or "not a known event" in message or "not a field" in message:
        assert "use one of" in err.value.hint or "known:" in err.value.hint
    assert ws.store.count("ingest_batches") == 0


def test_event_options_on_users_are_refused(ws, write) -> None:
    path = write("u.csv", "user_id\nu1\n")
    with pytest.raises(InputError, match="--order-id applies to events, not users"):
        ws.ingest.files("users", [path], order_id="row")


# -- purchases without an order id ---------------------------------------------------------------


def test_purchases_without_order_ids_are_quarantined_naming_the_option(ws, write) -> None:
    r = ws.ingest.files(
        "events",
        [write("UserBehavior.csv", TAOBAO)],
        columns=TAOBAO_COLUMNS,
        event_map=TAOBAO_EVENTS,
    )
    assert (r.inserted, r.quarantined) == (3, 3)
    reasons = {x for (x,) in rows(ws, "SELECT reason FROM quarantine")}
    assert reasons == {
        "order_completed needs order_id (for a log without order ids: --order-id row or user-time)"
    }


def test_user_time_makes_one_order_of_one_users_purchases_at_one_time(ws, write) -> None:
    r = ws.ingest.files(
        "events",
        [write("UserBehavior.csv", TAOBAO)],
        columns=TAOBAO_COLUMNS,
        event_map=TAOBAO_EVENTS,
        order_id="user-time",
    )
    orders = rows(
        ws,
        "SELECT user_id, count(*), count(DISTINCT order_id) FROM events "
        "WHERE event = 'order_completed' GROUP BY user_id ORDER BY user_id",
    )
    assert orders == [("1", 2, 1), ("100", 1, 1)]
    assert options(ws, r.batch_id)["order_id"] == "user-time"
    ws.profiles.build()
    freq = dict(rows(ws, "SELECT user_id, frequency FROM profiles"))
    assert freq == {"1": 1, "100": 1}


def test_row_makes_each_purchase_its_own_order_and_ids_are_stable(ws, write) -> None:
    path = write("UserBehavior.csv", TAOBAO)
    kwargs = {"columns": TAOBAO_COLUMNS, "event_map": TAOBAO_EVENTS, "order_id": "row"}
    ws.ingest.files("events", [path], **kwargs)
    orders = rows(ws, "SELECT count(DISTINCT order_id) FROM events WHERE event = 'order_completed'")
    assert orders == [(3,)]
    again = ws.ingest.files("events", [path], **kwargs)
    assert (again.inserted, again.duplicates) == (0, 6)


# -- returns -------------------------------------------------------------------------------------

RETAIL = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom\n"
    "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom\n"
    "C536379,D,Discount,-1,12/1/2010 9:41,27.50,14527,United Kingdom\n"
    "C536383,71053,WHITE METAL LANTERN,-2,12/1/2010 9:49,3.39,17850,United Kingdom\n"
    "536390,22941,CHRISTMAS LIGHTS,-4,12/1/2010 10:19,8.50,17511,United Kingdom\n"
)
RETAIL_MAP = {
    "InvoiceNo": "order_id",
    "StockCode": "item_id",
    "Quantity": "quantity",
    "InvoiceDate": "ts",
    "UnitPrice": "price",
    "CustomerID": "user_id",
}


def retail(ws: Workspace, path: Path, returns: list[str], **kwargs) -> object:
    return ws.ingest.files(
        "events",
        [path],
        mapping=RETAIL_MAP,
        constants={"event": "order_completed"},
        ts_format="%m/%d/%Y %H:%M",
        returns=returns,
        **kwargs,
    )


def test_cancellations_become_refunds_linked_to_their_order(ws, write) -> None:
    r = retail(ws, write("retail.csv", RETAIL), ["cancel-prefix=C", "negative-quantity"])
    assert (r.inserted, r.quarantined, r.refunds_linked) == (5, 0, 1)
    refunds = rows(
        ws,
        "SELECT user_id, order_id, item_id, quantity, revenue, properties->>'refund_id' "
        "FROM events WHERE event = 'order_refunded' ORDER BY user_id",
    )
    by_user = {u: (o, q, rev, ref) for u, o, _, q, rev, ref in refunds}
    assert by_user["14527"] == ("C536379", 1.0, 27.5, None)
    assert by_user["17850"][0] == "536365" and by_user["17850"][3] == "C536383"
    assert by_user["17850"][1] == 2.0 and by_user["17850"][2] == pytest.approx(6.78)
    assert by_user["17511"] == ("536390", 4.0, 34.0, None)
    ws.profiles.build()
    monetary = dict(rows(ws, "SELECT user_id, monetary FROM profiles WHERE user_id = '17850'"))
    assert monetary["17850"] == pytest.approx(6 * 2.55 + 6 * 3.39 - 2 * 3.39)


def test_without_the_negative_quantity_rule_such_lines_stay_quarantined(ws, write) -> None:
    r = retail(ws, write("retail.csv", RETAIL), ["cancel-prefix=C"])
    assert (r.inserted, r.quarantined) == (4, 1)
    assert rows(ws, "SELECT line_no, reason FROM quarantine") == [(6, "quantity: '-4' is below 0")]


def test_without_returns_every_cancellation_is_quarantined(ws, write) -> None:
    r = retail(ws, write("retail.csv", RETAIL), [])
    assert (r.inserted, r.quarantined) == (2, 3)


# -- keeping only what you want ------------------------------------------------------------------


def test_skipped_events_are_counted_never_lost(ws, write) -> None:
    path = write("UserBehavior.csv", TAOBAO)
    kwargs = {"columns": TAOBAO_COLUMNS, "event_map": TAOBAO_EVENTS, "order_id": "row"}
    r = ws.ingest.files("events", [path], skip_events=["product_added_to_wishlist"], **kwargs)
    assert (r.rows_read, r.inserted, r.skipped, r.duplicates, r.quarantined) == (6, 5, 1, 0, 0)
    only = ws.ingest.files("events", [path], only_events=["order_completed"], **kwargs)
    # the purchases are stored already; the other three are skipped
    assert (only.rows_read, only.inserted, only.skipped, only.duplicates) == (6, 0, 3, 3)
    assert rows(ws, "SELECT skipped FROM ingest_batches ORDER BY started_at") == [(1,), (3,)]
    assert ws.store.count("quarantine") == 0


# -- items from the log --------------------------------------------------------------------------


def test_item_columns_fill_the_items_table_and_keep_other_attributes(ws, write) -> None:
    ws.ingest.files("items", [write("items.csv", "item_id,title\n2268318,Lamp\n")])
    r = ws.ingest.files(
        "events",
        [write("UserBehavior.csv", TAOBAO)],
        columns=TAOBAO_COLUMNS,
        event_map=TAOBAO_EVENTS,
        order_id="user-time",
        item_columns={"category": "category_id"},
    )
    assert r.related["items"] == {
        "rows": 4,
        "inserted": 4,
        "updated": 1,
        "duplicates": 0,
        "quarantined": 0,
    }
    items = dict((i, (t, c)) for i, t, c in rows(ws, "SELECT item_id, title, category FROM items"))
    assert items["2268318"] == ("Lamp", "2520377")  # the catalog's title kept
    assert items["2971043"] == (None, "4869428")
    ws.profiles.build()
    top = rows(ws, "SELECT top_categories[1] FROM profiles WHERE user_id = '1'")
    assert top == [("2520377",)]


def test_item_columns_read_event_fields_too_and_validate_as_items(ws, write) -> None:
    r = retail(
        ws,
        write("retail.csv", RETAIL + "536400,X1,Bad price,1,12/2/2010 9:00,-3,17850,UK\n"),
        ["cancel-prefix=C", "negative-quantity"],
        item_columns={"title": "Description", "price": "UnitPrice"},
    )
    # the line with a negative price is quarantined as an event; its item is never seen
    assert r.quarantined == 1
    assert rows(ws, "SELECT title, price FROM items WHERE item_id = '71053'") == [
        ("WHITE METAL LANTERN", 3.39)
    ]


# -- re-ingest is a no-op, for the quarantine too --------------------------------------------


def test_reingest_quarantines_nothing_new_and_identical_bad_rows_once(ws, write) -> None:
    text = "event,user_id,ts\npage_viewed,u1,2024-01-01\npage_viewed,u1,nope\npage_viewed,u1,nope\n"
    path = write("e.csv", text)
    first = ws.ingest.files("events", [path])
    assert (first.inserted, first.quarantined, first.duplicates) == (1, 1, 1)
    again = ws.ingest.files("events", [path])
    assert (again.inserted, again.quarantined, again.duplicates) == (0, 0, 3)
    assert ws.store.count("quarantine") == 1
    # Other content is quarantined.
    other = ws.ingest.files("events", [write("f.csv", "event,user_id,ts\npage_viewed,u2,nope\n")])
    assert other.quarantined == 1


def test_events_removed_by_clean_stay_out_and_a_replay_brings_them_back(ws, write) -> None:
    lines = ["event_id,event,user_id,order_id,item_id,quantity,price,ts"]
    for i in range(40):
        lines.append(f"o{i},order_completed,u{i},ord{i},i1,1,{10 + i % 5},2024-01-0{1 + i % 5}")
    lines.append("big,order_completed,u99,ord99,i1,1,1000000,2024-01-03")
    path = write("orders.csv", "\n".join(lines) + "\n")
    ws.ingest.files("events", [path])
    report = ws.ingest.clean(remove=["outlier_order"])
    assert report.removed["total"] == 1
    again = ws.ingest.files("events", [path])
    assert (again.inserted, again.previously_removed, again.duplicates) == (0, 1, 40)
    assert again.rows_read == 41
    assert rows(ws, "SELECT count(*) FROM events WHERE event_id = 'big'") == [(0,)]
    replayed = ws.ingest.quarantine.replay()
    assert sum(r.resolved for r in replayed) == 1
    assert rows(ws, "SELECT count(*) FROM events WHERE event_id = 'big'") == [(1,)]
    third = ws.ingest.files("events", [path])
    assert (third.inserted, third.previously_removed, third.duplicates) == (0, 0, 41)
