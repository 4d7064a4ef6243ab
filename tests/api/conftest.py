"""The real server on a free loopback port: uvicorn in a thread over a store on disk.

``server(db_path)`` starts one and returns a :class:`Served` with its URL and a key of each
scope; it stops when the test ends (the app's shutdown writes what it accepted and closes the
store). Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from jingzhun.api import create_app
from jingzhun.config import Settings
from jingzhun.store import apikeys
from jingzhun.workspace import Workspace

SCOPES = ("ingest", "read", "admin")


@dataclass
class Served:
    url: str
    keys: dict[str, str]
    db: Path
    app: object
    _server: uvicorn.Server
    _thread: threading.Thread
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, scope: str | None = "admin", **kwargs: object) -> httpx.Client:
        """An HTTP client sending the key of ``scope`` (None: no key)."""
        headers = {"Authorization": f"Bearer {self.keys[scope]}"} if scope else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)
        self.clients.append(c)
        return c

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self._server.should_exit = True
        self._thread.join(60)
        assert not self._thread.is_alive(), "the server did not stop"


def served_store(db: Path, file_of: Callable[[str], str], *, scores: bool = False) -> Path:
    """A store of a simulated shop through what the read routes show: the files ingested
    (``file_of(kind)``), profiles built, RFM segments, a popularity recommender, and
    propensity scores with ``scores``."""
    with Workspace.open(db) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest.files(kind, [file_of(kind)])
        ws.profiles.build()
        ws.segments.run("rfm")
        ws.recs.train("popularity")
        if scores:
            ws.predict.train("propensity", models=["logistic"])
            ws.predict.score("propensity")
    return db


def wait_job(client: httpx.Client, job_id: str, timeout: float = 300) -> dict:
    """The job once it has finished (succeeded, failed or cancelled), polled through the API."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout:g} s")


class ErrorLog(logging.Handler):
    """Keeps the ERROR records the server logs (with their tracebacks) in ``into``."""

    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


def logged(record: logging.LogRecord) -> str:
    """A logged record as text, its traceback included."""
    text = record.getMessage()
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_keys(db: Path) -> dict[str, str]:
    with Workspace.open(db) as ws:
        return {scope: apikeys.create(ws.store, f"test-{scope}", scope)[1] for scope in SCOPES}


def start(db: Path, settings: Settings | None = None, keys: dict[str, str] | None = None) -> Served:
    keys = keys if keys is not None else make_keys(db)
    ws = Workspace.open(db)
    if settings is not None:
        ws.settings = settings
    app = create_app(ws)
    # As jingzhun serve makes it: TCP named, so asyncio turns Nagle's algorithm off.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    return Served(url, keys, db, app, server, thread)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start servers over stores on disk; each stops when the test ends."""
    started: list[Served] = []

    def _start(db: Path | None = None, **kwargs: object) -> Served:
        s = start(db or tmp_path / "store.duckdb", **kwargs)  # type: ignore[arg-type]
        started.append(s)
        return s

    yield _start
    for s in started:
        s.stop()
