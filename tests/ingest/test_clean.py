"""The cleaning report: outlier orders, bursts, content duplicates, missing rates, flags, remove."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jingzhun.errors import InputError
from jingzhun.ingest.quarantine import Selection
from jingzhun.workspace import Workspace

Write = Callable[..., Path]

HEADER = "event_id,event,user_id,anonymous_id,item_id,order_id,quantity,price,revenue,currency,ts,properties"
#: Order values: ordinary ones around 100, one of 100 000 (two lines), none below.
ORDER_VALUES = [100, 120, 90, 110, 105, 95, 130, 80, 115, 100, 98, 102]


def shop_rows() -> list[str]:
    rows = [
        f"o{i},order_completed,u{i},,i1,ord{i},1,{v},,CNY,2024-03-0{1 + i % 9} 10:00:00,"
        for i, v in enumerate(ORDER_VALUES)
    ]
    # The huge order: two lines, 50 000 each.
    rows.append("big1,order_completed,whale,,i1,ordBIG,10,5000,,CNY,2024-03-05 10:00:00,")
    rows.append("big2,order_completed,whale,,i2,ordBIG,1,50000,,CNY,2024-03-05 10:00:00,")
    # A bot: 100 product views within one clock minute.
    rows += [
        f"b{k:03d},product_viewed,,bot1,i{k % 5},,,,,,2024-03-05 12:00:{k * 0.5:06.3f},"
        + '"{""ua"": ""crawler""}"'
        for k in range(100)
    ]
    # A shopper: 10 views in ten minutes.
    rows += [
        f"h{k},product_viewed,,human1,i{k % 5},,,,,,2024-03-05 12:{k:02d}:00," for k in range(10)
    ]
    # Two events identical except their event_id.
    rows.append("d1,page_viewed,u1,,,,,,,,2024-03-06 09:00:00,")
    rows.append("d2,page_viewed,u1,,,,,,,,2024-03-06 09:00:00,")
    return rows


#: One ordinary order, so that the shop has an order to judge.
ORDER_CSV = "event,user_id,order_id,item_id,price,ts\norder_completed,u0,o0,i0,10,2024-01-01\n"


@pytest.fixture
def shop_ws(ws: Workspace, write: Write) -> Workspace:
    result = ws.ingest(
        "events", [write("events.csv", HEADER + "\n" + "\n".join(shop_rows()) + "\n")]
    )
    assert (result.inserted, result.quarantined) == (126, 0)
    return ws


def flagged(ws: Workspace, flag: str) -> list[str]:
    return [
        r[0]
        for r in ws.store.sql(
            "SELECT event_id FROM event_flags WHERE flag = ? ORDER BY event_id", [flag]
        ).fetchall()
    ]


def events_snapshot(ws: Workspace) -> list[tuple]:
    return ws.store.sql(
        "SELECT * EXCLUDE (event_key, received_at, batch_id) FROM events ORDER BY event_id"
    ).fetchall()


# -- outliers --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["mad", "iqr"])
def test_huge_order_is_an_outlier(shop_ws: Workspace, method: str) -> None:
    report = shop_ws.clean(outlier_method=method)

    outliers = report.outliers
    assert outliers["method"] == method
    assert outliers["threshold"] == (3.5 if method == "mad" else 3.0)
    assert (outliers["orders"], outliers["outliers"], outliers["high"], outliers["low"]) == (
        13,
        1,
        1,
        0,
    )
    assert [e["order_id"] for e in outliers["examples"]] == ["ordBIG"]
    assert outliers["examples"][0]["value"] == 100000.0
    assert flagged(shop_ws, "outlier_order") == ["big1", "big2"]
    detail = shop_ws.store.sql(
        "SELECT DISTINCT detail FROM event_flags WHERE flag = 'outlier_order'"
    ).fetchall()
    assert len(detail) == 1 and detail[0][0].startswith("order ordBIG worth 100000.0 (score ")


def test_outlier_threshold_override(shop_ws: Workspace) -> None:
    report = shop_ws.clean(outlier_method="iqr", outlier_threshold=1000)

    assert report.outliers["outliers"] == 0
    assert flagged(shop_ws, "outlier_order") == []


def test_no_orders_no_outliers(ws: Workspace, write: Write) -> None:
    ws.ingest("events", [write("e.csv", "event,user_id,ts\npage_viewed,u1,2024-01-01\n")])

    report = ws.clean()

    assert report.outliers == {
        "method": "mad",
        "threshold": 3.5,
        "orders": 0,
        "outliers": 0,
        "high": 0,
        "low": 0,
        "examples": [],
    }
    assert report.flagged == {"outlier_order": 0, "bot_burst": 0, "content_duplicate": 0}


def test_no_orders_report_only(ws: Workspace, write: Write) -> None:
    ws.ingest("events", [write("e.csv", "event,user_id,ts\npage_viewed,u1,2024-01-01\n")])

    report = ws.clean(flag=False)

    assert report.outliers == {
        "method": "mad",
        "threshold": 3.5,
        "orders": 0,
        "outliers": 0,
        "high": 0,
        "low": 0,
        "examples": [],
    }


# -- bursts ----------------------------------------------------------------------------------


def test_bot_burst_and_normal_visitor(shop_ws: Workspace) -> None:
    report = shop_ws.clean()

    assert report.bursts == {
        "threshold_per_minute": 30,
        "actors": 1,
        "minutes": 1,
        "events": 100,
        "top": [{"actor": "anon:bot1", "minutes": 1, "events": 100, "peak_per_minute": 100}],
    }
    assert flagged(shop_ws, "bot_burst") == [f"b{k:03d}" for k in range(100)]
    assert shop_ws.store.sql(
        "SELECT DISTINCT detail FROM event_flags WHERE flag = 'bot_burst'"
    ).fetchall() == [("100 events in the minute 2024-03-05 12:00",)]


@pytest.mark.parametrize(("n", "burst"), [(30, False), (31, True)])
def test_burst_threshold_is_more_than_n_per_minute(
    ws: Workspace, write: Write, n: int, burst: bool
) -> None:
    rows = "".join(f"page_viewed,u1,2024-01-01 08:15:{k:02d}\n" for k in range(n))
    # The same number again, spread over two minutes, is never a burst.
    rows += "".join(f"page_viewed,u2,2024-01-01 08:{15 + k % 2}:{k // 2:02d}\n" for k in range(n))
    ws.ingest("events", [write("e.csv", "event,user_id,ts\n" + rows)])
    ws.ingest("events", [write("order.csv", ORDER_CSV)])  # see test_no_orders_no_outliers

    report = ws.clean()

    assert report.bursts["actors"] == (1 if burst else 0)
    assert report.flagged["bot_burst"] == (n if burst else 0)


# -- duplicates and missing values -----------------------------------------------------------


def test_content_duplicates(shop_ws: Workspace) -> None:
    report = shop_ws.clean()

    assert report.duplicates["content_duplicates"] == 1
    assert report.duplicates["content_duplicate_rate"] == round(1 / 126, 6)
    assert report.duplicates["ingest"] == {
        "events": {"rows_read": 126, "duplicates": 0, "rate": 0.0}
    }
    assert flagged(shop_ws, "content_duplicate") == ["d2"]
    assert shop_ws.store.sql(
        "SELECT detail FROM event_flags WHERE flag = 'content_duplicate'"
    ).fetchall() == [("same visitor, event, item, order and time as d1",)]


def test_ingest_duplicate_rate(ws: Workspace, write: Write) -> None:
    path = write(
        "e.csv",
        "event_id,event,user_id,ts\ne1,page_viewed,u1,2024-01-01\ne1,page_viewed,u1,2024-01-01\n",
    )
    ws.ingest("events", [path])
    ws.ingest("events", [path])

    assert ws.clean(flag=False).duplicates["ingest"] == {
        "events": {"rows_read": 4, "duplicates": 3, "rate": 0.75}
    }


def test_missing_rates_are_exact(ws: Workspace, write: Write) -> None:
    ws.ingest(
        "events",
        [
            write(
                "e.csv",
                "event,user_id,anonymous_id,item_id,ts\n"
                "product_viewed,u1,,i1,2024-01-01\n"
                "product_viewed,,a2,i2,2024-01-02\n"
                "page_viewed,,a3,,2024-01-03\n"
                "page_viewed,u4,a4,,2024-01-04\n",
            )
        ],
    )
    ws.ingest("users", [write("u.csv", "user_id,city,gender\nu1,Beijing,\nu2,,\nu3,Xian,f\n")])

    report = ws.clean(flag=False)
    missing = {
        (m["table"], m["column"]): (m["rows"], m["missing"], m["rate"]) for m in report.missing
    }

    assert missing[("events", "user_id")] == (4, 2, 0.5)
    assert missing[("events", "anonymous_id")] == (4, 1, 0.25)
    assert missing[("events", "item_id")] == (4, 2, 0.5)
    assert missing[("events", "event")] == (4, 0, 0.0)
    assert missing[("events", "order_id")] == (4, 4, 1.0)
    assert missing[("users", "city")] == (3, 1, round(1 / 3, 6))
    assert missing[("users", "gender")] == (3, 2, round(2 / 3, 6))
    assert missing[("items", "title")] == (0, 0, 0.0)
    # Bookkeeping columns are not reported.
    assert not {
        c for t, c in missing if c in ("batch_id", "event_key", "received_at", "updated_at")
    }


# -- flags -----------------------------------------------------------------------------------


def test_flags_are_replaced_on_every_run(shop_ws: Workspace) -> None:
    first = shop_ws.clean()
    rows_first = shop_ws.store.sql("SELECT event_id, flag FROM event_flags ORDER BY ALL").fetchall()
    second = shop_ws.clean()
    rows_second = shop_ws.store.sql(
        "SELECT event_id, flag FROM event_flags ORDER BY ALL"
    ).fetchall()

    assert (
        first.flagged
        == second.flagged
        == {"outlier_order": 2, "bot_burst": 100, "content_duplicate": 1}
    )
    assert rows_first == rows_second
    assert len(rows_second) == len(set(rows_second)) == 103


def test_flag_false_writes_nothing(shop_ws: Workspace) -> None:
    report = shop_ws.clean(flag=False)

    assert report.flagged == {}
    assert shop_ws.store.count("event_flags") == 0
    assert report.bursts["actors"] == 1  # the report itself is still made


def test_flags_follow_the_data(shop_ws: Workspace) -> None:
    shop_ws.clean()
    shop_ws.store.sql(
        "DELETE FROM events WHERE anonymous_id = 'bot1' AND event_id >= 'b080'"
    )  # 80 left

    report = shop_ws.clean()

    assert report.flagged["bot_burst"] == 80
    assert flagged(shop_ws, "bot_burst") == [f"b{k:03d}" for k in range(80)]


# -- remove ----------------------------------------------------------------------------------


def test_remove_bot_bursts_moves_them_to_quarantine(shop_ws: Workspace) -> None:
    before = events_snapshot(shop_ws)

    report = shop_ws.clean(remove=("bot_burst",))

    assert report.removed == {"bot_burst": 100, "total": 100}
    assert shop_ws.store.sql(
        "SELECT count(*) FROM events WHERE anonymous_id = 'bot1'"
    ).fetchone() == (0,)
    assert shop_ws.store.count("events") == 26
    assert [r for r in before if r[0] not in {f"b{k:03d}" for k in range(100)}] == events_snapshot(
        shop_ws
    )
    rows = shop_ws.quarantine_rows(limit=None)
    assert len(rows) == 100
    assert set(rows["source"]) == {"clean"}
    assert rows["reason"].str.startswith("removed by clean: bot_burst (").all()
    # Flags of removed events go with them; the others stay.
    assert flagged(shop_ws, "bot_burst") == []
    assert flagged(shop_ws, "outlier_order") == ["big1", "big2"]


def test_replaying_removed_events_restores_them(shop_ws: Workspace) -> None:
    before = events_snapshot(shop_ws)
    shop_ws.clean(remove=("bot_burst", "outlier_order"))
    assert shop_ws.store.count("events") == 24

    results = shop_ws.quarantine_replay(Selection(reason="removed by clean"))

    assert [(r.rows_read, r.inserted, r.quarantined, r.resolved) for r in results] == [
        (102, 102, 0, 102)
    ]
    assert events_snapshot(shop_ws) == before
    assert shop_ws.store.sql(
        "SELECT count(*) FROM quarantine WHERE resolved_at IS NULL"
    ).fetchone() == (0,)


def test_remove_content_duplicates_keeps_the_first(shop_ws: Workspace) -> None:
    report = shop_ws.clean(remove=["content_duplicate"])

    assert report.removed == {"content_duplicate": 1, "total": 1}
    assert shop_ws.store.sql(
        "SELECT event_id FROM events WHERE event = 'page_viewed'"
    ).fetchall() == [("d1",)]


def test_unknown_remove_flag(shop_ws: Workspace) -> None:
    with pytest.raises(InputError, match="--remove 'bots' is not a flag") as info:
        shop_ws.clean(remove=("bots",))

    assert info.value.exit_code == 2
    assert shop_ws.store.count("events") == 126
    assert shop_ws.store.count("event_flags") == 0
    assert shop_ws.store.count("quarantine") == 0


# -- the simulated shop ----------------------------------------------------------------------


def test_every_simulated_bot_is_a_burst_actor(ws: Workspace, shop) -> None:
    ws.ingest("events", [shop.file("events")])
    bots = {
        r["id"]
        for r in pq.read_table(Path(shop.dir) / "truth" / "anomalies.parquet").to_pylist()
        if r["kind"] == "bot"
    }
    assert bots

    ws.clean()

    actors = {
        r[0]
        for r in ws.store.sql(
            "SELECT DISTINCT coalesce(e.user_id, 'anon:' || e.anonymous_id) FROM events e "
            "JOIN event_flags f USING (event_id) WHERE f.flag = 'bot_burst'"
        ).fetchall()
    }
    assert {f"anon:{b}" for b in bots} <= actors


def test_removed_event_with_properties_and_microseconds_roundtrips(
    ws: Workspace, write: Write
) -> None:
    rows = "".join(
        f'x{k:02d},product_viewed,,bot9,i1,,,,,,2024-03-05 12:00:{k}.123456,"{{""k"": {k}, ""s"": ""é""}}"\n'
        for k in range(40)
    )
    ws.ingest("events", [write("e.csv", HEADER + "\n" + rows)])
    ws.ingest("events", [write("order.csv", ORDER_CSV)])
    before = events_snapshot(ws)

    ws.clean(remove=("bot_burst",))
    assert ws.store.count("events") == 1
    ws.quarantine_replay()

    assert events_snapshot(ws) == before
    assert ws.store.sql("SELECT ts FROM events WHERE event_id = 'x07'").fetchone() == (
        datetime(2024, 3, 5, 12, 0, 7, 123456),
    )


# -- numbers given for one run are checked (issue 12) -----------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"outlier_threshold": float("inf")}, "--threshold must be a finite number"),
        ({"outlier_threshold": float("-inf")}, "--threshold must be a finite number"),
        ({"outlier_threshold": float("nan")}, "--threshold must be a finite number"),
        ({"outlier_threshold": -1.0}, "--threshold must be above 0 and at most 1,000, not -1"),
        ({"outlier_threshold": 0.0}, "--threshold must be above 0"),
        ({"outlier_threshold": 1e300}, "--threshold must be above 0 and at most 1,000"),
        ({"burst_events_per_minute": 10**20}, "--burst must be between 1 and 1,000,000"),
        ({"burst_events_per_minute": 0}, "--burst must be between 1 and 1,000,000, not 0"),
        ({"burst_events_per_minute": 2.5}, "--burst must be a whole number"),
        ({"outlier_method": "zscore"}, "--method 'zscore' is unknown"),
    ],
)
def test_bad_numbers_for_one_run_are_input_errors_naming_the_option(
    shop_ws: Workspace, overrides: dict, fragment: str
) -> None:
    before = events_snapshot(shop_ws)
    with pytest.raises(InputError) as info:
        shop_ws.clean(**overrides)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert events_snapshot(shop_ws) == before
    assert flagged(shop_ws, "outlier_order") == []  # nothing written


def test_the_outlier_statistics_reach_sql_as_parameters(shop_ws: Workspace) -> None:
    """The largest allowed threshold runs (it used to be formatted into the SQL text)."""
    report = shop_ws.clean(outlier_threshold=1000.0, flag=False)
    assert report.outliers["outliers"] == 0
    iqr = shop_ws.clean(outlier_method="iqr", outlier_threshold=1e-9, flag=False)
    assert iqr.outliers["outliers"] >= 1
