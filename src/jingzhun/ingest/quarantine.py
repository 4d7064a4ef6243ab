"""Inspect, fix and replay quarantined rows.

A quarantined row keeps its raw form under the source's own column names, the reason it was
refused, and where it came from (batch, file, record number). Three ways to get it in:

* fix the configuration (e.g. add ``[ingest.event_map]``) and ``replay`` the rows as stored;
* ``export`` them to JSON Lines, edit the ``row`` objects, and ``replay --file`` the edit;
* ``discard`` what cannot be saved: marked resolved as discarded, still kept for the record.

A replay reads the rows with the options of the batch they came from, through the same
validation, deduplication and insert path as any batch. Rows that pass are marked resolved
(with the replay's batch id); rows that fail again keep their place, with the new reason.
"""

from __future__ import annotations

import csv
import io
import json
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from jingzhun.checks import MAX_ROWS, bounded_int
from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest.pipeline import BatchResult, Ingestor, utcnow
from jingzhun.ingest.sources import META_COLUMNS
from jingzhun.ingest.validate import IngestOptions
from jingzhun.outputs import atomic_write, check_output_path
from jingzhun.store import Store
from jingzhun.store.sql import Sql

DISCARDED = "discarded"


@dataclass(frozen=True)
class Selection:
    """Which quarantined rows: by batch, by ids, by reason text; resolved ones on request."""

    batch_id: str | None = None
    ids: tuple[int, ...] = ()
    reason: str | None = None  # literal substring, case-insensitive (no pattern characters)
    include_resolved: bool = False

    def where(self) -> tuple[Sql, list[object]]:
        clauses, params = [], []
        if self.batch_id:
            clauses.append("batch_id = ?")
            params.append(self.batch_id)
        if self.ids:
            clauses.append(f"quarantine_id IN ({', '.join('?' for _ in self.ids)})")
            params.extend(self.ids)
        if self.reason:
            # Matched as text: with ILIKE, --reason % matched every row, around discard's
            # guard against discarding everything at once.
            clauses.append("contains(lower(reason), lower(?))")
            params.append(self.reason)
        if not self.include_resolved:
            clauses.append("resolved_at IS NULL")
        return (" AND ".join(clauses) or "TRUE"), params


#: Every open row.
OPEN = Selection()


def _check_batch(store: Store, batch_id: str | None) -> None:
    if (
        batch_id
        and not store.sql(
            "SELECT count(*) FROM ingest_batches WHERE batch_id = ?", [batch_id]
        ).fetchone()[0]
    ):
        raise NotFoundError(
            f"no batch {batch_id!r}", hint="jingzhun quarantine list shows the batches"
        )


def batches(store: Store) -> pd.DataFrame:
    """Per batch with quarantined rows: counts open and resolved, and the commonest reason."""
    return store.sql(
        """
        SELECT q.batch_id, any_value(q.kind) AS kind, any_value(b.started_at) AS received_at,
               count(*) FILTER (WHERE q.resolved_at IS NULL) AS open,
               count(*) FILTER (WHERE q.resolved_at IS NOT NULL AND q.resolved_batch_id <> 'discarded') AS replayed,
               count(*) FILTER (WHERE q.resolved_batch_id = 'discarded') AS discarded,
               mode(split_part(q.reason, ';', 1)) FILTER (WHERE q.resolved_at IS NULL) AS top_reason
        FROM quarantine q LEFT JOIN ingest_batches b USING (batch_id)
        GROUP BY q.batch_id ORDER BY received_at DESC, q.batch_id
        """
    ).df()


def reasons(store: Store, selection: Selection = OPEN) -> pd.DataFrame:
    """Open rows grouped by reason (the first problem of each row), most common first."""
    where: Sql
    where, params = selection.where()
    return store.sql(
        f"""
        SELECT kind, regexp_replace(split_part(reason, ';', 1), '''[^'']*''', '…', 'g') AS reason, count(*) AS rows
        FROM quarantine WHERE {where} GROUP BY ALL ORDER BY rows DESC, reason LIMIT 50
        """,
        params,
    ).df()


def rows(store: Store, selection: Selection = OPEN, *, limit: int | None = 50) -> pd.DataFrame:
    """The selected rows, oldest first."""
    _check_batch(store, selection.batch_id)
    where: Sql
    where, params = selection.where()
    lim = ""
    if limit is not None:  # 1e20 overflowed DuckDB's LIMIT (issue 12)
        lim = "LIMIT ?"
        params = [*params, bounded_int(limit, "--limit", lo=1, hi=MAX_ROWS)]
    return store.sql(
        f"""
        SELECT quarantine_id, batch_id, kind, source, line_no, reason, raw, received_at,
               resolved_at, resolved_batch_id
        FROM quarantine WHERE {where} ORDER BY quarantine_id {lim}
        """,
        params,
    ).df()


def export(store: Store, out: str | Path, selection: Selection = OPEN) -> int:
    """Write the selected rows as JSON Lines for editing; return how many.

    Each line: ``{"quarantine_id", "batch_id", "kind", "source", "line_no", "reason", "row"}``
    where ``row`` is the raw row to correct. ``replay --file`` reads the edited file back.
    """
    target = check_output_path(out, store_path=store.path)
    frame = rows(store, selection, limit=None)
    with atomic_write(target, "w", encoding="utf-8") as fh:
        for rec in frame.itertuples(index=False):
            fh.write(
                json.dumps(
                    {
                        "quarantine_id": int(rec.quarantine_id),
                        "batch_id": rec.batch_id,
                        "kind": rec.kind,
                        "source": rec.source,
                        "line_no": None if pd.isna(rec.line_no) else int(rec.line_no),
                        "reason": rec.reason,
                        "row": json.loads(rec.raw),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    return len(frame)


def discard(store: Store, selection: Selection) -> int:
    """Mark the selected open rows as discarded (kept, but no longer open); return how many."""
    if not (selection.batch_id or selection.ids or (selection.reason or "").strip()):
        raise InputError(
            "discard needs --batch, --id or --reason",
            hint="refusing to discard every open row at once",
        )
    _check_batch(store, selection.batch_id)
    where: Sql
    where, params = Selection(selection.batch_id, selection.ids, selection.reason).where()
    return store.sql(
        f"UPDATE quarantine SET resolved_at = ?, resolved_batch_id = '{DISCARDED}' WHERE {where}",
        [utcnow(), *params],
    ).fetchone()[0]


#: Largest replay file read (an export of a million rows is far below it).
MAX_REPLAY_BYTES = 1 << 30
#: Keys the replay reader adds to a row itself: a row key of that name would be overwritten
#: (silently lost) on the way back in.
_RESERVED_ROW_KEYS = frozenset({*META_COLUMNS, "_qid", "_file"})


def _check_row(row: dict[str, object], where: str) -> None:
    """A row object of a replay file: keys a column can have, and the shapes export wrote."""
    for key in row:
        if not key or "\x00" in key or key in _RESERVED_ROW_KEYS - {"_raw_line"}:
            raise InputError(
                f"{where}: row key {key!r} is reserved or not a column name",
                hint="rename the key; _line, _error, _qid, _object and empty names are jingzhun's",
            )
    if "_raw_line" in row:
        columns, delimiter = row.get("_columns"), row.get("_delimiter", ",")
        if not isinstance(row["_raw_line"], str):
            raise InputError(f"{where}: _raw_line must be text", hint="keep the exported layout")
        if columns is not None and (
            not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
        ):
            raise InputError(
                f"{where}: _columns must be a list of column names", hint="keep the exported layout"
            )
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise InputError(
                f"{where}: _delimiter must be one character", hint="keep the exported layout"
            )


def _edits(path: str | Path) -> dict[int, dict[str, object]]:
    edits: dict[int, dict[str, object]] = {}
    try:
        info = Path(path).stat()
        # /dev/zero or a FIFO would be read until memory runs out (issue 12).
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_REPLAY_BYTES:
            raise InputError(
                f"--file {path}: not a regular file of at most {MAX_REPLAY_BYTES >> 20} MiB",
                hint="give the file quarantine export wrote",
            )
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise InputError(
            f"{path}: no such file", hint="write one with jingzhun quarantine export --out FILE"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}, line {n}: not valid JSON ({exc.msg})", hint="fix the edit"
            ) from exc
        if (
            not isinstance(obj, dict)
            # bool is an int in Python: "quarantine_id": true was read as row 1
            or type(obj.get("quarantine_id")) is not int
            or not isinstance(obj.get("row"), dict)
        ):
            raise InputError(
                f"{path}, line {n}: needs an integer quarantine_id and a row object",
                hint="keep the exported layout",
            )
        _check_row(obj["row"], f"{path}, line {n}")
        edits[obj["quarantine_id"]] = obj["row"]
    if not edits:
        raise InputError(f"{path} holds no rows to replay")
    return edits


def _row_values(
    raw: dict[str, object], qid: int
) -> tuple[dict[str, str | None], str | None, str | None]:
    """A raw row as text values; (values, parse error, raw line) for rows never split."""
    if "_raw_line" not in raw:
        return {k: _text(v) for k, v in raw.items()}, None, None
    line = str(raw["_raw_line"])
    columns = raw.get("_columns")
    if isinstance(columns, list):  # a CSV line with the wrong number of fields
        fields = next(csv.reader(io.StringIO(line), delimiter=str(raw.get("_delimiter", ","))), [])
        if len(fields) != len(columns):
            return (
                {},
                f"expected {len(columns)} fields, found {len(fields)}",
                json.dumps(raw, ensure_ascii=False),
            )
        return (
            {c: (f if f != "" else None) for c, f in zip(columns, fields, strict=True)},
            None,
            None,
        )
    try:  # a JSON Lines line
        obj = json.loads(line)
    except json.JSONDecodeError:
        return {}, "not valid JSON", json.dumps(raw, ensure_ascii=False)
    if not isinstance(obj, dict):
        return {}, "not a JSON object", json.dumps(raw, ensure_ascii=False)
    return {k: _text(v) for k, v in obj.items()}, None, None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False)


def _table(records: Iterable[tuple[int, dict[str, object]]]) -> pa.Table:
    values, qids, errors, raws = [], [], [], []
    for qid, raw in records:
        vals, err, raw_line = _row_values(raw, qid)
        values.append(vals)
        qids.append(qid)
        errors.append(err)
        raws.append(raw_line)
    columns = sorted({k for v in values for k in v})
    data: dict[str, pa.Array] = {
        c: pa.array([v.get(c) for v in values], pa.string()) for c in columns
    }
    data["_line"] = pa.array(qids, pa.int64())  # unique within the replay, for in-batch dedupe
    data["_error"] = pa.array(errors, pa.string())
    data["_raw_line"] = pa.array(raws, pa.string())
    data["_qid"] = pa.array(qids, pa.int64())
    return pa.table(data)


def replay(
    store: Store,
    ingestor: Ingestor,
    selection: Selection = OPEN,
    *,
    file: str | Path | None = None,
    event_map: dict[str, str] | None = None,
) -> list[BatchResult]:
    """Re-validate and ingest quarantined rows; one replay batch per original batch.

    ``file`` is an edited export: its rows replace the stored ones (only those ids replay).
    ``event_map`` adds event-name mappings on top of the original batch's and the config's.
    """
    _check_batch(store, selection.batch_id)
    edits = _edits(file) if file is not None else None
    sel = selection
    if edits is not None:
        known = {
            r[0]
            for r in store.sql(
                f"SELECT quarantine_id FROM quarantine WHERE quarantine_id IN ({', '.join('?' for _ in edits)})",
                list(edits),
            ).fetchall()
        }
        missing = sorted(set(edits) - known)
        if missing:
            raise InputError(
                f"{file}: quarantine ids {missing[:5]} do not exist",
                hint="export again and edit that file",
            )
        sel = Selection(selection.batch_id, tuple(sorted(edits)), selection.reason, False)
    frame = rows(store, sel, limit=None)
    if frame.empty:
        return []
    results = []
    for batch_id, group in frame.groupby("batch_id", sort=True):
        options_json = store.sql(
            "SELECT options FROM ingest_batches WHERE batch_id = ?", [batch_id]
        ).fetchone()
        if options_json is None:
            raise NotFoundError(f"quarantined rows name batch {batch_id!r}, which is not recorded")
        options = IngestOptions.from_json(options_json[0])
        if event_map:
            options = IngestOptions(
                options.kind,
                options.mapping,
                options.constants,
                {**options.event_map, **event_map},
                options.ts_format,
                options.format,
            )
        records = [
            (int(qid), edits[int(qid)] if edits is not None else json.loads(raw))
            for qid, raw in zip(group["quarantine_id"], group["raw"], strict=True)
        ]
        results.append(
            ingestor.run_rows(
                f"replay:{batch_id}", _table(records), options, replay_of=str(batch_id)
            )
        )
    return results
