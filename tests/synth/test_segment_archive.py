"""The simulated shop's Segment archive ingests to what its Parquet files ingest to.

A shop of 800 users is written both ways (``ShopData.write(..., segment=True)``); store A
ingests its items, users and events Parquet files, store B its items and the Segment archive.
The Segment mapping is right when B holds A's data: the same users and personal data, the same
identities, the same events by type, the same revenue per user to the cent, and the same bad
user quarantined. Event ids differ only for order lines (``messageId:1`` … in B).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pytest

from jingzhun.synth import SynthConfig, simulate
from jingzhun.workspace import Workspace
from tests.conftest import plain_pii


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, dict]:
    folder = tmp_path_factory.mktemp("segment-archive")
    data = simulate(SynthConfig(users=800, days=90, seed=5))
    files = data.write(folder / "shop", segment=True)
    answers = {}
    for name, inputs in (
        ("a", [("items", "items"), ("users", "users"), ("events", "events")]),
        ("b", [("items", "items"), ("events", "segment")]),
    ):
        ws = Workspace.open(folder / f"{name}.duckdb")
        try:
            for kind, key in inputs:
                answers[(name, kind)] = ws.ingest.files(kind, [files[key]])
        finally:
            ws.close()
    return folder / "a.duckdb", folder / "b.duckdb", answers, files


def query(stores: tuple, sql: str) -> list[tuple]:
    a, b, _, _ = stores
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{a}' AS a (READ_ONLY); ATTACH '{b}' AS b (READ_ONLY)")
        return con.execute(sql).fetchall()


def test_the_archive_is_gzipped_segment_messages_without_the_malformed_rows(stores) -> None:
    _, _, answers, files = stores
    with gzip.open(files["segment"], "rt", encoding="utf-8") as fh:
        messages = [json.loads(line) for line in fh]
    types = {m["type"] for m in messages}
    assert types == {"identify", "page", "track"}
    assert sum(m["type"] == "identify" for m in messages) == 800
    names = {m.get("event") for m in messages if m["type"] == "track"}
    assert {"Product Viewed", "Order Completed", "Email Link Clicked"} <= names
    assert not any(None in m.values() for m in messages)  # null members are left out
    # Malformed rows are out; the exact duplicates stay (one messageId twice), but an order
    # line sent twice is one product of its order's one message.
    ((repeated_lines,),) = duckdb.sql(
        f"SELECT count(*) - count(DISTINCT event_id) FROM '{files['events']}' "
        "WHERE event = 'order_completed'"
    ).fetchall()
    b_events = answers[("b", "events")]
    assert b_events.quarantined == 0
    assert b_events.duplicates == answers[("a", "events")].duplicates - repeated_lines
    assert b_events.duplicates > 0


def test_the_same_users_personal_data_and_identities(stores) -> None:
    a, b, _, _ = stores
    fields = ["email", "phone", "name", "address"]
    plain = []
    for path in (a, b):  # each store has its own vault key: compare the values decrypted
        with Workspace.open(path, read_only=True) as ws:
            plain.append(plain_pii(ws.store, fields))
    assert plain[0] == plain[1] and len(plain[0]) > 700
    for table, exclude in (
        ("users", "updated_at, batch_id"),
        ("identities", "batch_id, linked_at"),
    ):
        differ = query(
            stores,
            f"SELECT count(*) FROM ((SELECT * EXCLUDE ({exclude}) FROM a.{table} "
            f"EXCEPT ALL SELECT * EXCLUDE ({exclude}) FROM b.{table}) UNION ALL "
            f"(SELECT * EXCLUDE ({exclude}) FROM b.{table} "
            f"EXCEPT ALL SELECT * EXCLUDE ({exclude}) FROM a.{table}))",
        )
        assert differ == [(0,)], table
    # The simulator's users with a bad email are quarantined both ways; the others are in.
    reasons = "SELECT reason FROM {}.quarantine WHERE kind = 'users' ORDER BY 1"
    bad = query(stores, reasons.format("a"))
    assert bad and bad == query(stores, reasons.format("b"))
    assert query(stores, "SELECT count(*) FROM b.users") == [(800 - len(bad),)]


def test_the_same_events_by_type_and_revenue_per_user(stores) -> None:
    by_type = (
        "SELECT event, count(*), round(sum(revenue), 6), round(sum(quantity), 6) "
        "FROM {}.events WHERE event <> 'identify' AND NOT custom GROUP BY 1 ORDER BY 1"
    )
    assert query(stores, by_type.format("a")) == query(stores, by_type.format("b"))
    spend = query(
        stores,
        "SELECT count(*), max(abs(x.m - y.m)) FROM "
        "(SELECT user_id, sum(revenue) AS m FROM a.events GROUP BY 1) x FULL JOIN "
        "(SELECT user_id, sum(revenue) AS m FROM b.events GROUP BY 1) y USING (user_id)",
    )
    (users, gap) = spend[0]
    assert users > 500
    assert gap == pytest.approx(0, abs=1e-6)
    # Every event but the order lines keeps its id; each order line is its message's.
    ids = query(
        stores,
        "SELECT count(*) FILTER (WHERE b.event_id IS NULL), count(*) FROM a.events a "
        "LEFT JOIN b.events b USING (event_id)",
    )
    (missing, total) = ids[0]
    lines = query(stores, "SELECT count(*) FROM a.events WHERE event = 'order_completed'")[0][0]
    assert (missing, total) == (lines, total)
