"""The DuckDB store: schema and migrations, refusals, the hash canary, transactions.

Every test works on a real DuckDB file in a temp folder.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from jingzhun.errors import InputError, NotFoundError, StoreVersionError
from jingzhun.store import TABLES, Store, latest_schema_version
from jingzhun.store.store import migrations
from jingzhun.workspace import Workspace
from tests.conftest import plain_pii

#: The data model's tables (docs: DESIGN.md, "Data model"), plus the store's own bookkeeping.
MODEL_TABLES = {
    "events",
    "users",
    "items",
    "pii",
    "identities",
    "ingest_batches",
    "quarantine",
    "event_flags",
    "store_meta",
}
PII_COLUMNS = {"email", "phone", "name", "address"}
CANARY_TEXT = "jingzhun event_key canary"


def _tables(con: duckdb.DuckDBPyConnection, kind: str = "BASE TABLE") -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_type = ?",
        [kind],
    ).fetchall()
    return {r[0] for r in rows}


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ? "
        "ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [r[0] for r in rows]


def _raw(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A plain DuckDB connection, bypassing jingzhun (to tamper with or inspect a store)."""
    return duckdb.connect(str(path), read_only=read_only)


def _csv(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- schema ------------------------------------------------------------------------------------


def test_new_store_has_the_latest_schema_and_every_table_of_the_data_model(db_path: Path) -> None:
    assert not db_path.exists()
    with Store.open(db_path) as store:
        assert store.schema_version() == latest_schema_version() == len(migrations()) >= 2
        tables = _tables(store.con)
        assert tables >= MODEL_TABLES | {"schema_version"}
        assert set(TABLES) <= tables
        assert "stitched_events" in _tables(store.con, "VIEW")
        for table in MODEL_TABLES - {"store_meta"}:
            assert store.count(table) == 0, table
        # the contract's column names (DESIGN.md)
        events = _columns(store.con, "events")
        for col in (
            "event_id", "event", "user_id", "anonymous_id", "order_id", "item_id", "quantity",
            "price", "revenue", "currency", "channel", "campaign_id", "ts", "received_at",
            "properties", "batch_id",
        ):  # fmt: skip
            assert col in events, col
        users = _columns(store.con, "users")
        for col in (
            "user_id",
            "created_at",
            "gender",
            "birth_year",
            "city",
            "region",
            "signup_channel",
            "attributes",
        ):
            assert col in users, col
        items = _columns(store.con, "items")
        for col in (
            "item_id",
            "title",
            "category",
            "brand",
            "price",
            "active",
            "stock",
            "attributes",
        ):
            assert col in items, col
        assert {"anonymous_id", "user_id", "linked_at"} <= set(_columns(store.con, "identities"))
        assert {"batch_id", "source", "line_no", "raw", "reason", "received_at"} <= set(
            _columns(store.con, "quarantine")
        )
        versions = store.sql("SELECT version, name FROM schema_version ORDER BY version").fetchall()
        assert versions == [(m.version, m.name) for m in migrations()]
        assert versions[0] == (1, "initial")
    assert db_path.exists()


def test_store_creates_missing_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.duckdb"
    with Store.open(path) as store:
        assert store.schema_version() == latest_schema_version()
    assert path.is_file()


def test_reopening_applies_no_migration_twice(db_path: Path) -> None:
    with Store.open(db_path) as store:
        store.sql("INSERT INTO store_meta VALUES ('marker', 'kept')")
        first_applied = store.sql(
            "SELECT applied_at FROM schema_version ORDER BY version"
        ).fetchall()
    for _ in range(2):
        with Store.open(db_path) as store:
            assert store.schema_version() == latest_schema_version()
            applied = store.sql(
                "SELECT version, applied_at FROM schema_version ORDER BY version"
            ).fetchall()
            assert applied == [(v + 1, first_applied[v][0]) for v in range(latest_schema_version())]
            assert (
                store.sql("SELECT count(*) FROM store_meta WHERE key = 'hash_canary'").fetchone()[0]
                == 1
            )
            assert store.sql("SELECT value FROM store_meta WHERE key = 'marker'").fetchall() == [
                ("kept",)
            ]
    with Store.open(db_path, read_only=True) as store:
        assert store.read_only
        assert store.schema_version() == latest_schema_version()
        with pytest.raises(duckdb.Error):
            store.sql("INSERT INTO store_meta VALUES ('x', 'y')")


def test_store_of_a_newer_schema_version_is_refused(db_path: Path) -> None:
    Store.open(db_path).close()
    future = latest_schema_version() + 1
    with _raw(db_path) as con:
        con.execute(
            "INSERT INTO schema_version VALUES (?, 'from_the_future', now()::TIMESTAMP)", [future]
        )
    for read_only in (False, True):
        with pytest.raises(StoreVersionError, match="newer") as info:
            Store.open(db_path, read_only=read_only)
        assert str(db_path) in str(info.value)
        assert info.value.exit_code == 2
    # refused, not "repaired": the file still says the future version
    with _raw(db_path, read_only=True) as con:
        assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == future


def test_duckdb_file_with_unrelated_tables_is_refused_and_left_alone(db_path: Path) -> None:
    with _raw(db_path) as con:
        con.execute("CREATE TABLE sales (id INTEGER, amount DOUBLE)")
        con.execute("INSERT INTO sales VALUES (1, 9.5)")
    with pytest.raises(StoreVersionError, match="not a jingzhun store"):
        Store.open(db_path)
    with pytest.raises(StoreVersionError, match="not a jingzhun store"):
        Workspace.open(db_path)
    with _raw(db_path, read_only=True) as con:
        assert _tables(con) == {"sales"}
        assert con.execute("SELECT * FROM sales").fetchall() == [(1, 9.5)]


def test_file_that_is_not_duckdb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("just some text, not a database\n" * 200, encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(InputError, match="not a DuckDB database"):
        Store.open(path)
    assert path.read_bytes() == before


def test_read_only_open_of_a_missing_store_raises_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "store.duckdb"
    with pytest.raises(NotFoundError, match="no store") as info:
        Store.open(path, read_only=True)
    assert str(path) in str(info.value)
    assert not path.exists()
    assert not path.parent.exists()


# -- the hash canary --------------------------------------------------------------------------


def test_hash_canary_mismatch_rebuilds_event_keys(db_path: Path, tmp_path: Path) -> None:
    csv = _csv(
        tmp_path,
        "events.csv",
        "event_id,event,ts,user_id\n"
        "e1,page_viewed,2025-03-01T10:00:00,u1\n"
        "e2,page_viewed,2025-03-01T10:01:00,u2\n",
    )
    with Workspace.open(db_path) as ws:
        assert ws.ingest("events", [csv]).inserted == 2
        canary = ws.store.sql("SELECT value FROM store_meta WHERE key = 'hash_canary'").fetchone()[
            0
        ]
        expected = str(ws.store.sql(f"SELECT hash('{CANARY_TEXT}')").fetchone()[0])
        assert canary == expected
    # Pretend the file was written by a DuckDB that hashes differently.
    with _raw(db_path) as con:
        con.execute("UPDATE store_meta SET value = '12345' WHERE key = 'hash_canary'")
        con.execute("UPDATE events SET event_key = 42 WHERE event_id = 'e1'")
        assert con.execute("SELECT event_key FROM events WHERE event_id = 'e1'").fetchone()[0] == 42
    # A read-only open cannot rebuild the keys: it says so rather than use stale ones.
    with pytest.raises(StoreVersionError, match="rebuilt"):
        Store.open(db_path, read_only=True)
    with Store.open(db_path) as store:
        rows = store.sql(
            "SELECT event_id, event_key = hash(event_id) FROM events ORDER BY event_id"
        ).fetchall()
        assert rows == [("e1", True), ("e2", True)]
        assert store.sql("SELECT value FROM store_meta WHERE key = 'hash_canary'").fetchall() == [
            (expected,)
        ]
    # With the keys rebuilt, duplicate detection works again: a re-ingest stores nothing.
    with Workspace.open(db_path) as ws:
        again = ws.ingest("events", [csv])
        assert (again.inserted, again.duplicates) == (0, 2)
        assert ws.store.count("events") == 2


# -- transactions ------------------------------------------------------------------------------


def test_transaction_rolls_back_on_exception_and_commits_otherwise(db_path: Path) -> None:
    class Boom(Exception):
        pass

    with Store.open(db_path) as store:
        with pytest.raises(Boom), store.transaction() as con:
            con.execute("INSERT INTO store_meta VALUES ('a', '1')")
            con.execute("INSERT INTO ingest_batches SELECT * FROM ingest_batches")  # harmless
            assert con.execute("SELECT count(*) FROM store_meta WHERE key = 'a'").fetchone()[0] == 1
            raise Boom
        assert store.sql("SELECT count(*) FROM store_meta WHERE key = 'a'").fetchone()[0] == 0
        # a failing statement rolls back what came before it in the block
        with pytest.raises(duckdb.Error), store.transaction() as con:
            con.execute("INSERT INTO store_meta VALUES ('b', '1')")
            con.execute("INSERT INTO store_meta VALUES (NULL, NULL)")  # NOT NULL violation
        assert store.sql("SELECT count(*) FROM store_meta WHERE key = 'b'").fetchone()[0] == 0
        # the connection is usable afterwards, and a clean block commits
        with store.transaction() as con:
            con.execute("INSERT INTO store_meta VALUES ('c', '1')")
    with Store.open(db_path) as store:
        assert store.sql("SELECT key FROM store_meta WHERE key IN ('a', 'b', 'c')").fetchall() == [
            ("c",)
        ]


# -- personal data and the stitched view -------------------------------------------------------


def test_pii_lives_only_in_the_pii_table(db_path: Path, shop) -> None:
    with Workspace.open(db_path) as ws:
        con = ws.store.con
        for table in ("users", "events", "items", "identities"):
            assert not PII_COLUMNS & set(_columns(con, table)), table
        assert set(_columns(con, "pii")) >= PII_COLUMNS
        assert "email" not in _columns(con, "stitched_events")
        result = ws.ingest("users", [shop.file("users")])
        assert result.inserted > 0
        assert ws.store.count("pii") > 0
        # the personal values went to pii (encrypted), and no copy of them hides in
        # users.attributes
        people = plain_pii(ws.store, ["email", "phone"])
        assert sum("@" in (e or "") for _, e, _ in people) > 0
        assert ws.store.scalar(
            "SELECT count(*) FROM pii WHERE sealed IS NULL OR email IS NOT NULL "
            "OR phone IS NOT NULL"
        ) == 0  # fmt: skip
        attributes = dict(ws.store.rows("SELECT user_id, CAST(attributes AS VARCHAR) FROM users"))
        leaked = [
            u
            for u, email, phone in people
            if any(v and v in (attributes.get(u) or "") for v in (email, phone))
            or '"email"' in (attributes.get(u) or "").lower()
        ]
        assert leaked == []


def test_stitched_events_view_puts_anonymous_history_under_the_linked_user(
    db_path: Path, tmp_path: Path
) -> None:
    csv = _csv(
        tmp_path,
        "events.csv",
        "event_id,event,ts,user_id,anonymous_id\n"
        "e1,page_viewed,2025-03-01T10:00:00,,a1\n"
        "e2,signed_up,2025-03-01T10:05:00,u1,a1\n"
        "e3,page_viewed,2025-03-01T11:00:00,,a2\n",
    )
    with Workspace.open(db_path) as ws:
        result = ws.ingest("events", [csv])
        assert (result.inserted, result.identities_linked) == (3, 1)
        rows = ws.store.sql(
            "SELECT event_id, user_id FROM stitched_events ORDER BY event_id"
        ).fetchall()
        assert rows == [("e1", "u1"), ("e2", "u1"), ("e3", None)]
        assert "event_key" not in _columns(ws.store.con, "stitched_events")
        # the events table itself keeps what the source said
        assert (
            ws.store.sql("SELECT user_id FROM events WHERE event_id = 'e1'").fetchone()[0] is None
        )


# -- the connection is sealed (issue 12: defence in depth behind parameterized SQL) ----------


@pytest.mark.parametrize("read_only", [False, True])
def test_store_connection_opens_no_other_file_and_loads_nothing(
    db_path: Path, tmp_path: Path, read_only: bool
) -> None:
    Store.open(db_path).close()
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with Store.open(db_path, read_only=read_only) as store:
        attacks = [
            f"SELECT * FROM read_csv('{secret}')",
            "SELECT * FROM read_text('/etc/passwd')",
            f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
            f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "SET autoinstall_known_extensions = true",
            "INSTALL httpfs",
            "LOAD httpfs",
            "SELECT * FROM read_csv('https://example.invalid/x.csv')",
        ]
        for attack in attacks:
            with pytest.raises(duckdb.Error, match=r"(?i)permission|disabled|locked"):
                store.sql(attack)
        settings = dict(
            store.rows(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('enable_external_access', 'lock_configuration', "
                "'autoinstall_known_extensions', 'autoload_known_extensions')"
            )
        )
        assert set(settings.values()) == {"false", "true"}
        assert settings["enable_external_access"] == "false"
        assert settings["lock_configuration"] == "true"
        assert settings["autoload_known_extensions"] == "false"
        # The store itself still works: reads, and (read-write) writes and spills.
        assert store.count("events") == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".duckdb") == ["secret.csv"]


@pytest.mark.parametrize(
    "db",
    ["md:x", "motherduck:x", "https://example.invalid/x.duckdb", "s3://b/x.duckdb", ":memory:"],
)
def test_db_must_be_a_local_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    """DuckDB reads ``md:`` and URLs as remote stores and fetches extensions for them."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"^--db .* is not a (local file path|usable file name)"):
        Store.open(db)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "db", ["a\x00b.duckdb", "a\x1b[31m.duckdb", "x" * 300 + ".duckdb", "%_*?{0}%s", "s.duckdb?x=1"]
)
def test_db_names_that_cannot_be_files_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"^--db "):
        Store.open(db)
    assert list(tmp_path.iterdir()) == []


def test_count_quotes_the_table_name(db_path: Path) -> None:
    with Store.open(db_path) as store, pytest.raises(duckdb.Error, match="does not exist"):
        store.count('events" ; DROP TABLE events; --')
    with Store.open(db_path) as store:
        assert store.count("events") == 0
