"""Readers that turn a file (or stdin) into a stream of Arrow record batches.

Every source yields :class:`pyarrow.Table` chunks with the file's own columns plus three meta
columns the validator relies on:

``_line``      the row's record number in the file (the CSV header is record 1; for Parquet the
               first row is 1; for JSON Lines the physical line);
``_error``     set when the row could not even be parsed (wrong number of CSV fields, invalid
               JSON, invalid UTF-8 in a JSON line); every other column is then null;
``_object``    JSON Lines only: the whole line as JSON text, so that columns which are not
               fields keep their JSON types (numbers, objects, arrays) in ``properties``;
``_raw_line``  for such a row, a JSON object with its unparsed text (``_raw_line``) and, for
               CSV, the header and delimiter to split it by: the quarantine keeps it as the
               raw row, and a replay can parse an edited version.

Files stream in chunks, so a file never has to fit in memory. Formats: CSV, TSV, Parquet and
JSON Lines, each optionally gzip-compressed (detected from the content, not the name), and ``-``
for standard input. Problems with the file as a whole (missing, unreadable, empty, binary,
wrong format, a row longer than the limit) raise :class:`InputError` naming the file and fix.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from jingzhun.errors import InputError
from jingzhun.ingest import segment
from jingzhun.store.sql import MAX_IDENT, Sql, ident
from jingzhun.store.store import file_reader

Format = Literal["csv", "tsv", "parquet", "jsonl", "segment", "rows"]
#: "segment": JSON Lines of Segment / RudderStack messages (found from the first line's
#: content when no --format is given); "rows": in memory only.
FORMATS: tuple[Format, ...] = ("csv", "tsv", "parquet", "jsonl", "segment")
META_COLUMNS = ("_line", "_error", "_raw_line", "_object")
#: The key of a quarantined row's raw form that lists its values whose bytes were not UTF-8.
UNDECODABLE = "_undecodable"
#: Names a source column may not have, in any case (DuckDB's names are case-insensitive, so a
#: header ``_Error`` would be read in place of the parser's ``_error``): the meta columns, the
#: replay's quarantine id and the quarantine's mark of undecodable values.
RESERVED_COLUMNS = (*META_COLUMNS, "_qid", UNDECODABLE)
#: Most columns (or distinct JSON keys in a chunk) a source may have. The validating statement
#: grows with every column: 2,000 took 1.7 s and 500 MB for 100 rows, 10,000 ran out of memory.
MAX_COLUMNS = 1024

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 1 << 16
_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
# Values read as null from text files, besides the empty field. "NA" and "nan" are not here:
# they are legitimate ids and names too often.
_NULL_TOKENS = ["", "NULL", "null", "\\N"]

#: Called with (bytes consumed so far, total bytes or None) as a source streams.
ProgressFn = Callable[[int, int | None], None]


@dataclass(frozen=True)
class View:
    """Rows of one kind read from a chunk's table: ``sql(relation)`` is the ``SELECT`` over
    the relation that names the table, ``columns`` its (name, DuckDB type) pairs."""

    sql: Callable[[Sql], Sql]
    columns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Chunk:
    """Rows of a source as an Arrow table carrying the meta columns.

    ``schema_key`` is equal for chunks of equal schema, so the validating statement is
    generated once per schema.
    """

    table: pa.Table
    schema_key: object = None
    #: A chunk of messages rather than rows (Segment's): how to read the rows of each kind
    #: from ``table``, as SQL run where the chunk is validated (one statement maps and
    #: validates, with no table in between).
    views: Mapping[str, View] = field(default_factory=dict)

    @classmethod
    def of(cls, table: pa.Table) -> Chunk:
        return cls(table=table, schema_key=table.schema)


def check_columns(
    label: str,
    names: Sequence[str],
    *,
    what: str = "column",
    reserved: Sequence[str] = RESERVED_COLUMNS,
    where: Callable[[str], str] = lambda name: "",
) -> None:
    """Refuse names no column can carry, with one line naming the file and the name.

    Too many of them; an empty or blank name, one with control characters or undecodable
    bytes, or past the identifier limit; a reserved name (in any case); and two names that
    differ only in case (DuckDB would rename the second ``email`` to ``email_1``, an extra
    that nothing validates). ``where(name)`` adds where the name was seen (e.g. a line).
    """
    if len(names) > MAX_COLUMNS:
        raise InputError(
            f"{label}: {len(names):,} {what}s, more than the {MAX_COLUMNS:,} a source may have",
            hint="keep the columns a customer, event or item needs; put the rest in one JSON column",
        )
    banned = {r.casefold(): r for r in reserved}
    folded: dict[str, str] = {}
    for name in names:
        try:
            ident(name)
            if not name.strip():
                raise InputError("blank")
        except InputError:
            raise InputError(
                f"{label}: {what} {name[:60]!r}{where(name)} cannot name a column",
                hint=f"give every {what} a name of 1 to {MAX_IDENT} characters "
                "without control characters",
            ) from None
        key = name.casefold()
        if key in banned:
            raise InputError(
                f"{label}: {what} {name!r}{where(name)} is reserved",
                hint=f"rename it: {', '.join(reserved)} are jingzhun's, in any case",
            )
        other = folded.setdefault(key, name)
        if other != name:
            raise InputError(
                f"{label}: {what}s {other!r} and {name!r}{where(name)} differ only in case",
                hint="rename or drop one of them",
            )


def _noop_progress(done: int, total: int | None) -> None:
    return None


def _size(n: int) -> str:
    """A byte count for messages: 16 MiB, 2 KiB, 900 bytes."""
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


@dataclass
class Source:
    """An opened input: where it came from, its format and columns, and its chunk stream."""

    label: str
    format: Format
    columns: list[str]
    _chunks: Callable[[ProgressFn], Iterator[Chunk]]
    size: int | None = None
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    def chunks(self, progress: ProgressFn = _noop_progress) -> Iterator[Chunk]:
        """Yield the rows in order, in chunks, with the meta columns appended."""
        try:
            yield from self._chunks(progress)
        finally:
            self.close()

    @property
    def strict(self) -> bool:
        """Whether the columns are known up front (a header or schema) and so can be checked."""
        return self.format in ("csv", "tsv", "parquet", "segment")

    def close(self) -> None:
        while self._cleanup:
            self._cleanup.pop()()


def table_source(label: str, table: pa.Table) -> Source:
    """A source over rows already in memory (meta columns included), e.g. for a replay."""
    columns = [c for c in table.column_names if c not in META_COLUMNS and c != "_qid"]
    return Source(label, "rows", columns, lambda progress: iter([Chunk.of(table)]))


# -- opening ---------------------------------------------------------------------------------


class _Rewound(io.RawIOBase):
    """A read-only stream that replays ``prefix`` and then continues with ``rest``."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self._prefix = memoryview(prefix)
        self._rest = rest
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
        else:
            data = self._rest.read(len(buffer))
            n = len(data)
            buffer[:n] = data
        self.consumed += n
        return n


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _decompressed(label: str, raw: BinaryIO, head: bytes) -> tuple[BinaryIO, bytes]:
    """Wrap ``raw`` (positioned after ``head``) so that reading yields decompressed content.

    Returns the stream and the first bytes of the decompressed content.
    """
    stream: BinaryIO = io.BufferedReader(_Rewound(head, raw), buffer_size=1 << 20)
    if head.startswith(_GZIP_MAGIC):
        import gzip

        stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
        try:
            content_head = _read_exact(stream, _SNIFF_BYTES)
        except (OSError, EOFError) as exc:
            raise InputError(
                f"{label}: not a valid gzip file ({exc})",
                hint="re-compress it or pass it uncompressed",
            ) from exc
        return io.BufferedReader(_Rewound(content_head, stream), buffer_size=1 << 20), content_head  # type: ignore[arg-type]
    return stream, head


def _detect_format(label: str, head: bytes, explicit: str | None) -> Format:
    if explicit:
        if explicit not in FORMATS:
            raise InputError(
                f"unknown --format {explicit!r}", hint=f"use one of {', '.join(FORMATS)}"
            )
        return explicit  # type: ignore[return-value]
    if label != "-":
        suffixes = [s.lower() for s in Path(label).suffixes]
        if suffixes and suffixes[-1] in (".gz", ".gzip"):
            suffixes = suffixes[:-1]
        if suffixes and suffixes[-1] in _EXTENSIONS:
            return _EXTENSIONS[suffixes[-1]]
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        return "jsonl"
    first_line = stripped.split(b"\n", 1)[0]
    return "tsv" if first_line.count(b"\t") > first_line.count(b",") else "csv"


def _check_text(label: str, head: bytes, fmt: Format) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{label} is UTF-16 text", hint="re-save it as UTF-8")
    if head.startswith(_PARQUET_MAGIC):
        raise InputError(
            f"{label} is a Parquet file, not {fmt.upper()}", hint="pass --format parquet"
        )
    nul = head.find(b"\x00")
    if nul >= 0:
        raise InputError(
            f"{label} does not look like {fmt.upper()} text (binary data at byte {nul})",
            hint="check the file, or pass the right --format",
        )


def open_source(
    path: str,
    fmt: str | None = None,
    *,
    batch_rows: int = 262_144,
    max_line_bytes: int = 16 << 20,
    stdin: BinaryIO | None = None,
    columns: Sequence[str] | None = None,
    header: bool = True,
    event_map: Mapping[str, str] | None = None,
) -> Source:
    """Open ``path`` (``"-"`` for standard input) and check it before any row is read.

    ``columns`` names the columns of a CSV/TSV file without a header; ``header=False`` without
    ``columns`` names them ``column_1`` … ``column_N``. JSON Lines whose first message is a
    Segment one (:func:`jingzhun.ingest.segment.is_segment`) open as ``segment``, unless
    ``fmt`` says otherwise; ``event_map`` is the event-name mapping their order events are
    recognised by (see :func:`segment_views`).

    Raises
    ------
    InputError
        The file is missing, unreadable, empty, binary, not in ``fmt``, or has no columns.
    """
    label = path
    size: int | None = None
    if path == "-":
        raw: BinaryIO = stdin if stdin is not None else sys.stdin.buffer
    else:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{label}: no such file", hint="check the path")
        if p.is_dir():
            raise InputError(f"{label} is a folder, not a file", hint="name the files inside it")
        try:
            raw = open(p, "rb")  # noqa: SIM115 — closed by the source's cleanup
        except OSError as exc:
            raise InputError(
                f"{label}: cannot read ({exc.strerror})", hint="check the file's permissions"
            ) from exc
        size = p.stat().st_size
    cleanup: list[Callable[[], None]] = [] if path == "-" else [raw.close]
    try:
        head = _read_exact(raw, _SNIFF_BYTES)
        if not head:
            raise InputError(
                f"{label} is empty", hint="nothing to ingest; check the export that wrote it"
            )
        stream, content_head = _decompressed(label, raw, head)
        if not content_head:
            raise InputError(f"{label} is empty (after decompression)", hint="nothing to ingest")
        fmt_ = _detect_format(label, content_head, fmt)
        if fmt_ == "jsonl" and fmt is None and _first_is_segment(content_head):
            fmt_ = "segment"
        if fmt_ == "parquet":
            compressed = head.startswith(_GZIP_MAGIC)
            return _parquet_source(
                label, stream, content_head, compressed, size, batch_rows, cleanup
            )
        _check_text(label, content_head, fmt_)
        headerless = columns is not None or not header
        if headerless and fmt_ not in ("csv", "tsv"):
            flag = "--columns" if columns is not None else "--no-header"
            raise InputError(
                f"{label}: {flag} applies to CSV and TSV files, and this is {fmt_.upper()}",
                hint=f"drop {flag}, or pass --format csv if it is CSV",
            )
        if fmt_ == "jsonl":
            return _jsonl_source(label, (stream, size, raw), batch_rows, max_line_bytes, cleanup)
        if fmt_ == "segment":
            return _segment_source(
                label, (stream, size, raw), batch_rows, max_line_bytes, cleanup, event_map or {}
            )
        return _csv_source(
            label,
            fmt_,
            stream,
            content_head,
            size,
            raw,
            batch_rows,
            max_line_bytes,
            cleanup,
            columns=list(columns) if columns is not None else None if header else [],
        )
    except BaseException:
        for fn in reversed(cleanup):
            fn()
        raise


def _position(raw: BinaryIO) -> Callable[[], int]:
    def pos() -> int:
        try:
            return raw.tell()
        except (OSError, ValueError):
            return 0

    return pos


def _meta_nulls(n: int) -> dict[str, pa.Array]:
    return {"_error": pa.nulls(n, pa.string()), "_raw_line": pa.nulls(n, pa.string())}


# -- CSV / TSV -------------------------------------------------------------------------------


def _first_record(label: str, head: bytes, delimiter: str) -> list[str]:
    """The first record of a delimited text, split by the CSV rules."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    try:
        return next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), None) or []
    except csv.Error as exc:
        raise InputError(
            f"{label}: cannot read the first line ({exc})",
            hint="check the file, or pass the right --format",
        ) from exc


def _given_names(label: str, head: bytes, delimiter: str, columns: list[str]) -> list[str]:
    """The names of a file without a header: ``columns``, whose count must be the file's
    width, or column_1 … column_N when none are given."""
    width = len(_first_record(label, head, delimiter))
    if not columns:
        return [f"column_{i}" for i in range(1, width + 1)]
    if len(columns) != width:
        raise InputError(
            f"{label}: --columns gives {len(columns)} names but the first line has {width} fields",
            hint=f"give {width} names, in the order of the file's fields"
            + ("" if delimiter == "\t" else ", or check --format (tsv?)"),
        )
    return columns


def _csv_header(label: str, head: bytes, delimiter: str) -> list[str]:
    if len(head) >= _SNIFF_BYTES and not any(c in head for c in (b"\n", b"\r")):
        # Read past the sniffed bytes, the header was cut mid-name ("column 10951 has no
        # name" before, issue 12).
        raise InputError(
            f"{label}: the header line is longer than {_SNIFF_BYTES >> 10} KiB",
            hint="a header of that size is not a log's; check the file and its --format",
        )
    first_line = re.split(rb"\r\n|\n|\r", head, maxsplit=1)[0]
    try:
        first_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = first_line[: exc.start].count(delimiter.encode()) + 1
        raise InputError(
            f"{label}: column {column} of the header is not valid UTF-8",
            hint="save the file as UTF-8, or rename that column",
        ) from None
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    try:
        first = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), None)
    except csv.Error as exc:
        raise InputError(
            f"{label}: cannot read the header line ({exc})",
            hint="check the file, or pass the right --format",
        ) from exc
    if not first or all(not c.strip() for c in first):
        raise InputError(f"{label}: the first line has no column names", hint="add a header row")
    names = [c.strip() for c in first]
    if "" in names:
        raise InputError(
            f"{label}: column {names.index('') + 1} of the header has no name",
            hint="name every column",
        )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(
                f"{label}: column {name!r} appears twice in the header", hint="rename one of them"
            )
        seen.add(name)
    check_columns(label, names, where=lambda name: f" (header column {names.index(name) + 1})")
    return names


def _csv_source(
    label: str,
    fmt: Format,
    stream: BinaryIO,
    head: bytes,
    size: int | None,
    raw: BinaryIO,
    batch_rows: int,
    max_line_bytes: int,
    cleanup: list[Callable[[], None]],
    *,
    columns: list[str] | None = None,
) -> Source:
    """``columns`` is None for a file with a header; a list (empty: column_1 …) for one
    without, whose first line is then a row (record 1)."""
    delimiter = "\t" if fmt == "tsv" else ","
    if columns is None:
        names, first_row = _csv_header(label, head, delimiter), 2
    else:
        names, first_row = _given_names(label, head, delimiter, columns), 1
    pos = _position(raw)

    def chunks(progress: ProgressFn) -> Iterator[Chunk]:
        bad: list[tuple[int, str, str]] = []
        pending: list[pa.Table] = []
        pending_rows = 0
        skipped: list[int] = []  # record numbers the parser did not emit (bad or blank rows)

        def on_invalid(row: pacsv.InvalidRow) -> str:
            skipped.append(row.number)
            if row.text.strip():
                bad.append(
                    (
                        row.number,
                        f"expected {row.expected_columns} fields, found {row.actual_columns}",
                        row.text,
                    )
                )
            return "skip"

        try:
            with _undecodable_invalid_rows(on_invalid) as undecodable:
                reader = pacsv.open_csv(
                    stream,
                    # Our own (stripped) header names, so "a, b" finds column "b".
                    read_options=pacsv.ReadOptions(
                        block_size=max_line_bytes,
                        use_threads=False,
                        column_names=names,
                        skip_rows=first_row - 1,
                    ),
                    parse_options=pacsv.ParseOptions(
                        delimiter=delimiter,
                        newlines_in_values=True,
                        ignore_empty_lines=False,
                        invalid_row_handler=on_invalid,
                    ),
                    convert_options=pacsv.ConvertOptions(
                        # Binary, not string: invalid UTF-8 then fails one row, not the file.
                        column_types={n: pa.binary() for n in names},
                        null_values=_NULL_TOKENS,
                        strings_can_be_null=True,
                        quoted_strings_can_be_null=False,
                    ),
                )
        except pa.ArrowInvalid as exc:
            if undecodable:
                raise _undecodable_row_error(label, exc) from exc
            raise _csv_error(label, exc, first_row, max_line_bytes) from exc
        emitted = 0
        while True:
            try:
                with _undecodable_invalid_rows(on_invalid) as undecodable:
                    batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                if undecodable:
                    raise _undecodable_row_error(label, exc) from exc
                raise _csv_error(
                    label, exc, emitted + len(skipped) + first_row, max_line_bytes
                ) from exc
            n = batch.num_rows
            # Record numbers of emitted rows: 2, 3, … (1, 2, … without a header) skipping the
            # records the parser dropped. With S the sorted skipped numbers, the j-th emitted
            # row is j + f + #{i: S_i - i <= j + f}, f the first row's number.
            idx = np.arange(emitted, emitted + n, dtype=np.int64) + first_row
            if skipped:
                s = np.asarray(skipped, dtype=np.int64)
                idx = idx + np.searchsorted(s - np.arange(len(s)), idx, side="right")
            emitted += n
            cols = dict(zip(batch.schema.names, batch.columns, strict=True))
            table = pa.table({**cols, "_line": pa.array(idx), **_meta_nulls(n)})
            # A line with no value at all (a blank line, or only delimiters) holds no row.
            blank = None
            for col in batch.columns:
                nulls = col.is_null()
                blank = nulls if blank is None else pc.and_(blank, nulls)
            if blank is not None and pc.any(blank).as_py():
                table = table.filter(pc.invert(blank))
            pending.append(table)
            pending_rows += table.num_rows
            if bad:
                pending.append(_error_rows(names, bad, pa.binary(), delimiter))
                bad.clear()
            if pending_rows >= batch_rows:
                yield Chunk.of(pa.concat_tables(pending))
                pending, pending_rows = [], 0
                progress(pos(), size)
        if bad:
            pending.append(_error_rows(names, bad, pa.binary(), delimiter))
        if pending:
            yield Chunk.of(pa.concat_tables(pending))
        progress(size or pos(), size)

    return Source(label, fmt, names, chunks, size, cleanup)


def _error_rows(
    names: list[str], bad: list[tuple[int, str, str]], typ: pa.DataType, delimiter: str
) -> pa.Table:
    """Rows the parser could not split: the raw line, with the header to re-split it later."""
    import json

    n = len(bad)
    cols = {name: pa.nulls(n, typ) for name in names}
    raw = [
        json.dumps(
            {"_raw_line": b[2], "_columns": names, "_delimiter": delimiter}, ensure_ascii=False
        )
        for b in bad
    ]
    return pa.table(
        {
            **cols,
            "_line": pa.array([b[0] for b in bad], pa.int64()),
            "_error": pa.array([b[1] for b in bad], pa.string()),
            "_raw_line": pa.array(raw, pa.string()),
        }
    )


@contextlib.contextmanager
def _undecodable_invalid_rows(handler: object) -> Iterator[list[BaseException]]:
    """Catch what pyarrow cannot hand to the invalid-row handler: a record with the wrong
    number of fields *and* bytes that are not UTF-8 fails to decode before the handler is
    called (pyarrow reports that as an unraisable exception, a traceback on stderr, and then
    fails the file). The list holds those decode errors; other unraisables go on as before."""
    caught: list[BaseException] = []
    previous = sys.unraisablehook

    def hook(u: sys.UnraisableHookArgs) -> None:
        if isinstance(u.exc_value, UnicodeDecodeError) and u.object is handler:
            caught.append(u.exc_value)
        else:
            previous(u)

    sys.unraisablehook = hook
    try:
        yield caught
    finally:
        sys.unraisablehook = previous


def _undecodable_row_error(label: str, exc: Exception) -> InputError:
    found = re.search(r"Row #(\d+)", str(exc))
    where = f"record {found.group(1)}" if found else "a record"
    return InputError(
        f"{label}: {where} has the wrong number of fields and bytes that are not UTF-8",
        hint="fix or remove that line (either fault alone only quarantines the row)",
    )


def _csv_error(label: str, exc: Exception, near: int, max_line_bytes: int) -> InputError:
    text = str(exc)
    if "straddling" in text or "block size" in text:
        return InputError(
            f"{label}: a row at or after record {near} is longer than {_size(max_line_bytes)}",
            hint="look for an unclosed quote there, or raise [ingest] max_line_bytes",
        )
    return InputError(f"{label}: cannot parse as CSV near record {near}: {text.splitlines()[0]}")


# -- JSON Lines ------------------------------------------------------------------------------


def _split_lines(buf: bytes, first_line: int) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Split ``buf`` (complete lines, ending with ``\\n``) into a binary array of the lines
    without their terminators (``\\n``, ``\\r\\n``). Returns the lines, their line numbers and
    their lengths in bytes, terminators included.

    The terminators are cut here, in Arrow and NumPy, not in SQL: DuckDB's ``rtrim`` reads
    each line as UTF-8 and cost a JSON Lines source a fifth of its time.
    """
    arr = np.frombuffer(buf, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    offsets = np.empty(len(ends) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends + 1
    lengths = np.diff(offsets)
    array = pa.Array.from_buffers(
        pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(buf)]
    )
    numbers = first_line + np.arange(len(ends), dtype=np.int64)
    if b"\r" not in buf:
        return pc.binary_slice(array, 0, -1), numbers, lengths
    # Some lines end in \r\n: keep every byte but the terminators (one copy of the block).
    starts = offsets[:-1]
    cut = 1 + ((ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13))
    keep = np.ones(len(arr), dtype=bool)
    keep[ends] = False
    keep[(ends - 1)[cut == 2]] = False
    kept = np.empty(len(ends) + 1, dtype=np.int64)
    kept[0] = 0
    np.cumsum(lengths - cut, out=kept[1:])
    data = arr[keep]
    stripped = pa.Array.from_buffers(
        pa.large_binary(), len(ends), [None, pa.py_buffer(kept), pa.py_buffer(data)]
    )
    return stripped, numbers, lengths


def _line_blocks(
    label: str,
    stream: BinaryIO,
    block: int,
    max_line_bytes: int,
    pos: Callable[[], int],
    size: int | None,
    progress: ProgressFn,
) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """The complete lines of ``stream``, a block at a time: (lines, their line numbers).

    A line longer than ``max_line_bytes`` is an error naming it; a UTF-8 byte order mark
    is dropped.
    """

    def too_long(at: int) -> InputError:
        return InputError(
            f"{label}: line {at} is longer than {_size(max_line_bytes)}",
            hint="split it, or raise [ingest] max_line_bytes",
        )

    carry = b""
    line_no = 1
    first = True
    while True:
        data = stream.read(block)
        if not data:
            break
        if first:
            data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
            first = False
        buf = carry + data
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            if len(buf) > max_line_bytes:
                raise too_long(line_no)
            carry = buf
            continue
        complete, carry = buf[:cut], buf[cut:]
        lines, numbers, lengths = _split_lines(complete, line_no)
        if len(lengths) and lengths.max() > max_line_bytes:
            raise too_long(int(numbers[int(np.argmax(lengths))]))
        line_no += len(lines)
        yield lines, numbers
        progress(pos(), size)
    if carry.strip():
        if len(carry) > max_line_bytes:
            raise too_long(line_no)
        lines, numbers, _ = _split_lines(carry + b"\n", line_no)
        yield lines, numbers
    progress(size or pos(), size)


#: Each JSON line decoded (``t``; its bytes in DuckDB's escaped form when they are not UTF-8)
#: and why it cannot be read (``_error``), from a relation ``_jl`` of (b BLOB, _line). Blank
#: lines are left out (only short lines are trimmed to see: a line of more than 64 spaces
#: is "not valid JSON"). A valid JSON text that starts with ``{`` is an object: no parse
#: beyond json_valid's is needed to say so.
_DECODED_LINES = """
    SELECT _line, CASE WHEN t IS NULL THEN CAST(b AS VARCHAR) ELSE t END AS t,
           CASE WHEN t IS NULL THEN 'invalid UTF-8'
                WHEN NOT json_valid(t) THEN 'not valid JSON'
                WHEN NOT starts_with(ltrim(t, chr(32) || chr(9)), '{') THEN 'not a JSON object'
           END AS _error
    FROM (SELECT _line, b, try(decode(b)) AS t FROM _jl)
    WHERE t IS NULL OR octet_length(b) > 64 OR trim(t, chr(32) || chr(9) || chr(13)) <> ''
"""


#: Reads one block of decoded lines (the temp table ``_jp``: ``_line``, ``t``, ``_error``) on the source's connection, given their line numbers: the chunk, if any rows.
LinesToChunk = Callable[[duckdb.DuckDBPyConnection, np.ndarray], "Chunk | None"]


_READERS = threading.local()


def _line_reader() -> tuple[duckdb.DuckDBPyConnection, Callable[[], None]]:
    """A sealed in-memory connection to decode lines on, and the function that gives it back.

    A thread's next source takes the same one again: making one costs ~15 ms, which every
    batch of a server's writer paid. A source decoding while another is open on the same
    thread gets a connection of its own.
    """
    free: list[duckdb.DuckDBPyConnection] | None = getattr(_READERS, "free", None)
    if free is None:
        free = _READERS.free = []
    con = free.pop() if free else file_reader()

    def give_back() -> None:
        try:
            con.execute("DROP TABLE IF EXISTS _jp")
        except duckdb.Error:  # unusable: not kept
            con.close()
            return
        if len(free) < 4:
            free.append(con)
        else:
            con.close()

    return con, give_back


def _line_source(
    label: str,
    fmt: Format,
    columns: list[str],
    opened: tuple[BinaryIO, int | None, BinaryIO],
    batch_rows: int,
    max_line_bytes: int,
    cleanup: list[Callable[[], None]],
    to_chunk: LinesToChunk,
) -> Source:
    """A source of one JSON text per line (``opened``: the stream, its size, the raw file for
    progress), decoded a block at a time on a connection of its own, then read by
    ``to_chunk``."""
    stream, size, raw = opened
    pos = _position(raw)
    block = max(1 << 20, min(32 << 20, batch_rows * 256))
    con, give_back = _line_reader()  # reads lines handed to it; reads no file
    cleanup.append(give_back)

    def chunks(progress: ProgressFn) -> Iterator[Chunk]:
        for lines, numbers in _line_blocks(
            label, stream, block, max_line_bytes, pos, size, progress
        ):
            con.register("_jl", pa.table({"b": lines, "_line": pa.array(numbers)}))
            try:
                con.execute(f"CREATE OR REPLACE TEMP TABLE _jp AS {_DECODED_LINES}")
            finally:
                con.unregister("_jl")
            chunk = to_chunk(con, numbers)
            if chunk is not None:
                yield chunk

    return Source(label, fmt, columns, chunks, size, cleanup)


def _jsonl_source(
    label: str,
    opened: tuple[BinaryIO, int | None, BinaryIO],
    batch_rows: int,
    max_line_bytes: int,
    cleanup: list[Callable[[], None]],
) -> Source:
    def parse(con: duckdb.DuckDBPyConnection, numbers: np.ndarray) -> Chunk | None:
        keys = [
            k
            for (k,) in con.execute(
                "SELECT DISTINCT unnest(json_keys(t::JSON)) AS k FROM _jp WHERE _error IS NULL ORDER BY k"
            ).fetchall()
        ]

        def first_line(key: str) -> str:
            found = con.execute(
                "SELECT min(_line) FROM _jp WHERE _error IS NULL "
                "AND list_contains(json_keys(t::JSON), ?)",
                [key],
            ).fetchone()
            return f" (line {found[0]})" if found and found[0] is not None else ""

        if len(keys) > MAX_COLUMNS:
            first, last = int(numbers[0]), int(numbers[-1])
            raise InputError(
                f"{label}: lines {first}-{last} hold {len(keys):,} distinct keys, more than "
                f"the {MAX_COLUMNS:,} columns a source may have",
                hint="nest the rarer keys in one object (e.g. properties)",
            )
        check_columns(label, keys, what="JSON key", where=first_line)
        # Scalars arrive as their text; nested objects and arrays as JSON text.
        exprs = [
            f"CASE WHEN _error IS NULL THEN json_extract_string(t, {json_path(k)}) END AS {_quote(k)}"
            for k in keys
        ]
        # Bytes that are not UTF-8 are kept in DuckDB's escaped form (\\xFF), so they can be
        # seen and fixed in an export.
        raw = "CASE WHEN _error IS NOT NULL THEN json_object('_raw_line', t)::VARCHAR END"
        select = ", ".join(
            [
                *exprs,
                "_line",
                "_error",
                f"{raw} AS _raw_line",
                "CASE WHEN _error IS NULL THEN t END AS _object",
            ]
        )
        table = arrow_table(con, f"SELECT {select} FROM _jp ORDER BY _line")
        return Chunk.of(table) if table.num_rows else None

    return _line_source(label, "jsonl", [], opened, batch_rows, max_line_bytes, cleanup, parse)


# -- Segment messages --------------------------------------------------------------------------


def _first_is_segment(head: bytes) -> bool:
    """Whether the first non-blank line of ``head`` is a whole Segment message."""
    for line in head.removeprefix(b"\xef\xbb\xbf").split(b"\n")[:-1] or [head]:
        if line.strip():
            if b'"type"' not in line:
                return False
            try:
                return segment.is_segment(json.loads(line))
            except (ValueError, RecursionError):  # not JSON, cut short by the sniff, too deep
                return False
    return False


def segment_views(
    *,
    event_map: Mapping[str, str] | None = None,
    received_at: str | None = None,
    replay: bool = False,
) -> dict[str, View]:
    """How a chunk of Segment messages (``_line``, ``_error``, ``t``) gives rows: ``events``
    (one per message, one per product of an order), ``users`` (one per identify with a
    userId) and ``anonymous_identifies`` (their count without one, ``n``). In a ``replay``,
    ``_line`` is the quarantine id, which the rows carry as ``_qid`` too.

    The one place Segment messages become rows: files, replays and the HTTP tracking API all
    come through here, so the mapping (:mod:`jingzhun.ingest.segment`) has one caller shape.
    """
    qid = ", _line AS _qid" if replay else ""
    extra = (("_qid", "BIGINT"),) if replay else ()

    def typed(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        return (*((n, "BIGINT" if n == "_line" else "VARCHAR") for n in names), *extra)

    def events(relation: Sql) -> Sql:
        mapped = segment.events_sql(relation, received_at=received_at, event_map=event_map)
        return f"SELECT *{qid} FROM ({mapped})"

    def users(relation: Sql) -> Sql:
        return f"SELECT *{qid} FROM ({segment.users_sql(relation)})"

    return {
        "events": View(events, typed(segment.EVENTS_COLUMNS)),
        "users": View(users, typed(segment.USERS_COLUMNS)),
        "anonymous_identifies": View(segment.anonymous_identify_sql, (("n", "BIGINT"),)),
    }


def _segment_source(
    label: str,
    opened: tuple[BinaryIO, int | None, BinaryIO],
    batch_rows: int,
    max_line_bytes: int,
    cleanup: list[Callable[[], None]],
    event_map: Mapping[str, str],
) -> Source:
    views = segment_views(event_map=event_map)

    def mapped(con: duckdb.DuckDBPyConnection, numbers: np.ndarray) -> Chunk | None:
        # The decoded lines go as they are; they are mapped where they are validated.
        table = arrow_table(con, "SELECT _line, _error, t FROM _jp ORDER BY _line")
        return Chunk(table, schema_key=table.schema, views=views) if table.num_rows else None

    columns = [c for c in segment.EVENTS_COLUMNS if c not in META_COLUMNS]
    return _line_source(
        label, "segment", columns, opened, batch_rows, max_line_bytes, cleanup, mapped
    )


def arrow_table(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """The result of ``query`` as an Arrow table (DuckDB 2 renamed fetch_arrow_table)."""
    rel = con.sql(query)
    return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()


def json_path(key: str) -> str:
    """A DuckDB JSON path literal for a top-level key."""
    return "'$.\"" + key.replace("\\", "\\\\").replace('"', '\\"').replace("'", "''") + "\"'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- Parquet ---------------------------------------------------------------------------------


def _top_level_names(schema: list[tuple[str, int | None]]) -> list[str]:
    """The top-level column names of a flattened Parquet schema (depth-first, root first)."""
    names: list[str] = []
    i = 1
    for _ in range(schema[0][1] or 0 if schema else 0):
        names.append(schema[i][0])
        pending = 1  # elements of this column's subtree still to pass
        while pending:
            pending += (schema[i][1] or 0) - 1
            i += 1
    return names


def _parquet_read_error(
    reader: duckdb.DuckDBPyConnection,
    label: str,
    path: str,
    names: list[str],
    exc: duckdb.Error,
    start: int,
    stop: int,
) -> InputError:
    """The error for rows ``start:stop`` DuckDB could not read, naming the column if it can.

    DuckDB refuses a Parquet string that is not UTF-8 without naming its column; the column
    is found by reading each one alone (this runs only once the file has failed).
    """
    text = str(exc).splitlines()[0]
    if "UTF8" in text or "encoding" in text:
        for name in names:
            try:
                reader.execute(
                    f"SELECT max(length(CAST({ident(name)} AS VARCHAR))) "
                    "FROM read_parquet(?, file_row_number = true) "
                    "WHERE file_row_number >= ? AND file_row_number < ?",
                    [path, start, stop],
                ).fetchall()
            except duckdb.Error:
                return InputError(
                    f"{label}: column {name!r} holds text that is not valid UTF-8 "
                    f"(rows {start + 1:,} to {stop:,})",
                    hint="write it as UTF-8 text, or as binary: undecodable values in a "
                    "binary column are quarantined row by row",
                )
    return InputError(f"{label}: {text}", hint="check the file")


def _parquet_source(
    label: str,
    stream: BinaryIO,
    head: bytes,
    compressed: bool,
    size: int | None,
    batch_rows: int,
    cleanup: list[Callable[[], None]],
) -> Source:
    """Parquet is read by DuckDB itself (in parallel), one range of rows per chunk."""
    if not head.startswith(_PARQUET_MAGIC):
        raise InputError(
            f"{label} is not a Parquet file (no PAR1 header)",
            hint="check the file, or pass the right --format",
        )
    if not compressed and label != "-":
        target = label
    else:
        # Parquet needs random access: spool stdin or decompressed content to a temp file.
        fd, target = tempfile.mkstemp(suffix=".parquet", prefix="jingzhun-")
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        cleanup.append(lambda: os.path.exists(target) and os.remove(target))
        size = os.path.getsize(target)
    con = file_reader(target)
    resolved = str(Path(target).resolve())
    try:
        groups = [
            int(n)
            for _, n in con.execute(
                "SELECT DISTINCT row_group_id, row_group_num_rows FROM parquet_metadata(?) "
                "ORDER BY row_group_id",
                [resolved],
            ).fetchall()
        ]
        names = [
            r[0]
            for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [resolved]).fetchall()
        ]
        # The file's own names: DuckDB renames a second 'email' next to 'Email' ('email_1')
        # and an empty name ('C3'), which would then pass unvalidated into the extras.
        stored = _top_level_names(
            con.execute("SELECT name, num_children FROM parquet_schema(?)", [resolved]).fetchall()
        )
        threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])
    except duckdb.Error as exc:
        raise InputError(
            f"{label} is not a readable Parquet file: {str(exc).splitlines()[0]}"
        ) from exc
    finally:
        con.close()
    check_columns(label, stored, reserved=(*RESERVED_COLUMNS, "file_row_number"))
    if stored != names:  # pragma: no cover - DuckDB keeps names that passed the check
        raise InputError(f"{label}: DuckDB reads the column names as {names[:5]}, not {stored[:5]}")
    total_rows = sum(groups)
    # Chunks are whole row groups, at least one per DuckDB thread (a Parquet scan runs in
    # parallel across row groups, not within one) and at least batch_rows rows.
    bounds = [0]
    rows = count = 0
    for n in groups:
        rows, count = rows + n, count + 1
        if rows >= batch_rows and count >= threads:
            bounds.append(bounds[-1] + rows)
            rows = count = 0
    if rows or len(bounds) == 1:
        bounds.append(bounds[-1] + rows)

    def chunks(progress: ProgressFn) -> Iterator[Chunk]:
        # Read by a connection that may open this file only (the store's reads no files),
        # handed over as Arrow like every other source's chunks.
        reader = file_reader(target)
        try:
            for start, stop in itertools.pairwise(bounds):
                try:
                    table = reader.sql(
                        "SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS _line, "
                        "NULL::VARCHAR AS _error, NULL::VARCHAR AS _raw_line "
                        "FROM read_parquet(?, file_row_number = true) "
                        "WHERE file_row_number >= ? AND file_row_number < ?",
                        params=[resolved, start, stop],
                    ).to_arrow_table()
                except duckdb.Error as exc:
                    # What DuckDB rejects in a file as a whole (e.g. invalid UTF-8 in a string
                    # column) is the file's fault; name it.
                    raise _parquet_read_error(
                        reader, label, resolved, names, exc, start, stop
                    ) from exc
                yield Chunk(table=table, schema_key=("parquet", table.schema))
                progress(int(stop / max(total_rows, 1) * (size or 1)), size)
        finally:
            reader.close()

    return Source(label, "parquet", names, chunks, size, cleanup)
