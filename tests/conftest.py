"""Shared fixtures: real DuckDB files in temp folders, a small simulated shop, the CLI."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jingzhun.config import Settings
from jingzhun.synth import ShopData, SynthConfig, simulate
from jingzhun.workspace import Workspace

#: Users in the shared simulated shop: enough for every persona, small enough to be quick.
SHOP_USERS = 3000


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.duckdb"


@pytest.fixture
def ws(db_path: Path) -> Iterator[Workspace]:
    """A fresh workspace on a DuckDB file of its own."""
    workspace = Workspace.open(db_path, config=None)
    try:
        yield workspace
    finally:
        workspace.close()


@pytest.fixture
def settings() -> Settings:
    return Settings()


@dataclass
class Shop:
    dir: Path
    data: ShopData

    def file(self, name: str) -> str:
        return str(self.dir / f"{name}.parquet")


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """A small simulated shop written to Parquet once per test session (read-only for tests)."""
    out = tmp_path_factory.mktemp("shop")
    data = simulate(SynthConfig(users=SHOP_USERS, seed=3))
    data.write(out)
    return Shop(out, data)


@dataclass
class DemoRun:
    """The demo's folder (read-only for tests: copy what you change) and what it returned."""

    out: Path
    result: dict[str, Any]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> DemoRun:
    """The demo at 1,500 users (seed 1), run once for the whole test session: the web
    tests' store and tests/test_demo.py read it (~35 s a run; each xdist worker ran its own).
    The first worker to need it runs it while holding a lock beside it; the others wait for
    it, then read it."""
    from jingzhun.demo import run_demo

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # the session's, not a worker's
    out, done = shared / "demo-1500" / "demo", shared / "demo-1500" / "result.json"
    out.parent.mkdir(exist_ok=True)
    with open(shared / "demo-1500.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                result = run_demo(out, users=1500, seed=1)
                done.write_text(json.dumps(result), encoding="utf-8")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return DemoRun(out, json.loads(done.read_text(encoding="utf-8")))


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write text or bytes to a file under tmp_path and return its path."""

    def _write(name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding=encoding)
        return path

    return _write


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., CliResult]:
    """Run ``jingzhun`` in a subprocess (the real entry point), in tmp_path by default."""

    def _run(
        *args: str,
        input: bytes | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> CliResult:
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        full_env.pop("JINGZHUN_DB", None) if env is None or "JINGZHUN_DB" not in env else None
        proc = subprocess.run(
            [sys.executable, "-m", "jingzhun", *args],
            input=input,
            capture_output=True,
            cwd=cwd or tmp_path,
            env=full_env,
            timeout=timeout,
        )
        return CliResult(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    return _run


#: Every store the tests make shares one vault master key (issue 18), from the environment as a
#: server would have it: tests copy stores under new names, and a key file (STORE.key) does not
#: follow a copy. tests/store/test_vault.py and tests/privacy unset it to test the key file.
TEST_MASTER_KEY = "dGVzdC1vbmx5LW1hc3Rlci1rZXktMzItYnl0ZXMhISE"
os.environ.setdefault("JINGZHUN_MASTER_KEY", TEST_MASTER_KEY)


#: Test files that take minutes (browsers, many CLI processes, the demo): collected first, so
#: that `make test`'s two workers (pytest-xdist, one file at a time) do not end with one of
#: them running a long file alone while the other waits (the clean run of 2026-12-06: 176% of
#: two cores on average, most of the loss at the end).
SLOW_FIRST = (
    "tests/web/",
    "tests/reliability/",
    "tests/spark/",
    "tests/test_readme_tour.py",
    "tests/cli/",
    "tests/test_demo.py",
    "tests/campaign/",
    "tests/api/",
)


#: Folders whose files run on one worker, one after another: the Spark files share one JVM
#: and one build of the test shop on both engines per worker — on two workers both were made
#: twice.
ONE_WORKER = ("tests/spark/",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))

    def rank(item: pytest.Item) -> int:
        path = Path(str(item.path)).relative_to(root).as_posix()
        return next((i for i, p in enumerate(SLOW_FIRST) if path.startswith(p)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: each file's tests keep their order


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (``make test``), with each ONE_WORKER folder as one file. (xdist's
    ``loadgroup`` would say it with markers, but it renames node ids through an attribute
    pytest 9 no longer reads: the groups are silently ignored.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return next((p for p in ONE_WORKER if scope.startswith(p)), scope)

    return Scheduling(config, log)


def plain_pii(store: Any, fields: Sequence[str] = ("email",)) -> list[tuple]:
    """Every pii row as ``(user_id, *fields)`` decrypted by the store's vault, by user id:
    the table itself holds ciphertexts (issue 18)."""
    from jingzhun.ingest.read import contacts

    users = [u for (u,) in store.rows("SELECT user_id FROM pii ORDER BY user_id")]
    frame = contacts(store, users, list(fields))
    return [
        tuple(None if v is None or v != v else v for v in row)
        for row in frame[["user_id", *fields]].itertuples(index=False)
    ]
