"""The dashboard in a real browser against the real server: sign-in and sign-out, the overview in
both languages with its charts drawn, nothing fetched from another host, no console error, and
the refusals (no cookie, a forged cookie, a form without its CSRF token, a revoked key)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Served
from tests.web.conftest import Watched

ARTIFACTS = Path(os.environ.get("JINGZHUN_ARTIFACTS", "test-artifacts")) / "dashboard"


def sign_in(w: Watched, served: Served, scope: str = "read", then: str = "/") -> None:
    w.page.goto(served.url + then)
    assert "/login" in w.page.url
    w.page.fill("#key", served.keys[scope])
    w.page.click("button.primary")
    w.page.wait_for_load_state("networkidle")


def charts_drawn(page: Any) -> int:
    """How many Plotly charts on the page drew something (an SVG with marks in it)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.js-plotly-plot')].filter(
               d => d.querySelector('svg.main-svg') &&
                    d.querySelectorAll('.trace, .hm, .funnel, .bars, path.point').length > 0
           ).length"""
    )


def charts_overflowing(page: Any) -> list[str]:
    """The titles of charts that stick out of their card (cut off on screen)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.card')].flatMap(card => {
               const box = card.getBoundingClientRect();
               return [...card.querySelectorAll('svg.main-svg')].filter(
                   svg => svg.getBoundingClientRect().right > box.right + 1
               ).map(svg => card.innerText.split('\\n')[0]);
           })"""
    )


@pytest.mark.parametrize(
    ("context", "lang", "words"),
    [
        ("en-US", "en", ["Overview", "Orders", "Funnel"]),
        ("zh-CN", "zh", ["概览", "订单", "转化漏斗"]),
    ],
    indirect=["context"],
)
def test_sign_in_see_the_overview_in_the_browser_language_and_sign_out(
    served: Served, context: Any, lang: str, words: list[str]
) -> None:
    w = Watched(context, served.url)
    sign_in(w, served, then="/?days=90")
    assert w.page.url.endswith("/?days=90"), "back to the page asked for"
    text = w.page.inner_text("body")
    for word in words:
        assert word in text
    assert w.page.locator(".kpi").count() == 6
    assert charts_drawn(w.page) == 3, "trend, funnel and cohort charts"
    assert charts_overflowing(w.page) == [], "a chart wider than its card is cut off"
    assert w.page.get_attribute("html", "lang") == ("zh-CN" if lang == "zh" else "en")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    w.page.screenshot(path=str(ARTIFACTS / f"overview-{lang}.png"), full_page=True)
    cookie = next(c for c in context.cookies() if c["name"] == "jz_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > 0
    w.page.click("text=" + ("退出" if lang == "zh" else "Sign out"))
    w.page.wait_for_load_state("networkidle")
    assert "/login" in w.page.url
    w.page.goto(served.url + "/")
    assert "/login" in w.page.url, "signed out: the overview asks to sign in again"
    assert w.errors == [] and w.foreign == []


@pytest.mark.parametrize("context", ["en-US"], indirect=True)
def test_the_language_switch_persists_and_labels_change(served: Served, context: Any) -> None:
    w = Watched(context, served.url)
    sign_in(w, served)
    w.page.click("text=中文")
    w.page.wait_for_load_state("networkidle")
    assert "核心指标" in w.page.content() and "客单价" in w.page.inner_text("body")
    w.page.goto(served.url + "/?days=7")
    assert "最近 7 天" in w.page.inner_text("body"), "the choice is kept per browser"
    assert charts_drawn(w.page) >= 2
    w.page.screenshot(path=str(ARTIFACTS / "overview-zh-switched.png"), full_page=True)
    assert w.errors == [] and w.foreign == []


@pytest.mark.parametrize("context", ["en-US"], indirect=True)
def test_a_wrong_key_or_an_ingest_key_does_not_sign_in(served: Served, context: Any) -> None:
    w = Watched(context, served.url)
    for key, message in [("jz_nope", "not valid"), (served.keys["ingest"], "only send events")]:
        w.page.goto(served.url + "/login")
        w.page.fill("#key", key)
        w.page.click("button.primary")
        assert message in w.page.inner_text("[role=alert]")
        assert not [c for c in context.cookies() if c["name"] == "jz_session"]


def test_without_a_valid_session_pages_redirect_and_forms_are_refused(served: Served) -> None:
    with httpx.Client(base_url=served.url, follow_redirects=False, timeout=30) as c:
        r = c.get("/?days=7")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F%3Fdays%3D7"
        c.cookies.set("jz_session", "eyJrIjoieCJ9.forged")
        assert c.get("/").status_code == 303
        c.cookies.clear()
        r = c.post("/login", data={"key": served.keys["read"], "next": "//evil.example/"})
        assert r.status_code == 303 and r.headers["location"] == "/", "no open redirect"
        assert c.get("/").status_code == 200
        bad = c.post("/logout", data={"csrf": "not-the-token"})
        assert bad.status_code == 403
        assert c.get("/").status_code == 200, "a refused sign-out leaves the session alone"
        # A revoked key signs its sessions out.
        admin = served.client("admin")
        assert admin.delete("/v1/keys/test-read").status_code == 200
        r = c.get("/")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_static_assets_are_served_from_the_package(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as c:
        js = c.get("/static/plotly.min.js")
        assert js.status_code == 200 and len(js.content) > 1_000_000
        assert c.get("/static/dashboard.css").status_code == 200
        assert c.get("/static/../../etc/passwd").status_code == 404
        assert c.get("/static/nothing.js").status_code == 404
