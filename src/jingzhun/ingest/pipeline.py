"""One ingest batch: read files, validate, quarantine, dedupe, store — atomically.

A batch is one DuckDB transaction. Every chunk of every file is validated by the generated SQL
of :mod:`jingzhun.ingest.validate` into a temporary *stage*; then, still inside the
transaction, bad rows go to ``quarantine``, duplicates are skipped, good rows are stored and
identities are linked. A crash (even ``kill -9``) before the commit leaves the store without any
of the batch; a re-run then stores it once.

Counting: ``rows_read = inserted + duplicates + quarantined`` always holds. For events a
duplicate is a row whose event_id is already stored or appears earlier in the batch. For users
and items, a row that changes nothing is a duplicate; a row that changes a stored user or item
counts as inserted and also as ``updated``.
"""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.config import IngestSettings
from jingzhun.contracts.events import EVENT_NAMES, FIELDS, KEY, Field, Kind
from jingzhun.contracts.time import utcnow
from jingzhun.errors import InputError
from jingzhun.ingest import consent, segment
from jingzhun.ingest.schema import EXTRAS_COLUMN
from jingzhun.ingest.sources import (
    META_COLUMNS,
    Chunk,
    Source,
    json_path,
    open_source,
    segment_views,
    table_source,
)
from jingzhun.ingest.validate import IngestOptions, RowValidator, q, stage_columns
from jingzhun.store import Store
from jingzhun.store import desensitize as ds
from jingzhun.store.sql import Sql, ident
from jingzhun.store.vault import (
    SEALED_FIELDS,
    Vault,
    opened_people,
    seal_quarantine,
    sealed_people,
    vault_for,
)

#: Called with (source label, bytes done, bytes total or None).
Progress = Callable[[str, int, int | None], None]

_STAGE = "_jz_stage"  # users and items only: merged once the whole batch is validated
_LINK_COLUMNS = "anonymous_id VARCHAR, user_id VARCHAR, ts TIMESTAMP"
#: Values a new row gets for a field its source does not give.
_DEFAULTS: dict[str, dict[str, str]] = {"items": {"active": "TRUE"}}


@dataclass
class BatchResult:
    """What one batch did.

    ``rows_read == inserted + duplicates + quarantined + skipped + previously_removed``:
    every row read is accounted for. ``related`` holds what the batch wrote besides its own
    kind: ``users`` from Segment identify calls, ``items`` from ``--item-columns`` — each with
    its own ``rows``, ``inserted``, ``updated``, ``duplicates`` and ``quarantined``.
    ``ts_unit`` is the unit the batch read integer timestamps in (given, or found from their
    magnitude); ``refunds_linked`` the refunds it linked to the order they return.
    """

    batch_id: str
    kind: str
    sources: list[str]
    rows_read: int = 0
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    skipped: int = 0
    previously_removed: int = 0
    updated: int = 0
    identities_linked: int = 0
    identity_conflicts: int = 0
    seconds: float = 0.0
    resolved: int = 0  # replays only: quarantined rows that now went in
    ts_unit: str | None = None
    refunds_linked: int = 0
    related: dict[str, dict[str, int]] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("extra")
        data["seconds"] = round(self.seconds, 3)
        for key in ("ts_unit", "related"):
            if not data[key]:
                data.pop(key)
        if not self.refunds_linked:
            data.pop("refunds_linked")
        return data


#: :meth:`Ingestor.messages`' counts by line when no line gave an event row.
_NO_LINES = pa.schema(
    [(n, pa.int64()) for n in ("line", "rows", "inserted", "quarantined", "skipped")]
)


def new_batch_id(now: datetime) -> str:
    return f"b{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


#: The counts an ingest_batches row holds, each 0 unless given.
_BATCH_COUNTS = (
    "rows_read",
    "inserted",
    "duplicates",
    "quarantined",
    "updated",
    "identities_linked",
    "skipped",
    "previously_removed",
)


def record_batch(
    con: duckdb.DuckDBPyConnection,
    *,
    batch_id: str,
    kind: str,
    sources: list[str],
    options: str,
    started_at: datetime,
    counts: dict[str, int] | None = None,
    replay_of: str | None = None,
) -> None:
    """Write one ``ingest_batches`` row (ingest, replay and ``clean --remove`` all do)."""
    import json

    given = counts or {}
    con.execute(
        f"""
        INSERT INTO ingest_batches (batch_id, kind, sources, options, started_at, finished_at,
                                    {", ".join(_BATCH_COUNTS)}, replay_of)
        VALUES (?, ?, ?, ?, ?, ?, {", ".join("?" for _ in _BATCH_COUNTS)}, ?)
        """,
        [
            batch_id,
            kind,
            json.dumps(sources),
            options,
            started_at,
            utcnow(),
            *(int(given.get(c, 0)) for c in _BATCH_COUNTS),
            replay_of,
        ],
    )


class ItemColumns:
    """``--item-columns``: the item attributes a batch's event rows carry, and how to read
    them from a validated chunk (an event field when the source column feeds one, else the
    column's value kept in ``properties``)."""

    def __init__(self, options: IngestOptions) -> None:
        from jingzhun.ingest.validate import field_key

        event_fields = {f.name for f in FIELDS["events"]} - {"properties"}
        self.targets: list[tuple[str, Sql]] = []
        for target, source in sorted(options.item_columns.items()):
            name = options.mapping.get(source, field_key(source))
            if name in event_fields:
                expr = f"CAST({q(name)} AS VARCHAR)"
            else:
                expr = f"json_extract_string(properties, {json_path(source)})"
            self.targets.append((target, expr))

    def columns(self) -> Sql:
        """The accumulating table's columns."""
        given = ", ".join(f"{q(t)} VARCHAR" for t, _ in self.targets)
        return f"item_id VARCHAR, ts TIMESTAMP, _file INTEGER, _line BIGINT, {given}"

    def select(self, chunk: str) -> Sql:
        """The item attributes of a validated chunk's stored rows."""
        values = ", ".join(f"{expr} AS {q(t)}" for t, expr in self.targets)
        return (
            f"SELECT item_id, ts, _file, _line, {values} FROM {chunk} "
            "WHERE _key IS NOT NULL AND item_id IS NOT NULL"
        )

    def item_columns(self) -> list[tuple[str, str]]:
        """(name, type) of the items relation handed to the items validator."""
        return [("item_id", "VARCHAR"), *((t, "VARCHAR") for t, _ in self.targets)]


class Ingestor:
    """Runs batches against one store.

    Parameters
    ----------
    store : Store
        Where rows go.
    settings : IngestSettings
        Limits and the configured event-name mapping.
    """

    def __init__(
        self, store: Store, settings: IngestSettings, *, pseudonymize: bool = False
    ) -> None:
        self.store = store
        self.settings = settings
        #: ``[privacy] pseudonymize_ids``: ids become keyed pseudonyms as rows are validated.
        self.pseudonymize = pseudonymize
        self._pseudonym_keys: list[str] | None = None
        self.con = store.con
        self.vault: Vault | None = None  # opened by a batch that may hold personal data
        #: When a list, each events chunk adds an Arrow table of its rows counted by source
        #: line (``line``, ``rows``, ``inserted``, ``quarantined``, ``skipped``): the server
        #: ingests many requests' messages as one batch and answers each with its own counts.
        self.line_outcomes: list[pa.Table] | None = None

    # -- public -----------------------------------------------------------------------------

    def ingest(
        self,
        paths: list[str],
        options: IngestOptions,
        *,
        progress: Progress | None = None,
        stdin: BinaryIO | None = None,
        label: str | None = None,
    ) -> BatchResult:
        """Ingest ``paths`` as one atomic batch of ``options.kind`` rows (``label`` names
        standard input in the batch and its quarantine rows)."""
        if not paths:
            raise InputError(
                "no files given", hint="name one or more files, or - for standard input"
            )
        if paths.count("-") > 1:
            raise InputError("standard input (-) can be read only once per batch")
        sources: list[Source] = []
        try:
            for path in paths:
                sources.append(
                    open_source(
                        path,
                        options.format,
                        batch_rows=self.settings.batch_rows,
                        max_line_bytes=self.settings.max_line_bytes,
                        stdin=stdin,
                        columns=options.columns,
                        header=options.header,
                        event_map={**self.settings.event_map, **options.event_map},
                    )
                )
                if path == "-" and label is not None:
                    sources[-1].label = label
            options = _for_sources(options, sources)
            now = utcnow()
            validator = RowValidator(options, self.settings, now)
            self._check_columns(validator, sources, options)
            return self._run(sources, options, validator, now, progress=progress)
        finally:
            for src in sources:
                src.close()

    def messages(
        self, data: bytes, options: IngestOptions, *, label: str
    ) -> tuple[BatchResult, pa.Table]:
        """Ingest Segment messages, one JSON object per line of ``data``, as one batch named
        ``label``: the server's path for what its tracking API received, through the same
        source, mapping, validator and quarantine as a Segment archive on disk.

        Returns the batch and its event rows counted by line (``line`` 1-based, ``rows``,
        ``inserted``, ``quarantined``, ``skipped``; a line absent from it yielded no event
        row), so a caller that put several requests into one batch can answer each.
        """
        self.line_outcomes = []
        try:
            result = self.ingest(["-"], options, stdin=io.BytesIO(data), label=label)
            outcomes = self.line_outcomes
        finally:
            self.line_outcomes = None
        lines = pa.concat_tables(outcomes) if outcomes else _NO_LINES.empty_table()
        return result, lines

    def run_rows(
        self,
        label: str,
        table: pa.Table,
        options: IngestOptions,
        *,
        replay_of: str | None = None,
    ) -> BatchResult:
        """Ingest an in-memory table (meta columns included) as one batch.

        Used by quarantine replay: a ``_qid`` column names the quarantined row each row came
        from; rows that pass are marked resolved, rows that fail again keep their place in
        the quarantine with the new reason.
        """
        now = utcnow()
        validator = RowValidator(options, self.settings, now)
        source = table_source(label, table)
        if options.format == "segment":
            # Quarantined messages (``t``): mapped again, with today's event names.
            source = self._segment_rows(label, table, options)
        return self._run(
            [source],
            options,
            validator,
            now,
            progress=None,
            replay_of=replay_of,
        )

    def _segment_rows(self, label: str, table: pa.Table, options: IngestOptions) -> Source:
        """A replay's Segment messages (``_line`` the quarantine id, ``_error``, ``t``,
        ``_qid``) as a source of ``options.kind`` rows, mapped when the batch reads it."""
        event_map = {**self.settings.event_map, **options.event_map}
        names = segment.EVENTS_COLUMNS if options.kind == "events" else segment.USERS_COLUMNS
        columns = [c for c in names if c not in META_COLUMNS]

        views = segment_views(event_map=event_map, replay=True)

        def chunks(progress: object) -> Iterator[Chunk]:
            yield Chunk(table, schema_key=table.schema, views=views)

        return Source(label, "rows", columns, chunks)

    # -- steps ------------------------------------------------------------------------------

    def _check_columns(
        self, validator: RowValidator, sources: list[Source], options: IngestOptions
    ) -> None:
        """Fail before writing anything if a file lacks a required column or a --map names none.

        A --map naming no column is reported first: it is the likelier cause of a "missing"
        required column.
        """
        strict = [s for s in sources if s.strict]
        seen = {c for s in strict for c in s.columns}
        if strict and len(strict) == len(sources):
            for col in options.mapping:
                if col not in seen:
                    cols = ", ".join(sorted(seen)[:20])
                    raise InputError(
                        f"--map {col}={options.mapping[col]}: no file has a column {col!r}",
                        hint=f"columns are: {cols}",
                    )
        for src in strict:
            validator.resolve(src.label, src.columns, strict=True)

    def _run(
        self,
        sources: list[Source],
        options: IngestOptions,
        validator: RowValidator,
        now: datetime,
        *,
        progress: Progress | None,
        replay_of: str | None = None,
    ) -> BatchResult:
        started = time.perf_counter()
        kind = options.kind
        batch_id = new_batch_id(now)
        labels = [s.label for s in sources]
        result = BatchResult(batch_id, kind, labels)
        con = self.con
        cols: Sql = ", ".join(f"{q(n)} {t}" for n, t in stage_columns(kind))
        items = ItemColumns(options) if options.item_columns else None
        # DuckDB trusts Parquet min/max statistics, which leave NaN out, and folds checks such
        # as NOT (price BETWEEN 0 AND max) to false: NaN prices would pass validation.
        # Without statistics propagation every value is tested.
        con.execute("SET disabled_optimizers = 'statistics_propagation'")
        # Before the batch's transaction: making the vault commits its keys. A store whose vault
        # key is missing or wrong is refused here, before a row is read. A batch that may give
        # personal data makes the vault; any other batch uses it if the store has one, for the
        # raw rows it quarantines.
        self.vault = vault_for(
            self.store, create=kind == "users" or _gives_users(options) or self.pseudonymize
        )
        if kind != "items":
            self._check_pseudonyms()
        try:
            with self.store.transaction():
                con.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGE} ({cols})")
                con.execute(f"CREATE OR REPLACE TEMP TABLE _jz_links ({_LINK_COLUMNS})")
                item_rows: Sql = items.columns() if items is not None else ""
                item_insert: Sql = items.select("_jz_v") if items is not None else ""
                if items is not None:
                    con.execute(f"CREATE OR REPLACE TEMP TABLE _jz_item_rows ({item_rows})")
                users = (
                    _RelatedUsers(self, batch_id, labels, now) if _gives_users(options) else None
                )
                for i, src in enumerate(sources):
                    for chunk in self._validated_chunks(i, src, validator, progress, result):
                        counts = con.execute(
                            "SELECT count(*), count(*) FILTER (WHERE _skip) FROM _jz_v"
                        ).fetchone()
                        result.rows_read += int(counts[0])
                        result.skipped += int(counts[1])
                        if replay_of is None:
                            result.quarantined += self._quarantine(batch_id, kind, labels, now)
                        else:
                            result.quarantined += self._count_bad()
                            result.resolved += self._settle_replay(batch_id, now)
                        if kind == "events":
                            inserted, removed = self._store_events_chunk(
                                batch_id, now, replay=replay_of is not None
                            )
                            result.inserted += inserted
                            result.previously_removed += removed
                            if items is not None:
                                con.execute(f"INSERT INTO _jz_item_rows {item_insert}")
                        else:
                            con.execute(f"INSERT INTO {_STAGE} SELECT * FROM _jz_v")
                        if users is not None:
                            users.add(chunk, i, src.label)
                if kind == "events":
                    self._link_identities(batch_id, result)
                    result.refunds_linked = self._link_refunds(batch_id)
                    if items is not None:
                        result.related["items"] = self._items_from_rows(
                            items, batch_id, labels, now
                        )
                    if users is not None:
                        result.related["users"] = users.store()
                elif options.format == "segment":
                    # Identify messages replayed: their traits merged per user, as at ingest.
                    self._upsert(kind, batch_id, now, result, stage=self._merge_traits(_STAGE))
                else:
                    self._upsert(kind, batch_id, now, result)
                result.duplicates = (
                    result.rows_read
                    - result.quarantined
                    - result.inserted
                    - result.skipped
                    - result.previously_removed
                )
                result.seconds = time.perf_counter() - started
                if result.ts_unit is not None:
                    options = options.replace(ts_unit=result.ts_unit)
                self._seal_quarantine()
                self._record(result, options, started_at=now, replay_of=replay_of)
        finally:
            con.execute("RESET disabled_optimizers")
            self._drop_temp()
        return result

    def _validated_chunks(
        self,
        index: int,
        src: Source,
        validator: RowValidator,
        progress: Progress | None,
        result: BatchResult,
    ) -> Iterator[Chunk]:
        """Validate each chunk of ``src`` into the temp table ``_jz_v``; yield each one after.

        Event chunks also get ``_key = hash(event_id)`` for duplicate detection. Until the
        batch knows the unit of integer timestamps, each chunk is looked at for one.
        """
        con = self.con
        extra = (
            ", CASE WHEN _reason IS NULL AND NOT _skip THEN hash(event_id) END AS _key"
            if validator.kind == "events"
            else ""
        )
        cache: dict[object, str] = {}  # one generated statement per distinct chunk schema

        def report(done: int, total: int | None) -> None:
            if progress is not None:
                progress(src.label, done, total)

        rows = 0
        for chunk in src.chunks(report):
            # The chunk is named for one statement only (a relation's query): registering it
            # would add a catalog entry that the open transaction keeps, with the chunk it
            # points to, until commit (every chunk of the batch would stay in memory), and a
            # replacement scan is off on a store connection, which reads no Python objects by
            # name (see store.store._seal).
            relation = "_jz_arrow"
            chunk_rel = con.from_arrow(chunk.table)
            view = chunk.views.get(validator.kind)
            try:
                # The chunk's own names, not DuckDB's: it renames a second 'email' next to
                # 'Email' to 'email_1', which the validator must see to refuse.
                names = chunk.table.column_names
                columns = list(zip(names, map(str, chunk_rel.types), strict=True))
                if validator.needs_ts_unit and view is None:
                    unit = validator.detect_ts_unit(src.label, columns, chunk_rel, relation)
                    if unit is not None:
                        result.ts_unit = unit
                        cache.clear()
                sql = cache.get(chunk.schema_key)
                if sql is None:
                    if view is not None:  # messages: mapped and validated in one statement
                        sql = validator.select(
                            src.label,
                            list(view.columns),
                            f"({view.sql(relation)})",
                            index,
                            strict=src.strict,
                        )
                    else:
                        sql = validator.select(
                            src.label, columns, relation, index, strict=src.strict
                        )
                    cache[chunk.schema_key] = sql
                chunk_rel.query(
                    relation, f"CREATE OR REPLACE TEMP TABLE _jz_v AS SELECT *{extra} FROM ({sql})"
                )
            except duckdb.Error as exc:
                # What DuckDB rejects in a file as a whole (e.g. invalid UTF-8 in a Parquet
                # string column) is the file's fault; name it.
                raise InputError(
                    f"{src.label}: {str(exc).splitlines()[0]}", hint="check the file"
                ) from exc
            finally:
                del chunk_rel
            rows += con.execute("SELECT count(*) FROM _jz_v").fetchone()[0]
            self._pseudonymize_chunk()
            yield chunk
        if rows == 0 and src.format != "rows":
            raise InputError(
                f"{src.label} has no rows", hint="nothing to ingest; check the export that wrote it"
            )

    def _check_pseudonyms(self) -> None:
        """A store keeps its ids one way: as given, or as pseudonyms from its first row on
        (the same setting for every batch; checked before the batch's transaction)."""
        held = ds.pseudonymized(self.store)
        if held == self.pseudonymize:
            return
        if held:
            raise InputError(
                "this store keeps user ids as pseudonyms: its ingests must pseudonymize too",
                hint="set [privacy] pseudonymize_ids = true",
            )
        if self.store.count("events") or self.store.count("users"):
            raise InputError(
                "[privacy] pseudonymize_ids is set, but this store already holds ids as given",
                hint="pseudonymize a new store from its first ingest, or unset it",
            )
        with self.store.transaction():
            self.store.run(
                "INSERT INTO store_meta (key, value) VALUES (?, 'true')", [ds.META_PSEUDONYMS]
            )

    def _pseudonymize_chunk(self) -> None:
        """The validated chunk's user and anonymous ids as pseudonyms (good rows only: a
        quarantined row keeps what the file said, for replay)."""
        if not self.pseudonymize:
            return
        if self._pseudonym_keys is None:
            self._pseudonym_keys = ds.pseudonym_params(self.store)
        columns = [
            c
            for (c,) in self.con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = '_jz_v' "
                "AND column_name IN ('user_id', 'anonymous_id')"
            ).fetchall()
        ]
        for c in columns:  # names from the two above, not from a file
            self.con.execute(
                f"UPDATE _jz_v SET {ident(c)} = {ds.pseudonym_sql(ident(c))} WHERE _reason IS NULL",
                self._pseudonym_keys,
            )

    def _quarantine(self, batch_id: str, kind: str, labels: list[str], now: datetime) -> int:
        """Quarantine the chunk's bad rows; how many went in.

        A bad row whose content (kind and raw form) is quarantined already — by an earlier
        batch, an earlier chunk, or an earlier line of this one — is a duplicate: ingesting
        a file twice does not double its open quarantine.
        """
        return int(
            self.con.execute(
                """
                INSERT INTO quarantine (quarantine_id, batch_id, kind, source, line_no, raw, reason,
                                        received_at, raw_key)
                SELECT (SELECT coalesce(max(quarantine_id), 0) FROM quarantine)
                           + row_number() OVER (ORDER BY _file, _line),
                       ?, ?, (?::VARCHAR[])[_file + 1], _line, _raw, _reason, ?, _rk
                FROM (SELECT _file, _line, _raw, _reason, md5(? || chr(31) || _raw) AS _rk
                      FROM _jz_v WHERE _reason IS NOT NULL
                      QUALIFY row_number() OVER (PARTITION BY _rk ORDER BY _file, _line) = 1)
                WHERE _rk NOT IN (SELECT raw_key FROM quarantine WHERE raw_key IS NOT NULL)
                """,
                # With a vault, the content key is keyed too: an md5 of a row of personal
                # data would let anyone holding the file test a guess of the whole row.
                [batch_id, kind, labels, now, self._content_salt(kind)],
            ).fetchone()[0]
        )

    def _content_salt(self, kind: str) -> str:
        return kind if self.vault is None else f"{kind}\x1f{self.vault.index_key.hex()}"

    def _seal_quarantine(self) -> None:
        """Encrypt the raw rows this batch quarantined or re-quarantined (a Segment message's
        traits, a users file's columns: personal data kept for replay); nothing to do in a
        store without a vault."""
        if self.vault is not None:
            seal_quarantine(self.store, self.vault)

    def _count_bad(self) -> int:
        return int(
            self.con.execute("SELECT count(*) FROM _jz_v WHERE _reason IS NOT NULL").fetchone()[0]
        )

    def _settle_replay(self, batch_id: str, now: datetime) -> int:
        """Resolve the quarantined rows whose replayed rows all passed; the others keep their
        place with the new reason. (A Segment order message is one quarantined row and
        several order lines: it is resolved once every line of it is in.)"""
        con = self.con
        con.execute(
            """
            UPDATE quarantine SET reason = v._reason, raw = coalesce(v._raw, quarantine.raw)
            FROM (SELECT _qid, arg_min(_reason, _line) AS _reason, arg_min(_raw, _line) AS _raw
                  FROM _jz_v WHERE _reason IS NOT NULL GROUP BY _qid) v
            WHERE v._qid = quarantine.quarantine_id
            """
        )
        return con.execute(
            """
            UPDATE quarantine SET resolved_at = ?, resolved_batch_id = ?
            FROM (SELECT _qid FROM _jz_v GROUP BY _qid
                  HAVING count(*) FILTER (WHERE _reason IS NOT NULL) = 0) v
            WHERE v._qid = quarantine.quarantine_id
            """,
            [now, batch_id],
        ).fetchone()[0]

    def _store_events_chunk(self, batch_id: str, now: datetime, *, replay: bool) -> tuple[int, int]:
        """Insert the chunk's good rows that are new; return how many went in, and how many
        were events ``clean --remove`` moved out (kept out; a replay brings them back).

        A row is a duplicate if its event_id is stored already (by an earlier batch, or an
        earlier chunk of this one: the transaction sees its own rows) or appears on an earlier
        line of this chunk. Candidates are found by ``event_key = hash(event_id)``, an integer
        join that reads no strings; equality of the event_id strings then decides, so a hash
        collision can never drop an event.
        """
        con = self.con
        fields = [f.name for f in FIELDS["events"]]
        names = ", ".join(q(n) for n in fields)
        removed = 0
        if replay:
            con.execute(
                "DELETE FROM removed_events WHERE event_id IN "
                "(SELECT event_id FROM _jz_v WHERE _key IS NOT NULL)"
            )
        else:
            removed = con.execute(
                "SELECT count(*) FROM _jz_v WHERE _key IS NOT NULL "
                "AND event_id IN (SELECT event_id FROM removed_events)"
            ).fetchone()[0]
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _jz_dup AS
            SELECT event_id, min(_line) AS keep FROM _jz_v
            WHERE _key IN (SELECT _key FROM _jz_v WHERE _key IS NOT NULL GROUP BY _key HAVING count(*) > 1)
            GROUP BY event_id HAVING count(*) > 1
            """
        )
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _jz_hit AS
            SELECT DISTINCT event_id FROM events
            WHERE event_key IN (SELECT _key FROM _jz_v WHERE _key IS NOT NULL)
            """
        )
        keep_out = (
            ""
            if replay or not removed
            else "AND v.event_id NOT IN (SELECT event_id FROM removed_events)"
        )
        new_rows: Sql = f"""
            FROM _jz_v v LEFT JOIN _jz_dup d ON d.event_id = v.event_id
            WHERE v._key IS NOT NULL
              AND (d.keep IS NULL OR d.keep = v._line)
              AND v.event_id NOT IN (SELECT event_id FROM _jz_hit)
              {keep_out}
            """
        if self.line_outcomes is not None:
            # Which line each new row came from, before they go in (see line_outcomes).
            self.line_outcomes.append(
                con.sql(
                    f"""
                    WITH new AS (SELECT v._line, count(*) AS n {new_rows} GROUP BY v._line)
                    SELECT v._line AS line, count(*) AS rows,
                           coalesce(any_value(new.n), 0) AS inserted,
                           count(*) FILTER (WHERE v._reason IS NOT NULL) AS quarantined,
                           count(*) FILTER (WHERE v._skip) AS skipped
                    FROM _jz_v v LEFT JOIN new ON new._line = v._line
                    GROUP BY v._line
                    """
                ).to_arrow_table()
            )
        # The consents that new consent_updated events state (their history is the table).
        con.execute(
            f"INSERT INTO consents {consent.from_events_sql(f'(SELECT v.* {new_rows})')}",
            [f"events:{batch_id}"],
        )
        inserted = con.execute(
            f"""
            INSERT INTO events ({names}, event_key, received_at, batch_id, custom)
            SELECT {", ".join(f"v.{q(n)}" for n in fields)}, v._key, ?::TIMESTAMP, ?,
                   NOT list_contains(?::VARCHAR[], v.event)
            {new_rows}
            """,
            [now, batch_id, sorted(EVENT_NAMES)],
        ).fetchone()[0]
        con.execute(
            """
            INSERT INTO _jz_links
            SELECT anonymous_id, user_id, ts FROM _jz_v
            WHERE _key IS NOT NULL AND user_id IS NOT NULL AND anonymous_id IS NOT NULL
            """
        )
        return int(inserted), int(removed)

    def _link_refunds(self, batch_id: str) -> int:
        """Link this batch's refunds to the order they return, when their own order id names
        no order of their user (a credit note's number, as in UCI Online Retail): to the
        user's latest earlier order of the same item. Their own id is kept in
        ``properties.refund_id``. Returns how many were linked."""
        con = self.con
        # Most batches hold no refund: then the join below, which reads every order of the
        # store (~20 ms on 460k events, per batch of a server's), is not run at all.
        if not con.execute(
            "SELECT count(*) FROM events WHERE batch_id = ? AND event = 'order_refunded'",
            [batch_id],
        ).fetchall()[0][0]:
            return 0
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _jz_refunds AS
            SELECT r.event_id, r.order_id AS own, o.order_id AS linked
            FROM (SELECT event_id, user_id, item_id, order_id, ts FROM events
                  WHERE batch_id = ? AND event = 'order_refunded'
                    AND user_id IS NOT NULL AND item_id IS NOT NULL) r
            ASOF JOIN (SELECT user_id, item_id, order_id, ts FROM events
                       WHERE event = 'order_completed' AND user_id IS NOT NULL) o
              ON r.user_id = o.user_id AND r.item_id = o.item_id AND r.ts >= o.ts
            WHERE NOT EXISTS (SELECT 1 FROM events x
                              WHERE x.event = 'order_completed' AND x.user_id = r.user_id
                                AND x.order_id = r.order_id)
            """,
            [batch_id],
        )
        return int(
            con.execute(
                """
                UPDATE events SET order_id = f.linked,
                       properties = json_merge_patch(coalesce(events.properties, '{}'::JSON),
                                                     json_object('refund_id', f.own))
                FROM _jz_refunds f WHERE events.event_id = f.event_id
                """
            ).fetchone()[0]
        )

    def _items_from_rows(
        self, items: ItemColumns, batch_id: str, labels: list[str], now: datetime
    ) -> dict[str, int]:
        """Fill or update the items table from the item attributes the batch's rows carry
        (``--item-columns``): per item, its latest row's values, validated as an items file's
        would be; a bad one is quarantined as an item."""
        con = self.con
        validator = RowValidator(IngestOptions("items"), self.settings, now)
        columns = items.item_columns()
        relation = "_jz_item_latest"
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE {relation} AS
            SELECT * EXCLUDE (ts, _file), NULL::VARCHAR AS _error, NULL::VARCHAR AS _raw_line
            FROM _jz_item_rows
            QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY ts DESC, _file DESC, _line DESC) = 1
            """
        )
        sql: Sql = validator.select(
            "--item-columns",
            [*columns, ("_line", "BIGINT"), ("_error", "VARCHAR"), ("_raw_line", "VARCHAR")],
            relation,
            0,
            strict=True,
        )
        con.execute(f"CREATE OR REPLACE TEMP TABLE _jz_v AS {sql}")
        stats = BatchResult(batch_id, "items", labels)
        stats.rows_read = con.execute("SELECT count(*) FROM _jz_v").fetchone()[0]
        stats.quarantined = self._quarantine(batch_id, "items", labels, now)
        cols: Sql = ", ".join(f"{q(n)} {t}" for n, t in stage_columns("items"))
        con.execute(f"CREATE OR REPLACE TEMP TABLE _jz_item_stage ({cols})")
        con.execute("INSERT INTO _jz_item_stage SELECT * FROM _jz_v")
        self._upsert("items", batch_id, now, stats, stage="_jz_item_stage")
        bad = self._count_bad()
        return {
            "rows": stats.rows_read,
            "inserted": stats.inserted,
            "updated": stats.updated,
            "duplicates": stats.rows_read - stats.inserted - bad,
            "quarantined": stats.quarantined,
        }

    def _link_identities(self, batch_id: str, result: BatchResult) -> None:
        """Link each anonymous_id seen with a user_id to the user of its earliest such row."""
        con = self.con
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _jz_link AS
            SELECT anonymous_id, arg_min(user_id, ts) AS user_id, min(ts) AS linked_at,
                   count(DISTINCT user_id) AS n_users
            FROM _jz_links GROUP BY anonymous_id
            """
        )
        result.identity_conflicts = con.execute(
            """
            SELECT count(*) FROM _jz_link l LEFT JOIN identities i USING (anonymous_id)
            WHERE l.n_users > 1 OR (i.user_id IS NOT NULL AND i.user_id <> l.user_id)
            """
        ).fetchone()[0]
        result.identities_linked = con.execute(
            """
            INSERT INTO identities
            SELECT anonymous_id, user_id, linked_at, ? FROM _jz_link
            WHERE anonymous_id NOT IN (SELECT anonymous_id FROM identities)
            """,
            [batch_id],
        ).fetchone()[0]

    def _merge_traits(self, stage: Sql) -> Sql:
        """Users from identify messages, one row per user: each field its latest given
        (non-null) value, ``attributes`` merged in message order, ``_present`` the fields
        given at all. An identify sends the traits that changed, not the whole user: a trait
        it leaves out keeps its stored value (a file's column that is absent does the same).
        Returns the merged table's name."""
        key = KEY["users"]
        extras = EXTRAS_COLUMN["users"]
        fields = FIELDS["users"]
        present = " | ".join(
            f"CASE WHEN {q(f.name)} IS NOT NULL THEN {int(1 << bit)} ELSE 0 END"
            for bit, f in enumerate(fields)
        )
        values = []
        for f in fields:
            if f.name == key:
                values.append(q(key))
            elif f.name == extras:
                merged = (
                    f"list_reduce(list_prepend('{{}}'::JSON, list({q(f.name)} ORDER BY _ord) "
                    f"FILTER (WHERE {q(f.name)} IS NOT NULL)), lambda a, b: json_merge_patch(a, b))"
                )
                values.append(f"NULLIF(CAST({merged} AS VARCHAR), '{{}}')::JSON AS {q(f.name)}")
            else:
                values.append(
                    f"arg_max({q(f.name)}, _ord) FILTER (WHERE {q(f.name)} IS NOT NULL) "
                    f"AS {q(f.name)}"
                )
        self.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _jz_traits AS
            SELECT arg_max(_file, _ord) AS _file, arg_max(_line, _ord) AS _line,
                   NULL::BIGINT AS _qid, bit_or({present}) AS _present, {", ".join(values)},
                   NULL::VARCHAR AS _reason, NULL::VARCHAR AS _raw, FALSE AS _skip
            FROM (SELECT *, row_number() OVER (ORDER BY _file, _line) AS _ord
                  FROM {stage} WHERE _reason IS NULL)
            GROUP BY {q(key)}
            """
        )
        return "_jz_traits"

    def _upsert(
        self,
        kind: Kind,
        batch_id: str,
        now: datetime,
        result: BatchResult,
        *,
        stage: Sql = _STAGE,
    ) -> None:
        """Merge users or items: the batch's last row per id wins; absent columns keep old values."""
        con = self.con
        key = KEY[kind]
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _jz_latest AS
            SELECT * FROM {stage} WHERE _reason IS NULL
            QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY _file DESC, _line DESC) = 1
            """
        )
        bits = {f.name: i for i, f in enumerate(FIELDS[kind])}
        tables = {"users": [("users", False), ("pii", True)], "items": [("items", False)]}[kind]
        # Table and column names below come from the field definitions, not a file.
        table: Sql
        main: Sql = tables[0][0]
        given: Sql
        differs: Sql
        names: Sql
        touched: list[str] = []  # queries of keys whose stored rows this batch changes
        for table, pii in tables:
            fields = [f for f in FIELDS[kind] if f.pii == pii and f.name != key]
            mask = int(sum(1 << bits[f.name] for f in fields))
            given = f"(l._present & {mask}) <> 0"
            if pii:
                if not con.execute(f"SELECT count(*) FROM _jz_latest l WHERE {given}").fetchall()[
                    0
                ][0]:
                    continue  # no file of this batch has personal data columns
                self._upsert_pii(fields, bits, given, now, batch_id)
                touched.append(f"SELECT {key} FROM _jz_changed_{table}")
                touched.append(f"SELECT {key} FROM _jz_merged_{table} WHERE _new")
                continue
            merged: list[Sql] = []
            for f in fields:
                if f.name == EXTRAS_COLUMN[kind]:
                    expr = (
                        f"CASE WHEN l.{f.name} IS NULL THEN o.{f.name} "
                        f"ELSE json_merge_patch(coalesce(o.{f.name}, '{{}}'::JSON), l.{f.name}) END"
                    )
                else:
                    expr = f"CASE WHEN (l._present >> {bits[f.name]}) & 1 = 1 THEN l.{f.name} ELSE o.{f.name} END"
                if f.name in _DEFAULTS.get(kind, {}):
                    expr = f"coalesce({expr}, {_DEFAULTS[kind][f.name]})"
                merged.append(f"{expr} AS {f.name}")
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE _jz_merged_{table} AS
                SELECT l.{key}, {", ".join(merged)}, o.{key} IS NULL AS _new
                FROM _jz_latest l LEFT JOIN {table} o ON o.{key} = l.{key}
                {"WHERE " + given if pii else ""}
                """
            )
            differs = " OR ".join(f"m.{f.name} IS DISTINCT FROM o.{f.name}" for f in fields)
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE _jz_changed_{table} AS
                SELECT m.{key} FROM _jz_merged_{table} m JOIN {table} o ON o.{key} = m.{key}
                WHERE {differs}
                """
            )
            con.execute(
                f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM _jz_changed_{table})"
            )
            names = ", ".join(f.name for f in fields)
            con.execute(
                f"""
                INSERT INTO {table} ({key}, {names}, updated_at, batch_id)
                SELECT {key}, {names}, ?, ? FROM _jz_merged_{table}
                WHERE _new OR {key} IN (SELECT {key} FROM _jz_changed_{table})
                """,
                [now, batch_id],
            )
            touched.append(f"SELECT {key} FROM _jz_changed_{table}")
            if table != main:
                touched.append(f"SELECT {key} FROM _jz_merged_{table} WHERE _new")
        if kind == "users":
            # The consents the batch states (consent_* columns, marketing_opt_in), where they
            # differ from those in force: the history keeps every change, never a repeat.
            con.execute(
                f"INSERT INTO consents {consent.from_users_sql('_jz_latest')}",
                [now, f"users:{batch_id}"],
            )
        new = con.execute(f"SELECT count(*) FROM _jz_merged_{main} WHERE _new").fetchone()[0]
        changed = con.execute(
            f"SELECT count(DISTINCT {key}) FROM ({' UNION ALL '.join(touched)}) "
            f"WHERE {key} NOT IN (SELECT {key} FROM _jz_merged_{main} WHERE _new)"
        ).fetchone()[0]
        result.inserted = int(new + changed)
        result.updated = int(changed)

    def _upsert_pii(
        self, fields: list[Field], bits: dict[str, int], given: Sql, now: datetime, batch_id: str
    ) -> None:
        """Merge the batch's personal data into ``pii``, sealed by the vault.

        The batch's values are plaintext only in this connection's temporary tables; the file
        gets one sealed record a person and blind-index tokens. A field the file did not give
        keeps its stored value, and a user counts as changed when a field of their opened
        stored record differs from the merged one: records differ on every write (fresh
        nonces), so they are not compared. All of it is SQL but the cipher calls
        (:func:`~jingzhun.store.vault.sealed_people`).
        """
        con, vault = self.con, self.vault
        if vault is None:  # pragma: no cover - _run opens it for every batch that gives users
            raise RuntimeError("personal data reached the store without the vault")
        names = [f.name for f in fields]  # from the field definitions, not a file
        if sorted(names) != sorted(SEALED_FIELDS):  # pragma: no cover - one definition
            raise RuntimeError(f"the vault seals {SEALED_FIELDS}, the users fields are {names}")
        opened_people(
            con,
            vault,
            f"SELECT o.user_id, o.sealed FROM pii o JOIN _jz_latest l USING (user_id) WHERE {given}",
            "_jz_stored_pii",
        )
        merged: Sql = ", ".join(
            f"CASE WHEN (l._present >> {bits[n]}) & 1 = 1 THEN l.{n} ELSE o.{n} END AS {n}"
            for n in names
        )
        differs: Sql = " OR ".join(f"m.{n} IS DISTINCT FROM o.{n}" for n in names)
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _jz_merged_pii AS
            SELECT l.user_id, {merged}, p.user_id IS NULL AS _new
            FROM _jz_latest l
            LEFT JOIN pii p ON p.user_id = l.user_id
            LEFT JOIN _jz_stored_pii o ON o.user_id = l.user_id
            WHERE {given}
            """
        )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _jz_changed_pii AS
            SELECT m.user_id FROM _jz_merged_pii m JOIN _jz_stored_pii o USING (user_id)
            WHERE NOT m._new AND ({differs})
            """
        )
        sealed_people(
            con,
            vault,
            "SELECT * FROM _jz_merged_pii "
            "WHERE _new OR user_id IN (SELECT user_id FROM _jz_changed_pii)",
            "_jz_sealed_pii",
        )
        con.execute("DELETE FROM pii WHERE user_id IN (SELECT user_id FROM _jz_changed_pii)")
        con.execute(
            "INSERT INTO pii (user_id, sealed, email_index, phone_index, updated_at, batch_id) "
            "SELECT user_id, sealed, email_index, phone_index, ?, ? FROM _jz_sealed_pii",
            [now, batch_id],
        )
        con.execute("DROP TABLE _jz_sealed_pii")
        con.execute("DROP TABLE _jz_stored_pii")

    def _record(
        self,
        result: BatchResult,
        options: IngestOptions,
        *,
        started_at: datetime,
        replay_of: str | None,
    ) -> None:
        record_batch(
            self.con,
            batch_id=result.batch_id,
            kind=result.kind,
            sources=result.sources,
            options=options.to_json(),
            started_at=started_at,
            counts={
                "rows_read": result.rows_read,
                "inserted": result.inserted,
                "duplicates": result.duplicates,
                "quarantined": result.quarantined,
                "updated": result.updated,
                "identities_linked": result.identities_linked,
                "skipped": result.skipped,
                "previously_removed": result.previously_removed,
            },
            replay_of=replay_of,
        )

    def _drop_temp(self) -> None:
        rows = self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary AND table_name LIKE '\\_jz\\_%' ESCAPE '\\'"
        ).fetchall()
        for (name,) in rows:
            self.con.execute(f"DROP TABLE IF EXISTS temp.{q(name)}")


def _gives_users(options: IngestOptions) -> bool:
    """Whether a batch's sources give users besides its events (Segment identify calls)."""
    return options.kind == "events" and options.format == "segment"


def _for_sources(options: IngestOptions, sources: list[Source]) -> IngestOptions:
    """The options as the opened sources read: Segment messages (found from their content
    when no --format named them) are events, mapped by their own keys, whose names are any."""
    formats = {s.format for s in sources}
    if "segment" not in formats:
        return options
    if len(formats) > 1:
        other = next(s for s in sources if s.format != "segment")
        first = next(s for s in sources if s.format == "segment")
        raise InputError(
            f"{first.label} holds Segment messages and {other.label} is {other.format.upper()}",
            hint="ingest them in separate batches",
        )
    if options.kind != "events":
        raise InputError(
            f"{sources[0].label} holds Segment messages, which are events (and users, from "
            f"identify calls), not {options.kind}",
            hint=f"use jingzhun ingest events {sources[0].label}",
        )
    given = options.given("mapping", "constants", "order_id", "returns", "ts_format", "ts_unit")
    if given:
        raise InputError(
            f"{given[0]} does not apply to Segment messages ({sources[0].label}), whose fields "
            "are read from the message's own keys",
            hint=f"drop {given[0]}; --event-map, --only-events, --skip-events and "
            "--item-columns apply",
        )
    return options.replace(format="segment", custom_events=True)


class _RelatedUsers:
    """The users a batch's Segment identify messages give: validated as a users file's rows
    (bad ones quarantined as users), staged, then merged into users and pii."""

    def __init__(self, ingestor: Ingestor, batch_id: str, labels: list[str], now: datetime) -> None:
        self.ingestor = ingestor
        self.con = ingestor.con
        self.batch_id = batch_id
        self.labels = labels
        self.now = now
        self.validator = RowValidator(IngestOptions("users"), ingestor.settings, now)
        self.counts = {"rows": 0, "quarantined": 0, "bad": 0, "anonymous_identifies": 0}
        cols: Sql = ", ".join(f"{q(n)} {t}" for n, t in stage_columns("users"))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _jz_user_stage ({cols})")

    def add(self, chunk: Chunk, index: int, label: str) -> None:
        """Validate and stage one chunk's users (after its events are stored: ``_jz_v`` is
        reused)."""
        view = chunk.views.get("users")
        if view is None:
            return
        messages = chunk.table["t"] if "t" in chunk.table.column_names else None
        if messages is not None and not pc.any(pc.match_substring(messages, "identify")).as_py():
            # No identify message in the chunk (the word appears in every one): no users to
            # map, and the users statement's planning is a server micro-batch's largest cost.
            return
        con = self.con
        relation = con.from_arrow(chunk.table)
        anonymous = chunk.views["anonymous_identifies"].sql("_jz_arrow")
        ((n,),) = relation.query("_jz_arrow", f"SELECT n FROM ({anonymous})").fetchall()
        self.counts["anonymous_identifies"] += int(n)
        sql = self.validator.select(
            label, list(view.columns), f"({view.sql('_jz_arrow')})", index, strict=True
        )
        relation.query("_jz_arrow", f"CREATE OR REPLACE TEMP TABLE _jz_v AS {sql}")
        self.ingestor._pseudonymize_chunk()
        rows = con.execute("SELECT count(*) FROM _jz_v").fetchone()[0]
        if not rows:
            return
        self.counts["rows"] += rows
        self.counts["quarantined"] += self.ingestor._quarantine(
            self.batch_id, "users", self.labels, self.now
        )
        self.counts["bad"] += self.ingestor._count_bad()
        con.execute("INSERT INTO _jz_user_stage SELECT * FROM _jz_v")

    def store(self) -> dict[str, int]:
        """Merge the staged users; what it did."""
        stats = BatchResult(self.batch_id, "users", self.labels)
        counts = self.counts
        if counts["rows"] > counts["bad"]:
            stage = self.ingestor._merge_traits("_jz_user_stage")
            self.ingestor._upsert("users", self.batch_id, self.now, stats, stage=stage)
        return {
            "rows": counts["rows"],
            "inserted": stats.inserted,
            "updated": stats.updated,
            "duplicates": counts["rows"] - stats.inserted - counts["bad"],
            "quarantined": counts["quarantined"],
            "anonymous_identifies": counts["anonymous_identifies"],
        }
