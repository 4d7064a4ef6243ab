"""copy_out: a query streamed to Parquet or CSV, values bound as parameters, written atomically."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from jingzhun.errors import InputError
from jingzhun.store import Store
from jingzhun.store.export import BATCH_ROWS, copy_out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "db" / "store.duckdb")  # outputs go beside the folder
    yield s
    s.close()


def test_parquet_of_more_rows_than_one_batch(store: Store, tmp_path: Path) -> None:
    n = BATCH_ROWS * 2 + 5
    out = tmp_path / "deep" / "er" / "range.parquet"
    query = "SELECT range AS i, 'x' || range AS s FROM range(?) WHERE range % ? = 0"
    assert copy_out(store, query, out, params=[n, 1]) == n
    table = pq.read_table(out)
    assert table.column_names == ["i", "s"]
    assert table.column("i").to_pylist() == list(range(n))
    assert sorted(p.name for p in out.parent.iterdir()) == ["range.parquet"]  # no temp file


def test_csv_binds_values_as_parameters(store: Store, tmp_path: Path) -> None:
    hostile = "x'); DROP TABLE events; --"
    out = tmp_path / "one.CSV"
    assert copy_out(store, "SELECT ? AS text, ? AS n", out, params=[hostile, 3]) == 1
    with open(out, encoding="utf-8", newline="") as fh:
        assert list(csv.DictReader(fh)) == [{"text": hostile, "n": "3"}]
    assert store.count("events") == 0  # still there


def test_an_empty_result_writes_the_header(store: Store, tmp_path: Path) -> None:
    assert copy_out(store, "SELECT event_id, ts FROM events", tmp_path / "e.csv") == 0
    assert (tmp_path / "e.csv").read_text(encoding="utf-8").strip() == '"event_id","ts"'


@pytest.mark.parametrize("name", ["rows.json", "rows", "rows.parquet.gz"])
def test_unknown_extension_is_refused_before_running(
    store: Store, tmp_path: Path, name: str
) -> None:
    with pytest.raises(InputError, match=r"^--out .*unknown extension") as err:
        copy_out(store, "SELECT 1", tmp_path / name)
    assert err.value.hint == "use .parquet or .csv"
    assert [p.name for p in tmp_path.iterdir()] == ["db"]


def test_the_store_itself_is_never_written(store: Store) -> None:
    with pytest.raises(InputError, match="--out"):
        copy_out(store, "SELECT 1 AS a", store.path)
    assert store.scalar("SELECT 42") == 42


def test_a_failing_query_leaves_no_file(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "bad.parquet"
    out.write_bytes(b"old")
    with pytest.raises(duckdb.Error):
        copy_out(store, "SELECT error('boom') FROM range(3)", out)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "db"]
