"""Shared Spark fixtures: one Spark session (local[2]) per test worker, and the test shop as a
DuckDB store with profiles built and a lake made from it — Spark's start is the slow part, so
every test file under tests/spark shares them. Tests that change a lake copy it first
(:func:`copy_lake`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jingzhun.store.lake import Lake, _session, check_java, check_pyspark, create_from_store
from jingzhun.workspace import Workspace


@pytest.fixture(scope="session")
def spark_session() -> Iterator[Any]:
    """A Spark session in local[2], shared by the worker's Spark tests (stopped at the end)."""
    check_pyspark()
    check_java()
    scratch = Path(tempfile.mkdtemp(prefix="jingzhun-spark-tests-"))
    session = _session("local[2]", scratch)
    try:
        yield session
    finally:
        session.stop()
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class ShopPair:
    """The test shop on both engines: ``db`` a DuckDB store (events, users, items ingested,
    profiles built at ``as_of``), ``lake`` a lake made from it by ``lake init``'s function."""

    db: Path
    lake: Path
    as_of: Any


@pytest.fixture(scope="session")
def shop_pair(shop, tmp_path_factory: pytest.TempPathFactory) -> ShopPair:
    folder = tmp_path_factory.mktemp("shop-pair")
    db, lake = folder / "s.duckdb", folder / "lake"
    with Workspace.open(db) as ws:
        for kind in ("users", "items", "events"):
            ws.ingest(kind, [shop.file(kind)])
        built = ws.profiles.build()
        create_from_store(ws.store, lake)
    return ShopPair(db, lake, built.as_of)


def copy_lake(source: Path, dest: Path) -> Path:
    """A copy of the lake at ``source`` that a test may change."""
    shutil.copytree(source, dest)
    return dest


@dataclass
class SparkBuilt:
    """The shop's lake with profiles, affinity and tags built on Spark at ``shop_pair.as_of``
    (in process, on the shared session): ``build`` is the build's result as ``--json`` prints
    it. Read only: copy the lake to change it."""

    lake: Path
    build: dict[str, Any]


@pytest.fixture(scope="session")
def spark_built(shop_pair, spark_session, tmp_path_factory: pytest.TempPathFactory) -> SparkBuilt:
    from jingzhun.config import Settings
    from jingzhun.profile.build import build_on_lake

    folder = tmp_path_factory.mktemp("spark-built")
    lake = copy_lake(shop_pair.lake, folder / "lake")
    with Lake.open(lake, session=spark_session) as opened:
        build = build_on_lake(opened, Settings(), shop_pair.as_of).to_dict()
    return SparkBuilt(lake, build)


@pytest.fixture
def open_lake(spark_session) -> Iterator[Any]:
    """``open_lake(path)`` → a :class:`Lake` on the shared session (closed after the test)."""
    opened: list[Lake] = []

    def _open(path: Path, *, create: bool = False) -> Lake:
        lake = Lake.open(path, session=spark_session, create=create)
        opened.append(lake)
        return lake

    yield _open
    for lake in opened:
        lake.close()
