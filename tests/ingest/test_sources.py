"""Readers: CSV, TSV, Parquet, JSON Lines, gzip, stdin, and whole-file problems.

Every test ingests small hand-made files through ``Workspace.ingest`` into a fresh DuckDB
store and checks the stored rows and the quarantined rows (record number and reason).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingzhun.config import IngestSettings, Settings
from jingzhun.errors import InputError
from jingzhun.store import Store
from jingzhun.workspace import Workspace

Write = Callable[..., Path]

HEADER = "event,user_id,item_id,ts"
ROWS = "product_viewed,u1,i1,2024-01-01T00:00:00Z\nproduct_viewed,u2,i2,2024-01-02 10:30:00\n"
GOOD_CSV = HEADER + "\n" + ROWS
#: What GOOD_CSV stores: (event, user_id, item_id, ts, properties).
GOOD_STORED = [
    ("product_viewed", "u1", "i1", datetime(2024, 1, 1), None),
    ("product_viewed", "u2", "i2", datetime(2024, 1, 2, 10, 30), None),
]

JSONL_BROKEN = (
    "JSON Lines ingest crashes: sources._jsonl_source computes line lengths with "
    "lines.offsets on a pyarrow LargeBinaryArray, an attribute pyarrow (26.0.1 here) does not "
    "have, so every .jsonl file with a newline raises AttributeError"
)


# -- helpers ---------------------------------------------------------------------------------


def stored(ws: Workspace, batch_id: str | None = None) -> list[tuple]:
    """(event, user_id, item_id, ts, properties) of the stored events, by user_id."""
    where, params = ("WHERE batch_id = ?", [batch_id]) if batch_id else ("", [])
    return ws.store.sql(
        f"SELECT event, user_id, item_id, ts, properties FROM events {where} "
        "ORDER BY user_id, anonymous_id, ts",
        params,
    ).fetchall()


def quarantined(ws: Workspace, batch_id: str) -> list[tuple[int | None, str]]:
    """(line_no, reason) of a batch's quarantined rows, by record number."""
    return ws.store.sql(
        "SELECT line_no, reason FROM quarantine WHERE batch_id = ? ORDER BY line_no", [batch_id]
    ).fetchall()


def assert_store_empty(ws: Workspace) -> None:
    for table in ("events", "users", "items", "pii", "identities", "quarantine", "ingest_batches"):
        assert ws.store.count(table) == 0, f"{table} is not empty"


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


GOOD_PARQUET = pa.table(
    {
        "event": ["product_viewed", "product_viewed"],
        "user_id": ["u1", "u2"],
        "item_id": ["i1", "i2"],
        "ts": pa.array(
            [datetime(2024, 1, 1), datetime(2024, 1, 2, 10, 30)], pa.timestamp("us", tz="UTC")
        ),
    }
)


def small_workspace(tmp_path: Path, **ingest: object) -> Workspace:
    settings = Settings(ingest=IngestSettings(**ingest))
    return Workspace(Store.open(tmp_path / "small.duckdb", settings), settings)


# -- CSV and TSV -----------------------------------------------------------------------------


def test_csv_rows_are_stored_as_typed_fields(ws: Workspace, write: Write) -> None:
    path = write("events.csv", GOOD_CSV)
    result = ws.ingest("events", [path])

    assert (result.rows_read, result.inserted, result.duplicates, result.quarantined) == (
        2,
        2,
        0,
        0,
    )
    assert result.sources == [str(path)]
    assert stored(ws) == GOOD_STORED
    batch = ws.store.sql(
        "SELECT kind, rows_read, inserted, quarantined FROM ingest_batches"
    ).fetchall()
    assert batch == [("events", 2, 2, 0)]


def test_tsv_keeps_commas_inside_values(ws: Workspace, write: Write) -> None:
    text = "event\tuser_id\titem_id\tts\tnote\nproduct_viewed\tu1\ti1\t2024-01-01\ta, b, c\n"
    result = ws.ingest("events", [write("events.tsv", text)])

    assert result.inserted == 1
    assert stored(ws) == [
        ("product_viewed", "u1", "i1", datetime(2024, 1, 1), '{"note":"a, b, c"}')
    ]


def test_tsv_detected_from_content_without_extension(ws: Workspace, write: Write) -> None:
    result = ws.ingest("events", [write("events.txt", GOOD_CSV.replace(",", "\t"))])

    assert result.inserted == 2
    assert stored(ws) == GOOD_STORED


def test_utf8_bom_and_crlf_line_ends(ws: Workspace, write: Write) -> None:
    content = b"\xef\xbb\xbf" + GOOD_CSV.replace("\n", "\r\n").encode()
    result = ws.ingest("events", [write("bom.csv", content)])

    assert (result.inserted, result.quarantined) == (2, 0)
    assert stored(ws) == GOOD_STORED


def test_quoted_fields_with_newlines_commas_and_quotes(ws: Workspace, write: Write) -> None:
    text = (
        "event,user_id,item_id,ts,note\r\n"
        'product_viewed,u1,i1,2024-01-01,"line one\nline two, with a comma"\r\n'
        'product_viewed,u2,"i,2",2024-01-01,"say ""hi"""\r\n'
    )
    result = ws.ingest("events", [write("quoted.csv", text)])

    assert (result.inserted, result.quarantined) == (2, 0)
    assert stored(ws) == [
        (
            "product_viewed",
            "u1",
            "i1",
            datetime(2024, 1, 1),
            '{"note":"line one\\nline two, with a comma"}',
        ),
        ("product_viewed", "u2", "i,2", datetime(2024, 1, 1), '{"note":"say \\"hi\\""}'),
    ]


def test_wrong_number_of_fields_quarantines_that_record_only(ws: Workspace, write: Write) -> None:
    # Unknown event names make later good-shaped rows quarantine too, which exposes their
    # record numbers: they must not shift because of the malformed rows before them.
    text = (
        "event,user_id,item_id,ts\n"  # record 1
        "product_viewed,u1,i1,2024-01-01\n"  # 2: stored
        "product_viewed,u2\n"  # 3: too few fields
        "bogus,u3,i3,2024-01-01\n"  # 4: unknown event
        "product_viewed,u4,i4,2024-01-01,extra\n"  # 5: too many fields
        "product_viewed,u5,i5,2024-01-02\n"  # 6: stored
        "bogus,u6,i6,2024-01-01\n"  # 7: unknown event
    )
    result = ws.ingest("events", [write("fields.csv", text)])

    assert (result.rows_read, result.inserted, result.quarantined) == (6, 2, 4)
    unknown = "event: 'bogus' is not a known event; map it with --event-map NAME=EVENT or [ingest.event_map]"
    assert quarantined(ws, result.batch_id) == [
        (3, "expected 4 fields, found 2"),
        (4, unknown),
        (5, "expected 4 fields, found 5"),
        (7, unknown),
    ]
    assert [r[1] for r in stored(ws)] == ["u1", "u5"]
    raw = ws.store.sql("SELECT raw FROM quarantine WHERE line_no = 3").fetchone()[0]
    assert json.loads(raw) == {
        "_raw_line": "product_viewed,u2",
        "_columns": ["event", "user_id", "item_id", "ts"],
        "_delimiter": ",",
    }


def test_record_numbers_count_records_not_physical_lines(ws: Workspace, write: Write) -> None:
    text = (
        "event,user_id,item_id,ts,note\n"  # record 1
        'product_viewed,u1,i1,2024-01-01,"two\nlines"\n'  # record 2 spans two lines
        "product_viewed,u2,i2\n"  # record 3 (physical line 4)
        "bogus,u3,i3,2024-01-01,x\n"  # record 4
    )
    result = ws.ingest("events", [write("records.csv", text)])

    assert [line for line, _ in quarantined(ws, result.batch_id)] == [3, 4]


def test_invalid_utf8_in_one_field_quarantines_only_that_row(ws: Workspace, write: Write) -> None:
    content = (
        b"event,user_id,item_id,ts,note\n"
        b"product_viewed,u1,i1,2024-01-01,fine\n"
        b"product_viewed,u2,i2,2024-01-01,caf\xe9\n"
        b"product_viewed,u3,i3,2024-01-01,\xe4\xb8\xad\n"
    )
    result = ws.ingest("events", [write("latin1.csv", content)])

    assert (result.rows_read, result.inserted, result.quarantined) == (3, 2, 1)
    assert quarantined(ws, result.batch_id) == [(3, "note: invalid UTF-8")]
    assert [(r[1], r[4]) for r in stored(ws)] == [
        ("u1", '{"note":"fine"}'),
        ("u3", '{"note":"中"}'),
    ]


def test_whitespace_only_lines_are_skipped_and_keep_numbering(ws: Workspace, write: Write) -> None:
    text = (
        "event,user_id,item_id,ts\nproduct_viewed,u1,i1,2024-01-01\n   \nbogus,u2,i2,2024-01-01\n"
    )
    result = ws.ingest("events", [write("ws.csv", text)])

    assert (result.rows_read, result.inserted, result.quarantined) == (2, 1, 1)
    assert [line for line, _ in quarantined(ws, result.batch_id)] == [4]


def test_empty_lines_in_csv_are_skipped(ws: Workspace, write: Write) -> None:
    text = "event,user_id,item_id,ts\nproduct_viewed,u1,i1,2024-01-01\n\nproduct_viewed,u2,i2,2024-01-02\n\n"
    result = ws.ingest("events", [write("blank.csv", text)])

    assert (result.rows_read, result.inserted, result.quarantined) == (2, 2, 0)


def test_spaces_around_header_names_are_ignored(ws: Workspace, write: Write) -> None:
    text = "event, user_id, item_id, ts\nproduct_viewed,u1,i1,2024-01-01\n"
    result = ws.ingest("events", [write("spaces.csv", text)])

    assert result.inserted == 1
    assert stored(ws) == [("product_viewed", "u1", "i1", datetime(2024, 1, 1), None)]


_KINDS = ("good", "short", "long", "blankish", "multiline")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kinds=st.lists(st.sampled_from(_KINDS), min_size=1, max_size=40))
def test_record_numbers_survive_chunks_and_skipped_rows(tmp_path: Path, kinds: list[str]) -> None:
    """Record numbers stay exact across parser blocks, chunks, bad and skipped rows."""
    lines = ["event,user_id,rec,note,ts"]
    expected: dict[int, str] = {}
    for i, kind in enumerate(kinds):
        rec = len(expected) + sum(1 for k in kinds[:i] if k == "blankish") + 2
        if kind == "blankish":
            lines.append("  ")
            continue
        if kind == "good":
            lines.append(f"bogus,u{i},{rec},x,2024-01-01")
            expected[rec] = "bogus"
        elif kind == "short":
            lines.append(f"bogus,u{i},{rec},2024-01-01")
            expected[rec] = "expected 5 fields, found 4"
        elif kind == "long":
            lines.append(f"bogus,u{i},{rec},x,2024-01-01,y")
            expected[rec] = "expected 5 fields, found 6"
        else:
            lines.append(f'bogus,u{i},{rec},"a\nb",2024-01-01')
            expected[rec] = "bogus"
    path = tmp_path / "records.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Small parser blocks (1 KiB) and 3-row chunks: many boundaries in a small file.
    with small_workspace(tmp_path, max_line_bytes=1024, batch_rows=3) as ws:
        if not expected:  # only blank lines: like an empty file, nothing to ingest
            with pytest.raises(InputError, match="has no rows"):
                ws.ingest("events", [str(path)])
            ws.close()
            (tmp_path / "small.duckdb").unlink()
            return
        result = ws.ingest("events", [str(path)])
        got = quarantined(ws, result.batch_id)
        raws = dict(
            ws.store.sql(
                "SELECT line_no, raw FROM quarantine WHERE batch_id = ?", [result.batch_id]
            ).fetchall()
        )
    (tmp_path / "small.duckdb").unlink()

    assert [line for line, _ in got] == sorted(expected)
    for line, reason in got:
        if expected[line] == "bogus":
            assert reason.startswith("event: 'bogus' is not a known event")
            assert json.loads(raws[line])["rec"] == str(line)
        else:
            assert reason == expected[line]


# -- Parquet ---------------------------------------------------------------------------------


def test_parquet_rows_are_stored(ws: Workspace, write: Write) -> None:
    result = ws.ingest("events", [write("events.parquet", parquet_bytes(GOOD_PARQUET))])

    assert (result.rows_read, result.inserted, result.quarantined) == (2, 2, 0)
    assert stored(ws) == GOOD_STORED


def test_parquet_record_numbers_start_at_one(ws: Workspace, write: Write) -> None:
    table = pa.table(
        {
            "event": ["bogus", "product_viewed", "product_viewed"],
            "user_id": ["u1", "u2", "u3"],
            "item_id": ["i1", None, "i3"],
            "ts": ["2024-01-01", "2024-01-01", "2024-01-01"],
            "score": [1, 2, 3],
        }
    )
    result = ws.ingest("events", [write("numbers.parquet", parquet_bytes(table))])

    assert [line for line, _ in quarantined(ws, result.batch_id)] == [1, 2]
    assert quarantined(ws, result.batch_id)[1][1] == "product_viewed needs item_id"
    assert stored(ws) == [("product_viewed", "u3", "i3", datetime(2024, 1, 1), '{"score":3}')]


def test_parquet_nested_columns_are_kept_as_json(ws: Workspace, write: Write) -> None:
    table = pa.table(
        {
            "event": ["page_viewed"],
            "user_id": ["u1"],
            "ts": ["2024-01-01"],
            "nested": [{"a": [1, 2]}],
        }
    )
    ws.ingest("events", [write("nested.parquet", parquet_bytes(table))])

    assert ws.store.sql(
        "SELECT json_extract(properties, '$.nested.a[1]')::INT FROM events"
    ).fetchone() == (2,)


# -- gzip ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("events.csv.gz", GOOD_CSV),
        ("events.csv", GOOD_CSV),  # gzip under a plain .csv name
        ("events.dat", GOOD_CSV),  # no hint in the name at all
        ("events.tsv.gz", GOOD_CSV.replace(",", "\t")),
    ],
)
def test_gzip_is_detected_by_content(ws: Workspace, write: Write, name: str, content: str) -> None:
    result = ws.ingest("events", [write(name, gzip.compress(content.encode()))])

    assert (result.inserted, result.quarantined) == (2, 0)
    assert stored(ws) == GOOD_STORED


def test_plain_text_named_gz_is_read_as_plain(ws: Workspace, write: Write) -> None:
    result = ws.ingest("events", [write("events.csv.gz", GOOD_CSV)])

    assert result.inserted == 2
    assert stored(ws) == GOOD_STORED


@pytest.mark.parametrize("name", ["events.parquet.gz", "events.bin"])
def test_gzip_parquet(ws: Workspace, write: Write, name: str) -> None:
    result = ws.ingest("events", [write(name, gzip.compress(parquet_bytes(GOOD_PARQUET)))])

    assert result.inserted == 2
    assert stored(ws) == GOOD_STORED


def test_gzip_bom_crlf_csv(ws: Workspace, write: Write) -> None:
    content = gzip.compress(b"\xef\xbb\xbf" + GOOD_CSV.replace("\n", "\r\n").encode())
    result = ws.ingest("events", [write("bom.csv.gz", content)])

    assert stored(ws) == GOOD_STORED
    assert result.quarantined == 0


# -- stdin -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "payload"),
    [
        ("csv", GOOD_CSV.encode()),
        ("csv", gzip.compress(GOOD_CSV.encode())),
        (None, GOOD_CSV.encode()),  # detected from the content
        ("tsv", GOOD_CSV.replace(",", "\t").encode()),
        ("parquet", parquet_bytes(GOOD_PARQUET)),
        (None, parquet_bytes(GOOD_PARQUET)),
        (None, gzip.compress(parquet_bytes(GOOD_PARQUET))),
    ],
    ids=["csv", "csv-gzip", "csv-detected", "tsv", "parquet", "parquet-detected", "parquet-gzip"],
)
def test_stdin(ws: Workspace, fmt: str | None, payload: bytes) -> None:
    result = ws.ingest("events", ["-"], format=fmt, stdin=io.BytesIO(payload))

    assert result.sources == ["-"]
    assert (result.inserted, result.quarantined) == (2, 0)
    assert stored(ws) == GOOD_STORED


def test_stdin_quarantine_names_the_source_dash(ws: Workspace) -> None:
    payload = (GOOD_CSV + "bogus,u3,i3,2024-01-01\n").encode()
    result = ws.ingest("events", ["-"], format="csv", stdin=io.BytesIO(payload))

    assert ws.store.sql("SELECT source, line_no FROM quarantine").fetchall() == [("-", 4)]
    assert result.quarantined == 1


def test_stdin_only_once_per_batch(ws: Workspace) -> None:
    with pytest.raises(InputError, match="only once"):
        ws.ingest("events", ["-", "-"], format="csv", stdin=io.BytesIO(GOOD_CSV.encode()))
    assert_store_empty(ws)


# -- JSON Lines ------------------------------------------------------------------------------

JSONL = (
    '{"event":"product_viewed","user_id":"u1","item_id":"i1","ts":"2024-01-01T00:00:00Z"}\n'  # 1
    "\n"  # 2: blank
    "{not json\n"  # 3
    "[1, 2]\n"  # 4
    "   \r\n"  # 5: blank
    '{"event":"page_viewed","anonymous_id":"a1","ts":1704153600,"page":"/home"}\r\n'  # 6
    '"just a string"\n'  # 7
    '{"event":"product_viewed","user_id":"u2","item_id":"i2","ts":"2024-01-03"}'  # 8, no final newline
)


def test_jsonl_bad_lines_are_quarantined_with_line_numbers(ws: Workspace, write: Write) -> None:
    result = ws.ingest("events", [write("events.jsonl", JSONL)])

    assert (result.rows_read, result.inserted, result.quarantined) == (6, 3, 3)
    assert quarantined(ws, result.batch_id) == [
        (3, "not valid JSON"),
        (4, "not a JSON object"),
        (7, "not a JSON object"),
    ]
    raw = ws.store.sql("SELECT raw FROM quarantine WHERE line_no = 3").fetchone()[0]
    assert json.loads(raw) == {"_raw_line": "{not json"}
    assert ws.store.sql(
        "SELECT event, coalesce(user_id, anonymous_id), ts, properties FROM events ORDER BY ts"
    ).fetchall() == [
        ("product_viewed", "u1", datetime(2024, 1, 1), None),
        ("page_viewed", "a1", datetime(2024, 1, 2), '{"page":"/home"}'),
        ("product_viewed", "u2", datetime(2024, 1, 3), None),
    ]


def test_jsonl_invalid_utf8_line_is_quarantined(ws: Workspace, write: Write) -> None:
    content = (
        b'{"event":"page_viewed","user_id":"u1","ts":"2024-01-01"}\n'
        b'{"event":"page_viewed","user_id":"u\xff2","ts":"2024-01-01"}\n'
        b'{"event":"page_viewed","user_id":"u3","ts":"2024-01-01"}\n'
    )
    result = ws.ingest("events", [write("bad.jsonl", content)])

    assert quarantined(ws, result.batch_id) == [(2, "invalid UTF-8")]
    assert [r[1] for r in stored(ws)] == ["u1", "u3"]


@pytest.mark.parametrize("how", ["file", "gzip-misnamed", "stdin"])
def test_jsonl_keys_may_differ_between_lines(ws: Workspace, write: Write, how: str) -> None:
    text = (
        '{"event":"page_viewed","user_id":"u1","ts":"2024-01-01","color":"red"}\n'
        '{"ts":"2024-01-02","anonymous_id":"a2","event":"page_viewed","size":"L"}\n'
        '{"event":"product_viewed","user_id":"u3","item_id":"i3","ts":"2024-01-03"}\n'
    )
    if how == "file":
        result = ws.ingest("events", [write("events.jsonl", text)])
    elif how == "gzip-misnamed":
        result = ws.ingest("events", [write("events.txt", gzip.compress(text.encode()))])
    else:
        result = ws.ingest("events", ["-"], format="jsonl", stdin=io.BytesIO(text.encode()))

    assert (result.inserted, result.quarantined) == (3, 0)
    assert ws.store.sql(
        "SELECT event, user_id, anonymous_id, item_id, properties FROM events ORDER BY ts"
    ).fetchall() == [
        ("page_viewed", "u1", None, None, '{"color":"red"}'),
        ("page_viewed", None, "a2", None, '{"size":"L"}'),
        ("product_viewed", "u3", None, "i3", None),
    ]


def test_jsonl_missing_keys_are_row_errors(ws: Workspace, write: Write) -> None:
    text = (
        '{"event":"page_viewed","ts":"2024-01-01"}\n'
        '{"user_id":"u2","ts":"2024-01-01"}\n'
        '{"event":"page_viewed","user_id":"u3"}\n'
    )
    result = ws.ingest("events", [write("missing.jsonl", text)])

    assert quarantined(ws, result.batch_id) == [
        (1, "needs a user_id or an anonymous_id"),
        (2, "event: missing"),
        (3, "ts: missing"),
    ]


def test_jsonl_nested_values_are_kept_as_json(ws: Workspace, write: Write) -> None:
    text = '{"event":"page_viewed","user_id":"u1","ts":"2024-01-01","nested":{"a":[1,2]},"tags":["x"]}\n'
    ws.ingest("events", [write("nested.jsonl", text)])

    assert ws.store.sql(
        "SELECT json_extract(properties, '$.nested.a[1]')::INT, json_extract_string(properties, '$.tags[0]') FROM events"
    ).fetchone() == (2, "x")


def test_jsonl_with_bom(ws: Workspace, write: Write) -> None:
    content = b'\xef\xbb\xbf{"event":"page_viewed","user_id":"u1","ts":"2024-01-01"}\n'
    result = ws.ingest("events", [write("bom.jsonl", content)])

    assert (result.inserted, result.quarantined) == (1, 0)


# -- whole-file problems ---------------------------------------------------------------------


def _utf16(write: Write) -> str:
    return str(write("utf16.csv", GOOD_CSV.encode("utf-16")))


def _truncated_parquet(write: Write) -> str:
    data = parquet_bytes(GOOD_PARQUET)
    return str(write("truncated.parquet", data[: len(data) // 2]))


def _corrupt_parquet(write: Write) -> str:
    data = parquet_bytes(GOOD_PARQUET)
    return str(write("corrupt.parquet", data[:4] + b"\x00" * 64 + data[-8:]))


BAD_FILES: dict[str, tuple[Callable[[Write], str], dict[str, object], str]] = {
    # name: (make the file, ingest options, text the message must contain)
    "missing": (lambda w: str(w("present.csv", GOOD_CSV).parent / "nope.csv"), {}, "no such file"),
    "directory": (lambda w: str(w("folder/inner.csv", GOOD_CSV).parent), {}, "is a folder"),
    "empty": (lambda w: str(w("empty.csv", b"")), {}, "is empty"),
    "empty-gzip": (lambda w: str(w("empty.csv.gz", gzip.compress(b""))), {}, "is empty"),
    "binary": (
        lambda w: str(w("garbage.csv", b"\x00\x01\x02\xff\x00garbage" * 20)),
        {},
        "binary data",
    ),
    "binary-no-extension": (lambda w: str(w("garbage", b"ab\x00\x01" * 20)), {}, "binary data"),
    "utf16": (_utf16, {}, "UTF-16"),
    "truncated-parquet": (_truncated_parquet, {}, "not a readable Parquet file"),
    "corrupt-parquet": (_corrupt_parquet, {}, "not a readable Parquet file"),
    "bad-gzip": (
        lambda w: str(w("bad.csv.gz", b"\x1f\x8b" + b"garbage" * 5)),
        {},
        "not a valid gzip file",
    ),
    "missing-ts-column": (
        lambda w: str(
            w("nots.csv", "event,user_id,item_id,time\nproduct_viewed,u1,i1,2024-01-01\n")
        ),
        {},
        "missing required column 'ts'",
    ),
    "no-user-column": (
        lambda w: str(
            w("nouser.csv", "event,customer,item_id,ts\nproduct_viewed,u1,i1,2024-01-01\n")
        ),
        {},
        "needs a user_id or an anonymous_id column",
    ),
    "duplicate-header": (
        lambda w: str(w("dup.csv", "event,user_id,user_id,ts\nproduct_viewed,u1,u2,2024-01-01\n")),
        {},
        "column 'user_id' appears twice",
    ),
    "unnamed-header-column": (
        lambda w: str(w("unnamed.csv", "event,,user_id,ts\nproduct_viewed,x,u1,2024-01-01\n")),
        {},
        "column 2 of the header has no name",
    ),
    "reserved-column": (
        lambda w: str(
            w("reserved.csv", "event,user_id,ts,_line\nproduct_viewed,u1,2024-01-01,3\n")
        ),
        {},
        "reserved",
    ),
    "parquet-as-csv": (
        lambda w: str(w("events.parquet", parquet_bytes(GOOD_PARQUET))),
        {"format": "csv"},
        "is a Parquet file, not CSV",
    ),
    "csv-as-parquet": (
        lambda w: str(w("events.csv", GOOD_CSV)),
        {"format": "parquet"},
        "is not a Parquet file",
    ),
    "parquet-named-csv-without-format": (
        lambda w: str(w("looks.csv", parquet_bytes(GOOD_PARQUET))),
        {},
        "is a Parquet file, not CSV",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_whole_file_problems_raise_input_error_naming_the_file(
    ws: Workspace, write: Write, case: str
) -> None:
    make, options, text = BAD_FILES[case]
    path = make(write)

    with pytest.raises(InputError) as info:
        ws.ingest("events", [path], **options)

    assert info.value.exit_code == 2
    assert path in info.value.message
    assert text in str(info.value)
    assert_store_empty(ws)


def test_missing_column_suggests_map(ws: Workspace, write: Write) -> None:
    path = write("cust.csv", "event,customer_id,item_id,ts\nproduct_viewed,u1,i1,2024-01-01\n")

    with pytest.raises(InputError) as info:
        ws.ingest("events", [str(path)])

    assert info.value.hint is not None and "--map" in info.value.hint
    assert "customer_id" in info.value.hint
    # and the suggestion works
    result = ws.ingest("events", [str(path)], mapping={"customer_id": "user_id"})
    assert stored(ws) == [("product_viewed", "u1", "i1", datetime(2024, 1, 1), None)]
    assert result.inserted == 1


def test_unknown_format(ws: Workspace, write: Write) -> None:
    with pytest.raises(InputError, match="unknown --format 'xml'") as info:
        ws.ingest("events", [write("events.csv", GOOD_CSV)], format="xml")

    assert info.value.exit_code == 2
    assert_store_empty(ws)


def test_one_bad_file_fails_the_whole_batch(ws: Workspace, write: Write) -> None:
    good = write("good.csv", GOOD_CSV)
    bad = write("bad.csv", b"")

    with pytest.raises(InputError, match="is empty"):
        ws.ingest("events", [good, bad])

    assert_store_empty(ws)


def test_line_longer_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(GOOD_CSV + "product_viewed,u3,i3," + "x" * 3000 + "\n", encoding="utf-8")

    with small_workspace(tmp_path, max_line_bytes=1024) as ws:
        with pytest.raises(InputError) as info:
            ws.ingest("events", [str(path)])

        assert info.value.exit_code == 2
        assert str(path) in info.value.message
        assert "longer than" in info.value.message
        assert "max_line_bytes" in (info.value.hint or "")
        assert_store_empty(ws)


def test_failure_after_stored_chunks_rolls_back_the_batch(tmp_path: Path) -> None:
    """Rows of earlier chunks were inserted inside the transaction; none may survive."""
    rows = "".join(f"product_viewed,u{i},i{i},2024-01-01\n" for i in range(40))
    path = tmp_path / "late.csv"
    path.write_text(HEADER + "\n" + rows + "bogus,u,i," + "y" * 5000 + "\n", encoding="utf-8")

    with small_workspace(tmp_path, max_line_bytes=1024, batch_rows=2) as ws:
        with pytest.raises(InputError, match="longer than"):
            ws.ingest("events", [str(path)])
        assert_store_empty(ws)
        # the store is usable afterwards, and the same rows go in once the file is fixed
        path.write_text(HEADER + "\n" + rows, encoding="utf-8")
        result = ws.ingest("events", [str(path)])
        assert (result.inserted, ws.store.count("events"), ws.store.count("ingest_batches")) == (
            40,
            40,
            1,
        )


def test_line_limit_message_states_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(
        "event,user_id,item_id,ts,note\nproduct_viewed,u1,i1,2024-01-01," + "x" * 3000 + "\n",
        encoding="utf-8",
    )

    with small_workspace(tmp_path, max_line_bytes=1024) as ws, pytest.raises(InputError) as info:
        ws.ingest("events", [str(path)])

    assert "0 MiB" not in info.value.message
    assert "record 0" not in info.value.message


def test_jsonl_line_longer_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text(
        '{"event":"page_viewed","user_id":"u1","ts":"2024-01-01"}\n'
        '{"event":"page_viewed","user_id":"u2","ts":"2024-01-01","x":"' + "z" * 3000 + '"}\n',
        encoding="utf-8",
    )
    with small_workspace(tmp_path, max_line_bytes=1024) as ws:
        with pytest.raises(InputError) as info:
            ws.ingest("events", [str(path)])
        assert str(path) in info.value.message
        assert "line 2 is longer than" in info.value.message
        assert_store_empty(ws)


@pytest.mark.parametrize("ending", ["\n", ""])
def test_header_only_file_has_no_rows(ws: Workspace, write: Write, ending: str) -> None:
    # Like an empty file: nothing to ingest is an input error, not an empty batch.
    with pytest.raises(InputError, match=r"header\.csv"):
        ws.ingest("events", [write("header.csv", HEADER + ending)])
    assert ws.store.count("events") == 0
    assert ws.store.count("ingest_batches") == 0


def test_csv_written_by_the_csv_module_roundtrips(ws: Workspace, write: Write) -> None:
    """Values with every kind of quoting problem survive as written."""
    notes = [
        'a "quoted" word',
        "comma, inside",
        "new\nline",
        "tab\there",
        "back\\slash",
        "中文",
        "NA",
        "nan",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["event", "user_id", "item_id", "ts", "note"])
    for i, note in enumerate(notes):
        writer.writerow(["product_viewed", f"u{i}", f"i{i}", "2024-01-01", note])
    result = ws.ingest("events", [write("module.csv", buf.getvalue())])

    assert result.inserted == len(notes)
    got = ws.store.sql(
        "SELECT json_extract_string(properties, '$.note') FROM events ORDER BY user_id"
    ).fetchall()
    assert [g[0] for g in got] == notes


# -- headers and keys no column can carry (issue 12) ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        (
            "e.jsonl",
            '{"event":"product_viewed","user_id":"u1","ts":"2024-01-01","":"x"}\n',
            "JSON key ''",
        ),
        (
            "e.jsonl",
            '{"event":"product_viewed","user_id":"u1","ts":"2024-01-01","a\\u0000":1}\n',
            "JSON key",
        ),
        (
            "e.csv",
            b"event,user_id,ts,x\xff\nproduct_viewed,u1,2024-01-01T00:00:00Z,1\n",
            "column 4 of the header is not valid UTF-8",
        ),
        (
            "e.csv",
            ("event,user_id,ts," + ",".join(f"c{i}" for i in range(12_000)) + "\n").encode()
            + b"product_viewed,u1,2024-01-01T00:00:00Z"
            + b"," * 12_000
            + b"\n",
            "the header line is longer than 64 KiB",
        ),
    ],
)
def test_unusable_headers_and_keys_are_one_line_errors(
    ws: Workspace, write: Write, name: str, content: str | bytes, needle: str
) -> None:
    """A JSON key "" ended in a parser traceback; an undecodable header byte became U+FFFD
    without a word; a header past the sniffed 64 KiB was reported as an unnamed column."""
    path = write(name, content)
    with pytest.raises(InputError, match=needle) as info:
        ws.ingest("events", [path])
    assert str(path) in str(info.value)
    assert ws.store.count("events") == 0 and ws.store.count("quarantine") == 0


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        # A conversion traceback: DuckDB read the header '_LINE' in place of the record number.
        ("e.csv", "_LINE,event,user_id,ts\n5,product_viewed,u1,2024-01-01\n", "'_LINE'"),
        # Silently dropped: the replay's quarantine id column took its place.
        ("e.csv", "event,user_id,ts,_qid\nproduct_viewed,u1,2024-01-01,7\n", "'_qid'"),
        # The key was read as the parser's _error: the row was quarantined with its text.
        (
            "e.jsonl",
            '{"event":"product_viewed","user_id":"u1","ts":"2024-01-01","_Error":"boom"}\n',
            "'_Error' (line 1)",
        ),
        (
            "e.jsonl",
            '{"event":"product_viewed","user_id":"u1","ts":"2024-01-01","_RAW_LINE":"x"}\n',
            "'_RAW_LINE' (line 1)",
        ),
    ],
)
def test_reserved_names_are_refused_in_any_case(
    ws: Workspace, write: Write, name: str, content: str, needle: str
) -> None:
    path = write(name, content)
    with pytest.raises(InputError, match="is reserved") as info:
        ws.ingest("events", [path])
    assert needle in str(info.value) and str(path) in str(info.value)
    assert_store_empty(ws)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_more_columns_than_the_limit_is_one_line_naming_it(
    ws: Workspace, write: Write, fmt: str
) -> None:
    """10,000 columns ran out of memory building the validating statement (a DuckDB
    'transaction is aborted' error); 2,000 took seconds for a hundred rows."""
    from jingzhun.ingest.sources import MAX_COLUMNS

    names = ["event", "user_id", "ts", *(f"c{i}" for i in range(MAX_COLUMNS))]
    values = ["product_viewed", "u1", "2024-01-01", *("1" for _ in range(MAX_COLUMNS))]
    if fmt == "csv":
        path = write("e.csv", ",".join(names) + "\n" + ",".join(values) + "\n")
    elif fmt == "jsonl":
        path = write("e.jsonl", json.dumps(dict(zip(names, values, strict=True))) + "\n")
    else:
        table = pa.table({n: [v] for n, v in zip(names, values, strict=True)})
        path = write("e.parquet", parquet_bytes(table))
    with pytest.raises(InputError, match=f"more than the {MAX_COLUMNS:,}") as info:
        ws.ingest("events", [path])
    assert str(path) in str(info.value)
    assert_store_empty(ws)


def test_a_header_with_a_control_character_is_one_line(ws: Workspace, write: Write) -> None:
    """It ended in an error naming no file ('... is not a usable column or table name')."""
    path = write("e.csv", "event,user_id,ts,a\x01b\nproduct_viewed,u1,2024-01-01,1\n")
    with pytest.raises(InputError, match=r"column 'a\\x01b' \(header column 4\) cannot name"):
        ws.ingest("events", [path])
    assert_store_empty(ws)


def test_invalid_utf8_in_a_parquet_string_column_names_the_column(
    ws: Workspace, write: Write
) -> None:
    """DuckDB's message names the value, not the column."""
    user_ids = pa.array([b"u1", b"\xffu2"], pa.binary()).view(pa.string())
    table = pa.table(
        {
            "event": ["product_viewed"] * 2,
            "user_id": user_ids,
            "ts": ["2024-01-01", "2024-01-02"],
        }
    )
    path = write("e.parquet", parquet_bytes(table))
    with pytest.raises(InputError, match="column 'user_id' holds text that is not valid UTF-8"):
        ws.ingest("events", [path])
    assert_store_empty(ws)


def test_a_record_with_wrong_fields_and_bytes_not_utf8_is_one_error_line(tmp_path: Path) -> None:
    """pyarrow cannot hand such a record to the invalid-row handler (it fails to decode it
    first and prints a traceback): the file is refused with one line naming the record."""
    from tests.cli.subprocess_cli import error_line, run

    bad = tmp_path / "bad.csv"
    bad.write_bytes(
        b"event,user_id,ts\nproduct_viewed,u1,2026-01-01\n"
        b"product_viewed,u2,2026-01-01,\xb1extra\nproduct_viewed,u3,2026-01-02\n"
    )
    ran = run(tmp_path, "ingest", "events", str(bad), db=tmp_path / "s.duckdb")
    line = error_line(ran, "record 3", "not UTF-8")
    assert "Traceback" not in ran.stderr and "Exception ignored" not in ran.stderr, line
