"""The command line, run as a real subprocess (``python -m jingzhun``) on real DuckDB files.

Conventions checked here (docs: DESIGN.md, "CLI conventions"): ``--json`` prints exactly one
JSON object on stdout and nothing else; exit codes 0 ok, 1 failure while running, 2 bad input
or usage; an error is one line on stderr starting with ``error:`` that names what is wrong; a
command that fails on bad input leaves the store as it was.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import jingzhun
from jingzhun.store import latest_schema_version
from jingzhun.workspace import Workspace
from tests.cli import subprocess_cli as sp

INGEST_KEYS = {"batch_id", "rows_read", "inserted", "duplicates", "quarantined", "seconds"}
BATCH_ID = re.compile(r"^b\d{8}T\d{6}-[0-9a-f]{6}$")

EVENTS_CSV = (
    "event_id,event,ts,user_id,anonymous_id,order_id,item_id,price\n"
    "e1,page_viewed,2025-03-01T10:00:00,,a1,,,\n"
    "e2,signed_up,2025-03-01T10:05:00,u1,a1,,,\n"
    "e3,order_completed,2025-03-01T10:10:00,u1,,o1,sku1,10.5\n"
    "e4,bogus_event,2025-03-01T10:11:00,u1,,,,\n"
)
USERS_CSV = "user_id,email,city\nu1,u1@example.com,Beijing\nu2,u2@example.com,Shanghai\n"
ITEMS_CSV = "item_id,title,price\nsku1,Tea,10.5\nsku2,Cup,3\n"


# -- helpers ------------------------------------------------------------------------------------


def one_json(res: Any) -> dict[str, Any]:
    """The result succeeded and stdout holds exactly one JSON object and nothing else."""
    assert res.code == 0, f"exit {res.code}: {res.stderr}"
    obj, end = json.JSONDecoder().raw_decode(res.stdout.lstrip())
    assert res.stdout.lstrip()[end:].strip() == "", (
        f"more than one JSON value on stdout: {res.stdout!r}"
    )
    assert isinstance(obj, dict)
    assert "error:" not in res.stderr
    return obj


def error_line(res: Any, *needles: str, code: int = 2) -> str:
    """The result failed with ``code`` and exactly one ``error:`` line naming each needle."""
    assert res.code == code, f"exit {res.code}, stdout {res.stdout!r}, stderr {res.stderr!r}"
    assert res.stdout == "", f"stdout should stay empty on error: {res.stdout!r}"
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {res.stderr!r}"
    line = lines[0]
    assert line.startswith("error:"), line
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def store_tables(db: Path) -> dict[str, int]:
    """Table row counts of a store, read in this process (what ``status --json`` reports)."""
    with Workspace.open(db) as ws:
        return ws.summary()["tables"]


def status_tables(cli: Callable[..., Any], db: Path) -> dict[str, int]:
    return one_json(cli("--db", str(db), "status", "--json"))["tables"]


def ingest(
    cli: Callable[..., Any], db: Path | None, kind: str, *files: str, **kw: Any
) -> dict[str, Any]:
    """``ingest KIND FILES --json`` (into the default store if ``db`` is None), checked."""
    db_args = () if db is None else ("--db", str(db))
    data = one_json(cli(*db_args, "ingest", kind, *files, "--json", **kw))
    assert set(data) >= INGEST_KEYS
    assert data["rows_read"] == data["inserted"] + data["duplicates"] + data["quarantined"]
    assert BATCH_ID.match(data["batch_id"]), data["batch_id"]
    assert isinstance(data["seconds"], int | float) and data["seconds"] >= 0
    return data


def truth_counts(shop: Any) -> dict[str, int]:
    expected = shop.data.truth_dirty.column("expected").to_pylist()
    return {k: expected.count(k) for k in ("quarantined", "duplicate")}


@pytest.fixture(scope="module")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A small store with events, users, items, identities and one quarantined row."""
    folder = tmp_path_factory.mktemp("template")
    db = folder / "store.duckdb"
    for name, text in (
        ("events.csv", EVENTS_CSV),
        ("users.csv", USERS_CSV),
        ("items.csv", ITEMS_CSV),
    ):
        (folder / name).write_text(text, encoding="utf-8")
    with Workspace.open(db) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [str(folder / f"{kind}.csv")])
    tables = store_tables(db)
    assert tables["events"] == 3 and tables["quarantine"] == 1 and tables["identities"] == 1
    assert not db.with_name(db.name + ".wal").exists()
    return db, tables


@pytest.fixture
def store(
    template_store: tuple[Path, dict[str, int]], tmp_path: Path
) -> tuple[Path, dict[str, int]]:
    """A copy of the template store in this test's folder, and its table counts."""
    src, tables = template_store
    db = tmp_path / "store.duckdb"
    shutil.copyfile(src, db)
    return db, tables


# -- basics -------------------------------------------------------------------------------------


def test_version_help_and_no_arguments(cli) -> None:
    res = cli("--version")
    assert res.code == 0, res.stderr
    assert res.stdout.strip() == f"jingzhun {jingzhun.__version__}"

    res = cli("--help")
    assert res.code == 0, res.stderr
    for group in ("ingest", "quarantine", "clean", "status", "synth", "demo", "report"):
        assert re.search(rf"\b{group}\b", res.stdout), group
    assert "--db" in res.stdout and "--config" in res.stdout

    res = cli()  # no command: the help, as a usage error
    assert res.code == 2
    assert "Usage" in res.stdout and "quarantine" in res.stdout


def test_ingest_the_shop_with_json_counts_and_reingest(cli, shop, tmp_path: Path) -> None:
    db = tmp_path / "shop.duckdb"
    items = ingest(cli, db, "items", shop.file("items"))
    users = ingest(cli, db, "users", shop.file("users"))
    events = ingest(cli, db, "events", shop.file("events"))
    assert items["rows_read"] == shop.data.items.num_rows and items["inserted"] > 0
    assert users["rows_read"] == shop.data.users.num_rows and users["inserted"] > 0
    assert events["rows_read"] == shop.data.events.num_rows
    truth = truth_counts(shop)
    assert events["quarantined"] == truth["quarantined"]
    assert events["duplicates"] == truth["duplicate"]
    assert events["kind"] == "events" and events["sources"] == [shop.file("events")]

    again = ingest(cli, db, "events", shop.file("events"))
    assert again["inserted"] == 0
    # Issue 14: the bad rows are quarantined already, so they are duplicates too.
    assert again["duplicates"] == events["rows_read"]
    assert again["quarantined"] == 0
    assert again["batch_id"] != events["batch_id"]

    status = one_json(cli("--db", str(db), "status", "--json"))
    assert status["schema_version"] == latest_schema_version()
    assert status["store"] == str(db)
    tables = status["tables"]
    assert tables == store_tables(db)
    assert tables["events"] == events["inserted"]
    assert tables["items"] == items["inserted"]
    assert tables["users"] == users["inserted"] - users["updated"]
    assert tables["ingest_batches"] == 4
    # The re-ingest quarantined nothing new: its bad rows are quarantined already (issue 14).
    assert tables["quarantine"] == users["quarantined"] + events["quarantined"]
    assert status["quarantine_open"] == tables["quarantine"]
    assert sum(status["events_by_type"].values()) == tables["events"]
    assert status["events_from"] < status["events_to"]


def test_default_store_environment_variable_and_db_option(cli, write, tmp_path: Path) -> None:
    first = write("a.csv", EVENTS_CSV)
    second = write("b.csv", "event,ts,user_id\npage_viewed,2025-04-01T00:00:00,u9\n")
    work = tmp_path / "work"
    work.mkdir()

    # no --db, no $JINGZHUN_DB: ./jingzhun.duckdb in the working folder
    assert ingest(cli, None, "events", str(first), cwd=work)["inserted"] == 3
    default = work / "jingzhun.duckdb"
    assert default.is_file()
    status = one_json(cli("status", "--json", cwd=work))
    assert status["store"] == "jingzhun.duckdb"
    assert status["tables"]["events"] == 3

    # $JINGZHUN_DB chooses the store
    env_db = tmp_path / "env" / "env.duckdb"
    env = {"JINGZHUN_DB": str(env_db)}
    res = cli("ingest", "events", str(second), "--json", cwd=work, env=env)
    assert one_json(res)["inserted"] == 1
    assert env_db.is_file()

    # --db wins over $JINGZHUN_DB (an empty store: status, a reader, creates none)
    other = tmp_path / "other.duckdb"
    Workspace.open(other).close()
    status = one_json(cli("--db", str(other), "status", "--json", cwd=work, env=env))
    assert status["store"] == str(other)
    assert status["tables"]["events"] == 0

    assert store_tables(default)["events"] == 3
    assert store_tables(default)["ingest_batches"] == 1
    assert store_tables(env_db)["events"] == 1
    assert not (work / "env.duckdb").exists()


def test_ingest_from_stdin(cli, tmp_path: Path) -> None:
    db = tmp_path / "stdin.duckdb"
    csv = (
        b"event,ts,user_id\n"
        b"page_viewed,2025-01-01T00:00:00,u1\n"
        b"page_viewed,2025-01-02T00:00:00,u2\n"
        b"bad_event,2025-01-01T00:00:00,u3\n"
    )
    data = ingest(cli, db, "events", "-", "--format", "csv", input=csv)
    assert (data["rows_read"], data["inserted"], data["duplicates"], data["quarantined"]) == (
        3,
        2,
        0,
        1,
    )
    assert data["sources"] == ["-"]

    shown = one_json(
        cli("--db", str(db), "quarantine", "show", "--batch", data["batch_id"], "--json")
    )
    (row,) = shown["rows"]
    assert row["source"] == "-"
    assert row["line_no"] == 4  # the header is record 1
    assert row["raw"]["event"] == "bad_event"
    assert "bad_event" in row["reason"]

    # tab-separated users on stdin, the format recognised from the content
    tsv = b"user_id\tcity\nu1\tBeijing\nu2\tShanghai\n"
    users = ingest(cli, db, "users", "-", input=tsv)
    assert (users["rows_read"], users["inserted"]) == (2, 2)
    assert store_tables(db)["users"] == 2


def test_json_output_stays_alone_on_stdout_when_warnings_occur(cli, write, tmp_path: Path) -> None:
    db = tmp_path / "warn.duckdb"
    # quarantined rows, an in-batch duplicate and an anonymous id seen with two users
    path = write(
        "dirty.csv",
        "event_id,event,ts,user_id,anonymous_id\n"
        "e1,page_viewed,2025-03-01T10:00:00,u1,a1\n"
        "e2,page_viewed,2025-03-01T10:01:00,u2,a1\n"
        "e2,page_viewed,2025-03-01T10:01:00,u2,a1\n"
        "e3,nonsense,2025-03-01T10:02:00,u1,\n"
        "e4,page_viewed,not-a-time,u1,\n",
    )
    res = cli(
        "--db", str(db), "ingest", "events", str(path), "--json", env={"PYTHONWARNINGS": "always"}
    )
    data = one_json(res)
    assert (data["inserted"], data["duplicates"], data["quarantined"]) == (2, 1, 2)
    assert data["identity_conflicts"] == 1

    # the same warnings in human mode: the hint goes to stderr, the summary to stdout (other
    # bad rows: the same ones again are duplicates of the quarantined, issue 14)
    other = write("dirty2.csv", path.read_text().replace("e3,", "e5,").replace("e4,", "e6,"))
    res = cli("--db", str(db), "ingest", "events", str(other))
    assert res.code == 0, res.stderr
    assert "quarantine show --batch" in res.stderr
    assert "quarantine show" not in res.stdout
    assert "2 quarantined" in res.stdout

    status = one_json(cli("--db", str(db), "status", "--json", env={"PYTHONWARNINGS": "always"}))
    assert status["quarantine_open"] == 4


# -- quarantine ---------------------------------------------------------------------------------


def test_quarantine_list_show_export_replay_discard(cli, shop, tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    events = ingest(cli, db, "events", shop.file("events"))
    batch, n_open = events["batch_id"], events["quarantined"]
    assert n_open > 20

    listing = one_json(cli("--db", str(db), "quarantine", "list", "--json"))
    (entry,) = listing["batches"]
    assert entry["batch_id"] == batch
    assert (entry["open"], entry["replayed"], entry["discarded"]) == (n_open, 0, 0)
    assert entry["kind"] == "events"
    assert 0 < sum(r["rows"] for r in listing["reasons"]) <= n_open
    assert any("user_id or an anonymous_id" in r["reason"] for r in listing["reasons"])

    shown = one_json(cli("--db", str(db), "quarantine", "show", "--batch", batch, "--json"))
    rows = shown["rows"]
    assert len(rows) == 20  # the default limit
    for r in rows:
        assert r["batch_id"] == batch
        assert r["source"] == shop.file("events")
        assert isinstance(r["raw"], dict) and "event_id" in r["raw"]
        assert r["reason"]
        assert r["line_no"] >= 1
        assert r["resolved_at"] is None

    out = tmp_path / "quarantine.jsonl"
    exported = one_json(cli("--db", str(db), "quarantine", "export", "--out", str(out), "--json"))
    assert exported == {"exported": n_open, "file": str(out)}
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == n_open
    # fix the rows that lack any id, and the misspelt event name; leave the rest
    fixed = 0
    for rec in records:
        assert {"quarantine_id", "batch_id", "reason", "row"} <= set(rec)
        if rec["reason"] == "needs a user_id or an anonymous_id":
            rec["row"]["user_id"] = "u00000001"
            fixed += 1
        elif rec["reason"].startswith("event: 'prodct_viewd'") and ";" not in rec["reason"]:
            rec["row"]["event"] = "product_viewed"
            fixed += 1
    assert 0 < fixed < n_open
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    replay = one_json(cli("--db", str(db), "quarantine", "replay", "--file", str(edited), "--json"))
    assert replay["rows"] == n_open
    assert replay["resolved"] == fixed
    assert replay["still_quarantined"] == n_open - fixed
    (rb,) = replay["batches"]
    assert rb["sources"] == [f"replay:{batch}"]
    assert rb["inserted"] == fixed

    tables = store_tables(db)
    assert tables["events"] == events["inserted"] + fixed
    assert tables["quarantine"] == n_open  # rows stay on record, resolved
    assert tables["ingest_batches"] == 2

    # replaying the same file again touches only the rows still open
    again = one_json(cli("--db", str(db), "quarantine", "replay", "--file", str(edited), "--json"))
    assert (again["rows"], again["resolved"]) == (n_open - fixed, 0)

    # discard needs a selection; with one it closes what is left
    error_line(cli("--db", str(db), "quarantine", "discard", "--json"), "--batch")
    discarded = one_json(cli("--db", str(db), "quarantine", "discard", "--batch", batch, "--json"))
    assert discarded == {"discarded": n_open - fixed}

    listing = one_json(cli("--db", str(db), "quarantine", "list", "--json"))
    entry = next(b for b in listing["batches"] if b["batch_id"] == batch)
    assert (entry["open"], entry["replayed"], entry["discarded"]) == (0, fixed, n_open - fixed)
    assert listing["reasons"] == []
    assert store_tables(db)["events"] == events["inserted"] + fixed


# -- clean, report, synth -----------------------------------------------------------------------


def test_clean_reports_flags_and_removes(cli, shop, tmp_path: Path) -> None:
    db = tmp_path / "clean.duckdb"
    events = ingest(cli, db, "events", shop.file("events"))

    report = one_json(cli("--db", str(db), "clean", "--no-flag", "--json"))
    assert {"outliers", "bursts", "duplicates", "missing", "flagged"} <= set(report)
    assert report["flagged"] == {}
    assert store_tables(db)["event_flags"] == 0

    report = one_json(cli("--db", str(db), "clean", "--json"))
    assert {"outliers", "bursts", "duplicates", "missing", "flagged"} <= set(report)
    flagged = report["flagged"]
    assert set(flagged) == {"outlier_order", "bot_burst", "content_duplicate"}
    assert flagged["bot_burst"] > 0
    before = store_tables(db)
    assert before["event_flags"] == sum(flagged.values())
    assert report["duplicates"]["ingest"]["events"]["duplicates"] == events["duplicates"]
    assert report["outliers"]["orders"] > 0
    assert report["bursts"]["actors"] > 0
    assert all({"table", "column", "rate"} <= set(m) for m in report["missing"])

    error_line(cli("--db", str(db), "clean", "--remove", "bogus", "--json"), "bogus")
    assert store_tables(db) == before

    removed = one_json(cli("--db", str(db), "clean", "--remove", "bot_burst", "--json"))["removed"]
    assert removed["bot_burst"] == removed["total"] == flagged["bot_burst"]
    after = store_tables(db)
    assert after["events"] == before["events"] - removed["total"]
    assert after["quarantine"] == before["quarantine"] + removed["total"]


def test_report_command_writes_the_file(cli, shop, tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    ingest(cli, db, "events", shop.file("events"))
    res = cli("--db", str(db), "report", "--out", "r.html")
    assert res.code == 0, res.stderr
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert str((tmp_path / "r.html").resolve()) in res.stdout
    for key in ("overview", "activity", "ingest", "quality", "identity"):
        assert f'<section id="{key}">' in page

    res = cli("--db", str(db), "report", "--out", "zh/r.html", "--lang", "zh")
    assert res.code == 0, res.stderr
    assert "<h2>概览</h2>" in (tmp_path / "zh" / "r.html").read_text(encoding="utf-8")


def test_synth_writes_the_shop_and_its_truth(cli, tmp_path: Path) -> None:
    out = tmp_path / "shop300"
    data = one_json(cli("synth", "--users", "300", "--out", str(out), "--json"))
    for name in ("events", "users", "items", "campaigns"):
        assert (out / f"{name}.parquet").is_file(), name
        assert Path(data["files"][name]) == out / f"{name}.parquet"
    truth = out / "truth"
    assert truth.is_dir()
    for name in ("dirty_rows.parquet", "users.parquet", "campaigns.parquet", "anomalies.parquet"):
        assert (truth / name).is_file(), name
    stats = data["stats"]
    assert stats["users"] == 300
    assert pq.read_metadata(out / "users.parquet").num_rows == 300
    assert pq.read_metadata(out / "events.parquet").num_rows == stats["events"] > 0


# -- bad input: exit 2, one error line, the store unchanged -------------------------------------

GARBAGE = bytes(random.Random(7).randrange(256) for _ in range(4096))
GARBAGE = GARBAGE[:10] + b"\x00" + GARBAGE[11:]
HUGE_LINE_TOML = "[ingest]\nmax_line_bytes = 2048\n"
NO_TS_CSV = "event,timestamp,user_id\npage_viewed,2025-01-01T00:00:00,u1\n"


def _huge_csv(good_rows: int) -> str:
    rows = [f"page_viewed,2025-01-01T00:00:{i % 60:02d},u{i},web" for i in range(good_rows)]
    return (
        "event,ts,user_id,channel\n"
        + "".join(r + "\n" for r in rows)
        + "page_viewed,2025-01-01,u1,"
        + "x" * 5000
        + "\n"
    )


BAD_INPUTS: list[tuple[str, dict[str, str | bytes], list[str], tuple[str, ...], bytes | None]] = [
    # (id, files to write, arguments after --db, needles in the error line, stdin)
    (
        "missing-file",
        {},
        ["ingest", "events", "nope.csv", "--json"],
        ("nope.csv", "no such file"),
        None,
    ),
    (
        "empty-file",
        {"empty.csv": ""},
        ["ingest", "events", "empty.csv", "--json"],
        ("empty.csv", "empty"),
        None,
    ),
    (
        "empty-stdin",
        {},
        ["ingest", "events", "-", "--format", "csv", "--json"],
        ("- is empty",),
        b"",
    ),
    (
        "binary-garbage",
        {"garbage.bin": GARBAGE},
        ["ingest", "events", "garbage.bin", "--json"],
        ("garbage.bin",),
        None,
    ),
    (
        "garbage-parquet",
        {"junk.parquet": b"PAR1" + GARBAGE},
        ["ingest", "items", "junk.parquet"],
        ("junk.parquet", "Parquet"),
        None,
    ),
    (
        "missing-column",
        {"nots.csv": NO_TS_CSV},
        ["ingest", "events", "nots.csv", "--json"],
        ("nots.csv", "'ts'", "--map"),
        None,
    ),
    (
        "no-user-column",
        {"nouser.csv": "event,ts\npage_viewed,2025-01-01\n"},
        ["ingest", "events", "nouser.csv"],
        ("nouser.csv", "user_id", "--map"),
        None,
    ),
    (
        "map-bad-target",
        {"nots.csv": NO_TS_CSV},
        ["ingest", "events", "nots.csv", "--map", "timestamp=tss", "--json"],
        ("--map", "timestamp=tss", "'tss'"),
        None,
    ),
    (
        "map-absent-source",
        {"nots.csv": NO_TS_CSV},
        ["ingest", "events", "nots.csv", "--map", "timestamp=ts", "--map", "foo=channel", "--json"],
        ("--map", "'foo'"),
        None,
    ),
    (
        "set-unknown-field",
        {"nots.csv": NO_TS_CSV},
        ["ingest", "events", "nots.csv", "--set", "colour=red"],
        ("--set", "colour"),
        None,
    ),
    (
        "unknown-format",
        {"nots.csv": NO_TS_CSV},
        ["ingest", "events", "nots.csv", "--format", "xml", "--json"],
        ("--format", "xml"),
        None,
    ),
    ("unknown-command", {}, ["frobnicate"], ("frobnicate",), None),
    ("unknown-kind", {}, ["ingest", "orders", "x.csv"], ("orders",), None),
    (
        "unknown-option",
        {"nots.csv": NO_TS_CSV},
        ["ingest", "events", "nots.csv", "--bogus"],
        ("--bogus",),
        None,
    ),
    (
        "config-unknown-key",
        {"bad.toml": "[ingest]\nmax_futur_hours = 3\n"},
        ["--config", "bad.toml", "status", "--json"],
        ("bad.toml", "max_futur_hours"),
        None,
    ),
    (
        "config-syntax-error",
        {"syntax.toml": "[ingest\nmax_future_hours = 3\n"},
        ["--config", "syntax.toml", "status", "--json"],
        ("syntax.toml",),
        None,
    ),
    (
        "implicit-config-unknown-key",
        {"jingzhun.toml": "[clean]\nburst = 3\n", "a.csv": EVENTS_CSV},
        ["ingest", "events", "a.csv", "--json"],
        ("jingzhun.toml", "burst"),
        None,
    ),
    (
        "huge-first-line",
        {"jingzhun.toml": HUGE_LINE_TOML, "huge.csv": _huge_csv(0)},
        ["ingest", "events", "huge.csv", "--json"],
        ("huge.csv", "max_line_bytes"),
        None,
    ),
    (
        "huge-line-mid-file",
        {"jingzhun.toml": HUGE_LINE_TOML, "huge.csv": _huge_csv(150)},
        ["ingest", "events", "huge.csv", "--json"],
        ("huge.csv", "max_line_bytes"),
        None,
    ),
    (
        "clean-unknown-method",
        {},
        ["clean", "--method", "zscore", "--json"],
        ("--method", "zscore"),
        None,
    ),
    ("report-unknown-language", {}, ["report", "--out", "r.html", "--lang", "fr"], ("'fr'",), None),
    (
        "show-unknown-batch",
        {},
        ["quarantine", "show", "--batch", "b-nope", "--json"],
        ("b-nope",),
        None,
    ),
    (
        "replay-missing-file",
        {},
        ["quarantine", "replay", "--file", "edits.jsonl", "--json"],
        ("edits.jsonl",),
        None,
    ),
    (
        "synth-too-few-users",
        {},
        ["synth", "--users", "0", "--out", "s", "--json"],
        ("--users",),
        None,
    ),
]


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    folder: Path


@pytest.fixture(scope="module")
def bad_runs(
    template_store: tuple[Path, dict[str, int]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Ran]:
    """Every bad-input case run once, two at a time (the machine has two cores).

    Each case gets its own folder (the working directory) with a copy of the template store.
    """
    src, _ = template_store
    base = tmp_path_factory.mktemp("bad")
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("JINGZHUN_DB", None)
    env.pop("JINGZHUN_CONFIG", None)

    def run(
        case: tuple[str, dict[str, str | bytes], list[str], tuple[str, ...], bytes | None],
    ) -> Ran:
        name, files, args, _, stdin = case
        folder = base / name
        folder.mkdir()
        shutil.copyfile(src, folder / "store.duckdb")
        for fname, content in files.items():
            path = folder / fname
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-m", "jingzhun", "--db", str(folder / "store.duckdb"), *args],
            input=stdin,
            capture_output=True,
            cwd=folder,
            env=env,
            timeout=300,
        )
        return Ran(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
            folder,
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([c[0] for c in BAD_INPUTS], pool.map(run, BAD_INPUTS), strict=True))


@pytest.mark.parametrize(
    ("case", "needles"), [(c[0], c[3]) for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_fails_with_one_error_line_and_leaves_the_store_alone(
    bad_runs: dict[str, Ran],
    template_store: tuple[Path, dict[str, int]],
    case: str,
    needles: tuple[str, ...],
) -> None:
    _, tables = template_store
    res = bad_runs[case]
    error_line(res, *needles)
    assert store_tables(res.folder / "store.duckdb") == tables
    assert not (res.folder / "r.html").exists()
    assert not (res.folder / "s").exists()


def test_bad_input_leaves_status_unchanged(cli, write, tmp_path: Path, store) -> None:
    """The same check through ``status --json``, for a failure in the middle of a batch."""
    db, tables = store
    assert status_tables(cli, db) == tables
    write("jingzhun.toml", HUGE_LINE_TOML)
    write("huge.csv", _huge_csv(150))  # fails after 150 rows were read inside the transaction
    error_line(cli("--db", str(db), "ingest", "events", "huge.csv", "--json"), "huge.csv")
    assert status_tables(cli, db) == tables


def test_store_locked_by_another_process(cli, write, store) -> None:
    db, tables = store
    path = write("a.csv", EVENTS_CSV.replace("e1,", "x1,"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ok', flush=True); time.sleep(60)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ok"
        line = error_line(
            cli("--db", str(db), "ingest", "events", str(path), "--json"), "locked", str(db)
        )
        assert str(holder.pid) in line
        error_line(cli("--db", str(db), "status", "--json"), "locked")
    finally:
        holder.kill()
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
    assert status_tables(cli, db) == tables


def test_db_that_is_not_a_duckdb_file_or_is_a_folder(cli, write, tmp_path: Path) -> None:
    notes = write("notes.duckdb", "these are my notes, not a database\n" * 100)
    before = notes.read_bytes()
    csv = write("a.csv", EVENTS_CSV)
    error_line(
        cli("--db", str(notes), "ingest", "events", str(csv), "--json"),
        str(notes),
        "not a DuckDB database",
    )
    assert notes.read_bytes() == before
    folder = tmp_path / "adir"
    folder.mkdir()
    error_line(cli("--db", str(folder), "status", "--json"), str(folder))
    assert list(folder.iterdir()) == []


# -- bugs ---------------------------------------------------------------------------------------


def test_huge_line_error_states_the_real_limit(cli, write, store) -> None:
    db, _ = store
    write("jingzhun.toml", HUGE_LINE_TOML)
    write("huge.csv", _huge_csv(150))
    line = error_line(cli("--db", str(db), "ingest", "events", "huge.csv", "--json"), "huge.csv")
    assert not re.search(r"(?<![\d.])0 MiB", line), line


def test_huge_jsonl_line_is_a_clean_input_error(cli, write, store) -> None:
    db, tables = store
    write("jingzhun.toml", HUGE_LINE_TOML)
    good = json.dumps({"event": "page_viewed", "ts": "2025-01-01T00:00:00", "user_id": "u1"})
    huge = json.dumps(
        {"event": "page_viewed", "ts": "2025-01-01T00:00:00", "user_id": "u2", "note": "x" * 5000}
    )
    write("huge.jsonl", good + "\n" + huge + "\n")
    error_line(
        cli("--db", str(db), "ingest", "events", "huge.jsonl", "--json"), "huge.jsonl", "line 2"
    )
    assert store_tables(db) == tables


def test_closed_stdout_ends_without_a_traceback(tmp_path: Path, store) -> None:
    db, _ = store
    proc = subprocess.Popen(
        [sys.executable, "-m", "jingzhun", "--db", str(db), "status", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader went away (as with `| head -c 0`)
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.stderr.close()
    proc.wait(timeout=60)
    assert "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.strip()]) <= 1


def _as_from_a_terminal() -> None:
    # A shell gives the program Python's own SIGINT handling; a test run started in the
    # background (nohup, `cmd &`) hands its children SIGINT ignored, which would hide the
    # handling under test.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(args: list[str], ready: Callable[[int], bool], cwd: Path, delay: float = 0.0):
    """Start ``jingzhun ARGS``, wait for ``ready(pid)``, then ``delay`` seconds, press Ctrl-C;
    return the one stderr line, after checking it, the exit code and the empty stdout."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jingzhun", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        preexec_fn=_as_from_a_terminal,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(delay)
        assert proc.poll() is None, "the command ended before the interrupt"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    assert stdout == b""
    assert proc.returncode == 130, (proc.returncode, lines[-5:])
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), lines
    return lines[0]


def test_interrupt_exits_130_with_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--users", "200000", "--out", str(out), "--json"]
    # The demo makes its folder first, then simulates for several seconds: nothing stored yet.
    assert _interrupt(args, lambda _pid: out.exists(), tmp_path) == "error: interrupted"


def _bytes_read(pid: int) -> int:
    try:
        io = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return 0
    return int(io.split("rchar:")[1].split()[0])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc/PID/io")
@pytest.mark.parametrize("delay", [0.0, 1.0, 2.5])
def test_interrupt_inside_a_query_rolls_the_batch_back(tmp_path: Path, delay: float) -> None:
    """Ctrl-C while DuckDB validates and writes a batch: DuckDB cancels its query and raises its
    own error (which surfaced as a traceback, or as "check the file" from the reader that saw
    it) — the user sees the one interruption line, exit 130, and the store as it was."""
    import duckdb

    big = tmp_path / "big.csv"
    duckdb.sql(
        "COPY (SELECT 'product_viewed' AS event, TIMESTAMP '2025-01-01' + INTERVAL (i) SECOND AS ts,"
        " 'u' || (i % 50000) AS user_id, 'p' || (i % 997) AS item_id FROM range(2000000) t(i))"
        f" TO '{big}' (HEADER)"
    )
    db = tmp_path / "shop.duckdb"
    small = tmp_path / "small.csv"
    small.write_text("event,ts,user_id\npage_viewed,2025-03-01T10:00:00,u1\n", encoding="utf-8")
    with Workspace.open(db) as ws:
        assert ws.ingest.files("events", [str(small)]).inserted == 1
    before = sp.snapshot(db)
    # Once the command has read the whole file it validates and stores it for seconds, inside
    # one transaction (the WAL appears only at the commit, too late to wait for).
    size = big.stat().st_size
    line = _interrupt(
        ["--db", str(db), "ingest", "events", str(big)],
        lambda pid: _bytes_read(pid) > size,
        tmp_path,
        delay,
    )
    assert "rolled back" in line
    assert sp.snapshot(db) == before
    assert sp.one_json(sp.run(tmp_path, "status", "--json", db=db))["tables"]["events"] == 1


def test_report_out_current_folder_is_a_usage_error(cli, store) -> None:
    db, _ = store
    error_line(cli("--db", str(db), "report", "--out", "."), "--out")


def test_clean_on_a_store_without_orders(cli, write, tmp_path: Path) -> None:
    db = tmp_path / "views.duckdb"
    path = write(
        "views.csv",
        "event,ts,user_id\npage_viewed,2025-03-01T10:00:00,u1\npage_viewed,2025-03-02T10:00:00,u2\n",
    )
    with Workspace.open(db) as ws:
        assert ws.ingest("events", [str(path)]).inserted == 2
    report = one_json(cli("--db", str(db), "clean", "--json"))
    assert report["outliers"]["orders"] == 0
    assert sum(report["flagged"].values()) == 0


# -- arguments no id, option or file name can hold (issue 12) ---------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("profile", "show", "\udcff\udcfe"),  # the bytes ff fe on a command line (PEP 383)
        ("ingest", "events", "u\udcff.csv"),
        ("quarantine", "show", "--batch", "\udcff"),
    ],
)
def test_undecodable_arguments_are_one_line_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    res = sp.run(tmp_path, *args)
    error_line(res, "not valid UTF-8")
    assert list(tmp_path.iterdir()) == []


def test_an_input_file_name_too_long_is_one_line(tmp_path: Path) -> None:
    res = sp.run(tmp_path, "ingest", "events", "x" * 5000 + ".csv", db=tmp_path / "s.duckdb")
    error_line(res, "File name too long")


def test_a_surrogate_outside_pep_383_is_refused_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A lone surrogate that PEP 383 never produces ('\\ud800', from the Python API or a
    Hypothesis run) made the argument check itself raise UnicodeEncodeError."""
    from jingzhun.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["recommend", "show", "--", "\ud800"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument 4") and "not valid UTF-8" in err[0]
