"""The report's Campaigns section on a closed loop: campaigns sent through a real SMTP server on
127.0.0.1, answered by the simulator's customers, ingested like any events, and reported; the
section's tables and charts are checked against ``ws.evaluate.campaign(name)``.

Three campaigns and a draft: ``spring`` (two variants, its window over in the data), ``autumn``
(one variant, sent three days ago so its window is still open, and 40% of its
control members lost afterwards: a sample-ratio mismatch), ``single`` (one member: an arm
is empty, nothing to evaluate) and ``later`` (a draft, never shown).
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiosmtpd.controller import Controller

import jingzhun.report.campaign_sections as campaign_sections
from jingzhun.evaluate.campaign import CampaignReport
from jingzhun.report.i18n import Translator
from jingzhun.store import Store
from jingzhun.synth.world import Message, World, response_events
from jingzhun.workspace import Workspace
from tests.campaign.conftest import (  # noqa: F401 - campaign_template is a fixture
    HTML,
    TEXT,
    Sink,
    campaign_template,
    free_port,
    settings_for,
)
from tests.conftest import Shop

SPEC = """
name = "@NAME@"
channel = "email"
[audience]
where = "frequency >= 1"
[control]
share = @SHARE@
@VARIANTS@
[offer]
cost_per_message = 0.02
margin = 0.3
discount = 0.2
conversion_window_days = 7
"""
TWO_VARIANTS = """
[[variants]]
name = "a"
subject = "Hi {{ first_name }}"
template = "a.html"
[[variants]]
name = "b"
subject = "Hello {{ first_name }}"
template = "b.txt"
"""
ONE_VARIANT = """
[[variants]]
name = "only"
subject = "Hi {{ first_name }}"
template = "a.html"
"""
SINGLE = """
name = "single"
channel = "email"
[audience]
top = { score = "uplift", n = 1 }
[control]
share = 0.01
[[variants]]
name = "a"
subject = "Hi"
template = "b.txt"
"""


@dataclass
class Loop:
    ws: Workspace
    reports: dict[str, CampaignReport]
    page_en: str
    page_zh: str


def _send_and_answer(
    ws: Workspace,
    shop: Shop,
    folder: Path,
    name: str,
    *,
    now: datetime | None,
    seed: int,
    days: float | None = None,
) -> None:
    """Send campaign ``name``, let the simulator's customers answer over its conversion window
    (or its first ``days``: a campaign still in its window), ingest what they did."""
    ws.campaigns.send(name, now=now)
    spec = ws.campaigns.spec(name)
    members = ws.campaigns.members(name)
    snapshot = ws.store.scalar("SELECT snapshot_at FROM campaigns WHERE name = ?", [name])
    window = spec.offer.conversion_window_days if days is None else days
    answer = World.load(shop.dir).respond(
        members["user_id"],
        treated=(members["arm"] == "treatment").to_numpy(),
        message=Message(category=spec.offer.category, discount=spec.offer.discount),
        seed=seed,
        days=window,
    )
    items = ws.sql("SELECT item_id, category, price FROM items")
    events = response_events(
        answer, campaign=name, start=snapshot, days=window, items=items, seed=seed + 1
    )
    path = folder / f"{name}-responses.parquet"
    events.to_parquet(path)
    ws.ingest.files("events", [str(path)])


@pytest.fixture(scope="module")
def loop(
    campaign_template: Path,  # noqa: F811 - the fixture imported above
    shop: Shop,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Loop]:
    folder = tmp_path_factory.mktemp("campaign_report")
    db = folder / "store.duckdb"
    shutil.copyfile(campaign_template, db)
    (folder / "a.html").write_text(HTML, encoding="utf-8")
    (folder / "b.txt").write_text(TEXT, encoding="utf-8")
    specs = {
        "spring": SPEC.replace("@SHARE@", "0.25").replace("@VARIANTS@", TWO_VARIANTS),
        "autumn": SPEC.replace("@SHARE@", "0.4").replace("@VARIANTS@", ONE_VARIANT),
        "later": SPEC.replace("@SHARE@", "0.2").replace("@VARIANTS@", ONE_VARIANT),
        "single": SINGLE,
    }
    for name, text in specs.items():
        (folder / f"{name}.toml").write_text(text.replace("@NAME@", name), encoding="utf-8")
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    settings = settings_for(port)
    ws = Workspace(Store.open(db, settings), settings)
    try:
        for name in specs:
            ws.campaigns.create(folder / f"{name}.toml")
        _send_and_answer(ws, shop, folder, "spring", now=None, seed=21)
        # Sent three days ago, answered for two: four of its seven days are still to come by
        # the wall clock and by the newest event alike (ingest refuses events from the future).
        ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=3)
        _send_and_answer(ws, shop, folder, "autumn", now=ago, seed=31, days=2)
        # Lose 40% of autumn's control group, as a broken log would.
        lost = int(0.4 * ws.store.scalar(
            "SELECT count(*) FROM campaign_members WHERE campaign = 'autumn' AND arm = 'control'"
        ))  # fmt: skip
        ws.store.run(
            "DELETE FROM campaign_members WHERE campaign = 'autumn' AND user_id IN ("
            " SELECT user_id FROM campaign_members WHERE campaign = 'autumn' AND arm = 'control'"
            " ORDER BY user_id LIMIT ?)",
            [lost],
        )
        ws.campaigns.send("single")
        reports = {n: ws.evaluate.campaign(n) for n in ("spring", "autumn")}
        ws.report(folder / "en.html")
        ws.report(folder / "zh.html", lang="zh")
        yield Loop(
            ws,
            reports,
            (folder / "en.html").read_text(encoding="utf-8"),
            (folder / "zh.html").read_text(encoding="utf-8"),
        )
    finally:
        ws.close()
        controller.stop()


# -- reading the page ---------------------------------------------------------------------------


def _section(page: str) -> str:
    match = re.search(r'<section id="campaigns">(.*?)</section>', page, re.S)
    assert match, "no campaigns section"
    return match.group(1)


def _campaign(page: str, name: str) -> str:
    """The block of campaign ``name`` inside the section."""
    blocks = re.split(r'(?=<div class="campaign" )', _section(page))
    found = [b for b in blocks if f'data-campaign="{name}"' in b.split(">", 1)[0]]
    assert len(found) == 1, f"campaign {name!r} shown {len(found)} times"
    return found[0]


def _table(block: str, part: str) -> list[list[str]]:
    """The rows (header first) of the table in ``<div data-part=part>``, cells unescaped."""
    match = re.search(rf'<div data-part="{part}"[^>]*>.*?<table[^>]*>(.*?)</table>', block, re.S)
    assert match, f"no {part} table"
    rows = re.findall(r"<tr>(.*?)</tr>", match.group(1), re.S)
    return [
        [html.unescape(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, re.S)] for r in rows
    ]


def _measures(block: str, part: str) -> dict[str, str]:
    return {row[0]: row[1] for row in _table(block, part)[1:]}


def _number(text: str) -> float:
    """``+1,234.5 pp`` → 1234.5; ``38.55%`` → 38.55."""
    return float(re.sub(r"[,%+ ]|pp", "", text))


def _values(v: Any) -> list[Any]:
    """A trace's data: a list, or Plotly's typed array (``{"dtype", "bdata"}``)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def _figures(block: str) -> list[tuple[list[dict], dict]]:
    """Each chart's traces and layout, as ``Plotly.newPlot`` receives them."""
    decoder = json.JSONDecoder()
    out = []
    for m in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', block):
        data, end = decoder.raw_decode(block, m.end())
        layout, _ = decoder.raw_decode(block, block.index("{", end))
        out.append((data, layout))
    return out


def _title(layout: dict, key: str = "title") -> str:
    node = layout.get(key, {})
    node = node.get("title", {}) if key != "title" else node
    return node.get("text", "") if isinstance(node, dict) else str(node)


# -- the tests ----------------------------------------------------------------------------------


def test_the_section_shows_each_campaign_past_its_draft_newest_first(loop: Loop) -> None:
    ids = re.findall(r'<section id="([a-z_]+)"', loop.page_en)
    assert ids[-1] == "campaigns"  # after predictions: campaigns act on every earlier stage
    shown = re.findall(r'<div class="campaign" [^>]*data-campaign="([^"]+)"', loop.page_en)
    expected = loop.ws.campaigns.list()
    expected = expected[expected["state"] != "draft"]["name"].tolist()
    assert shown == expected and set(shown) == {"spring", "autumn", "single"}
    assert 'data-campaign="later"' not in loop.page_en


@pytest.mark.parametrize("name", ["spring", "autumn"])
def test_the_tables_show_the_evaluation(loop: Loop, name: str) -> None:
    r, block = loop.reports[name], _campaign(loop.page_en, name)
    f = _measures(block, "funnel")
    for label, key in [
        ("Treatment members", "treatment"),
        ("Control members", "control"),
        ("Sent", "sent"),
        ("Opened", "opened"),
        ("Clicked", "clicked"),
        ("Converted (treatment)", "converted"),
    ]:
        assert _number(f[label]) == r.funnel[key], label
    assert _number(f["Revenue (treatment, in window)"]) == r.funnel["revenue"]
    assert _number(f["Cost of sending"]) == r.funnel["cost"] > 0
    assert r.funnel["opened"] > r.funnel["clicked"] > 0 and r.funnel["converted"] > 0
    rates = _measures(block, "rates")
    for label, key in [
        ("Open rate (of sent)", "open_rate"),
        ("Click-through rate (of sent)", "click_through_rate"),
        ("Click-to-open rate", "click_to_open_rate"),
        ("Conversion rate, treatment", "conversion_rate_treatment"),
        ("Conversion rate, control", "conversion_rate_control"),
    ]:
        assert _number(rates[label]) == pytest.approx(100 * r.rates[key], abs=0.005), label
    inc = {row[0]: row[1:] for row in _table(block, "incremental")[1:]}
    i = r.incremental
    for label, key in [
        ("Incremental conversions", "conversions"),
        ("Incremental revenue", "revenue"),
        ("Incremental profit (margin 30%, less cost)", "profit"),
    ]:
        assert [_number(x) for x in inc[label]] == [i[key], i[f"{key}_low"], i[f"{key}_high"]]
    assert _number(inc["ROI (profit / cost)"][0]) == pytest.approx(i["roi"], abs=0.005)
    effect = {row[0]: row[1:] for row in _table(block, "effect")[1:]}
    for label, lift, scale in [
        ("Conversion rate", r.conversion, 100),
        ("Conversion rate, CUPED", r.conversion_cuped, 100),
        ("Revenue per member", r.revenue, 1),
        ("Revenue per member, CUPED", r.revenue_cuped, 1),
    ]:
        shown = [_number(x) for x in effect[label]]
        keys = ["treated", "control", "lift", "ci_low", "ci_high"]
        assert shown[:5] == pytest.approx([scale * lift[k] for k in keys], abs=0.005), label
        assert shown[5] == pytest.approx(lift["p_value"], rel=1e-3), label


def test_the_cards_lead_with_the_lift_and_the_profit(loop: Loop) -> None:
    r, block = loop.reports["spring"], _campaign(loop.page_en, "spring")
    cards = dict(
        re.findall(r'<div class="label">([^<]*)</div><div class="value">([^<]*)</div>', block)
    )
    lift = next(v for k, v in cards.items() if k.startswith("Conversion lift"))
    assert _number(html.unescape(lift)) == pytest.approx(100 * r.conversion["lift"], abs=0.005)
    assert _number(cards["Incremental profit"]) == r.incremental["profit"]
    assert cards["Treatment / control"] == f"{r.funnel['treatment']:,} / {r.funnel['control']:,}"


def test_the_lift_charts_put_plain_and_cuped_side_by_side_with_their_intervals(
    loop: Loop,
) -> None:
    r = loop.reports["spring"]
    figures = _figures(_campaign(loop.page_en, "spring"))
    charts = {_title(layout): data for data, layout in figures}
    for title, pair, scale in [
        ("Lift in conversion rate, 95% interval", (r.conversion, r.conversion_cuped), 100),
        ("Lift in revenue per member, 95% interval", (r.revenue, r.revenue_cuped), 1),
    ]:
        traces = charts[title]
        assert [t["x"] for t in traces] == [["Plain"], ["CUPED"]]
        for trace, lift in zip(traces, pair, strict=True):
            (y,) = _values(trace["y"])
            (up,) = _values(trace["error_y"]["array"])
            (down,) = _values(trace["error_y"]["arrayminus"])
            assert y == pytest.approx(scale * lift["lift"])
            assert (y - down, y + up) == pytest.approx(
                (scale * lift["ci_low"], scale * lift["ci_high"])
            )
    layouts = {_title(layout): layout for _, layout in figures}
    zero = layouts["Lift in conversion rate, 95% interval"]["shapes"]
    assert [(s["y0"], s["y1"]) for s in zero] == [(0, 0)]  # the zero line


def test_the_over_time_chart_follows_the_lift_through_the_window(loop: Loop) -> None:
    r = loop.reports["spring"]
    charts = {_title(layout): data for data, layout in _figures(_campaign(loop.page_en, "spring"))}
    upper, lower, lift = charts["Conversion lift as the window fills, 95% interval"]
    days = [d["day"] for d in r.over_time]
    assert _values(lift["x"]) == days == list(range(1, 8))
    assert _values(lift["y"]) == pytest.approx([100 * d["lift"] for d in r.over_time])
    assert _values(upper["y"]) == pytest.approx([100 * d["ci_high"] for d in r.over_time])
    assert _values(lower["y"]) == pytest.approx([100 * d["ci_low"] for d in r.over_time])
    assert lower["fill"] == "tonexty"  # the band between the two bounds


def test_an_open_window_is_charted_up_to_today(loop: Loop) -> None:
    # autumn was sent three days before the report: its first three days are observed.
    r = loop.reports["autumn"]
    (data, layout) = next(
        (d, lay)
        for d, lay in _figures(_campaign(loop.page_en, "autumn"))
        if _title(lay).startswith("Conversion lift as the window fills")
    )
    lift = data[2]
    assert _values(lift["x"]) == [1, 2, 3]
    assert _values(lift["y"]) == pytest.approx([100 * d["lift"] for d in r.over_time[:3]])
    today = [s for s in layout["shapes"] if s["x0"] == s["x1"]]
    assert len(today) == 1 and 3 < today[0]["x0"] < 4
    assert layout["xaxis"]["range"] == [0.5, 7.5]  # the whole window, the rest still to come


def test_the_funnel_chart_counts_each_step(loop: Loop) -> None:
    r = loop.reports["spring"]
    charts = {_title(layout): data for data, layout in _figures(_campaign(loop.page_en, "spring"))}
    (bar,) = charts["Funnel of the treatment arm"]
    assert bar["type"] == "bar"
    assert bar["x"] == ["Sent", "Opened", "Clicked", "Converted"]
    f = r.funnel
    assert _values(bar["y"]) == [f["sent"], f["opened"], f["clicked"], f["converted"]]


def test_every_chart_has_a_title_and_axis_titles_with_units(loop: Loop) -> None:
    section = _section(loop.page_en)
    figures = _figures(section)
    assert len(figures) == 8  # four for each evaluated campaign
    for _, layout in figures:
        assert _title(layout) and _title(layout, "xaxis") and _title(layout, "yaxis")
    units = {_title(layout, "yaxis") for _, layout in figures}
    assert units == {
        "Lift in conversion rate (percentage points)",
        "Lift in revenue per member (currency units)",
        "Members (treatment arm)",
    }


def test_variants_are_shown_with_holm_adjusted_p_values_when_there_are_several(
    loop: Loop,
) -> None:
    r = loop.reports["spring"]
    rows = _table(_campaign(loop.page_en, "spring"), "variants")
    assert rows[0][0] == "Variant" and "p-value, Holm" in rows[0]
    holm = rows[0].index("p-value, Holm")
    assert [row[0] for row in rows[1:]] == [v["variant"] for v in r.variants] == ["a", "b"]
    for row, v in zip(rows[1:], r.variants, strict=True):
        assert _number(row[1]) == v["members"]
        assert _number(row[holm]) == pytest.approx(v["p_holm"], rel=1e-3)
        assert row[-1] == ("✓" if v["significant"] else "✗")
    assert "Holm" in _campaign(loop.page_en, "spring")
    assert len(loop.reports["autumn"].variants) == 1
    assert 'data-part="variants"' not in _campaign(loop.page_en, "autumn")


def test_a_sample_ratio_mismatch_is_a_warning_line(loop: Loop) -> None:
    autumn, spring = loop.reports["autumn"], loop.reports["spring"]
    assert autumn.sample_ratio["mismatch"] and not spring.sample_ratio["mismatch"]
    warning = re.findall(
        r'<p class="note warning"[^>]*>(.*?)</p>', _campaign(loop.page_en, "autumn")
    )
    (text,) = warning
    assert "Sample ratio mismatch" in text and f"{autumn.funnel['control']:,} control" in text
    assert 'class="note warning"' not in _campaign(loop.page_en, "spring")


def test_an_open_conversion_window_is_noted(loop: Loop) -> None:
    assert not loop.reports["autumn"].window_complete
    open_note = "conversion window after the send has not ended"
    assert open_note in _campaign(loop.page_en, "autumn")
    spring = loop.reports["spring"]
    assert (open_note in _campaign(loop.page_en, "spring")) == (not spring.window_complete)


def test_a_campaign_with_nothing_to_compare_says_why(loop: Loop) -> None:
    block = _campaign(loop.page_en, "single")
    assert "No evaluation: campaign &#x27;single&#x27; has an empty arm" in block
    assert "Plotly.newPlot" not in block


def test_the_chinese_report_translates_the_section(loop: Loop) -> None:
    section = _section(loop.page_zh)
    nav = re.search(r"<nav>(.*?)</nav>", loop.page_zh, re.S)
    assert nav and '<a href="#campaigns">营销活动</a>' in nav.group(1)
    titles = {_title(layout) for _, layout in _figures(section)}
    assert {"转化率提升（95% 区间）", "人均销售额提升（95% 区间）", "实验组漏斗"} <= titles
    block = _campaign(loop.page_zh, "autumn")
    assert "样本比例失衡" in block and "转化窗口尚未结束" in block
    rows = _table(_campaign(loop.page_zh, "spring"), "funnel")
    assert rows[0] == ["指标", "数值"]
    assert _number(dict(rows[1:])["实验组人数"]) == loop.reports["spring"].funnel["treatment"]


def test_no_section_without_a_sent_campaign(
    campaign_template: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    db = tmp_path / "store.duckdb"
    shutil.copyfile(campaign_template, db)
    (tmp_path / "a.html").write_text(HTML, encoding="utf-8")
    spec = SPEC.replace("@NAME@", "draft").replace("@SHARE@", "0.2")
    (tmp_path / "draft.toml").write_text(spec.replace("@VARIANTS@", ONE_VARIANT), "utf-8")
    with Workspace.open(db, config=None) as ws:
        t = Translator("en")
        assert campaign_sections.campaigns(ws, t) is None  # no campaign at all
        ws.campaigns.create(tmp_path / "draft.toml")
        assert campaign_sections.campaigns(ws, t) is None  # a draft only


def test_one_campaign_s_block_is_public_and_the_same_as_the_report_s(loop: Loop) -> None:
    """The dashboard's campaign page shows ``campaign_report``: the report's own block."""
    from jingzhun.errors import InputError, NotFoundError

    t = Translator("en")
    block = campaign_sections.campaign_report(loop.ws, t, "spring")
    assert block.startswith('<div class="campaign" id="campaign-spring" data-campaign="spring"')
    shown = _campaign(loop.page_en, "spring")
    for part in ("funnel", "rates", "incremental", "effect", "variants"):
        assert _table(block, part) == _table(shown, part)
    assert len(_figures(block)) == 4
    assert block.count('<div class="card chart-card"><div class="chart">') == 4, "each in a card"
    assert "No evaluation" in campaign_sections.campaign_report(loop.ws, t, "single")
    with pytest.raises(InputError, match="has not been sent"):
        campaign_sections.campaign_report(loop.ws, t, "later")
    with pytest.raises(NotFoundError):
        campaign_sections.campaign_report(loop.ws, t, "nope")
    zh = campaign_sections.campaign_report(loop.ws, Translator("zh"), "spring")
    assert "邮件" in zh.split("</h3>")[0], "the channel in the language"


def test_the_headline_is_the_report_s_conversion_lift(loop: Loop) -> None:
    from jingzhun.errors import InputError

    for name in ("spring", "autumn"):
        h = loop.ws.evaluate.headline(name)
        r = loop.reports[name]
        assert h.conversion == r.conversion and h.window_complete == r.window_complete
    for name in ("single", "later"):  # an empty arm; never sent
        with pytest.raises(InputError):
            loop.ws.evaluate.headline(name)
