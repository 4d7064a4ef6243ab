"""The profile build: custom traits, checks before any write, the build record, reading and
exporting profiles, rebuilding, and a build of the simulated shop."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from jingzhun.config import CustomTrait, ProfileSettings, Settings, TagRule, TagSettings
from jingzhun.errors import InputError, NotFoundError
from jingzhun.store import Store
from jingzhun.workspace import Workspace

Write = Callable[..., Path]

AS_OF = datetime(2024, 3, 10)

ITEMS = "item_id,category,brand,price\ni1,beauty,Lumi,10\ni2,beauty,Aura,40\ni3,home,Casa,100\n"
USERS = "user_id,created_at\nu1,2024-01-01\nu2,2024-02-01\nu3,2024-02-15\nu4,2024-05-01\n"
EVENTS = """event_id,event,user_id,anonymous_id,order_id,item_id,quantity,price,revenue,channel,ts
c01,product_viewed,u1,,,i1,,,,web,2024-03-01 10:00:00
c02,product_viewed,u1,,,i3,,,,app,2024-03-02 10:00:00
c03,order_completed,u1,,o1,i1,2,10,18,app,2024-03-02 11:00:00
c04,order_completed,u1,,o1,i3,1,100,100,app,2024-03-02 11:00:00
c06,product_viewed,u1,,,i2,,,,web,2024-03-08 08:00:00
c05,order_completed,u1,,o2,i2,1,40,40,web,2024-03-08 09:00:00
c07,page_viewed,u1,,,,,,,web,2024-03-09 12:00:00
c08,page_viewed,,d2,,,,,,web,2024-03-03 09:00:00
c09,signed_up,u2,d2,,,,,,app,2024-03-03 09:30:00
c10,product_viewed,u2,,,i3,,,,app,2024-03-04 10:00:00
c11,order_completed,u2,,o3,i3,1,100,90,app,2024-03-04 10:30:00
c12,product_added,u2,,,i1,,,,app,2024-03-09 20:00:00
c13,order_completed,u1,,o4,i2,1,40,40,web,2024-03-12 09:00:00
"""


def load(ws: Workspace, folder: Path) -> None:
    for kind, text in (("items", ITEMS), ("users", USERS), ("events", EVENTS)):
        path = folder / f"{kind}.csv"
        path.write_text(text, encoding="utf-8")
        assert ws.ingest(kind, [path]).quarantined == 0


def open_ws(path: Path, settings: Settings | None = None) -> Workspace:
    s = settings or Settings()
    return Workspace(Store.open(path, s), s)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the fixture data and no profiles (copy it before writing to it)."""
    tmp = tmp_path_factory.mktemp("loaded")
    with open_ws(tmp / "loaded.duckdb") as ws:
        load(ws, tmp)
    return tmp / "loaded.duckdb"


@pytest.fixture(scope="module")
def prebuilt(loaded: Path) -> Path:
    """The same store with profiles built as of AS_OF with default settings."""
    path = loaded.with_name("prebuilt.duckdb")
    shutil.copy(loaded, path)
    with open_ws(path) as ws:
        ws.profile_build(AS_OF)
    return path


@pytest.fixture
def built(prebuilt: Path, tmp_path: Path) -> Iterator[Workspace]:
    """A writable copy of the prebuilt store."""
    path = tmp_path / "built.duckdb"
    shutil.copy(prebuilt, path)
    with open_ws(path) as ws:
        yield ws


def has_profiles(ws: Workspace) -> bool:
    return bool(
        ws.store.scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'profiles'"
        )
    )


# -- custom traits ---------------------------------------------------------------------------

ORDER = "event = 'order_completed'"
CUSTOM = [
    CustomTrait(name="beauty_orders", agg="count", where=f"{ORDER} and category = 'beauty'"),
    CustomTrait(
        name="beauty_spend", agg="sum", of="revenue", where=f"{ORDER} and category = 'beauty'"
    ),
    CustomTrait(name="mean_line", agg="mean", of="revenue", where=ORDER),
    CustomTrait(name="cheapest_bought", agg="min", of="price", where=ORDER),
    CustomTrait(name="dearest_line", agg="max", of="revenue", where=ORDER),
    CustomTrait(
        name="viewed_items", agg="distinct", of="item_id", where="event = 'product_viewed'"
    ),
    CustomTrait(name="main_channel", agg="mode", of="channel"),
    CustomTrait(name="first_viewed", agg="first", of="item_id", where="event = 'product_viewed'"),
    CustomTrait(
        name="last_carted_or_viewed",
        agg="last",
        of="item_id",
        where="event in ('product_viewed', 'product_added')",
    ),
    CustomTrait(name="recent_views", agg="count", where="event = 'product_viewed'", window_days=3),
    CustomTrait(name="recent_spend", agg="sum", of="revenue", where=ORDER, window_days=7),
    CustomTrait(
        name="big_app_lines",
        agg="count",
        where=f"{ORDER} and revenue between 40 and 100 and channel != 'web'",
    ),
    CustomTrait(name="anonymous_events", agg="count", where="anonymous_id is not null"),
    CustomTrait(name="last_two_days", agg="count", where="days_since(ts) < 2"),
    CustomTrait(name="all_events", agg="count"),
]

CUSTOM_EXPECTED: dict[str, dict[str, Any]] = {
    "u1": {
        "beauty_orders": 2,  # c03 (i1), c05 (i2); c13 is after as_of
        "beauty_spend": 58.0,
        "mean_line": (18 + 100 + 40) / 3,
        "cheapest_bought": 10.0,
        "dearest_line": 100.0,
        "viewed_items": 3,
        "main_channel": "web",  # web 4, app 3
        "first_viewed": "i1",
        "last_carted_or_viewed": "i2",
        "recent_views": 1,  # c06 on 03-08; the window starts 03-07 00:00
        "recent_spend": 40.0,  # c05; the lines of 03-02 are older than 7 days
        "big_app_lines": 1,  # c04 (100, app); c05 is web, c03 is 18
        "anonymous_events": 0,
        "last_two_days": 3,  # c06, c05 (1 day), c07 (0 days)
        "all_events": 7,
    },
    "u2": {
        "beauty_orders": 0,
        "beauty_spend": None,
        "mean_line": 90.0,
        "cheapest_bought": 100.0,
        "dearest_line": 90.0,
        "viewed_items": 1,
        "main_channel": "app",  # app 4, web 1 (the anonymous page view)
        "first_viewed": "i3",
        "last_carted_or_viewed": "i1",
        "recent_views": 0,
        "recent_spend": 90.0,  # 03-04 is within 7 days of 03-10
        "big_app_lines": 1,
        "anonymous_events": 2,  # c08 (stitched) and c09
        "last_two_days": 1,  # c12
        "all_events": 5,
    },
    "u3": {
        "beauty_orders": 0,
        "beauty_spend": None,
        "mean_line": None,
        "cheapest_bought": None,
        "dearest_line": None,
        "viewed_items": 0,
        "main_channel": None,
        "first_viewed": None,
        "last_carted_or_viewed": None,
        "recent_views": 0,
        "recent_spend": None,
        "big_app_lines": 0,
        "anonymous_events": 0,
        "last_two_days": 0,
        "all_events": 0,
    },
}


def cell(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def test_custom_traits(loaded: Path, tmp_path: Path) -> None:
    path = tmp_path / "custom.duckdb"
    shutil.copy(loaded, path)
    s = Settings(profile=ProfileSettings(traits=CUSTOM))
    with open_ws(path, s) as ws:
        result = ws.profile_build(AS_OF)
        frame = ws.profiles()
        types = dict(
            ws.store.rows(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'profiles'"
            )
        )
    names = [t.name for t in CUSTOM]
    # Custom traits follow the built-in ones, before the score.
    assert list(frame.columns)[-len(names) - 1 :] == [*names, "score"]
    assert result.traits == list(frame.columns)
    assert frame["user_id"].tolist() == ["u1", "u2", "u3"]
    for _, row in frame.iterrows():
        want = CUSTOM_EXPECTED[row["user_id"]]
        got = {n: cell(row[n]) for n in names}
        for n in names:
            if isinstance(want[n], float):
                assert got[n] == pytest.approx(want[n]), (row["user_id"], n)
            else:
                assert got[n] == want[n], (row["user_id"], n, got[n])
    for n in ("beauty_orders", "viewed_items", "recent_views", "all_events", "last_two_days"):
        assert types[n] == "BIGINT", n
    for n in ("beauty_spend", "mean_line", "cheapest_bought", "dearest_line", "recent_spend"):
        assert types[n] == "DOUBLE", n
    for n in ("main_channel", "first_viewed", "last_carted_or_viewed"):
        assert types[n] == "VARCHAR", n


# -- errors before anything is written -------------------------------------------------------


def trait(**kwargs: Any) -> Settings:
    return Settings(profile=ProfileSettings(traits=[CustomTrait(**kwargs)]))


def score(weights: dict[str, float]) -> Settings:
    return Settings(profile=ProfileSettings(score=weights))


BAD = {
    "unknown name in where": (
        trait(name="x", agg="count", where="event = 'order_completed' and catgory = 'beauty'"),
        ["profile trait 'x'", "'catgory'", "column 31", "did you mean 'category'"],
    ),
    "syntax error in where": (
        trait(name="x", agg="count", where="event = = 'order_completed'"),
        ["profile trait 'x'", "column 9"],
    ),
    "sum of a text column": (
        trait(name="x", agg="sum", of="channel"),
        ["profile trait 'x'", "sum needs a numeric column", "'channel'"],
    ),
    "mean of a text column": (
        trait(name="x", agg="mean", of="event"),
        ["profile trait 'x'", "mean needs a numeric column"],
    ),
    "agg without of": (
        trait(name="x", agg="max"),
        ["profile trait 'x'", "agg 'max' needs 'of'"],
    ),
    "of is not an event column": (
        trait(name="x", agg="min", of="colour"),
        ["profile trait 'x'", "'colour' is not an event column"],
    ),
    "custom trait named like a built-in": (
        trait(name="frequency", agg="count"),
        ["profile trait 'frequency' is a built-in trait"],
    ),
    "unknown trait in score": (
        score({"frequency": 1.0, "loyalty": 1.0}),
        ["[profile.score]", "unknown trait 'loyalty'"],
    ),
    "text trait in score": (
        score({"preferred_channel": 1.0}),
        ["[profile.score]", "'preferred_channel' is not numeric"],
    ),
    "list trait in score": (
        score({"top_brands": 1.0}),
        ["[profile.score]", "'top_brands' is not numeric"],
    ),
    "tag rule naming an unknown trait": (
        Settings(tags=TagSettings(rules=[TagRule(name="vip", when="monetry > 10")])),
        ["tag rule 'vip'", "'monetry'"],
    ),
}


def snapshot(ws: Workspace) -> tuple:
    return (
        ws.store.rows("SELECT * FROM profiles ORDER BY user_id"),
        ws.store.rows("SELECT * FROM profile_builds"),
        ws.store.rows("SELECT * FROM tags ORDER BY ALL"),
        ws.store.rows("SELECT * FROM profile_affinity ORDER BY ALL"),
    )


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_settings_fail_before_writing_to_a_fresh_store(
    case: str, loaded: Path, tmp_path: Path
) -> None:
    bad, needles = BAD[case]
    path = tmp_path / "fresh.duckdb"
    shutil.copy(loaded, path)
    with open_ws(path, bad) as ws:
        with pytest.raises(InputError) as info:
            ws.profile_build(AS_OF)
        for needle in needles:
            assert needle in str(info.value), (needle, str(info.value))
        assert not has_profiles(ws)
        assert ws.store.count("profile_builds") == 0
        assert ws.store.count("tags") == 0


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_settings_leave_the_previous_build_unchanged(
    case: str, prebuilt: Path, tmp_path: Path
) -> None:
    bad, needles = BAD[case]
    path = tmp_path / "again.duckdb"
    shutil.copy(prebuilt, path)
    with open_ws(path) as ws:
        before = snapshot(ws)
        assert ws.store.count("profile_builds") == 1
    with open_ws(path, bad) as ws:
        with pytest.raises(InputError, match=r".") as info:
            ws.profile_build(datetime(2024, 3, 13))
        assert needles[0] in str(info.value)
        assert snapshot(ws) == before


#: Settings that once crashed the build (the note says how); each must now fail cleanly.
ONCE_CRASHED = {
    "custom trait named score": (
        trait(name="score", agg="count"),
        "build.plan checks custom names against tr.catalogue() only; 'score' collides with "
        "the score column and Ibis raises IbisInputError 'Duplicate column name'",
    ),
    "custom trait named as_of": (
        trait(name="as_of", agg="count"),
        "'as_of' is not in the catalogue: Ibis raises IbisInputError 'Duplicate column name'",
    ),
    "custom trait named user_id": (
        trait(name="user_id", agg="count"),
        "'user_id' is not in the catalogue: Ibis raises RelationError (already in the groupby)",
    ),
    "custom trait named created_at": (
        trait(name="created_at", agg="count"),
        "'created_at' is not in the catalogue: Ibis raises IbisTypeError",
    ),
    "two custom traits with one name": (
        Settings(
            profile=ProfileSettings(
                traits=[
                    CustomTrait(name="x", agg="count"),
                    CustomTrait(name="x", agg="sum", of="revenue"),
                ]
            )
        ),
        "the dict {t.name: ...} in build.plan drops the first; zip(..., strict=True) then "
        "raises ValueError 'zip() argument 2 is longer than argument 1'",
    ),
    "where that is not a condition": (
        trait(name="x", agg="count", where="revenue + 1"),
        "build._custom_agg never checks that where compiles to a boolean (tags.condition "
        "does): Ibis raises SignatureValidationError",
    ),
    "where comparing text with a number": (
        trait(name="x", agg="count", where="event = 5"),
        "build._custom_agg does not catch Ibis type errors (tags.condition does): "
        "IbisTypeError 'not comparable'",
    ),
    "where with an aggregate helper": (
        trait(name="x", agg="count", where="revenue > mean(revenue)"),
        "mean() in a custom trait's where compiles to an aggregate inside FILTER; DuckDB "
        "raises BinderException while writing, not InputError before it",
    ),
    "empty score weights": (
        score({}),
        "build._score indexes parts[0] of an empty list: IndexError for [profile.score] = {}",
    ),
}


@pytest.mark.parametrize(
    "case",
    [pytest.param(name, id=name) for name in sorted(ONCE_CRASHED)],
)
def test_more_bad_settings_fail_with_input_error_or_build(
    case: str, prebuilt: Path, tmp_path: Path
) -> None:
    """Either a clean InputError before writing, or (empty score) a build; never a crash."""
    bad, _ = ONCE_CRASHED[case]
    path = tmp_path / "again.duckdb"
    shutil.copy(prebuilt, path)
    with open_ws(path) as ws:
        before = snapshot(ws)
    with open_ws(path, bad) as ws:
        if case == "empty score weights":
            try:
                ws.profile_build(AS_OF)
            except InputError:
                assert snapshot(ws) == before
            else:
                assert ws.store.count("profile_builds") == 2
            return
        with pytest.raises(InputError):
            ws.profile_build(AS_OF)
        assert snapshot(ws) == before


def test_an_empty_store_has_nothing_to_build(ws: Workspace, write: Write) -> None:
    with pytest.raises(NotFoundError, match="no events"):
        ws.profile_build()
    with pytest.raises(NotFoundError, match="no events"):
        ws.profile_build(AS_OF)
    # Users and items alone are not enough either.
    ws.ingest("users", [write("users.csv", USERS)])
    with pytest.raises(NotFoundError, match="no events"):
        ws.profile_build(AS_OF)
    assert not has_profiles(ws)
    assert ws.store.count("profile_builds") == 0
    with pytest.raises(NotFoundError, match="no profiles"):
        ws.profiles()
    with pytest.raises(NotFoundError, match="no profiles"):
        ws.profile("u1")
    with pytest.raises(NotFoundError, match="no profiles"):
        ws.profile_export(ws.path.parent / "out.parquet")


def test_a_bad_as_of_string(ws: Workspace) -> None:
    with pytest.raises(InputError, match="not a timestamp"):
        ws.profile_build("last tuesday")


# -- the build record ------------------------------------------------------------------------


def test_profile_builds_records_the_build(built: Workspace) -> None:
    rows = built.sql("SELECT * FROM profile_builds")
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["as_of"] == pd.Timestamp(AS_OF)
    assert row["users"] == 3 == built.store.count("profiles")  # u4 signs up after as_of
    assert json.loads(row["traits"]) == list(built.profiles().columns)
    counts = built.sql(
        "SELECT tag, count(*) AS n FROM tags WHERE source IN ('rule', 'rfm', 'bin') GROUP BY tag"
    )
    recorded = json.loads(row["tags"])
    assert set(recorded) == {
        "high_value",
        "churn_risk",
        "rfm_r",
        "rfm_f",
        "rfm_m",
        "rfm_score",
        "rfm_segment",
        "spend_band",
    }
    stored = dict(zip(counts["tag"], counts["n"].astype(int), strict=True))
    assert recorded == {tag: stored.get(tag, 0) for tag in recorded}
    assert recorded["rfm_segment"] == 2  # u1 and u2 are customers
    assert row["seconds"] > 0
    assert row["built_at"] > row["as_of"]


# -- reading one profile ---------------------------------------------------------------------


def test_profile_of_one_user(built: Workspace) -> None:
    one = built.profile("u2")
    assert set(one) == {"user_id", "traits", "tags", "anonymous_ids", "last_events", "consents"}
    assert one["user_id"] == "u2"
    row = built.profiles().set_index("user_id").loc["u2"]
    assert one["traits"]["user_id"] == "u2"
    assert set(one["traits"]) == {"user_id", *row.index}
    assert one["traits"]["frequency"] == 1
    assert one["traits"]["monetary"] == 90.0
    assert one["traits"]["events"] == 5  # c08 (d2, anonymous) .. c12
    assert one["traits"]["top_categories"] == ["home", "beauty"]
    assert one["traits"]["category_affinity"].keys() == {"home", "beauty"}
    assert one["traits"]["email_open_rate"] is None
    assert one["traits"]["as_of"] == AS_OF
    tags = dict(built.store.rows("SELECT tag, value FROM tags WHERE user_id = 'u2' ORDER BY tag"))
    assert one["tags"] == tags
    assert one["tags"]["rfm_segment"]  # u2 is a customer: RFM tags are there
    assert one["anonymous_ids"] == ["d2"]
    events = one["last_events"]
    assert [e["event"] for e in events] == [
        "product_added",
        "order_completed",
        "product_viewed",
        "signed_up",
        "page_viewed",  # the anonymous page view of d2
    ]
    assert events[1]["order_id"] == "o3" and events[1]["revenue"] == 90.0
    assert events[0]["ts"] == datetime(2024, 3, 9, 20, 0)
    assert len(built.profile("u2", events=2)["last_events"]) == 2


def test_profile_by_anonymous_id_and_unknown_ids(built: Workspace) -> None:
    assert built.profile("d2") == built.profile("u2")
    assert built.profile("u3")["traits"]["frequency"] == 0
    assert built.profile("u3")["anonymous_ids"] == []
    for unknown in ("nobody", "u4", ""):  # u4 signs up after as_of
        with pytest.raises(NotFoundError, match="no profile for user"):
            built.profile(unknown)


def test_profile_by_anonymous_id_of_a_user_without_a_profile(built: Workspace) -> None:
    # d7 was linked to u7 after the build's as_of: u7 has no profile.
    built.store.run(
        "INSERT INTO identities VALUES ('d7', 'u7', TIMESTAMP '2024-03-20 10:00:00', 'manual')"
    )
    with pytest.raises(NotFoundError):
        built.profile("d7")


# -- export ----------------------------------------------------------------------------------


def test_export_parquet(built: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "profiles.parquet"
    assert built.profile_export(out) == 3
    assert not list(out.parent.glob("*.tmp"))
    # Read back by DuckDB (another connection: the store's opens no other file): every value,
    # maps and lists included, as stored.
    reader = duckdb.connect()
    reader.execute("SET TimeZone = 'UTC'")
    assert reader.execute(
        "SELECT * FROM read_parquet(?) ORDER BY user_id", [str(out)]
    ).fetchall() == (built.store.rows("SELECT * FROM profiles ORDER BY user_id"))
    table = pq.read_table(out)
    assert table.num_rows == 3
    assert table.column_names == list(built.profiles().columns)


def test_export_csv_writes_maps_and_lists_as_json(built: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "profiles.csv"
    assert built.profile_export(out) == 3
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["user_id"] for r in rows] == ["u1", "u2", "u3"]
    assert list(rows[0]) == list(built.profiles().columns)
    original = built.profiles().set_index("user_id")
    for r in rows[:2]:
        want = original.loc[r["user_id"]]
        affinity = json.loads(r["category_affinity"])
        assert affinity == pytest.approx(want["category_affinity"])
        for col in ("top_categories", "top_brands", "last_items"):
            assert json.loads(r[col]) == list(want[col]), col
        assert int(r["frequency"]) == want["frequency"]
        assert float(r["monetary"]) == pytest.approx(want["monetary"])
    u1 = original.loc["u1"]
    assert json.loads(rows[0]["last_items"]) == ["i2", "i1", "i3"]
    assert u1["frequency"] == 2
    # u3 has no events: empty cells for its lists and map.
    assert rows[2]["category_affinity"] in ("", "null")
    assert rows[2]["recency_days"] == ""


def test_export_refuses_an_unknown_extension(built: Workspace, tmp_path: Path) -> None:
    for name in ("profiles.json", "profiles"):
        with pytest.raises(InputError, match="unknown extension"):
            built.profile_export(tmp_path / name)
        assert not (tmp_path / name).exists()
    with pytest.raises(InputError, match="folder"):
        folder = tmp_path / "dir.csv"
        folder.mkdir()
        built.profile_export(folder)


# -- rebuilding ------------------------------------------------------------------------------


def test_rebuild_replaces_profiles_and_keeps_tags_of_other_sources(built: Workspace) -> None:
    computed = datetime(2024, 3, 11, 12, 0)
    built.store.run(
        "INSERT INTO tags VALUES ('u1', 'likely_buyer', '0.93', 'model', ?), "
        "('u3', 'likely_buyer', '0.12', 'model', ?)",
        [computed, computed],
    )
    builtin_before = built.store.rows(
        "SELECT user_id, tag, value, source FROM tags WHERE source <> 'model' ORDER BY ALL"
    )
    assert builtin_before

    result = built.profile_build(AS_OF)  # the same as_of: the same profiles and tags
    assert result.users == 3
    assert built.store.rows("SELECT count(*), count(DISTINCT user_id) FROM profiles") == [(3, 3)]
    assert (
        built.store.rows(
            "SELECT user_id, tag, value, source FROM tags WHERE source <> 'model' ORDER BY ALL"
        )
        == builtin_before
    )
    assert built.store.rows(
        "SELECT user_id, tag, value, computed_at FROM tags WHERE source = 'model' ORDER BY ALL"
    ) == [
        ("u1", "likely_buyer", "0.93", computed),
        ("u3", "likely_buyer", "0.12", computed),
    ]

    later = built.profile_build("2024-03-20")  # sees c13 and u4 is still not signed up
    assert later.users == 3
    assert built.store.rows("SELECT count(*), count(DISTINCT user_id) FROM profiles") == [(3, 3)]
    assert built.profiles().set_index("user_id").loc["u1", "frequency"] == 3
    assert built.store.scalar("SELECT count(*) FROM tags WHERE source = 'model'") == 2
    dupes = built.store.scalar(
        "SELECT count(*) FROM (SELECT user_id, tag FROM tags GROUP BY ALL HAVING count(*) > 1)"
    )
    assert dupes == 0
    assert built.store.rows("SELECT as_of FROM profile_builds ORDER BY built_at") == [
        (AS_OF,),
        (AS_OF,),
        (datetime(2024, 3, 20),),
    ]
    assert built.profile("u1")["tags"]["likely_buyer"] == "0.93"


def test_ingest_after_a_build_in_the_same_workspace(ws: Workspace, write: Write) -> None:
    ws.ingest("events", [write("a.csv", EVENTS)])
    ws.profile_build(AS_OF)
    more = "event_id,event,user_id,ts\nz1,page_viewed,u5,2024-03-09 10:00:00\n"
    assert ws.ingest("events", [write("b.csv", more)]).inserted == 1


# -- the simulated shop ----------------------------------------------------------------------


def test_build_the_simulated_shop(ws: Workspace, shop) -> None:
    for kind in ("items", "users", "events"):
        ws.ingest(kind, [shop.file(kind)])
    result = ws.profile_build()
    as_of = result.as_of
    assert (
        as_of
        == ws.store.scalar("SELECT max(ts) FROM events")
        + pd.Timedelta(microseconds=1).to_pytimedelta()
    )

    profiles = ws.profiles(["user_id", "frequency", "created_at", "monetary", "events"])
    assert result.users == len(profiles) == profiles["user_id"].nunique()

    users = pq.read_table(shop.file("users"), columns=["user_id", "created_at"]).to_pandas()
    created = users["created_at"].dt.tz_convert("UTC").dt.tz_localize(None)
    before = set(users.loc[created < pd.Timestamp(as_of), "user_id"])
    assert before, "the shop has users"
    missing = before - set(profiles["user_id"])
    assert not missing, sorted(missing)[:5]

    # frequency = distinct order ids of the user's (stitched) order lines in the store.
    orders = ws.sql(
        """
        SELECT coalesce(e.user_id, i.user_id) AS user_id, count(DISTINCT e.order_id) AS n
        FROM events e LEFT JOIN identities i
          ON e.anonymous_id = i.anonymous_id AND i.linked_at < ?
        WHERE e.event = 'order_completed' AND e.ts < ?
        GROUP BY 1 HAVING coalesce(e.user_id, i.user_id) IS NOT NULL
        """,
        [as_of, as_of],
    )
    got = profiles.set_index("user_id")["frequency"]
    want = orders.set_index("user_id")["n"].reindex(got.index, fill_value=0)
    assert (got == want).all(), got[got != want].head()
    assert got.sum() > 0

    truth = pq.read_table(
        shop.dir / "truth" / "users.parquet", columns=["user_id", "purchases"]
    ).to_pandas()
    both = truth.merge(profiles, on="user_id")
    assert len(both) == len(truth)
    assert both["frequency"].astype(float).corr(both["purchases"].astype(float)) > 0.8


def test_the_build_reads_only_the_event_columns_its_traits_name() -> None:
    from jingzhun.profile.build import EVENT_COLUMNS, _reads

    plain = _reads([])
    # No built-in trait reads the ids or the currency: the staged events leave them out.
    assert not {"event_id", "anonymous_id", "currency", "campaign_id"} & set(plain)
    assert {"event", "user_id", "ts", "revenue", "category", "price_percentile"} <= set(plain)
    named = _reads(
        [
            CustomTrait(name="campaigns", agg="distinct", of="campaign_id"),
            CustomTrait(name="cny", agg="count", where="currency = 'CNY' and event_id is not null"),
        ]
    )
    assert set(named) == set(plain) | {"campaign_id", "currency", "event_id"}
    assert list(named) == [c for c in EVENT_COLUMNS if c in named]  # in the events' order
    # A where that does not parse: every column, and the trait's own check names the error.
    assert _reads([CustomTrait(name="bad", agg="count", where="currency = ")]) == EVENT_COLUMNS
