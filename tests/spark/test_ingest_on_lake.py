"""Ingest on Spark (issue 19): a batch read, validated and quarantined by the same pipeline as
on a store, settled against the lake by Spark — its counts, events, quarantine, identities and
consents equal the DuckDB engine's, batch after batch, and what a lake does not take yet is
refused with nothing written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from jingzhun.config import Settings
from jingzhun.errors import InputError
from jingzhun.ingest.lake import ingest_on_lake
from jingzhun.store.lake import LAKE_TABLES, MARKER, PERSONAL
from jingzhun.store.store import Store
from jingzhun.store.vault import open_vault, opened_people
from jingzhun.workspace import Workspace
from tests.cli.subprocess_cli import run
from tests.spark.compare import same
from tests.spark.conftest import copy_lake

#: What a batch reports; equal on both engines.
COUNTS = (
    "rows_read",
    "inserted",
    "duplicates",
    "quarantined",
    "skipped",
    "identities_linked",
    "identity_conflicts",
)
#: Each table compared, its key and the columns that name the batch or the time it ran
#: (different on the two engines by nature).
TABLES = {
    "events": (["event_id"], ["batch_id", "received_at"]),
    "quarantine": (["quarantine_id"], ["batch_id", "received_at", "raw_key"]),
    "identities": (["anonymous_id"], ["batch_id"]),
    "consents": (["user_id", "purpose", "channel", "ts", "status"], ["source"]),
}

BAD = """event_id,event,user_id,anonymous_id,item_id,price,ts,purpose,status
x1,product_viewed,u1,a1,sku1,10,2026-01-01T00:00:00Z,,
x1,product_viewed,u1,a1,sku1,10,2026-01-01T00:00:00Z,,
x2,not a real event,u1,,sku1,10,2026-01-01T00:00:00Z,,
x3,product_viewed,u2,a1,sku2,-5,2026-01-02T00:00:00Z,,
x4,product_viewed,,,sku2,3,not a time,,
x5,consent_updated,u1,,,,2026-01-03T00:00:00Z,marketing,REVOKED
x6,consent_updated,u3,,,,2026-01-03T00:00:00Z,marketing,GRANTED
x7,order_completed,u3,a3,sku9,20,2026-01-04T00:00:00Z,,
"""


@dataclass
class Pair:
    db: Path
    lake: Path
    duck: list[dict[str, Any]]
    spark: list[dict[str, Any]]


#: A batch both engines take: kind, files, and Ingest.files' options.
Batch = tuple[str, list[str], dict[str, Any]]


def _both(spark_session, folder: Path, batches: list[Batch]) -> Pair:
    """The ``batches``, in order, into a new store and a new lake in ``folder``."""
    from jingzhun.store.lake import Lake

    db, lake_dir = folder / "s.duckdb", folder / "lake"
    with Workspace.open(db) as ws:
        duck = [ws.ingest.files(kind, paths, **opts).to_dict() for kind, paths, opts in batches]
    with Lake.open(lake_dir, session=spark_session, create=True) as lake:
        spark = [
            ingest_on_lake(lake, Settings(), kind, paths, **opts).to_dict()
            for kind, paths, opts in batches
        ]
    return Pair(db, lake_dir, duck, spark)


def _same_table(pair: Pair, table: str, key: list[str], differ: tuple[str, ...]) -> None:
    """``table`` holds the same rows in the store and the lake, column by column (floats to
    1e-9), but for the columns ``differ`` names (the batch, the time it ran, keyed or sealed
    values); rows ordered by ``key``'s columns that are compared."""
    with Workspace.open(pair.db, read_only=True) as ws:
        duck = ws.sql(f"SELECT * FROM {table}")
    spark = pd.read_parquet(pair.lake / table)
    columns = [c for c in duck.columns if c not in differ]
    order = [k for k in key if k in columns]
    duck = duck[columns].sort_values(order).reset_index(drop=True)
    spark = spark[columns].sort_values(order).reset_index(drop=True)
    assert len(spark) == len(duck) > 0, table
    bad = {}
    for c in columns:
        if duck[c].equals(spark[c]):  # most columns: equal as they are
            continue
        wrong = [
            (duck.at[i, c], spark.at[i, c])
            for i in range(len(duck))
            if not same(duck.at[i, c], spark.at[i, c])
        ]
        if wrong:
            bad[c] = (len(wrong), wrong[:2])
    assert bad == {}, table


def _files(shop, folder: Path) -> list[list[str]]:
    """The batches both engines take, in order: the shop's events; a file of bad rows,
    duplicates and consents, some of whose event ids the shop has; both again."""
    bad = folder / "bad.csv"
    first = pq.read_table(shop.file("events")).slice(0, 3).to_pandas()
    extra = "".join(
        f"{r.event_id},{r.event},{r.user_id},a1,{r.item_id or ''},1,2026-01-05T00:00:00Z,,\n"
        for r in first.itertuples()
    )
    bad.write_text(BAD + extra, encoding="utf-8")
    return [[shop.file("events")], [str(bad)], [shop.file("events"), str(bad)]]


@pytest.fixture(scope="module")
def pair(shop, spark_session, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    folder = tmp_path_factory.mktemp("ingest-pair")
    return _both(spark_session, folder, [("events", paths, {}) for paths in _files(shop, folder)])


def test_each_batch_counts_the_same_on_both_engines(pair: Pair) -> None:
    assert len(pair.duck) == len(pair.spark) == 3
    for duck, spark in zip(pair.duck, pair.spark, strict=True):
        assert {k: spark[k] for k in COUNTS} == {k: duck[k] for k in COUNTS}
    first, bad, again = pair.duck
    assert first["inserted"] > 60_000 and bad["quarantined"] >= 3 and bad["duplicates"] >= 4
    assert again["inserted"] == 0 and again["quarantined"] == 0


@pytest.mark.parametrize("table", list(TABLES))
def test_each_table_holds_the_same_rows(pair: Pair, table: str) -> None:
    _same_table(pair, table, *TABLES[table])


def test_the_lake_keeps_one_file_a_table_a_batch(pair: Pair) -> None:
    events = sorted(p.name for p in (pair.lake / "events").iterdir())
    assert len(events) == 3  # the new lake's empty file, two batches (the third added none)
    records = pd.read_parquet(pair.lake / "ingest_batches")
    assert len(records) == 3 and list(records["inserted"]) == [b["inserted"] for b in pair.spark]
    assert not [p for p in pair.lake.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_lake_made_from_a_store_takes_new_batches(shop_pair, open_lake, shop, tmp_path) -> None:
    lake = open_lake(copy_lake(shop_pair.lake, tmp_path / "lake"))
    before = lake.table("events").count().execute()
    result = ingest_on_lake(lake, Settings(), "events", [shop.file("events")])
    # Every valid row is the lake's already; the bad rows are quarantined in the lake's own
    # quarantine (a lake starts its own: the store's is keyed with its vault).
    assert result.rows_read > 60_000 and result.inserted == 0
    assert result.duplicates == result.rows_read - result.quarantined
    assert lake.table("events").count().execute() == before


def test_what_a_lake_does_not_take_is_refused_with_nothing_written(
    shop, open_lake, tmp_path
) -> None:
    lake = open_lake(tmp_path / "lake", create=True)
    plain = Settings()
    settings = plain.model_copy(
        update={"privacy": plain.privacy.model_copy(update={"pseudonymize_ids": True})}
    )
    with pytest.raises(InputError, match="pseudonymize_ids"):
        ingest_on_lake(lake, settings, "events", [shop.file("events")])
    assert sorted(p.name for p in lake.path.iterdir()) == sorted([*LAKE_TABLES, MARKER])
    assert not (lake.path / PERSONAL).exists()
    assert all(lake.table(t).count().execute() == 0 for t in LAKE_TABLES)


#: An items file after the shop's catalogue: a changed price, a new item, an item given twice
#: (the last row wins), a row given as the lake holds it (no update), bad rows.
ITEMS = """item_id,title,category,price
{same},{same_title},{same_category},{same_price}
{changed},{changed_title},{changed_category},123.45
new1,A new thing,shoes,10
new1,A new thing,shoes,12.5
,no id,shoes,3
bad1,bad price,shoes,not a number
"""
#: An events batch whose rows name items (--item-columns): one new, one the lake holds.
ITEM_EVENTS = """event_id,event,user_id,item_id,ts,cat
ie1,product_viewed,u1,new2,2026-01-01T00:00:00Z,bags
ie2,product_viewed,u1,{changed},2026-01-01T00:00:00Z,bags
"""


@pytest.fixture(scope="module")
def items_pair(shop, spark_session, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """The shop's items, then an items file that changes, adds and repeats items, then an
    events batch with --item-columns: into a store and into a new lake."""

    folder = tmp_path_factory.mktemp("items-pair")
    catalogue = pq.read_table(shop.file("items")).to_pandas()
    same, changed = catalogue.iloc[0], catalogue.iloc[1]
    values = {
        "same": same.item_id,
        "same_title": same.title,
        "same_category": same.category,
        "same_price": same.price,
        "changed": changed.item_id,
        "changed_title": changed.title,
        "changed_category": changed.category,
    }
    (folder / "items.csv").write_text(ITEMS.format(**values), encoding="utf-8")
    (folder / "events.csv").write_text(ITEM_EVENTS.format(**values), encoding="utf-8")
    batches: list[Batch] = [
        ("items", [shop.file("items")], {}),
        ("items", [str(folder / "items.csv")], {}),
        ("events", [str(folder / "events.csv")], {"item_columns": {"category": "cat"}}),
    ]
    return _both(spark_session, folder, batches)


def test_items_merge_on_a_lake_as_on_a_store(items_pair: Pair) -> None:
    """Each batch's counts (updated, and the items an events batch gives, too), then the items
    and quarantine tables column by column."""
    for duck, spark in zip(items_pair.duck, items_pair.spark, strict=True):
        wanted = (*COUNTS, "updated", "related")
        assert {k: spark.get(k) for k in wanted} == {k: duck.get(k) for k in wanted}
    catalogue, changes, events = items_pair.duck
    assert catalogue["inserted"] > 100
    # the changed item and new1 (once); the item as the lake holds it is no update
    assert (changes["inserted"], changes["updated"], changes["quarantined"]) == (2, 1, 2)
    assert events.get("related", {}).get("items", {}).get("inserted", 0) >= 1, events
    for table, key in (("items", ["item_id"]), ("quarantine", ["quarantine_id"])):
        _same_table(items_pair, table, key, ("batch_id", "updated_at", "received_at", "raw_key"))
    # one file: the merged table took the old one's place
    assert len(list((items_pair.lake / "items").glob("*.parquet"))) == 1
    assert not [p for p in items_pair.lake.iterdir() if p.name.startswith(".")]


def test_the_command_line_ingests_into_a_new_lake(tmp_path: Path) -> None:
    events = tmp_path / "e.csv"
    events.write_text(BAD, encoding="utf-8")
    lake = tmp_path / "lake"
    done = run(tmp_path, "--engine", "spark", "ingest", "events", str(events), "--json", db=lake)
    assert done.code == 0, done.stderr
    with Workspace.open(tmp_path / "s.duckdb") as ws:
        duck = ws.ingest.files("events", [str(events)]).to_dict()
    got = done.json()
    assert {k: got[k] for k in COUNTS if k in got} == {k: duck[k] for k in COUNTS if k in got}
    assert got["inserted"] > 0 and got["quarantined"] > 0 and got["duplicates"] > 0
    assert (lake / MARKER).exists() and (lake / "events").is_dir()
    # A lake made by ingest (its users and items tables empty) builds profiles on Spark from
    # the command line as a store does.
    built = run(tmp_path, "--engine", "spark", "profile", "build", "--json", db=lake)
    assert built.code == 0, built.stderr
    with Workspace.open(tmp_path / "s.duckdb") as ws:
        duck_build = ws.profiles.build()
    assert built.json()["users"] == duck_build.users >= 2
    assert datetime.fromisoformat(built.json()["as_of"]) == duck_build.as_of
    users = tmp_path / "users.csv"
    users.write_text(USERS.format(known="u1", email="u1@example.com"), encoding="utf-8")
    given = run(tmp_path, "--engine", "spark", "ingest", "users", str(users), "--json", db=lake)
    assert given.code == 0, given.stderr
    with Workspace.open(tmp_path / "s.duckdb") as ws:
        duck_users = ws.ingest.files("users", [str(users)]).to_dict()
    assert {k: given.json()[k] for k in (*COUNTS, "updated")} == {
        k: duck_users[k] for k in (*COUNTS, "updated")
    }
    assert "u1@example.com" not in _lake_text(lake)


#: A users file after the shop's users: a user changed (city, email, consent), a user as the
#: lake holds them but for a field the file leaves out, a new user given twice (the last row
#: wins), bad rows.
USERS = """user_id,city,email,marketing_opt_in,birth_year
{known},Lhasa,{email},true,1990
new1,Hangzhou,first@example.com,false,2001
new1,Suzhou,new1@example.com,true,2001
,Nowhere,nobody@example.com,false,1990
bad1,Beijing,bad1@example.com,false,not a year
"""


@pytest.fixture(scope="module")
def users_pair(shop, spark_session, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """The shop's users, then a users file that changes, adds, repeats and misspells users,
    then the same file again: into a store and into a new lake."""

    folder = tmp_path_factory.mktemp("users-pair")
    known = pq.read_table(shop.file("users")).slice(5, 1).to_pylist()[0]["user_id"]
    changes = folder / "users.csv"
    changes.write_text(USERS.format(known=known, email="lhasa@example.com"), encoding="utf-8")
    batches = [[shop.file("users")], [str(changes)], [str(changes)]]
    return _both(spark_session, folder, [("users", paths, {}) for paths in batches])


def _lake_text(lake: Path) -> str:
    """Every value of every table of the lake, as text (Parquet's pages are compressed: its
    bytes do not show a value)."""
    return "".join(
        pd.read_parquet(folder).astype(str).to_csv()
        for folder in lake.iterdir()
        if folder.is_dir() and any(folder.glob("*.parquet"))
    )


def _people(path: Path) -> pd.DataFrame:
    """A store's personal data, opened with its vault, by user."""
    store = Store.open(path, read_only=True)
    try:
        vault = open_vault(store)
        assert vault is not None
        opened_people(store.con, vault, "SELECT user_id, sealed FROM pii", "_t_people")
        people = store.con.sql("SELECT * FROM _t_people").df()
    finally:
        store.close()
    return people.sort_values("user_id").reset_index(drop=True)


def test_users_merge_on_a_lake_as_on_a_store(users_pair: Pair) -> None:
    """Each batch's counts, then users, consents and the quarantine column by column, and the
    personal data the personal store holds opened equal to the store's."""
    for duck, spark in zip(users_pair.duck, users_pair.spark, strict=True):
        wanted = (*COUNTS, "updated")
        assert {k: spark.get(k) for k in wanted} == {k: duck.get(k) for k in wanted}
    shop_users, changes, again = users_pair.duck
    assert shop_users["inserted"] > 2900  # the simulator makes some rows dirty on purpose
    # the known user and new1 (once); bad rows: no id, a bad year
    assert (changes["inserted"], changes["updated"], changes["quarantined"]) == (2, 1, 2)
    assert (again["inserted"], again["quarantined"], again["duplicates"]) == (0, 0, 5)
    for table, key, differ in (
        ("users", ["user_id"], ("batch_id", "updated_at")),
        ("consents", ["user_id", "purpose", "channel", "ts", "status"], ("source", "ts")),
        # raw is sealed (fresh nonces), raw_key and subjects keyed with each vault's own key
        (
            "quarantine",
            ["quarantine_id"],
            ("batch_id", "received_at", "raw_key", "raw", "subjects"),
        ),
    ):
        _same_table(users_pair, table, key, differ)
    # Personal data: sealed in the personal store, opened equal to the store's; none of it in
    # the lake's Parquet (the quarantined rows are sealed too).
    duck_people = _people(users_pair.db)
    lake_people = _people(users_pair.lake / PERSONAL)
    assert len(lake_people) == len(duck_people) > 2900
    assert duck_people.equals(lake_people)
    text = _lake_text(users_pair.lake)
    for email in ("lhasa@example.com", "new1@example.com", "bad1@example.com"):
        assert email not in text
    assert set(pd.read_parquet(users_pair.lake / "quarantine")["raw"].str[:5]) == {"jzv1:"}
    # The personal store keeps personal data and keys only, between batches.
    store = Store.open(users_pair.lake / PERSONAL, read_only=True)
    try:
        assert [store.count(t) for t in ("users", "consents", "quarantine")] == [0, 0, 0]
    finally:
        store.close()
    assert not [p for p in users_pair.lake.iterdir() if p.name.startswith(".")]


def test_a_lake_made_from_a_store_keeps_its_personal_data(
    shop_pair, open_lake, shop, tmp_path
) -> None:
    """lake init carries the store's sealed personal data and its key: a users batch that
    leaves a field out keeps the stored value, opened with the same key."""
    lake = open_lake(copy_lake(shop_pair.lake, tmp_path / "lake"))
    before = lake.table("users").count().execute()
    known = pq.read_table(shop.file("users")).slice(7, 1).to_pylist()[0]
    users = tmp_path / "users.csv"
    users.write_text(f"user_id,city\n{known['user_id']},Lhasa\n", encoding="utf-8")
    result = ingest_on_lake(lake, Settings(), "users", [str(users)])
    assert (result.inserted, result.updated) == (1, 1)
    row = lake.table("users").filter(lambda t: t.user_id == known["user_id"]).to_pandas()
    assert list(row["city"]) == ["Lhasa"] and list(row["gender"]) == [known["gender"]]
    assert lake.table("users").count().execute() == before > 2900
    people = _people(lake.path / PERSONAL)
    mine = people[people.user_id == known["user_id"]].iloc[0]
    assert (mine.email, mine.phone) == (known["email"], known["phone"])


#: Segment messages: identify calls (personal data, a consent, a bad one), and tracks of the
#: same people, one anonymous before it is identified.
SEGMENT = "\n".join(
    [
        '{"type":"identify","userId":"s1","anonymousId":"anon1","messageId":"i1",'
        '"timestamp":"2026-01-01T00:00:00Z","traits":{"email":"s1@example.com",'
        '"city":"Lhasa","marketing_opt_in":true}}',
        '{"type":"identify","userId":"s2","messageId":"i2","timestamp":"2026-01-01T00:00:00Z",'
        '"traits":{"email":"s2@example.com","birth_year":"not a year"}}',
        '{"type":"identify","userId":"s3","messageId":"i3","timestamp":"2026-01-02T00:00:00Z",'
        '"traits":{"name":"Three","city":"Xi\'an"}}',
        '{"type":"track","event":"Product Viewed","anonymousId":"anon1","messageId":"t1",'
        '"timestamp":"2025-12-31T00:00:00Z","properties":{"product_id":"sku1","price":3}}',
        '{"type":"track","event":"Order Completed","userId":"s1","messageId":"t2",'
        '"timestamp":"2026-01-03T00:00:00Z","properties":{"order_id":"o1","revenue":9,'
        '"products":[{"product_id":"sku1","price":9,"quantity":1}]}}',
    ]
)


def test_segment_identify_messages_on_a_lake_as_on_a_store(spark_session, tmp_path) -> None:
    """An events batch of Segment messages that give users, twice, into a store and a new
    lake: counts (the users given too), events, users, consents and identities equal; the
    personal records opened equal; no personal value in the lake's tables."""
    messages = tmp_path / "segment.jsonl"
    messages.write_text(SEGMENT + "\n", encoding="utf-8")
    pair = _both(spark_session, tmp_path, [("events", [str(messages)], {})] * 2)
    duck, spark = pair.duck, pair.spark
    for d, s in zip(duck, spark, strict=True):
        wanted = (*COUNTS, "related")
        assert {k: s.get(k) for k in wanted} == {k: d.get(k) for k in wanted}
    assert duck[0]["related"]["users"]["inserted"] == 2  # s1, s3 (s2's year is bad)
    assert duck[0]["identities_linked"] == 1 and duck[1]["inserted"] == 0
    for table, key, differ in (
        ("users", ["user_id"], ("batch_id", "updated_at")),
        ("events", ["event_id"], ("batch_id", "received_at")),
        ("identities", ["anonymous_id"], ("batch_id",)),
        ("consents", ["user_id", "purpose", "channel", "status"], ("source", "ts")),
    ):
        _same_table(pair, table, key, differ)
    assert _people(pair.db).equals(_people(pair.lake / PERSONAL))
    text = _lake_text(pair.lake)
    assert "s1@example.com" not in text and "s2@example.com" not in text and "Three" not in text
