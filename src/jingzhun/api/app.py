"""The server's app factory: ``create_app(workspace)``, one router per resource.

Examples
--------
>>> import jingzhun
>>> from jingzhun.api import create_app
>>> app = create_app(jingzhun.open("shop.duckdb"))      # doctest: +SKIP
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import threading
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jingzhun import __version__
from jingzhun.api import problems
from jingzhun.api.jobs import JobRunner
from jingzhun.api.metrics import Metrics
from jingzhun.api.routes import ROUTERS
from jingzhun.api.state import ServerState
from jingzhun.api.writer import Writer
from jingzhun.errors import JingzhunError, NotFoundError
from jingzhun.ingest.pipeline import BatchResult
from jingzhun.profile.live import LiveProfiles
from jingzhun.recommend.interactions import interaction_weights
from jingzhun.workspace import Workspace

access_log = logging.getLogger("jingzhun.access")
log = logging.getLogger("jingzhun.server")

#: The tracking routes' paths: their bodies may be Segment's 500 KB (other routes take
#: ``max_body_bytes``); the routes check the unzipped size themselves.
_TRACKING = frozenset(
    f"/v1/{p}"
    for p in (
        "batch",
        "b",
        "track",
        "t",
        "identify",
        "i",
        "page",
        "p",
        "screen",
        "s",
        "alias",
        "a",
        "group",
        "g",
    )
)


#: How much of an over-limit body is read before the 413 (as a multiple of the limit).
_DRAIN = 8


class _Guard:
    """Outermost ASGI layer: the body size limit, request metrics and one structured
    access-log line per request (by route template, so ids do not explode the labels).

    A body over the limit is answered 413 here, before any route reads it: at once when its
    Content-Length says so, else as soon as the bytes received pass the limit (the route then
    sees the client go away, and whatever it sends is dropped).
    """

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app, self.state = app, state

    def _limit(self, path: str) -> int:
        s = self.state.settings
        return s.max_batch_bytes if path in _TRACKING else s.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        limit = self._limit(scope.get("path", ""))
        status = {"code": 500, "answered": False}

        async def too_large() -> None:
            status["code"], status["answered"] = 413, True
            await problems.problem(
                413,
                f"the body is larger than {limit // 1024:,} KB, the most this route takes; "
                "send less per request",
                instance=scope.get("path"),
                # The rest of the body is not read: the connection ends with this answer, so
                # a client does not send its next request on it (it would find it closed).
                headers={"Connection": "close"},
            )(scope, receive, send)

        async def send_(message: Message) -> None:
            if status["answered"]:
                return
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        seen = 0

        async def receive_() -> Message:
            nonlocal seen
            if status["answered"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Read (and drop) the rest of a moderately large body first, so that the
                    # client, still sending, gets the 413 rather than a reset connection;
                    # beyond _DRAIN times the limit the connection is simply closed.
                    more = message.get("more_body", False)
                    while more and seen < _DRAIN * limit:
                        message = await receive()
                        seen += len(message.get("body", b""))
                        more = message["type"] == "http.request" and message.get("more_body")
                    await too_large()
                    return {"type": "http.disconnect"}
            return message

        try:
            size = dict(scope.get("headers", [])).get(b"content-length", b"")
            if size.isdigit() and int(size) > limit:
                await too_large()
            else:
                await self.app(scope, receive_, send_)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            method = scope.get("method", "")
            m = self.state.metrics
            m.requests.labels(template, method, str(status["code"])).inc()
            m.latency.labels(template, method).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                state = scope.get("state") or {}
                access_log.info(
                    json.dumps(
                        {
                            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "method": method,
                            "route": template,
                            "status": status["code"],
                            "ms": round(elapsed * 1000, 2),
                            "key": state.get("key_name"),
                            "client": (scope.get("client") or ("", 0))[0],
                        }
                    )
                )


async def _watch_loop(metrics: Metrics) -> None:
    """Record how late the event loop wakes from a 50 ms sleep: a loop held up (by a thread
    keeping the GIL, or blocking code on it) delays every request."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(0.05)
        metrics.loop_lag.observe(max(0.0, time.perf_counter() - before - 0.05))


def _trigger_clock(state: ServerState, stopping: threading.Event, every: float) -> None:
    """Run the triggered campaigns every ``every`` seconds on a connection of its own (a cart
    abandoned for an hour gets its email within a tick of the hour); a failure is logged
    and the next tick tries again."""
    ws = state.readers.cursor_workspace()
    try:
        while not stopping.wait(every):
            try:
                for result in ws.campaigns.trigger():
                    if result.error:
                        log.warning("triggered campaign %s: %s", result.campaign, result.error)
            except JingzhunError as exc:
                log.warning("triggered campaigns: %s", exc)
    finally:
        ws.store.close()


def _warm(state: ServerState, stop: threading.Event) -> None:
    """Load the active recommender and the recently active users' live state, so that the
    first requests do not wait for them (without it, each is read on first use)."""
    started = time.perf_counter()
    try:
        with contextlib.suppress(NotFoundError):  # no model trained yet
            state.recs.recommender()
        # Small chunks: each holds up the writer's hand-over of a batch for one chunk only.
        n = state.live.load(chunk=2000, stop=stop)
    except Exception:
        log.error("warming up failed:\n%s", traceback.format_exc())
        return
    log.info("warmed up: %d users' live profiles in %.1f s", n, time.perf_counter() - started)
    # The live states are a few hundred thousand long-lived objects; each full collection
    # of the cyclic GC walked them all while every thread waited (190-340 ms, measured under
    # load: the slowest requests). Collected once now, then left out of later collections;
    # they hold no cycles, so a state dropped later is still freed (by reference counting).
    gc.collect()
    gc.freeze()


def create_app(workspace: Workspace) -> FastAPI:
    """The REST API over ``workspace``, which the app now owns (closed when the app stops)."""
    metrics = Metrics()

    def ingest(data: bytes):
        with metrics.batches.time():
            return workspace.ingest.messages(data, label="api")

    # Real-time traits: made before the first batch can commit (it notes which batches
    # the store already holds), fed each batch after it commits.
    s = workspace.settings.server
    live = LiveProfiles(
        workspace.store,
        workspace.settings,
        capacity=s.live_users,
        # Each held user's item interactions too: the recommendation route scores from them
        # instead of querying events per request (≈ 13 of its 16 ms in process).
        interactions=interaction_weights(workspace.settings),
    )

    def after_batch(result: BatchResult) -> None:
        with metrics.live_apply.time():
            live.apply_batch(result.batch_id)
        metrics.events.labels("inserted").inc(result.inserted)
        metrics.events.labels("quarantined").inc(result.quarantined)
        metrics.events.labels("duplicate").inc(max(0, result.duplicates))

    writer = Writer(
        ingest,
        batch_messages=s.batch_messages,
        linger_ms=s.linger_ms,
        queue_messages=s.queue_messages,
        on_batch=after_batch,
    )
    metrics.watch_queue(lambda: writer.depth)
    metrics.live_users.set_function(lambda: float(len(live)))
    state = ServerState(workspace, writer=writer, metrics=metrics)
    state.live = live

    def job_done(kind: str, succeeded: bool, seconds: float) -> None:
        if succeeded:  # a new model, segments or scores: serve them
            state.recs.refresh()
        metrics.jobs.labels(kind, "succeeded" if succeeded else "failed").observe(seconds)

    state.jobs = JobRunner(state.readers.cursor_workspace, on_done=job_done)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each request thread holds a reader cursor: their number is the server's threads.
        anyio.to_thread.current_default_thread_limiter().total_tokens = s.threads
        stopping = threading.Event()
        warm: threading.Thread | None = None
        if s.warm_up:
            # The recently active users' live state, loaded while the server already answers
            # (a user not loaded yet is read on first touch, as after the warm-up).
            warm = threading.Thread(
                target=lambda: _warm(state, stopping), name="jingzhun-warm-up", daemon=True
            )
            warm.start()
        lag = asyncio.create_task(_watch_loop(metrics))
        clock: threading.Thread | None = None
        if s.trigger_seconds > 0:
            clock = threading.Thread(
                target=_trigger_clock,
                args=(state, stopping, s.trigger_seconds),
                name="jingzhun-triggers",
                daemon=True,
            )
            clock.start()
        yield
        lag.cancel()
        # Graceful stop: nothing accepted is lost; then the store closes.
        stopping.set()
        state.ready = False
        if clock is not None:
            clock.join()  # it stops after the run in hand
        if warm is not None:
            warm.join()  # it stops after the chunk it is seeding
            gc.unfreeze()  # what the warm-up froze is collectable again once the app is gone
        writer.stop()
        state.jobs.stop()
        state.close()
        workspace.store.close()

    app = FastAPI(
        title="jingzhun",
        version=__version__,
        summary="精准 jingzhun — precision marketing on your own data: tracking (Segment "
        "protocol), profiles, segments, recommendations, models.",
        lifespan=lifespan,
    )
    app.state.jingzhun = state
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    from jingzhun.web import common as web
    from jingzhun.web.routes import router as dashboard

    app.include_router(dashboard)  # the dashboard at /, beside the API under /v1
    web.install(app)
    problems.document(app)
    app.add_middleware(_Guard, state=state)
    return app
