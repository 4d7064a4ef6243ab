"""The campaign report on a closed loop: sent through a real SMTP server, answered by the
simulator's customers, ingested like any events; its statistics checked against SciPy and
statsmodels, and its lift against the simulator's true effect."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from jingzhun.errors import InputError, NotFoundError
from jingzhun.evaluate.campaign import CampaignReport
from jingzhun.store import Store
from jingzhun.synth.world import Message, World, response_events
from jingzhun.workspace import Workspace
from tests.campaign.conftest import HTML, TEXT, Sink, free_port, settings_for
from tests.conftest import Shop

SPEC = """
name = "loop"
channel = "email"
[audience]
where = "frequency >= 0"
[control]
share = 0.5
[[variants]]
name = "a"
subject = "Hi {{ first_name }}"
template = "a.html"
[[variants]]
name = "b"
subject = "Hello {{ first_name }}"
template = "b.txt"
[offer]
cost_per_message = 0.05
margin = 0.3
discount = 0.2
conversion_window_days = 14
"""


@dataclass
class Loop:
    ws: Workspace
    report: CampaignReport
    outcomes: pd.DataFrame  # the simulator's answer, one row per member
    true_effect: float


@pytest.fixture(scope="module")
def loop(
    campaign_template: Path, shop: Shop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loop]:
    folder = tmp_path_factory.mktemp("loop")
    db = folder / "store.duckdb"
    shutil.copyfile(campaign_template, db)
    (folder / "a.html").write_text(HTML, encoding="utf-8")
    (folder / "b.txt").write_text(TEXT, encoding="utf-8")
    (folder / "loop.toml").write_text(SPEC, encoding="utf-8")
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    settings = settings_for(port)
    ws = Workspace(Store.open(db, settings), settings)
    try:
        ws.campaigns.create(folder / "loop.toml")
        ws.campaigns.send("loop")
        spec = ws.campaigns.spec("loop")
        members = ws.campaigns.members("loop")
        snapshot = ws.store.scalar("SELECT snapshot_at FROM campaigns WHERE name = 'loop'")
        world = World.load(shop.dir)
        message = Message(category=spec.offer.category, discount=spec.offer.discount)
        window = spec.offer.conversion_window_days
        treated = (members["arm"] == "treatment").to_numpy()
        answer = world.respond(
            members["user_id"], treated=treated, message=message, seed=11, days=window
        )
        items = ws.sql("SELECT item_id, category, price FROM items")
        events = response_events(
            answer, campaign="loop", start=snapshot, days=window, items=items, seed=12
        )
        events.to_parquet(folder / "responses.parquet")
        ws.ingest.files("events", [str(folder / "responses.parquet")])
        true_effect = float(answer.loc[treated, "uplift"].mean())
        yield Loop(
            ws,
            ws.evaluate.campaign("loop"),
            answer.assign(arm=members["arm"].to_numpy(), variant=members["variant"].to_numpy()),
            true_effect,
        )
    finally:
        ws.close()
        controller.stop()


def test_the_funnel_counts_what_the_customers_did(loop: Loop) -> None:
    f, o = loop.report.funnel, loop.outcomes
    t = o[o["arm"] == "treatment"]
    assert f["treatment"] == len(t) and f["control"] == int((o["arm"] == "control").sum())
    assert f["sent"] == len(t)
    assert f["opened"] == int(t["opened"].sum()) and f["clicked"] == int(t["clicked"].sum())
    assert f["converted"] == int(t["converted"].sum())
    assert f["revenue"] == pytest.approx(t["revenue"].sum(), abs=0.01)
    assert f["cost"] == pytest.approx(0.05 * len(t))
    assert loop.report.rates["open_rate"] == pytest.approx(t["opened"].mean(), abs=1e-6)
    assert loop.report.window_complete


def test_conversion_lift_matches_statsmodels(loop: Loop) -> None:
    o = loop.outcomes
    t, c = o[o["arm"] == "treatment"], o[o["arm"] == "control"]
    x1, n1, x2, n2 = int(t["converted"].sum()), len(t), int(c["converted"].sum()), len(c)
    low, high = confint_proportions_2indep(x1, n1, x2, n2, method="wald", compare="diff")
    _, p = proportions_ztest([x1, x2], [n1, n2])
    r = loop.report.conversion
    assert r["lift"] == pytest.approx(x1 / n1 - x2 / n2, rel=1e-12)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high), rel=1e-9)
    assert r["p_value"] == pytest.approx(p, rel=1e-9)


def test_revenue_lift_matches_welch(loop: Loop) -> None:
    o = loop.outcomes
    t = o.loc[o["arm"] == "treatment", "revenue"].to_numpy()
    c = o.loc[o["arm"] == "control", "revenue"].to_numpy()
    cm = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    low, high = cm.tconfint_diff(usevar="unequal")
    r = loop.report.revenue
    assert r["lift"] == pytest.approx(t.mean() - c.mean(), rel=1e-9)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high), rel=1e-6)
    assert r["p_value"] == pytest.approx(stats.ttest_ind(t, c, equal_var=False).pvalue, rel=1e-6)


def test_the_interval_covers_the_simulators_true_effect(loop: Loop) -> None:
    r = loop.report.conversion
    assert r["ci_low"] <= loop.true_effect <= r["ci_high"], (r, loop.true_effect)
    assert loop.true_effect > 0  # a 20% discount moves some customers
    c = loop.report.conversion_cuped
    assert c["ci_low"] <= loop.true_effect <= c["ci_high"]


def test_srm_variants_and_incremental_profit(loop: Loop) -> None:
    rep = loop.report
    assert not rep.sample_ratio["mismatch"] and rep.sample_ratio["p_value"] > 0.001
    assert [v["variant"] for v in rep.variants] == ["a", "b"]
    p = np.array([v["p_value"] for v in rep.variants])
    holm = np.minimum(1, np.maximum.accumulate(np.sort(p) * np.array([2, 1])))[
        np.argsort(np.argsort(p))
    ]
    assert [v["p_holm"] for v in rep.variants] == pytest.approx(holm)
    i = rep.incremental
    n_t = rep.funnel["treatment"]
    assert i["conversions"] == pytest.approx(rep.conversion["lift"] * n_t, abs=0.01)
    assert i["profit"] == pytest.approx(
        rep.revenue["lift"] * n_t * 0.3 - rep.funnel["cost"], abs=0.01
    )
    assert i["roi"] == pytest.approx(i["profit"] / i["cost"], rel=1e-3)
    days = [d["day"] for d in rep.over_time]
    assert days == list(range(1, 15)) and rep.over_time[-1]["lift"] == pytest.approx(
        rep.conversion["lift"]
    )
    assert rep.to_dict()["conversion"]["method"].startswith("two proportions")


def test_a_campaign_never_sent_or_unknown_has_no_report(loop: Loop) -> None:
    with pytest.raises(NotFoundError, match="no campaign 'nope'"):
        loop.ws.evaluate.campaign("nope")
    loop.ws.campaigns.create(
        {
            "name": "draft",
            "channel": "email",
            "variants": [{"name": "a", "subject": "s", "body": "b"}],
        }
    )
    with pytest.raises(InputError, match="has not been sent"):
        loop.ws.evaluate.campaign("draft")


def test_an_uplift_model_learns_from_the_stored_campaign(loop: Loop) -> None:
    frame = loop.ws.campaigns.assignments("loop")
    assert list(frame.columns) == ["campaign_id", "user_id", "group", "sent_at"]
    assert len(frame) == loop.report.funnel["members"]
    assert set(frame["group"]) == {"treatment", "control"}
    result = loop.ws.predict.uplift(frame, window_days=14, models=["class_transformation"], seed=0)
    assert sum(result.to_dict()["rows"].values()) == len(frame)
    assert loop.ws.models.active("uplift").model_id == result.model_id
    with pytest.raises(InputError, match="has not been sent"):
        loop.ws.campaigns.create(
            {
                "name": "unsent",
                "channel": "email",
                "variants": [{"name": "a", "subject": "s", "body": "b"}],
            }
        )
        loop.ws.campaigns.assignments("unsent")


def test_orders_after_a_click_are_credited_to_the_campaign(loop: Loop) -> None:
    start = loop.ws.store.scalar("SELECT snapshot_at FROM campaigns WHERE name = 'loop'")
    end = start + pd.Timedelta(days=14)
    treated = set(loop.outcomes.loc[loop.outcomes["arm"] == "treatment", "user_id"])
    ev = loop.ws.sql(
        "SELECT user_id, event, ts, order_id, revenue, campaign_id FROM stitched_events "
        "WHERE event IN ('order_completed', 'email_clicked') AND ts >= ? AND ts < ?",
        [start, end],
    )
    ev = ev[ev["user_id"].isin(treated)]
    clicks = ev[ev["event"] == "email_clicked"].groupby("user_id")["ts"].min()
    orders = (
        ev[ev["event"] == "order_completed"]
        .groupby(["user_id", "order_id"])
        .agg(ts=("ts", "min"), revenue=("revenue", "sum"))
        .reset_index()
    )
    first_click = orders["user_id"].map(clicks)
    credited = orders[first_click.notna() & (first_click <= orders["ts"])]
    got = loop.report.attributed
    assert got["model"] == "last_touch"
    assert got["orders"] == len(credited) > 0
    assert got["revenue"] == pytest.approx(credited["revenue"].sum(), abs=0.01)


def test_the_headline_is_the_report_s_conversion_lift_for_less(loop: Loop) -> None:
    h = loop.ws.evaluate.headline("loop")
    assert h.conversion == loop.report.conversion
    assert (h.treatment, h.control) == (
        loop.report.funnel["treatment"],
        loop.report.funnel["control"],
    )
    assert h.window_complete == loop.report.window_complete
    assert h.window_days == loop.report.window_days
    with pytest.raises(NotFoundError):
        loop.ws.evaluate.headline("nope")
