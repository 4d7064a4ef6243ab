"""The end-to-end demo: simulate, ingest, clean, report — in process. (The demo command, one
JSON object and its files in --out, is tested with the report it writes: tests/report/
test_profile_report.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jingzhun.demo import run_demo
from jingzhun.workspace import Workspace
from tests.conftest import DemoRun

pytestmark = pytest.mark.slow


def _expected(out: Path) -> dict[str, int]:
    """What the ground truth says ingest must do with the dirty event rows."""
    column = pq.read_table(out / "data" / "truth" / "dirty_rows.parquet", columns=["expected"])
    values = column.column("expected").to_pylist()
    return {k: values.count(k) for k in ("quarantined", "duplicate")}


@pytest.fixture
def demo(demo_run: DemoRun) -> DemoRun:
    """The demo run once for the session (tests/conftest.py; the web tests read it too)."""
    return demo_run


def test_run_demo_ingests_cleans_and_reports(demo: DemoRun) -> None:
    out, result = demo.out, demo.result

    report, store = Path(result["report"]), Path(result["store"])
    assert report.is_file() and store.is_file()
    assert report == out / "report.html" and store == out / "jingzhun.duckdb"
    page = report.read_text(encoding="utf-8")
    for key in (
        "overview",
        "activity",
        "ingest",
        "quality",
        "identity",
        "profiles",
        "segments",
        "recommendations",
        "predictions",
    ):
        assert f'<section id="{key}">' in page
    pred = result["predict"]
    assert pred["propensity"]["best"] in pred["propensity"]["compared"]
    assert len(pred["propensity"]["compared"]) == 5
    assert 0.5 < pred["propensity"]["test"]["roc_auc"] < 1
    with Workspace.open(result["store"], read_only=True) as ws:
        kinds = dict(ws.store.rows("SELECT score, count(*) FROM scores GROUP BY 1"))
        tags = {r[0] for r in ws.store.rows("SELECT DISTINCT tag FROM tags WHERE source = 'model'")}
    assert set(kinds) == {"propensity", "churn", "clv", "expected_orders", "p_alive", "uplift"}
    assert tags == {"likely_to_buy", "churn_risk", "persuadable"}
    for name in ("events", "users", "items", "campaigns"):
        assert Path(result["data"][name]).is_file()

    ingest = result["ingest"]
    assert set(ingest) == {"items", "users", "events"}
    for kind, batch in ingest.items():
        assert (
            batch["rows_read"] == batch["inserted"] + batch["duplicates"] + batch["quarantined"]
        ), kind
        assert batch["inserted"] > 0, kind
    events = ingest["events"]
    assert events["rows_read"] == pq.read_metadata(result["data"]["events"]).num_rows
    truth = _expected(out)
    assert truth["quarantined"] > 0 and truth["duplicate"] > 0
    assert events["quarantined"] == truth["quarantined"]
    assert events["duplicates"] == truth["duplicate"]
    assert result["simulated"]["users"] == 1500

    # the summary and the cleaning numbers are those of the store left behind
    with Workspace.open(store, read_only=True) as ws:
        summary = ws.summary()
        assert summary["tables"] == result["summary"]["tables"]
        # the shop's files, then each campaign's answers (opens, clicks, orders) as events
        answered = sum(c["responses"]["events"] for c in result["campaigns"])
        assert summary["tables"]["events"] == events["inserted"] + answered
        assert summary["tables"]["ingest_batches"] == 3 + len(result["campaigns"])
        flags = dict(
            ws.sql("SELECT flag, count(*) AS n FROM event_flags GROUP BY 1").itertuples(index=False)
        )
    flagged = {k: v for k, v in result["cleaning"]["flagged"].items() if v}
    assert flags == flagged
    assert result["cleaning"]["burst_visitors"] > 0
    assert set(result["seconds"]) >= {"simulate the shop", "ingest events", "HTML report"}

    # segments: the RFM run and an automatic-k behaviour run, both active, every user a member
    seg = result["segments"]
    assert set(seg) == {"rfm", "behaviour"}
    assert 2 <= seg["behaviour"]["segments"] <= 10
    assert len(set(seg["behaviour"]["labels"].values())) == seg["behaviour"]["segments"]
    with Workspace.open(store, read_only=True) as ws:
        runs = ws.segment_runs()
        assert set(runs[runs.active]["name"]) == {"rfm", "behaviour"}
        profiled = ws.store.count("profiles")
        for name in ("rfm", "behaviour"):
            assert len(ws.segment_members(name)) == profiled

    # recommendations: models compared offline, the tuned hybrid trained, a list for every user
    rec = result["recommend"]
    compared = rec["compared"]
    assert set(compared) == {"popularity", "itemknn", "als", "ease", "content", "hybrid"}
    for name, metrics in compared.items():
        assert all(0.0 <= v <= 1.0 for v in metrics.values()), name
    best = rec["best_offline"]
    assert compared[best]["ndcg"] > compared["popularity"]["ndcg"]
    assert rec["model"] == "hybrid-1"
    assert set(rec["validation"]["weights"]) >= {"itemknn", "popularity"}
    with Workspace.open(store, read_only=True) as ws:
        users, rows, ranks = ws.store.sql(
            "SELECT count(DISTINCT user_id), count(*), max(rank) FROM recommendations"
        ).fetchall()[0]
        known = ws.store.scalar("SELECT count(*) FROM users")
    assert rows == rec["rows"] and ranks == 10
    assert users >= known
    example = rec["example"]
    assert example is not None and example["items"]
    assert any(i["explanation"].startswith("because you") for i in example["items"])
    assert "Recommendations" in page and "Model comparison" in page

    # the closed loop: two campaigns of one size, sent, answered by the simulated customers
    # and measured; each measured interval is checked against the simulator's true effect
    campaigns = {c["targeting"]: c for c in result["campaigns"]}
    assert set(campaigns) == {"random", "uplift"}
    sizes = {c["sent"] + c["control"] for c in campaigns.values()}
    assert len(sizes) == 1 and sizes.pop() >= 200
    for c in campaigns.values():
        assert c["sent"] > 0 and c["control"] > 0
        assert c["ci_low"] <= c["lift"] <= c["ci_high"]
        assert c["ci_low"] <= c["true_effect"] <= c["ci_high"], c
        assert c["true_effect"] > 0
    json.dumps(result)  # plain data, ready for --json


def test_run_demo_twice_into_the_same_folder_replaces_the_store(
    demo: DemoRun, tmp_path: Path
) -> None:
    out = tmp_path / "demo"
    shutil.copytree(demo.out, out)  # the first run's folder, as it left it
    first = demo.result
    second = run_demo(out, users=1500, seed=1)
    assert Path(second["store"]) == out / Path(first["store"]).name
    # a new store, not the old one with everything ingested twice
    assert second["ingest"]["events"]["inserted"] == first["ingest"]["events"]["inserted"]
    assert second["ingest"]["events"]["duplicates"] == first["ingest"]["events"]["duplicates"]
    assert second["summary"]["tables"] == first["summary"]["tables"]
    assert second["summary"]["tables"]["ingest_batches"] == 5
    batch_ids = {b["batch_id"] for b in second["ingest"].values()}
    batch_ids |= {c["responses"]["batch_id"] for c in second["campaigns"]}
    with Workspace.open(Path(second["store"]), read_only=True) as ws:
        stored = {r[0] for r in ws.store.sql("SELECT batch_id FROM ingest_batches").fetchall()}
    assert stored == batch_ids
    assert Path(second["report"]).is_file()


def test_too_few_users_is_refused_before_any_work(tmp_path) -> None:
    """Issue 12: --users 10 ran for seconds and ended in a scikit-learn traceback."""
    from jingzhun.errors import InputError

    with pytest.raises(InputError, match=r"^--users must be at least 800"):
        run_demo(tmp_path / "d", users=10)
    assert not (tmp_path / "d").exists()
