"""The server under load on this 2-core machine, server and load client together.

Targets (issue 15): sustained ingest >= 20,000 events/s through batches of 100 (the Segment
SDK's default); ``GET /v1/users/{id}/recommendations`` p99 < 20 ms with 32 concurrent clients
while ingest runs at 2,000 events/s; an event visible in the profile within 1 s (p99).

Each figure is paired with its baseline measured in the same run:
- ingest: the call the writer makes, ``ws.ingest.messages`` in process, on the same messages
  in batches of 5,000 (what HTTP, JSON and coalescing cost on top);
- recommendations: ``ws.recs.for_user(u)`` in process for the same users (history, model,
  rules, explanations) — the route adds HTTP, auth and serialisation;
- visibility: none (it is a latency of the whole path).

The store is the demo shop (``run_demo``, 20,000 users, cached under benchmarks/data/); the
server is ``jingzhun serve`` in a subprocess on a free 127.0.0.1 port, the load client an
asyncio httpx client in this process. ``BENCH_SERVER_SECONDS`` sets each load phase's length
(default 20).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, copy_store, save

SECONDS = float(os.environ.get("BENCH_SERVER_SECONDS", "20"))
USERS = 20_000


def demo_store() -> Path:
    folder = DATA / f"demo-{USERS}"
    store = folder / "jingzhun.duckdb"
    if not store.exists():
        from jingzhun.demo import run_demo

        print(f"building the demo store in {folder} …", file=sys.stderr, flush=True)
        run_demo(folder, users=USERS, seed=0)
    return store


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 3) if values else float("nan")


def messages(start: int, n: int, users: list[str], items: list[str]) -> list[dict[str, Any]]:
    rng = random.Random(start)
    out = []
    for i in range(start, start + n):
        u = rng.choice(users)
        if i % 20 == 0:
            out.append(
                {
                    "type": "track",
                    "event": "Order Completed",
                    "userId": u,
                    "messageId": f"bench-{i}",
                    "properties": {
                        "order_id": f"bo-{i}",
                        "products": [
                            {"product_id": rng.choice(items), "price": 19.9, "quantity": 1},
                            {"product_id": rng.choice(items), "price": 5.0, "quantity": 2},
                        ],
                    },
                }
            )
        else:
            out.append(
                {
                    "type": "track",
                    "event": "Product Viewed" if i % 4 else "Product Added",
                    "userId": u,
                    "messageId": f"bench-{i}",
                    "properties": {"product_id": rng.choice(items), "price": 19.9},
                }
            )
    return out


class Server:
    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jingzhun",
                "--db",
                str(db),
                "serve",
                "--port",
                "0",
                "--no-access-log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            m = re.search(rb"at (http://127\.0\.0\.1:\d+)", line)
            if m:
                self.url = m[1].decode()
                threading.Thread(target=self._drain, daemon=True).start()
                return
            if self.proc.poll() is not None:
                break
        raise SystemExit("error: the server did not start")

    def _drain(self) -> None:
        """Read the server's log to its end (into $BENCH_SERVER_LOG when set)."""
        with open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "wb") as out:
            out.write(self.proc.stderr.read())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)

    def warmed(self, timeout: float = 300) -> tuple[int, float]:
        """Wait until the server's background warm-up is over (the live users it holds stop
        growing); how many it holds and the seconds it took."""
        import httpx

        t0 = time.monotonic()
        seen, since = -1.0, t0
        while time.monotonic() - t0 < timeout:
            text = httpx.get(f"{self.url}/metrics").text
            m = re.search(r"^jingzhun_live_users (\S+)$", text, re.M)
            held = float(m[1]) if m else 0.0
            if held != seen:
                seen, since = held, time.monotonic()
            elif held > 0 and time.monotonic() - since > 2:
                return int(held), round(since - t0, 2)
            time.sleep(0.25)
        raise SystemExit(f"error: the server did not finish warming up in {timeout} s")


class Conn:
    """One keep-alive HTTP/1.1 connection sending prepared requests: the load client.

    A general client (httpx) spent more CPU per request than the server answering it, and
    both share the machine's two cores; this one writes bytes made in advance and reads
    the answer by its Content-Length, so the cores go to the server. It speaks only what
    this benchmark needs (no chunked answers, no redirects).
    """

    def __init__(self, url: str, key: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.addr = (host, int(port))
        self.head = f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def request(self, method: str, path: str, body: bytes = b"") -> bytes:
        length = (
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if body else ""
        )
        return f"{method} {path} HTTP/1.1\r\n{self.head}{length}\r\n".encode() + body

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send one prepared request; its status and body."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(*self.addr)
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        body = await self.reader.readexactly(int(m[1])) if m else b""
        if re.search(rb"(?i)\r\nconnection: *close", head):
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def ingest_load(
    url: str,
    key: str,
    users: list[str],
    items: list[str],
    *,
    clients: int,
    seconds: float,
    rate: float | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    """``clients`` connections each sending batches of 100 (paced to ``rate`` events/s in
    total when given) for ``seconds``; accepted rows and request latencies."""
    latencies: list[float] = []
    counts = {"inserted": 0, "rows": 0, "requests": 0, "errors": 0, "messages": 0}
    # Bodies made before the clock starts: making and encoding them on the fly cost the load
    # client (on the same two cores) more CPU than the server spent taking them.
    most = math.ceil(seconds * (rate or 40_000) / 100) + clients
    conns = [Conn(url, key) for _ in range(clients)]
    bodies = iter(
        [
            conns[0].request(
                "POST",
                "/v1/batch",
                json.dumps(
                    {"batch": messages(offset + i * 100, 100, users, items)},
                    separators=(",", ":"),
                ).encode(),
            )
            for i in range(most)
        ]
    )
    stop = time.perf_counter() + seconds

    async def one(c: Conn) -> None:
        interval = (clients * 100 / rate) if rate else 0.0
        next_at = time.perf_counter()
        while time.perf_counter() < stop:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
            body = next(bodies, None)
            if body is None:
                raise SystemExit(f"error: the load client made too few bodies ({most})")
            t = time.perf_counter()
            status, answer = await c.send(body)
            latencies.append((time.perf_counter() - t) * 1000)
            counts["requests"] += 1
            if status == 200:
                a = json.loads(answer)
                counts["inserted"] += a["inserted"]
                counts["rows"] += a["rows"]
                counts["messages"] += a["messages"]
            else:
                counts["errors"] += 1

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(one(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    elapsed = time.perf_counter() - t0
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        **counts,
        "events_per_s": round(counts["rows"] / elapsed),
        "messages_per_s": round(counts["messages"] / elapsed),
        "request_ms_p50": pct(latencies, 50),
        "request_ms_p99": pct(latencies, 99),
    }


async def rec_load(
    url: str,
    key: str,
    users: list[str],
    *,
    clients: int,
    seconds: float,
    per_client_per_s: float | None = None,
) -> dict[str, Any]:
    """``clients`` connections asking for recommendations: back to back (closed loop), or
    each at ``per_client_per_s`` requests a second (open loop)."""
    from urllib.parse import quote

    latencies: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds
    rng = random.Random(7)
    conns = [Conn(url, key) for _ in range(clients)]

    async def one(c: Conn) -> None:
        next_at = time.perf_counter() + rng.random()
        while time.perf_counter() < stop:
            if per_client_per_s:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += 1 / per_client_per_s
            raw = c.request("GET", f"/v1/users/{quote(rng.choice(users))}/recommendations?k=10")
            t = time.perf_counter()
            status, _ = await c.send(raw)
            latencies.append((time.perf_counter() - t) * 1000)
            if status != 200:
                errors[0] += 1

    try:
        await asyncio.gather(*(one(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors[0],
        "ms_p50": pct(latencies, 50),
        "ms_p95": pct(latencies, 95),
        "ms_p99": pct(latencies, 99),
        "requests_per_s": round(len(latencies) / seconds),
    }


def _ingest_in_process(
    queue: Any, url: str, key: str, users: list[str], items: list[str], kw: dict[str, Any]
) -> None:
    queue.put(asyncio.run(ingest_load(url, key, users, items, **kw)))


async def with_background_ingest(
    reads: Any, url: str, key: str, users: list[str], items: list[str], **kw: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``reads`` (a coroutine) while another process sends tracking batches (``kw`` as
    for :func:`ingest_load`): a load client of its own, so that making and sending the
    batches does not delay the reading client's loop and inflate what it measures."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_ingest_in_process, args=(queue, url, key, users, items, kw))
    proc.start()
    try:
        result = await reads
        background = await asyncio.to_thread(queue.get, True, 300)
    finally:
        proc.join(60)
    return result, background


async def visibility(
    url: str, keys: dict[str, str], users: list[str], items: list[str], n: int = 200
) -> dict[str, Any]:
    """Send one event, then read the user's profile until the event shows (its live event
    count goes up); the delay from sending to seeing."""
    import httpx

    delays: list[float] = []
    rng = random.Random(11)
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        for i in range(n):
            u = rng.choice(users)
            read = {"Authorization": f"Bearer {keys['read']}"}
            before = (await c.get(f"/v1/users/{u}", headers=read)).json()["live"]["events"]
            msg = messages(10_000_000 + i, 1, [u], items)[0]
            t = time.perf_counter()
            r = await c.post(
                "/v1/track", json=msg, headers={"Authorization": f"Bearer {keys['ingest']}"}
            )
            assert r.status_code == 200, r.text
            while True:
                now = (await c.get(f"/v1/users/{u}", headers=read)).json()["live"]["events"]
                if now > before:
                    break
                if time.perf_counter() - t > 10:
                    raise SystemExit(f"error: an event for {u} did not show within 10 s")
                await asyncio.sleep(0.005)
            delays.append((time.perf_counter() - t) * 1000)
    return {
        "events": n,
        "ms_p50": pct(delays, 50),
        "ms_p99": pct(delays, 99),
        "ms_max": round(max(delays), 1),
    }


def in_process_baselines(db: Path, users: list[str], items: list[str]) -> dict[str, Any]:
    import jingzhun
    from jingzhun.profile.live import LiveProfiles
    from jingzhun.recommend.interactions import interaction_weights

    out: dict[str, Any] = {}
    with jingzhun.open(db) as ws:
        msgs = messages(50_000_000, 100_000, users, items)
        lines = [json.dumps(m, separators=(",", ":")).encode() for m in msgs]
        t0 = time.perf_counter()
        rows = 0
        for i in range(0, len(lines), 5000):
            result, _ = ws.ingest.messages(b"\n".join(lines[i : i + 5000]) + b"\n")
            rows += result.rows_read
        elapsed = time.perf_counter() - t0
        out["ingest_messages_5000"] = {
            "messages": len(lines),
            "rows": rows,
            "seconds": round(elapsed, 2),
            "events_per_s": round(rows / elapsed),
        }
        rec = ws.recs.recommender()
        sample = random.Random(3).sample(users, 2000)
        for u in sample[:50]:
            ws.recs.for_user(u, k=10)
        times = []
        for u in sample:
            t = time.perf_counter()
            ws.recs.for_user(u, k=10)
            times.append((time.perf_counter() - t) * 1000)
        out["for_user"] = {"calls": len(times), "ms_p50": pct(times, 50), "ms_p99": pct(times, 99)}
        # What the route runs: the user's interactions from the live layer (loaded), no query.
        live = LiveProfiles(ws.store, ws.settings, interactions=interaction_weights(ws.settings))
        live.load(sample)
        times = []
        for u in sample:
            t = time.perf_counter()
            ws.recs.for_user(u, k=10, history=live.interactions(u))
            times.append((time.perf_counter() - t) * 1000)
        out["for_user_live_history"] = {
            "calls": len(times),
            "ms_p50": pct(times, 50),
            "ms_p99": pct(times, 99),
        }
        live.close()
        del rec
    return out


def main() -> None:
    from jingzhun.store import apikeys
    from jingzhun.workspace import Workspace

    source = demo_store()
    tmp = Path(tempfile.mkdtemp(prefix="jz-bench-server-"))
    try:
        db = tmp / "store.duckdb"
        copy_store(source, db)
        with Workspace.open(db) as ws:
            keys = {s: apikeys.create(ws.store, f"bench-{s}", s)[1] for s in ("ingest", "read")}
            users = [r[0] for r in ws.store.rows("SELECT user_id FROM profiles ORDER BY user_id")]
            items = [r[0] for r in ws.store.rows("SELECT item_id FROM items ORDER BY item_id")]
        baseline_db = tmp / "baseline.duckdb"
        copy_store(source, baseline_db)
        baselines = in_process_baselines(baseline_db, users, items)
        server = Server(db)
        try:
            held, took = server.warmed()
            results: dict[str, Any] = {"warm_up": {"users": held, "seconds": took}}
            results["ingest"] = [
                asyncio.run(
                    ingest_load(
                        server.url,
                        keys["ingest"],
                        users,
                        items,
                        clients=c,
                        seconds=SECONDS,
                        offset=c * 10_000_000,
                    )
                )
                for c in (16, 64, 256)
            ]

            recs, background = asyncio.run(
                with_background_ingest(
                    rec_load(server.url, keys["read"], users, clients=32, seconds=SECONDS),
                    server.url,
                    keys["ingest"],
                    users,
                    items,
                    clients=20,  # each paced to one request a second: open loop
                    seconds=SECONDS + 1,
                    rate=2000,
                    offset=90_000_000,
                )
            )
            results["recommendations"] = {**recs, "ingest_during": background}

            recs, background = asyncio.run(
                with_background_ingest(
                    rec_load(
                        server.url,
                        keys["read"],
                        users,
                        clients=32,
                        seconds=SECONDS,
                        per_client_per_s=1.0,
                    ),
                    server.url,
                    keys["ingest"],
                    users,
                    items,
                    clients=20,
                    seconds=SECONDS + 1,
                    rate=2000,
                    offset=95_000_000,
                )
            )
            results["recommendations_paced"] = {
                **recs,
                "per_client_per_s": 1.0,
                "ingest_during": background,
            }
            results["visibility"] = asyncio.run(visibility(server.url, keys, users, items))
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best_ingest = max(results["ingest"], key=lambda r: r["events_per_s"])
    save(
        "server",
        {
            "workload": f"demo shop ({USERS:,} users); jingzhun serve and the load client on one "
            f"machine; {SECONDS:g} s per phase",
            "target": {
                "ingest_events_per_s": 20_000,
                "recommendations_ms_p99": 20,
                "visible_ms_p99": 1000,
            },
            "results": results,
            "baseline": baselines,
            "met": {
                "ingest_events_per_s": best_ingest["events_per_s"] >= 20_000,
                "recommendations_ms_p99": results["recommendations_paced"]["ms_p99"] < 20,
                "visible_ms_p99": results["visibility"]["ms_p99"] < 1000,
            },
        },
    )


if __name__ == "__main__":
    main()
