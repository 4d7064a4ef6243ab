"""The server's one rate limiter (``jingzhun.api.state.RateLimiter``) on a clock the test moves:
a token bucket per name, refusals that cost nothing, and memory that stays bounded — buckets
filled up again are forgotten, and no more than ``capacity`` are held."""

from __future__ import annotations

import pytest

from jingzhun.api.state import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_the_sustained_rate_and_the_wait_is_exact() -> None:
    clock = Clock()
    limits = RateLimiter(2.0, 3, clock=clock)
    assert [limits.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limits.take("a") == pytest.approx(0.5), "one token comes every 1/rate seconds"
    assert limits.take("a") == pytest.approx(0.5), "a refusal costs nothing"
    assert limits.take("b") == 0.0, "another name has its own bucket"
    clock.now += 0.25
    assert limits.take("a") == pytest.approx(0.25)
    clock.now += 0.25
    assert limits.take("a") == 0.0 and limits.take("a") > 0
    clock.now += 3600
    assert [limits.take("a") for _ in range(4)][-2:] == [0.0, pytest.approx(0.5)], (
        "refilled to the burst, never beyond"
    )


def test_buckets_filled_up_again_are_forgotten() -> None:
    clock = Clock()
    limits = RateLimiter(2.0, 3, clock=clock)
    for i in range(1000):
        limits.take(f"session-{i}")
    assert len(limits) == 1000
    clock.now += 1.0  # each had 2 tokens left: full again after 0.5 s
    limits.take("x")
    assert len(limits) == 1, "every bucket full again (burst / rate = 1.5 s at most) is gone"
    # An emptied bucket is kept until it is full again: forgetting it sooner would refill it.
    for _ in range(4):
        limits.take("busy")
    clock.now += 1.4
    limits.take("other")
    assert len(limits) == 2, "x, full again, is gone; busy (2.8 tokens) is kept"
    assert [limits.take("busy") for _ in range(3)][2] > 0, "its state was kept: 2.8 tokens"


def test_no_more_than_capacity_buckets_the_least_recently_seen_go_first() -> None:
    clock = Clock()
    limits = RateLimiter(0.001, 1, capacity=3, clock=clock)
    for name in ("a", "b", "c"):
        assert limits.take(name) == 0.0
    assert limits.take("a") > 0, "a is now the most recently seen"
    assert limits.take("d") == 0.0
    assert len(limits) == 3
    assert limits.take("a") > 0 and limits.take("c") > 0 and limits.take("d") > 0
    assert limits.take("b") == 0.0, "b was forgotten (a full bucket again)"
