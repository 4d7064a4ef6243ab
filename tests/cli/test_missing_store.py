"""A command that only reads, given a path where no store is, says so; it creates nothing.

Before, ``status``, ``profile show``, ``report`` and the other readers opened ``--db`` for
writing, so a typo created an empty store that reported zero rows: it looked like an empty
shop. Now only commands that write create a store; a reader exits 2 with one line naming
``--db`` and the path, and leaves the folder as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.subprocess_cli import error_line, one_json, run

#: Every command that reads the store and writes nothing to it.
READERS: list[tuple[str, ...]] = [
    ("status", "--json"),
    ("status",),
    ("report", "--out", "report.html"),
    ("profile", "show", "u00000001", "--json"),
    ("profile", "export", "--out", "profiles.parquet"),
    ("tags", "list", "--json"),
    ("analyze", "trends", "--json"),
    ("analyze", "funnel"),
    ("analyze", "cohorts", "--json"),
    ("analyze", "baskets", "--json"),
    ("analyze", "frequency", "--json"),
    ("segment", "list", "--json"),
    ("segment", "show", "--json"),
    ("segment", "export", "--out", "members.parquet"),
    ("recommend", "list", "--json"),
    ("recommend", "show", "u00000001", "--json"),
    ("recommend", "session", "sku000001"),
    ("predict", "models", "--json"),
    ("predict", "report", "--json"),
    ("clean", "--no-flag", "--json"),
]


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a))
def test_a_reader_names_the_missing_store_and_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    typo = tmp_path / "shop" / "jingzhun.duckbd"
    line = error_line(run(tmp_path, *args, db=typo), f"no store at {typo}", "--db")
    assert "NotFoundError" not in line
    assert not typo.exists() and not typo.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_default_store_is_named_when_there_is_none(tmp_path: Path) -> None:
    error_line(run(tmp_path, "status", "--json"), "no store at jingzhun.duckdb", "--db")
    assert list(tmp_path.iterdir()) == []


def test_a_writer_still_creates_the_store(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "event,ts,user_id\npage_viewed,2025-01-01T00:00:00,u1\n", encoding="utf-8"
    )
    db = tmp_path / "new" / "store.duckdb"
    assert one_json(run(tmp_path, "ingest", "events", "a.csv", "--json", db=db))["inserted"] == 1
    status = one_json(run(tmp_path, "status", "--json", db=db))
    assert status["tables"]["events"] == 1


def test_a_reader_on_an_empty_store_still_answers(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    one_json(run(tmp_path, "clean", "--json", db=db))  # a writer: creates the store
    status = one_json(run(tmp_path, "status", "--json", db=db))
    assert status["tables"]["events"] == 0
