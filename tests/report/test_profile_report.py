"""The profile stage in the HTML report: the "profiles" and "behaviour" sections.

After ``profile build`` the report holds, after the collect stage's five sections, the profiles
(cards, the RFM segment chart, trait distributions, the tag table) and the behaviour analysis
(trends, the funnel, a cohort heatmap, baskets, purchase frequency), in English and Chinese, and
every chart draws in headless Chromium without a network.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jingzhun.profile.analyze import DEFAULT_FUNNEL
from jingzhun.profile.tags import RFM_SEGMENTS
from jingzhun.workspace import Workspace

CHROMIUM = "/usr/bin/chromium"
SECTION_IDS = ["overview", "activity", "ingest", "quality", "identity", "profiles", "behaviour"]
NEW_PLOT = re.compile(r'Plotly\.newPlot\(\s*"([^"]+)",\s*')


# -- reading the page ------------------------------------------------------------------------


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([a-z_]+)"', page)


def sections(page: str) -> dict[str, str]:
    """Each section's HTML by its id."""
    found = re.findall(r'<section id="([a-z_]+)">(.*?)</section>', page, re.S)
    return dict(found)


def card(html: str, label: str) -> str:
    match = re.search(
        r'<div class="label">' + re.escape(label) + r'</div><div class="value">([^<]*)</div>', html
    )
    assert match, f"no card {label!r}"
    return match.group(1)


def values(v: Any) -> Any:
    """A Plotly data array: plain JSON, or Plotly's typed array ({"dtype", "bdata"})."""
    if isinstance(v, dict) and "bdata" in v:
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            arr = arr.reshape([int(n) for n in str(v["shape"]).split(",")])
        return arr.tolist()
    return v


@dataclass
class Chart:
    div_id: str
    data: list[dict[str, Any]]
    layout: dict[str, Any]

    @property
    def title(self) -> str | None:
        title = self.layout.get("title")
        return title.get("text") if isinstance(title, dict) else title

    @property
    def types(self) -> list[str]:
        return [trace.get("type", "scatter") for trace in self.data]


def charts(html: str) -> list[Chart]:
    """Every Plotly chart in ``html``: the div it draws into, its data and its layout."""
    decoder = json.JSONDecoder()
    found = []
    for match in NEW_PLOT.finditer(html):
        data, end = decoder.raw_decode(html, match.end())
        comma = re.compile(r"\s*,\s*").match(html, end)
        assert comma, "no layout after the data"
        layout, _ = decoder.raw_decode(html, comma.end())
        div_id = match.group(1)
        # the chart has its div, with Plotly's class, in the same section
        assert re.search(rf'<div id="{re.escape(div_id)}" class="plotly-graph-div"', html), div_id
        found.append(Chart(div_id, data, layout))
    return found


def chart_titled(found: list[Chart], title: str) -> Chart:
    matching = [c for c in found if c.title == title]
    assert len(matching) == 1, (
        f"{len(matching)} charts titled {title!r}: {[c.title for c in found]}"
    )
    return matching[0]


# -- the store and its reports ---------------------------------------------------------------


@pytest.fixture(scope="module")
def built(shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The shop ingested and profiled (in process), with its English report and the numbers."""
    folder = tmp_path_factory.mktemp("profile_report")
    db = folder / "shop.duckdb"
    with Workspace.open(db) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [shop.file(kind)])
        result = ws.profile_build()
        report = ws.report(folder / "report.html")
        zh = ws.report(folder / "report.zh.html", lang="zh")
        numbers = {
            "result": result,
            "segments": dict(
                ws.sql(
                    "SELECT value, count(*) AS n FROM tags WHERE tag = 'rfm_segment' GROUP BY 1"
                ).itertuples(index=False)
            ),
            "customers": int(ws.store.scalar("SELECT count(*) FROM profiles WHERE frequency >= 1")),
            "funnel": ws.analyze("funnel").tables["steps"],
            "cohorts": ws.analyze("cohorts").tables["retention"],
        }
    yield {"db": db, "report": report, "zh": zh, **numbers}


@pytest.fixture(scope="module")
def page(built: dict[str, Any]) -> str:
    return built["report"].read_text(encoding="utf-8")


def test_profile_sections_follow_the_collect_sections(page: str) -> None:
    assert section_ids(page) == SECTION_IDS
    for key in SECTION_IDS:
        assert f'href="#{key}"' in page
    assert "<h2>Profiles and tags</h2>" in page
    assert "<h2>Behaviour analysis</h2>" in page
    # the contents bar lists the sections in the same order
    nav = re.search(r"<nav>(.*?)</nav>", page, re.S)
    assert nav and re.findall(r'href="#([a-z_]+)"', nav.group(1)) == SECTION_IDS


def test_profiles_section_cards_match_the_build(page: str, built: dict[str, Any]) -> None:
    html = sections(page)["profiles"]
    result = built["result"]
    assert card(html, "Users profiled") == f"{result.users:,}"
    assert card(html, "Customers") == f"{built['customers']:,}"
    assert card(html, "As of") == result.as_of.strftime("%Y-%m-%d %H:%M")
    # the tag table lists the rule tags and the segments, not the raw RFM scores
    assert "<h3>Tags</h3>" in html
    for text in ("high_value", "churn_risk", "rfm_segment", "spend_band"):
        assert f"<td>{text}</td>" in html, text
    assert "<td>rfm_score</td>" not in html


def test_rfm_segment_chart_counts_each_segment(page: str, built: dict[str, Any]) -> None:
    chart = chart_titled(charts(sections(page)["profiles"]), "RFM segments")
    (trace,) = chart.data
    assert trace.get("type") == "bar"
    x, y = values(trace["x"]), values(trace["y"])
    segments = built["segments"]
    assert len(segments) >= 5
    assert x == [name for name in RFM_SEGMENTS if name in segments]  # the standard order
    assert dict(zip(x, y, strict=True)) == segments
    assert sum(y) == built["customers"] == built["result"].tags["rfm_segment"]


def test_behaviour_section_has_the_funnel_and_a_cohort_heatmap(
    page: str, built: dict[str, Any]
) -> None:
    found = charts(sections(page)["behaviour"])
    funnel = chart_titled(found, "Funnel")
    (trace,) = funnel.data
    assert trace["type"] == "funnel"
    assert values(trace["y"]) == list(DEFAULT_FUNNEL)
    assert values(trace["x"]) == built["funnel"]["visitors"].tolist()

    heat = chart_titled(found, "Monthly cohorts: share ordering again")
    (trace,) = heat.data
    assert trace["type"] == "heatmap"
    cohorts = built["cohorts"]
    assert values(trace["y"]) == cohorts["cohort"].tolist()
    z = np.array(values(trace["z"]), dtype=float)
    months = [c for c in cohorts.columns if c.startswith("m") and c != "m0"]
    assert z.shape == (len(cohorts), len(months))
    expected = cohorts[months].to_numpy(dtype=float)
    reached = ~np.isnan(z)
    assert reached.any()
    assert np.allclose(z[reached], expected[reached])
    # the trend chart and the frequency chart are there too
    assert any(c.types.count("scatter") >= 6 for c in found)
    assert len(found) >= 4


def test_every_chart_is_a_plotly_div(page: str) -> None:
    found = charts(page)
    assert len(found) == page.count('class="plotly-graph-div"')
    assert len({c.div_id for c in found}) == len(found)
    assert len(charts(sections(page)["profiles"])) >= 4
    assert len(charts(sections(page)["behaviour"])) >= 4


def test_chinese_report_has_the_profile_headings(built: dict[str, Any]) -> None:
    page = built["zh"].read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in page
    assert section_ids(page) == SECTION_IDS
    for heading in (
        "概览",
        "行为趋势",
        "数据接入",
        "数据质量",
        "身份打通",
        "用户画像与标签",
        "行为分析",
    ):
        assert f"<h2>{heading}</h2>" in page, heading
    html = sections(page)
    assert card(html["profiles"], "画像用户数") == f"{built['result'].users:,}"
    chart_titled(charts(html["profiles"]), "RFM 分群")
    chart_titled(charts(html["behaviour"]), "转化漏斗")
    assert "<h2>Profiles and tags</h2>" not in page
    assert "<h2>Behaviour analysis</h2>" not in page


def test_report_renders_every_chart_in_headless_chromium(
    built: dict[str, Any], page: str, tmp_path: Path
) -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("JINGZHUN_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium package")
        pytest.skip("needs Chromium at /usr/bin/chromium (apt-get install chromium)")
    divs = page.count('class="plotly-graph-div"')
    assert divs >= 12
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            built["report"].resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-2000:]
    dom = proc.stdout.decode("utf-8", "replace")
    assert "<h2>Profiles and tags</h2>" in dom and "<h2>Behaviour analysis</h2>" in dom
    # Plotly drew each chart: one plot container per graph div, each with its SVG
    assert dom.count('class="plotly-graph-div') == divs
    assert len(re.findall(r'class="plot-container[ "]', dom)) == divs
    assert dom.count('class="main-svg"') >= divs
    # the heatmap painted its image, the funnel its bars (one per step)
    assert re.search(r'class="heatmaplayer mlayer"><g class="hm"><image ', dom)
    start = dom.find('class="funnellayer mlayer"')
    assert start > 0, "the funnel was not drawn"
    end = dom.find('class="plot-container', start)
    bars = re.findall(r'<g class="point"><path d="M[0-9.]+,', dom[start : end if end > 0 else None])
    assert len(bars) == len(DEFAULT_FUNNEL)


@pytest.mark.slow
def test_cli_demo_builds_profiles_and_reports_them(tmp_path: Path) -> None:
    """The demo command (the one CLI run of the demo in the suite: tests/test_demo.py runs it
    in process): one JSON object on stdout, its files in --out (relative to the working
    folder), and the report's profile, segment and recommendation sections."""
    out = tmp_path / "D"
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("JINGZHUN_DB", None)
    env.pop("JINGZHUN_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "jingzhun", "demo", "--users", "1500", "--out", "D", "--json"],
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-2000:]
    text = proc.stdout.decode("utf-8")
    result, end = json.JSONDecoder().raw_decode(text)
    assert text[end:].strip() == ""
    assert isinstance(result, dict) and result["simulated"]["users"] == 1500
    for key in ("report", "store"):
        path = Path(result[key])
        result[key] = str(path if path.is_absolute() else tmp_path / path)
    assert Path(result["report"]).resolve() == (out / "report.html").resolve()
    assert Path(result["store"]).resolve() == (out / "jingzhun.duckdb").resolve()
    assert not (tmp_path / "jingzhun.duckdb").exists()  # the demo keeps its store in --out
    ev = result["ingest"]["events"]
    assert ev["rows_read"] == ev["inserted"] + ev["duplicates"] + ev["quarantined"]
    profiles = result["profiles"]
    assert profiles["users"] > 0
    assert profiles["tags"]["rfm_segment"] > 0
    with Workspace.open(result["store"], read_only=True) as ws:
        assert ws.store.count("profiles") == profiles["users"]
        # the shop's events come before the profiles' as_of; the campaigns' answers after it
        answers = [c["responses"]["batch_id"] for c in result["campaigns"]]
        latest = ws.store.scalar(
            "SELECT max(ts) FROM events WHERE NOT list_contains(?, batch_id)", [answers]
        )
        assert str(latest) < profiles["as_of"]
    page = Path(result["report"]).read_text(encoding="utf-8")
    assert section_ids(page) == [
        *SECTION_IDS,
        "segments",
        "recommendations",
        "predictions",
        "campaigns",
    ]
    # two active runs (rfm, behaviour): sizes and a trait heatmap each; the k-means run also
    # its k scan and the projection of its members
    titles = [c.title for c in charts(sections(page)["segments"])]
    assert titles.count("Segment sizes") == 2
    assert titles.count("Traits per segment against the population (z-scores)") == 2
    assert titles.count("Choosing k: silhouette by number of segments") == 1
    assert titles.count("Users on the first two principal components, by segment") == 1
    # recommendations: the batch's reasons and top items, the offline comparison of the models
    rec = sections(page)["recommendations"]
    found = charts(rec)
    compared = result["recommend"]["compared"]
    quality = chart_titled(found, "Ranking quality by model")
    assert [t["name"] for t in quality.data] == ["P@k", "R@k", "nDCG@k", "MAP"]
    assert all(t["x"] == list(compared) for t in quality.data)
    ndcg = dict(zip(quality.data[2]["x"], quality.data[2]["y"], strict=True))
    assert ndcg == pytest.approx({m: v["ndcg"] for m, v in compared.items()}, abs=1e-6)
    tradeoff = chart_titled(found, "Accuracy against catalog coverage")
    assert tradeoff.data[0]["text"] == list(compared)
    reasons = chart_titled(found, "Why items were recommended")
    assert sum(reasons.data[0]["y"]) == result["recommend"]["rows"]
    chart_titled(found, "Most recommended items")
    assert "Example lists with their explanations" in rec and "because you" in rec
    # predictions: the propensity comparison with ROC, gains and calibration; churn; uplift's
    # Qini (with the oracle's) and profit curves; CLV
    pred = sections(page)["predictions"]
    found = charts(pred)
    prop = result["predict"]["propensity"]
    assert card(pred, "Test ROC AUC") == f"{prop['test']['roc_auc']:.3f}"
    assert f"{prop['best']} ({prop['model_id']})" in pred
    rocs = [c for c in found if c.title == "ROC curve of the chosen model (test)"]
    assert len(rocs) == 2  # propensity and churn
    fpr, tpr = rocs[0].data[0]["x"], rocs[0].data[0]["y"]
    assert fpr[0] == 0 and fpr[-1] == 1 and tpr == sorted(tpr)
    # The area under the drawn (thinned) ROC curve is the reported AUC, to the thinning.
    area = sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(len(fpr) - 1))
    assert area == pytest.approx(prop["test"]["roc_auc"], abs=0.01)
    gains = next(c for c in found if c.title == "Cumulative gains (test)")
    assert gains.data[0]["y"][-1] == 1.0
    assert [c.title for c in found].count("Calibration (test): predicted against observed") == 2
    qini = chart_titled(found, "Qini curve (test)")
    assert [t["name"] for t in qini.data] == [
        result["predict"]["uplift"]["best"],
        "Oracle (true uplift)",
        "Random",
    ]
    profit = chart_titled(found, "Targeting profit by share targeted (test)")
    assert [t["name"] for t in profit.data] == ["Expected", "Observed"]
    chart_titled(found, "Expected CLV per customer")
    html = sections(page)["profiles"]
    assert card(html, "Users profiled") == f"{profiles['users']:,}"
    chart_titled(charts(html), "RFM segments")
