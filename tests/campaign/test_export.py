"""An ads campaign exported as a hashed customer list: the treatment arm only, every member's
delivery saying so."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from jingzhun.errors import InputError
from jingzhun.ingest.read import contacts
from jingzhun.workspace import Workspace


def test_the_treatment_arm_is_exported_and_the_control_held_out(
    open_ws: Callable[..., Workspace], tmp_path: Path
) -> None:
    ws = open_ws()
    ws.campaigns.create(
        {
            "name": "retarget",
            "channel": "ads",
            "audience": {"where": "frequency >= 1"},
            "control": {"share": 0.3},
        }
    )
    out = tmp_path / "audience.csv"
    result = ws.campaigns.export("retarget", platform="meta", out=out)
    written = pd.read_csv(out, dtype=str)
    assert list(written.columns) == ["email", "phone"] and len(written) == result.users
    arms = ws.sql("SELECT user_id, arm FROM campaign_members WHERE campaign = 'retarget'")
    people = contacts(ws.store, arms["user_id"].tolist(), ["email"])
    arms = arms.merge(people, on="user_id")
    arms["email"] = arms["email"].str.strip().str.lower()
    digest = arms["email"].map(lambda e: hashlib.sha256(e.encode()).hexdigest())
    exported = set(written["email"].dropna())
    assert exported == set(digest[arms["arm"] == "treatment"])
    assert not exported & set(digest[arms["arm"] == "control"])
    states = dict(
        ws.store.rows(
            "SELECT state, count(*) FROM deliveries WHERE campaign = 'retarget' GROUP BY 1"
        )
    )
    assert states["sent"] == int((arms["arm"] == "treatment").sum())
    assert states["control"] == int((arms["arm"] == "control").sum())
    assert ws.campaigns.get("retarget").state == "sent"
    # Exported again (another platform): the same members, no new draw.
    again = ws.campaigns.export("retarget", platform="google", out=tmp_path / "g.csv")
    assert again.users == result.users
    assert ws.store.scalar(
        "SELECT count(*) FROM campaign_members WHERE campaign = 'retarget'"
    ) == len(arms)


def test_only_ads_campaigns_export_and_bad_platforms_are_named(
    open_ws: Callable[..., Workspace], tmp_path: Path
) -> None:
    ws = open_ws()
    ws.campaigns.create(
        {
            "name": "mail",
            "channel": "email",
            "variants": [{"name": "a", "subject": "s", "body": "b"}],
        }
    )
    with pytest.raises(InputError, match="is an email campaign; only ads campaigns are exported"):
        ws.campaigns.export("mail", platform="google", out=tmp_path / "x.csv")
    ws.campaigns.create({"name": "ads", "channel": "ads"})
    with pytest.raises(InputError, match="platform 'tiktok' is not one jingzhun exports to"):
        ws.campaigns.export("ads", platform="tiktok", out=tmp_path / "x.csv")
    with pytest.raises(InputError, match="out"):
        ws.campaigns.export("ads", platform="google", out=tmp_path / "no" / "x.csv")
    assert ws.store.count("deliveries") == 0 and not (tmp_path / "no").exists()
    with pytest.raises(InputError, match="is an ads campaign: it is exported, not sent"):
        ws.campaigns.send("ads")
