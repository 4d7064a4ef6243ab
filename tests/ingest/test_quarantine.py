"""Quarantine: list, export, edit and replay, discard, and their errors."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest.pipeline import BatchResult
from jingzhun.ingest.quarantine import Selection
from jingzhun.workspace import Workspace
from tests.conftest import plain_pii

Write = Callable[..., Path]

UNKNOWN = "event: 'purchase' is not a known event; map it with --event-map NAME=EVENT or [ingest.event_map]"
EVENTS = (
    "event,user_id,item_id,order_id,price,ts\n"
    "order_completed,u1,i1,o1,5,2024-01-01\n"  # 2: stored
    "order_completed,u2,i2,o2,-3,2024-01-02\n"  # 3: price below 0
    "purchase,u3,i3,o3,7,2024-01-03\n"  # 4: unknown event
    "order_completed,u4,i4,o4,abc,2024-01-04\n"  # 5: not a number
    "product_viewed,u5,i5,,,2024-01-05,extra\n"  # 6: wrong number of fields
)
OPEN = [
    (3, "price: '-3' is below 0"),
    (4, UNKNOWN),
    (5, "price: 'abc' is not a number"),
    (6, "expected 6 fields, found 7"),
]


@pytest.fixture
def batch(ws: Workspace, write: Write) -> BatchResult:
    result = ws.ingest("events", [write("events.csv", EVENTS)])
    assert (result.inserted, result.quarantined) == (1, 4)
    return result


def open_rows(ws: Workspace) -> list[tuple[int, str]]:
    return ws.store.sql(
        "SELECT line_no, reason FROM quarantine WHERE resolved_at IS NULL ORDER BY line_no"
    ).fetchall()


def qid(ws: Workspace, line_no: int) -> int:
    return ws.store.sql(
        "SELECT quarantine_id FROM quarantine WHERE line_no = ?", [line_no]
    ).fetchone()[0]


def export(ws: Workspace, path: Path) -> dict[int, dict]:
    """Export every open row and read the lines back, by line_no."""
    n = ws.quarantine_export(path)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == n
    return {rec["line_no"]: rec for rec in lines}


def write_edits(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# -- looking ---------------------------------------------------------------------------------


def test_rows_list_every_open_row_with_its_origin(
    ws: Workspace, batch: BatchResult, write: Write
) -> None:
    frame = ws.quarantine_rows()

    assert list(frame.columns) == [
        "quarantine_id",
        "batch_id",
        "kind",
        "source",
        "line_no",
        "reason",
        "raw",
        "received_at",
        "resolved_at",
        "resolved_batch_id",
    ]
    assert sorted(zip(frame["line_no"].tolist(), frame["reason"].tolist(), strict=True)) == OPEN
    assert set(frame["batch_id"]) == {batch.batch_id}
    assert set(frame["kind"]) == {"events"}
    assert set(frame["source"]) == {batch.sources[0]}
    assert frame["resolved_at"].isna().all()
    raw = dict(zip(frame["line_no"], frame["raw"], strict=True))
    assert json.loads(raw[3]) == {
        "event": "order_completed",
        "user_id": "u2",
        "item_id": "i2",
        "order_id": "o2",
        "price": "-3",
        "ts": "2024-01-02",
    }


def test_rows_filters_and_limit(ws: Workspace, batch: BatchResult) -> None:
    assert ws.quarantine_rows(Selection(reason="NUMBER"))["line_no"].tolist() == [5]
    assert ws.quarantine_rows(Selection(ids=(qid(ws, 3), qid(ws, 6))))["line_no"].tolist() == [3, 6]
    assert len(ws.quarantine_rows(Selection(batch_id=batch.batch_id))) == 4
    assert len(ws.quarantine_rows(limit=2)) == 2


def test_reasons_group_by_first_problem_with_values_elided(
    ws: Workspace, batch: BatchResult, write: Write
) -> None:
    ws.ingest(
        "events",
        [
            write(
                "more.csv",
                "event,user_id,item_id,order_id,price,ts\norder_completed,u9,i9,o9,-8,2024-01-09\n",
            )
        ],
    )

    reasons = ws.quarantine_reasons()

    assert list(zip(reasons["reason"], reasons["rows"], strict=True)) == [
        ("price: … is below 0", 2),
        ("event: … is not a known event", 1),
        ("expected 6 fields, found 7", 1),
        ("price: … is not a number", 1),
    ]


def test_batches_count_open_replayed_and_discarded(ws: Workspace, batch: BatchResult) -> None:
    ws.quarantine_replay(event_map={"purchase": "order_completed"})
    ws.quarantine_discard(Selection(reason="fields"))

    frame = ws.quarantine_batches()

    assert len(frame) == 1
    row = frame.iloc[0]
    assert (row["batch_id"], row["kind"], row["open"], row["replayed"], row["discarded"]) == (
        batch.batch_id,
        "events",
        2,
        1,
        1,
    )
    assert row["top_reason"] in {"price: '-3' is below 0", "price: 'abc' is not a number"}


# -- export, edit, replay ----------------------------------------------------------------------


def test_export_writes_one_editable_line_per_row(
    ws: Workspace, batch: BatchResult, tmp_path: Path
) -> None:
    lines = export(ws, tmp_path / "q.jsonl")

    assert sorted(lines) == [3, 4, 5, 6]
    assert lines[5] == {
        "quarantine_id": qid(ws, 5),
        "batch_id": batch.batch_id,
        "kind": "events",
        "source": batch.sources[0],
        "line_no": 5,
        "reason": "price: 'abc' is not a number",
        "row": {
            "event": "order_completed",
            "user_id": "u4",
            "item_id": "i4",
            "order_id": "o4",
            "price": "abc",
            "ts": "2024-01-04",
        },
    }
    assert lines[6]["row"] == {
        "_raw_line": "product_viewed,u5,i5,,,2024-01-05,extra",
        "_columns": ["event", "user_id", "item_id", "order_id", "price", "ts"],
        "_delimiter": ",",
    }


def test_replay_an_edited_row(ws: Workspace, batch: BatchResult, tmp_path: Path) -> None:
    lines = export(ws, tmp_path / "q.jsonl")
    fixed = lines[5]
    fixed["row"]["price"] = "4.5"
    edits = write_edits(tmp_path / "fix.jsonl", fixed)

    results = ws.quarantine_replay(file=edits)

    assert len(results) == 1
    replay = results[0]
    assert (replay.rows_read, replay.inserted, replay.quarantined, replay.resolved) == (1, 1, 0, 1)
    assert replay.sources == [f"replay:{batch.batch_id}"]
    assert ws.store.sql(
        "SELECT user_id, price, revenue, ts, batch_id FROM events WHERE user_id = 'u4'"
    ).fetchall() == [("u4", 4.5, 4.5, datetime(2024, 1, 4), replay.batch_id)]
    resolved = ws.store.sql(
        "SELECT resolved_batch_id, resolved_at IS NOT NULL FROM quarantine WHERE line_no = 5"
    ).fetchall()
    assert resolved == [(replay.batch_id, True)]
    # Only the edited row was replayed; the others are untouched.
    assert open_rows(ws) == [r for r in OPEN if r[0] != 5]
    assert ws.store.sql(
        "SELECT replay_of FROM ingest_batches WHERE batch_id = ?", [replay.batch_id]
    ).fetchone() == (batch.batch_id,)
    assert ws.store.count("quarantine") == 4


def test_replay_after_adding_an_event_map(ws: Workspace, batch: BatchResult) -> None:
    results = ws.quarantine_replay(
        Selection(reason="not a known event"), event_map={"purchase": "order_completed"}
    )

    assert [(r.rows_read, r.inserted, r.resolved) for r in results] == [(1, 1, 1)]
    assert ws.store.sql(
        "SELECT event, user_id, revenue FROM events WHERE user_id = 'u3'"
    ).fetchall() == [("order_completed", "u3", 7.0)]
    assert open_rows(ws) == [r for r in OPEN if r[0] != 4]


def test_rows_that_still_fail_stay_open_with_the_new_reason(
    ws: Workspace, batch: BatchResult, tmp_path: Path
) -> None:
    lines = export(ws, tmp_path / "q.jsonl")
    lines[5]["row"]["price"] = "-1"  # still wrong, differently
    lines[5]["row"]["ts"] = "someday"
    results = ws.quarantine_replay(file=write_edits(tmp_path / "fix.jsonl", lines[5]))

    assert [(r.inserted, r.quarantined, r.resolved) for r in results] == [(0, 1, 0)]
    reason, raw, resolved = ws.store.sql(
        "SELECT reason, raw, resolved_at FROM quarantine WHERE line_no = 5"
    ).fetchone()
    assert reason == (
        "price: '-1' is below 0; ts: 'someday' is not a timestamp "
        "(use ISO 8601 or epoch seconds, or pass --ts-format or --ts-unit)"
    )
    assert json.loads(raw)["price"] == "-1"
    assert resolved is None
    assert ws.store.count("events") == 1


def test_replay_is_idempotent(ws: Workspace, batch: BatchResult, tmp_path: Path) -> None:
    lines = export(ws, tmp_path / "q.jsonl")
    lines[3]["row"]["price"] = "3"
    lines[5]["row"]["price"] = "3"
    lines[6]["row"]["_raw_line"] = "product_viewed,u5,i5,,,2024-01-05"
    edits = write_edits(tmp_path / "fix.jsonl", lines[3], lines[5], lines[6])

    first = ws.quarantine_replay(file=edits, event_map={"purchase": "order_completed"})
    events, batches = ws.store.count("events"), ws.store.count("ingest_batches")
    second = ws.quarantine_replay(file=edits, event_map={"purchase": "order_completed"})

    assert [(r.inserted, r.resolved) for r in first] == [(3, 3)]
    assert second == []
    assert (events, batches) == (4, 2)
    assert (ws.store.count("events"), ws.store.count("ingest_batches")) == (4, 2)
    third = ws.quarantine_replay(event_map={"purchase": "order_completed"})
    # The unedited 'purchase' row is still open; the event map resolves it now, and then
    # there is nothing left to do.
    assert [(r.inserted, r.resolved) for r in third] == [(1, 1)]
    assert ws.quarantine_replay(event_map={"purchase": "order_completed"}) == []
    assert (ws.store.count("events"), ws.store.count("ingest_batches")) == (5, 3)
    assert open_rows(ws) == []


def test_replaying_a_row_whose_event_is_already_stored_resolves_it_without_a_copy(
    ws: Workspace, batch: BatchResult, write: Write
) -> None:
    # The same purchase arrives again, correctly named, in a later file.
    ws.ingest(
        "events",
        [
            write(
                "again.csv",
                "event,user_id,item_id,order_id,price,ts\norder_completed,u3,i3,o3,7,2024-01-03\n",
            )
        ],
    )

    results = ws.quarantine_replay(
        Selection(reason="not a known event"), event_map={"purchase": "order_completed"}
    )

    assert [(r.inserted, r.duplicates, r.resolved) for r in results] == [(0, 1, 1)]
    assert ws.store.sql("SELECT count(*) FROM events WHERE user_id = 'u3'").fetchone() == (1,)


def test_fixing_a_csv_row_with_the_wrong_number_of_fields(
    ws: Workspace, batch: BatchResult, tmp_path: Path
) -> None:
    lines = export(ws, tmp_path / "q.jsonl")
    still_bad = dict(lines[6], row=dict(lines[6]["row"], _raw_line="product_viewed,u5,i5"))
    ws.quarantine_replay(file=write_edits(tmp_path / "bad.jsonl", still_bad))
    assert ws.store.sql("SELECT reason FROM quarantine WHERE line_no = 6").fetchone() == (
        "expected 6 fields, found 3",
    )

    lines[6]["row"]["_raw_line"] = 'product_viewed,u5,i5,,,"2024-01-05T10:00:00Z"'
    results = ws.quarantine_replay(file=write_edits(tmp_path / "fix.jsonl", lines[6]))

    assert [(r.inserted, r.resolved) for r in results] == [(1, 1)]
    assert ws.store.sql(
        "SELECT event, user_id, item_id, ts FROM events WHERE user_id = 'u5'"
    ).fetchall() == [("product_viewed", "u5", "i5", datetime(2024, 1, 5, 10))]


def test_replay_reads_rows_with_the_original_batch_options(
    ws: Workspace, write: Write, tmp_path: Path
) -> None:
    text = "kind,customer,sku,price,when\nproduct_added,c1,s1,oops,01/02/2024 10:30\n"
    ws.ingest(
        "events",
        [write("mapped.csv", text)],
        mapping={"kind": "event", "customer": "user_id", "sku": "item_id", "when": "ts"},
        constants={"channel": "store"},
        ts_format="%d/%m/%Y %H:%M",
    )
    lines = export(ws, tmp_path / "q.jsonl")
    lines[2]["row"]["price"] = "9"

    ws.quarantine_replay(file=write_edits(tmp_path / "fix.jsonl", lines[2]))

    assert ws.store.sql(
        "SELECT event, user_id, item_id, price, quantity, channel, ts FROM events"
    ).fetchall() == [("product_added", "c1", "s1", 9.0, 1.0, "store", datetime(2024, 2, 1, 10, 30))]


def test_replay_parquet_rows(ws: Workspace, tmp_path: Path) -> None:
    table = pa.table(
        {
            "event": ["order_completed", "order_completed"],
            "user_id": ["u1", "u2"],
            "order_id": ["o1", "o2"],
            "item_id": ["i1", "i2"],
            "quantity": pa.array([2, 1], pa.int64()),
            "price": [3.0, float("nan")],
            "ts": pa.array([datetime(2024, 6, 1, 12)] * 2, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, tmp_path / "orders.parquet")
    ws.ingest("events", [str(tmp_path / "orders.parquet")])
    lines = export(ws, tmp_path / "q.jsonl")
    lines[2]["row"]["price"] = 6.5  # a JSON number is fine too

    results = ws.quarantine_replay(file=write_edits(tmp_path / "fix.jsonl", lines[2]))

    assert [(r.inserted, r.resolved) for r in results] == [(1, 1)]
    assert ws.store.sql(
        "SELECT user_id, quantity, price, revenue, ts FROM events ORDER BY user_id"
    ).fetchall() == [
        ("u1", 2.0, 3.0, 6.0, datetime(2024, 6, 1, 12)),
        ("u2", 1.0, 6.5, 6.5, datetime(2024, 6, 1, 12)),
    ]


def test_replay_users(ws: Workspace, write: Write, tmp_path: Path) -> None:
    ws.ingest("users", [write("users.csv", "user_id,city,email\nu1,Beijing,broken\n")])
    lines = export(ws, tmp_path / "q.jsonl")
    lines[2]["row"]["email"] = "u1@example.cn"

    results = ws.quarantine_replay(file=write_edits(tmp_path / "fix.jsonl", lines[2]))

    assert [(r.kind, r.inserted, r.resolved) for r in results] == [("users", 1, 1)]
    assert ws.store.sql("SELECT user_id, city FROM users").fetchall() == [("u1", "Beijing")]
    assert plain_pii(ws.store) == [("u1", "u1@example.cn")]


def test_replay_one_batch_only(ws: Workspace, batch: BatchResult, write: Write) -> None:
    other = ws.ingest(
        "events",
        [
            write(
                "other.csv",
                "event,user_id,item_id,order_id,price,ts\npurchase,u8,i8,o8,1,2024-01-08\n",
            )
        ],
    )

    results = ws.quarantine_replay(
        Selection(batch_id=other.batch_id), event_map={"purchase": "order_completed"}
    )

    assert [(r.inserted, r.resolved) for r in results] == [(1, 1)]
    assert open_rows(ws) == OPEN  # the first batch's purchase row is still open


def test_fixing_an_invalid_json_line(ws: Workspace, write: Write, tmp_path: Path) -> None:
    text = (
        '{"event":"page_viewed","user_id":"u1","ts":"2024-01-01"}\n'
        '{"event":"page_viewed","user_id":"u2","ts":"2024-01-02"\n'  # missing brace
    )
    ws.ingest("events", [write("events.jsonl", text)])
    lines = export(ws, tmp_path / "q.jsonl")
    assert lines[2]["reason"] == "not valid JSON"
    assert lines[2]["row"] == {
        "_raw_line": '{"event":"page_viewed","user_id":"u2","ts":"2024-01-02"'
    }
    lines[2]["row"]["_raw_line"] += "}"

    results = ws.quarantine_replay(file=write_edits(tmp_path / "fix.jsonl", lines[2]))

    assert [(r.inserted, r.resolved) for r in results] == [(1, 1)]
    assert ws.store.sql("SELECT user_id, ts FROM events ORDER BY user_id").fetchall() == [
        ("u1", datetime(2024, 1, 1)),
        ("u2", datetime(2024, 1, 2)),
    ]


# -- discard ---------------------------------------------------------------------------------


def test_discard_needs_a_filter(ws: Workspace, batch: BatchResult) -> None:
    with pytest.raises(InputError, match="discard needs --batch, --id or --reason") as info:
        ws.quarantine_discard(Selection())

    assert info.value.exit_code == 2
    assert len(open_rows(ws)) == 4


@pytest.mark.parametrize("pattern", ["%", "_", "%%", "%_%", "\\%", "[", ".*", " "])
def test_discard_reason_is_text_not_a_pattern(
    ws: Workspace, batch: BatchResult, pattern: str
) -> None:
    """Issue 12: the reason was an ILIKE pattern, so --reason % discarded every open row."""
    reasons = ws.quarantine_rows(Selection(), limit=None)["reason"].str.lower().tolist()
    literal = sum(pattern.lower() in r for r in reasons)
    if pattern.strip():
        assert literal < len(reasons) == 4
        assert ws.quarantine_discard(Selection(reason=pattern)) == literal
    else:
        with pytest.raises(InputError, match="discard needs"):
            ws.quarantine_discard(Selection(reason=pattern))
        literal = 0
    assert len(open_rows(ws)) == 4 - literal
    assert ws.quarantine_rows(Selection(reason="BELOW 0")).shape[0] == 1  # still case-blind


def test_discard_marks_rows_and_replay_skips_them(ws: Workspace, batch: BatchResult) -> None:
    assert ws.quarantine_discard(Selection(reason="below 0")) == 1
    assert ws.quarantine_discard(Selection(ids=(qid(ws, 5),))) == 1
    assert ws.quarantine_discard(Selection(reason="below 0")) == 0  # already discarded

    assert ws.store.sql(
        "SELECT line_no, resolved_batch_id, resolved_at IS NOT NULL FROM quarantine "
        "WHERE resolved_at IS NOT NULL ORDER BY line_no"
    ).fetchall() == [(3, "discarded", True), (5, "discarded", True)]
    assert open_rows(ws) == [OPEN[1], OPEN[3]]
    results = ws.quarantine_replay()
    assert [r.rows_read for r in results] == [2]
    assert ws.store.count("quarantine") == 4  # discarded rows are kept for the record


def test_discard_a_whole_batch(ws: Workspace, batch: BatchResult) -> None:
    assert ws.quarantine_discard(Selection(batch_id=batch.batch_id)) == 4
    assert open_rows(ws) == []
    assert ws.quarantine_replay() == []


# -- errors ----------------------------------------------------------------------------------


def test_unknown_batch_id(ws: Workspace, batch: BatchResult) -> None:
    for call in (
        lambda: ws.quarantine_rows(Selection(batch_id="b-nope")),
        lambda: ws.quarantine_replay(Selection(batch_id="b-nope")),
        lambda: ws.quarantine_discard(Selection(batch_id="b-nope")),
        lambda: ws.quarantine_export("unused.jsonl", Selection(batch_id="b-nope")),
    ):
        with pytest.raises(NotFoundError, match="no batch 'b-nope'") as info:
            call()
        assert info.value.exit_code == 2
    assert len(open_rows(ws)) == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"quarantine_id": 1, "row": {}}\n{not json\n', "line 2: not valid JSON"),
        ('\n\n{"row": {"a": 1}}\n', "line 3: needs an integer quarantine_id and a row object"),
        (
            '{"quarantine_id": "1", "row": {}}\n',
            "line 1: needs an integer quarantine_id and a row object",
        ),
        (
            '{"quarantine_id": 1, "row": "text"}\n',
            "line 1: needs an integer quarantine_id and a row object",
        ),
        ("[1, 2]\n", "line 1: needs an integer quarantine_id and a row object"),
        ("\n  \n", "holds no rows to replay"),
        ('{"quarantine_id": 999, "row": {}}\n', "quarantine ids [999] do not exist"),
    ],
)
def test_malformed_edit_file(
    ws: Workspace, batch: BatchResult, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "edits.jsonl"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(InputError) as info:
        ws.quarantine_replay(file=path)

    assert str(path) in info.value.message
    assert message in info.value.message
    assert len(open_rows(ws)) == 4
    assert ws.store.count("ingest_batches") == 1


def test_missing_edit_file(ws: Workspace, batch: BatchResult, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        ws.quarantine_replay(file=tmp_path / "nope.jsonl")


def test_export_to_an_unwritable_place(ws: Workspace, batch: BatchResult, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot write"):
        ws.quarantine_export(tmp_path / "no" / "such" / "dir" / "q.jsonl")


# -- hostile replay files (issue 12) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"_error": "x", "user_id": "u"}, "'_error'"),
        ({"_line": 3}, "'_line'"),
        ({"_qid": 1}, "'_qid'"),
        ({"_object": "{}"}, "'_object'"),
        ({"\u0000": "x"}, "row key '\\x00' cannot name a column"),
        ({"": "x"}, "row key '' cannot name a column"),
        ({"_raw_line": "a,b", "_columns": "a,b"}, "_columns must be a list"),
        ({"_raw_line": "a,b", "_columns": [1, 2]}, "_columns must be a list"),
        ({"_raw_line": "a,b", "_columns": ["a", "b"], "_delimiter": ";;"}, "_delimiter"),
        ({"_raw_line": "a,b", "_columns": ["a", "b"], "_delimiter": 7}, "_delimiter"),
        ({"_raw_line": 5}, "_raw_line must be text"),
    ],
)
def test_replay_rows_with_reserved_keys_or_bad_shapes_are_refused(
    ws: Workspace, batch: BatchResult, tmp_path: Path, row: dict, needle: str
) -> None:
    """Reserved keys were silently dropped; bad _columns/_delimiter ended in tracebacks."""
    before = open_rows(ws)
    path = write_edits(tmp_path / "edits.jsonl", {"quarantine_id": qid(ws, 5), "row": row})
    with pytest.raises(InputError, match="line 1") as info:
        ws.quarantine_replay(file=path)
    assert needle in str(info.value)
    assert open_rows(ws) == before


def test_replay_quarantine_id_true_is_not_row_one(
    ws: Workspace, batch: BatchResult, tmp_path: Path
) -> None:
    path = write_edits(tmp_path / "edits.jsonl", {"quarantine_id": True, "row": {"user_id": "u"}})
    with pytest.raises(InputError, match="integer quarantine_id"):
        ws.quarantine_replay(file=path)


def test_replay_reads_only_a_regular_file(
    ws: Workspace, batch: BatchResult, tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(InputError, match="not a regular file"):
            ws.quarantine_replay(file=path)


RAW_LINE_ROW = {  # line 6 of EVENTS, as the export writes it
    "_raw_line": "product_viewed,u5,i5,,,2024-01-05",
    "_columns": ["event", "user_id", "item_id", "order_id", "price", "ts"],
    "_delimiter": ",",
}


@pytest.mark.parametrize(
    ("line", "row", "needle"),
    [
        # Keys inside a JSON Lines row's text were read unchecked: _error was overwritten.
        (
            5,
            {"_raw_line": '{"event": "page_viewed", "_error": "x"}'},
            "row key '_error' is reserved",
        ),
        (5, {"_raw_line": '{"event": "page_viewed", "": "x"}'}, "row key '' cannot name"),
        (5, {"_raw_line": '{"event": "page_viewed", "_QID": 1}'}, "row key '_QID' is reserved"),
        # So were a CSV row's column names: _qid replaced the quarantine id, a repeated name
        # dropped a value and ended in a NOT NULL traceback.
        (
            6,
            {**RAW_LINE_ROW, "_columns": ["event", "_qid", "item_id", "order_id", "price", "ts"]},
            "'_qid' is reserved",
        ),
        (
            6,
            {**RAW_LINE_ROW, "_columns": ["event", "", "item_id", "order_id", "price", "ts"]},
            "row key '' cannot name",
        ),
        (
            6,
            {**RAW_LINE_ROW, "_columns": ["event", "ts", "item_id", "order_id", "price", "ts"]},
            "_columns names 'ts' twice",
        ),
        (6, {**RAW_LINE_ROW, "_delimiter": '"'}, "_delimiter must be ',' or a tab"),
        (6, {**RAW_LINE_ROW, "_delimiter": "\n"}, "_delimiter must be ',' or a tab"),
        (6, {**RAW_LINE_ROW, "_delimiter": "\x00"}, "_delimiter must be ',' or a tab"),
        # A lone surrogate in a line that fails again: a UnicodeEncodeError traceback.
        (6, {**RAW_LINE_ROW, "_raw_line": "product_viewed,u\udcff"}, "not UTF-8"),
        (6, {**RAW_LINE_ROW, "_columns": ["event", "user\udcff"]}, "not UTF-8"),
        # Keys next to _raw_line were dropped without a word: only the line is read.
        (6, {**RAW_LINE_ROW, "user_id": "u9"}, "holds only _raw_line, _columns, _delimiter"),
        # Keys that differ only in case: DuckDB read the second as 'user_id_1', an extra.
        (
            5,
            {"event": "page_viewed", "user_id": "u", "USER_ID": "v", "ts": "2024-01-01"},
            "'user_id' and 'USER_ID' differ only in case",
        ),
        (
            5,
            {"event": "page_viewed", "user_id": "u", "ts": "2024-01-01", "a\x01": 1},
            "row key 'a\\x01' cannot name",
        ),
        (
            5,
            {"event": "page_viewed", "user_id": "u", "ts": "2024-01-01", "\udcff": 1},
            "row key '\\udcff' cannot name",
        ),
        (
            5,
            {
                "event": "page_viewed",
                "user_id": "u",
                "ts": "2024-01-01",
                "_undecodable": ["user_id"],
            },
            "'_undecodable' is reserved",
        ),
    ],
)
def test_every_key_of_a_replay_file_is_checked(
    ws: Workspace, batch: BatchResult, tmp_path: Path, line: int, row: dict, needle: str
) -> None:
    path = tmp_path / "edits.jsonl"
    path.write_text(json.dumps({"quarantine_id": qid(ws, line), "row": row}) + "\n")
    with pytest.raises(InputError) as info:
        ws.quarantine_replay(file=path)
    assert f"{path}, line 1" in str(info.value) and needle in str(info.value), str(info.value)
    assert open_rows(ws) == OPEN
    assert ws.store.count("ingest_batches") == 1


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        # The later line silently won.
        (
            '{"quarantine_id": Q, "row": {"user_id": "a"}}\n{"quarantine_id": Q, "row": {}}\n',
            "line 2: quarantine_id Q is also on line 1",
        ),
        # So did the later key.
        (
            '{"quarantine_id": Q, "row": {"user_id": "a", "user_id": "b"}}\n',
            "line 1: not valid JSON (key 'user_id' appears twice)",
        ),
        (
            '{"quarantine_id": Q, "quarantine_id": 1, "row": {}}\n',
            "line 1: not valid JSON (key 'quarantine_id' appears twice)",
        ),
        # A RecursionError traceback.
        (
            '{"quarantine_id": Q, "row": {"p": ' + "[" * 100_000 + "]" * 100_000 + "}}\n",
            "line 1: not valid JSON (nested too deeply)",
        ),
        ('{"quarantine_id": 1e400, "row": {}}\n', "line 1: needs an integer quarantine_id"),
        ('{"quarantine_id": 100000000000000000000000, "row": {}}\n', "line 1: needs an integer"),
    ],
)
def test_replay_file_lines_that_would_be_lost_or_crash(
    ws: Workspace, batch: BatchResult, tmp_path: Path, content: str, needle: str
) -> None:
    q = str(qid(ws, 5))
    path = tmp_path / "edits.jsonl"
    path.write_text(content.replace("Q", q), encoding="utf-8")
    with pytest.raises(InputError) as info:
        ws.quarantine_replay(file=path)
    assert needle.replace("Q", q) in str(info.value), str(info.value)
    assert open_rows(ws) == OPEN


def test_a_lone_surrogate_in_a_replayed_value_stays_quarantined(
    ws: Workspace, batch: BatchResult, tmp_path: Path
) -> None:
    """'\\udcff' (valid JSON, not UTF-8) ended in a UnicodeEncodeError traceback."""
    lines = export(ws, tmp_path / "q.jsonl")
    lines[5]["row"].update(price="4.5", user_id="u\udcff")
    path = tmp_path / "fix.jsonl"
    path.write_text(json.dumps(lines[5]) + "\n", encoding="utf-8")  # ASCII: the escape survives
    for file in (path, None):  # then a replay of the row as it is now stored
        [result] = ws.quarantine_replay(Selection(ids=(qid(ws, 5),)), file=file)
        assert (result.resolved, result.quarantined) == (0, 1)
        assert ws.store.sql("SELECT reason FROM quarantine WHERE line_no = 5").fetchone() == (
            "user_id: invalid UTF-8",
        )
    assert ws.store.count("events") == 1


def test_a_stored_json_line_with_a_lone_surrogate_replays_without_a_traceback(
    ws: Workspace, write: Write
) -> None:
    """DuckDB calls the line invalid JSON; Python read it, and pyarrow then raised."""
    path = write("e.jsonl", '{"event":"page_viewed","user_id":"\\udcff","ts":"2024-01-01"}\n')
    result = ws.ingest("events", [path])
    assert result.quarantined == 1
    for _ in range(2):
        [replay] = ws.quarantine_replay()
        assert (replay.resolved, replay.quarantined) == (0, 1)
    assert ws.store.sql("SELECT reason FROM quarantine").fetchall() == [("user_id: invalid UTF-8",)]
    assert ws.store.count("events") == 0


def test_a_stored_deeply_nested_line_replays_without_a_traceback(
    ws: Workspace, write: Write
) -> None:
    line = '{"event":"page_viewed","user_id":"u","ts":"2024-01-01","p":' + "[" * 100_000
    ws.ingest("events", [write("e.jsonl", line + "]" * 100_000 + "}x\n")])
    [replay] = ws.quarantine_replay()
    assert (replay.resolved, replay.quarantined) == (0, 1)
    assert ws.store.sql("SELECT reason FROM quarantine").fetchall() == [
        ("not valid JSON (nested too deeply)",)
    ]


def test_undecodable_values_are_not_replayed_as_their_escapes(
    ws: Workspace, write: Write, tmp_path: Path
) -> None:
    """A CSV user id of bytes \\xFF\\xFE was quarantined, and a plain replay then stored the
    escaped text '\\xFF\\xFEu2' as the user id."""
    ws.ingest("users", [write("users.csv", b"user_id,city\n\xff\xfeu2,BJ\nu3,\xffX\n")])
    for _ in range(2):
        [replay] = ws.quarantine_replay()
        assert (replay.resolved, replay.quarantined) == (0, 2)
    assert ws.store.sql("SELECT reason FROM quarantine ORDER BY line_no").fetchall() == [
        ("user_id: invalid UTF-8",),
        ("city: invalid UTF-8",),
    ]
    assert ws.store.count("users") == 0
    lines = export(ws, tmp_path / "q.jsonl")
    assert lines[2]["row"] == {"user_id": "\\xFF\\xFEu2", "city": "BJ"}
    assert lines[2]["undecodable"] == ["user_id"] and lines[3]["undecodable"] == ["city"]
    # Fixed in the export, a row goes in; left as it was, it stays.
    lines[2]["row"]["user_id"] = "u2"
    ws.quarantine_replay(file=write_edits(tmp_path / "fix.jsonl", lines[2], lines[3]))
    assert ws.store.sql("SELECT user_id, city FROM users").fetchall() == [("u2", "BJ")]
    assert open_rows(ws) == [(3, "city: invalid UTF-8")]


def test_replay_rows_whose_keys_differ_only_in_case_name_both_rows(
    ws: Workspace, batch: BatchResult, tmp_path: Path
) -> None:
    lines = export(ws, tmp_path / "q.jsonl")
    lines[3]["row"]["Note"] = "a"
    lines[5]["row"]["note"] = "b"
    path = write_edits(tmp_path / "fix.jsonl", lines[3], lines[5])
    with pytest.raises(InputError, match=r"line 2: row key 'note' and 'Note' \(.*line 1\)"):
        ws.quarantine_replay(file=path)
    assert open_rows(ws) == OPEN


def test_a_line_of_reasons_selects_its_rows_by_kind_and_group(
    ws: Workspace, batch: BatchResult, write: Write
) -> None:
    """The dashboard pages the rows of one reason as reasons() lists it (values elided)."""
    ws.ingest(
        "events",
        [
            write(
                "more.csv",
                "event,user_id,item_id,order_id,price,ts\norder_completed,u9,i9,o9,-8,2024-01-09\n",
            )
        ],
    )
    group = Selection(kind="events", group="price: … is below 0")
    rows = ws.ingest.quarantine.rows(group)
    assert rows["reason"].tolist() == ["price: '-3' is below 0", "price: '-8' is below 0"]
    assert ws.ingest.quarantine.page(group, limit=1)["line_no"].tolist() == [3]
    assert ws.ingest.quarantine.rows(Selection(kind="users", group="price: … is below 0")).empty
    assert ws.ingest.quarantine.rows(Selection(group="price: …")).empty, "exact, not a prefix"
    assert ws.ingest.quarantine.discard(group) == 2
    assert [r for r in ws.quarantine_reasons()["reason"] if "below" in r] == []
