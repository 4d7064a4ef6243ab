"""The segment stage's command line, run as a real subprocess on real DuckDB files.

``segment run|list|show|export|assign`` on the simulated shop. Conventions (DESIGN.md, "CLI
conventions"): ``--json`` prints exactly one JSON object on stdout; exit codes 0 ok, 2 bad
input; an error is one line on stderr starting with ``error:`` naming the option or value at
fault, and nothing is written.

The shop is ingested and profiled once per module, in process (that is not what is tested here);
the successful commands run once, one after another, on a copy of that store; every failing
command gets a copy of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from jingzhun.config import Settings
from jingzhun.store import Store
from jingzhun.workspace import Workspace
from tests.cli.subprocess_cli import (
    Ran,
    copy_store,
    error_line,
    human,
    one_json,
    run,
    snapshot,
    sql,
)

RUN_KEYS = {
    "run_id",
    "name",
    "method",
    "users",
    "segments",
    "params",
    "features",
    "metrics",
    "portraits",
    "seconds",
}
PORTRAIT_KEYS = {
    "segment",
    "label",
    "users",
    "share",
    "revenue_share",
    "traits",
    "top_categories",
}
LIST_KEYS = {
    "run_id",
    "name",
    "method",
    "active",
    "users",
    "segments",
    "silhouette",
    "stability",
    "created_at",
}


# -- the stores ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(shop, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An empty store, and the shop ingested with profiles built."""
    folder = tmp_path_factory.mktemp("segment_stores")
    settings = Settings()
    empty = folder / "empty.duckdb"
    Store.open(empty, settings).close()
    profiled = folder / "profiled.duckdb"
    with Workspace(Store.open(profiled, settings), settings) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [shop.file(kind)])
        ws.profile_build()
    return {"empty": empty, "profiled": profiled}


@pytest.fixture(scope="module")
def session(stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """The successful commands, one after another on one copy of the profiled store."""
    folder = tmp_path_factory.mktemp("segment_session")
    db = copy_store(stores["profiled"], folder)
    ran: dict[str, Ran] = {}

    def do(key: str, *args: str) -> None:
        ran[key] = run(folder, *args, db=db)

    do(
        "run",
        *("segment", "run", "--method", "kmeans", "--k", "3", "--name", "value"),
        *("--stability", "0", "--json"),
    )
    do("list", "segment", "list", "--json")
    do("show", "segment", "show", "value", "--json")
    do("export", "segment", "export", "value", "--out", "out/members.csv")
    do("export_json", "segment", "export", "--out", "members.parquet", "--json")
    # some members go missing (as if profiled after the run): assign places them again
    con = duckdb.connect(str(db))
    try:
        con.execute("CREATE TABLE gone AS SELECT user_id, segment FROM segment_members")
        con.execute("DELETE FROM gone WHERE hash(user_id) % 10 <> 0")
        con.execute("DELETE FROM segment_members WHERE user_id IN (SELECT user_id FROM gone)")
    finally:
        con.close()
    do("assign", "segment", "assign", "value", "--json")
    do("assign_again", "segment", "assign", "--json")
    do("rfm", "segment", "run", "--method", "rfm")
    do("show_human", "segment", "show", "value")
    do("list_human", "segment", "list")
    ran["db"] = Ran(0, str(db), "", folder)
    return ran


# -- segment run -------------------------------------------------------------------------------


def test_run_json_is_one_object_with_the_run_its_metrics_and_portraits(session) -> None:
    result = one_json(session["run"])
    db = Path(session["db"].stdout)
    assert set(result) == RUN_KEYS
    ((users,),) = sql(db, "SELECT count(*) FROM profiles")
    assert result["run_id"] == "value-1"
    assert (result["name"], result["method"]) == ("value", "kmeans")
    assert result["users"] == users > 0
    assert result["segments"] == 3
    assert result["params"]["k"] == 3
    assert isinstance(result["features"], list) and result["features"]
    metrics = result["metrics"]
    for key in ("silhouette", "calinski_harabasz", "davies_bouldin"):
        assert isinstance(metrics[key], int | float), key
    assert -1 <= metrics["silhouette"] <= 1
    assert metrics["calinski_harabasz"] > 0 and metrics["davies_bouldin"] > 0
    assert "stability_ari" not in metrics  # --stability 0
    portraits = result["portraits"]
    assert [p["segment"] for p in portraits] == ["1", "2", "3"]
    for p in portraits:
        assert set(p) == PORTRAIT_KEYS
        assert set(p["traits"]) == set(result["features"])
        assert isinstance(p["label"], str) and p["label"]
    assert sum(p["users"] for p in portraits) == users
    assert sum(p["share"] for p in portraits) == pytest.approx(1.0)
    assert len({p["label"] for p in portraits}) == 3
    assert isinstance(result["seconds"], int | float) and result["seconds"] >= 0
    # what it printed is what it stored
    assert sql(db, "SELECT users, segments, active FROM segment_runs WHERE name = 'value'") == [
        (users, 3, True)
    ]


def test_run_rfm_in_human_form(session) -> None:
    text = human(session["rfm"])
    assert "Run rfm-1:" in text
    assert "segments by rfm" in text
    assert "No orders yet" in text


# -- segment list / show -------------------------------------------------------------------------


def test_list_json(session) -> None:
    listed = one_json(session["list"])
    assert set(listed) == {"runs"}
    (row,) = listed["runs"]
    assert set(row) == LIST_KEYS
    run = one_json(session["run"])
    assert row["run_id"] == "value-1" and row["name"] == "value" and row["active"] is True
    assert (row["users"], row["segments"]) == (run["users"], 3)
    assert row["silhouette"] == pytest.approx(run["metrics"]["silhouette"])
    assert row["stability"] is None


def test_list_human_shows_both_runs_newest_first(session) -> None:
    text = human(session["list_human"])
    assert "rfm-1" in text and "value-1" in text
    assert text.index("rfm-1") < text.index("value-1")


def test_show_json_has_the_run_and_its_portraits(session) -> None:
    shown = one_json(session["show"])
    run = one_json(session["run"])
    assert shown["run_id"] == "value-1" and shown["active"] is True
    assert shown["method"] == "kmeans" and shown["features"] == run["features"]
    assert shown["params"] == run["params"]
    assert shown["metrics"] == run["metrics"]
    assert (shown["users"], shown["segments"]) == (run["users"], run["segments"])
    assert shown["portraits"] == run["portraits"]
    assert {"as_of", "created_at"} <= set(shown)


def test_show_human_names_the_segments_and_their_z_scores(session) -> None:
    text = human(session["show_human"])
    run = one_json(session["run"])
    assert "value-1" in text and "kmeans" in text
    assert "z-score" in text
    for feature in run["features"]:
        assert feature in text
    # labels may wrap in the table: compare their words
    words = set(text.split())
    for p in run["portraits"]:
        assert set(p["label"].split()) <= words, p["label"]


# -- segment export / assign ---------------------------------------------------------------------


def test_export_csv_writes_one_row_per_member(session) -> None:
    res = session["export"]
    text = human(res)
    run = one_json(session["run"])
    assert f"Wrote {run['users']:,} members to out/members.csv" in text
    df = pd.read_csv(res.folder / "out" / "members.csv", dtype={"segment": str})
    assert list(df.columns) == ["user_id", "segment", "label", "fitted"]
    assert len(df) == run["users"] and df.user_id.is_unique
    labels = {p["segment"]: p["label"] for p in run["portraits"]}
    assert (df.label == df.segment.map(labels)).all()
    assert df.fitted.all()
    assert df.segment.value_counts().to_dict() == {
        p["segment"]: p["users"] for p in run["portraits"]
    }


def test_export_json_defaults_to_the_latest_run(session) -> None:
    res = session["export_json"]
    out = one_json(res)
    assert out == {"out": "members.parquet", "rows": one_json(session["run"])["users"]}
    assert len(pd.read_parquet(res.folder / "members.parquet")) == out["rows"]


def test_assign_places_the_missing_members_with_the_stored_model(session) -> None:
    db = Path(session["db"].stdout)
    gone = dict(sql(db, "SELECT user_id, segment FROM gone"))
    assert 0 < len(gone) < 1000
    result = one_json(session["assign"])
    assert result["run_id"] == "value-1"
    assert result["assigned"] == len(gone)
    assert sum(result["segments"].values()) == len(gone)
    back = dict(
        sql(
            db,
            "SELECT user_id, segment FROM segment_members WHERE run_id = 'value-1' AND NOT fitted",
        )
    )
    assert back == gone  # k-means: the stored model gives the fitted segments back
    ((members, fitted),) = sql(
        db,
        "SELECT count(*), count(*) FILTER (fitted) FROM segment_members WHERE run_id = 'value-1'",
    )
    assert (members, fitted) == (one_json(session["run"])["users"], members - len(gone))
    again = one_json(session["assign_again"])
    assert again == {"run_id": "value-1", "assigned": 0, "segments": {}}


# -- bad input -----------------------------------------------------------------------------------

BAD = [
    # (store, args, needles in the error line)
    (
        "profiled",
        ("segment", "run", "--features", "aov,monetry", "--json"),
        ("--features", "'monetry'", "did you mean 'monetary'?"),
    ),
    ("profiled", ("segment", "run", "--features", "aov, aov"), ("--features", "'aov'", "twice")),
    ("profiled", ("segment", "run", "--k", "1", "--json"), ("--k 1",)),
    ("profiled", ("segment", "run", "--k", "abc"), ("--k 'abc'",)),
    ("profiled", ("segment", "run", "--method", "dbscan", "--k", "3"), ("--k", "--method dbscan")),
    ("profiled", ("segment", "run", "--method", "spectral"), ("--method 'spectral'",)),
    ("profiled", ("segment", "run", "--pca", "1.5"), ("--pca 1.5",)),
    ("profiled", ("segment", "run", "--k-range", "ten"), ("--k-range 'ten'",)),
    ("profiled", ("segment", "run", "--name", "my segments"), ("--name 'my segments'",)),
    ("profiled", ("segment", "assign", "--json"), ("no segment runs yet",)),
    ("profiled", ("segment", "show", "nope", "--json"), ("'nope'",)),
    ("profiled", ("segment", "export", "--out", "m.json"), ("no segment runs yet",)),
    ("empty", ("segment", "run", "--k", "3", "--json"), ("no profiles yet", "profile build")),
    ("empty", ("segment", "run", "--method", "rfm"), ("no profiles yet",)),
]


BAD_IDS = [f"{s}:{' '.join(a[1:])}" for s, a, _ in BAD]


@pytest.fixture(scope="module")
def refused(
    stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Ran, dict[str, int], dict[str, int]]]:
    """Every bad command on a copy of its store, two at a time: (result, counts before, after)."""
    base = tmp_path_factory.mktemp("segment_refused")

    def one(i: int) -> tuple[Ran, dict[str, int], dict[str, int]]:
        store, args, _ = BAD[i]
        folder = base / f"job{i}"
        db = copy_store(stores[store], folder)
        before = snapshot(db)
        res = run(folder, *args, db=db)
        return res, before, snapshot(db)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(BAD_IDS, pool.map(one, range(len(BAD))), strict=True))


@pytest.mark.parametrize(
    ("case", "needles"), [(i, n) for i, (_, _, n) in zip(BAD_IDS, BAD, strict=True)], ids=BAD_IDS
)
def test_bad_input_exits_2_with_one_error_line_and_writes_nothing(
    refused, case: str, needles: tuple[str, ...]
) -> None:
    res, before, after = refused[case]
    error_line(res, *needles)
    assert after == before
    assert not list(res.folder.glob("m.json*"))


def test_show_and_export_errors_on_a_store_with_runs(
    session, cli: Callable[..., Any], tmp_path: Path
) -> None:
    db = copy_store(Path(session["db"].stdout), tmp_path / "store")
    before = snapshot(db)
    res = cli("--db", str(db), "segment", "show", "nope")
    line = error_line(res, "'nope'")
    assert "known names: " in line and "value" in line and "rfm" in line
    res = cli("--db", str(db), "segment", "export", "value", "--out", "m.json")
    error_line(res, "--out", "m.json", ".parquet or .csv")
    assert not (tmp_path / "m.json").exists()
    assert snapshot(db) == before


def test_a_k_range_beyond_the_users_is_a_usage_error(
    stores: dict[str, Path], cli: Callable[..., Any], tmp_path: Path
) -> None:
    db = copy_store(stores["profiled"], tmp_path / "store")
    ((users,),) = sql(db, "SELECT count(*) FROM profiles")
    res = cli("--db", str(db), "segment", "run", "--k-range", f"{users + 1}-{users + 5}")
    error_line(res, "--k-range")


# -- numbers (issue 12) --------------------------------------------------------------------------

#: (args after `segment run`, needles): tracebacks, and hangs of hours, before; each is now
#: refused before any work, in one line naming the option and the range it allows.
NUMBERS = [
    (("--k-range", "2-100000"), ("--k-range 2-100000", "MAX <= 100")),
    (("--stability", "100000"), ("--stability must be between 0 and 100, not 100,000",)),
    (("--seed", "-1"), ("--seed must be between 0 and 4,294,967,295, not -1",)),
    (("--method", "dbscan", "--eps", "0"), ("--eps must be above 0", "not 0")),
    (("--method", "dbscan", "--eps", "nan"), ("--eps must be a finite number", "not nan")),
    (("--method", "som", "--grid", "100000"), ("--grid must be between 2 and 100",)),
    # bounded by the users: at most one SOM node per user, neighbours among the users fitted
    (("--method", "som", "--grid", "100"), ("--grid must be between 2 and", "one node per user")),
    (
        ("--method", "dbscan", "--min-samples", "100000"),
        ("--min-samples must be between 2 and", "not 100,000", "users"),
    ),
    (
        ("--method", "hdbscan", "--min-samples", "100000"),
        ("--min-samples must be between 2 and", "not 100,000", "users"),
    ),
    (
        ("--method", "hdbscan", "--min-cluster-size", "100000"),
        ("--min-cluster-size must be between 2 and", "not 100,000"),
    ),
]
NUMBER_IDS = [" ".join(args) for args, _ in NUMBERS]


@pytest.fixture(scope="module")
def refused_numbers(
    stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Ran, float, dict[str, int], dict[str, int]]]:
    """Each case on a copy of the profiled store, two at a time: (result, seconds, counts
    before, after)."""
    import subprocess
    import time

    base = tmp_path_factory.mktemp("segment_numbers")

    def one(i: int) -> tuple[Ran, float, dict[str, int], dict[str, int]]:
        args, _ = NUMBERS[i]
        folder = base / f"job{i}"
        db = copy_store(stores["profiled"], folder)
        before = snapshot(db)
        started = time.perf_counter()
        try:
            res = run(folder, "segment", "run", *args, db=db)
        except subprocess.TimeoutExpired:  # a hang fails its own case, not the others
            res = Ran(-1, "", "timed out", folder)
        return res, time.perf_counter() - started, before, snapshot(db)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(NUMBER_IDS, pool.map(one, range(len(NUMBERS))), strict=True))


@pytest.mark.parametrize(
    ("case", "needles"), [(i, n) for i, (_, n) in zip(NUMBER_IDS, NUMBERS, strict=True)]
)
def test_numbers_out_of_bounds_are_refused_before_any_work(
    refused_numbers, case: str, needles: tuple[str, ...]
) -> None:
    res, seconds, before, after = refused_numbers[case]
    error_line(res, *needles)
    assert after == before
    assert seconds < 60, f"{case} took {seconds:.0f}s: refused only after some work?"
