"""What a running server holds: the store's one writer, a reader per request thread, the job
runner, the key cache, rate limits (API keys, dashboard sessions and sign-ins) and metrics.

DuckDB runs one database per file in this process; every connection here is a cursor of the
writer's, so they share it: a reader sees what the writer has committed (a whole batch or
nothing) and never waits for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from jingzhun.api.metrics import Metrics

if TYPE_CHECKING:
    from jingzhun.api.jobs import JobRunner
    from jingzhun.profile.live import LiveProfiles
    from jingzhun.recommend.facade import Recs
from jingzhun.api.writer import Writer
from jingzhun.errors import ConflictError
from jingzhun.store import Store, apikeys
from jingzhun.web.session import Sessions
from jingzhun.workspace import Workspace

#: How long a verified key is trusted without asking the store again: a key revoked by another
#: route or process stops working within this time (this server's own revocations at once).
KEY_CACHE_SECONDS = 10.0
#: The most buckets one rate limiter holds (some 200 bytes each: 10 MB at most).
RATE_BUCKETS = 50_000

T = TypeVar("T")


class Readers:
    """One read workspace per thread, each over its own cursor of the writer's database."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        # Cursors are made from a parent that runs no query: making one from the writer's own
        # connection would wait for the statement it is running.
        self._parent = ws.store.con.cursor()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._all: list[Workspace] = []

    def _workspace(self, read_only: bool) -> Workspace:
        with self._lock:
            con = self._parent.cursor()
        con.execute("SET TimeZone = 'UTC'")
        return Workspace(Store(con, self._ws.path, read_only), self._ws.settings)

    def get(self) -> Workspace:
        ws: Workspace | None = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = self._workspace(read_only=True)
            with self._lock:
                self._all.append(ws)
        return ws

    def cursor_workspace(self) -> Workspace:
        """A workspace over a new cursor, for a thread of its own (the job runner)."""
        return self._workspace(read_only=False)

    def close(self) -> None:
        with self._lock:
            for ws in self._all:
                ws.store.close()
            self._all.clear()
            self._parent.close()


class RateLimiter:
    """A token bucket per name: ``rate`` requests a second sustained, ``burst`` at once.

    The server's one limiter: API keys (by key id), dashboard sessions and, without one, client
    addresses, and dashboard sign-in attempts (by address) each have an instance of their own.

    Memory stays bounded: a bucket is forgotten once it has filled up again — a full bucket and
    none are the same — so it is held at most ``burst / rate`` seconds after its name's last
    request, and never more than ``capacity`` at once (beyond, the least recently seen name is
    forgotten: it starts again with a full bucket, which a flood of new names could buy only
    by having that many sessions or addresses).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        capacity: int = RATE_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.capacity = rate, burst, capacity
        self._clock = clock
        # By last request, oldest first: the ones to forget are at the front.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, name: str) -> float:
        """0 when the request may go ahead (and it is counted), else the seconds until it may."""
        now = self._clock()
        with self._lock:
            self._forget_full(now)
            tokens, then = self._buckets.pop(name, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[name] = (tokens - 1 if wait == 0 else tokens, now)
            if len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
            return wait

    def _forget_full(self, now: float) -> None:
        """Drop the oldest buckets that have filled up again (amortized O(1) a request)."""
        while self._buckets:
            name, (tokens, then) = next(iter(self._buckets.items()))
            if tokens + (now - then) * self.rate < self.burst:
                return
            del self._buckets[name]

    def __len__(self) -> int:
        """Buckets held now."""
        with self._lock:
            return len(self._buckets)


@dataclass
class _Cached:
    key: apikeys.ApiKey
    until: float


class KeyCache:
    """Verified keys by the SHA-256 of what was presented, for a few seconds."""

    def __init__(self) -> None:
        self._cache: dict[bytes, _Cached] = {}
        self._lock = threading.Lock()

    def verify(self, store: Store, presented: str) -> apikeys.ApiKey | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit.until > now:
            return hit.key
        key = apikeys.verify(store, presented)
        if key is not None:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = _Cached(key, now + KEY_CACHE_SECONDS)
        return key

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


class ServerState:
    """Everything a request handler may need, made once per app."""

    def __init__(self, ws: Workspace, *, writer: Writer, metrics: Metrics) -> None:
        self.ws = ws
        self.settings = ws.settings.server
        self.readers = Readers(ws)
        self.writer = writer
        self.metrics = metrics
        self.keys = KeyCache()
        self.sessions = Sessions()  # the dashboard's signed-in browsers
        self.limits = RateLimiter(self.settings.rate_per_second, self.settings.rate_burst)
        # The dashboard's: each signed-in session (without one, each client address), and
        # sign-in attempts by address (see jingzhun.web.common.within_rate).
        self.dashboard_limits = RateLimiter(
            self.settings.dashboard_rate_per_second, self.settings.dashboard_rate_burst
        )
        self.login_limits = RateLimiter(
            self.settings.login_rate_per_second, self.settings.login_rate_burst
        )
        self.started = time.time()
        self.ready = True
        self.jobs: JobRunner  # set by create_app
        self.live: LiveProfiles  # set by create_app
        # One recommender for every request thread, on a cursor of its own: each model is
        # loaded once (not per thread) and served without asking the store on each request
        # whether it changed — this server is the store's only writer, so it reloads them
        # itself (:meth:`catalog_changed`, and after each job).
        self._serving = self.readers.cursor_workspace()
        self.recs: Recs = self._serving.recs
        self.recs.pin()
        self._used: set[str] = set()
        self._used_lock = threading.Lock()
        self._used_flushed = -1e9

    def used(self, key_id: str) -> None:
        """Note a key's use; about once a minute the writer records the uses in the store
        (``last_used_at``), so a request costs no write."""
        now = time.monotonic()
        with self._used_lock:
            self._used.add(key_id)
            if now - self._used_flushed < 60:
                return
            ids, self._used, self._used_flushed = self._used, set(), now
        # Shutting down: the last minute of use goes unrecorded.
        with contextlib.suppress(ConflictError):
            self.writer.submit_task(lambda: apikeys.touch(self.ws.store, ids))

    def catalog_changed(self) -> None:
        """Items were written: the live traits' item categories and the served models' catalog
        (titles, filters) are read again."""
        self.live.invalidate()
        self.recs.refresh()

    def close(self) -> None:
        """Close the readers' cursors (after the writer and jobs stopped)."""
        self.live.close()
        self._serving.store.close()
        self.readers.close()

    def run_write(self, fn: Callable[[Workspace], T]) -> Future[T]:
        """Run ``fn(writer_workspace)`` in the writer thread: every write the server makes
        outside jobs goes through the one writer, between tracking batches."""
        return self.writer.submit_task(lambda: fn(self.ws))

    def retry_after(self, seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))
