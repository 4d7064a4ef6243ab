"""The cleaning report on Spark (issue 19) equals DuckDB's: ``clean`` on the test shop's lake
runs the same Ibis definitions as on its store — the report field by field (counts exactly,
floats to 1e-9 relative) and the ``event_flags`` rows (event id, flag, detail) for mad and
iqr; a re-run replaces the flags (other kinds kept); ``--no-flag`` writes nothing; the command
line prints DuckDB's JSON; a bad option is one line and exit code 2, before Spark starts.

Spark's start is the slow part: everything runs on the shared session but one command-line
run (tests/spark/conftest.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ibis
import pyarrow.parquet as pq
import pytest

from jingzhun.config import CleanSettings
from jingzhun.errors import InputError
from jingzhun.ingest.clean import check_clean, clean_on_lake, run_settings
from jingzhun.store.lake import Lake, create_from_store
from jingzhun.workspace import Workspace
from tests.cli.subprocess_cli import copy_store, error_line, one_json, run, snapshot, sql
from tests.ingest.test_clean import HEADER, shop_rows
from tests.spark.compare import same
from tests.spark.conftest import copy_lake

#: The outlier tests compared, with thresholds at which the test shop has outlier orders
#: (at the defaults it has none: only bursts would be compared).
METHODS = {"mad": 2.0, "iqr": 1.0}

FlagRows = list[tuple[str, str, str]]


@dataclass
class Cleaned:
    """One clean on both engines: the reports (``to_dict()``) and the flags they wrote."""

    db: Path  # the store's copy, cleaned by DuckDB
    lake: Path  # the lake's copy, cleaned by Spark
    duck: dict[str, Any]
    spark: dict[str, Any]
    duck_flags: FlagRows
    spark_flags: FlagRows


def _store_flags(db: Path) -> FlagRows:
    return sql(db, "SELECT event_id, flag, detail FROM event_flags ORDER BY ALL")


def _lake_flags(lake: Path) -> FlagRows:
    rows = pq.read_table(lake / "event_flags", columns=["event_id", "flag", "detail"])
    return sorted((r["event_id"], r["flag"], r["detail"]) for r in rows.to_pylist())


def _clean_both(db: Path, lake: Path, folder: Path, session: Any, **options: Any) -> Cleaned:
    """``options`` (``ws.ingest.clean``'s) on a copy of the store ``db`` and of ``lake``."""
    flag = options.pop("flag", True)
    db = copy_store(db, folder / "store")
    with Workspace.open(db) as ws:
        duck = ws.ingest.clean(flag=flag, **options).to_dict()
    lake = copy_lake(lake, folder / "lake")
    with Lake.open(lake, session=session) as opened:
        spark = clean_on_lake(opened, run_settings(CleanSettings(), **options), flag=flag)
    flagged = (lake / "event_flags").exists()
    return Cleaned(
        db,
        lake,
        duck,
        spark.to_dict(),
        _store_flags(db),
        _lake_flags(lake) if flagged else [],
    )


@pytest.fixture(scope="module")
def cleaned(shop_pair, spark_session, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The test shop cleaned on both engines, once per method of :data:`METHODS`."""
    return {
        method: _clean_both(
            shop_pair.db,
            shop_pair.lake,
            tmp_path_factory.mktemp(f"clean-{method}"),
            spark_session,
            outlier_method=method,
            outlier_threshold=threshold,
        )
        for method, threshold in METHODS.items()
    }


def _files(folder: Path) -> list[tuple[str, int, int]]:
    """Every file under ``folder``: its path, size and modification time (hidden ones too)."""
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    )


# -- the report and the flags --------------------------------------------------------------------


@pytest.mark.parametrize("method", list(METHODS))
def test_the_report_on_spark_is_duckdbs(cleaned: dict, method: str) -> None:
    c = cleaned[method]
    assert same(c.spark, c.duck), json.dumps({"duckdb": c.duck, "spark": c.spark}, default=str)
    outliers = c.duck["outliers"]
    assert (outliers["method"], outliers["threshold"]) == (method, METHODS[method])
    assert outliers["outliers"] > 100 and outliers["high"] > 0 and len(outliers["examples"]) == 5
    assert c.duck["bursts"]["actors"] >= 2 and c.duck["duplicates"]["ingest"]["events"]
    assert {m["table"] for m in c.duck["missing"]} == {"events", "users", "items"}
    assert c.spark["flagged"] == c.duck["flagged"] and c.duck["flagged"]["outlier_order"] > 100


@pytest.mark.parametrize("method", list(METHODS))
def test_the_flags_on_spark_are_duckdbs(cleaned: dict, method: str) -> None:
    c = cleaned[method]
    assert len(c.spark_flags) == sum(c.duck["flagged"].values()) > 1_000
    assert c.spark_flags == c.duck_flags  # event id, flag and detail: every row, exactly
    details = {d for _, f, d in c.spark_flags if f == "outlier_order"}
    assert all(d.startswith("order ") and " worth " in d and "(score " in d for d in details)
    # the store's columns, from its migrations
    written = pq.read_table(c.lake / "event_flags")
    assert written.column_names == ["event_id", "flag", "detail", "flagged_at"]
    assert str(written.schema.field("flagged_at").type).startswith("timestamp")
    assert not [p for p in c.lake.iterdir() if p.name.startswith(".")]  # staging cleaned up


def test_a_handmade_shop_with_every_kind_of_flag(
    spark_session, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """test_clean's shop: a content duplicate, a 100,000 order, a bot; at an IQR threshold
    that makes outliers of orders on both sides of the box (negative scores too)."""
    folder = tmp_path_factory.mktemp("clean-handmade")
    csv = folder / "events.csv"
    csv.write_text(HEADER + "\n" + "\n".join(shop_rows()) + "\n", encoding="utf-8")
    db = folder / "shop.duckdb"
    with Workspace.open(db) as ws:
        ws.ingest("events", [str(csv)])
        create_from_store(ws.store, folder / "shop-lake")
    c = _clean_both(
        db,
        folder / "shop-lake",
        folder / "cleaned",
        spark_session,
        outlier_method="iqr",
        outlier_threshold=1e-9,
    )
    assert same(c.spark, c.duck)
    assert c.duck["flagged"] == {"outlier_order": 7, "bot_burst": 100, "content_duplicate": 1}
    assert c.spark_flags == c.duck_flags
    assert ("d2", "content_duplicate", "same visitor, event, item, order and time as d1") in (
        c.spark_flags
    )
    assert {d for _, f, d in c.spark_flags if f == "outlier_order"} >= {
        "order ordBIG worth 100000.0 (score 42.7)",
        "order ord2 worth 90.0 (score -0.5)",
    }


def test_a_rerun_replaces_the_flags_and_keeps_other_kinds(
    cleaned: dict, open_lake, tmp_path: Path
) -> None:
    first = cleaned["mad"]
    hand = ("evt_by_hand", "manual_review", "checked by hand")
    db = copy_store(first.db, tmp_path / "store")
    with Workspace.open(db) as ws:
        ws.store.run(
            "INSERT INTO event_flags VALUES (?, ?, ?, ?)", [*hand, datetime(2024, 1, 2, 3, 4)]
        )
        duck = ws.ingest.clean(outlier_method="mad", outlier_threshold=2.0).to_dict()
    lake = open_lake(copy_lake(first.lake, tmp_path / "lake"))
    flags = lake.table("event_flags")
    extra = ibis.memtable(
        {
            "event_id": [hand[0]],
            "flag": [hand[1]],
            "detail": [hand[2]],
            "flagged_at": [datetime(2024, 1, 2, 3, 4)],
        }
    ).cast(flags.schema())
    lake.write("event_flags", flags.union(extra, distinct=False))
    settings = run_settings(CleanSettings(), outlier_method="mad", outlier_threshold=2.0)
    spark = clean_on_lake(lake, settings).to_dict()
    assert spark["flagged"] == duck["flagged"] == first.duck["flagged"] | {"manual_review": 1}
    again = _lake_flags(tmp_path / "lake")
    assert again == sorted([*first.spark_flags, hand]) == _store_flags(db)  # replaced, not added
    assert len(again) == len(set(again))


def test_no_flag_writes_nothing(shop_pair, spark_session, tmp_path: Path) -> None:
    lake = copy_lake(shop_pair.lake, tmp_path / "lake")
    before = _files(lake)
    with Lake.open(lake, session=spark_session) as opened:
        spark = clean_on_lake(opened, CleanSettings(), flag=False).to_dict()
    assert _files(lake) == before  # no event_flags, no staging left behind
    db = copy_store(shop_pair.db, tmp_path / "store")
    with Workspace.open(db) as ws:
        duck = ws.ingest.clean(flag=False).to_dict()
        assert ws.store.count("event_flags") == 0
    assert spark["flagged"] == duck["flagged"] == {}
    assert same(spark, duck)
    assert not [t for t in spark_session.catalog.listTables() if t.name.startswith("_jz_clean")]


# -- the command line ----------------------------------------------------------------------------


def test_the_command_line_prints_duckdbs_json(cleaned: dict, shop_pair, tmp_path: Path) -> None:
    """The one command-line run on Spark: iqr at 1 (the module's other in-process run)."""
    args = ("clean", "--method", "iqr", "--threshold", "1", "--json")
    lake = copy_lake(shop_pair.lake, tmp_path / "lake")
    spark = one_json(run(tmp_path, "--engine", "spark", *args, db=lake))
    db = copy_store(shop_pair.db, tmp_path / "store")
    duck = one_json(run(tmp_path, *args, db=db))
    assert same(spark, duck), json.dumps({"duckdb": duck, "spark": spark})
    assert spark["flagged"] == cleaned["iqr"].duck["flagged"]
    assert _lake_flags(lake) == _store_flags(db) == cleaned["iqr"].duck_flags


def test_bad_options_on_a_lake_are_duckdbs_one_line(shop_pair, tmp_path: Path) -> None:
    """Checked before Spark starts (one line on stderr: no JVM's), and nothing written."""
    lake = copy_lake(shop_pair.lake, tmp_path / "lake")
    db = copy_store(shop_pair.db, tmp_path / "store")
    before, rows = _files(lake), snapshot(db)
    for option, needle in (
        (("--threshold", "inf"), "--threshold must be a finite number"),
        (("--remove", "bots"), "--remove 'bots' is not a flag"),
    ):
        on_lake = error_line(
            run(tmp_path, "--engine", "spark", "clean", *option, "--json", db=lake), needle
        )
        assert on_lake == error_line(run(tmp_path, "clean", *option, "--json", db=db), needle)
    error_line(
        run(tmp_path, "--engine", "spark", "clean", "--remove", "bot_burst", db=lake),
        "--remove does not run on --engine spark",
        "clean --remove on the store",
    )
    assert _files(lake) == before and snapshot(db) == rows


def test_the_checks_are_duckdbs() -> None:
    """In-process: the same errors on both engines; only --remove is refused on Spark."""
    for settings, remove, match in (
        (CleanSettings(), ("bots",), "--remove 'bots' is not a flag"),
        (run_settings(CleanSettings(), outlier_threshold=-1.0), (), "--threshold must be above 0"),
        (run_settings(CleanSettings(), burst_events_per_minute=0), (), "--burst must be between"),
        (run_settings(CleanSettings(), outlier_method="zscore"), (), "--method 'zscore'"),
    ):
        for engine in ("duckdb", "spark"):
            with pytest.raises(InputError, match=match):
                check_clean(settings, remove, engine=engine)
    check_clean(CleanSettings(), ("bot_burst",))
    with pytest.raises(InputError, match="--remove does not run on --engine spark") as err:
        check_clean(CleanSettings(), ("bot_burst",), engine="spark")
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
