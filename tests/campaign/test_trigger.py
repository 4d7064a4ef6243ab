"""A triggered campaign: carts abandoned for an hour, taken in as they qualify, each user once,
with the cart's items in the message and an arm drawn per user."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from jingzhun.campaign.assign import unit
from jingzhun.campaign.audience import campaign_now
from jingzhun.errors import InputError
from jingzhun.workspace import Workspace
from tests.campaign.conftest import Smtp, settings_for

SPEC = {
    "name": "cart",
    "channel": "email",
    "trigger": {"event": "product_added", "without": "order_completed", "after_minutes": 60},
    "control": {"share": 0.5},
    "variants": [
        {
            "name": "a",
            "subject": "You left {{ cart|length }} item(s) in your cart",
            "body": "{% for i in cart %}- {{ i.title }}\n{% endfor %}{{ unsubscribe_url }}\n",
        }
    ],
}


def test_abandoned_carts_are_taken_in_once_as_they_qualify(
    open_ws: Callable[..., Workspace], smtp: Smtp, tmp_path: Path
) -> None:
    ws = open_ws(settings_for(smtp.port))
    probe = {**SPEC, "name": "probe", "trigger": None}
    ws.campaigns.audience(probe)
    users = [
        u
        for (u,) in ws.store.rows(
            "SELECT user_id FROM _jz_audience WHERE excluded IS NULL ORDER BY user_id LIMIT 60"
        )
    ]
    t0 = campaign_now(ws.store, None) + timedelta(days=1)
    item, title = ws.store.rows("SELECT item_id, title FROM items ORDER BY item_id LIMIT 1")[0]
    lines = ["event,ts,user_id,item_id,order_id,price"]
    for i, u in enumerate(users):
        if i < 40:  # added two hours ago
            lines.append(f"product_added,{(t0 - timedelta(hours=2)).isoformat()}Z,{u},{item},,")
        if 20 <= i < 30:  # … and bought it after: not abandoned
            lines.append(
                f"order_completed,{(t0 - timedelta(hours=1)).isoformat()}Z,{u},{item},o{i},10"
            )
        if i >= 40:  # added ten minutes ago: not yet an hour
            lines.append(f"product_added,{(t0 - timedelta(minutes=10)).isoformat()}Z,{u},{item},,")
    (tmp_path / "carts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ws.ingest.files("events", [str(tmp_path / "carts.csv")])
    ws.campaigns.create(SPEC)

    first = ws.campaigns.trigger(["cart"], now=t0)[0]
    members = dict(
        ws.store.rows("SELECT user_id, arm FROM campaign_members WHERE campaign = 'cart'")
    )
    abandoned = set(users[:20]) | set(users[30:40])
    assert set(members) == abandoned
    # each user's arm is their own hash: the same whoever else qualifies
    assert all(
        (arm == "control") == (unit("cart", "control", u) < 0.5) for u, arm in members.items()
    )
    treated = {u for u, a in members.items() if a == "treatment"}
    assert first.counts["sent"] == len(treated) == len(smtp.sink.messages) > 0
    msg = smtp.sink.parsed()[0]
    assert msg["Subject"] == "You left 1 item(s) in your cart"
    assert f"- {title}" in msg.get_body(("plain",)).get_content()

    again = ws.campaigns.trigger(["cart"], now=t0)[0]
    assert again.attempted == 0 and len(smtp.sink.messages) == len(treated)

    later = ws.campaigns.trigger(["cart"], now=t0 + timedelta(minutes=55))[0]
    grown = dict(ws.store.rows("SELECT user_id, arm FROM campaign_members WHERE campaign = 'cart'"))
    assert set(grown) == abandoned | set(users[40:])  # the recent carts are an hour old now
    assert later.attempted == sum(1 for u in users[40:] if grown[u] == "treatment")
    assert len(smtp.sink.messages) == later.counts["sent"]


def test_trigger_specs_are_checked() -> None:
    from jingzhun.campaign.spec import spec_from_json

    with pytest.raises(InputError, match="'cart_abandoned' is not an event name"):
        spec_from_json({**SPEC, "trigger": {"event": "cart_abandoned"}})
    with pytest.raises(InputError, match="after_minutes must be shorter than lookback_hours"):
        spec_from_json(
            {
                **SPEC,
                "trigger": {"event": "product_added", "after_minutes": 3000, "lookback_hours": 24},
            }
        )
    with pytest.raises(InputError, match="top and share do not apply"):
        spec_from_json({**SPEC, "audience": {"top": {"score": "random", "n": 5}}})
