"""Running the real ``jingzhun`` command in a process of its own, and what the CLI tests
assert of it.

Shared by the CLI test modules: one runner, one definition of "exactly one JSON object", of
"one error line" and of a store's row counts.

Each command runs in a new process with its own working folder, environment, stdin (empty),
stdout and stderr (files, read back), exit code and process group, through the same
``python -m jingzhun`` entry point. The process is forked from a server that has imported
jingzhun and its libraries once (:mod:`multiprocessing`'s forkserver): a fresh interpreter
spent ~1 s of every command importing them, and the suite runs more than a thousand commands.
What the interpreter's start does for a real command is tested where it matters with a real
``exec``: ``tests/cli/test_lazy_commands.py`` (what a command imports), the README's tour
(the installed ``jingzhun`` script through bash), ``tests/reliability/test_kill.py`` (signals
from a terminal).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
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


#: The modules the fork server imports once: every jingzhun module (the commands import theirs
#: lazily; see jingzhun.cli.COMMANDS) and this one (the function each process runs).
PRELOAD = ["tests.cli.preload", __name__]
_server: multiprocessing.context.ForkServerContext | None = None
_server_lock = threading.Lock()


def _context() -> multiprocessing.context.ForkServerContext:
    global _server
    with _server_lock:
        if _server is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            # The server starts in the commands' environment: what a module reads from it at
            # import (Rich's console width, from COLUMNS) is what a command's own start reads.
            saved = dict(os.environ)
            try:
                os.environ.clear()
                os.environ.update(_env())
                multiprocessing.forkserver.ensure_running()
            finally:
                os.environ.clear()
                os.environ.update(saved)
            _server = context
        return _server


def _exit_code(code: object) -> int:
    """The exit status ``sys.exit(code)`` gives a process (None is 0; a message is 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


def _command(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """In the forked process: become ``python -m jingzhun ARGV`` in ``cwd`` with ``env``,
    stdin empty and stdout/stderr the files ``out``/``err``; exit with its code."""
    os.setpgrp()  # its own group: a timeout stops it and anything it started (a JVM)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    # The streams a new interpreter makes on a pipe or file (stderr line-buffered); the
    # descriptors stay open for the process's life, as the interpreter's own do.
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "rb", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "wb", closefd=False), encoding="utf-8")
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "wb", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = [str(Path(__file__).parents[2] / "src" / "jingzhun" / "__main__.py"), *argv]
    code = 0
    try:
        from jingzhun.__main__ import console

        console()
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream: lost, as on exit
                stream.flush()
    os._exit(code)


def jingzhun(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> tuple[int, bytes, bytes]:
    """``python -m jingzhun ARGS`` in a process of its own: (exit code, stdout, stderr)."""
    with tempfile.TemporaryDirectory(prefix="jingzhun-run-") as scratch:
        out, err = os.path.join(scratch, "out"), os.path.join(scratch, "err")
        process = _context().Process(target=_command, args=(args, str(cwd), env, out, err))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.join()
            raise subprocess.TimeoutExpired(["jingzhun", *args], timeout)
        code = process.exitcode
        process.close()
        with open(out, "rb") as o, open(err, "rb") as e:
            return code, o.read(), e.read()


def run(folder: Path, *args: str, db: Path | None = None) -> Ran:
    """``jingzhun [--db DB] ARGS`` in ``folder`` (the working directory)."""
    db_args = ("--db", str(db)) if db is not None else ()
    code, stdout, stderr = jingzhun([*db_args, *args], folder, _env())
    return Ran(code, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"), folder)


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
