"""Ingest into a lake (``jingzhun --engine spark --db LAKE ingest events FILE``, issue 19).

One definition of reading, validating, quarantining and deduplicating rows: the batch runs
through the same :class:`~jingzhun.ingest.pipeline.Ingestor` as on a DuckDB store — into a
scratch store of its own, on the machine that runs the command — and then Spark settles it
against the lake:

1. **read and validate** (driver, embedded DuckDB): every source's reading, encodings,
   column mapping, validation, quarantine of bad rows with their reasons, duplicates within
   the batch, identity links and the consents events state — exactly the DuckDB engine's code,
   on the batch alone. This work is row-local and the batch has to pass through one reader
   anyway (a file's line numbers are sequential); DuckDB validates about a million rows a
   second a core (docs/benchmarks.md).
2. **settle against the lake** (Spark): the batch's event ids that the lake holds already,
   its quarantined rows whose content the lake's quarantine holds, its anonymous ids the lake
   has linked — set operations over the lake's tables, which are what outgrows one machine.
   Their answers are at most the batch's size, so they come back to the driver, where the
   scratch store drops the duplicates and recomputes what depended on them (the consents of
   the events that stay, the batch's counts) with the same SQL as the DuckDB engine.
3. **append** (one rename a table): the batch's new rows of ``events``, ``identities``,
   ``consents`` and ``quarantine`` are each one Parquet file renamed into the table's folder,
   ``ingest_batches``' record last.

**Items** (an items file, or an events batch's ``--item-columns``) merge as on a store: the
lake's items table is read into the scratch store before the batch runs, so the same merge
(the batch's last row per item wins, absent columns keep their values, an unchanged row is
no update) counts and writes exactly what the DuckDB engine would; the merged table then
takes the lake's table's place in one rename, before the batch's record is added. A catalogue
is what one machine holds (millions of items are a few hundred MB).

**Users** (a users file, or an events batch's Segment identify messages) merge as on a store
too, but a users table is not what one machine holds (100M users), and their personal data
must not reach the lake's Parquet. The batch runs first alone, in the scratch store — which
also tells whether it gives users at all (a batch that carries no personal data — no users file, no
Segment messages — is done then: nothing runs twice). If it does, it runs again in the lake's **personal store**
(``LAKE/personal.duckdb``, :data:`~jingzhun.store.lake.PERSONAL`: the vault's keys and sealed
personal records, on the driver's disk), with the lake's rows of the users the first run found
— ``users`` and their ``consents`` history, a Spark semi-join — loaded beside their personal
data: the same merge then counts new and changed users, keeps absent columns' values, seals
the personal fields (and the raw rows it quarantines) and states the consents that changed,
exactly as the DuckDB engine does. Then it is settled against the lake like any batch, the
lake's ``users`` table is rewritten by Spark with those users' rows replaced (anti-join and
union, one rename), and the batch's rows are appended. The personal store keeps only ``pii``
and the vault's keys between batches. Order of writes: personal data first, then the lake's
tables, the batch's record last — a batch stopped between them is taken again by running it
again (the merge is idempotent).

What a lake does not take yet, refused before anything is written: ``[privacy]
pseudonymize_ids`` (its keys are the store's vault's).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from jingzhun.errors import InputError
from jingzhun.ingest import consent
from jingzhun.ingest.facade import Ingest
from jingzhun.ingest.pipeline import BatchResult
from jingzhun.store import Store
from jingzhun.store.lake import PERSONAL
from jingzhun.store.sql import Sql, ident
from jingzhun.store.vault import vault_meta

if TYPE_CHECKING:
    from jingzhun.config import Settings
    from jingzhun.store.lake import Lake

#: The tables an events batch adds rows to, in the order they are added (the record last).
BATCH_TABLES = ("events", "identities", "consents", "quarantine", "ingest_batches")

_HINT = "ingest it into the DuckDB store, then make the lake again with lake init (docs/scaling.md)"


def check_ingest(kind: str, settings: Settings) -> None:
    """Refuse, before Spark starts, what a lake does not take yet (see the module's text)."""
    if kind not in ("events", "items", "users"):  # pragma: no cover - the CLI's choices
        raise InputError(f"unknown kind {kind!r}", hint="use one of: events, users, items")
    if settings.privacy.pseudonymize_ids:
        raise InputError(
            "[privacy] pseudonymize_ids does not run on --engine spark yet (its keys are the "
            "DuckDB store's vault's)",
            hint=_HINT,
        )


def ingest_on_lake(
    lake: Lake, settings: Settings, kind: str, paths: list[str], **options: Any
) -> BatchResult:
    """Ingest ``paths`` of ``kind`` into ``lake`` as one batch; ``options`` as
    :meth:`Ingest.files` takes them. The batch's counts, as on a store."""
    check_ingest(kind, settings)
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="jingzhun-ingest-"))
    options = dict(options)
    progress = options.pop("progress", None)
    stdin = options.pop("stdin", None)
    spooled = None
    if "-" in paths:  # a batch that gives users is read twice: stdin kept in the scratch folder
        spooled = scratch / "stdin"
        with open(spooled, "wb") as fh:
            shutil.copyfileobj(stdin if stdin is not None else sys.stdin.buffer, fh)
    items = kind == "items" or bool(options.get("item_columns"))

    def batch(store: Store, *, shown: bool) -> BatchResult:
        """One run of the batch into ``store`` (its progress shown by the run that counts:
        a users file's second, any other batch's first)."""
        with open(spooled, "rb") if spooled is not None else contextlib.nullcontext() as source:
            return Ingest(store, settings).files(
                kind, paths, stdin=source, progress=progress if shown else None, **options
            )

    staging = lake.staging("ingest")
    try:
        # The batch alone, in a scratch store: all of it when it carries no personal data.
        alone = Store.open(scratch / "batch.duckdb", settings)
        try:
            if items:
                _load_items(lake, alone)
            result = batch(alone, shown=kind != "users")
            # A batch that may carry personal data (users, Segment messages) made the scratch
            # store a vault: its users and sealed rows belong with the lake's personal store.
            if not vault_meta(alone):
                _settle_and_append(lake, alone, result, staging, items=items)
                return _timed(result, started)
            ids = _upload(alone, staging, "user_ids", Sql("SELECT user_id FROM users"))
        finally:
            alone.close()
        # Again, in the personal store, beside the lake's rows of the users it gives.
        personal = Store.open(lake.path / PERSONAL, settings)
        try:
            _empty(personal)
            if items:
                _load_items(lake, personal)
            for table in ("users", "consents"):
                if lake.has(table):
                    personal.insert_arrow(table, _held(lake, table, ids, ["user_id"], None))
            result = batch(personal, shown=kind == "users")
            # The consents loaded are the lake's already: the batch adds the ones it states.
            personal.con.execute(
                "DELETE FROM consents WHERE source NOT IN (?, ?)",
                [f"users:{result.batch_id}", f"events:{result.batch_id}"],
            )
            _settle_and_append(lake, personal, result, staging, items=items, users=True)
        finally:
            with contextlib.suppress(Exception):  # the error in flight is the one to show
                _empty(personal)
            personal.close()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return _timed(result, started)


def _timed(result: BatchResult, started: float) -> BatchResult:
    result.seconds = time.perf_counter() - started  # the pipeline's and Spark's: the batch's
    return result


def _settle_and_append(
    lake: Lake,
    store: Store,
    result: BatchResult,
    staging: Path,
    *,
    items: bool,
    users: bool = False,
) -> None:
    """Settle the batch in ``store`` against the lake, replace the tables it merged into (items,
    users), then append its rows, the batch's record last."""
    _settle(lake, store, result, staging)
    if items and _changed(result, "items"):
        _adopt_items(lake, store, staging, result.batch_id)
    if users and _changed(result, "users"):
        _replace_users(lake, store, staging, result.batch_id)
    _append(lake, store, staging, result.batch_id)


#: The personal store's tables that hold a batch's work only: emptied before and after each
#: batch that gives users (the store keeps ``pii`` and the vault's keys in ``store_meta``).
_PERSONAL_WORK = (
    "users",
    "consents",
    "quarantine",
    "ingest_batches",
    "identities",
    "events",
    "items",
)


def _changed(result: BatchResult, kind: str) -> bool:
    """Whether the batch added or changed a row of ``kind`` (its own kind, or the users or
    items an events batch gives)."""
    if result.kind == kind:
        return result.inserted > 0
    return bool(result.related.get(kind, {}).get("inserted", 0))


def _adopt_items(lake: Lake, store: Store, staging: Path, batch_id: str) -> None:
    """The merged items table (the lake's, loaded whole, with the batch's merged in) in the
    lake's table's place, in one rename."""
    folder = staging / "items"
    folder.mkdir()
    _upload(store, folder, f"{batch_id}-items", Sql("SELECT * FROM items"))
    lake.adopt("items", folder)


def _replace_users(lake: Lake, store: Store, staging: Path, batch_id: str) -> None:
    """The lake's users table with the batch's users' rows (the merged ones, changed or not)
    in place of the lake's: Spark's anti-join and union, written in one rename."""
    path = _upload(store, staging, f"{batch_id}-users", Sql("SELECT * FROM users"))
    view = f"_jz_{path.stem.replace('-', '_')}"
    theirs = lake.table("users")
    mine = lake.backend.read_parquet(str(path), table_name=view).cast(theirs.schema())
    try:
        kept = theirs.anti_join(mine, "user_id")
        lake.write("users", kept.union(mine.select(*theirs.columns)))
    finally:
        lake.session.catalog.dropTempView(view)


def _empty(store: Store) -> None:
    with store.transaction() as con:
        for table in _PERSONAL_WORK:  # names from the tuple above
            con.execute(f"DELETE FROM {ident(table)}")


def _load_items(lake: Lake, store: Store) -> None:
    """The lake's items table into the scratch store, as the store's own rows: the batch then
    merges into it with the DuckDB engine's code (see the module's text)."""
    if not lake.has("items"):
        return
    store.insert_arrow("items", lake.table("items").to_pyarrow())


def _count(store: Store, sql: Sql, params: list[Any] | None = None) -> int:
    return int(store.con.execute(sql, params or []).fetchall()[0][0])


def _upload(store: Store, staging: Path, name: str, sql: Sql) -> Path:
    """``sql``'s rows from the scratch store as a Parquet file in ``staging``, streamed."""
    path = staging / f"{name}.parquet"
    reader = store.con.sql(sql).to_arrow_reader(1 << 17)
    with pq.ParquetWriter(path, reader.schema) as out:
        for batch in reader:
            out.write_batch(batch)
    return path


def _held(lake: Lake, table: str, path: Path, keys: list[str], take: list[str] | None) -> pa.Table:
    """Rows of the lake's ``table`` (columns ``take``, distinct; None: whole rows, as they
    are) whose ``keys`` match a row of the Parquet file at ``path``: Spark's join, the answer
    back as Arrow."""
    view = f"_jz_{path.stem}"
    mine = lake.backend.read_parquet(str(path), table_name=view)
    try:
        if take is None:
            return lake.table(table).semi_join(mine, keys).to_pyarrow()
        theirs = lake.table(table).select(*{*keys, *take})
        held = theirs.semi_join(mine, keys).select(*take).distinct()
        return held.to_pyarrow()
    finally:  # the session may be the caller's (a notebook's): leave it as it was
        lake.session.catalog.dropTempView(view)


def _settle(lake: Lake, store: Store, result: BatchResult, staging: Path) -> None:
    """Drop from the scratch store what the lake holds already and count it as the DuckDB
    engine would: duplicate events, quarantined rows quarantined before, identity links the
    lake has (a conflict when it links another user)."""
    con, batch = store.con, result.batch_id
    # Identities first: a conflict is judged on every row of the batch, duplicates included.
    if lake.has("identities") and store.count("identities"):
        ids = _upload(store, staging, "links", Sql("SELECT anonymous_id FROM identities"))
        held = _held(lake, "identities", ids, ["anonymous_id"], ["anonymous_id", "user_id"])
        if held.num_rows:
            # A conflict: an anonymous id this batch saw with several users (counted by the
            # pipeline already), or one the lake links to another user than the batch's.
            result.identity_conflicts += _with_held(
                con,
                held,
                """SELECT count(*) FROM _jz_held h JOIN identities i USING (anonymous_id)
                   WHERE h.user_id <> i.user_id AND anonymous_id NOT IN (
                       SELECT anonymous_id FROM events
                       WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
                       GROUP BY anonymous_id HAVING count(DISTINCT user_id) > 1)""",
            )
            result.identities_linked -= _with_held(
                con,
                held,
                "DELETE FROM identities WHERE anonymous_id IN (SELECT anonymous_id FROM _jz_held)",
            )
    if lake.has("events") and store.count("events"):
        ids = _upload(store, staging, "event_ids", Sql("SELECT event_id FROM events"))
        held = _held(lake, "events", ids, ["event_id"], ["event_id"])
        if held.num_rows:
            gone = _with_held(
                con, held, "DELETE FROM events WHERE event_id IN (SELECT event_id FROM _jz_held)"
            )
            result.inserted -= gone
            result.duplicates += gone
            # The consents the batch's events state: of the events that stay (as on a store).
            source = f"events:{batch}"
            con.execute("DELETE FROM consents WHERE source = ?", [source])
            con.execute(f"INSERT INTO consents {consent.from_events_sql(Sql('events'))}", [source])
    if lake.has("quarantine") and store.count("quarantine"):
        keys = _upload(
            store,
            staging,
            "raw_keys",
            Sql("SELECT raw_key FROM quarantine WHERE raw_key IS NOT NULL"),
        )
        held = _held(lake, "quarantine", keys, ["raw_key"], ["raw_key"])
        if held.num_rows:
            # By kind: an events batch's identify messages quarantine users rows, which the
            # batch counts among the users it gives (as the pipeline counts them on a store:
            # the batch's own rows become duplicates, the related ones are just not new).
            gone = (
                con.from_arrow(held)
                .query(
                    "_jz_held",
                    """DELETE FROM quarantine WHERE raw_key IN (SELECT raw_key FROM _jz_held)
                   RETURNING kind""",
                )
                .fetchall()
            )
            for (kind,) in gone:
                if kind == result.kind:
                    result.quarantined -= 1
                    result.duplicates += 1
                else:
                    result.related[kind]["quarantined"] -= 1
        # Ids continue the lake's: in file order within a batch, increasing across batches.
        top = lake.table("quarantine").quarantine_id.max().execute()
        if top is not None and top == top:
            con.execute(
                """UPDATE quarantine SET quarantine_id = n.id
                   FROM (SELECT quarantine_id AS old,
                                ? + row_number() OVER (ORDER BY quarantine_id) AS id
                         FROM quarantine) n
                   WHERE quarantine.quarantine_id = n.old""",
                [int(top)],
            )
    con.execute(
        """UPDATE ingest_batches SET inserted = ?, duplicates = ?, quarantined = ?,
                  identities_linked = ? WHERE batch_id = ?""",
        [result.inserted, result.duplicates, result.quarantined, result.identities_linked, batch],
    )


def _with_held(con: Any, held: pa.Table, sql: str) -> int:
    """Run ``sql`` on the scratch store with the lake's answer ``held`` as ``_jz_held``: a
    count, or a DELETE (which answers how many rows it removed)."""
    return int(con.from_arrow(held).query("_jz_held", sql).fetchall()[0][0])


def _append(lake: Lake, store: Store, staging: Path, batch_id: str) -> None:
    """Each batch table's rows from the scratch store as one Parquet file, renamed into the
    lake's table folder; the batch's record last."""
    for table in BATCH_TABLES:
        if not _count(store, Sql(f"SELECT count(*) FROM {ident(table)}")):
            continue
        part = _upload(store, staging, batch_id + "-" + table, Sql(f"SELECT * FROM {ident(table)}"))
        lake.append(table, part)


__all__ = ["BATCH_TABLES", "check_ingest", "ingest_on_lake"]
