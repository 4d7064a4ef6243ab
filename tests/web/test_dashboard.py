"""The dashboard in a real browser against the real server: sign-in and sign-out, the overview in
both languages with its charts drawn, nothing fetched from another host, no console error, and
the refusals (no cookie, a forged cookie, a form without its CSRF token, a revoked key)."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import httpx
import pytest

from tests.api.conftest import Served
from tests.web.conftest import ARTIFACTS, Watched, charts_drawn, charts_overflowing, sign_in


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


@pytest.mark.parametrize(
    ("context", "lang", "words"),
    [
        ("en-US", "en", ["Segments", "Silhouette", "Members"]),
        ("zh-CN", "zh", ["用户分群", "轮廓系数", "成员"]),
    ],
    indirect=["context"],
)
def test_segments_show_each_run_its_portraits_charts_and_members(
    served: Served, context: Any, lang: str, words: list[str]
) -> None:
    w = Watched(context, served.url)
    sign_in(w, served, then="/segments?run=behaviour")
    text = w.page.inner_text("body")
    for word in words:
        assert word in text
    assert w.page.locator("tr.current").count() == 1
    assert charts_drawn(w.page) >= 3, "sizes, trait heatmap, k scan (and the projection)"
    assert charts_overflowing(w.page) == []
    w.page.screenshot(path=str(ARTIFACTS / f"segments-{lang}.png"), full_page=True)
    first = w.page.locator("#members tbody tr").first.inner_text()
    w.page.click("#members .pager a")  # next page
    assert (
        "page=2" in w.page.url and w.page.locator("#members tbody tr").first.inner_text() != first
    )
    w.page.goto(
        served.url + "/segments?run=rfm&segment=" + "x%22%3E%3Cscript%3Ealert(1)%3C/script%3E"
    )
    assert w.page.locator("#members tbody tr").count() == 0
    assert w.errors == [] and w.foreign == []


@pytest.mark.parametrize(
    ("context", "lang"), [("en-US", "en"), ("zh-CN", "zh")], indirect=["context"]
)
def test_an_unknown_run_is_a_page_in_the_users_language_with_a_way_back(
    served: Served, context: Any, lang: str
) -> None:
    w = Watched(context, served.url)
    sign_in(w, served)
    response = w.page.goto(served.url + "/segments?run=%3Cb%3Enope%3C%2Fb%3E")
    assert response is not None and response.status == 404
    alert = w.page.inner_text("[role=alert]")
    assert "<b>nope</b>" in alert, "the name shown as text, not markup"
    assert ("没有名为" in alert) if lang == "zh" else ("There is no segment run" in alert)
    assert "Traceback" not in w.page.content()
    w.page.click("main a")
    assert w.page.url == served.url + "/segments", "back to the list of runs"


def test_a_run_s_members_download_as_csv(served: Served) -> None:
    with httpx.Client(base_url=served.url, follow_redirects=False, timeout=30) as c:
        assert c.get("/segments/rfm/members.csv").status_code == 303, "signed in only"
        c.post("/login", data={"key": served.keys["read"], "next": "/"})
        r = c.get("/segments/rfm/members.csv")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert 'filename="segment-rfm-1.csv"' in r.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(r.text)))
        assert rows[0][:2] == ["user_id", "segment"] and len(rows) > 100
        assert c.get("/segments/nope/members.csv").status_code == 404


def test_static_assets_are_served_from_the_package(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as c:
        js = c.get("/static/plotly.min.js")
        assert js.status_code == 200 and len(js.content) > 1_000_000
        assert c.get("/static/dashboard.css").status_code == 200
        assert c.get("/static/../../etc/passwd").status_code == 404
        assert c.get("/static/nothing.js").status_code == 404


@pytest.mark.parametrize("context", ["en-US"], indirect=True)
def test_an_expired_session_goes_to_sign_in_and_comes_back_to_the_page(
    served: Served, context: Any
) -> None:
    served.app.state.jingzhun.sessions.lifetime = 1.5  # type: ignore[attr-defined]
    w = Watched(context, served.url)
    sign_in(w, served, then="/segments?run=rfm")
    assert w.page.url.endswith("/segments?run=rfm")
    time.sleep(2)
    w.page.goto(served.url + "/segments?run=behaviour&page=2")
    assert "/login" in w.page.url, "the expired session asks to sign in again"
    served.app.state.jingzhun.sessions.lifetime = 3600  # type: ignore[attr-defined]
    w.page.fill("#key", served.keys["read"])
    w.page.click("button.primary")
    w.page.wait_for_load_state("networkidle")
    assert w.page.url.endswith("/segments?run=behaviour&page=2"), "back to the page asked for"
    assert w.errors == [] and w.foreign == []


@pytest.mark.parametrize("context", ["en-US"], indirect=True)
def test_the_keyboard_reaches_every_page_with_a_visible_focus(served: Served, context: Any) -> None:
    w = Watched(context, served.url)
    sign_in(w, served)
    seen = []
    for _ in range(12):
        w.page.keyboard.press("Tab")
        seen.append(
            w.page.evaluate(
                """() => { const e = document.activeElement;
                           const s = getComputedStyle(e);
                           return [e.getAttribute('href') || e.tagName,
                                   s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2]; }"""
            )
        )
    hrefs = [h for h, _ in seen]
    assert hrefs[0] == "#main", "the first Tab offers to skip to the content"
    for page in ("/", "/segments", "/users", "/explore", "/campaigns", "/models", "/jobs"):
        assert page in hrefs, f"{page} is not reachable by Tab"
    assert all(visible for _, visible in seen), "every focused element shows its focus"
    w.page.goto(served.url + "/")
    w.page.wait_for_load_state("networkidle")
    for _ in range(hrefs.index("/segments") + 1):
        w.page.keyboard.press("Tab")
    assert w.page.evaluate("() => document.activeElement.getAttribute('href')") == "/segments"
    with w.page.expect_navigation():
        w.page.keyboard.press("Enter")  # follow it with the keyboard alone
    assert w.page.url == served.url + "/segments"


@pytest.mark.parametrize("context", ["en-US"], indirect=True)
def test_at_1920_pixels_charts_use_the_width_and_stay_in_their_cards(
    served: Served, context: Any
) -> None:
    w = Watched(context, served.url)
    w.page.set_viewport_size({"width": 1920, "height": 1080})
    sign_in(w, served)
    for path, name in [("/?days=90", "overview"), ("/segments?run=behaviour", "segments")]:
        w.page.goto(served.url + path)
        w.page.wait_for_load_state("networkidle")
        assert charts_overflowing(w.page) == []
        widths = w.page.evaluate(
            "() => [...document.querySelectorAll('svg.main-svg')].map(s => s.getBoundingClientRect().width)"
        )
        assert widths and min(widths) > 700, f"{name}: a chart left narrow on a wide screen"
        w.page.screenshot(path=str(ARTIFACTS / f"{name}-1920.png"), full_page=True)
    assert w.errors == [] and w.foreign == []


def test_a_sign_in_form_posted_from_another_site_is_refused(served: Served) -> None:
    with httpx.Client(base_url=served.url, follow_redirects=False, timeout=30) as c:
        r = c.post(
            "/login",
            data={"key": served.keys["read"], "next": "/"},
            headers={"Origin": "https://evil.example"},
        )
        assert r.status_code == 403 and "jz_session" not in r.cookies
        r = c.post("/login", data={"key": served.keys["read"]}, headers={"Origin": served.url})
        assert r.status_code == 303 and "jz_session" in r.cookies


@pytest.mark.parametrize("context", ["en-US"], indirect=True)
def test_inline_scripts_run_only_with_the_page_s_nonce(served: Served, context: Any) -> None:
    """The CSP has no 'unsafe-inline' (nor 'unsafe-eval') for scripts: the charts' scripts
    carry a nonce fresh on every page, and a script put into the page otherwise is refused."""
    w = Watched(context, served.url)
    sign_in(w, served, then="/")
    assert charts_drawn(w.page) == 3, "the charts' own scripts ran"
    seen = []
    for _ in range(2):
        r = w.page.request.get(served.url + "/")
        csp = r.headers["content-security-policy"]
        script_src = next(p for p in csp.split(";") if p.strip().startswith("script-src"))
        assert "unsafe-inline" not in script_src and "unsafe-eval" not in script_src
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        nonce = script_src.split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}">' in r.text()
        assert r.headers["x-content-type-options"] == "nosniff"
        seen.append(nonce)
    assert seen[0] != seen[1] and len(seen[0]) >= 24
    ran = w.page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.__injected = 1'; document.body.appendChild(s);
                   return window.__injected === 1; }"""
    )
    assert ran is False
    assert any("Content Security Policy" in e for e in w.errors), w.errors
    assert w.foreign == []


def test_a_chart_label_cannot_open_a_script_that_would_get_the_nonce() -> None:
    """render() gives the nonce to every ``<script>`` tag of the page; Plotly writes ``<`` in a
    figure's JSON escaped, so a label holding a script tag stays text."""
    import plotly.graph_objects as go

    from jingzhun.report.html import figure

    label = '</script><script>alert(1)</script><script type="text/javascript">'
    fragment = figure(go.Figure(go.Bar(x=[label], y=[1], name=label)))
    assert fragment.count("<script") == 1 and fragment.count("<script>") == 1
