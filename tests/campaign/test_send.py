"""Sending through a real SMTP server on 127.0.0.1 (aiosmtpd): exactly the treatment arm, with
the headers bulk senders need, retries, bounces, failures that leave nothing half-done, and a
send killed with SIGKILL and run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jingzhun.campaign.channels.email import Unreachable, message_id
from jingzhun.campaign.consent import address_hash
from jingzhun.campaign.delivery import CHUNK
from jingzhun.campaign.links import tracking_key, verify
from jingzhun.errors import InputError
from jingzhun.ingest.read import contacts
from jingzhun.workspace import Workspace
from tests.campaign.conftest import BASE_URL, Smtp, free_port, settings_for


def treatment(ws: Workspace, name: str = "spring") -> dict[str, str]:
    """user_id -> email of the campaign's treatment members."""
    members = [
        u
        for (u,) in ws.store.rows(
            "SELECT user_id FROM campaign_members WHERE campaign = ? AND arm = 'treatment'", [name]
        )
    ]
    people = contacts(ws.store, members, ["email"])  # the vault decrypts them
    return {u: e.strip() for u, e in zip(people["user_id"], people["email"], strict=True) if e}


def test_each_treatment_member_gets_one_message_with_the_bulk_sender_headers(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path], smtp: Smtp
) -> None:
    ws = open_ws(settings_for(smtp.port))
    ws.campaigns.create(spec_file())
    result = ws.campaigns.send("spring")
    members = treatment(ws)
    assert result.snapshot and result.error is None
    assert result.counts["sent"] == len(members) == result.attempted > 100
    assert result.counts["queued"] == result.counts["sending"] == 0
    got = smtp.sink.by_recipient()
    assert set(got) == set(members.values())  # the control group and the excluded get nothing
    assert all(len(m) == 1 for m in got.values())
    key = tracking_key(ws.store, ws.settings.tracking)
    ids = dict(
        ws.store.rows(
            "SELECT user_id, message_id FROM deliveries WHERE campaign = 'spring' AND state = 'sent'"
        )
    )
    by_address = {v: k for k, v in members.items()}
    variants = dict(
        ws.store.rows("SELECT user_id, variant FROM campaign_members WHERE campaign = 'spring'")
    )
    for address, (msg,) in got.items():
        user = by_address[address]
        assert msg["From"] == "Shop News <news@shop.example>" and msg["To"] == address
        assert msg["Date"] and msg["Subject"]
        assert msg["Message-ID"] == ids[user] == message_id("spring", user, "email", "shop.example")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https, mailto = (p.strip(" <>") for p in msg["List-Unsubscribe"].split(","))
        assert mailto == "mailto:news@shop.example?subject=unsubscribe"
        url = urlparse(https)
        assert f"{url.scheme}://{url.netloc}" == BASE_URL and url.path == "/t/u/spring"
        q = parse_qs(url.query)
        assert q["u"] == [user] and verify(key, q["s"][0], "u", "spring", user)
        assert not verify(key, q["s"][0], "u", "spring", "someone-else")
        text = msg.get_body(("plain",)).get_content()
        if variants[user] == "a":  # the HTML variant: both parts, links tracked, a pixel
            html = msg.get_body(("html",)).get_content()
            assert "Hello" in text and "https://shop.example/p/" in text
            clicks = [p for p in html.split('href="')[1:] if p.startswith(f"{BASE_URL}/t/c/")]
            assert clicks, "product links go through the signed redirect"
            link = urlparse(clicks[0].split('"')[0].replace("&amp;", "&"))
            cq = parse_qs(link.query)
            assert verify(key, cq["s"][0], "c", "spring", user, cq["to"][0])
            assert cq["to"][0].startswith("https://shop.example/p/")
            assert f"{BASE_URL}/t/o/spring?u=" in html  # the open pixel
            assert f'href="{https.replace("&", "&amp;")}"' in html  # unsubscribe: not a redirect
        else:
            assert msg.get_body(("html",)) is None and f"Unsubscribe: {https}" in text
    # Run again: nothing left to send, nothing sent twice.
    again = ws.campaigns.send("spring")
    assert again.attempted == 0 and not again.snapshot and again.counts == result.counts
    assert len(smtp.sink.messages) == len(members)
    info = ws.campaigns.get("spring")
    assert info.state == "sent" and info.sent_at is not None


def test_the_snapshot_records_who_got_what(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path], smtp: Smtp
) -> None:
    ws = open_ws(settings_for(smtp.port))
    ws.campaigns.create(spec_file(control='share = 0.25\nstratify = "rfm"'))
    result = ws.campaigns.send("spring")
    m = ws.campaigns.members("spring")
    assert len(m) == result.counts["sent"] + result.counts["control"]
    assert set(m["arm"]) == {"treatment", "control"} and m["segment"].notna().all()
    stored = ws.sql(
        "SELECT user_id, recommendations FROM campaign_members WHERE campaign = 'spring'"
    )
    recs = ws.sql(
        "SELECT user_id, item_id FROM recommendations WHERE rank <= 3 ORDER BY user_id, rank"
    )
    expected = recs.groupby("user_id")["item_id"].apply(list).to_dict()
    import json

    for user, items in stored.itertuples(index=False):
        assert json.loads(items) == expected.get(user, [])
    # Every matched user has a delivery row saying what happened to them.
    total = ws.store.scalar("SELECT count(*) FROM deliveries WHERE campaign = 'spring'")
    preview = ws.campaigns.preview("spring", sample=0)
    assert total == preview.audience["matched"]
    reasons = dict(
        ws.store.rows("SELECT reason, count(*) FROM deliveries WHERE state = 'excluded' GROUP BY 1")
    )
    assert reasons == {"no_consent": preview.audience["steps"][0]["removed"]}


def test_a_deferred_recipient_is_retried_and_a_refused_one_suppressed(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path], smtp: Smtp
) -> None:
    ws = open_ws(settings_for(smtp.port, retries=3))
    ws.campaigns.create(spec_file())
    ws.campaigns.send("spring", dry_run=True)
    # Who will be in treatment is known from a dry run's draw; pick two of them.
    from jingzhun.campaign.audience import AUDIENCE

    users = [
        u
        for (u,) in ws.store.rows(
            f"SELECT user_id FROM {AUDIENCE} WHERE arm = 'treatment' ORDER BY user_id LIMIT 2"
        )
    ]
    people = contacts(ws.store, users, ["email"])
    emails = {u: e.strip() for u, e in zip(people["user_id"], people["email"], strict=True)}
    smtp.sink.defer[emails[users[0]]] = 2
    smtp.sink.refuse.add(emails[users[1]])
    result = ws.campaigns.send("spring")
    rows = {
        r[0]: r[1:]
        for r in ws.store.rows(
            "SELECT user_id, state, tries, reason, answer FROM deliveries WHERE user_id IN (?, ?) AND campaign = 'spring'",
            users,
        )
    }
    assert rows[users[0]][:2] == ("sent", 3)
    state, tries, reason, _answer = rows[users[1]]
    assert state == "failed" and tries == 1 and reason.startswith("hard bounce: 550")
    assert result.counts["failed"] == 1
    assert emails[users[0]] in smtp.sink.by_recipient()
    assert emails[users[1]] not in smtp.sink.by_recipient()
    hashed = ws.store.rows("SELECT address_hash, user_id, reason, source FROM suppressions")
    assert hashed == [(address_hash(emails[users[1]]), users[1], "hard_bounce", "spring")]
    # The next campaign leaves the bounced address out.
    ws.campaigns.create(spec_file(name="autumn"))
    ws.campaigns.send("autumn")
    state = ws.store.scalar(
        "SELECT state FROM deliveries WHERE campaign = 'autumn' AND user_id = ?", [users[1]]
    )
    assert state == "suppressed"


def test_an_unreachable_server_fails_before_anything_is_written(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path]
) -> None:
    ws = open_ws(settings_for(free_port(), retries=0))
    ws.campaigns.create(spec_file())
    with pytest.raises(Unreachable, match=r"\[email\] cannot reach the SMTP server 127.0.0.1:\d+"):
        ws.campaigns.send("spring")
    assert ws.store.count("deliveries") == ws.store.count("campaign_members") == 0
    assert ws.campaigns.get("spring").state == "draft"


def test_a_template_failing_for_one_member_fails_before_anything_is_sent(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path], smtp: Smtp, tmp_path: Path
) -> None:
    ws = open_ws(settings_for(smtp.port))
    path = spec_file()
    # Only members with four or more recommendations reach the bad line; some have fewer.
    (tmp_path / "b.txt").write_text(
        "{% if recommendations|length > 2 %}{{ recommendations[2].no_such_field }}{% endif %}"
    )
    ws.campaigns.create(path)
    with pytest.raises(InputError, match=r"variant 'b' template line 1 for user '\w+'"):
        ws.campaigns.send("spring")
    with pytest.raises(InputError, match="no_such_field"):
        ws.campaigns.preview("spring")
    with pytest.raises(InputError, match="no_such_field"):
        ws.campaigns.preview("spring", sample=0)  # the check runs whatever the sample
    # Without it (the dashboard's page) only the samples are rendered: none here, no error.
    assert ws.campaigns.preview("spring", sample=0, check=False).samples == []
    assert smtp.sink.messages == [] and ws.store.count("deliveries") == 0


def test_an_empty_audience_is_an_error_naming_it(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path], smtp: Smtp
) -> None:
    ws = open_ws(settings_for(smtp.port))
    ws.campaigns.create(spec_file(audience='where = "frequency > 1000000"'))
    with pytest.raises(InputError, match=r"the audience is empty after exclusions \(0 matched"):
        ws.campaigns.send("spring")
    assert ws.store.count("deliveries") == 0


def test_a_server_lost_midway_leaves_the_rest_queued_for_the_next_run(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path], smtp: Smtp
) -> None:
    ws = open_ws(settings_for(smtp.port, retries=1, connections=2))
    ws.campaigns.create(spec_file())
    smtp.sink.delay = 0.002

    def stop_after(n: int) -> None:
        while len(smtp.sink.messages) < n:
            time.sleep(0.005)
        smtp.controller.stop()

    killer = threading.Thread(target=stop_after, args=(150,))
    killer.start()
    first = ws.campaigns.send("spring")
    killer.join()
    assert first.error and "cannot reach the SMTP server" in first.error
    c = first.counts
    assert c["sent"] >= 150 and c["queued"] > 0 and c["sending"] == 0
    assert c["sent"] == len({r for rcpts, _ in smtp.sink.messages for r in rcpts})
    smtp.sink.delay = 0
    smtp.controller = Controller(smtp.sink, hostname="127.0.0.1", port=smtp.port)
    smtp.controller.start()
    second = ws.campaigns.send("spring")
    assert second.error is None and second.counts["queued"] == 0
    got = smtp.sink.by_recipient()
    assert set(got) == set(treatment(ws).values()) and all(len(v) == 1 for v in got.values())


def test_dkim_signs_the_unsubscribe_headers(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path], smtp: Smtp, tmp_path: Path
) -> None:
    import dkim

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "dkim.pem").write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    settings = settings_for(
        smtp.port,
        dkim_key_file=str(tmp_path / "dkim.pem"),
        dkim_selector="jz",
        dkim_domain="shop.example",
    )
    ws = open_ws(settings)
    ws.campaigns.create(
        spec_file(audience='where = "frequency >= 1"\ntop = {score = "uplift", n = 10}')
    )
    ws.campaigns.send("spring")
    assert smtp.sink.messages
    for _, raw in smtp.sink.messages:
        assert dkim.verify(
            raw,
            dnsfunc=lambda name, timeout=5: (
                record if name == b"jz._domainkey.shop.example." else None
            ),
        )
        header = raw.split(b"DKIM-Signature:", 1)[1].split(b"\r\n\r\n", 1)[0]
        signed = (
            header.split(b"h=", 1)[1]
            .split(b";", 1)[0]
            .replace(b"\r\n", b"")
            .replace(b" ", b"")
            .lower()
        )
        assert b"list-unsubscribe" in signed.split(
            b":"
        ) and b"list-unsubscribe-post" in signed.split(b":")


@pytest.mark.slow
def test_a_send_killed_with_sigkill_resumes_and_nobody_is_counted_twice(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path], smtp: Smtp, tmp_path: Path
) -> None:
    ws = open_ws(settings_for(smtp.port))
    ws.campaigns.create(spec_file())
    db = ws.store.path
    ws.close()
    config = tmp_path / "jingzhun.toml"
    config.write_text(
        f'[email]\nport = {smtp.port}\nfrom = "news@shop.example"\nrate_per_second = 100000\n'
        f'connections = 2\n[tracking]\nbase_url = "{BASE_URL}"\n',
        encoding="utf-8",
    )
    smtp.sink.delay = 0.004
    env = {**os.environ, "JINGZHUN_CONFIG": str(config)}
    args = [
        sys.executable,
        "-m",
        "jingzhun",
        "--db",
        str(db),
        "campaign",
        "send",
        "spring",
        "--json",
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(smtp.sink.messages) < 200 and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    received_at_kill = len(smtp.sink.messages)
    assert received_at_kill >= 200
    with Workspace.open(db) as after:
        states = dict(
            after.store.rows(
                "SELECT state, count(*) FROM deliveries WHERE campaign = 'spring' GROUP BY 1"
            )
        )
        in_doubt = {
            u for (u,) in after.store.rows("SELECT user_id FROM deliveries WHERE state = 'sending'")
        }
        members = treatment(after)
    assert states.get("queued", 0) + states.get("sending", 0) > 0, "the kill came after the end"
    # at most two chunks are in doubt: the one going out and the next, handed over meanwhile
    assert len(in_doubt) <= 2 * CHUNK
    smtp.sink.delay = 0
    done = subprocess.run(args, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = smtp.sink.by_recipient()
    by_address = {v: k for k, v in members.items()}
    # Every member reached; only a message in doubt at the kill may have arrived twice, and it
    # carries the same Message-ID both times (receivers deduplicate on it).
    assert set(got) == set(members.values())
    twice = {by_address[a] for a, msgs in got.items() if len(msgs) > 1}
    assert twice <= in_doubt
    for msgs in got.values():
        assert len({m["Message-ID"] for m in msgs}) == 1
    with Workspace.open(db) as final:
        assert dict(
            final.store.rows(
                "SELECT state, count(*) FROM deliveries WHERE campaign = 'spring' AND state IN ('queued', 'sending', 'sent') GROUP BY 1"
            )
        ) == {"sent": len(members)}


def test_consent_withdrawn_after_the_snapshot_is_asked_again_before_sending(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path], smtp: Smtp
) -> None:
    """The audience is drawn with consent; a member who revokes (or whose channel is denied)
    between the snapshot and the send gets nothing, and their delivery says why."""
    from datetime import datetime

    from jingzhun.campaign.audience import draw
    from jingzhun.campaign.delivery import write_snapshot
    from jingzhun.ingest.consent import record

    ws = open_ws(settings_for(smtp.port))
    ws.campaigns.create(spec_file())
    spec = ws.campaigns.spec("spring")
    drawn = draw(ws.store, spec, consent_default="DENIED")
    write_snapshot(ws.store, spec, drawn, domain="localhost")  # what a send's first step does
    members = treatment(ws)
    assert ws.store.scalar("SELECT count(*) FROM deliveries WHERE state = 'queued'") == len(members)
    ids = sorted(members)
    later = datetime(2100, 1, 1)
    for user, channel, status in ((ids[0], "email", "REVOKED"), (ids[1], "any", "DENIED")):
        record(
            ws.store,
            user,
            purpose="marketing",
            channel=channel,
            status=status,
            source="t",
            ts=later,
        )
    # A statement about another channel or purpose changes nothing for email marketing.
    record(
        ws.store, ids[2], purpose="marketing", channel="sms", status="REVOKED", source="t", ts=later
    )
    record(
        ws.store, ids[3], purpose="analytics", channel="any", status="DENIED", source="t", ts=later
    )
    result = ws.campaigns.send("spring")
    got = smtp.sink.by_recipient()
    assert set(got) == {members[u] for u in ids[2:]}
    assert result.counts["sent"] == len(ids) - 2 and result.counts["suppressed"] >= 2
    said = dict(
        ws.store.rows(
            "SELECT user_id, state || ':' || reason FROM deliveries WHERE user_id IN (?, ?) "
            "AND campaign = 'spring'",
            ids[:2],
        )
    )
    assert said == {ids[0]: "suppressed:no_consent", ids[1]: "suppressed:no_consent"}
