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
is what one machine holds (millions of items are a few hundred MB); a users table is not
(100M users), so users do not take this route.

What a lake does not take yet, refused before anything is written: users files and batches
that give users (Segment identify messages) — the users table's merge by id and the vault of
personal data live in the DuckDB store — and ``[privacy] pseudonymize_ids`` (its keys are the
store's vault's).
"""

from __future__ import annotations

import shutil
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
from jingzhun.store.sql import Sql, ident

if TYPE_CHECKING:
    from jingzhun.config import Settings
    from jingzhun.store.lake import Lake

#: The tables an events batch adds rows to, in the order they are added (the record last).
BATCH_TABLES = ("events", "identities", "consents", "quarantine", "ingest_batches")

_HINT = "ingest it into the DuckDB store, then make the lake again with lake init (docs/scaling.md)"


def check_ingest(kind: str, settings: Settings) -> None:
    """Refuse, before Spark starts, what a lake does not take yet (see the module's text)."""
    if kind not in ("events", "items"):
        raise InputError(
            f"ingest {kind} does not run on --engine spark yet: a lake takes events and items",
            hint=_HINT,
        )
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
    store = Store.open(scratch / "batch.duckdb", settings)
    try:
        items = kind == "items" or bool(options.get("item_columns"))
        if items:
            _load_items(lake, store)
        result = Ingest(store, settings).files(kind, paths, **options)
        _refuse_related(store)
        staging = lake.staging(f"ingest-{result.batch_id}")
        try:
            _settle(lake, store, result, staging)
            if items and _items_changed(result):
                _replace_items(lake, store, staging, result.batch_id)
            _append(lake, store, staging, result.batch_id)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        store.close()
        shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.perf_counter() - started  # the pipeline's and Spark's: the batch's
    return result


def _refuse_related(store: Store) -> None:
    """A batch that gave users (Segment identify messages): refused, with nothing written to
    the lake."""
    if store.count("users"):
        raise InputError(
            "this batch gives users (Segment identify messages), which a lake does not take yet",
            hint=_HINT,
        )


def _load_items(lake: Lake, store: Store) -> None:
    """The lake's items table into the scratch store, as the store's own rows: the batch then
    merges into it with the DuckDB engine's code (see the module's text)."""
    if not lake.has("items"):
        return
    held = lake.table("items").to_pyarrow()
    names: Sql = ", ".join(ident(c) for c in held.column_names)
    store.con.from_arrow(held).query(
        "_jz_lake_items", f"INSERT INTO items ({names}) SELECT {names} FROM _jz_lake_items"
    ).fetchall()


def _items_changed(result: BatchResult) -> bool:
    """Whether the batch added or changed an item (an items batch, or an events batch's
    --item-columns)."""
    if result.kind == "items":
        return result.inserted > 0
    related = result.related.get("items", {})
    return bool(related.get("inserted", 0))


def _replace_items(lake: Lake, store: Store, staging: Path, batch_id: str) -> None:
    """The merged items table (the lake's, with the batch's merged in) in the lake's table's
    place, in one rename."""
    folder = staging / "items"
    folder.mkdir()
    _upload(store, folder, f"{batch_id}-items", Sql("SELECT * FROM items"))
    lake.adopt("items", folder)


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


def _held(lake: Lake, table: str, path: Path, keys: list[str], take: list[str]) -> pa.Table:
    """Rows of the lake's ``table`` (columns ``take``) whose ``keys`` match a row of the
    Parquet file at ``path``: Spark's join, the answer back as Arrow."""
    view = f"_jz_{path.stem}"
    mine = lake.backend.read_parquet(str(path), table_name=view)
    try:
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
            gone = _with_held(
                con, held, "DELETE FROM quarantine WHERE raw_key IN (SELECT raw_key FROM _jz_held)"
            )
            result.quarantined -= gone
            result.duplicates += gone
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
