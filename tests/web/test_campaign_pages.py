"""The campaign pages in a real browser against the real server: the list with each campaign's
headline lift, a campaign's report (the HTML report's own block, charts drawn inside their cards
at 1280 and 1920 px) with its definition and sandboxed message previews, the builder's live
audience size and field errors, creating a draft and sending it as a job; and the refusals and
hostile input, which are shown as text or refused with a field's message, never a 500."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.api.conftest import Served
from tests.web.conftest import ARTIFACTS, Watched, charts_drawn, charts_overflowing, sign_in

#: What the browser says when a sandboxed preview's script is not run: the sandbox working.
SANDBOXED = "Blocked script execution in 'about:srcdoc'"
HOSTILE_SUBJECT = '{{ first_name }}, <script>alert(1)</script> "q" \'; DROP TABLE users;--'


def real_errors(w: Watched) -> list[str]:
    return [e for e in w.errors if SANDBOXED not in e]


def shot(w: Watched, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # The sandboxed previews are drawn in a full-page shot only while they are in view; the
    # builder's live panel follows the view, so its shot is taken from the top.
    w.page.evaluate("window.scrollTo(0, 0)")
    if w.page.locator("#previews iframe").count():
        w.page.locator("#previews").scroll_into_view_if_needed()
        w.page.wait_for_timeout(300)
    w.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def client(served: Served, scope: str) -> httpx.Client:
    c = httpx.Client(base_url=served.url, follow_redirects=False, timeout=60)
    served.clients.append(c)
    assert c.post("/login", data={"key": served.keys[scope], "next": "/"}).status_code == 303
    return c


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


@pytest.mark.parametrize(
    ("context", "lang", "words"),
    [
        (
            "en-US",
            "en",
            ["Conversion lift (95% interval)", "What the campaign caused", "Sample messages"],
        ),
        ("zh-CN", "zh", ["转化率提升（95% 区间）", "活动效果", "消息样例"]),
    ],
    indirect=["context"],
)
def test_the_list_and_a_report_in_both_languages(
    served: Served, context: Any, lang: str, words: list[str]
) -> None:
    w = Watched(context, served.url)
    sign_in(w, served, then="/campaigns")
    text = w.page.inner_text("main")
    assert words[0] in text and "demo-uplift" in text and "demo-random" in text
    assert w.page.locator("tr[data-campaign]").count() == 2
    assert re.search(r"[+-]\d+\.\d\d pp", text), "a headline lift in percentage points"
    assert w.page.locator("a.campaign-new").count() == 0, "a read key builds nothing"
    assert charts_drawn(w.page) == 1 and charts_overflowing(w.page) == []
    shot(w, f"campaigns-{lang}")

    w.page.click("text=demo-uplift")
    w.page.wait_for_load_state("networkidle")
    assert w.page.url.endswith("/campaigns/demo-uplift")
    text = w.page.inner_text("main")
    for word in words[1:]:
        assert word in text
    assert w.page.locator(".campaign-report [data-part=effect] tr").count() == 5
    assert charts_drawn(w.page) == 4, "lift plain/CUPED ×2, lift over time, funnel"
    assert charts_overflowing(w.page) == []
    assert w.page.locator("#previews iframe").count() == 0, "a sent campaign: on request"
    w.page.click("#show-previews")
    w.page.wait_for_load_state("networkidle")
    assert charts_drawn(w.page) == 4
    frames = w.page.locator("#previews iframe")
    assert frames.count() == 3
    for i in range(3):
        assert frames.nth(i).get_attribute("sandbox") == "", "sandboxed: no scripts, no origin"
        assert "<h2>Hello" in (frames.nth(i).get_attribute("srcdoc") or "")
    assert w.page.locator("form.send").count() == 0, "sent already, and a read key"
    shot(w, f"campaign-{lang}")
    w.page.set_viewport_size({"width": 1920, "height": 1000})
    w.page.wait_for_timeout(600)  # the charts follow their cards' new width
    assert charts_overflowing(w.page) == []
    shot(w, f"campaign-{lang}-1920")
    assert w.errors == [] and w.foreign == []

    response = w.page.goto(served.url + "/campaigns/%3Cb%3Enope%3C%2Fb%3E")
    assert response is not None and response.status == 404
    alert = w.page.inner_text("[role=alert]")
    assert "<b>nope</b>" in alert
    assert ("没有名为" in alert) if lang == "zh" else ("There is no campaign" in alert)
    w.page.click("main a")
    assert w.page.url == served.url + "/campaigns"
    assert w.foreign == []


@pytest.mark.parametrize(
    ("context", "lang", "words"),
    [
        ("en-US", "en", ["Audience size, live", "Expected incremental profit", "uplift-1"]),
        ("zh-CN", "zh", ["实时人群规模", "预期增量利润", "uplift-1"]),
    ],
    indirect=["context"],
)
def test_build_a_campaign_watching_its_audience_and_land_on_its_page(
    served: Served, context: Any, lang: str, words: list[str]
) -> None:
    w = Watched(context, served.url)
    sign_in(w, served, scope="admin", then="/campaigns")
    w.page.click("a.campaign-new")
    w.page.wait_for_load_state("networkidle")
    assert w.page.url.endswith("/campaigns/new")
    text = w.page.inner_text("main")
    for word in words:
        assert word in text

    def members() -> str:
        return w.page.inner_text("#aud-members")

    def changes(before: str) -> str:
        w.page.wait_for_function(
            "b => document.getElementById('aud-members').textContent !== b", arg=before
        )
        return members()

    everyone = members()
    assert re.fullmatch(r"[\d,.万]+", everyone)
    champions = "rfm:Champions"
    w.page.select_option("#f-segment", champions)
    in_segment = changes(everyone)
    w.page.select_option("select[name=cond_trait_1]", "monetary")
    w.page.select_option("select[name=cond_op_1]", ">")
    w.page.fill("input[name=cond_value_1]", "1000")
    spending = changes(in_segment)
    assert int(spending.replace(",", "")) < int(in_segment.replace(",", ""))
    assert w.page.locator("#aud-steps tr").count() >= 4, "matched, then each exclusion"
    assert re.search(r"\d", w.page.inner_text("#aud-profit"))

    # A bad field says what is wrong beside it; fixing it brings the size back.
    w.page.fill("#f-where", "nosuch > 3")
    w.page.wait_for_selector("#err-where:not([hidden])")
    assert "unknown name 'nosuch'" in w.page.inner_text("#err-where")
    assert members() == "–"
    w.page.fill("#f-where", "")
    w.page.fill("#f-control_share", "abc")
    w.page.wait_for_selector("#err-control_share:not([hidden])")
    message = w.page.inner_text("#err-control_share")
    assert ("须为数字" in message) if lang == "zh" else ("must be a number" in message)
    w.page.fill("#f-control_share", "0.3")
    w.page.wait_for_selector("#err-control_share", state="hidden")
    changes("–")
    w.page.fill("#f-name", "<script>alert(1)</script>")
    w.page.wait_for_selector("#err-name:not([hidden])")
    assert "'<script>alert(1)</script>'" in w.page.inner_text("#err-name"), "shown as text"

    name = f"vip-{lang}"
    w.page.fill("#f-name", name)
    w.page.fill("#f-description", "Spring <b>VIP</b> '; DROP TABLE campaigns;--")
    w.page.fill("#f-variant_1_subject", HOSTILE_SUBJECT)
    w.page.fill("#f-variant_1_body", "<p>Hi {{ first_name }}</p><script>alert(1)</script>")
    w.page.click("button.add-variant")
    w.page.fill("#f-variant_2_subject", "B for {{ first_name }}")
    w.page.fill("#f-variant_2_body", "Hello {{ first_name }}")
    w.page.select_option("#f-variant_2_format", "text")
    w.page.wait_for_selector("#err-name", state="hidden")
    shot(w, f"campaign-new-{lang}")

    w.page.click("button.primary[type=submit]")
    w.page.wait_for_load_state("networkidle")
    assert w.page.url == f"{served.url}/campaigns/{name}"
    main = w.page.inner_text("main")
    assert "Spring <b>VIP</b> '; DROP TABLE campaigns;--" in main, "as text"
    assert "<script>alert(1)</script>" in w.page.inner_text(".spec-view")
    assert w.page.locator("main script").count() == 0, "nothing typed became markup"
    assert w.page.locator("form.send button").count() == 1, "a draft: an admin may send it"
    frames = w.page.locator("#previews iframe[sandbox='']")
    assert frames.count() >= 1
    assert w.page.locator("#previews pre.text-message").count() >= 1, "variant b is text"
    shot(w, f"campaign-draft-{lang}")
    assert real_errors(w) == [] and w.foreign == []


def test_refusals_hostile_input_and_a_dry_run_send(served: Served) -> None:
    with httpx.Client(base_url=served.url, follow_redirects=False, timeout=60) as anon:
        r = anon.get("/campaigns/new")
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        assert anon.post("/campaigns/audience", data={"channel": "email"}).status_code == 303

    read = client(served, "read")
    r = read.get("/campaigns/new")
    assert r.status_code == 403 and "admin" in r.text
    token = csrf(read.get("/campaigns").text)
    assert read.post("/campaigns/new", data={"csrf": token, "name": "x"}).status_code == 403
    assert read.post("/campaigns/demo-uplift/send", data={"csrf": token}).status_code == 403
    sized = read.post("/campaigns/audience", data={"csrf": token, "channel": "ads"})
    assert sized.status_code == 200 and sized.json()["audience"]["members"], "read may size"
    refused = read.post("/campaigns/audience", data={"channel": "ads"})
    assert refused.status_code == 403 and refused.json()["errors"]

    admin = client(served, "admin")
    timings = {}
    for path in ("/campaigns", "/campaigns/demo-uplift", "/campaigns/new"):
        started = time.perf_counter()
        assert admin.get(path).status_code == 200
        timings[path] = round(time.perf_counter() - started, 3)
    print("render seconds", timings)
    token = csrf(admin.get("/campaigns/new").text)
    base = {
        "csrf": token,
        "name": "ok-name",
        "channel": "email",
        "no_consent": "1",
        "control_share": "0.2",
        "variant_1_name": "a",
        "variant_1_subject": "Hi",
        "variant_1_body": "Hello {{ first_name }}",
    }
    assert admin.post("/campaigns/new", data={**base, "csrf": ""}).status_code == 403
    assert admin.post("/campaigns/new", data={**base, "csrf": "forged"}).status_code == 403
    assert admin.post("/campaigns/audience", headers={"X-CSRF-Token": "forged"}).status_code == 403
    ten_kb = "x" * 10_240
    bad = [
        ({"name": "<script>alert(1)</script>"}, "err-name", "&lt;script&gt;alert(1)"),
        ({"name": "'; DROP TABLE campaigns;--"}, "err-name", "DROP TABLE"),
        ({"name": "../../etc/passwd"}, "err-name", "should match pattern"),
        ({"name": ten_kb}, "err-name", "should match pattern"),
        ({"description": ten_kb}, "err-description", "at most 2,000"),
        ({"variant_1_subject": ten_kb}, "err-variant_1_subject", "at most 998"),
        ({"where": "1; DROP TABLE events"}, "err-where", "[audience] where"),
        ({"top_score": "uplift", "top_n": "many"}, "err-top_n", "whole number"),
        ({"variant_1_body": "{{ oops"}, "err-variant_1_body", "variant &#39;a&#39; template"),
        ({"name": "demo-uplift"}, "err-name", "exists"),
    ]
    for change, field, message in bad:
        r = admin.post("/campaigns/new", data={**base, **change})
        assert r.status_code == 422, (change, r.status_code)
        error = re.search(
            rf'<p class="field-error" id="{field}" role="alert">(.*?)</p>', r.text, re.S
        )
        assert error and message in error.group(1), (field, r.text[:300])
        assert "<script>alert(1)" not in r.text and "Traceback" not in r.text
    kept = admin.post(
        "/campaigns/new", data={**base, "name": "Bad Name", "description": "<i>kept</i>"}
    )
    assert 'value="&lt;i&gt;kept&lt;/i&gt;"' in kept.text, "what was typed stays in the form"

    made = admin.post(
        "/campaigns/new",
        data={**base, "name": "hostile", "description": "<script>alert(1)</script>",
              "variant_1_subject": HOSTILE_SUBJECT},
    )  # fmt: skip
    assert made.status_code == 303 and made.headers["location"] == "/campaigns/hostile"
    page = admin.get("/campaigns/hostile").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for path in ("/campaigns/..%2F..%2Fetc%2Fpasswd", "/campaigns/%27%3B%20DROP%20TABLE%20x"):
        r = admin.get(path)
        assert r.status_code == 404 and "Traceback" not in r.text

    token = csrf(page)
    r = admin.post("/campaigns/hostile/send", data={"csrf": token, "dry_run": "1"})
    assert r.status_code == 303 and r.headers["location"].startswith("/jobs/")
    job_id = r.headers["location"].rsplit("/", 1)[1]
    api = served.client("admin")
    deadline = time.monotonic() + 60
    while (job := api.get(f"/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["state"] == "succeeded" and job["params"]["dry_run"] is True
    assert admin.get("/campaigns/hostile").status_code == 200
    r = admin.post("/campaigns/demo-uplift/send", data={"csrf": token})
    assert r.status_code == 409, "sent already"
    assert admin.post("/campaigns/nope/send", data={"csrf": token}).status_code == 404
