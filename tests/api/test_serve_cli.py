"""``jingzhun serve`` as a user runs it: a subprocess on a free loopback port; the CLI refuses
to write to the store it holds and names it; SIGTERM writes everything it accepted."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from jingzhun.workspace import Workspace
from tests.api.conftest import make_keys


def _serve(db: Path, *extra: str, config: Path | None = None) -> tuple[subprocess.Popen, str]:
    options = ["--config", str(config)] if config else []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jingzhun",
            "--db",
            str(db),
            *options,
            "serve",
            "--port",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    line = b""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(rb"at (http://127\.0\.0\.1:\d+)", line)
        if match:
            url = match[1].decode()
            # drain stderr so the server never blocks on a full pipe
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, url
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the server did not start: {line!r}")


def _msgs(start: int, n: int) -> list[dict]:
    return [
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": f"u{i % 50}",
            "messageId": f"m{i}",
            "timestamp": "2026-11-02T08:00:00Z",
            "properties": {"product_id": f"p{i % 30}"},
        }
        for i in range(start, start + n)
    ]


def test_cli_refuses_to_write_while_served_and_names_the_server(tmp_path: Path, cli) -> None:
    db = tmp_path / "s.duckdb"
    make_keys(db)
    proc, url = _serve(db)
    try:
        (tmp_path / "e.csv").write_text(
            "event_id,event,user_id,ts\ne1,page_viewed,u1,2026-01-01T00:00:00Z\n"
        )
        r = cli("--db", str(db), "ingest", "events", str(tmp_path / "e.csv"))
        assert r.code == 2
        assert f"held by the jingzhun server at {url}" in r.stderr
        assert "/v1/jobs" in r.stderr
        assert r.stderr.count("\n") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert not (tmp_path / "s.duckdb.server.json").exists()


def test_sigterm_loses_nothing_accepted(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    keys = make_keys(db)
    # The writer lingers 3 s for more messages: when SIGTERM comes (after 1 s) every request
    # sent so far is still waiting in its queue, unwritten.
    config = tmp_path / "jingzhun.toml"
    config.write_text("[server]\nlinger_ms = 3000\nbatch_messages = 1000000\n")
    proc, url = _serve(db, "--no-access-log", config=config)
    answers: list[dict] = []
    lock = threading.Lock()

    def send(t: int) -> None:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {keys['ingest']}"}, timeout=60
        ) as c:
            for r_ in range(30):
                try:
                    r = c.post("/v1/batch", json={"batch": _msgs((t * 30 + r_) * 100, 100)})
                except httpx.HTTPError:
                    return  # the server went away: not accepted
                if r.status_code == 200:
                    with lock:
                        answers.append(r.json())

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    # The signal comes once requests wait in the queue (about a second after they start; on
    # a loaded machine the senders take longer to get going).
    deadline, waiting = time.monotonic() + 20, 0.0
    while waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.25)
        metrics = httpx.get(f"{url}/metrics").text
        waiting = float(re.search(r"^jingzhun_write_queue_messages (\S+)$", metrics, re.M)[1])
    proc.send_signal(signal.SIGTERM)
    assert waiting > 0  # accepted, not yet written, when the signal came
    for t in threads:
        t.join()
    assert proc.wait(60) == 0
    # the requests waiting in the queue at SIGTERM were answered, and written
    assert answers
    with Workspace.open(db) as ws:
        stored = ws.store.scalar("SELECT count(*) FROM events")
    assert stored == sum(a["inserted"] for a in answers)
    assert json.dumps(answers[0])  # answers are plain JSON
