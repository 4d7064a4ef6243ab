"""The HTML report: one self-contained file with the store's numbers and working charts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import plotly
import plotly.offline
import pytest

from jingzhun.errors import InputError
from jingzhun.workspace import Workspace

CHROMIUM = "/usr/bin/chromium"
#: With events ingested and no profile built yet: the profile section waits for a build.
SECTION_IDS = ["overview", "activity", "ingest", "quality", "identity", "behaviour"]


def _section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([a-z_]+)"', page)


def _card(page: str, label: str) -> str:
    """The value shown on the overview card labelled ``label``."""
    match = re.search(
        r'<div class="label">' + re.escape(label) + r'</div><div class="value">([^<]*)</div>', page
    )
    assert match, f"no card {label!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def shop_ws(shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """A store with the simulated shop ingested (shared by this module's tests, read only)."""
    path = tmp_path_factory.mktemp("report") / "shop.duckdb"
    ws = Workspace.open(path)
    for kind in ("items", "users", "events"):
        ws.ingest(kind, [shop.file(kind)])
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture(scope="module")
def report_en(shop_ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report_en") / "nested" / "report.html"
    written = shop_ws.report(out)
    assert written == out
    return out


def test_report_is_one_self_contained_file(report_en: Path) -> None:
    assert report_en.is_file()
    # written atomically: no temp file left beside it
    assert sorted(p.name for p in report_en.parent.iterdir()) == ["report.html"]
    page = report_en.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in page
    # plotly.js inlined once, byte for byte
    js = plotly.offline.get_plotlyjs()
    assert page.count(js) == 1
    # nothing is fetched from the network: no external script, style sheet, image or frame
    external = re.findall(
        r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page, re.I
    )
    assert external == []
    assert not re.search(r"<script\b[^>]*\bsrc\s*=", page, re.I)


def test_report_has_every_section_with_the_store_numbers(
    shop_ws: Workspace, report_en: Path
) -> None:
    page = report_en.read_text(encoding="utf-8")
    assert _section_ids(page) == SECTION_IDS
    for key in SECTION_IDS:
        assert f'href="#{key}"' in page  # the contents bar links each section
    assert "<h2>Overview</h2>" in page
    assert "<h2>Data quality</h2>" in page
    s = shop_ws.summary()
    tables = s["tables"]
    assert tables["events"] > 1000  # so the thousands separator shows
    assert _card(page, "Events") == f"{tables['events']:,}"
    assert _card(page, "Users") == f"{tables['users']:,}"
    assert _card(page, "Items") == f"{tables['items']:,}"
    assert _card(page, "Linked devices") == f"{tables['identities']:,}"
    assert _card(page, "Rows in quarantine") == f"{s['quarantine_open']:,}"
    orders = shop_ws.store.sql(
        "SELECT count(DISTINCT order_id) FROM events WHERE event = 'order_completed'"
    ).fetchone()[0]
    assert _card(page, "Orders") == f"{orders:,}"
    assert _card(page, "Period") == f"{s['events_from'][:10]} – {s['events_to'][:10]}"
    # the ingest section lists each batch
    for batch_id in shop_ws.store.sql("SELECT batch_id FROM ingest_batches").fetchall():
        assert batch_id[0] in page
    # every chart is a Plotly div with its data inline
    assert page.count('class="plotly-graph-div"') >= 5
    assert str(shop_ws.path) in page


def test_chinese_report_has_chinese_headings(shop_ws: Workspace, tmp_path: Path) -> None:
    out = shop_ws.report(tmp_path / "report.zh.html", lang="zh")
    page = out.read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in page
    assert _section_ids(page) == SECTION_IDS
    for heading in ("概览", "行为趋势", "数据接入", "数据质量", "身份打通", "行为分析"):
        assert f"<h2>{heading}</h2>" in page
    assert "<title>精准营销数据报告</title>" in page
    assert _card(page, "事件") == f"{shop_ws.store.count('events'):,}"
    assert "<h2>Overview</h2>" not in page


def test_empty_store_still_renders_the_overview(ws: Workspace, tmp_path: Path) -> None:
    out = ws.report(tmp_path / "empty.html", title="Nothing yet")
    page = out.read_text(encoding="utf-8")
    assert _section_ids(page) == ["overview"]
    assert "<title>Nothing yet</title>" in page
    assert _card(page, "Events") == "0"
    assert _card(page, "Period") == "–"
    assert page.count(plotly.offline.get_plotlyjs()) == 1


def test_unknown_language_is_an_input_error_and_writes_nothing(
    ws: Workspace, tmp_path: Path
) -> None:
    out = tmp_path / "fr.html"
    with pytest.raises(InputError, match="'fr'") as info:
        ws.report(out, lang="fr")
    assert "en" in str(info.value) and "zh" in str(info.value)
    assert not out.exists()
    assert list(tmp_path.glob("fr.html*")) == []


def test_report_to_an_unwritable_place_is_an_input_error(ws: Workspace, tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="cannot write the report"):
        ws.report(blocker / "report.html")  # a file where a folder should be


def test_report_to_the_current_folder_is_an_input_error(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError):
        ws.report(Path("."))


def test_report_charts_render_in_headless_chromium(report_en: Path, tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        # CI installs Chromium (.ci/run) and sets this, so there a missing browser fails.
        if os.environ.get("JINGZHUN_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium package")
        pytest.skip("needs Chromium at /usr/bin/chromium (apt-get install chromium)")
    page = report_en.read_text(encoding="utf-8")
    charts = page.count('class="plotly-graph-div"')
    assert charts >= 5
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
            "--dump-dom",
            report_en.resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-2000:]
    dom = proc.stdout.decode("utf-8", "replace")
    # Plotly ran offline and drew every chart: each div got its plot container and SVG
    assert dom.count('class="plot-container plotly"') == charts
    assert dom.count('class="main-svg"') >= charts
    assert "<h2>Overview</h2>" in dom


def test_refunds_and_custom_events_are_shown(ws: Workspace, tmp_path: Path) -> None:
    """A log with refunds shows revenue net of them beside what was refunded; custom events
    from a Segment source are listed, to be mapped."""
    data = Path(__file__).resolve().parents[1] / "data"
    ws.ingest.files(
        "events",
        [data / "online_retail.csv"],
        mapping={
            "InvoiceNo": "order_id",
            "StockCode": "item_id",
            "Quantity": "quantity",
            "InvoiceDate": "ts",
            "UnitPrice": "price",
            "CustomerID": "user_id",
        },
        constants={"event": "order_completed"},
        ts_format="%m/%d/%Y %H:%M",
        returns=["cancel-prefix=C", "negative-quantity"],
    )
    ws.ingest.files("events", [data / "segment_shop.jsonl"])
    sold, refunded = ws.store.rows(
        "SELECT sum(revenue) FILTER (WHERE event = 'order_completed'), "
        "sum(revenue) FILTER (WHERE event = 'order_refunded') FROM events"
    )[0]
    assert refunded > 0
    page = ws.report(tmp_path / "r.html").read_text(encoding="utf-8")
    assert _card(page, "Refunded") == f"{refunded:,.2f}"
    assert _card(page, "Revenue, net of refunds") == f"{sold - refunded:,.2f}"
    assert "Custom events, left out of analytics until mapped" in page
    assert re.search(r"<td>video_played</td><td class=num>4</td>", page)
