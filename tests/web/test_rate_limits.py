"""The dashboard's rate limits against the real server: each signed-in session (and, without
one, each client address) has its own bucket, sign-in attempts a tighter one per address; over
a limit the answer is 429 with Retry-After and a short page in the user's language, and nothing
else is done — a form posted over it changes nothing, a correct key posted over it signs no one
in. The bucket refills in the time Retry-After states, and buckets filled up again are forgotten.

Limits are set small in the servers' settings. Where a test needs a refusal for certain, the
sustained rate is a token per 1,000 s, so no token comes back while it runs."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from jingzhun.workspace import Workspace
from tests.api.conftest import Served, start

#: Requests a session or address may make at once, and sign-in attempts, on the slow server.
BURST, SIGN_INS = 6, 3
#: A token per 1,000 s: none comes back during a test.
SLOW = {
    "dashboard_rate_burst": BURST,
    "dashboard_rate_per_second": 0.001,
    "login_rate_burst": SIGN_INS,
    "login_rate_per_second": 0.001,
}
CSS = "/static/dashboard.css"


@pytest.fixture
def limited(dashboard_store: Path, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start the dashboard over a copy of the demo store with the given ``[server]`` limits."""
    started: list[Served] = []

    def _start(**limits: float) -> Served:
        db = tmp_path / f"store-{len(started)}.duckdb"
        shutil.copyfile(dashboard_store, db)
        with Workspace.open(db) as ws:
            settings = ws.settings.model_copy(
                update={"server": ws.settings.server.model_copy(update=limits)}
            )
        served = start(db, settings=settings)
        started.append(served)
        return served

    yield _start
    for s in started:
        s.stop()


def _client(served: Served) -> httpx.Client:
    c = httpx.Client(base_url=served.url, follow_redirects=False, timeout=60)
    served.clients.append(c)
    return c


def _signed_in(served: Served, scope: str = "read") -> httpx.Client:
    c = _client(served)
    r = c.post("/login", data={"key": served.keys[scope], "next": "/"})
    assert r.status_code == 303 and "jz_session" in r.headers["set-cookie"]
    return c


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and found
    return found.group(1)


def _refused(r: httpx.Response, lang: str = "en") -> int:
    """The seconds a 429 says to wait, after checking its page and headers."""
    assert r.status_code == 429, (r.status_code, r.text[:200])
    retry = int(r.headers["Retry-After"])
    assert retry >= 1
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert "set-cookie" not in r.headers, "a refused request changes no cookie"
    if lang == "zh":
        assert '<html lang="zh-CN">' in r.text
        assert "请求过于频繁" in r.text and f"请等待 {retry} 秒后再试" in r.text
    else:
        assert '<html lang="en">' in r.text
        assert "Too many requests" in r.text and f"Wait {retry} seconds" in r.text
    assert "Traceback" not in r.text
    return retry


def _dashboard_routes() -> list[tuple[str, str]]:
    """Every dashboard route as (method, path), with "x" for each path parameter."""
    from fastapi.routing import APIRoute

    from jingzhun.web.pages import PAGES
    from jingzhun.web.routes import router

    found = []
    for route in [*router.routes, *(r for page in PAGES for r in page.routes)]:
        if isinstance(route, APIRoute):
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            found += [(method, path) for method in sorted(route.methods)]
    return found


def _refusals(served: Served) -> dict[str, int]:
    """The dashboard's 429s so far by limit, as ``/metrics`` counts them."""
    text = served.client("read").get("/metrics").text
    found = re.findall(
        r'^jingzhun_dashboard_rate_limited_total\{limit="(\w+)"\} (\S+)$', text, re.M
    )
    return {limit: int(float(n)) for limit, n in found}


def test_over_its_budget_a_session_gets_429_in_its_language_and_others_keep_theirs(
    limited: Callable[..., Served],
) -> None:
    served = limited(**SLOW)
    a, b = _signed_in(served), _signed_in(served)  # two sign-ins: 2 of the address's budget
    assert a.get("/").status_code == 200, "a page, under the limit"
    codes = [a.get(CSS).status_code for _ in range(BURST)]
    assert codes == [200] * (BURST - 1) + [429], "the page and five more, then refused"
    retry = _refused(a.get("/users"))
    assert retry <= 1000, "a token per 1,000 s"
    a.cookies.set("jz_lang", "zh")  # the language switch's cookie
    _refused(a.get("/segments"), "zh")
    _refused(a.get("/users", headers={"Accept-Language": "zh-CN,zh;q=0.9"}), "zh")
    a.cookies.delete("jz_lang")
    routes = _dashboard_routes()
    assert len(routes) > 20, "the pages' routes are found"
    for method, path in routes:  # every route, forms included, takes from the budget first
        _refused(a.request(method, path, data={"csrf": "x"} if method == "POST" else None))
    assert b.get("/").status_code == 200, "another session has its own budget"
    assert b.get("/users").status_code == 200

    # Without a session: the client address's budget (the two sign-ins took two of it).
    anonymous = _client(served)
    codes = [anonymous.get("/login").status_code for _ in range(BURST - 2)]
    assert codes == [200] * (BURST - 2)
    _refused(anonymous.get("/login", headers={"Accept-Language": "zh"}), "zh")
    _refused(anonymous.get("/?days=7"))
    _refused(anonymous.post("/login", data={"key": served.keys["read"]}))
    assert b.get(CSS).status_code == 200, "a session is not held to its address's budget"
    assert _refusals(served) == {"session": 4 + len(routes), "address": 3}


def test_a_form_posted_over_the_limit_changes_nothing(limited: Callable[..., Served]) -> None:
    served = limited(**SLOW)
    registry = served.app.state.jingzhun.readers.get().models
    assert registry.active("recommender").model_id == "hybrid-1"
    admin = _signed_in(served, "admin")
    token = _csrf(admin.get("/models"))
    codes = [admin.get(CSS).status_code for _ in range(BURST)]
    assert codes == [200] * (BURST - 1) + [429], "the budget spent"
    r = admin.post("/models/popularity-1/activate", data={"csrf": token})
    _refused(r)
    assert registry.active("recommender").model_id == "hybrid-1", "not activated"
    _refused(admin.post("/logout", data={"csrf": token}))  # the session cookie is kept
    _refused(admin.post("/campaigns/new", data={"csrf": token, "name": "made-over-limit"}))
    assert served.client("admin").get("/v1/campaigns/made-over-limit").status_code == 404

    # The same form from a session under its limit takes effect.
    other = _signed_in(served, "admin")
    r = other.post("/models/popularity-1/activate", data={"csrf": _csrf(other.get("/models"))})
    assert r.status_code == 303
    assert registry.active("recommender").model_id == "popularity-1"


def test_sign_in_attempts_have_a_tighter_limit_and_a_right_key_over_it_signs_no_one_in(
    limited: Callable[..., Served],
) -> None:
    served = limited(**SLOW)
    guesser = _client(served)
    for i in range(SIGN_INS):
        r = guesser.post("/login", data={"key": f"jz_guess{i}"})
        assert r.status_code == 401 and "not valid" in r.text
    r = guesser.post("/login", data={"key": served.keys["admin"], "next": "/"})
    _refused(r)  # no session cookie: checked there
    r = guesser.post("/login", data={"key": "jz_guess"}, headers={"Accept-Language": "zh-CN"})
    _refused(r, "zh")
    assert "jz_session" not in guesser.cookies, "not signed in"
    # Five of the address's six requests so far: the sign-in page itself is still served.
    assert guesser.get("/login").status_code == 200
    assert _refusals(served) == {"login": 2}


def test_the_bucket_refills_in_the_time_retry_after_states_and_full_ones_are_forgotten(
    limited: Callable[..., Served],
) -> None:
    # Two requests a second, three at once: a refusal waits at most half a second.
    served = limited(dashboard_rate_burst=3, dashboard_rate_per_second=2.0)
    c = _signed_in(served)
    for _ in range(100):  # until refused: within a few requests, unless each took 0.5 s
        r = c.get(CSS)
        if r.status_code != 200:
            break
    retry = _refused(r)
    assert retry == 1, "(1 - tokens) / rate ≤ 0.5 s, rounded up"
    time.sleep(retry)
    assert c.get("/").status_code == 200, "refilled"
    limits = served.app.state.jingzhun.dashboard_limits
    assert len(limits) >= 1, "the session's bucket (the address's, from signing in, may be gone)"
    time.sleep(3 / 2.0 + 0.1)  # burst / rate: every bucket is full again
    assert _client(served).get("/login").status_code == 200
    assert len(limits) == 1, "only the bucket just used is held: the session's is forgotten"
