"""Hostile values, the in-process runner and what every hostile case must show.

The suite in ``tests/security`` runs each case by calling :func:`jingzhun.cli.main` in this
process (the real parser, the real commands, the real store on disk) with stdout and stderr
captured as the terminal would get them: UTF-8, strict, so a lone surrogate that a real
process could not print fails here too. A case is handled when

* the exit code is 0 (the value was fine, or correctly handled) or 2 (refused), and on 2
  stdout is empty and stderr holds exactly one line, starting ``error:``;
* nothing escaped :func:`~jingzhun.cli.main` (an exception there is a traceback) and no
  output says ``Traceback``;
* no output holds a raw control or bidi character (ESC, NUL, BEL, U+202E …): every value
  from the user or the data is printed as text;
* on a refusal, the store's content (every table's rows, see :func:`fingerprint`) and every
  file in the case's folder are as they were, and no file appeared;
* on success, files appeared only at the output the command was asked for (``--out``, a new
  ``--db``), in the store's model folder, or in the store itself.

Each run has 60 seconds (SIGALRM: a hang fails its case, not the session) and 3 GB more
address space than the process had (a huge allocation is a MemoryError, not the OOM killer).
Typer's command tree is built once per session (0.1 s a build; the tree is the same), and the
CLI's Rich consoles are emptied around each run. Devices are nodes made in the case's folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

#: The store's file name in every case folder (model paths inside it are relative to it).
STORE = "store.duckdb"
MODELS = STORE + ".models"
WAL = STORE + ".wal"
#: A symbolic link to the store, made in every case folder: an output through it is the store.
STORE_LINK = "store-link.csv"
#: Device nodes made in every case folder (never the machine's own /dev: a bug that replaces
#: an output by rename would replace /dev/null for every process on the machine).
DEVICES = {"devnull": (1, 3), "devzero": (1, 5), "devfull": (1, 7)}

#: What a terminal would act on instead of showing (tab and newline are fine).
UNSAFE_OUTPUT = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)

# -- hostile values ----------------------------------------------------------------------------

#: Every option that takes text gets each of these (ids: the keys).
TEXT: dict[str, str] = {
    # Closes a quoted string or identifier, then writes a file: the file must not appear.
    "sql": "x'\"); DROP TABLE events; COPY (SELECT 42) TO 'jz-pwned.csv'; --",
    "markup": "hx[/][bold red]x[/]",
    "nul": "a\x00b",
    # Escape sequences (clear screen, set title), BEL, CR LF, and bidi overrides/isolates.
    "control": "a\x1b[2J\x1b]0;title\x07\r\n\u202eb\u2066c\u2069",
    "long": "x" * 100_000,
    # Bytes that are not UTF-8, as Python hands them over from argv (surrogate escapes).
    "utf8": "u\udcff\udcfe",
    "empty": "",
    # A LIKE pattern, a glob and format directives: all must be taken as written.
    "pattern": "%_*?{0}%s",
}

#: Files are read from where the user says, but this one must not end up in an error or the
#: store unasked (only files read get it: nothing in this suite writes outside its folder).
TRAVERSAL = "../../../../etc/passwd"

#: Whole numbers: negative, past 32 and 64 bits, and what is not a whole number.
INT: dict[str, str] = {
    "negative": "-1",
    "int32": "2147483648",
    "huge": "100000000000000000000",
    "nan": "nan",
}

#: Real numbers: not finite, negative, zero, at the ends of the double range.
FLOAT: dict[str, str] = {
    "nan": "nan",
    "inf": "inf",
    "negative": "-1",
    "zero": "0",
    "huge": "1e308",
    "tiny": "1e-300",
}

LONG_NAME = "n" * 5000 + ".csv"

#: Files a command reads: the store, its folders, devices, a name too long.
PATH_IN: dict[str, str] = {
    "traversal": TRAVERSAL,
    "store": STORE,
    "folder": ".",
    "models": MODELS,
    "dev-null": "devnull",
    "dev-zero": "devzero",
    "long-name": LONG_NAME,
}

#: Files a command writes: the store (by name, absolute, through a link), its WAL and model
#: folder, the working folder, devices, a path with ``..`` (allowed: it is what was asked),
#: a name too long.
PATH_OUT: dict[str, str] = {
    "store": STORE,
    "store-abs": "{store}",
    "store-link": STORE_LINK,
    "wal": WAL,
    "models": MODELS,
    "in-models": MODELS + "/x.csv",
    "folder": ".",
    "dev-full": "devfull",
    "dev-null": "devnull",
    "parent": "../jz-out.csv",
    "long-name": LONG_NAME,
}

#: The store (``--db``): not a store, a folder, devices, URLs DuckDB would fetch.
PATH_DB: dict[str, str] = {
    "folder": ".",
    "models": MODELS,
    "wal": WAL,
    "dev-null": "devnull",
    "dev-full": "devfull",
    "dev-zero": "devzero",
    "not-a-store": "events.csv",
    "parent": "../jz-store.duckdb",
    "motherduck": "md:x",
    "https": "https://example.invalid/x",
    "long-name": LONG_NAME,
}


def short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}…({len(text):,} chars)"


# -- writing TOML ------------------------------------------------------------------------------


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)  # a lone surrogate stays: it is written as the raw byte it stands for
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(sections: dict[str, dict[str, Any]]) -> bytes:
    """The settings file; invalid UTF-8 (lone surrogates) is written as the bytes it was."""
    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{_string(k)} = {toml_value(v)}" for k, v in keys.items()]
        lines.append("")
    return "\n".join(lines).encode("utf-8", "surrogateescape")


#: Settings that keep accepted cases quick: every case folder's ``jingzhun.toml``, and the
#: base of every settings file a case writes.
CHEAP = {
    "predict": {"models": ["logistic"], "train_windows": 1, "compare_rows": 1000},
    "recommend": {"model": "pop"},
}

# -- the file tree and the store's content -----------------------------------------------------


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root``: kind, and for files size and modification time."""
    found: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir",)
            else:
                found[rel] = ("file", stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
    return found


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def fingerprint(db: Path) -> dict[str, str]:
    """Every table's and view's definition, row count and SHA-256 of its sorted rows.

    Read through DuckDB (read-only), not from the file's bytes: opening a store may rewrite
    its header without changing a row.
    """
    con = duckdb.connect(str(db), read_only=True)
    try:
        (catalog,) = con.execute("SELECT current_database()").fetchone()
        objects = con.execute(
            "SELECT schema_name, table_name, sql FROM duckdb_tables() "
            "WHERE database_name = ? AND NOT internal "
            "UNION ALL SELECT schema_name, view_name, sql FROM duckdb_views() "
            "WHERE database_name = ? AND NOT internal ORDER BY ALL",
            [catalog, catalog],
        ).fetchall()
        found = {}
        for schema, name, ddl in objects:
            n, digest = con.execute(
                "SELECT count(*), coalesce(sha256(string_agg(CAST(t AS VARCHAR), chr(10) "
                f"ORDER BY CAST(t AS VARCHAR))), '') FROM {_ident(schema)}.{_ident(name)} AS t"
            ).fetchone()
            found[f"{schema}.{name}"] = (
                f"{hashlib.sha256(ddl.encode()).hexdigest()[:16]} {n} {digest}"
            )
        return found
    finally:
        con.close()


# -- running one case --------------------------------------------------------------------------


class CaseTimeout(BaseException):
    """Raised in the main thread when a case runs past its time (a hang is a failure)."""


class ReachedWork(BaseException):
    """Raised by a stub at the point where an accepted command starts its long work."""


@dataclass
class Outcome:
    argv: list[str]
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    crash: str | None = None  # the traceback of an exception that escaped main()
    stopped: bool = False  # a ReachedWork stub stopped an accepted command

    def describe(self) -> str:
        crash = ""
        if self.crash:  # the last frames, each line cut (a 100 KB value fills a traceback)
            lines = [ln if len(ln) <= 240 else ln[:200] + " …" for ln in self.crash.splitlines()]
            crash = "\n  escaped main():\n" + "\n".join(lines[-16:])
        return (
            f"argv {short(self.argv, 400)}\n  exit {self.code} in {self.seconds:.1f}s\n"
            f"  stdout {short(self.stdout, 600)}\n  stderr {short(self.stderr, 1500)}" + crash
        )


def _render_warnings(caught: Sequence[warnings.WarningMessage]) -> str:
    """The warnings a plain ``python`` would have printed on stderr."""
    quiet = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    return "".join(
        warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
        for w in caught
        if not issubclass(w.category, quiet)
    )


@contextlib.contextmanager
def _limits(seconds: float, extra_memory: int) -> Iterator[None]:
    """A time limit (SIGALRM raising CaseTimeout) and an address-space limit (so a huge
    allocation fails with MemoryError instead of waking the OOM killer)."""

    def alarm(_signum: int, _frame: Any) -> None:
        raise CaseTimeout(f"still running after {seconds:.0f}s")

    old_handler = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/statm") as fh:
            used = int(fh.read().split()[0]) * resource.getpagesize()
        limit = used + extra_memory
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError):
        pass
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


_COMMANDS: dict[tuple[str | None, ...], Any] = {}


def _command_once(get_command: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Typer's get_command, building each command tree once: it takes 0.1 s and gives the
    same tree each time (Click commands keep no state between invocations). The command line
    builds the tree of the command it runs (``build_app(only=…)``): one tree per command."""

    def cached(app: Any) -> Any:
        key = tuple(g.name for g in app.registered_groups) + tuple(
            c.name or c.callback.__name__ for c in app.registered_commands
        )
        if key not in _COMMANDS:
            _COMMANDS[key] = get_command(app)
        return _COMMANDS[key]

    return cached


def _fresh_consoles() -> None:
    """Empty the buffers of the CLI's Rich consoles (module globals).

    A real process prints once and exits; here a print that failed half-way (a lone
    surrogate, say) would leave its text in the console's buffer for the next case to write.
    """
    from rich.console import Console

    for name, module in list(sys.modules.items()):
        if name.startswith("jingzhun.cli"):
            for value in vars(module).values():
                if isinstance(value, Console):
                    value._buffer.clear()
                    value._buffer_index = 0


def run_in_process(
    argv: Sequence[str],
    cwd: Path,
    *,
    timeout: float = 60.0,
    stubs: Mapping[str, str] = {},
    extra_memory: int = 3 << 30,
) -> Outcome:
    """``jingzhun ARGV`` in ``cwd``, in this process, as a terminal-less user would run it.

    ``stubs`` maps a dotted attribute (``jingzhun.demo.simulate``) to a reason: the attribute
    is replaced, for this run, by a function raising :class:`ReachedWork`, so an accepted
    command whose work takes minutes stops where that work starts.
    """
    from jingzhun.cli import main

    argv = list(argv)
    out_buf, err_buf = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out_buf, encoding="utf-8", errors="strict", write_through=True)
    stderr = io.TextIOWrapper(err_buf, encoding="utf-8", errors="strict", write_through=True)
    stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    saved_streams = sys.stdout, sys.stderr, sys.stdin
    saved_cwd = os.getcwd()
    saved_env = {k: os.environ.get(k) for k in ("JINGZHUN_DB", "JINGZHUN_CONFIG", "COLUMNS")}
    patched: list[tuple[Any, str, Any]] = []

    def stop(*_a: Any, **_k: Any) -> None:
        raise ReachedWork

    code: int | None = 0
    crash = None
    stopped = False
    caught: list[warnings.WarningMessage] = []
    start = time.perf_counter()
    import typer.main

    patched.append((typer.main, "get_command", typer.main.get_command))
    typer.main.get_command = _command_once(typer.main.get_command)
    try:
        for dotted in stubs:
            module_name, attr = dotted.rsplit(".", 1)
            module = sys.modules.get(module_name) or __import__(module_name, fromlist=[attr])
            patched.append((module, attr, getattr(module, attr)))  # AttributeError: stale stub
            setattr(module, attr, stop)
        os.environ.pop("JINGZHUN_DB", None)
        os.environ.pop("JINGZHUN_CONFIG", None)
        os.environ["COLUMNS"] = "200"
        os.chdir(cwd)
        _fresh_consoles()
        sys.stdout, sys.stderr, sys.stdin = stdout, stderr, stdin
        with warnings.catch_warnings(record=True) as caught_now, _limits(timeout, extra_memory):
            warnings.simplefilter("always")
            caught = caught_now
            try:
                main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except ReachedWork:
                stopped = True
            except BaseException:  # a traceback: the failure this suite is looking for
                code = None
                crash = traceback.format_exc()
    finally:
        seconds = time.perf_counter() - start
        with contextlib.suppress(ValueError):
            stdout.flush()
            stderr.flush()
        sys.stdout, sys.stderr, sys.stdin = saved_streams
        _fresh_consoles()
        os.chdir(saved_cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for module, attr, original in reversed(patched):
            setattr(module, attr, original)
    err_text = err_buf.getvalue().decode("utf-8") + _render_warnings(caught)
    return Outcome(
        argv, code, out_buf.getvalue().decode("utf-8"), err_text, seconds, crash, stopped
    )


def run_child(
    argv: Sequence[str | bytes],
    cwd: Path,
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """``python -m jingzhun ARGV`` as a child process, for what could hang or exhaust this
    one, or needs what only a real process has (bytes in argv, its own HOME)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("JINGZHUN_DB", None)
    full_env.pop("JINGZHUN_CONFIG", None)
    start = time.perf_counter()
    shown = [a.decode("utf-8", "surrogateescape") if isinstance(a, bytes) else a for a in argv]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "jingzhun", *argv],
            capture_output=True,
            cwd=cwd,
            env=full_env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return Outcome(shown, None, "", "", timeout, crash=f"still running after {timeout:.0f}s")
    return Outcome(
        shown,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
        time.perf_counter() - start,
    )


# -- the case folder ---------------------------------------------------------------------------


@dataclass
class Template:
    """The session's store (with its model folder) and the input files every case gets."""

    folder: Path  # holds STORE, MODELS and the input files
    fingerprint: dict[str, str]
    files: tuple[str, ...]  # input files copied into each case's folder
    users: tuple[str, ...]  # real user ids
    items: tuple[str, ...]  # real item ids
    devices: bool  # whether this process may make device nodes (root, a file system with dev)


@dataclass
class Sandbox:
    """One case's folder: ``root/work`` is the working directory and holds the store."""

    root: Path
    template: Template
    before: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def db(self) -> Path:
        return self.work / STORE

    @classmethod
    def make(cls, root: Path, template: Template) -> Sandbox:
        work = root / "work"
        work.mkdir(parents=True)
        shutil.copyfile(template.folder / STORE, work / STORE)
        if (template.folder / MODELS).exists():
            shutil.copytree(template.folder / MODELS, work / MODELS)
        for name in template.files:
            shutil.copyfile(template.folder / name, work / name)
        os.symlink(STORE, work / STORE_LINK)
        if template.devices:
            for name, (major, minor) in DEVICES.items():
                os.mknod(work / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        box = cls(root, template)
        box.before = tree(root)
        return box

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.work / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        self.before = tree(self.root)
        return path

    def run(self, argv: Sequence[str], **options: Any) -> Outcome:
        return run_in_process(argv, self.work, **options)

    def store_unchanged(self) -> bool:
        rel = os.path.relpath(self.db, self.root)
        now = os.stat(self.db)
        if self.before.get(rel) == ("file", stat.S_IFREG, now.st_size, now.st_mtime_ns):
            return True  # not written since it was copied
        if _same_bytes(self.db, self.template.folder / STORE):
            return True
        return fingerprint(self.db) == self.template.fingerprint

    def problems(
        self, res: Outcome, outputs: Sequence[str] = (), *, db_output: bool = False
    ) -> list[str]:
        """Everything wrong with ``res`` (empty: the case was handled).

        ``outputs`` are the paths the command was asked to write (as given, relative to the
        working folder); on success they, and the folders leading to them, may appear.
        ``db_output``: the first output is a store the command may create (``--db``), with
        its WAL and model folder.
        """
        found: list[str] = []
        if res.crash:
            found.append("an exception escaped main() (a traceback)")
        for name, text in (("stdout", res.stdout), ("stderr", res.stderr)):
            if "Traceback" in text:
                found.append(f"{name} shows a traceback")
            bad = UNSAFE_OUTPUT.search(text)
            if bad:
                found.append(f"{name} holds the raw control character {bad.group()!r}")
        ok = res.code == 0 or res.stopped
        if not ok:
            if res.code != 2:
                found.append(f"exit code {res.code}, not 2")
            if res.stdout:
                found.append("stdout is not empty on an error")
            lines = [line for line in res.stderr.splitlines() if line.strip()]
            if len(lines) != 1 or not lines[0].startswith("error:"):
                found.append(f"stderr is not one 'error:' line ({len(lines)} lines)")
        found.extend(self._file_problems(ok, outputs, db_output))
        if not ok and self.db.exists() and not self.store_unchanged():
            found.append("the store's content changed on an error")
        return found

    def _file_problems(self, ok: bool, outputs: Sequence[str], db_output: bool) -> list[str]:
        after = tree(self.root)
        allowed: set[str] = set()
        if ok:
            for out in outputs:
                for path in _output_paths(self.work, out, db_output and out == outputs[0]):
                    allowed.add(os.path.relpath(path, self.root))
        store_rel = os.path.relpath(self.db, self.root)
        models_rel = os.path.relpath(self.work / MODELS, self.root)
        found = []
        for rel in sorted(set(after) - set(self.before)):
            if rel in allowed or any(rel.startswith(a + os.sep) for a in allowed):
                continue
            if ok and rel.startswith(models_rel + os.sep):
                continue  # a model the command trained
            found.append(f"a file appeared: {short(rel)}")
        for rel in sorted(set(self.before) - set(after)):
            found.append(f"a file disappeared: {short(rel)}")
        for rel in sorted(set(self.before) & set(after)):
            if self.before[rel] == after[rel] or rel == store_rel or after[rel][0] == "dir":
                continue
            if ok and (rel in allowed or rel.startswith(models_rel + os.sep)):
                continue
            found.append(f"a file changed: {short(rel)}")
        return found


def _output_paths(work: Path, out: str, is_db: bool) -> list[Path]:
    """``out`` (relative to ``work``), its store siblings if a store, and its parents."""
    if not out or "\0" in out:
        return []
    try:
        target = Path(os.path.normpath(work / out))
    except ValueError:
        return []
    paths = [target]
    if is_db:
        paths += [target.with_name(target.name + s) for s in (".wal", ".models", ".tmp")]
    paths += list(target.parents)
    return paths


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


@contextlib.contextmanager
def sandbox(base: Path, template: Template, counter: Callable[[], int]) -> Iterator[Sandbox]:
    """A fresh case folder under ``base``, removed afterwards (cases copy an 8 MB store)."""
    root = base / f"case{counter():05d}"
    box = Sandbox.make(root, template)
    try:
        yield box
    finally:
        shutil.rmtree(root, ignore_errors=True)
