"""The overview's activity kept by the profile build equals the analyses computed from the
events — before and after more events arrive — and is read without scanning the events."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from jingzhun.errors import InputError
from jingzhun.workspace import Workspace
from tests.conftest import Shop


@pytest.fixture(scope="module")
def split(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shop's events in two files: all but the last 5 days (and but a day's orders 20 days
    before), and those (arriving late)."""
    events = pd.read_parquet(shop.file("events"))
    cut = events["ts"].max().normalize() - pd.Timedelta(days=4, hours=12)
    old = events["ts"].dt.normalize() == cut.normalize() - pd.Timedelta(days=20)
    held = (events["ts"] >= cut) | (old & (events["event"] == "order_completed"))
    folder = tmp_path_factory.mktemp("activity")
    early, late = folder / "early.parquet", folder / "late.parquet"
    events[~held].to_parquet(early)
    events[held].to_parquet(late)
    return early, late


def _live(ws: Workspace, days: int, end) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same figures from the analyses over the events."""
    last = pd.Timestamp(end - timedelta(microseconds=1)).normalize()
    since = (last - pd.Timedelta(days=2 * days - 1)).to_pydatetime()
    daily = ws.profiles.trends(since=since, until=end).tables["daily"]
    daily = daily[["day", "actives", "buyers", "orders", "revenue"]].set_index("day")
    cohorts = ws.profiles.cohorts(months=12).tables["retention"]
    return daily, cohorts


def test_the_kept_activity_equals_the_analyses_before_and_after_new_events(
    shop: Shop, split: tuple[Path, Path], tmp_path: Path
) -> None:
    early, late = split
    with Workspace.open(tmp_path / "s.duckdb", config=None) as ws:
        for kind in ("items", "users"):
            ws.ingest.files(kind, [shop.file(kind)])
        ws.ingest.files("events", [str(early)])
        built = ws.profiles.build()
        end = _end(ws)
        for days in (7, 30, 90):
            got = ws.profiles.overview(days)
            assert got.as_of == built.as_of
            daily, cohorts = _live(ws, days, end)
            assert len(got.daily) == 2 * days
            mine = got.daily.set_index("day").loc[daily.index]
            pd.testing.assert_frame_equal(mine, daily, **SAME)
            assert got.daily.set_index("day").drop(daily.index).sum().sum() == 0, "quiet days"
            since = built.as_of - timedelta(days=days)
            steps = ws.profiles.funnel(since=since, until=built.as_of).tables["steps"]
            assert got.funnel["visitors"].tolist() == steps["visitors"].tolist()
            assert got.funnel["from_first"].tolist() == pytest.approx(steps["from_first"].tolist())
            pd.testing.assert_frame_equal(got.cohorts, cohorts, check_dtype=False)

        # Five more days of events and a day's orders from 20 days back, no new build: the
        # days since the build include theirs, live; the earlier day's count from the next build.
        ws.ingest.files("events", [str(late)])
        end = _end(ws)
        for days in (7, 30):
            later = ws.profiles.overview(days)
            assert later.as_of == built.as_of, "funnel and cohorts stay as of the build"
            daily, _ = _live(ws, days, end)
            mine = later.daily.set_index("day").loc[daily.index]
            if days == 7:
                pd.testing.assert_frame_equal(mine, daily, **SAME)
            assert later.daily["day"].max() == pd.Timestamp(end).normalize()

        # The next build recomputes only what changed (the late orders' day included), and
        # equals a build from scratch.
        ws.profiles.build()
        kept = ws.sql("SELECT * FROM activity_daily ORDER BY day")
        ws.store.run("DELETE FROM activity_kept")
        ws.profiles.build()
        pd.testing.assert_frame_equal(kept, ws.sql("SELECT * FROM activity_daily ORDER BY day"))
        daily, _ = _live(ws, 30, end)
        mine = ws.profiles.overview(30).daily.set_index("day").loc[daily.index]
        pd.testing.assert_frame_equal(mine, daily, **SAME)

        # A build as of an earlier time keeps no day from its as_of's on.
        earlier = pd.Timestamp(end).normalize() - pd.Timedelta(days=10, hours=-6)
        ws.profiles.build(earlier.to_pydatetime())
        kept = ws.sql("SELECT * FROM activity_daily ORDER BY day")
        assert kept["day"].max() == earlier.normalize() - pd.Timedelta(days=1)
        ws.store.run("DELETE FROM activity_kept")
        ws.profiles.build(earlier.to_pydatetime())
        pd.testing.assert_frame_equal(kept, ws.sql("SELECT * FROM activity_daily ORDER BY day"))


def _end(ws: Workspace):
    latest = pd.Timestamp(ws.sql("SELECT max(ts) AS t FROM events")["t"][0]).to_pydatetime()
    return latest + timedelta(microseconds=1)


SAME = {"check_dtype": False, "check_freq": False, "check_index_type": False}


def test_before_any_build_it_is_computed_from_the_events(shop: Shop, tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "s.duckdb", config=None) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest.files(kind, [shop.file(kind)])
        got = ws.profiles.overview(30)
        assert got.as_of is None and len(got.daily) == 60
        assert got.funnel["visitors"].iloc[0] > 0 and not got.cohorts.empty
        with pytest.raises(InputError, match="7, 30, 90"):
            ws.profiles.overview(31)
