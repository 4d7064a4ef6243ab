"""Running the real ``jingzhun`` command in a subprocess, and what the CLI tests assert of it.

Shared by the CLI test modules: one runner, one definition of "exactly one JSON object", of
"one error line" and of a store's row counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    folder: Path = field(default_factory=Path)

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)


def _env() -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("JINGZHUN_DB", None)
    env.pop("JINGZHUN_CONFIG", None)
    return env


def run(folder: Path, *args: str, db: Path | None = None) -> Ran:
    """``jingzhun [--db DB] ARGS`` in ``folder`` (the working directory)."""
    db_args = ("--db", str(db)) if db is not None else ()
    proc = subprocess.run(
        [sys.executable, "-m", "jingzhun", *db_args, *args],
        capture_output=True,
        cwd=folder,
        env=_env(),
        timeout=300,
    )
    return Ran(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
        folder,
    )


def copy_store(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    assert not src.with_name(src.name + ".wal").exists(), "the source store was left open"
    db = folder / "store.duckdb"
    shutil.copyfile(src, db)
    return db


def one_json(res: Ran) -> dict[str, Any]:
    """The command succeeded and stdout holds exactly one JSON object and nothing else."""
    assert res.code == 0, f"exit {res.code}: {res.stderr}"
    text = res.stdout.lstrip()
    obj, end = json.JSONDecoder().raw_decode(text)
    assert text[end:].strip() == "", f"more than one JSON value on stdout: {res.stdout[:500]!r}"
    assert isinstance(obj, dict)
    assert "error:" not in res.stderr
    return obj


def human(res: Ran) -> str:
    """The command succeeded with human output (not JSON) on stdout."""
    assert res.code == 0, f"exit {res.code}: {res.stderr}"
    assert res.stdout.strip(), "no output"
    assert not res.stdout.lstrip().startswith("{")
    assert "error:" not in res.stderr
    return res.stdout


def error_line(res: Ran, *needles: str, code: int = 2) -> str:
    """The command failed with ``code`` and exactly one ``error:`` line naming each needle."""
    assert res.code == code, f"exit {res.code}, stdout {res.stdout[:300]!r}, stderr {res.stderr!r}"
    assert res.stdout == "", f"stdout should stay empty on error: {res.stdout[:300]!r}"
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {res.stderr!r}"
    line = lines[0]
    assert line.startswith("error:"), line
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def sql(db: Path, query: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def snapshot(db: Path) -> dict[str, int]:
    """Row counts of every table in the store (profiles, tags and builds included)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
            ).fetchall()
        ]
        return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        con.close()
