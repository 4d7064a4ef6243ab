"""Audiences: conditions, exclusions in order, ranking and the randomized arms, checked against
an independent computation on the same store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jingzhun.campaign import consent
from jingzhun.campaign.audience import AUDIENCE, campaign_now, draw
from jingzhun.campaign.spec import load_spec
from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest.consent import record
from jingzhun.ingest.read import contacts
from jingzhun.workspace import Workspace


def drawn(ws: Workspace) -> pd.DataFrame:
    return ws.store.sql(f"SELECT * FROM {AUDIENCE} ORDER BY user_id").df()


def opted_in(ws: Workspace) -> set[str]:
    users = ws.sql("SELECT user_id, attributes FROM users")
    flag = users["attributes"].map(
        lambda a: '"marketing_opt_in":true' in (a or "").replace(" ", "")
    )
    return set(users.loc[flag, "user_id"])


def test_steps_match_an_independent_count(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path]
) -> None:
    ws = open_ws()
    spec = load_spec(spec_file(extra="[exclude]\nbought_within_days = 14\n"))
    now = campaign_now(ws.store, None)
    d = draw(ws.store, spec, consent_default="DENIED")
    profiles = ws.sql("SELECT user_id, frequency FROM profiles")
    matched = set(profiles.loc[profiles["frequency"] >= 1, "user_id"])
    assert d.matched == len(matched)
    consenting = matched & opted_in(ws)
    assert [s.step for s in d.steps] == [
        "no_consent",
        "no_address",
        "suppressed",
        "bought_within_14_days",
    ]
    assert d.steps[0].remaining == len(consenting)
    people = contacts(ws.store, ws.sql("SELECT user_id FROM pii")["user_id"].tolist(), ["email"])
    with_email = set(people.loc[people["email"].fillna("").str.strip() != "", "user_id"])
    assert d.steps[1].remaining == len(consenting & with_email)
    orders = ws.sql("SELECT user_id, ts FROM stitched_events WHERE event = 'order_completed'")
    recent = set(
        orders.loc[(orders["ts"] >= now - timedelta(days=14)) & (orders["ts"] < now), "user_id"]
    )
    assert d.steps[3].removed == len(consenting & with_email & recent) > 0
    assert d.members == len((consenting & with_email) - recent)
    a = drawn(ws)
    kept = a[a["excluded"].isna()]
    assert set(kept["user_id"]) == (consenting & with_email) - recent
    assert d.treatment + d.control == d.members == len(kept)
    assert set(a["excluded"].dropna()) == {"no_consent", "bought_within_14_days"}


def test_arms_are_deterministic_and_near_their_share(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path]
) -> None:
    ws = open_ws()
    spec = load_spec(spec_file())
    first = draw(ws.store, spec, consent_default="DENIED")
    arms = drawn(ws)[["user_id", "arm", "variant"]]
    again = draw(ws.store, spec, consent_default="DENIED")
    assert (first.treatment, first.control) == (again.treatment, again.control)
    pd.testing.assert_frame_equal(arms, drawn(ws)[["user_id", "arm", "variant"]])
    n = first.members
    # Bernoulli(0.25) per member: within 4 standard deviations.
    assert abs(first.control - 0.25 * n) < 4 * np.sqrt(n * 0.25 * 0.75)
    variants = {r["variant"]: r["treatment"] + r["control"] for r in first.by_variant}
    assert set(variants) == {"a", "b"} and abs(variants["a"] - n / 2) < 4 * np.sqrt(n / 4)


def test_stratified_control_holds_out_the_share_of_every_segment(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path]
) -> None:
    ws = open_ws()
    spec = load_spec(spec_file(control='share = 0.25\nstratify = "rfm"'))
    d = draw(ws.store, spec, consent_default="DENIED")
    a = drawn(ws)
    kept = a[a["excluded"].isna()]
    segments = ws.sql("SELECT user_id, segment FROM segment_members")
    merged = kept.merge(segments, on="user_id", how="left", suffixes=("", "_true"))
    assert (merged["segment"].fillna("(none)") == merged["segment_true"].fillna("(none)")).all()
    for stratum, rows in kept.groupby("stratum"):
        assert (rows["arm"] == "control").sum() == round(0.25 * len(rows)), stratum
    assert len(d.by_segment) > 5


def test_frequency_cap_counts_other_campaigns_sends(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path]
) -> None:
    ws = open_ws()
    spec = load_spec(spec_file(extra="[exclude]\nfrequency_cap = {messages = 2, days = 7}\n"))
    d0 = draw(ws.store, spec, consent_default="DENIED")
    members = drawn(ws).query("excluded.isna()")["user_id"].tolist()[:30]
    now = campaign_now(ws.store, None)
    rows = []
    for i, u in enumerate(members):
        sends = 2 if i < 10 else 1  # ten reach the cap; twenty do not
        for k in range(sends):
            rows.append((f"old-{k}", u, "email", "sent", now - timedelta(days=1 + k)))
    # A send eight days ago is outside the window and does not count.
    rows.append(("old-9", members[20], "email", "sent", now - timedelta(days=8)))
    rows.append(("old-8", members[20], "email", "sent", now - timedelta(days=8)))
    ws.store.con.executemany(
        "INSERT INTO deliveries VALUES (?, ?, ?, ?, NULL, 1, NULL, NULL, ?, now())", rows
    )
    d = draw(ws.store, spec, consent_default="DENIED")
    assert d.steps[-1].step == "frequency_cap_2_in_7_days"
    assert d.steps[-1].removed == 10
    assert d.members == d0.members - 10


def test_consent_history_and_suppressions_are_respected(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path]
) -> None:
    ws = open_ws()
    spec = load_spec(spec_file())
    draw(ws.store, spec, consent_default="DENIED")
    a = drawn(ws)
    members = a[a["excluded"].isna()]["user_id"].tolist()
    refused = a[a["excluded"] == "no_consent"]["user_id"].tolist()
    now = datetime(2030, 1, 1)
    record(
        ws.store,
        members[0],
        purpose="marketing",
        channel="email",
        status="REVOKED",
        source="unsubscribe:x",
        ts=now,
    )
    ws.store.run(
        "INSERT INTO consents VALUES (?, 'marketing', 'email', 'GRANTED', ?, 'api')",
        [refused[0], now],
    )
    email = contacts(ws.store, [members[1]], ["email"])["email"][0]
    added = consent.suppress(
        ws.store,
        [(f"  {email.upper()} ", None)],
        channel="email",
        reason="hard_bounce",
        source="t",
        now=now,
    )
    assert added == 1
    draw(ws.store, spec, consent_default="DENIED")
    b = drawn(ws).set_index("user_id")["excluded"]
    assert b[members[0]] == "no_consent"
    assert pd.isna(b[refused[0]])
    assert b[members[1]] == "suppressed"


def test_top_keeps_the_highest_scores_among_the_eligible(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path]
) -> None:
    ws = open_ws()
    spec = load_spec(
        spec_file(audience='where = "frequency >= 1"\ntop = {score = "uplift", n = 100}')
    )
    d = draw(ws.store, spec, consent_default="DENIED")
    assert d.members == 100 and d.steps[-1].step == "top 100 by uplift"
    a = drawn(ws)
    kept = a[a["excluded"].isna()]
    scores = ws.sql("SELECT user_id, value FROM scores WHERE score = 'uplift'").set_index(
        "user_id"
    )["value"]
    eligible = a[a["excluded"].isna() | (a["excluded"] == "below_top")]["user_id"]
    best = scores.reindex(eligible).sort_values(ascending=False)
    assert kept["score"].min() >= best.iloc[100]
    np.testing.assert_allclose(np.sort(kept["score"])[::-1], best.iloc[:100].to_numpy())


@pytest.mark.parametrize(
    ("audience", "error", "message"),
    [
        (
            'segment = "rfm:Nobody"',
            NotFoundError,
            "[audience] segment: run rfm-1 has no segment 'Nobody'",
        ),
        ('segment = "nope:1"', NotFoundError, "no segment run or name 'nope'"),
        (
            'tags = ["no_such_tag"]',
            NotFoundError,
            "[audience] tags: no user has the tag 'no_such_tag'",
        ),
        (
            'where = "frequncy > 1"',
            InputError,
            "unknown name 'frequncy'; did you mean 'frequency'?",
        ),
        ('where = "frequency >"', InputError, "[audience] where"),
        ('where = "frequency + 1"', InputError, "is not a condition"),
        ('where = "1; DROP TABLE events"', InputError, "[audience] where"),
        (
            'top = {score = "clv", n = 5}',
            NotFoundError,
            "[audience] top score: no user has a 'clv' score",
        ),
    ],
)
def test_unknown_references_name_the_field(
    open_ws: Callable[..., Workspace],
    spec_file: Callable[..., Path],
    audience: str,
    error: type[Exception],
    message: str,
) -> None:
    ws = open_ws()
    spec = load_spec(spec_file(audience=audience))
    with pytest.raises(error) as exc:
        draw(ws.store, spec, consent_default="DENIED")
    assert message in str(exc.value)
    assert ws.store.count("events") > 0


def test_consent_default_applies_only_to_users_who_stated_none(
    open_ws: Callable[..., Workspace], spec_file: Callable[..., Path]
) -> None:
    """Users files' marketing_opt_in became consent rows (GRANTED or DENIED on any channel):
    the simulator's opted-in users are exactly those allowed, whatever the default; users
    who stated nothing follow the default."""
    from jingzhun.ingest.consent import allowed_expr

    ws = open_ws()
    allowed = set(allowed_expr(ws.store.ibis(), "marketing", "email", "DENIED").to_pandas().user_id)
    assert allowed == opted_in(ws)
    # Seven users as if they had stated nothing.
    ws.store.run(
        "DELETE FROM consents WHERE user_id IN (SELECT unnest(?::VARCHAR[]))",
        [[u for (u,) in ws.store.rows("SELECT user_id FROM users ORDER BY user_id LIMIT 7")]],
    )
    silent = {
        u
        for (u,) in ws.store.rows(
            "SELECT user_id FROM users WHERE user_id NOT IN (SELECT user_id FROM consents)"
        )
    }
    assert len(silent) == 7
    granted = set(
        allowed_expr(ws.store.ibis(), "marketing", "email", "GRANTED").to_pandas().user_id
    )
    assert granted == (opted_in(ws) - silent) | silent
    spec = load_spec(spec_file())
    drawn_denied = draw(ws.store, spec, consent_default="DENIED")
    drawn_granted = draw(ws.store, spec, consent_default="GRANTED")
    matched_silent = silent & set(
        ws.sql("SELECT user_id FROM profiles WHERE frequency >= 1")["user_id"]
    )
    assert len(matched_silent) >= 2
    # Under DENIED the silent are left out, under GRANTED they are in (all have addresses).
    assert drawn_granted.members - drawn_denied.members == len(matched_silent)
