"""A batch end to end: exact accounting, atomicity (including kill -9), chunking, dedupe."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingzhun.config import IngestSettings, Settings
from jingzhun.errors import InputError
from jingzhun.ingest.sources import _NULL_TOKENS
from jingzhun.store import Store
from jingzhun.workspace import Workspace
from tests.conftest import plain_pii


def small_chunks(db: Path, rows: int = 1000) -> Workspace:
    """A workspace that streams files in chunks of ``rows`` rows, to exercise chunk seams."""
    s = Settings(ingest=IngestSettings(batch_rows=rows))
    return Workspace(Store.open(db, s), s)


def counts(ws: Workspace) -> dict[str, int]:
    return {
        t: ws.store.count(t)
        for t in ("events", "users", "items", "pii", "identities", "ingest_batches", "quarantine")
    }


# -- the simulator's dirt is accounted for exactly ------------------------------------------


def test_simulated_dirt_is_quarantined_and_deduplicated_exactly(ws, shop):
    result = ws.ingest("events", [shop.file("events")])
    # The truth is read here, not by the store: a store connection opens no other file.
    dirty = (
        duckdb.connect()
        .execute(
            "SELECT expected, row FROM read_parquet(?)",
            [str(shop.dir / "truth" / "dirty_rows.parquet")],
        )
        .df()
    )
    expected = dirty["expected"].value_counts().to_dict()
    assert result.rows_read == shop.data.events.num_rows
    assert result.quarantined == expected["quarantined"]
    assert result.duplicates == expected["duplicate"]
    assert result.rows_read == result.inserted + result.duplicates + result.quarantined
    # Every quarantined row is one the truth calls dirty, at its record number (row + 1).
    dirty_rows = dirty.loc[dirty["expected"] == "quarantined", "row"].astype(int).tolist()
    wrong = ws.store.scalar(
        "SELECT count(*) FROM quarantine WHERE NOT list_contains(?::BIGINT[], line_no - 1)",
        [dirty_rows],
    )
    assert wrong == 0
    # event_id stays unique in the store.
    assert ws.sql("SELECT count(*) - count(DISTINCT event_id) AS d FROM events")["d"][0] == 0


def test_reingest_adds_nothing(ws, shop):
    first = ws.ingest("events", [shop.file("events")])
    before = counts(ws)
    again = ws.ingest("events", [shop.file("events")])
    assert again.inserted == 0
    assert first.quarantined > 0
    # Issue 14: a bad row already quarantined from the same content is a duplicate too, so
    # the open quarantine does not double with every run.
    assert again.quarantined == 0
    assert again.duplicates == again.rows_read == first.rows_read
    after = counts(ws)
    assert after["events"] == before["events"]
    assert after["identities"] == before["identities"]
    assert after["quarantine"] == before["quarantine"] == first.quarantined


def test_duplicates_across_chunk_seams_keep_the_first_copy(tmp_path, write):
    header = "event_id,event,user_id,item_id,ts,price\n"
    lines = [
        f"e{i},product_viewed,u{i % 7},sku{i % 11},2026-01-01T00:{i % 60:02d}:00Z,{i}.5\n"
        for i in range(3000)
    ]
    # e5 again far later (another chunk) with other content; e7 twice in a row.
    lines.insert(2500, "e5,product_viewed,u999,sku999,2026-01-02T00:00:00Z,1.0\n")
    lines.insert(8, "e7,product_viewed,u0,sku0,2026-01-01T00:07:00Z,7.5\n")
    path = write("events.csv", header + "".join(lines))
    with small_chunks(tmp_path / "s.duckdb", rows=700) as ws:
        r = ws.ingest("events", [path])
        assert (r.rows_read, r.inserted, r.duplicates, r.quarantined) == (3002, 3000, 2, 0)
        first = ws.sql("SELECT user_id, price FROM events WHERE event_id = 'e5'")
        assert first.to_dict("records") == [{"user_id": "u5", "price": 5.5}]


def test_bad_rows_spread_over_chunks_keep_their_record_numbers(tmp_path, write):
    rows = ["event,user_id,item_id,ts"]
    bad_at = set()
    for i in range(2500):
        if i % 397 == 0:
            # Distinct content: identical bad rows are quarantined once (issue 14).
            rows.append(f"product_viewed,u1,sku{i},not-a-time")
            bad_at.add(len(rows))  # record number: the header is record 1
        elif i % 401 == 0:
            rows.append(f"product_viewed,u1,sku{i}")  # too few fields
            bad_at.add(len(rows))
        else:
            rows.append(f"product_viewed,u{i},sku{i},2026-03-01T10:00:{i % 60:02d}Z")
    path = write("e.csv", "\n".join(rows) + "\n")
    with small_chunks(tmp_path / "s.duckdb", rows=300) as ws:
        r = ws.ingest("events", [path])
        assert r.quarantined == len(bad_at)
        got = set(ws.sql("SELECT line_no FROM quarantine")["line_no"])
        assert got == bad_at


# -- every row is counted once, whatever it holds --------------------------------------------

_cells = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "NaN",
            "-1",
            "inf",
            "1e309",
            "0",
            "3.5",
            "abc",
            "2026-01-01",
            "1700000000",
            "1700000000.5",
            "2099-01-01T00:00:00Z",
            "\x00",
            "é",
        ]
    ),
)
# Cells the CSV reader reads as null when unquoted (csv.writer quotes none of them).
_NULL_CELLS = {None, *_NULL_TOKENS}
_events = st.sampled_from(
    ["product_viewed", "order_completed", "Order Completed", "page_viewed", "bogus", "", "identify"]
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), st.text(alphabet="abc", max_size=3)),
            _events,
            _cells,
            _cells,
            _cells,
            _cells,
            _cells,
            _cells,
        ),
        min_size=1,
        max_size=40,
    )
)
def test_property_every_row_is_inserted_duplicate_or_quarantined(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("prop")
    buf = io.StringIO()
    # CRLF: the writer then quotes any field holding \r or \n (a bare \r would end a CSV record).
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(
        ["event_id", "event", "user_id", "anonymous_id", "item_id", "order_id", "price", "ts"]
    )
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    path = folder / "rows.csv"
    path.write_bytes(buf.getvalue().encode("utf-8"))
    with Workspace.open(folder / "s.duckdb") as ws:
        try:
            r = ws.ingest("events", [str(path)])
        except InputError:
            # Only whole-file problems may refuse the batch; then nothing is written.
            assert counts(ws)["events"] == 0 and counts(ws)["ingest_batches"] == 0
            return
        # A record whose every field reads as null (only delimiters) holds no row, as in the
        # reader; any other record is a row.
        assert r.rows_read == sum(any(v not in _NULL_CELLS for v in row) for row in rows)
        assert r.rows_read == r.inserted + r.duplicates + r.quarantined
        assert ws.store.count("events") == r.inserted
        assert ws.store.count("quarantine") == r.quarantined
        # Each quarantined row names at least one reason and keeps its raw row.
        assert (
            ws.sql("SELECT count(*) AS n FROM quarantine WHERE reason = '' OR raw IS NULL")["n"][0]
            == 0
        )


@settings(max_examples=30, deadline=None)
@given(
    blob=st.binary(min_size=1, max_size=600),
    fmt=st.sampled_from([None, "csv", "tsv", "jsonl", "parquet"]),
)
def test_property_random_bytes_never_crash(tmp_path_factory, blob, fmt):
    folder = tmp_path_factory.mktemp("bytes")
    path = folder / "blob.bin"
    path.write_bytes(blob)
    with Workspace.open(folder / "s.duckdb") as ws:
        try:
            r = ws.ingest("events", [str(path)], format=fmt)
        except InputError as exc:
            assert str(exc)
            assert counts(ws)["ingest_batches"] == 0 and counts(ws)["events"] == 0
            return
        assert r.rows_read == r.inserted + r.duplicates + r.quarantined


# -- a batch is all or nothing -----------------------------------------------------------------


def test_a_bad_second_file_leaves_nothing_written(ws, write, shop):
    good = write(
        "good.csv", "event,user_id,item_id,ts\nproduct_viewed,u1,sku1,2026-01-01T00:00:00Z\n"
    )
    bad = write("bad.csv", "event,user_id\nproduct_viewed,u1\n")
    before = counts(ws)
    with pytest.raises(InputError, match=r"bad\.csv: missing required column 'ts'"):
        ws.ingest("events", [str(good), str(bad)])
    assert counts(ws) == before


def test_a_failure_while_streaming_rolls_back_the_batch(tmp_path, write):
    good = write(
        "good.csv",
        "event,user_id,item_id,ts\n" + "product_viewed,u1,sku1,2026-01-01T00:00:00Z\n" * 50,
    )
    # The second file fails only when its huge line is reached, inside the transaction.
    huge = write(
        "huge.csv",
        "event,user_id,item_id,ts\nproduct_viewed,u2,sku2,2026-01-01T00:00:01Z\n"
        + "product_viewed,u3,"
        + "x" * 5000
        + ",2026-01-01T00:00:02Z\n",
    )
    s = Settings(ingest=IngestSettings(max_line_bytes=2048, batch_rows=10))
    with Workspace(Store.open(tmp_path / "s.duckdb", s), s) as ws:
        before = counts(ws)
        with pytest.raises(InputError, match=r"huge\.csv"):
            ws.ingest("events", [str(good), str(huge)])
        assert counts(ws) == before
        # The connection is usable afterwards and a good batch goes in.
        assert ws.ingest("events", [str(good)]).inserted == 1


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from jingzhun.config import IngestSettings, Settings
    from jingzhun.store import Store
    from jingzhun.workspace import Workspace

    s = Settings(ingest=IngestSettings(batch_rows=20_000))
    ws = Workspace(Store.open(sys.argv[1], s), s)
    seen = []

    def progress(label, done, total):
        seen.append(done)
        print("chunk", len(seen), flush=True)

    ws.ingest("events", [sys.argv[2]], progress=progress)
    print("done", flush=True)
    """
)


@pytest.mark.slow
def test_kill_9_mid_batch_leaves_all_or_nothing_and_a_rerun_completes(tmp_path):
    rows = 300_000
    src = tmp_path / "events.parquet"
    # Small row groups: the batch streams in many chunks, so the kill lands in the middle.
    duckdb.sql(
        f"""
        COPY (SELECT 'e' || i AS event_id, 'product_viewed' AS event, 'u' || (i % 5000) AS user_id,
                     'sku' || (i % 900) AS item_id, TIMESTAMP '2026-01-01' + INTERVAL (i) SECOND AS ts
              FROM range({rows}) t(i)) TO '{src}' (FORMAT parquet, ROW_GROUP_SIZE 10000)
        """
    )
    db = tmp_path / "store.duckdb"
    script = tmp_path / "ingest.py"
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(src)], stdout=subprocess.PIPE, text=True
    )
    killed_mid_batch = False
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("chunk 4"):
            os.kill(proc.pid, signal.SIGKILL)
            killed_mid_batch = True
            break
        if line.startswith("done"):
            break
    proc.wait(timeout=120)
    assert killed_mid_batch, "the ingest finished before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    with Workspace.open(db) as ws:
        stored = ws.store.count("events")
        assert stored in (0, rows), f"a killed batch left {stored} of {rows} rows"
        assert ws.store.count("ingest_batches") == (1 if stored else 0)
        rerun = ws.ingest("events", [str(src)])
        assert rerun.inserted + rerun.duplicates == rows
        assert ws.store.count("events") == rows
        assert ws.sql("SELECT count(DISTINCT event_id) AS n FROM events")["n"][0] == rows


def test_batches_are_recorded_with_their_options(ws, write):
    path = write(
        "retail.csv",
        "InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n536365,85123A,6,12/1/2010 8:26,2.55,17850,United Kingdom\n",
    )
    r = ws.ingest(
        "events",
        [path],
        mapping={
            "InvoiceNo": "order_id",
            "StockCode": "item_id",
            "Quantity": "quantity",
            "InvoiceDate": "ts",
            "UnitPrice": "price",
            "CustomerID": "user_id",
        },
        constants={"event": "order_completed"},
        ts_format="%m/%d/%Y %H:%M",
    )
    assert r.inserted == 1
    row = ws.sql(
        "SELECT order_id, item_id, quantity, price, revenue, ts, user_id, properties FROM events"
    ).iloc[0]
    assert (row.order_id, row.item_id, row.quantity, row.price, row.user_id) == (
        "536365",
        "85123A",
        6.0,
        2.55,
        "17850",
    )
    assert row.revenue == pytest.approx(15.3)
    assert str(row.ts) == "2010-12-01 08:26:00"
    assert json.loads(row.properties) == {"Country": "United Kingdom"}
    options = ws.sql("SELECT options FROM ingest_batches")["options"][0]
    assert '"InvoiceNo": "order_id"' in options and '"ts_format": "%m/%d/%Y %H:%M"' in options


# -- headers are matched to fields as a person reads them (issue 12) --------------------------


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("Email,user_id,email", ("'Email'", "'email'")),
        ("user_id,email,EMAIL", ("'email'", "'EMAIL'")),
        ("user_id,email, Email ", ("'email'", "Email")),
        ("user_id,User ID,phone", ("'user_id'", "'User ID'")),
    ],
)
def test_two_columns_for_one_field_are_an_error_naming_both(
    ws: Workspace, write, header: str, named: tuple[str, ...]
) -> None:
    """``Email,user_id,email`` put the second address, as ``email_1``, into users.attributes
    (an analytics table), unvalidated, and nothing into pii."""
    n = header.count(",") + 1
    path = write("users.csv", f"{header}\n" + ",".join(["u1", "u1@x.com", "u2@x.com"][:n]) + "\n")
    before = counts(ws)
    with pytest.raises(InputError) as info:
        ws.ingest("users", [path])
    assert all(name in str(info.value) for name in named), str(info.value)
    assert str(path) in str(info.value)
    assert counts(ws) == before


def test_pii_headers_match_whatever_their_case_and_spaces(ws: Workspace, write) -> None:
    path = write("users.csv", " User_ID ,Email, Phone ,City\nu1,A@X.com,+8613800000000,Shanghai\n")
    ws.ingest("users", [path])
    assert plain_pii(ws.store) == [("u1", "A@X.com")]
    attributes = ws.store.scalar("SELECT CAST(attributes AS VARCHAR) FROM users")
    assert "@" not in (attributes or "") and "138" not in (attributes or "")
