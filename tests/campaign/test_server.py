"""Campaigns through the real server: build and send with the admin API, then the links in the
messages — open pixel, signed click redirect, one-click unsubscribe — from a mail client's
side, and a later campaign that respects the unsubscribe and the frequency cap."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import httpx

from jingzhun.config import Settings
from jingzhun.workspace import Workspace
from tests.api.conftest import Served, wait_job
from tests.campaign.conftest import BASE_URL, Smtp, settings_for

SPEC = {
    "name": "spring",
    "channel": "email",
    "audience": {"where": "frequency >= 2"},
    "control": {"share": 0.3},
    "variants": [
        {
            "name": "a",
            "subject": "Hi {{ first_name }}",
            "format": "html",
            "body": "<p>Hello {{ first_name }}</p><p><a href='https://shop.example/sale'>Sale</a></p>"
            "<p><a href='{{ unsubscribe_url }}'>Unsubscribe</a></p>",
        }
    ],
}


def local(url: str, served: Served) -> str:
    """A link from a message, pointed at the test's server instead of [tracking] base_url."""
    assert url.startswith(BASE_URL)
    return served.url + url[len(BASE_URL) :]


def test_build_send_track_unsubscribe_and_respect_it(
    campaign_template: Path, tmp_path: Path, smtp: Smtp, server: Callable[..., Served]
) -> None:
    db = tmp_path / "store.duckdb"
    shutil.copyfile(campaign_template, db)
    served = server(db, settings=settings_for(smtp.port))
    admin = served.client("admin")
    assert served.client("read").get("/v1/campaigns").status_code == 403

    # the builder's live size, then the campaign
    size = admin.post("/v1/campaigns/audience", json=SPEC)
    assert size.status_code == 200, size.text
    drawn = size.json()
    assert drawn["members"] == drawn["treatment"] + drawn["control"] > 50
    bad = admin.post("/v1/campaigns/audience", json={**SPEC, "audience": {"where": "frequncy > 1"}})
    assert bad.status_code == 422 and "did you mean 'frequency'" in bad.json()["detail"]
    made = admin.post("/v1/campaigns", json=SPEC)
    assert made.status_code == 201 and made.json()["state"] == "draft"
    assert admin.post("/v1/campaigns", json=SPEC).status_code == 409
    assert [c["name"] for c in admin.get("/v1/campaigns").json()["items"]] == ["spring"]
    preview = admin.get("/v1/campaigns/spring/preview", params={"sample": 2}).json()
    assert len(preview["samples"]) == 2 and preview["samples"][0]["html"].startswith("<p>Hello")
    assert admin.get("/v1/campaigns/nope").status_code == 404

    # sending is a job
    job = admin.post("/v1/campaigns/spring/send")
    assert job.status_code == 202
    done = wait_job(admin, job.json()["job_id"], timeout=120)
    assert done["state"] == "succeeded", done["error"]
    sent = done["result"]["counts"]["sent"]
    assert sent == drawn["treatment"] == len(smtp.sink.messages)
    shown = admin.get("/v1/campaigns/spring").json()
    assert shown["state"] == "sent" and shown["counts"]["sent"] == sent

    # a mail client's side: the links of one message, no API key
    client = httpx.Client(timeout=30)
    msg = smtp.sink.parsed()[0]
    html = msg.get_body(("html",)).get_content()
    unsubscribe = msg["List-Unsubscribe"].split(",")[0].strip(" <>")
    user = dict(p.split("=") for p in urlparse(unsubscribe).query.split("&"))["u"]
    pixel = html.split('<img src="')[1].split('"')[0].replace("&amp;", "&")
    hrefs = [h.replace("&amp;", "&") for h in re.findall(r"href=[\"']([^\"']+)", html)]
    click = next(h for h in hrefs if "/t/c/" in h)
    assert unsubscribe in hrefs  # the unsubscribe link is not turned into a redirect
    got = client.get(local(pixel, served))
    assert got.status_code == 200 and got.headers["content-type"] == "image/gif"
    redirect = client.get(local(click, served), follow_redirects=False)
    assert (
        redirect.status_code == 302 and redirect.headers["location"] == "https://shop.example/sale"
    )
    forged = client.get(local(click, served).replace("sale", "evil"), follow_redirects=False)
    assert forged.status_code == 404 and "location" not in forged.headers
    other = client.get(local(unsubscribe, served).replace(f"u={user}", "u=someone-else"))
    assert other.status_code == 404

    # unsubscribe: a GET only asks (in the reader's language); the one-click POST does it
    page = client.get(local(unsubscribe, served), headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert page.status_code == 200 and "退订" in page.text
    post = client.post(
        local(unsubscribe, served),
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert post.status_code == 200 and "unsubscribed" in post.text

    # opens and clicks are events of the campaign; a later campaign leaves the user out
    served.stop()
    with Workspace.open(db) as ws:
        events = dict(
            ws.store.rows(
                "SELECT event, count(*) FROM events WHERE campaign_id = 'spring' AND user_id = ? GROUP BY 1",
                [user],
            )
        )
        assert events == {"email_opened": 1, "email_clicked": 1}
        # The users file's opt-in (GRANTED on any channel), then the unsubscribe's withdrawal.
        said = ws.store.rows(
            "SELECT channel, status, split_part(source, ':', 1) FROM consents "
            "WHERE user_id = ? ORDER BY ts",
            [user],
        )
        assert said == [("any", "GRANTED", "users"), ("email", "REVOKED", "unsubscribe")]
        ws.settings = settings_for(smtp.port)
        later = {**SPEC, "name": "summer", "exclude": {"frequency_cap": {"messages": 1, "days": 7}}}
        ws.campaigns.create(later)
        d = ws.campaigns.audience(later)
        steps = {s["step"]: s for s in d.to_dict()["steps"]}
        assert steps["no_consent"]["removed"] == drawn["steps"][0]["removed"] + 1
        # everyone spring reached (less the one who left) hits the cap of one message a week
        assert steps["frequency_cap_1_in_7_days"]["removed"] == sent - 1
        report = ws.evaluate.campaign("spring")
        assert report.funnel["opened"] == 1 and report.funnel["unsubscribed"] == 1


def test_links_with_a_bad_signature_change_nothing(
    campaign_template: Path, tmp_path: Path, server: Callable[..., Served]
) -> None:
    db = tmp_path / "store.duckdb"
    shutil.copyfile(campaign_template, db)
    served = server(db, settings=Settings())
    client = httpx.Client(timeout=30)
    for path in ("/t/o/spring?u=u1&s=AAAA", "/t/u/spring?u=u1&s=AAAA"):
        client.get(served.url + path)
    assert (
        client.post(
            served.url + "/t/u/spring?u=u1&s=AAAA", content="List-Unsubscribe=One-Click"
        ).status_code
        == 404
    )
    assert (
        client.get(served.url + "/t/c/spring?u=u1&s=AAAA&to=https://evil.example").status_code
        == 404
    )
    assert client.get(served.url + "/t/u/Bad%20Name?u=u1&s=x").status_code == 422
    served.stop()
    with Workspace.open(db) as ws:
        assert ws.store.scalar("SELECT count(*) FROM consents WHERE source LIKE 'unsub%'") == 0
        assert ws.store.scalar("SELECT count(*) FROM events WHERE campaign_id = 'spring'") == 0


def test_the_server_runs_triggered_campaigns_on_its_clock(
    campaign_template: Path, tmp_path: Path, smtp: Smtp, server: Callable[..., Served]
) -> None:
    db = tmp_path / "store.duckdb"
    shutil.copyfile(campaign_template, db)
    with Workspace.open(db) as ws:
        # every user who viewed a product in the last day of the shop and did not buy since
        ws.campaigns.create(
            {
                "name": "browse",
                "channel": "email",
                "trigger": {
                    "event": "product_viewed",
                    "without": "order_completed",
                    "after_minutes": 0,
                    "lookback_hours": 48,
                },
                "variants": [
                    {"name": "a", "subject": "Still looking?", "body": "{{ unsubscribe_url }}"}
                ],
            }
        )
    settings = settings_for(smtp.port)
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"trigger_seconds": 0.2})}
    )
    served = server(db, settings=settings)
    deadline = time.monotonic() + 60
    while not smtp.sink.messages and time.monotonic() < deadline:
        time.sleep(0.1)
    served.stop()
    with Workspace.open(db) as ws:
        sent = ws.store.scalar(
            "SELECT count(*) FROM deliveries WHERE campaign = 'browse' AND state = 'sent'"
        )
    assert sent == len(smtp.sink.messages) > 0
