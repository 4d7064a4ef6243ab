"""The DuckDB-backed store: connection, settings, migrations and transactions.

A store is one DuckDB file. Its schema is created and upgraded by the numbered SQL files in
``jingzhun/store/migrations`` (``NNN_name.sql``); the ``schema_version`` table records each
one applied. A file written by a newer jingzhun (a higher version than this code knows) is
refused rather than misread.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from jingzhun import interrupt
from jingzhun.config import Settings
from jingzhun.errors import ConflictError, InputError, NotFoundError, StoreVersionError
from jingzhun.store.registry import Registry
from jingzhun.store.sql import Sql, ident
from jingzhun.store.tables import SCHEMA_VERSION, STORE_META

if TYPE_CHECKING:
    import pyarrow as pa

_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """All migrations shipped with this version of jingzhun, in order."""
    found = []
    for entry in resources.files("jingzhun.store.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


def latest_schema_version() -> int:
    return len(migrations())


#: What a store connection may not do, in every DuckDB this project supports (checked on 2.0):
#: install or load extensions (no network, no code from outside the package), or touch any
#: file but its own (``enable_external_access = false`` leaves DuckDB the store file, its WAL
#: and its temp folder). The store never reads user files itself: sources hand it Arrow
#: batches, exports stream Arrow out, foreign logs are read by :func:`file_reader`.
#: ``lock_configuration`` then makes these settings final for the connection, so even an
#: injected statement cannot ``SET enable_external_access = true``, ``ATTACH`` a file,
#: ``COPY`` to one or ``read_csv('/etc/passwd')``.
_SEALED: dict[str, Any] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}
#: Settings that remain changeable after the lock: Ibis sets these two on every backend it
#: wraps around a connection, and ingest turns off one optimizer for a batch (see pipeline).
_STILL_SETTABLE = ["timezone", "python_enable_replacements", "disabled_optimizers"]

#: A URL or a DuckDB connection-string prefix (``md:``, ``motherduck:``, ``https://``, ``s3://``):
#: DuckDB would contact a server or fetch an extension. A store is a local file.
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _seal(con: duckdb.DuckDBPyConnection) -> None:
    """Turn off file access (beyond the connection's own database files) and lock settings."""
    con.execute("SET allowed_configs = ?", [_STILL_SETTABLE])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def file_reader(*paths: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that may read ``paths`` and nothing else.

    For reading files outside a store (foreign logs, ingest sources): no extensions, no other
    file, no network, settings locked; values still go in as parameters, this is the second
    wall behind them.
    """
    con = duckdb.connect(config=dict(_SEALED))
    allowed = [str(Path(p).resolve()) for p in paths]
    con.execute("SET allowed_paths = ?", [allowed])
    _seal(con)
    return con


def check_store_path(path: str | Path, option: str = "--db") -> Path:
    """``path`` if it can name a local store file; an error naming ``option`` (the flag that
    gave it: ``--db``, or ``--from-store`` for a store read for its models) otherwise."""
    text = str(path)
    if _REMOTE.match(text) and not re.match(r"^[A-Za-z]:[\\/]", text):
        raise InputError(
            f"{option} {text[:80]!r} is not a local file path",
            hint="a store is one local DuckDB file; pass its path (remote stores are not supported)",
        )
    # DuckDB reads what follows a '?' in a database path as connection options (its WAL for
    # 'a?b' becomes 'a.wal?b'): a store's name holds none.
    if text in ("", ":memory:") or any(ord(c) < 32 or ord(c) == 127 or c == "?" for c in text):
        raise InputError(
            f"{option} {text[:80]!r} is not a usable file name",
            hint="pass the path of a store file, without control characters",
        )
    # Undecodable bytes in argv arrive as lone surrogates (PEP 383); the OS takes them back.
    if (
        any(len(os.fsencode(part)) > 255 for part in Path(text).parts)
        or len(os.fsencode(text)) > 4000
    ):
        raise InputError(
            f"{option} {text[:60]!r}…: file name too long", hint="use a shorter path for the store"
        )
    return Path(text)


def server_note(path: Path) -> Path:
    """Where ``jingzhun serve`` says, while it runs, that it holds the store at ``path``."""
    return path.with_name(path.name + ".server.json")


def _served_by(path: Path) -> str | None:
    """The address of the server holding ``path``, if its note is there and its process lives."""
    import json

    try:
        note = json.loads(server_note(path).read_text(encoding="utf-8"))
        pid, url = int(note["pid"]), str(note["url"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url


def _translate_open_error(path: Path, exc: duckdb.Error) -> Exception:
    text = str(exc)
    if "Could not set lock" in text:
        url = _served_by(path)
        if url is not None:
            return ConflictError(
                f"store {path} is held by the jingzhun server at {url}",
                hint=f"use its API while it runs (jobs: POST {url}/v1/jobs; data: {url}/docs), "
                "or stop it first",
            )
        holder = re.search(r"\(PID (\d+)\)", text)
        who = f"process {holder[1]}" if holder else "another process"
        return ConflictError(
            f"store {path} is locked by {who}",
            hint="wait for it to finish, or pass another --db",
        )
    if "not a valid DuckDB database" in text:
        return InputError(
            f"{path} is not a DuckDB database", hint="pass the path of a jingzhun store with --db"
        )
    if "does not exist" in text or "No such file" in text:
        return NotFoundError(
            f"no store at {path}",
            hint="check --db or $JINGZHUN_DB, or ingest data first (jingzhun ingest events FILE)",
        )
    if "version number" in text or "newer" in text.lower():
        return StoreVersionError(
            f"{path} was written by a newer DuckDB than this one ({duckdb.__version__})",
            hint="upgrade jingzhun",
        )
    return InputError(f"cannot open store {path}: {text.splitlines()[0]}")


class Store:
    """One open jingzhun store.

    Parameters
    ----------
    path : Path
        The DuckDB file; created (with its folder) when missing unless ``read_only``.
    settings : Settings
        Memory limit and threads for DuckDB.
    read_only : bool
        Open without write access, so several readers may share the file.

    Examples
    --------
    >>> with Store.open("shop.duckdb") as store:           # doctest: +SKIP
    ...     store.sql("select count(*) from events").fetchone()
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self.con = con
        self.path = path
        self.read_only = read_only

    @classmethod
    def open(
        cls, path: str | Path, settings: Settings | None = None, *, read_only: bool = False
    ) -> Store:
        settings = settings or Settings()
        path = check_store_path(path)
        if read_only and not path.exists():
            raise NotFoundError(
                f"no store at {path}",
                hint="check --db or $JINGZHUN_DB, or ingest data first (jingzhun ingest events FILE)",
            )
        if not read_only:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(
                    f"cannot create the folder for store {path}: {exc.strerror}"
                ) from exc
        config: dict[str, Any] = {**_SEALED, "memory_limit": settings.store.memory_limit}
        if settings.store.threads:
            config["threads"] = settings.store.threads
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.Error as exc:
            raise _translate_open_error(path, exc) from exc
        # Progress bars would write to stdout, which `--json` reserves for one object.
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")
        # Row order inside a table carries no meaning here; dropping it lets inserts run in parallel.
        con.execute("SET preserve_insertion_order = false")
        try:
            _seal(con)
        except duckdb.Error:
            con.close()
            raise
        store = cls(con, path, read_only)
        try:
            store._migrate()
            store._check_hash_canary()
            if not read_only:
                Registry(store).absorb_files()
        except BaseException:
            con.close()
            raise
        return store

    # -- schema -----------------------------------------------------------------------------

    def schema_version(self) -> int:
        exists = self.con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_name = ?",
            [SCHEMA_VERSION],
        ).fetchall()[0][0]
        if not exists:
            return 0
        return self.con.execute(
            f"SELECT coalesce(max(version), 0) FROM {SCHEMA_VERSION}"
        ).fetchall()[0][0]

    def _migrate(self) -> None:
        known = migrations()
        current = self.schema_version()
        if current == 0:
            other = self.con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()[0][0]
            if other:
                raise StoreVersionError(
                    f"{self.path} is a DuckDB database but not a jingzhun store",
                    hint="pass the path of a jingzhun store, or a new file, with --db",
                )
        if current > len(known):
            raise StoreVersionError(
                f"{self.path} has schema version {current}, written by a newer jingzhun "
                f"(this one knows up to {len(known)})",
                hint="upgrade jingzhun to open it",
            )
        pending = known[current:]
        if not pending:
            return
        if self.read_only:
            raise StoreVersionError(
                f"{self.path} has schema version {current} and needs upgrading to {len(known)}",
                hint="open it once without read-only access (any jingzhun write command) to upgrade",
            )
        with self.transaction():
            self.con.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA_VERSION} ("
                "version INTEGER NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
            )
            for migration in pending:
                self.con.execute(migration.sql)
                self.con.execute(
                    f"INSERT INTO {SCHEMA_VERSION} VALUES (?, ?, now()::TIMESTAMP)",
                    [migration.version, migration.name],
                )

    def _check_hash_canary(self) -> None:
        """Recompute ``events.event_key`` if this DuckDB hashes strings differently.

        Duplicate detection compares ``event_key = hash(event_id)`` first; a DuckDB release
        with another hash function would make every stored key stale, so the store records
        the hash of a fixed string and rebuilds the keys when it no longer matches.
        """
        current = str(self.con.execute("SELECT hash('jingzhun event_key canary')").fetchall()[0][0])
        row = self.con.execute(
            f"SELECT value FROM {STORE_META} WHERE key = 'hash_canary'"
        ).fetchall()
        row = row[0] if row else None
        if row is not None and row[0] == current:
            return
        if self.read_only:
            if row is None:
                return
            raise StoreVersionError(
                f"{self.path} needs its event keys rebuilt for this DuckDB version",
                hint="open it once without read-only access (any jingzhun write command)",
            )
        with self.transaction():
            if row is not None:
                self.con.execute("UPDATE events SET event_key = hash(event_id)")
            self.con.execute(f"DELETE FROM {STORE_META} WHERE key = 'hash_canary'")
            self.con.execute(f"INSERT INTO {STORE_META} VALUES ('hash_canary', ?)", [current])

    # -- use --------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run a block atomically: committed on success, rolled back on any exception."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            interrupt.note_rollback()
            raise
        self.con.execute("COMMIT")

    def sql(
        self, query: str, params: list[Any] | dict[str, Any] | None = None
    ) -> duckdb.DuckDBPyConnection:
        return self.con.execute(query, params) if params is not None else self.con.execute(query)

    # The helpers below fetch every row, which DuckDB 2 needs before the relation API (used by
    # Ibis) may run on the same connection: a half-read result blocks it.

    def rows(
        self, query: str, params: list[Any] | dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """All rows of ``query``."""
        return self.sql(query, params).fetchall()

    def scalar(self, query: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
        """The first column of the first row of ``query`` (None when there is no row)."""
        rows = self.rows(query, params)
        return rows[0][0] if rows else None

    def run(self, query: str, params: list[Any] | dict[str, Any] | None = None) -> int | None:
        """Run a statement; return the row count DuckDB reports for INSERT/UPDATE/DELETE."""
        rows = self.rows(query, params)
        return rows[0][0] if rows and len(rows[0]) == 1 and isinstance(rows[0][0], int) else None

    def ibis(self) -> Any:
        """An Ibis backend over this connection."""
        import ibis

        self.con.execute("SELECT 1").fetchall()  # finish any half-read result first
        return ibis.duckdb.from_connection(self.con)

    def columns(self, table: str) -> dict[str, str]:
        """A table's (or temporary table's) columns and their DuckDB types, in table order."""
        return dict(
            self.rows(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? ORDER BY ordinal_position",
                [table],
            )
        )

    def count(self, table: str) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {ident(table)}"))

    def insert_arrow(self, table: str, rows: pa.Table) -> int:
        """Insert the Arrow ``rows`` (columns named as ``table``'s; any it lacks take their
        defaults) into ``table``; how many. Rows read elsewhere, from a lake's Parquet."""
        if not rows.num_rows:
            return 0
        names: Sql = ", ".join(ident(c) for c in rows.column_names)
        self.con.from_arrow(rows).query(
            "_jz_arrow_rows",
            f"INSERT INTO {ident(table)} ({names}) SELECT {names} FROM _jz_arrow_rows",
        ).fetchall()
        return rows.num_rows

    def create_arrow(self, table: str, rows: pa.Table) -> int:
        """Create ``table`` holding the Arrow ``rows``, with their columns and types: a table a
        build makes rather than the migrations (``profiles``), read from a lake's Parquet."""
        self.con.from_arrow(rows).query(
            "_jz_arrow_rows", f"CREATE TABLE {ident(table)} AS SELECT * FROM _jz_arrow_rows"
        ).fetchall()
        return rows.num_rows

    def cursor(self) -> Store:
        """The same store over a connection of its own, for another thread (DuckDB's
        connections are not shared between threads; temporary tables are not seen)."""
        return Store(self.con.cursor(), self.path, self.read_only)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
