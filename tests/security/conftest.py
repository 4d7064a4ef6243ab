"""The store every hostile case runs on, built once per session, and a fresh folder per case.

The template holds a small simulated shop with every stage run once (profiles, an RFM and a
k-means segment run, a popularity model with a batch of recommendations, a propensity model,
a CLV model, a draft campaign) and open quarantined rows, so each command reaches the option under test; the
input files a command needs (an event file, a user file, an interaction log, a transaction
log, campaign assignments) sit beside it. Each case gets a copy in a folder of its own, removed
when the case ends.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from jingzhun.synth import SynthConfig, simulate
from jingzhun.workspace import Workspace
from tests.security.hostile import (
    CHEAP,
    MODELS,
    STORE,
    WAL,
    Sandbox,
    Template,
    fingerprint,
    sandbox,
    toml_document,
)


def _devices_allowed(folder: Path) -> bool:
    probe = folder / "probe-device"
    try:
        os.mknod(probe, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError:
        return False
    probe.unlink()
    return True


def _inputs(folder: Path, shop: Path, users: list[str], items: list[str]) -> list[str]:
    """The small input files the commands' required arguments name."""
    events = pd.read_parquet(shop / "events.parquet")
    (folder / "events.csv").write_text(
        "event,ts,user_id,item_id\n"
        f"product_viewed,2026-10-30T10:00:00Z,{users[0]},{items[0]}\n"
        f"product_added,2026-10-30T10:01:00Z,{users[0]},{items[0]}\n",
        encoding="utf-8",
    )
    (folder / "users.csv").write_text("user_id,city\nu_new_1,Hangzhou\n", encoding="utf-8")
    (folder / "items.csv").write_text(
        "item_id,title,category\nsku_new_1,A new item,beauty\n", encoding="utf-8"
    )
    viewed = events[events["item_id"].notna() & events["user_id"].notna()]
    log = viewed[["user_id", "item_id", "ts"]].assign(ts=lambda d: d["ts"].astype("int64") // 10**9)
    log.to_csv(folder / "log.csv", index=False)
    orders = events[events["event"] == "order_completed"]
    orders[["user_id", "ts", "price"]].set_axis(["customer", "date", "amount"], axis=1).assign(
        date=lambda d: d["date"].dt.strftime("%Y-%m-%d")
    ).to_csv(folder / "tx.csv", index=False)
    pd.read_parquet(shop / "campaigns.parquet").to_csv(folder / "assign.csv", index=False)
    (folder / "jingzhun.toml").write_bytes(toml_document(CHEAP))
    (folder / "campaign.txt").write_text("Hello {{ first_name }}\n", encoding="utf-8")
    (folder / "campaign.toml").write_text(
        'name = "summer"\nchannel = "email"\n[[variants]]\nname = "a"\nsubject = "Hi"\n'
        'template = "campaign.txt"\n',
        encoding="utf-8",
    )
    return [
        "campaign.toml",
        "campaign.txt",
        "events.csv",
        "users.csv",
        "items.csv",
        "log.csv",
        "tx.csv",
        "assign.csv",
        "jingzhun.toml",
    ]


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    folder = tmp_path_factory.mktemp("security_template")
    shop = folder / "shop"
    # 600 users: the smallest shop whose past campaign has the 200 users uplift needs; 200
    # days: enough history for a propensity model's label windows.
    simulate(SynthConfig(users=600, days=200, seed=1)).write(shop)
    db = folder / STORE
    with Workspace.open(db, config=None) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [str(shop / f"{kind}.parquet")])
        ws.profile_build()
        ws.segment_run("rfm")
        ws.segment_run("kmeans", k="3", stability_resamples=0)
        ws.recommend_train("pop")
        ws.recommend_batch(5)
        ws.predict_train("propensity", models=["logistic"], train_windows=1)
        ws.predict_clv()
        # A draft email campaign for campaign show/preview/send/report to name, and an ads
        # campaign for export.
        ws.campaigns.create({"name": "ads", "channel": "ads"})
        ws.campaigns.create(
            {
                "name": "spring",
                "channel": "email",
                "variants": [{"name": "a", "subject": "Hi", "body": "Hello {{ first_name }}"}],
            }
        )
        users = [u for (u,) in ws.store.rows("SELECT user_id FROM profiles ORDER BY 1 LIMIT 3")]
        items = [i for (i,) in ws.store.rows("SELECT item_id FROM items ORDER BY 1 LIMIT 3")]
        open_rows = ws.store.scalar("SELECT count(*) FROM quarantine WHERE resolved_at IS NULL")
    assert open_rows > 0, "the template needs open quarantined rows"
    assert not (folder / WAL).exists(), "the template store was left open"
    # A store is one file (issue 13): its models are inside it, no folder beside it.
    assert not (folder / MODELS).exists()
    files = _inputs(folder, shop, users, items)
    return Template(
        folder,
        fingerprint(db),
        tuple(files),
        tuple(users),
        tuple(items),
        _devices_allowed(folder),
    )


@pytest.fixture(scope="session")
def new_case(template: Template, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], object]:
    """``with new_case() as box:`` a fresh case folder (for Hypothesis, one per example)."""
    base = tmp_path_factory.mktemp("security_cases")
    counter = itertools.count()
    return lambda: sandbox(base, template, lambda: next(counter))


@pytest.fixture
def box(new_case: Callable[[], object]) -> Iterator[Sandbox]:
    with new_case() as case:  # type: ignore[attr-defined]
        yield case
