"""What the command line says beside its answer, run as a real subprocess on a small shop.

Defects found running the tour, each checked here:

* a default segment feature that is constant (no catalog: no prices) is dropped with a warning
  on stderr and ``dropped_features`` in ``--json``, not an error;
* ``predict train`` printed the same third-party deprecation warning about 150 times: each
  distinct warning is said once, and Ibis' ``fetch_arrow_table()`` one not at all;
* ``report`` took no ``--json``;
* ``recommend session`` ignored unknown item ids without a word, and ``predict uplift`` left out
  thousands of unknown users saying so only in ``--json``: both say it on stderr and count it;
* cold-start ``recommend show`` printed scores of ``1e-06`` and ``0``; ``clean`` put outlier
  orders beside flagged order lines without saying which was which; HDBSCAN portraits showed
  an empty top-categories cell.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from jingzhun.cli.common import distinct_warnings
from jingzhun.synth import SynthConfig, simulate
from tests.cli.subprocess_cli import Ran, copy_store, human, one_json, run

#: The demo's smallest shop (the size tests/test_demo.py runs): quick, and every stage runs.
USERS = 800


def _copy(src: Path, folder: Path) -> Path:
    """A copy of the store, with its model folder if it keeps one beside it."""
    db = copy_store(src, folder)
    models = src.with_name(src.name + ".models")
    if models.exists():
        shutil.copytree(models, db.with_name(db.name + ".models"))
    return db


def warning_lines(res: Ran) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("warning:")]


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("notices_shop")
    simulate(SynthConfig(users=USERS, seed=0)).write(folder)
    return folder


@pytest.fixture(scope="module")
def trained(shop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shop ingested through the CLI, profiled, with a recommender trained."""
    db = tmp_path_factory.mktemp("notices_store") / "store.duckdb"
    for kind in ("items", "users", "events"):
        one_json(run(db.parent, "ingest", kind, str(shop_dir / f"{kind}.parquet"), "--json", db=db))
    one_json(run(db.parent, "profile", "build", "--json", db=db))
    one_json(run(db.parent, "recommend", "train", "--json", db=db))
    return db


# -- segment run: a constant default feature -----------------------------------------------------


def test_a_constant_default_feature_is_dropped_with_a_warning(
    shop_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "no_catalog.duckdb"
    for kind in ("users", "events"):  # no items: no prices, no categories
        one_json(run(tmp_path, "ingest", kind, str(shop_dir / f"{kind}.parquet"), "--json", db=db))
    one_json(run(tmp_path, "profile", "build", "--json", db=db))
    res = run(tmp_path, "segment", "run", "--method", "kmeans", "--stability", "0", "--json", db=db)
    result = one_json(res)
    assert result["dropped_features"] == ["price_percentile", "affinity_concentration"]
    assert not set(result["dropped_features"]) & set(result["features"])
    (line,) = warning_lines(res)
    assert "price_percentile, affinity_concentration" in line and "--features" in line
    human_run = human(run(tmp_path, "segment", "run", "--stability", "0", db=db))
    assert "Run kmeans-2" in human_run


# -- predict train: each warning once ----------------------------------------------------------


def test_distinct_warnings_are_said_once_with_their_count(capsys) -> None:
    with distinct_warnings():
        for _ in range(3):
            warnings.warn("lbfgs did not converge", UserWarning, stacklevel=1)
        warnings.warn("another thing", RuntimeWarning, stacklevel=1)
        for _ in range(150):  # as Ibis' DuckDB backend warns, once per table it looks up
            warnings.warn_explicit(
                "fetch_arrow_table() is deprecated, use to_arrow_table() instead.",
                DeprecationWarning,
                "ibis/backends/duckdb/__init__.py",
                332,
                module="ibis.backends.duckdb",
            )
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: lbfgs did not converge (3 times)", "warning: another thing"]


def test_only_ibis_own_deprecation_is_left_out(capsys) -> None:
    # the same words from any other module (our own code, say) are still said
    with distinct_warnings():
        warnings.warn_explicit(
            "fetch_arrow_table() is deprecated, use to_arrow_table() instead.",
            DeprecationWarning,
            "jingzhun/store/store.py",
            1,
            module="jingzhun.store.store",
        )
    assert capsys.readouterr().err.splitlines() == [
        "warning: fetch_arrow_table() is deprecated, use to_arrow_table() instead."
    ]


def test_nothing_is_said_when_the_block_fails(capsys) -> None:
    with pytest.raises(KeyError), distinct_warnings():
        warnings.warn("half-way", UserWarning, stacklevel=1)
        raise KeyError("x")
    assert capsys.readouterr().err == ""  # the error's one line stays alone


def test_predict_train_says_each_warning_once(trained: Path, tmp_path: Path) -> None:
    db = _copy(trained, tmp_path / "train")
    res = run(tmp_path, "predict", "train", "--models", "logistic,tree", "--json", db=db)
    one_json(res)
    assert "fetch_arrow_table" not in res.stderr
    lines = warning_lines(res)
    assert len(lines) == len(set(lines)), res.stderr


# -- report --json -------------------------------------------------------------------------------


def test_report_json_names_the_file_its_size_and_sections(trained: Path, tmp_path: Path) -> None:
    res = run(tmp_path, "report", "--out", "out/report.html", "--lang", "zh", "--json", db=trained)
    result = one_json(res)
    assert set(result) == {"path", "lang", "bytes", "sections"}
    path = Path(result["path"])
    assert path == (tmp_path / "out" / "report.html").resolve() and path.is_file()
    assert result["bytes"] == path.stat().st_size and result["lang"] == "zh"
    keys = [s["key"] for s in result["sections"]]
    assert keys[0] == "overview" and {"ingest", "profiles"} <= set(keys)
    assert len(keys) == len(set(keys))
    page = path.read_text(encoding="utf-8")
    for s in result["sections"]:
        assert f'<section id="{s["key"]}">' in page and s["title"] in page
    assert res.stderr == ""


# -- recommend session: unknown items ------------------------------------------------------------


def test_session_with_only_unknown_items_says_it_shows_popular_items(trained: Path) -> None:
    res = run(
        trained.parent, "recommend", "session", "sku999998", "sku999999", "--json", db=trained
    )
    result = one_json(res)
    assert result["unknown_items"] == ["sku999998", "sku999999"]
    assert len(result["items"]) == 10 and {i["reason"] for i in result["items"]} == {"popular"}
    (line,) = warning_lines(res)
    assert "none of the session's items is known" in line and "sku999998, sku999999" in line


def test_session_with_some_unknown_items_counts_them(trained: Path) -> None:
    known = "sku000001"
    args = ("recommend", "session", known, "nope-1", "--k", "5")
    res = run(trained.parent, *args, db=trained)
    assert "Next in this session" in human(res)
    (line,) = warning_lines(res)
    assert "1 of the 2 session items are not known" in line and "nope-1" in line
    result = one_json(run(trained.parent, *args, "--json", db=trained))
    assert result["unknown_items"] == ["nope-1"]
    ids = [i["item_id"] for i in result["items"]]
    assert len(ids) == 5 and known not in ids
    assert {i["reason"] for i in result["items"]} == {f"viewed:{known}"}  # the known one counts


def test_session_with_known_items_says_nothing_more(trained: Path) -> None:
    res = run(
        trained.parent, "recommend", "session", "sku000001", "sku000002", "--json", db=trained
    )
    assert set(one_json(res)) == {"items"}
    assert warning_lines(res) == []


# -- predict uplift: assignments from another shop --------------------------------------------------


def test_uplift_says_how_many_assigned_users_it_does_not_know(
    trained: Path, shop_dir: Path, tmp_path: Path
) -> None:
    db = _copy(trained, tmp_path / "uplift")
    campaign = pd.read_parquet(shop_dir / "campaigns.parquet")
    strangers = campaign.head(100).assign(user_id=[f"other-shop-{i}" for i in range(100)])
    mixed = pd.concat([campaign, strangers], ignore_index=True)
    mixed.to_parquet(tmp_path / "assignments.parquet")
    args = ("predict", "uplift", "--assignments", "assignments.parquet", "--models", "t_learner")
    res = run(tmp_path, *args, "--json", db=db)
    result = one_json(res)
    assert result["unknown_users"] >= len(strangers)
    (line,) = warning_lines(res)
    n = result["unknown_users"]
    assert f"{n:,} of the {len(mixed):,} users in --assignments are not known" in line
    assert "another shop" not in line  # most of them are known
    assert n + sum(result["rows"].values()) == len(mixed)
    text = human(run(tmp_path, *args, db=db))
    assert "t_learner" in text


# -- output that reads right ----------------------------------------------------------------------


def test_cold_start_shows_no_unreadable_scores(trained: Path) -> None:
    text = human(run(trained.parent, "recommend", "show", "someone-new", db=trained))
    assert "ranked by popularity" in text
    assert "1e-06" not in text and not re.search(r"│\s+0\s+│", text)
    result = one_json(run(trained.parent, "recommend", "show", "someone-new", "--json", db=trained))
    scores = [i["score"] for i in result["items"]]
    assert result["cold_start"] and all(s > 0 for s in scores)  # none rounded away to 0
    assert scores == sorted(scores, reverse=True)
    known = one_json(run(trained.parent, "recommend", "show", "u00000042", "--json", db=trained))
    if not known["cold_start"]:  # a user with history still sees scores
        text = human(run(trained.parent, "recommend", "show", "u00000042", db=trained))
        assert "score" in text


def test_clean_names_orders_and_order_lines(trained: Path, tmp_path: Path) -> None:
    db = _copy(trained, tmp_path / "clean")
    data = one_json(run(tmp_path, "clean", "--json", db=db))
    text = human(run(tmp_path, "clean", db=db))
    outliers = data["outliers"]["outliers"]
    assert f"{outliers:,} of {data['outliers']['orders']:,} orders" in text
    flagged = data["flagged"]
    lines = flagged["outlier_order"]
    if outliers:
        assert f"outlier_order {lines:,} order line" in text
        assert f"(of {outliers:,} outlier order" in text
    assert f"bot_burst {flagged['bot_burst']:,} event" in text


def test_hdbscan_portraits_say_when_a_segment_has_no_category(
    trained: Path, tmp_path: Path
) -> None:
    db = _copy(trained, tmp_path / "hdbscan")
    run_args = ("segment", "run", "--method", "hdbscan", "--name", "dense", "--stability", "0")
    result = one_json(run(tmp_path, *run_args, "--json", db=db))
    labels = [p["label"] for p in result["portraits"]]
    assert len(set(labels)) == len(labels)
    empty = [p for p in result["portraits"] if not p["top_categories"]]
    assert empty, "the shop's non-buyers make a segment without categories"
    text = human(run(tmp_path, "segment", "show", "dense", db=db))
    assert "(no category activity)" in text
