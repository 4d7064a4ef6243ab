"""Prometheus metrics of one server (its own registry, so apps in one process do not mix)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Request latency buckets, in seconds: the tracking and recommendation routes answer in
#: milliseconds, jobs and large batches in seconds.
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "jingzhun_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "jingzhun_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=_LATENCY,
            registry=r,
        )
        self.events = Counter(
            "jingzhun_events",
            "Event rows from tracking messages, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.messages = Counter(
            "jingzhun_tracking_messages", "Tracking messages accepted.", registry=r
        )
        self.batches = Histogram(
            "jingzhun_write_batch_seconds",
            "Time to write one batch of tracking messages.",
            buckets=_LATENCY,
            registry=r,
        )
        self.live_apply = Histogram(
            "jingzhun_live_apply_seconds",
            "Time to fold one written batch into the live profiles.",
            buckets=_LATENCY,
            registry=r,
        )
        self.loop_lag = Histogram(
            "jingzhun_event_loop_lag_seconds",
            "How late the server's event loop runs a callback due now (checked every 50 ms): "
            "the time every request waits before it is read or answered.",
            buckets=_LATENCY,
            registry=r,
        )
        self.queue = Gauge(
            "jingzhun_write_queue_messages", "Messages accepted and not yet written.", registry=r
        )
        self.jobs = Histogram(
            "jingzhun_job_duration_seconds",
            "Time a job ran, by kind and final state.",
            ["kind", "state"],
            buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
            registry=r,
        )
        self.live_users = Gauge(
            "jingzhun_live_users", "Users whose live traits the server holds.", registry=r
        )
        self.rate_limited = Counter(
            "jingzhun_rate_limited", "Requests refused with 429, by key name.", ["key"], registry=r
        )
        self.dashboard_limited = Counter(
            "jingzhun_dashboard_rate_limited",
            "Dashboard requests refused with 429, by the limit reached (session, address, login).",
            ["limit"],
            registry=r,
        )

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self.queue.set_function(lambda: float(depth()))
