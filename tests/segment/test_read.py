"""The segment stage's read functions on a small generated shop: the active runs, a run's members
with the feature values it was fitted on, and the members exported to Parquet and CSV."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from threadpoolctl import threadpool_limits

from jingzhun.config import Settings
from jingzhun.errors import InputError, NotFoundError
from jingzhun.profile import read as profile_read
from jingzhun.segment import read
from jingzhun.segment.runs import members_of
from jingzhun.store import Store
from jingzhun.workspace import Workspace

AS_OF = datetime(2024, 3, 10)
#: u01 … u12 buy i times for 10·i each; u13 only looks.
BUYERS = 12
FEATURES = ["frequency", "monetary", "orders_per_month"]


def _events() -> str:
    lines = ["event_id,event,user_id,order_id,item_id,quantity,price,revenue,channel,ts"]
    start = datetime(2024, 2, 1, 9)
    for i in range(1, BUYERS + 1):
        for j in range(i):
            ts = start + timedelta(days=j, hours=i)
            lines.append(
                f"e{i}-{j},order_completed,u{i:02d},o{i}-{j},i1,1,{10 * i},{10 * i},web,{ts}"
            )
    lines.append(f"e13,page_viewed,u13,,,,,,web,{start}")
    return "\n".join(lines) + "\n"


def open_ws(path: Path) -> Workspace:
    settings = Settings()
    return Workspace(Store.open(path, settings), settings)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shop profiled as of AS_OF, with runs: value-1 (k-means, k=2), rfm-1, then value-2
    (k-means, k=3), so value-1 is history. The store is closed; tests open a copy."""
    folder = tmp_path_factory.mktemp("segment_read")
    users = "user_id,created_at\n" + "".join(f"u{i:02d},2024-01-01\n" for i in range(1, 14))
    files = {
        "items": "item_id,category,price\ni1,home,10\n",
        "users": users,
        "events": _events(),
    }
    db = folder / "store.duckdb"
    with threadpool_limits(limits=1), open_ws(db) as ws:
        for kind, text in files.items():
            path = folder / f"{kind}.csv"
            path.write_text(text, encoding="utf-8")
            assert ws.ingest(kind, [path]).quarantined == 0
        ws.profile_build(AS_OF)
        opts = {"features": FEATURES, "stability_resamples": 0, "name": "value"}
        assert ws.segment_run("kmeans", k=2, **opts).run_id == "value-1"
        assert ws.segment_run("rfm", name="rfm").run_id == "rfm-1"
        assert ws.segment_run("kmeans", k=3, **opts).run_id == "value-2"
    return db


@pytest.fixture
def seg_ws(segmented: Path, tmp_path: Path) -> Iterator[Workspace]:
    db = tmp_path / "store.duckdb"
    shutil.copyfile(segmented, db)
    with open_ws(db) as ws:
        yield ws


def test_active_runs_are_one_per_name_newest_first(seg_ws: Workspace) -> None:
    assert read.active_runs(seg_ws.store) == ["value-2", "rfm-1"]
    assert read.active_runs(seg_ws.store, limit=1) == ["value-2"]
    with pytest.raises(InputError, match="limit must be"):
        read.active_runs(seg_ws.store, limit=0)


def test_no_runs_no_active_runs(ws: Workspace) -> None:
    assert read.active_runs(ws.store) == []


def test_member_features_are_the_profile_values_the_run_was_fitted_on(
    seg_ws: Workspace,
) -> None:
    got = read.member_features(seg_ws.store, "value", sample=None)
    assert list(got.columns) == ["user_id", *FEATURES, "segment"]
    got = got.set_index("user_id").sort_index()
    members = members_of(seg_ws.store, "value-2").set_index("user_id").sort_index()
    assert got.index.tolist() == members.index.tolist() == [f"u{i:02d}" for i in range(1, 14)]
    assert (got["segment"] == members["segment"]).all()
    assert got["segment"].nunique() == 3

    profiles = profile_read.profiles_frame(
        seg_ws.store, ["user_id", "frequency", "monetary", "tenure_days"]
    ).set_index("user_id")
    buyers = [f"u{i:02d}" for i in range(1, BUYERS + 1)]
    assert got.loc[buyers, "frequency"].tolist() == list(range(1, BUYERS + 1))
    assert got.loc[buyers, "monetary"].tolist() == [10.0 * i * i for i in range(1, BUYERS + 1)]
    assert got.loc["u13", ["frequency", "monetary"]].tolist() == [0, 0]
    expected_rate = profiles["frequency"] * 30.0 / np.maximum(profiles["tenure_days"], 30)
    np.testing.assert_allclose(got["orders_per_month"], expected_rate.loc[got.index])


def test_member_features_of_a_run_in_the_history(seg_ws: Workspace) -> None:
    old = read.member_features(seg_ws.store, "value-1", sample=None)
    assert len(old) == 13 and old["segment"].nunique() == 2
    latest = read.member_features(seg_ws.store, sample=None)  # the latest active run
    assert latest["segment"].nunique() == 3


def test_member_features_sample_is_repeatable(seg_ws: Workspace) -> None:
    a = read.member_features(seg_ws.store, "value-2", sample=5, seed=3)
    b = read.member_features(seg_ws.store, "value-2", sample=5, seed=3)
    assert len(a) == 5
    assert a["user_id"].tolist() == b["user_id"].tolist()
    assert set(a["user_id"]) <= {f"u{i:02d}" for i in range(1, 14)}
    assert len(read.member_features(seg_ws.store, "value-2", sample=4000)) == 13


def test_member_features_errors(seg_ws: Workspace) -> None:
    with pytest.raises(NotFoundError, match="no segment run or name 'nope'"):
        read.member_features(seg_ws.store, "nope")
    with pytest.raises(InputError, match="sample must be"):
        read.member_features(seg_ws.store, "value", sample=0)


def test_export_members_writes_the_run_members_with_labels(
    seg_ws: Workspace, tmp_path: Path
) -> None:
    expected = members_of(seg_ws.store, "value-1")[["user_id", "segment", "label", "fitted"]]
    assert expected["label"].notna().all()
    assert read.export_members(seg_ws.store, "value-1", tmp_path / "m.parquet") == 13
    back = pq.read_table(tmp_path / "m.parquet").to_pandas()
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)

    assert read.export_members(seg_ws.store, None, tmp_path / "sub" / "m.csv") == 13
    with open(tmp_path / "sub" / "m.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    latest = members_of(seg_ws.store, "value-2")
    assert [r["user_id"] for r in rows] == latest["user_id"].tolist()
    assert [r["segment"] for r in rows] == latest["segment"].tolist()
    assert [r["label"] for r in rows] == latest["label"].tolist()


def test_export_members_errors_name_the_run_and_the_file(seg_ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no segment run or name 'nope'"):
        read.export_members(seg_ws.store, "nope", tmp_path / "m.parquet")
    with pytest.raises(InputError, match=r"--out .*unknown extension \(none\)"):
        read.export_members(seg_ws.store, "value", tmp_path / "members")
    assert not list(tmp_path.glob("m*"))


def test_members_page_reads_one_page_of_a_run_or_of_a_segment(seg_ws: Workspace) -> None:
    every = seg_ws.segments.members()
    first, total = seg_ws.segments.members_page(page=1, size=7)
    assert total == len(every)
    pd.testing.assert_frame_equal(first, every.iloc[:7].reset_index(drop=True))
    second, _ = seg_ws.segments.members_page(page=2, size=7)
    pd.testing.assert_frame_equal(second, every.iloc[7:14].reset_index(drop=True))
    code = every["segment"].iloc[0]
    one, n = seg_ws.segments.members_page(segment=code, page=1, size=1000)
    assert n == (every["segment"] == code).sum() == len(one)
    assert set(one["segment"]) == {code}
    assert seg_ws.segments.members_page(segment="no such", page=1)[1] == 0
    beyond, _ = seg_ws.segments.members_page(page=10_000, size=7)
    assert beyond.empty
