"""Hostile files through the real ``jingzhun ingest`` and ``quarantine`` commands (issue 12).

Each case was a traceback (exit 1), a silent loss or personal data in an analytics table; now
it is one error line naming the file (exit 2) with the store unchanged, or a row quarantined
with a reason that names the field. The library-level tests of the same cases are in
``tests/ingest``; these prove what a user at the terminal sees.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.subprocess_cli import error_line, one_json, run, snapshot, sql


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.duckdb"


@pytest.mark.parametrize(
    ("kind", "name", "content", "needles"),
    [
        # A conversion traceback: DuckDB read the header in place of the record number.
        ("users", "u.csv", "_LINE,user_id\n5,u1\n", ("u.csv", "'_LINE'", "reserved")),
        # Personal data would have gone into users.attributes.
        ("users", "u.csv", "user_id,E-Mail\nu1,a@x.com\n", ("u.csv", "'E-Mail'", "--map")),
        ("users", "u.csv", "Email,user_id,email\na@x.com,u1,b@x.com\n", ("'Email'", "'email'")),
        # Line 2's address was dropped without a word.
        (
            "users",
            "u.jsonl",
            '{"user_id":"u1","Email":"a@x.com"}\n{"user_id":"u2","email":"b@x.com"}\n',
            ("u.jsonl", "'Email' and 'email' (line 2)"),
        ),
        # A header past the first 64 KiB was "column 10951 has no name".
        (
            "items",
            "i.csv",
            "item_id," + ",".join(f"attribute_{i}" for i in range(6000)) + "\ni1\n",
            ("i.csv", "longer than 64 KiB"),
        ),
        ("events", "e.jsonl", '{"event":"page_viewed","":"x"}\n', ("e.jsonl", "JSON key ''")),
    ],
    ids=["reserved", "pii-header", "second-email", "jsonl-case", "long-header", "empty-key"],
)
def test_hostile_files_are_one_error_line(
    tmp_path: Path, db: Path, kind: str, name: str, content: str, needles: tuple[str, ...]
) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    assert run(tmp_path, "ingest", "users", "--json", _ok_users(tmp_path), db=db).code == 0
    before = snapshot(db)
    error_line(run(tmp_path, "ingest", kind, name, db=db), *needles)
    assert snapshot(db) == before


def _ok_users(folder: Path) -> str:
    (folder / "ok.csv").write_text("user_id,city\nu0,Shanghai\n", encoding="utf-8")
    return "ok.csv"


def test_a_json_chunk_without_a_required_key_is_quarantined(tmp_path: Path, db: Path) -> None:
    """A NOT NULL constraint traceback (exit 1) before."""
    (tmp_path / "e.jsonl").write_text('{"event":"page_viewed","user_id":"u1"}\n')
    result = one_json(run(tmp_path, "ingest", "events", "e.jsonl", "--json", db=db))
    assert (result["inserted"], result["quarantined"]) == (0, 1)
    assert sql(db, "SELECT reason FROM quarantine") == [("ts: missing",)]


def test_replaying_a_lone_surrogate_quarantines_the_row(tmp_path: Path, db: Path) -> None:
    """An "invalid-UTF-8 user id" ('\\udcff' in a JSON line) ended in a UnicodeEncodeError
    traceback when replayed, from the store and from an edited export."""
    (tmp_path / "e.jsonl").write_text(
        '{"event":"page_viewed","user_id":"\\udcff","ts":"2024-01-01"}\n', encoding="utf-8"
    )
    assert run(tmp_path, "ingest", "events", "e.jsonl", db=db).code == 0
    replayed = one_json(run(tmp_path, "quarantine", "replay", "--json", db=db))
    assert (replayed["resolved"], replayed["still_quarantined"]) == (0, 1)
    assert sql(db, "SELECT reason FROM quarantine") == [("user_id: invalid UTF-8",)]

    one_json(run(tmp_path, "quarantine", "export", "--out", "q.jsonl", "--json", db=db))
    [line] = [json.loads(t) for t in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert line["undecodable"] == ["user_id"]
    line["row"]["user_id"] = "u\udcff"
    (tmp_path / "fix.jsonl").write_text(json.dumps(line) + "\n")
    replayed = one_json(
        run(tmp_path, "quarantine", "replay", "--file", "fix.jsonl", "--json", db=db)
    )
    assert replayed["still_quarantined"] == 1
    line["row"]["user_id"] = "u1"
    (tmp_path / "fix.jsonl").write_text(json.dumps(line) + "\n")
    replayed = one_json(
        run(tmp_path, "quarantine", "replay", "--file", "fix.jsonl", "--json", db=db)
    )
    assert replayed["resolved"] == 1
    assert sql(db, "SELECT user_id FROM events") == [("u1",)]


@pytest.mark.parametrize(
    ("row", "needles"),
    [
        ({"_raw_line": "x", "_columns": ["a", "a"]}, ("line 1", "_columns names 'a' twice")),
        ({"_raw_line": "x", "_columns": ["a"], "_delimiter": [","]}, ("line 1", "_delimiter")),
        ({"p": [[[[[]]]]], "user_id": "u1", "_QID": 7}, ("line 1", "'_QID' is reserved")),
    ],
    ids=["dup-columns", "delimiter-shape", "reserved-key"],
)
def test_hostile_replay_files_are_one_error_line(
    tmp_path: Path, db: Path, row: dict, needles: tuple[str, ...]
) -> None:
    """A NOT NULL traceback, a TypeError traceback, and a key silently overwritten."""
    (tmp_path / "e.csv").write_text("event,user_id,ts\npage_viewed,u1,tomorrow\n")
    assert run(tmp_path, "ingest", "events", "e.csv", db=db).code == 0
    qid = sql(db, "SELECT quarantine_id FROM quarantine")[0][0]
    (tmp_path / "fix.jsonl").write_text(json.dumps({"quarantine_id": qid, "row": row}) + "\n")
    before = snapshot(db)
    res = run(tmp_path, "quarantine", "replay", "--file", "fix.jsonl", db=db)
    error_line(res, "fix.jsonl", *needles)
    assert snapshot(db) == before


def test_a_deeply_nested_replay_file_is_one_error_line(tmp_path: Path, db: Path) -> None:
    """A RecursionError traceback before."""
    (tmp_path / "e.csv").write_text("event,user_id,ts\npage_viewed,u1,tomorrow\n")
    assert run(tmp_path, "ingest", "events", "e.csv", db=db).code == 0
    qid = sql(db, "SELECT quarantine_id FROM quarantine")[0][0]
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "fix.jsonl").write_text(f'{{"quarantine_id": {qid}, "row": {{"p": {deep}}}}}\n')
    before = snapshot(db)
    error_line(
        run(tmp_path, "quarantine", "replay", "--file", "fix.jsonl", db=db),
        "fix.jsonl, line 1",
        "nested too deeply",
    )
    assert snapshot(db) == before
