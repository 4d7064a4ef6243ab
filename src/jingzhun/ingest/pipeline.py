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

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import BinaryIO

import duckdb
import pyarrow as pa

from jingzhun.config import IngestSettings
from jingzhun.contracts.events import FIELDS, KEY, Kind
from jingzhun.contracts.time import utcnow
from jingzhun.errors import InputError
from jingzhun.ingest.schema import EXTRAS_COLUMN
from jingzhun.ingest.sources import Source, open_source, table_source
from jingzhun.ingest.validate import IngestOptions, RowValidator, q, stage_columns
from jingzhun.store import Store
from jingzhun.store.sql import Sql

#: Called with (source label, bytes done, bytes total or None).
Progress = Callable[[str, int, int | None], None]

_STAGE = "_jz_stage"  # users and items only: merged once the whole batch is validated
_LINK_COLUMNS = "anonymous_id VARCHAR, user_id VARCHAR, ts TIMESTAMP"
#: Values a new row gets for a field its source does not give.
_DEFAULTS: dict[str, dict[str, str]] = {"items": {"active": "TRUE"}}


@dataclass
class BatchResult:
    """What one batch did. ``rows_read == inserted + duplicates + quarantined``."""

    batch_id: str
    kind: str
    sources: list[str]
    rows_read: int = 0
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    updated: int = 0
    identities_linked: int = 0
    identity_conflicts: int = 0
    seconds: float = 0.0
    resolved: int = 0  # replays only: quarantined rows that now went in
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("extra")
        data["seconds"] = round(self.seconds, 3)
        return data


def new_batch_id(now: datetime) -> str:
    return f"b{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class Ingestor:
    """Runs batches against one store.

    Parameters
    ----------
    store : Store
        Where rows go.
    settings : IngestSettings
        Limits and the configured event-name mapping.
    """

    def __init__(self, store: Store, settings: IngestSettings) -> None:
        self.store = store
        self.settings = settings
        self.con = store.con

    # -- public -----------------------------------------------------------------------------

    def ingest(
        self,
        paths: list[str],
        options: IngestOptions,
        *,
        progress: Progress | None = None,
        stdin: BinaryIO | None = None,
    ) -> BatchResult:
        """Ingest ``paths`` as one atomic batch of ``options.kind`` rows."""
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
                    )
                )
            now = utcnow()
            validator = RowValidator(options, self.settings, now)
            self._check_columns(validator, sources, options)
            return self._run(sources, options, validator, now, progress=progress)
        finally:
            for src in sources:
                src.close()

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
        return self._run(
            [table_source(label, table)],
            options,
            validator,
            now,
            progress=None,
            replay_of=replay_of,
        )

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
        # DuckDB trusts Parquet min/max statistics, which leave NaN out, and folds checks such
        # as NOT (price BETWEEN 0 AND max) to false: NaN prices would pass validation.
        # Without statistics propagation every value is tested.
        con.execute("SET disabled_optimizers = 'statistics_propagation'")
        try:
            with self.store.transaction():
                con.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGE} ({cols})")
                con.execute(f"CREATE OR REPLACE TEMP TABLE _jz_links ({_LINK_COLUMNS})")
                for i, src in enumerate(sources):
                    for _ in self._validated_chunks(i, src, validator, progress):
                        counts = con.execute(
                            "SELECT count(*), count(*) FILTER (WHERE _reason IS NOT NULL) FROM _jz_v"
                        ).fetchone()
                        result.rows_read += int(counts[0])
                        result.quarantined += int(counts[1])
                        if replay_of is None:
                            self._quarantine(batch_id, kind, labels, now)
                        else:
                            result.resolved += self._settle_replay(batch_id, now)
                        if kind == "events":
                            result.inserted += self._store_events_chunk(batch_id, now)
                        else:
                            con.execute(f"INSERT INTO {_STAGE} SELECT * FROM _jz_v")
                if kind == "events":
                    self._link_identities(batch_id, result)
                else:
                    self._upsert(kind, batch_id, now, result)
                result.duplicates = result.rows_read - result.quarantined - result.inserted
                result.seconds = time.perf_counter() - started
                self._record(result, options, started_at=now, replay_of=replay_of)
        finally:
            con.execute("RESET disabled_optimizers")
            self._drop_temp()
        return result

    def _validated_chunks(
        self, index: int, src: Source, validator: RowValidator, progress: Progress | None
    ) -> Iterator[None]:
        """Validate each chunk of ``src`` into the temp table ``_jz_v``; yield after each one.

        Event chunks also get ``_key = hash(event_id)`` for duplicate detection.
        """
        con = self.con
        extra = (
            ", CASE WHEN _reason IS NULL THEN hash(event_id) END AS _key"
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
            try:
                sql = cache.get(chunk.schema_key)
                if sql is None:
                    # The chunk's own names, not DuckDB's: it renames a second 'email' next to
                    # 'Email' to 'email_1', which the validator must see to refuse.
                    names = chunk.table.column_names
                    columns = list(zip(names, map(str, chunk_rel.types), strict=True))
                    sql = validator.select(src.label, columns, relation, index, strict=src.strict)
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
            yield
        if rows == 0 and src.format != "rows":
            raise InputError(
                f"{src.label} has no rows", hint="nothing to ingest; check the export that wrote it"
            )

    def _quarantine(self, batch_id: str, kind: str, labels: list[str], now: datetime) -> None:
        self.con.execute(
            """
            INSERT INTO quarantine (quarantine_id, batch_id, kind, source, line_no, raw, reason, received_at)
            SELECT (SELECT coalesce(max(quarantine_id), 0) FROM quarantine)
                       + row_number() OVER (ORDER BY _file, _line),
                   ?, ?, (?::VARCHAR[])[_file + 1], _line, _raw, _reason, ?
            FROM _jz_v WHERE _reason IS NOT NULL
            """,
            [batch_id, kind, labels, now],
        )

    def _settle_replay(self, batch_id: str, now: datetime) -> int:
        con = self.con
        con.execute(
            """
            UPDATE quarantine SET reason = v._reason, raw = coalesce(v._raw, quarantine.raw)
            FROM _jz_v v WHERE v._qid = quarantine.quarantine_id AND v._reason IS NOT NULL
            """
        )
        return con.execute(
            """
            UPDATE quarantine SET resolved_at = ?, resolved_batch_id = ?
            FROM _jz_v v WHERE v._qid = quarantine.quarantine_id AND v._reason IS NULL
            """,
            [now, batch_id],
        ).fetchone()[0]

    def _store_events_chunk(self, batch_id: str, now: datetime) -> int:
        """Insert the chunk's good rows that are new; return how many went in.

        A row is a duplicate if its event_id is stored already (by an earlier batch, or an
        earlier chunk of this one: the transaction sees its own rows) or appears on an earlier
        line of this chunk. Candidates are found by ``event_key = hash(event_id)``, an integer
        join that reads no strings; equality of the event_id strings then decides, so a hash
        collision can never drop an event.
        """
        con = self.con
        fields = [f.name for f in FIELDS["events"]]
        names = ", ".join(q(n) for n in fields)
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
        inserted = con.execute(
            f"""
            INSERT INTO events ({names}, event_key, received_at, batch_id)
            SELECT {", ".join(f"v.{q(n)}" for n in fields)}, v._key, ?::TIMESTAMP, ?
            FROM _jz_v v LEFT JOIN _jz_dup d ON d.event_id = v.event_id
            WHERE v._reason IS NULL
              AND (d.keep IS NULL OR d.keep = v._line)
              AND v.event_id NOT IN (SELECT event_id FROM _jz_hit)
            """,
            [now, batch_id],
        ).fetchone()[0]
        con.execute(
            """
            INSERT INTO _jz_links
            SELECT anonymous_id, user_id, ts FROM _jz_v
            WHERE _reason IS NULL AND user_id IS NOT NULL AND anonymous_id IS NOT NULL
            """
        )
        return int(inserted)

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

    def _upsert(self, kind: Kind, batch_id: str, now: datetime, result: BatchResult) -> None:
        """Merge users or items: the batch's last row per id wins; absent columns keep old values."""
        con = self.con
        key = KEY[kind]
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _jz_latest AS
            SELECT * FROM {_STAGE} WHERE _reason IS NULL
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
            if (
                pii
                and not con.execute(f"SELECT count(*) FROM _jz_latest l WHERE {given}").fetchone()[
                    0
                ]
            ):
                continue  # no file of this batch has personal data columns
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
        new = con.execute(f"SELECT count(*) FROM _jz_merged_{main} WHERE _new").fetchone()[0]
        changed = con.execute(
            f"SELECT count(DISTINCT {key}) FROM ({' UNION ALL '.join(touched)}) "
            f"WHERE {key} NOT IN (SELECT {key} FROM _jz_merged_{main} WHERE _new)"
        ).fetchone()[0]
        result.inserted = int(new + changed)
        result.updated = int(changed)

    def _record(
        self,
        result: BatchResult,
        options: IngestOptions,
        *,
        started_at: datetime,
        replay_of: str | None,
    ) -> None:
        import json

        self.con.execute(
            """
            INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                result.batch_id,
                result.kind,
                json.dumps(result.sources),
                options.to_json(),
                started_at,
                utcnow(),
                result.rows_read,
                result.inserted,
                result.duplicates,
                result.quarantined,
                result.updated,
                result.identities_linked,
                replay_of,
            ],
        )

    def _drop_temp(self) -> None:
        rows = self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary AND table_name LIKE '\\_jz\\_%' ESCAPE '\\'"
        ).fetchall()
        for (name,) in rows:
            self.con.execute(f"DROP TABLE IF EXISTS temp.{q(name)}")
