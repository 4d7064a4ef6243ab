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
import dataclasses
import io
import json
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from jingzhun.checks import MAX_ROWS, bounded_int
from jingzhun.contracts.time import utcnow
from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest.pipeline import BatchResult, Ingestor
from jingzhun.ingest.sources import UNDECODABLE, check_columns
from jingzhun.ingest.validate import IngestOptions
from jingzhun.outputs import atomic_write, check_output_path
from jingzhun.store import Store
from jingzhun.store.sql import Sql

if TYPE_CHECKING:
    import pandas as pd
from jingzhun.store.vault import PREFIX, VaultKeyError, raw_contexts, vault_for

DISCARDED = "discarded"


#: A row's reason as :func:`reasons` groups it: its first problem, quoted values elided.
REASON_GROUP = "regexp_replace(split_part(reason, ';', 1), '''[^'']*''', '…', 'g')"


@dataclass(frozen=True)
class Selection:
    """Which quarantined rows: by batch, by ids, by reason text; resolved ones on request.

    ``kind`` (events, users, items) and ``group`` (a reason exactly as :func:`reasons` lists
    it, e.g. ``"price: … is below 0"``) pick the rows of one line of :func:`reasons`.
    """

    batch_id: str | None = None
    ids: tuple[int, ...] = ()
    reason: str | None = None  # literal substring, case-insensitive (no pattern characters)
    include_resolved: bool = False
    kind: str | None = None
    group: str | None = None

    def where(self) -> tuple[Sql, list[object]]:
        clauses, params = [], []
        if self.batch_id:
            clauses.append("batch_id = ?")
            params.append(self.batch_id)
        if self.ids:
            # One list parameter, however many ids (an edit file may hold a million).
            # Ids past BIGINT name no row (and would not cast): they match nothing.
            clauses.append("quarantine_id IN (SELECT unnest(?::BIGINT[]))")
            params.append([i for i in self.ids if -(1 << 63) <= i < 1 << 63])
        if self.reason:
            # Matched as text: with ILIKE, --reason % matched every row, around discard's
            # guard against discarding everything at once.
            clauses.append("contains(lower(reason), lower(?))")
            params.append(self.reason)
        if self.kind:
            clauses.append("kind = ?")
            params.append(self.kind)
        if self.group:
            clauses.append(f"{REASON_GROUP} = ?")
            params.append(self.group)
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
        SELECT kind, {REASON_GROUP} AS reason, count(*) AS rows
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
    frame = store.sql(
        f"""
        SELECT quarantine_id, batch_id, kind, source, line_no, reason, raw, received_at,
               resolved_at, resolved_batch_id
        FROM quarantine WHERE {where} ORDER BY quarantine_id {lim}
        """,
        params,
    ).df()
    return opened_raw(store, frame)


def opened_raw(store: Store, frame: pd.DataFrame) -> pd.DataFrame:
    """The raw rows decrypted: a store with a vault keeps them encrypted (they may hold
    personal data), each for its quarantine id (see Ingestor._seal_quarantine)."""
    sealed = frame["raw"].map(lambda r: isinstance(r, str) and r.startswith(PREFIX))
    if not sealed.any():
        return frame
    vault = vault_for(store)
    if vault is None:
        raise VaultKeyError(
            f"{store.path.name} holds encrypted quarantine rows but no vault",
            hint="restore the store's store_meta rows from a backup",
        )
    picked = frame.loc[sealed]
    frame.loc[sealed, "raw"] = vault.decrypt(
        picked["raw"].tolist(), raw_contexts(picked["quarantine_id"]), "raw"
    )
    return frame


def export(store: Store, out: str | Path, selection: Selection = OPEN) -> int:
    """Write the selected rows as JSON Lines for editing; return how many.

    Each line: ``{"quarantine_id", "batch_id", "kind", "source", "line_no", "reason", "row"}``
    where ``row`` is the raw row to correct, and ``"undecodable"`` lists the values of ``row``
    whose bytes were not UTF-8 (shown escaped, ``\\xFF``), if any. ``replay --file`` reads the
    edited file back.
    """
    target = check_output_path(out, store_path=store.path)
    from pandas import isna  # the rows are a frame: pandas is loaded (NaN, None or NA)

    frame = rows(store, selection, limit=None)
    with atomic_write(target, "w", encoding="utf-8") as fh:
        for rec in frame.itertuples(index=False):
            row = json.loads(rec.raw)
            undecodable = row.pop(UNDECODABLE, None) if isinstance(row, dict) else None
            line = {
                "quarantine_id": int(rec.quarantine_id),
                "batch_id": rec.batch_id,
                "kind": rec.kind,
                "source": rec.source,
                "line_no": None if isna(rec.line_no) else int(rec.line_no),
                "reason": rec.reason,
                "row": row,
            }
            if undecodable:
                line["undecodable"] = undecodable
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return len(frame)


def discard(store: Store, selection: Selection) -> int:
    """Mark the selected open rows as discarded (kept, but no longer open); return how many."""
    if not (
        selection.batch_id or selection.ids or (selection.reason or "").strip() or selection.group
    ):
        raise InputError(
            "discard needs --batch, --id or --reason",
            hint="refusing to discard every open row at once",
        )
    _check_batch(store, selection.batch_id)
    where: Sql
    where, params = dataclasses.replace(selection, include_resolved=False).where()
    return store.sql(
        f"UPDATE quarantine SET resolved_at = ?, resolved_batch_id = '{DISCARDED}' WHERE {where}",
        [utcnow(), *params],
    ).fetchone()[0]


#: Largest replay file read (an export of a million rows is far below it).
MAX_REPLAY_BYTES = 1 << 30
#: The keys of a row the parser could not split: its text and, for CSV, how to split it.
_RAW_KEYS = ("_raw_line", "_columns", "_delimiter")
#: The delimiters ingest splits CSV and TSV by (the only ones an export writes).
_DELIMITERS = (",", "\t")


class _JsonError(ValueError):
    """JSON text that is not valid (``syntax``), nests too deeply or holds a key twice."""

    def __init__(self, message: str, *, syntax: bool = False) -> None:
        super().__init__(message)
        self.syntax = syntax


def _loads(text: str) -> object:
    """``json.loads``, except that a key given twice is an error (the last one silently won)
    and so is nesting past Python's recursion limit (a traceback before)."""

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        obj = dict(items)
        if len(obj) != len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    raise _JsonError(f"key {key!r} appears twice")
                seen.add(key)
        return obj

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except RecursionError:
        raise _JsonError("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise _JsonError(exc.msg, syntax=True) from None


@dataclass(frozen=True)
class _Edit:
    line: int  # in the replay file
    row: dict[str, object]


def _check_row(row: dict[str, object], where: str) -> None:
    """The shape of a row of a replay file; its column names are checked in :func:`_table`."""
    if "_raw_line" not in row:
        return
    extra = [k for k in row if k not in _RAW_KEYS]
    if extra:  # dropped silently before: only the line is read
        raise InputError(
            f"{where}: a row with _raw_line holds only {', '.join(_RAW_KEYS)}, not {extra[0]!r}",
            hint="fix the text of _raw_line, or replace the row by its columns",
        )
    columns, delimiter = row.get("_columns"), row.get("_delimiter", ",")
    if not isinstance(row["_raw_line"], str):
        raise InputError(f"{where}: _raw_line must be text", hint="keep the exported layout")
    if columns is not None and (
        not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
    ):
        raise InputError(
            f"{where}: _columns must be a list of column names", hint="keep the exported layout"
        )
    if columns is not None and len(set(columns)) != len(columns):
        twice = next(c for c in columns if columns.count(c) > 1)
        raise InputError(
            f"{where}: _columns names {twice!r} twice", hint="keep the exported layout"
        )
    if delimiter not in _DELIMITERS:
        raise InputError(
            f"{where}: _delimiter must be ',' or a tab, not {str(delimiter)[:20]!r}",
            hint="keep the exported layout",
        )
    try:  # kept as the raw row if it fails again: the store holds only UTF-8
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            f"{where}: _raw_line or _columns hold text that is not UTF-8 (such as \\udcff)",
            hint="fix the text",
        ) from None


def _edits(path: str | Path) -> dict[int, _Edit]:
    edits: dict[int, _Edit] = {}
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
            obj = _loads(line)
        except _JsonError as exc:
            raise InputError(
                f"{path}, line {n}: not valid JSON ({exc})", hint="fix the edit"
            ) from None
        qid = obj.get("quarantine_id") if isinstance(obj, dict) else None
        if (
            not isinstance(obj, dict)
            # bool is an int in Python: "quarantine_id": true was read as row 1
            or type(qid) is not int
            or not -(1 << 63) <= qid < 1 << 63
            or not isinstance(obj.get("row"), dict)
        ):
            raise InputError(
                f"{path}, line {n}: needs an integer quarantine_id and a row object",
                hint="keep the exported layout",
            )
        if qid in edits:  # the later line silently won before
            raise InputError(
                f"{path}, line {n}: quarantine_id {qid} is also on line {edits[qid].line}",
                hint="keep one edit per row",
            )
        _check_row(obj["row"], f"{path}, line {n}")
        edits[qid] = _Edit(n, obj["row"])
    if not edits:
        raise InputError(f"{path} holds no rows to replay")
    return edits


@dataclass
class _Row:
    """One row to replay: its values as text, or why it cannot be read, and its raw form."""

    values: dict[str, str | None]
    error: str | None = None
    raw_line: str | None = None  # the raw form to keep when the row fails before validation


def _row_values(raw: dict[str, object]) -> _Row:
    """A raw row as text values, or the error of a row never split."""
    if "_raw_line" not in raw:
        return _Row({k: _text(v) for k, v in raw.items()})
    line = str(raw["_raw_line"])
    columns = raw.get("_columns")
    kept = json.dumps(raw, ensure_ascii=False)
    if isinstance(columns, list):  # a CSV line with the wrong number of fields
        delimiter = str(raw.get("_delimiter", ","))
        try:
            fields = next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
        except csv.Error as exc:
            return _Row({}, f"cannot split the line ({exc})", kept)
        if len(fields) != len(columns):
            return _Row({}, f"expected {len(columns)} fields, found {len(fields)}", kept)
        return _Row({c: (f if f != "" else None) for c, f in zip(columns, fields, strict=True)})
    try:  # a JSON Lines line
        obj = _loads(line)
    except _JsonError as exc:
        return _Row({}, "not valid JSON" if exc.syntax else f"not valid JSON ({exc})", kept)
    if not isinstance(obj, dict):
        return _Row({}, "not a JSON object", kept)
    return _Row({k: _text(v) for k, v in obj.items()})


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


def _not_utf8(row: _Row) -> None:
    """Text Python holds but UTF-8 cannot (a lone surrogate such as JSON's "\\udcff") fails the
    row, naming the value, as undecodable bytes do at ingest (a traceback before)."""
    bad = []
    for name, value in row.values.items():
        try:
            if value is not None:
                value.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(name)
    if bad:
        row.error = "; ".join(f"{name}: invalid UTF-8" for name in bad)
        # The store's JSON holds no lone surrogate: kept as the text '\udcff' and marked, as
        # ingest keeps undecodable bytes, so that a replay does not take the text for the value.
        shown = {
            k: v.encode("utf-8", "backslashreplace").decode("utf-8") if v else v
            for k, v in row.values.items()
        }
        row.raw_line = json.dumps({**shown, UNDECODABLE: bad}, ensure_ascii=False)
        row.values = {}


def _undecodable(row: _Row, given: dict[str, object], stored: dict[str, object]) -> None:
    """Values whose bytes were not UTF-8 at ingest are kept escaped (``\\xFF``) in the raw
    row, which names them: replayed unchanged they fail again instead of storing the escape as
    the value (a user id '\\xFFu' went in before, issue 12)."""
    marked = stored.get(UNDECODABLE)
    if not isinstance(marked, list) or row.error is not None:
        return
    still = [c for c in marked if isinstance(c, str) and c in given and given[c] == stored.get(c)]
    if still:
        row.error = "; ".join(f"{c}: invalid UTF-8" for c in still)
        row.raw_line = json.dumps({**given, UNDECODABLE: still}, ensure_ascii=False)
        row.values = {}


def _table(records: Iterable[tuple[int, str, dict[str, object], dict[str, object]]]) -> pa.Table:
    """The replay's rows as a table of text columns plus the meta columns a source has.

    ``records`` are (quarantine id, where it was read, the row to replay, the row as stored).
    A key that cannot name a column (reserved, empty, control characters, two that differ
    only in case) is an error naming the row: it would be overwritten by the meta columns or
    renamed by DuckDB, i.e. silently lost (issue 12), just as a file's header may not hold it.
    """
    rows: list[_Row] = []
    qids: list[int] = []
    folded: dict[str, tuple[str, str]] = {}
    for qid, where, given, stored in records:
        row = _row_values(given)
        check_columns(where, list(row.values), what="row key")
        for key in row.values:
            other, other_where = folded.setdefault(key.casefold(), (key, where))
            if other != key:
                raise InputError(
                    f"{where}: row key {key!r} and {other!r} ({other_where}) differ only in case",
                    hint="use one spelling for one column",
                )
        _not_utf8(row)
        _undecodable(row, given, stored)
        rows.append(row)
        qids.append(qid)
    columns = sorted({k for r in rows for k in r.values})
    data: dict[str, pa.Array] = {
        c: pa.array([r.values.get(c) for r in rows], pa.string()) for c in columns
    }
    data["_line"] = pa.array(qids, pa.int64())  # unique within the replay, for in-batch dedupe
    data["_error"] = pa.array([r.error for r in rows], pa.string())
    data["_raw_line"] = pa.array([r.raw_line for r in rows], pa.string())
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
                "SELECT quarantine_id FROM quarantine "
                "WHERE quarantine_id IN (SELECT unnest(?::BIGINT[]))",
                [list(edits)],
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
    for (batch_id, kind), group in frame.groupby(["batch_id", "kind"], sort=True):
        options_json = store.sql(
            "SELECT options FROM ingest_batches WHERE batch_id = ?", [batch_id]
        ).fetchone()
        if options_json is None:
            raise NotFoundError(f"quarantined rows name batch {batch_id!r}, which is not recorded")
        options = _options_for(IngestOptions.from_json(options_json[0]), str(kind))
        if event_map and options.kind == "events":
            options = options.replace(event_map={**options.event_map, **event_map})
        records = []
        for qid, raw in zip(group["quarantine_id"].tolist(), group["raw"].tolist(), strict=True):
            stored = json.loads(raw)
            if edits is not None:
                edit = edits[qid]
                records.append((qid, f"{file}, line {edit.line}", edit.row, stored))
            else:
                given = {k: v for k, v in stored.items() if k != UNDECODABLE}
                records.append((qid, f"quarantine row #{qid}", given, stored))
        table = _messages(records) if options.format == "segment" else _table(records)
        results.append(
            ingestor.run_rows(f"replay:{batch_id}", table, options, replay_of=str(batch_id))
        )
    return results


def _options_for(batch: IngestOptions, kind: str) -> IngestOptions:
    """How to read a batch's quarantined rows of ``kind``: the batch's options for its own
    kind; for the rows it wrote besides (items from ``--item-columns``, users from Segment
    identify messages), that kind's plain reading — of the message again, for Segment."""
    if kind == batch.kind:
        return batch
    return IngestOptions(kind, format="segment" if batch.format == "segment" else None)  # type: ignore[arg-type]


def _messages(records: Iterable[tuple[int, str, dict[str, object], dict[str, object]]]) -> pa.Table:
    """A replay's Segment messages as the mapping reads them (``_line``, ``_error``, ``t``),
    with ``_qid``. A stored message is replayed as its text; an edited one as the object the
    edit gives; a line that never parsed (``{"_raw_line": text}``) is parsed again."""
    qids: list[int] = []
    errors: list[str | None] = []
    texts: list[str] = []
    for qid, _where, given, _stored in records:
        error = None
        if set(given) == {"_raw_line"}:
            text = str(given["_raw_line"])
            try:
                obj = _loads(text)
            except _JsonError as exc:
                error = "not valid JSON" if exc.syntax else f"not valid JSON ({exc})"
            else:
                if not isinstance(obj, dict):
                    error = "not a JSON object"
        else:
            text = json.dumps(given, ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            error = "invalid UTF-8"
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        qids.append(qid)
        errors.append(error)
        texts.append(text)
    return pa.table(
        {
            "_line": pa.array(qids, pa.int64()),
            "_error": pa.array(errors, pa.string()),
            "t": pa.array(texts, pa.string()),
            "_qid": pa.array(qids, pa.int64()),
        }
    )
