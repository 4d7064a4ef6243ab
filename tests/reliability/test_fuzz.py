"""Hypothesis fuzzing of what jingzhun reads from outside, where the existing property tests
stop.

Already covered elsewhere: UTF-8 CSV with a fixed header of event fields (tests/ingest), random
bytes as a file, Segment messages through the mapping SQL alone, expression parsing of random
text and token soup, typed integer trees, and the CLI's free-text options (tests/security).

Added here, every run the same (``derandomize``), bounded to about a minute in all:

(a) CSV/TSV and JSON Lines files of every kind (events, users, items), with their columns in
    any order, some missing, unknown ones added, rows of plausible values or of anything, any
    quoting, CRLF or LF, encoded as UTF-8, UTF-8 with a BOM, GBK or Latin-1, with junk lines
    mixed in, named by extension or not, through the real ingest: a result or an
    ``InputError`` (and then nothing written), never another exception; ``rows_read ==
    inserted + duplicates + quarantined + skipped + previously_removed``; each quarantined row
    stored with a reason; and for a well-formed UTF-8 CSV, every record counted once.
(b) Segment messages — as an SDK sends them, the usual keys with values of any JSON type,
    ``{"batch": [...]}`` envelopes, lines that are not objects or not JSON — through the
    server's ingest path (``ws.ingest.messages``) and as a Segment file: the same accounting,
    and the server's per-line answer adds up to the batch.
(c) Expressions built from the real columns of events and profiles (text, numbers, times,
    lists, maps, JSON), every operator and function, in well-formed and half-formed shapes,
    checked, compiled and run on a real store as a trait's ``where`` and as a tag rule: a
    count, or an ``InputError`` on one line.
(d) Campaign specs: a valid spec with random changes (values of any JSON type at any key,
    keys removed, unknown keys added), as JSON (the server) and as TOML (the CLI): a spec
    that survives the store's round trip, or an ``InputError`` that names a field.
"""

from __future__ import annotations

import codecs
import copy
import csv
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import ibis
import pytest
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from jingzhun.campaign.spec import (
    CampaignSpec,
    load_spec,
    problem_field,
    spec_from_json,
    stored_spec,
)
from jingzhun.config import TagRule, TagSettings
from jingzhun.contracts.events import EVENT_NAMES, FIELDS
from jingzhun.errors import InputError
from jingzhun.ingest.segment import MESSAGE_TYPES
from jingzhun.profile import expr as ex
from jingzhun.profile import traits as tr
from jingzhun.profile.build import EVENT_COLUMNS, default_as_of
from jingzhun.profile.tags import condition
from jingzhun.synth import SynthConfig, simulate
from jingzhun.workspace import Workspace
from tests.security.hostile import toml_value

FUZZ = settings(
    derandomize=True,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)

TABLES = ("events", "users", "items", "pii", "identities", "ingest_batches", "quarantine")


def counts(ws: Workspace) -> dict[str, int]:
    return {t: ws.store.count(t) for t in TABLES}


def one_line(exc: Exception) -> None:
    """A documented error: a message, on one line."""
    text = str(exc)
    assert text.strip(), f"{type(exc).__name__} without a message"
    assert "\n" not in text, text
    assert "Traceback" not in text


def accounted(ws: Workspace, result: Any) -> None:
    """Every row read is inserted, a duplicate, quarantined (stored, with a reason), skipped or
    previously removed; the batch is recorded; events went in under the batch."""
    assert result.rows_read == (
        result.inserted
        + result.duplicates
        + result.quarantined
        + result.skipped
        + result.previously_removed
    ), result.to_dict()
    assert min(result.inserted, result.duplicates, result.quarantined, result.skipped) >= 0
    batch = result.batch_id
    # The batch's own rows and those of each kind it gives (a Segment batch's identify
    # messages are users rows) are quarantined under the batch, each with its kind.
    stored = dict.fromkeys([result.kind, *result.related], (0, 0)) | {
        kind: (n, bad)
        for kind, n, bad in ws.store.rows(
            "SELECT kind, count(*), count(*) FILTER (WHERE coalesce(reason, '') = '' "
            "OR raw IS NULL) FROM quarantine WHERE batch_id = ? GROUP BY kind",
            [batch],
        )
    }
    expected = {result.kind: (result.quarantined, 0)} | {
        kind: (related.get("quarantined", 0), 0) for kind, related in result.related.items()
    }
    assert stored == expected, (stored, result.to_dict())
    assert ws.store.scalar("SELECT count(*) FROM ingest_batches WHERE batch_id = ?", [batch]) == 1
    if result.kind == "events":
        assert ws.store.scalar("SELECT count(*) FROM events WHERE batch_id = ?", [batch]) == (
            result.inserted
        )
    for related in result.related.values():
        assert related["rows"] >= related.get("quarantined", 0)


# -- (a) files: CSV, TSV, JSON Lines in four encodings --------------------------------------------

ENCODINGS = ("utf-8", "utf-8-sig", "gbk", "latin-1")
#: Cells a CSV reads as null (ingest/sources.py); a record of nothing else holds no row.
_NULL_TOKENS = (None, "", "NULL", "null", "\\N")

_TRICKY = [
    "", " ", "NULL", "null", "NaN", "-1", "0", "1e309", "-0", "3.5", "12,5", "abc", "true",
    "no", "2026-01-01", "2026-02-30", "2026-03-01T10:00:00Z", "2026-03-01 10:00:00+08:00",
    "1767225600", "1767225600000", "99999999999999999999", "'", '"', '""', "\\", "a\nb", "\r",
    "\t", ";", "'x'' OR 1=1 --", "中文", "Ünïcödé", "😀", "\u200b", "\ufeff", "x" * 300,
]  # fmt: skip
_text = st.one_of(
    st.sampled_from(_TRICKY),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=16),
)
_ids = st.one_of(st.sampled_from(["u1", "u2", "i1", "i2", "o1", "a1", "e1"]), _text)
#: Cells a field takes: plausible values (``_CLEAN``), and anything its type allows or not.
_CLEAN = {
    "id": st.from_regex(r"[a-z][a-z0-9_-]{0,7}", fullmatch=True),
    "event": st.sampled_from(sorted(EVENT_NAMES)),
    "number": st.one_of(st.integers(0, 10**5).map(str), st.floats(0, 1e5).map(repr)),
    "integer": st.integers(1940, 2010).map(str),
    "text": st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=12),
    "boolean": st.sampled_from(["true", "false", "1", "0", "yes", "no"]),
    "timestamp": st.one_of(
        st.datetimes(datetime(2020, 1, 1), datetime(2026, 1, 1)).map(lambda d: d.isoformat()),
        st.integers(1_600_000_000, 1_760_000_000).map(str),
    ),
    "json": st.sampled_from(['{"a": 1}', "[1, 2]", '"s"']),
}
_ANY = {
    "id": _ids,
    "event": st.sampled_from([*sorted(EVENT_NAMES), "Order Completed", "purchase", ""]),
    "number": st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-5, 10**6).map(str)
    ),
    "integer": st.integers(1890, 2030).map(str),
    "text": _text,
    "boolean": st.sampled_from(["true", "false", "1", "0", "yes", "no", "maybe"]),
    "timestamp": st.one_of(
        st.datetimes(datetime(1960, 1, 1), datetime(2100, 1, 1)).map(lambda d: d.isoformat()),
        st.integers(0, 2 * 10**12).map(str),
    ),
    "json": st.sampled_from(['{"a": 1}', "[1, 2]", "{", "null", '"s"']),
}
_EXTRA_NAMES = ["note", "Extra Col", "colour", "utm_source", "size", "e-mail", "注释"]


def _cell(kind: str, field: str, clean: bool) -> st.SearchStrategy[str | None]:
    field_of = {f.name: f for f in FIELDS[kind]}  # type: ignore[index]
    f = field_of.get(field)
    if f is None:  # an unknown column: kept as an extra
        return st.one_of(st.none(), _CLEAN["text"], _text) if not clean else _CLEAN["text"]
    if clean:
        return _CLEAN[f.type] if f.required else st.one_of(st.none(), _CLEAN[f.type])
    return st.one_of(st.none(), _ANY[f.type], _ANY[f.type], _text)


@st.composite
def tables(draw: st.DrawFn) -> tuple[str, list[str], list[dict[str, str | None]]]:
    """A kind, a header (fields in any order, some left out, unknown ones added) and rows,
    each of plausible values or of anything."""
    kind = draw(st.sampled_from(["events", "events", "users", "items"]))
    fields = [f.name for f in FIELDS[kind]]  # type: ignore[index]
    required = [f.name for f in FIELDS[kind] if f.required]  # type: ignore[index]
    chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
    if draw(st.integers(0, 9)):  # mostly with the required columns, sometimes without
        chosen += [f for f in required if f not in chosen]
    if kind == "events" and draw(st.integers(0, 5)) and "user_id" not in chosen:
        chosen.append("user_id")
    extras = draw(
        st.lists(
            st.one_of(
                st.sampled_from(_EXTRA_NAMES),
                st.sampled_from(_EXTRA_NAMES),
                st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8),
            ),
            unique=True,
            max_size=3,
        )
    )
    header = draw(st.permutations(chosen + [e for e in extras if e not in chosen]))
    rows = []
    for _ in range(draw(st.integers(1, 12)) if header else 1):
        clean = draw(st.booleans())
        rows.append({name: draw(_cell(kind, name, clean)) for name in header})
    return kind, list(header), rows


_DIALECTS = st.fixed_dictionaries(
    {
        "delimiter": st.sampled_from([",", ",", "\t"]),
        "quoting": st.sampled_from(
            [csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC, csv.QUOTE_NONE]
        ),
        "lineterminator": st.sampled_from(["\n", "\r\n"]),
    }
)
_JUNK = st.lists(st.tuples(st.integers(0, 20), st.binary(min_size=1, max_size=40)), max_size=2)


def _encode(text: str, encoding: str) -> bytes:
    return codecs.encode(text, encoding, errors="replace")


def _with_junk(data: bytes, junk: list[tuple[int, bytes]], newline: bytes) -> bytes:
    lines = data.split(newline)
    for at, blob in junk:
        lines.insert(min(at, len(lines)), blob)
    return newline.join(lines)


def _writer(buf: io.StringIO, dialect: dict[str, Any]) -> Any:
    options = dict(dialect)
    if options["quoting"] == csv.QUOTE_NONE:
        options["escapechar"] = "\\"
    return csv.writer(buf, **options)


def csv_bytes(
    header: list[str], rows: list[dict[str, str | None]], dialect: dict[str, Any], encoding: str
) -> bytes:
    buf = io.StringIO()
    writer = _writer(buf, dialect)
    writer.writerow(header)
    for row in rows:
        cells = ["" if row[h] is None else row[h] for h in header]
        if cells == [""] and dialect["quoting"] == csv.QUOTE_NONE:
            # Python's writer refuses a record of one empty field without quotes ("single
            # empty field record must be quoted"); unquoted, such a record is an empty line.
            buf.write(dialect["lineterminator"])
            continue
        writer.writerow(cells)
    return _encode(buf.getvalue(), encoding)


def _record(header: list[str], row: dict[str, str | None], dialect: dict[str, Any]) -> str:
    """One row as the file holds it, without its line end."""
    buf = io.StringIO()
    _writer(buf, dialect).writerow(["" if row[h] is None else row[h] for h in header])
    return buf.getvalue().removesuffix(dialect["lineterminator"])


def jsonl_bytes(
    header: list[str], rows: list[dict[str, str | None]], ascii_only: bool, encoding: str
) -> bytes:
    lines = []
    for row in rows:
        obj: dict[str, Any] = {}
        for name in header:
            value = row[name]
            if value is None:
                continue  # a missing key, or null
            obj[name] = _typed(value)
        lines.append(json.dumps(obj, ensure_ascii=ascii_only))
    return _encode("\n".join(lines) + "\n", encoding)


def _typed(value: str) -> Any:
    """A cell as JSON would carry it: numbers as numbers where they read as one."""
    try:
        number = json.loads(value)
    except ValueError:
        return value
    return number if isinstance(number, int | float | bool | list | dict) else value


@pytest.fixture(scope="module")
def files_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """One store for every generated file: batches pile up, and each is accounted for alone
    (later rows may be duplicates of earlier ones: counted as such)."""
    with Workspace.open(tmp_path_factory.mktemp("fuzz_files") / "s.duckdb", config=None) as ws:
        yield ws


@contextmanager
def unraisable() -> Iterator[list[Any]]:
    """The exceptions Python could not raise (a callback's, from inside pyarrow) meanwhile."""
    seen: list[Any] = []
    previous = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        yield seen
    finally:
        sys.unraisablehook = previous


def _known_csv_decode_bug(noise: list[Any]) -> bool:
    """Found with this file (see the xfail test below): a CSV record with the wrong number of
    fields that is not UTF-8 makes pyarrow's invalid-row callback fail to decode it; the
    whole file is then refused and the callback's UnicodeDecodeError is printed."""
    return bool(noise) and all(isinstance(u.exc_value, UnicodeDecodeError) for u in noise)


def ingest_or_refuse(ws: Workspace, kind: str, path: Path, fmt: str | None) -> Any:
    """The result of ingesting ``path``, or None when the whole file was refused (then nothing
    was written)."""
    before = counts(ws)
    refused = None
    with unraisable() as noise:
        try:
            result = ws.ingest(kind, [str(path)], format=fmt)
        except InputError as exc:
            refused = exc
    if noise:
        assert refused is not None and _known_csv_decode_bug(noise), [
            (u.exc_type, u.exc_value, u.object) for u in noise
        ]
    if refused is not None:
        one_line(refused)
        assert counts(ws) == before, "a refused file wrote rows"
        event(f"refused: {str(refused).replace(str(path), 'FILE')[:40]}")
        return None
    accounted(ws, result)
    event(
        "read"
        + (", inserted" if result.inserted else "")
        + (", quarantined" if result.quarantined else "")
    )
    return result


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="a CSV record with the wrong number of fields and a byte that is not UTF-8 refuses "
    "the whole file (pyarrow cannot hand it to the invalid-row callback); it is now one "
    "error line naming the record and no traceback, but either fault alone quarantines "
    "just that record, and this one should be quarantined alone too",
)
def test_a_short_or_long_record_that_is_not_utf8_is_quarantined_alone(tmp_path: Path) -> None:
    from tests.cli.subprocess_cli import run

    path = tmp_path / "bad.csv"
    path.write_bytes(
        b"event,user_id,ts\n"
        b"product_viewed,u1,2026-01-01\n"
        b"product_viewed,u2,2026-01-01,\xb1extra\n"
        b"product_viewed,u3,2026-01-02\n"
    )
    res = run(tmp_path, "ingest", "events", "bad.csv", "--json", db=tmp_path / "s.duckdb")
    assert "Traceback" not in res.stderr, res.stderr
    assert res.code == 0, res.stderr
    got = res.json()
    assert (got["rows_read"], got["inserted"], got["quarantined"]) == (3, 2, 1)


@settings(FUZZ, max_examples=70)
@given(
    table=tables(),
    dialect=_DIALECTS,
    encoding=st.sampled_from(ENCODINGS),
    junk=_JUNK,
    named=st.booleans(),
)
def test_any_csv_is_accounted_for_or_refused(
    files_ws: Workspace,
    tmp_path: Path,
    table: tuple[str, list[str], list[dict[str, str | None]]],
    dialect: dict[str, Any],
    encoding: str,
    junk: list[tuple[int, bytes]],
    named: bool,
) -> None:
    kind, header, rows = table
    newline = dialect["lineterminator"].encode()
    data = _with_junk(csv_bytes(header, rows, dialect, encoding), junk, newline)
    tsv = dialect["delimiter"] == "\t"
    # Named by extension, or detected from the content (a .txt says nothing).
    path = tmp_path / (("rows.tsv" if tsv else "rows.csv") if named else "rows.txt")
    path.write_bytes(data)
    ingest_or_refuse(files_ws, kind, path, None if named else ("tsv" if tsv else "csv"))


@settings(FUZZ, max_examples=40)
@given(
    table=tables(),
    dialect=_DIALECTS.filter(
        lambda d: d["quoting"] != csv.QUOTE_NONE and d["lineterminator"] == "\r\n"
    ),
    bom=st.booleans(),
)
def test_every_record_of_a_well_formed_csv_is_counted_once(
    files_ws: Workspace,
    tmp_path: Path,
    table: tuple[str, list[str], list[dict[str, str | None]]],
    dialect: dict[str, Any],
    bom: bool,
) -> None:
    """UTF-8, quoted as the csv module quotes with CRLF line ends (a lone CR or LF in a value
    is then inside quotes): every record is read — none lost, none split in two. A line of
    whitespace only, and one with no value at all (only delimiters and null tokens), hold no
    row and are skipped (documented in ingest/sources.py): such files are left out here."""
    kind, header, rows = table
    lines = [_record(header, row, dialect) for row in rows]
    if not all(line.strip() and line.strip(" \t\r\n\f\v") for line in lines) or any(
        all(v in _NULL_TOKENS for v in row.values()) for row in rows
    ):
        event("left out: a blank record")
        return
    path = tmp_path / ("rows.tsv" if dialect["delimiter"] == "\t" else "rows.csv")
    path.write_bytes(csv_bytes(header, rows, dialect, "utf-8-sig" if bom else "utf-8"))
    result = ingest_or_refuse(files_ws, kind, path, None)
    if result is not None:
        assert result.rows_read == len(rows), (result.to_dict(), rows)
        event("every record counted")


@settings(FUZZ, max_examples=50)
@given(
    table=tables(),
    ascii_only=st.booleans(),
    encoding=st.sampled_from(ENCODINGS),
    junk=_JUNK,
    crlf=st.booleans(),
)
def test_any_json_lines_are_accounted_for_or_refused(
    files_ws: Workspace,
    tmp_path: Path,
    table: tuple[str, list[str], list[dict[str, str | None]]],
    ascii_only: bool,
    encoding: str,
    junk: list[tuple[int, bytes]],
    crlf: bool,
) -> None:
    kind, header, rows = table
    data = jsonl_bytes(header, rows, ascii_only, encoding)
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    data = _with_junk(data, junk, b"\n")
    path = tmp_path / "rows.jsonl"
    path.write_bytes(data)
    ingest_or_refuse(files_ws, kind, path, None)


# -- (b) Segment messages -------------------------------------------------------------------------

_stext = st.text(st.characters(exclude_categories=("Cs",)), max_size=10)
_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _stext,
    st.sampled_from(["", "2024-03-01T10:00:00Z", "1e999", "-1", "NaN", "x@y.example"]),
)
_json = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_stext, inner, max_size=3)
    ),
    max_leaves=8,
)
_KEYS = [
    "product_id", "sku", "id", "price", "quantity", "revenue", "total", "subtotal", "discount",
    "currency", "order_id", "orderId", "email", "phone", "name", "category", "brand", "url",
]  # fmt: skip
_props = st.dictionaries(st.one_of(st.sampled_from(_KEYS), _stext), _json, max_size=6)
_product = st.dictionaries(st.sampled_from(_KEYS), _json_scalar, max_size=5)
_time = st.one_of(
    st.sampled_from(
        ["2024-03-01T10:00:00Z", "2024-03-01T10:00:00.123+08:00", "2024-03-01", "not a time", ""]
    ),
    st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1)).map(lambda d: d.isoformat() + "Z"),
    st.integers(-(10**13), 10**13),
    _json,
)
_ID = st.one_of(st.sampled_from(["u1", "u2", "anon-1", ""]), _stext, _json_scalar)


_GOOD_EVENTS = ["Order Completed", "Product Viewed", "Product Added", "Signed Up", "Page Viewed"]


@st.composite
def good_message(draw: st.DrawFn) -> dict[str, Any]:
    """A message as an SDK sends it, with a few odd values in its properties."""
    kind = draw(st.sampled_from(["track", "track", "track", "identify", "page", "alias"]))
    msg: dict[str, Any] = {
        "type": kind,
        "messageId": draw(st.from_regex(r"m-[a-z0-9]{1,6}", fullmatch=True)),
        "timestamp": draw(
            st.datetimes(datetime(2024, 1, 1), datetime(2026, 1, 1)).map(
                lambda d: d.isoformat() + "Z"
            )
        ),
        draw(st.sampled_from(["userId", "anonymousId"])): draw(st.sampled_from(["u1", "u2", "a1"])),
    }
    if kind == "track":
        msg["event"] = draw(st.sampled_from(_GOOD_EVENTS))
        products = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"product_id": st.sampled_from(["p1", "p2", "p3"])},
                    optional={"price": st.floats(0, 1000), "quantity": st.integers(1, 5)},
                ),
                max_size=3,
            )
        )
        msg["properties"] = {
            "order_id": "o1",
            "product_id": "p1",
            "revenue": draw(st.floats(0, 1000)),
            **({"products": products} if products else {}),
            **draw(_props),
        }
    elif kind == "identify":
        msg["traits"] = {"email": "x@y.example", "city": "杭州", **draw(_props)}
    elif kind == "alias":
        msg["previousId"] = "a1"
        msg["userId"] = "u1"
    return msg


@st.composite
def segment_messages(draw: st.DrawFn) -> Any:
    """A Segment message: as an SDK sends it, or the usual keys with any values, or sometimes
    anything at all."""
    roll = draw(st.integers(0, 9))
    if roll == 0:
        return draw(_json)  # not a message: any JSON value
    if roll >= 6:
        return draw(good_message())
    msg: dict[str, Any] = {
        "type": draw(st.one_of(st.sampled_from(MESSAGE_TYPES), _json_scalar)),
    }
    optional = {
        "messageId": st.one_of(_stext, st.integers(0, 10**15), _json),
        "event": st.one_of(
            st.sampled_from(["Order Completed", "Product Viewed", "Order Refunded", "Signed Up"]),
            _json_scalar,
        ),
        "userId": _ID,
        "anonymousId": _ID,
        "previousId": _ID,
        "groupId": _ID,
        "timestamp": _time,
        "sentAt": _time,
        "receivedAt": _time,
        "originalTimestamp": _time,
        "name": _json_scalar,
        "properties": st.one_of(
            _props,
            st.builds(lambda p, ps: {**p, "products": ps}, _props, st.lists(_product, max_size=4)),
            _json,
        ),
        "traits": st.one_of(_props, _json),
        "context": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "page": st.dictionaries(st.sampled_from(["url", "path", "referrer"]), _json),
                    "campaign": st.dictionaries(st.sampled_from(["name", "source"]), _json),
                    "traits": _props,
                },
            ),
            _json,
        ),
        "integrations": _json,
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=9)):
        msg[key] = draw(optional[key])
    return msg


_LINE_JUNK = st.sampled_from([b"", b"   ", b"{", b"[]", b"null", b"42", b'"x"', b"\xff\xfe{}"])


@st.composite
def segment_lines(draw: st.DrawFn) -> list[bytes]:
    """JSON lines of messages, some of them junk or a whole ``{"batch": [...]}`` request."""
    out: list[bytes | str] = []
    for _ in range(draw(st.integers(1, 8))):
        roll = draw(st.integers(0, 11))
        if roll == 0:
            out.append(draw(_LINE_JUNK))
        elif roll == 1:
            batch = draw(st.lists(segment_messages(), max_size=3))
            out.append(json.dumps({"batch": batch, "sentAt": "2024-03-01T10:00:00Z"}))
        else:
            out.append(json.dumps(draw(segment_messages()), ensure_ascii=draw(st.booleans())))
    return [line if isinstance(line, bytes) else line.encode() for line in out]


@pytest.fixture(scope="module")
def segment_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    with Workspace.open(tmp_path_factory.mktemp("fuzz_segment") / "s.duckdb", config=None) as ws:
        yield ws


@settings(FUZZ, max_examples=60)
@given(lines=segment_lines(), via=st.sampled_from(["server", "file"]))
@example(lines=[b'{"type": "track", "event": "x", "userId": "u", "timestamp": 1e300}'], via="file")
# A trait key that is no JSON path ("" or "a.b") beside a consent one: the consent check
# built a path from every key and aborted the batch's transaction.
@example(
    lines=[
        b'{"type": "identify", "userId": "u1", "traits": {"": null, "a.b": 1,'
        b' "consent_marketing": "maybe"}}'
    ],
    via="server",
)
@example(
    lines=[
        b'{"type": "track", "event": "Order Completed", "userId": "u", "messageId": "m",'
        b' "properties": {"products": [{"product_id": "p", "quantity": -1, "price": 1e308}]}}'
    ],
    via="server",
)
def test_any_segment_messages_are_accounted_for_or_refused(
    segment_ws: Workspace, tmp_path: Path, lines: list[bytes], via: str
) -> None:
    ws = segment_ws
    data = b"\n".join(lines) + b"\n"
    before = counts(ws)
    try:
        if via == "server":
            result, per_line = ws.ingest.messages(data, label="fuzz")
        else:
            path = tmp_path / "segment.jsonl"
            path.write_bytes(data)
            result, per_line = ws.ingest("events", [str(path)], format="segment"), None
    except InputError as exc:
        one_line(exc)
        assert counts(ws) == before, "a refused batch wrote rows"
        event("refused")
        return
    accounted(ws, result)
    event(
        "read"
        + (", inserted" if result.inserted else "")
        + (", quarantined" if result.quarantined else "")
    )
    if per_line is not None and per_line.num_rows:
        lines_seen = per_line.to_pylist()
        assert all(1 <= r["line"] <= len(lines) for r in lines_seen)
        assert sum(r["rows"] for r in lines_seen) == result.rows_read
        assert sum(r["inserted"] for r in lines_seen) == result.inserted
        # A line's "quarantined" says its row failed the checks; the batch counts a row
        # quarantined before from the same content as a duplicate (issue 14) instead.
        assert sum(r["quarantined"] for r in lines_seen) <= result.quarantined + result.duplicates
        for r in lines_seen:
            assert r["inserted"] + r["quarantined"] + r["skipped"] <= r["rows"]


# -- (c) expressions over the real columns ----------------------------------------------------------


@pytest.fixture(scope="module")
def shop_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """A small shop, ingested and profiled: the columns the expressions name are real."""
    folder = tmp_path_factory.mktemp("fuzz_expr")
    simulate(SynthConfig(users=150, seed=4)).write(folder / "shop")
    with Workspace.open(folder / "s.duckdb", config=None) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [str(folder / "shop" / f"{kind}.parquet")])
        ws.profiles.build()
        yield ws


_BINARY = [
    "+", "-", "*", "/", "%", "=", "==", "!=", "<>", "<", "<=", ">", ">=", "and", "or",
    "contains", "AND",
]  # fmt: skip
_CMP_OPS = ["=", "==", "!=", "<>", "<", "<=", ">", ">="]
_FUNCS = [
    "p90", "p1", "p99", "quantile", "median", "mean", "min", "max", "abs", "lower", "coalesce",
    "days_since", "foo", "P50", "sum",
]  # fmt: skip
_NUMBERS = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.sampled_from(["0", "0.5", "1e3", ".5", "2.", "1e308", "1e-300", "0.99", "100000000"]),
)
_STRINGS = st.one_of(
    st.sampled_from(["'beauty'", "'order_completed'", "''", "'it''s'", '"dq"', "'中文'", "'%'"]),
    _stext.map(lambda s: "'" + s.replace("'", "''") + "'"),
)
_LITERALS = st.one_of(_NUMBERS, _STRINGS, st.sampled_from(["true", "false", "null", "TRUE"]))


def expressions(names: list[str]) -> st.SearchStrategy[str]:
    """Well-formed-ish expressions over ``names``: any operator on any operands, whatever their
    types, as text (parenthesised, or not: the parser's precedence then decides)."""
    leaf = st.one_of(st.sampled_from([*names, "nosuchcolumn"]), _LITERALS)

    def wrap(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        def paren(s: str, keep: bool) -> str:
            return f"({s})" if keep else s

        binary = st.builds(
            lambda a, op, b, k: paren(f"{a} {op} {b}", k),
            inner,
            st.sampled_from(_BINARY),
            inner,
            st.booleans(),
        )
        unary = st.builds(
            lambda op, a: f"{op} {a}", st.sampled_from(["not", "-", "NOT", "- -"]), inner
        )
        call = st.builds(
            lambda f, args: f"{f}({', '.join(args)})",
            st.sampled_from(_FUNCS),
            st.lists(st.one_of(inner, _NUMBERS), max_size=3),
        )
        listed = st.builds(
            lambda a, neg, vals: f"{a} {'not ' if neg else ''}in ({', '.join(vals)})",
            inner,
            st.booleans(),
            st.lists(_LITERALS, min_size=1, max_size=4),
        )
        between = st.builds(
            lambda a, neg, lo, hi: f"{a} {'not ' if neg else ''}between {lo} and {hi}",
            inner,
            st.booleans(),
            inner,
            inner,
        )
        isnull = st.builds(
            lambda a, neg: f"{a} is {'not ' if neg else ''}null", inner, st.booleans()
        )
        return st.one_of(binary, unary, call, listed, between, isnull)

    return st.recursive(leaf, wrap, max_leaves=6)


def kinds_of(table: Any) -> dict[str, str]:
    """Each column's kind as the expressions see it: number, text, time, list, map, other."""
    out = {}
    for name in table.columns:
        t = table[name].type()
        out[name] = (
            "number"
            if t.is_numeric()
            else "text"
            if t.is_string()
            else "time"
            if t.is_temporal()
            else "list"
            if t.is_array()
            else "map"
            if t.is_map()
            else "other"
        )
    return out


def conditions(kinds: dict[str, str], aggregates: bool) -> st.SearchStrategy[str]:
    """Conditions that type-check as written (numbers compared with numbers, text with text),
    over the columns of each kind: what a user means to write, so most of them run."""

    def cols(kind: str) -> list[str]:
        return [c for c, k in kinds.items() if k == kind] or ["nosuchcolumn"]

    num_leaf = st.one_of(st.sampled_from(cols("number")), _NUMBERS)
    times = st.sampled_from(cols("time"))

    def num_extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        calls = ["abs"] + (["median", "mean", "min", "max", "p90", "p10"] if aggregates else [])
        return st.one_of(
            st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from("+-*/"), inner),
            st.builds(lambda f, a: f"{f}({a})", st.sampled_from(calls), inner),
            st.builds(lambda a: f"coalesce({a}, 0)", inner),
            st.builds(lambda t: f"days_since({t})", times),
            st.builds(lambda a: f"-{a}", inner),
        )

    num = st.recursive(num_leaf, num_extend, max_leaves=4)
    text = st.one_of(
        st.sampled_from(cols("text")),
        st.sampled_from(cols("text")).map(lambda c: f"lower({c})"),
    )
    atom = st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", num, st.sampled_from(_CMP_OPS), num),
        st.builds(lambda a, v: f"{a} = {v}", text, _STRINGS),
        st.builds(
            lambda a, neg, vs: f"{a} {'not ' if neg else ''}in ({', '.join(vs)})",
            text,
            st.booleans(),
            st.lists(_STRINGS, min_size=1, max_size=3),
        ),
        st.builds(lambda a, lo, hi: f"{a} between {lo} and {hi}", num, num, num),
        st.builds(
            lambda c, neg: f"{c} is {'not ' if neg else ''}null",
            st.sampled_from(list(kinds)),
            st.booleans(),
        ),
        st.builds(lambda c, v: f"{c} contains {v}", st.sampled_from(cols("list")), _STRINGS),
    )
    return st.recursive(
        atom,
        lambda inner: st.one_of(
            st.builds(
                lambda a, op, b: f"({a}) {op} ({b})", inner, st.sampled_from(["and", "or"]), inner
            ),
            st.builds(lambda a: f"not ({a})", inner),
        ),
        max_leaves=4,
    )


def _known_expr_bug(exc: BaseException, source: str) -> bool:
    """An expression that passes every check but that DuckDB refuses when it runs — integer
    overflow in its arithmetic (OutOfRangeException), arithmetic on booleans
    (BinderException: ``(a > 1) + (b > 1)``, ``abs(a > 1)``), ``between`` with bounds the
    value's type is not checked against (Binder/Conversion/ParserException). Found with this
    file: ``jingzhun profile build`` ended with a traceback; it now reports an InputError
    naming the rule or traits (:func:`test_an_expression_duckdb_refuses_is_an_input_error`).
    Run directly here, outside the build, they surface as DuckDB's own error: recognised."""
    text = str(exc)
    if isinstance(exc, duckdb.OutOfRangeException):
        return "Overflow in" in text
    if isinstance(exc, duckdb.BinderException) and "BOOLEAN" in text:
        return True
    return (
        isinstance(
            exc, duckdb.BinderException | duckdb.ConversionException | duckdb.ParserException
        )
        and "between" in source.lower()
    )


def run_where(ws: Workspace, source: str) -> int | None:
    """``source`` as a computed trait's ``where`` over the real base events, checked and
    compiled as the profile build does, then counted on the store; None if refused."""
    where = "profile trait 'fuzz' where"
    at = ibis.literal(default_as_of(ws.store), type="timestamp")
    base, _ = tr.base_events(ws.store.ibis(), at)
    events = base.select(*EVENT_COLUMNS)
    try:
        node = ex.parse(source, where=where)
        ex.check_names(node, source, dict.fromkeys(EVENT_COLUMNS), where)
        ex.check_no_aggregates(node, source, where)
        cond = ex.compile_condition(node, events, source=source, where=where, now=at)
    except InputError as exc:
        one_line(exc)
        return None
    query = ibis.to_sql(events.aggregate(n=events.count(where=cond)), dialect="duckdb")
    return int(ws.store.scalar(f"SELECT n FROM ({query})"))


def run_rule(ws: Workspace, source: str) -> int | None:
    """``source`` as a tag rule over the stored profiles, checked as the build plans it and
    run as it writes the tag; None if refused."""
    where = "tag rule 'fuzz'"
    profiles = ws.store.ibis().table("profiles")
    columns = {c: profiles[c].type() for c in profiles.columns}
    try:
        node = condition(source, profiles, columns, where)
    except InputError as exc:
        one_line(exc)
        return None
    cond = ex.compile_ibis(node, profiles, now=profiles.as_of)
    query = ibis.to_sql(profiles.filter(cond.fill_null(False)).select("user_id"), dialect="duckdb")
    return int(ws.store.scalar(f"SELECT count(*) FROM ({query})"))


def _either(fn: Any, ws: Workspace, source: str, total: int) -> None:
    note(f"expression: {source!r}")
    try:
        n = fn(ws, source)
    except Exception as exc:
        if _known_expr_bug(exc, source):
            event("known DuckDB refusal")
            return
        raise
    event("refused" if n is None else "counted")
    assert n is None or 0 <= n <= total


@pytest.fixture(scope="module")
def event_kinds(shop_ws: Workspace) -> dict[str, str]:
    """The columns a computed trait's ``where`` may name, with their kinds."""
    at = ibis.literal(default_as_of(shop_ws.store), type="timestamp")
    base, _ = tr.base_events(shop_ws.store.ibis(), at)
    return kinds_of(base.select(*EVENT_COLUMNS))


@settings(FUZZ, max_examples=100)
@given(data=st.data())
@example(data=None)
def test_any_trait_filter_counts_or_is_refused_on_one_line(
    shop_ws: Workspace, event_kinds: dict[str, str], data: Any
) -> None:
    total = shop_ws.store.count("events")
    if data is None:  # the explicit examples
        for source in (
            "properties = 'x'",
            "ts > '2026-01-01' and price between 'a' and 1",
            "days_since(ts) > 3 and lower(category) in ('beauty', 'home')",
            "coalesce(price, revenue, 'x') > 0",
            "event contains 'order'",
            "p90(price) < price",
        ):
            _either(run_where, shop_ws, source, total)
        return
    strategy = st.one_of(
        conditions(event_kinds, aggregates=False), expressions([*event_kinds, "properties"])
    )
    _either(run_where, shop_ws, data.draw(strategy, label="where"), total)


@pytest.fixture(scope="module")
def profile_kinds(shop_ws: Workspace) -> dict[str, str]:
    """The traits a tag rule may name, with their kinds."""
    return kinds_of(shop_ws.store.ibis().table("profiles"))


@settings(FUZZ, max_examples=150)
@given(data=st.data())
@example(data=None)
def test_any_tag_rule_counts_or_is_refused_on_one_line(
    shop_ws: Workspace, profile_kinds: dict[str, str], data: Any
) -> None:
    total = shop_ws.store.count("profiles")
    if data is None:  # the explicit examples: maps, lists, times, JSON-ish text
        for source in (
            "category_affinity > 0",
            "top_categories contains 'beauty' or top_categories contains 1",
            "last_items = 'x'",
            "quantile(monetary, 2) > 0",
            "quantile(monetary, 'a') > 0",
            "p90(top_categories) > 1",
            "days_since(first_seen) between p10(recency_days) and 1e308",
            "preferred_hour % 0 = 1",
            "monetary / 0 > 1",
        ):
            _either(run_rule, shop_ws, source, total)
        return
    strategy = st.one_of(conditions(profile_kinds, aggregates=True), expressions([*profile_kinds]))
    _either(run_rule, shop_ws, data.draw(strategy, label="rule"), total)


@pytest.mark.parametrize(
    ("trait_where", "rule"),
    [
        (None, "-9223372036854775807 - frequency - 5 < 0"),
        ("-9223372036854775807 - 5 < price", None),
        (None, "(frequency > 1) + (monetary > 100) >= 1"),
        ("abs(price > 1) = 1", None),
        (None, "null between last_seen and 'beauty'"),
        ("0 between (event_id = event_id) and 0", None),
    ],
    ids=[
        "overflow-tag-rule",
        "overflow-trait-where",
        "bool-sum-tag-rule",
        "bool-abs-trait-where",
        "null-between-tag-rule",
        "bool-between-trait-where",
    ],
)
def test_an_expression_duckdb_refuses_is_an_input_error(
    shop_ws: Workspace, tmp_path: Path, trait_where: str | None, rule: str | None
) -> None:
    from jingzhun.config import CustomTrait, ProfileSettings, Settings

    db = tmp_path / "copy.duckdb"
    shop_ws.store.run("CHECKPOINT")
    db.write_bytes(shop_ws.store.path.read_bytes())
    profile = ProfileSettings(
        traits=[CustomTrait(name="fuzz", agg="count", where=trait_where)] if trait_where else []
    )
    tags = TagSettings(rules=[TagRule(name="fuzz", when=rule)] if rule else [])
    with Workspace.open(db, config=None) as ws:
        ws.settings = Settings(profile=profile, tags=tags)
        before = ws.store.count("profile_builds")
        with pytest.raises(InputError, match="fuzz"):
            ws.profiles.build()
        assert ws.store.count("profile_builds") == before


# -- (d) campaign specs ------------------------------------------------------------------------------

BASE_SPEC: dict[str, Any] = {
    "name": "spring",
    "channel": "email",
    "description": "a spring sale",
    "audience": {"tags": ["likely_to_buy"], "where": "recency_days < 60", "share": 0.5},
    "exclude": {"bought_within_days": 7, "frequency_cap": {"messages": 2, "days": 7}},
    "control": {"share": 0.2, "stratify": False},
    "variants": [
        {"name": "a", "subject": "Hi {{ first_name }}", "body": "Hello", "weight": 1},
        {"name": "b", "subject": "New in", "body": "<p>x</p>", "format": "html"},
    ],
    "offer": {"cost_per_message": 0.002, "margin": 0.35, "discount": 0.1, "category": "beauty"},
    "recommendations": 3,
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


#: Every key and list entry of the base spec, as a path from the top.
_PATHS: list[tuple[Any, ...]] = [p for p in _paths(BASE_SPEC) if p]
_ODD_VALUES = [
    0, -1, 1, 0.0, 1.0, 2, 1e6, 1e300, "", "x", "ads", "webhook", "behaviour:2", ":", "a" * 5000,
    [], {}, ["Bad Tag"], {"score": "uplift", "n": 5}, {"event": "x"},
    {"event": "product_added", "without": "order_completed"}, True, False,
]  # fmt: skip
_SPEC_VALUE = st.one_of(_json_scalar, st.sampled_from(_ODD_VALUES), _json)


def _like(value: Any) -> st.SearchStrategy[Any]:
    """Another value of the same JSON type (in or out of the field's range)."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-10, 10**7)
    if isinstance(value, float):
        return st.floats(-2, 1e7, allow_nan=False)
    if isinstance(value, str):
        return st.one_of(st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True), _stext)
    if isinstance(value, list):
        return st.lists(_stext, max_size=3)
    return st.just(value)


@st.composite
def specs(draw: st.DrawFn) -> Any:
    """The base spec with up to 4 random changes: a value replaced (by one of its type, or by
    anything), a key removed or an unknown one added."""
    spec = copy.deepcopy(BASE_SPEC)
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(_PATHS))
        parent: Any = spec
        try:
            for key in path[:-1]:
                parent = parent[key]
            last = path[-1]
            if not isinstance(parent, dict | list) or (
                isinstance(parent, list) and last >= len(parent)
            ):
                continue
            action = draw(st.sampled_from(["set", "set", "delete", "add"]))
            if action == "set":
                parent[last] = draw(st.one_of(_like(parent[last]), _SPEC_VALUE))
            elif action == "delete":
                del parent[last]
            elif isinstance(parent, dict):
                parent[draw(st.one_of(st.sampled_from(["trigger", "colour", "top"]), _stext))] = (
                    draw(_SPEC_VALUE)
                )
        except (KeyError, IndexError, TypeError):
            continue
    return spec


def _valid_or_named(spec: Any, raw: Any, exc: InputError | None) -> None:
    event("valid" if exc is None else "refused")
    if exc is None:
        assert isinstance(spec, CampaignSpec)
        # What the store keeps reads back the same.
        assert stored_spec(spec.to_json()) == spec
        return
    one_line(exc)
    if isinstance(raw, dict):
        field = problem_field(exc, raw)
        if not field and TEMPLATE_NAMES_A_FILE in str(exc):
            return  # the known gap (see the xfail test below)
        if not field and "" in raw and "is not a known setting" in str(exc):
            return  # an unknown key that is the empty string: its name is ""
        assert field, f"the error names no field: {exc}"
        top = field.split(".")[0]
        assert top in CampaignSpec.model_fields or top in raw, (field, str(exc))


#: spec_from_json's own refusal of a template path, which problem_field does not place.
TEMPLATE_NAMES_A_FILE = "template names a file; send the template's text in body instead"


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="problem_field() gives '' for spec_from_json's 'variants #N (name) template names "
    "a file' error (its other errors give the field, e.g. variants.0.subject): the dashboard "
    "and API cannot show it beside variants.N.template",
)
def test_a_template_path_in_a_json_spec_is_the_template_field_s_problem() -> None:
    raw = {**BASE_SPEC, "variants": [{"name": "a", "subject": "s", "template": "a.txt"}]}
    with pytest.raises(InputError) as exc:
        spec_from_json(raw)
    assert problem_field(exc.value, raw) == "variants.0.template", str(exc.value)


@settings(FUZZ, max_examples=300)
@given(raw=specs())
@example(raw=[])
@example(raw={**BASE_SPEC, "trigger": {"event": "product_added", "after_minutes": 1e300}})
@example(raw={**BASE_SPEC, "variants": [{"name": "a", "subject": "s", "template": "a.txt"}]})
def test_any_json_spec_is_valid_or_names_its_field(raw: Any) -> None:
    try:
        spec = spec_from_json(raw)
    except InputError as exc:
        _valid_or_named(None, raw, exc)
    else:
        _valid_or_named(spec, raw, None)


def _toml(spec: dict[str, Any]) -> bytes:
    """The spec as a TOML document (tables inline); None values cannot be written: left out."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [clean(x) for x in v if x is not None]
        return v

    lines = [
        f"{toml_value(str(k))} = {toml_value(clean(v))}" for k, v in spec.items() if v is not None
    ]
    return "\n".join(lines).encode("utf-8", "surrogateescape")


@settings(FUZZ, max_examples=100)
@given(raw=specs(), template=st.sampled_from([None, "Hello {{ first_name }}", "", "\xff"]))
def test_any_toml_spec_is_valid_or_names_its_field(
    tmp_path: Path, raw: Any, template: str | None
) -> None:
    if not isinstance(raw, dict):
        return
    variants = raw.get("variants")
    for variant in variants if isinstance(variants, list) else []:
        if isinstance(variant, dict) and variant.get("body") is not None and template is not None:
            variant.pop("body")
            variant["template"] = "a.txt"
    if template is not None:
        (tmp_path / "a.txt").write_bytes(template.encode("latin-1"))
    path = tmp_path / "spec.toml"
    path.write_bytes(_toml(raw))
    try:
        spec = load_spec(path)
    except InputError as exc:
        one_line(exc)
        assert str(path) in str(exc), str(exc)
        event("refused")
        return
    event("valid")
    assert isinstance(spec, CampaignSpec)
    assert all(v.body for v in spec.variants)
    assert stored_spec(spec.to_json()) == spec
