"""The Models, Jobs and Quarantine pages in a real browser against the real server: every model
with its metrics and charts in both languages, activating another (admin only, with its CSRF
token), starting a job and watching it finish without a reload, a bad parameter named on the
form, unknown models and jobs as pages in the user's language, and quarantined rows — hostile
ones included — shown as text."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.api.conftest import Served
from tests.web.conftest import ARTIFACTS, Watched, charts_drawn, charts_overflowing, sign_in

BOTH = pytest.mark.parametrize(
    ("context", "lang"), [("en-US", "en"), ("zh-CN", "zh")], indirect=["context"]
)
HOSTILE = "<script>alert(1)</script>"


def _timed(w: Watched, url: str) -> Any:
    """Go to ``url``; print how long the page took to load (not asserted)."""
    started = time.perf_counter()
    response = w.page.goto(url)
    print(f"{url.split('/', 3)[-1]}: {(time.perf_counter() - started) * 1000:.0f} ms")
    return response


def _go(w: Watched, selector: str) -> None:
    """Click what leads to another page, and wait until that page has loaded."""
    with w.page.expect_navigation():
        w.page.click(selector)


def _unexpected(errors: list[str]) -> list[str]:
    """Console errors but the browser's note of the 404 and 422 pages the test asked for."""
    return [e for e in errors if not re.search(r"status of (404|422)", e)]


def _shot(w: Watched, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    w.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _session(served: Served, scope: str) -> tuple[httpx.Client, str]:
    """An HTTP client signed in with the key of ``scope``, and its session's CSRF token."""
    c = httpx.Client(base_url=served.url, follow_redirects=False, timeout=60)
    served.clients.append(c)
    assert c.post("/login", data={"key": served.keys[scope], "next": "/"}).status_code == 303
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/models").text)
    assert csrf
    return c, csrf.group(1)


@BOTH
def test_models_list_and_a_classifier_and_an_uplift_model_with_their_charts(
    served: Served, context: Any, lang: str
) -> None:
    zh = lang == "zh"
    w = Watched(context, served.url)
    sign_in(w, served, then="/models")
    _timed(w, served.url + "/models")
    text = w.page.inner_text("main")
    for word in (
        ["推荐模型", "购买倾向模型", "增益模型", "分群模型", "启用中", "轮廓系数"]
        if zh
        else ["Recommenders", "Purchase propensity", "Uplift", "Segmentations", "Active", "Qini"]
    ):
        assert word in text
    assert w.page.locator("tr[data-model='hybrid-1'] .adm-badge.on").count() == 1
    assert w.page.locator("tr[data-model='popularity-1'] .adm-badge.on").count() == 0
    assert w.page.locator("main button").count() == 0, "a read key sees no Activate button"
    _shot(w, f"models-{lang}")

    _go(w, "tr[data-model='propensity-1'] a")
    assert w.page.url.endswith("/models/propensity-1")
    text = w.page.inner_text("main")
    for word in (
        ["ROC 曲线", "累积增益", "校准曲线", "分类器对比", "测试集 ROC AUC"]
        if zh
        else [
            "ROC curve",
            "Cumulative gains",
            "Calibration",
            "Classifiers compared",
            "Test ROC AUC",
        ]
    ):
        assert word in text
    assert charts_drawn(w.page) == 3, "ROC, gains and calibration"
    assert charts_overflowing(w.page) == []
    _shot(w, f"model-propensity-{lang}")

    _timed(w, served.url + "/models/uplift-1")
    text = w.page.inner_text("main")
    assert ("Qini 曲线" if zh else "Qini curve") in text
    assert ("增益学习器对比" if zh else "Uplift learners compared") in text
    assert charts_drawn(w.page) == 2, "Qini and the targeting profit"
    assert charts_overflowing(w.page) == []
    _shot(w, f"model-uplift-{lang}")

    _timed(w, served.url + "/models/hybrid-1")
    assert charts_drawn(w.page) == 2, "ranking quality and coverage of the recommenders"
    assert ("推荐模型对比" if zh else "Recommenders compared") in w.page.inner_text("main")
    _timed(w, served.url + "/models/clv-1")
    assert charts_drawn(w.page) == 1
    _timed(w, served.url + "/models/behaviour-1")
    _go(w, "a[href='/segments?run=behaviour-1']")
    assert "/segments?run=behaviour-1" in w.page.url
    assert w.errors == [] and w.foreign == []

    for bad in ("nope", "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"):
        response = w.page.goto(served.url + "/models/" + bad)
        assert response is not None and response.status == 404
        alert = w.page.inner_text("[role=alert]")
        assert ("没有编号为" in alert) if zh else ("There is no model" in alert)
    assert "<img src=x onerror=alert(1)>" in alert, "shown as text"
    _go(w, "main a")
    assert w.page.url == served.url + "/models"
    assert _unexpected(w.errors) == [] and w.foreign == []


@pytest.mark.parametrize("context", ["en-US"], indirect=True)
def test_an_admin_activates_the_popularity_recommender_and_a_read_key_cannot(
    served: Served, context: Any
) -> None:
    w = Watched(context, served.url)
    sign_in(w, served, scope="admin", then="/models")
    popularity = "tr[data-model='popularity-1']"
    assert w.page.locator(f"{popularity} button").inner_text() == "Activate"
    _go(w, f"{popularity} button")
    assert w.page.url.startswith(served.url + "/models")
    assert w.page.locator(f"{popularity} .adm-badge.on").count() == 1, "the marker moved"
    assert w.page.locator("tr[data-model='hybrid-1'] .adm-badge.on").count() == 0
    assert w.page.locator("tr[data-model='hybrid-1'] button").count() == 1
    # The server serves the newly active model at once.
    body = served.client("read").get("/v1/users/u00000001/recommendations").json()
    assert body.get("model", "").startswith("popularity"), body
    # And back, from the model's own page.
    w.page.goto(served.url + "/models/hybrid-1")
    _go(w, "main form button.primary")
    assert w.page.url == served.url + "/models/hybrid-1"
    assert w.page.locator("main .adm-badge.on").count() == 1
    # A wide screen: three charts a row, each inside its card.
    w.page.set_viewport_size({"width": 1920, "height": 1080})
    w.page.goto(served.url + "/models/churn-1")
    assert charts_drawn(w.page) == 3 and charts_overflowing(w.page) == []
    _shot(w, "model-churn-en-1920")
    assert w.errors == [] and w.foreign == []

    reader, token = _session(served, "read")
    r = reader.post("/models/popularity-1/activate", data={"csrf": token})
    assert r.status_code == 403 and "admin" in r.text
    admin, token = _session(served, "admin")
    assert admin.post("/models/popularity-1/activate", data={}).status_code == 403
    assert (
        admin.post("/models/popularity-1/activate", data={"csrf": "x" + token}).status_code == 403
    )
    r = admin.post("/models/nope/activate", data={"csrf": token})
    assert r.status_code == 404
    anonymous = httpx.Client(base_url=served.url, follow_redirects=False, timeout=60)
    served.clients.append(anonymous)
    r = anonymous.post("/models/popularity-1/activate", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert anonymous.get("/models").status_code == 303
    registry = served.app.state.jingzhun.readers.get().models
    assert registry.active("recommender").model_id == "hybrid-1", "no refused POST changed it"


@BOTH
def test_start_a_job_watch_it_finish_and_a_bad_parameter_is_named_on_the_form(
    served: Served, context: Any, lang: str
) -> None:
    zh = lang == "zh"
    w = Watched(context, served.url)
    sign_in(w, served, scope="admin", then="/jobs")
    assert w.page.locator("form.adm-form").count() == 8, "one form per kind of job"
    # A bad parameter: the form comes back naming the field and why, the value kept.
    w.page.select_option("#segment_run-method", "rfm")
    w.page.fill("#segment_run-k", "-3")
    _go(w, "#start-segment_run button[type=submit]")
    error = w.page.inner_text("#start-segment_run .error")
    assert ("数量（k）：不能小于 2" if zh else "Number (k): must be at least 2") in error
    assert w.page.input_value("#segment_run-k") == "-3"
    assert w.page.input_value("#segment_run-method") == "rfm"
    assert w.page.locator("[role=alert]").count() == 1
    # A job started: the page follows it to the end without reloading.
    _go(w, "#start-profile_build button[type=submit]")
    assert re.search(r"/jobs/j[0-9T]+-[0-9a-f]+$", w.page.url)
    first = w.page.inner_text("#job-state")
    assert first in (["排队中", "运行中"] if zh else ["Queued", "Running"]), first
    w.page.evaluate("window.notReloaded = true")
    done = "已完成" if zh else "Succeeded"
    # A function, not an expression string: Playwright evaluates a string with eval(), which
    # the dashboard's CSP (no 'unsafe-eval') refuses.
    w.page.wait_for_function(
        "d => document.getElementById('job-state').textContent.includes(d)",
        arg=done,
        timeout=60_000,
    )
    assert w.page.evaluate("window.notReloaded") is True, "updated in place"
    w.page.wait_for_selector("#job-result")
    result = w.page.inner_text("#job-result")
    assert ("用户数" if zh else "Users") in result and "1,4" in result
    _shot(w, f"job-{lang}")
    _timed(w, served.url + "/jobs")
    history = w.page.inner_text("#history")
    assert ("构建用户画像" if zh else "Build profiles") in history and done in history
    _shot(w, f"jobs-{lang}")
    response = w.page.goto(served.url + "/jobs/j-nope")
    assert response is not None and response.status == 404
    alert = w.page.inner_text("[role=alert]")
    assert ("没有编号为" in alert) if zh else ("There is no job" in alert)
    assert _unexpected(w.errors) == [] and w.foreign == []


def test_job_forms_refuse_bad_input_and_non_admins(served: Served) -> None:
    admin, token = _session(served, "admin")
    cases = [
        ({"kind": "segment_run", "k": "abc"}, "Number (k): must be a whole number (or auto)"),
        ({"kind": "recommend_batch", "k": "0"}, "must be at least 1"),
        ({"kind": "profile_build", "as_of": "yesterday-ish"}, "As of: must be a date and time"),
        ({"kind": "recommend_train", "params": "nonsense"}, "write name=value pairs"),
        ({"kind": "predict_train", "target": "'; DROP TABLE users; --"}, "Target: must be one of"),
        ({"kind": "segment_run", "name": "x" * 10_000}, "at most 64 characters"),
    ]
    for fields, message in cases:
        r = admin.post("/jobs", data={"csrf": token, **fields})
        assert r.status_code == 422, fields
        assert message in r.text.replace("&#39;", "'"), (fields, message)
        assert "Traceback" not in r.text
    r = admin.post("/jobs", data={"csrf": token, "kind": HOSTILE})
    assert r.status_code == 422 and HOSTILE not in r.text
    assert admin.post("/jobs", data={"kind": "profile_build"}).status_code == 403
    reader, token = _session(served, "read")
    assert reader.post("/jobs", data={"csrf": token, "kind": "profile_build"}).status_code == 403
    assert "adm-form" not in reader.get("/jobs").text, "no forms for a read key"
    assert served.app.state.jingzhun.jobs.list() == [], "nothing was started"
    r = reader.get("/jobs/nope.json")
    assert r.status_code == 404
    # A job started over the API is there for the page, with the same data as /v1/jobs.
    job = served.client("admin").post("/v1/jobs", json={"kind": "segment_run", "params": {
        "method": "rfm", "name": "web"}}).json()  # fmt: skip
    for _ in range(100):
        mine = reader.get(f"/jobs/{job['job_id']}.json").json()
        if mine["state"] == "succeeded":
            break
        time.sleep(0.1)
    assert mine == served.client("admin").get(f"/v1/jobs/{job['job_id']}").json()
    page = reader.get(f"/jobs/{job['job_id']}").text
    assert 'href="/segments?run=web-1"' in page, "the run it made, linked"


def _quarantine_some(served: Served) -> None:
    """Bad users through the API: hostile text kept in the quarantine."""
    users = [
        {"user_id": HOSTILE, "birth_year": 1800},
        {"user_id": "'; DROP TABLE users; --", "birth_year": 1801, "city": "x" * 10_000},
        {"user_id": "../../etc/passwd", "birth_year": 1802, "city": '"quoted" & <b>bold</b>'},
    ]
    r = served.client("ingest").post("/v1/users", json={"users": users})
    assert r.status_code == 200 and r.json()["quarantined"] == 3, r.text


@BOTH
def test_quarantine_shows_bad_rows_escaped_and_is_linked_from_the_overview(
    served: Served, context: Any, lang: str
) -> None:
    zh = lang == "zh"
    _quarantine_some(served)
    w = Watched(context, served.url)
    dialogs: list[str] = []
    w.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(w, served)
    _go(w, "#quarantine-link")
    assert w.page.url == served.url + "/quarantine"
    text = w.page.inner_text("main")
    assert ("按原因统计的待处理行" if zh else "Open rows by reason") in text
    assert "birth_year: … is below 1900" in text
    _go(w, "#reasons tr:has-text('birth_year') a")
    rows = w.page.inner_text("#rows")
    assert HOSTILE in rows and "'; DROP TABLE users; --" in rows and "../../etc/passwd" in rows
    assert '"quoted" & <b>bold</b>' in rows
    assert "x" * 79 + "… (10,000)" in rows, "a long value is cut"
    assert w.page.locator("#rows b").count() == 0 and dialogs == [], "text, not markup"
    assert w.page.locator("#rows button").count() == 0, "a read key cannot replay or discard"
    _shot(w, f"quarantine-{lang}")
    w.page.goto(served.url + "/quarantine?reason=%3Cscript%3E&kind=..%2F..%2F&after=abc&shown=-1")
    assert ("没有此原因" if zh else "No open row has this reason") in w.page.inner_text("#rows")
    assert w.errors == [] and w.foreign == [] and dialogs == []


@pytest.mark.parametrize("context", ["en-US"], indirect=True)
def test_an_admin_discards_a_reason_s_rows(served: Served, context: Any) -> None:
    _quarantine_some(served)
    reader, token = _session(served, "read")
    fields = {"csrf": token, "kind": "users", "reason": "birth_year: … is below 1900"}
    assert reader.post("/quarantine/discard", data=fields).status_code == 403
    w = Watched(context, served.url)
    sign_in(w, served, scope="admin", then="/quarantine")
    _go(w, "#reasons tr:has-text('birth_year') a")
    shown = w.page.locator("#rows tbody tr").count()
    _go(w, "#rows button.adm-danger")
    assert f"Discarded {shown} rows." in w.page.inner_text("[role=status]")
    assert "birth_year" not in w.page.inner_text("#reasons")
    assert w.errors == [] and w.foreign == []
