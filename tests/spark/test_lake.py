"""The Spark engine (issue 19), against real Spark in local[2]: a lake made from a store, the
profile build through the same Ibis definitions, its tables equal to DuckDB's column by
column; and every way Spark cannot run refused with one line and exit code 2, before Spark
starts where it can be told."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from jingzhun.profile.build import build_on_lake
from jingzhun.store.lake import (
    LAKE_TABLES,
    MARKER,
    PERSONAL,
    check_master,
    check_pyspark,
    create_from_store,
)
from jingzhun.store.store import Store
from jingzhun.store.vault import open_vault, opened_people
from jingzhun.workspace import Workspace
from tests.cli.subprocess_cli import run
from tests.spark.compare import same


@dataclass
class Built:
    db: Path
    lake: Path
    made: dict  # lake init --json (into another folder)
    spark: dict  # the Spark build's result
    duck_users: int


@pytest.fixture(scope="module")
def built(shop_pair, spark_built, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The test shop's store with profiles built by DuckDB and its lake with profiles built
    on Spark at the same as_of (both shared under tests/spark), and a lake made from the store
    by the command line (the command line's Spark build is test_ingest_on_lake's)."""
    folder = tmp_path_factory.mktemp("spark")
    made = run(folder, "lake", "init", "--out", str(folder / "lake"), "--json", db=shop_pair.db)
    assert made.code == 0, made.stderr
    with Workspace.open(shop_pair.db, read_only=True) as ws:
        users = ws.store.count("profiles")
    return Built(shop_pair.db, spark_built.lake, made.json(), spark_built.build, users)


def _frames(built: Built, table: str, key: list[str]) -> tuple[pd.DataFrame, ...]:
    db, lake_dir = built.db, built.lake
    with Workspace.open(db, read_only=True) as ws:
        duck = ws.sql(f"SELECT * FROM {table}")
    spark = pd.read_parquet(lake_dir / table)
    return (
        duck.sort_values(key).reset_index(drop=True),
        spark[list(duck.columns)].sort_values(key).reset_index(drop=True),
    )


@pytest.mark.parametrize(
    ("table", "key"),
    [("profiles", ["user_id"]), ("profile_affinity", ["user_id", "category"])],
)
def test_spark_builds_the_same_table_as_duckdb(built, table: str, key: list[str]) -> None:
    duck, spark = _frames(built, table, key)
    assert len(duck) == len(spark) > 1_000
    assert list(spark[key].itertuples(index=False)) == list(duck[key].itertuples(index=False))
    differs = {}
    for column in duck.columns:
        bad = [
            (duck.at[i, key[0]], duck.at[i, column], spark.at[i, column])
            for i in range(len(duck))
            if not same(duck.at[i, column], spark.at[i, column])
        ]
        if bad:
            differs[column] = (len(bad), bad[:2])
    assert differs == {}


def test_a_lake_is_made_and_built_on(built: Built, cli: Callable) -> None:
    assert built.made["tables"]["events"] > 10_000 and built.made["tables"]["users"] > 1_000
    assert json.loads((built.lake / MARKER).read_text())["format"] == 1
    assert built.spark["users"] == built.duck_users > 1_000
    assert len(built.spark["traits"]) > 40
    assert built.spark["tags"]["rfm_segment"] > 0
    assert sorted(p.name for p in built.lake.iterdir() if not p.name.startswith(".")) == sorted(
        [*LAKE_TABLES, "profiles", "profile_affinity", "tags", MARKER, PERSONAL]
    )  # the tests' master key is in the environment: no key file
    again = cli("--db", str(built.db), "lake", "init", "--out", str(built.lake))
    assert again.code == 2 and "is a jingzhun lake already" in again.stderr


def test_lake_init_carries_the_personal_data_and_the_key_file(monkeypatch, tmp_path) -> None:
    """A store whose master key is its key file: the lake's personal store gets its sealed
    records, its vault's keys and a copy of the key file (0600) — the same records open."""
    monkeypatch.delenv("JINGZHUN_MASTER_KEY")
    users = tmp_path / "users.csv"
    users.write_text("user_id,email,city\nu1,u1@example.com,Lhasa\n", encoding="utf-8")
    db, lake = tmp_path / "s.duckdb", tmp_path / "lake"
    with Workspace.open(db) as ws:
        ws.ingest.files("users", [str(users)])
        create_from_store(ws.store, lake)
    key = lake / f"{PERSONAL}.key"
    assert key.read_bytes() == Path(f"{db}.key").read_bytes()
    assert key.stat().st_mode & 0o777 == 0o600
    personal = Store.open(lake / PERSONAL, read_only=True)
    try:
        vault = open_vault(personal)
        assert vault is not None
        opened_people(personal.con, vault, "SELECT user_id, sealed FROM pii", "_t_people")
        assert personal.rows("SELECT user_id, email FROM _t_people") == [("u1", "u1@example.com")]
    finally:
        personal.close()
    assert "u1@example.com" not in "".join(
        pd.read_parquet(folder).astype(str).to_csv() for folder in lake.iterdir() if folder.is_dir()
    )


# -- refusals: one line, exit code 2 -------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_error(ran, *words: str) -> None:
    assert ran.code == 2, (ran.code, ran.stderr)
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), ran.stderr
    assert "Traceback" not in ran.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_what_is_not_a_lake_is_refused(built: Built, tmp_path: Path, cli: Callable) -> None:
    db = built.db
    _one_error(cli("--engine", "spark", "--db", str(db), "profile", "build"), "is a file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.csv").write_text("a\n1\n")
    _one_error(
        cli("--engine", "spark", "--db", str(tmp_path / "other"), "profile", "build"),
        "not a jingzhun lake",
    )
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MARKER).write_text("{not json")
    _one_error(cli("--engine", "spark", "--db", str(tmp_path / "bad"), "profile", "build"), MARKER)
    _one_error(
        cli("--engine", "spark", "--db", str(tmp_path / "none"), "profile", "build"),
        "no jingzhun lake",
    )
    _one_error(cli("--engine", "spark", "profile", "build"), "--db")


def test_a_missing_java_or_master_is_named(built: Built, tmp_path: Path, cli: Callable) -> None:
    lake = built.lake
    args = ("--engine", "spark", "--db", str(lake), "profile", "build")
    _one_error(cli(*args, env={"JAVA_HOME": str(tmp_path)}), "JAVA_HOME", "bin/java")
    bare = {"PATH": str(Path(os.__file__).parent), "JAVA_HOME": ""}
    _one_error(cli(*args, env=bare), "Java runtime")
    port = _closed_port()
    _one_error(
        cli("--spark-master", f"spark://127.0.0.1:{port}", *args), "cannot reach the Spark master"
    )
    _one_error(cli("--spark-master", "mesos://x", *args), "not a Spark master URL")
    _one_error(cli("--engine", "flink", "status"), "--engine", "duckdb, spark")
    _one_error(
        cli("--engine", "spark", "--db", str(lake), "analyze", "trends"),
        "analyze trends does not run on --engine spark",
    )


def test_pyspark_outside_the_supported_range_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from jingzhun.store.lake import SparkUnavailable

    assert check_pyspark()  # the installed one is supported
    monkeypatch.setattr(metadata, "version", lambda name: "3.4.1")
    with pytest.raises(SparkUnavailable, match=r"pyspark 3.4.1 is outside .*>=3.5,<4.1"):
        check_pyspark()
    monkeypatch.setattr(metadata, "version", lambda name: "4.1.0")
    with pytest.raises(SparkUnavailable, match=r"4\.1\.0 is outside"):
        check_pyspark()

    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(SparkUnavailable, match=r"needs pyspark.*") as err:
        check_pyspark()
    assert "jingzhun[spark]" in str(err.value.hint)
    assert check_master("local[2]") == "local[2]" and check_master("local[*]") == "local[*]"
    for bad in ("local[0]", "local[x]", "", "spark://", "'; DROP TABLE events; --"):
        with pytest.raises(SparkUnavailable):
            check_master(bad)


def test_a_mode_trait_is_refused_on_spark_by_name() -> None:
    from jingzhun.config import CustomTrait, Settings
    from jingzhun.errors import InputError

    trait = CustomTrait(name="fav_channel", agg="mode", of="channel")
    settings = Settings(profile={"traits": [trait]})
    with pytest.raises(InputError, match=r"'fav_channel' \(agg = \"mode\"\) does not run on Spark"):
        build_on_lake(None, settings)  # type: ignore[arg-type]  # refused before Spark is used


def test_the_build_leaves_no_staged_piece(built: Built, spark_session) -> None:
    """build_on_lake materialises each piece as Parquet in a hidden folder of the lake, read
    back as a temporary view: both are gone once the build is done (the affinity's folder
    became profile_affinity)."""
    assert [p.name for p in built.lake.iterdir() if p.name.startswith(".")] == []
    views = [t.name for t in spark_session.catalog.listTables() if t.name.startswith("_jz_")]
    assert views == []
    assert (built.lake / "profile_affinity").is_dir()
