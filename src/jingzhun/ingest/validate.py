"""Row validation as generated SQL.

:class:`RowValidator` turns a source's columns (names and DuckDB types) into one ``SELECT``
that DuckDB runs vectorised over each chunk. The statement produces the *stage* columns: every
field of the kind, typed and normalised; ``_reason`` (null for a good row, otherwise every
problem found, ``; ``-separated, each naming its field); and ``_raw``, the row as read under its
original column names, computed only for bad rows.

Typing depends on the source type, so a Parquet timestamp is not rendered to text and parsed
back, while a CSV cell is parsed: ISO 8601 (with or without offset; naive times are UTC) or
epoch seconds, or ``--ts-format`` for other layouts.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from jingzhun.config import IngestSettings
from jingzhun.contracts.events import (
    EVENT_ID_CONTENT,
    EVENT_NAMES,
    FIELDS,
    SEGMENT_NAMES,
    Field,
    Kind,
    field_names,
)
from jingzhun.errors import InputError
from jingzhun.ingest import consent
from jingzhun.ingest.schema import EVENT_REQUIRES, EXTRAS_COLUMN, pii_in_name
from jingzhun.ingest.sources import META_COLUMNS, UNDECODABLE, check_columns, json_path
from jingzhun.store.sql import Sql, lit
from jingzhun.store.sql import ident as q

#: DuckDB type of each field type in the stage and the store.
SQL_TYPES = {
    "id": "VARCHAR",
    "event": "VARCHAR",
    "text": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "number": "DOUBLE",
    "integer": "BIGINT",
    "boolean": "BOOLEAN",
    "json": "JSON",
}

#: Events whose rows are items in a cart or an order: quantity defaults to 1.
_ITEM_LINE_EVENTS = ("product_added", "product_removed", "order_completed", "order_refunded")
#: Events whose revenue defaults to quantity × price.
_REVENUE_EVENTS = ("order_completed", "order_refunded")

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def is_in(expr: str, values: list[str] | tuple[str, ...]) -> str:
    """``expr IN (values)`` that stays a scalar test.

    DuckDB rewrites a long ``IN`` list into a hash (mark) join, which costs far more per row
    than comparing a dozen strings; ``list_contains`` is evaluated in place.
    """
    items = ", ".join(lit(v) for v in values)
    return f"{expr} IN ({items})" if len(values) <= 5 else f"list_contains([{items}], {expr})"


def _category(duck_type: str) -> str:
    t = duck_type.upper()
    if t == "BLOB":
        return "blob"
    if t == "VARCHAR" or t.startswith("VARCHAR"):
        return "text"
    if t in (
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
    ):
        return "int"
    if t in ("FLOAT", "DOUBLE", "REAL") or t.startswith("DECIMAL"):
        return "float"
    if t == "TIMESTAMP WITH TIME ZONE":
        return "timestamptz"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t == "DATE":
        return "date"
    if t == "BOOLEAN":
        return "bool"
    if t == "JSON":
        return "text"
    return "nested"


def parse_assignments(pairs: list[str] | None, option: str) -> dict[str, str]:
    """Parse ``SRC=DST`` pairs of a CLI option into a dict, with an error naming the bad one."""
    result: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise InputError(
                f"{option} {pair!r} is not of the form NAME=VALUE",
                hint=f"e.g. {option} customer_id=user_id",
            )
        key, value = pair.split("=", 1)
        key, value = key.strip(), value.strip()
        if not key:
            raise InputError(f"{option} {pair!r} has an empty name")
        if key in result:
            raise InputError(f"{option} names {key!r} twice")
        result[key] = value
    return result


#: Units of integer timestamps, and how many microseconds each is.
TS_UNITS: dict[str, float] = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}
#: How purchases without an order id get one: each row its own order, or one order per user
#: and timestamp.
ORDER_ID_MODES = ("row", "user-time")
#: Which order lines are returns (refunds): negative quantities, or an invoice-number prefix.
RETURN_RULES = ("negative-quantity", "cancel-prefix=PREFIX")
#: Events that need an order id, which ``order_id`` derives when a log has none.
_ORDER_EVENTS = tuple(sorted(e for e, needs in EVENT_REQUIRES.items() if "order_id" in needs))
#: Events a return rule turns into refunds: order lines.
_RETURNABLE = "order_completed"
_SNAKE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")


def _one_of(option: str, value: str, valid: tuple[str, ...] | list[str]) -> InputError:
    return InputError(
        f"{option} {value[:60]!r} is not valid", hint=f"use one of: {', '.join(valid)}"
    )


@dataclass(frozen=True)
class IngestOptions:
    """How to read a batch: everything a replay needs to read its rows the same way again.

    ``columns`` names the columns of a file without a header (``header=False`` without
    ``columns`` names them column_1 …). ``ts_unit`` is the unit of integer timestamps; when it
    is None, the batch reads it from their magnitude and records what it found here.
    ``order_id`` derives order ids for purchases without one; ``returns`` turns order lines
    into refunds; ``only_events``/``skip_events`` keep or skip rows by (mapped) event name;
    ``item_columns`` fills the items table from the rows (item field -> source column);
    ``custom_events`` keeps events outside the vocabulary as custom events (Segment sources,
    which send any event name) instead of quarantining them.
    """

    kind: Kind
    mapping: dict[str, str] = field(default_factory=dict)  # source column -> field
    constants: dict[str, str] = field(default_factory=dict)  # field -> value for every row
    event_map: dict[str, str] = field(default_factory=dict)  # source event name -> known name
    ts_format: str | None = None  # strptime layout for text timestamps
    format: str | None = None
    columns: tuple[str, ...] | None = None
    header: bool = True
    ts_unit: str | None = None
    order_id: str | None = None
    returns: tuple[str, ...] = ()
    only_events: tuple[str, ...] = ()
    skip_events: tuple[str, ...] = ()
    item_columns: dict[str, str] = field(default_factory=dict)  # item field -> source column
    custom_events: bool = False

    def __post_init__(self) -> None:
        names = set(field_names(self.kind))
        for src, dst in self.mapping.items():
            if dst not in names:
                raise InputError(
                    f"--map {src}={dst}: {dst!r} is not a field of {self.kind}",
                    hint=f"map to one of: {', '.join(field_names(self.kind))}",
                )
        targets = list(self.mapping.values())
        for dst in set(targets):
            if targets.count(dst) > 1:
                sources = [s for s, d in self.mapping.items() if d == dst]
                raise InputError(
                    f"--map sends {' and '.join(sources)} to the same field {dst!r}",
                    hint="map only one",
                )
        for name in self.constants:
            if name not in names:
                raise InputError(
                    f"--set {name}=…: {name!r} is not a field of {self.kind}",
                    hint=f"use one of: {', '.join(field_names(self.kind))}",
                )
        for src, dst in self.event_map.items():
            if dst not in EVENT_NAMES:
                raise InputError(
                    f"--event-map {src}={dst}: {dst!r} is not a known event",
                    hint=f"use one of: {', '.join(sorted(EVENT_NAMES))}",
                )
        if self.ts_format is not None and "%" not in self.ts_format:
            raise InputError(
                f"--ts-format {self.ts_format!r} has no % directives",
                hint="e.g. --ts-format '%d/%m/%Y %H:%M'",
            )
        self._check_reading()
        if self.kind != "events":
            used = self.given(
                "ts_unit", "order_id", "returns", "only_events", "skip_events", "item_columns"
            )
            if used:
                raise InputError(
                    f"{used[0]} applies to events, not {self.kind}",
                    hint=f"drop {used[0]} when ingesting {self.kind}",
                )
            return
        self._check_event_options()

    def _check_reading(self) -> None:
        if self.columns is not None:
            if not self.columns:
                raise InputError("--columns is empty", hint="e.g. --columns user_id,item_id,ts")
            seen: set[str] = set()
            for i, name in enumerate(self.columns, start=1):
                if not name.strip():
                    raise InputError(
                        f"--columns: name {i} is empty", hint="name every column, e.g. a,b,c"
                    )
                if name in seen:
                    raise InputError(
                        f"--columns names {name!r} twice", hint="give each column its own name"
                    )
                seen.add(name)
            check_columns("--columns", list(self.columns), what="name")
        headerless = self.columns is not None or not self.header
        if headerless and self.format is not None and self.format not in ("csv", "tsv"):
            flag = "--columns" if self.columns is not None else "--no-header"
            raise InputError(
                f"{flag} applies to CSV and TSV files, not --format {self.format}",
                hint=f"drop {flag}",
            )

    def _check_event_options(self) -> None:
        if self.ts_unit is not None and self.ts_unit not in TS_UNITS:
            raise _one_of("--ts-unit", self.ts_unit, list(TS_UNITS))
        if self.ts_unit is not None and self.ts_format is not None:
            raise InputError(
                "--ts-unit and --ts-format both say how to read ts",
                hint="--ts-unit is for epoch numbers, --ts-format for text layouts: give one",
            )
        if self.order_id is not None and self.order_id not in ORDER_ID_MODES:
            raise _one_of("--order-id", self.order_id, ORDER_ID_MODES)
        for rule in self.returns:
            if rule == "negative-quantity":
                continue
            prefix = rule.removeprefix("cancel-prefix=")
            if rule == prefix or not prefix or len(prefix) > 16 or not prefix.isprintable():
                raise _one_of("--returns", rule, RETURN_RULES)
        if len(set(self.returns)) != len(self.returns):
            raise InputError("--returns names a rule twice", hint="give each rule once")
        if self.only_events and self.skip_events:
            raise InputError(
                "--only-events and --skip-events both choose events",
                hint="give one: --only-events keeps the named events, --skip-events drops them",
            )
        for flag, events in (
            ("--only-events", self.only_events),
            ("--skip-events", self.skip_events),
        ):
            for name in events:
                custom = self.custom_events and _SNAKE.match(name)
                if name not in EVENT_NAMES and not custom:
                    raise InputError(
                        f"{flag}: {name[:60]!r} is not a known event",
                        hint=f"name events after --event-map; known: {', '.join(sorted(EVENT_NAMES))}",
                    )
        item_fields = [f.name for f in FIELDS["items"] if f.name not in ("item_id", "attributes")]
        for target, source in self.item_columns.items():
            if target not in item_fields:
                raise InputError(
                    f"--item-columns {target}={source}: {target!r} is not a field of items",
                    hint=f"use one of: {', '.join(item_fields)}",
                )
            if not source:
                raise InputError(
                    f"--item-columns {target}=: names no column", hint=f"e.g. {target}=COLUMN"
                )

    def given(self, *names: str) -> list[str]:
        """The command-line flags of the fields ``names`` that are set, in that order."""
        flags = {"mapping": "--map", "constants": "--set"}
        return [
            flags.get(name, "--" + name.replace("_", "-")) for name in names if getattr(self, name)
        ]

    def to_json(self) -> str:
        return json.dumps(
            {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> IngestOptions:
        data = json.loads(text)
        for key in ("returns", "only_events", "skip_events"):
            if key in data:
                data[key] = tuple(data[key])
        if data.get("columns") is not None:
            data["columns"] = tuple(data["columns"])
        return cls(**data)

    def replace(self, **changes: Any) -> IngestOptions:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Check:
    """A row fails when ``condition`` holds; ``message`` (SQL) then says why, naming the field."""

    condition: str
    message: str
    id_check: bool = False  # length/blank checks of ids: guarded together, see select()


def stage_columns(kind: Kind) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the stage table for ``kind``."""
    return [
        ("_file", "INTEGER"),
        ("_line", "BIGINT"),
        ("_qid", "BIGINT"),
        ("_present", "BIGINT"),
        *((f.name, SQL_TYPES[f.type]) for f in FIELDS[kind]),
        ("_reason", "VARCHAR"),
        ("_raw", "VARCHAR"),
        ("_skip", "BOOLEAN"),
    ]


class RowValidator:
    """Builds the validating ``SELECT`` for one kind and one set of options.

    Parameters
    ----------
    options : IngestOptions
        Kind, column mapping, constants, event names and timestamp layout.
    settings : IngestSettings
        Limits: future tolerance, earliest timestamp, longest id.
    now : datetime
        The batch's receive time (UTC, naive); "in the future" is measured from it.
    """

    def __init__(self, options: IngestOptions, settings: IngestSettings, now: datetime) -> None:
        self.options = options
        self.settings = settings
        self.now = now
        self.kind = options.kind
        self.fields = FIELDS[options.kind]
        # Segment's spec names whose snake_case form is not ours come first, so that the
        # configuration and the batch's own mapping override them.
        spec = {k: v for name, v in SEGMENT_NAMES.items() for k in (name, snake_event(name))}
        self.event_map = {**spec, **settings.event_map, **options.event_map}
        self.ts_unit = options.ts_unit
        self._unit_settled = False
        try:
            datetime.fromisoformat(settings.min_timestamp)
        except ValueError as exc:
            raise InputError(
                f"[ingest] min_timestamp {settings.min_timestamp!r} is not a date",
                hint="e.g. 1990-01-01",
            ) from exc

    # -- the unit of epoch timestamps -------------------------------------------------------

    @property
    def needs_ts_unit(self) -> bool:
        """Whether the batch still has to find the unit of integer timestamps."""
        return (
            self.kind == "events"
            and self.ts_unit is None
            and self.options.ts_format is None
            and not self._unit_settled
        )

    def detect_ts_unit(
        self, label: str, columns: list[tuple[str, str]], chunk: Any, relation: str
    ) -> str | None:
        """The unit of a chunk's epoch timestamps, read from their magnitude (10 digits are
        seconds, 13 milliseconds, 16 microseconds, 19 nanoseconds), or None.

        The first chunk that has timestamps decides for the batch: when most of them are
        numbers, their median number of integer digits gives the unit, which the batch then
        records in its options so that a replay reads them the same way.
        """
        names = [n for n, _ in columns if n not in META_COLUMNS and n != "_qid"]
        if "ts" in self.options.constants:
            self._unit_settled = True
            return None
        source = self.resolve(label, names, strict=False).get("ts")
        if source is None:
            return None  # a JSON Lines chunk without ts: look at the next one
        duck = dict(columns)[source]
        col = q(source)
        text = f"try(decode({col}))" if _category(duck) == "blob" else f"CAST({col} AS VARCHAR)"
        number = r"'[+-]?[0-9]+(\.[0-9]*)?'"
        (given, numeric, digits), *_ = chunk.query(
            relation,
            f"""
            SELECT count(v), count(v) FILTER (WHERE regexp_full_match(v, {number})),
                   median(length(regexp_extract(v, '^[+-]?([0-9]+)', 1)))
                       FILTER (WHERE regexp_full_match(v, {number}))
            FROM (SELECT trim({text}) AS v FROM {relation} LIMIT 10000)
            """,
        ).fetchall()
        if not given:
            return None
        self._unit_settled = True
        if not numeric or 2 * numeric < given:
            return None
        unit = "s" if digits <= 11 else "ms" if digits <= 14 else "us" if digits <= 17 else "ns"
        self.ts_unit = unit
        return unit

    # -- column resolution ------------------------------------------------------------------

    def resolve(self, label: str, columns: list[str], *, strict: bool) -> dict[str, str]:
        """Map each field to the source column that feeds it.

        ``strict`` sources (with a header) must have every required column; JSON Lines rows
        are checked one by one instead.
        """
        fields = set(field_names(self.kind))
        renamed_to = set(self.options.mapping.values())
        mapped: dict[str, str] = {}
        # DuckDB's names are case-insensitive: it would read a second 'email' next to 'Email'
        # as 'email_1', an unvalidated extra holding an address. Every source's names pass
        # here (files, JSON keys chunk by chunk, replayed rows).
        check_columns(label, columns)
        extras: list[str] = []
        for col in columns:
            if col in self.options.mapping:
                target: str | None = self.options.mapping[col]
            elif col in renamed_to:
                target = None  # another column was mapped onto this name; this one stays an extra
            else:
                key = field_key(col)
                target = key if key in fields else None
            if target is None:
                extras.append(col)
                continue
            if target in mapped:
                raise InputError(
                    f"{label}: columns {mapped[target]!r} and {col!r} both give {target}",
                    hint="drop one of them, or --map one to another field",
                )
            if target in self.options.constants:
                raise InputError(
                    f"{label}: column {col!r} and --set {target}=… both give {target}",
                    hint=f"drop --set {target}, or --map the column to another field",
                )
            mapped[target] = col
        if any(f.pii for f in self.fields):
            # Personal data goes to the pii table or nowhere: never as an extra into
            # users.attributes, an analytics table (issue 12).
            for col in extras:
                # A consent column names a channel (consent_marketing_email), not an address.
                pii = None if re.match(consent.ATTRIBUTE_PATTERN, col) else pii_in_name(col)
                if pii is not None:
                    hint = (
                        f"another column is mapped to {col}; drop one of them"
                        if col in renamed_to
                        else f"--map {col}={pii} if it is the {pii}, else drop or rename it"
                    )
                    raise InputError(
                        f"{label}: column {col!r} looks like personal data ({pii}) and would be "
                        "kept in users.attributes",
                        hint=hint,
                    )
        if strict:
            available = set(mapped) | set(self.options.constants)
            for f in self.fields:
                if f.required and f.name not in available and f.name != "event_id":
                    if _looks_like_data(columns):
                        shown = ",".join(columns[:6]) + ("…" if len(columns) > 6 else "")
                        raise InputError(
                            f"{label}: the first line ({shown[:80]}) looks like data, "
                            "not column names",
                            hint=f"the file has no header: name its {len(columns)} columns "
                            "with --columns NAME,NAME,…",
                        )
                    raise InputError(
                        f"{label}: missing required column {f.name!r}",
                        hint=_suggest(f.name, columns),
                    )
            if self.kind == "events" and not ({"user_id", "anonymous_id"} & available):
                raise InputError(
                    f"{label}: needs a user_id or an anonymous_id column",
                    hint=_suggest("user_id", columns),
                )
        return mapped

    # -- SQL --------------------------------------------------------------------------------

    def select(
        self,
        label: str,
        columns: list[tuple[str, str]],
        relation: str,
        file_index: int,
        *,
        strict: bool,
    ) -> str:
        """The ``SELECT`` producing :func:`stage_columns` from ``relation``.

        ``columns`` are the relation's (name, DuckDB type) pairs, meta columns included.
        """
        names = [n for n, _ in columns]
        types = dict(columns)
        source_cols = [n for n in names if n not in META_COLUMNS and n != "_qid"]
        mapped = self.resolve(label, source_cols, strict=strict)
        index = {c: i for i, c in enumerate(source_cols)}
        cats = {c: _category(types[c]) for c in source_cols}

        # Level 1: source columns under safe aliases; BLOBs decoded (invalid UTF-8 -> NULL).
        l1 = [f"{q(c)} AS c{i}" for c, i in index.items()]
        l1 += [
            f"try(decode({q(c)})) AS d{i}" if cats[c] == "blob" else f"{q(c)} AS d{i}"
            for c, i in index.items()
        ]
        l1 += [
            "_line",
            "_error",
            "_raw_line",
            "_qid" if "_qid" in names else "NULL::BIGINT AS _qid",
            "_object" if "_object" in names else "NULL::VARCHAR AS _object",
        ]

        # Levels 2 and 3: per field, the value as given (v_), then typed (t_). Separate SELECT
        # levels, not lateral aliases: DuckDB expands an alias at every use, so a typed value
        # referenced by ten checks would be computed ten times.
        lv: list[str] = []
        lt: list[str] = []
        checks: list[Check] = []
        ids: list[str] = []  # typed id columns: their length and blank checks share one guard
        present_bits = 0
        for bit, f in enumerate(self.fields):
            undecodable = None
            if f.name in mapped:
                i = index[mapped[f.name]]
                cat, value = cats[mapped[f.name]], f"d{i}"
                if cat == "blob":
                    undecodable = f"c{i} IS NOT NULL AND d{i} IS NULL"
            elif f.name in self.options.constants:
                cat, value = "text", lit(self.options.constants[f.name])
            else:
                lv.append(f"NULL::{SQL_TYPES[f.type]} AS v_{f.name}")
                lt.append(f"NULL::{SQL_TYPES[f.type]} AS t_{f.name}")
                if f.required and f.name != "event_id":
                    # Only sources without a header get here (JSON Lines chunks, replays):
                    # a chunk none of whose rows has the field fails every row.
                    checks.append(Check("TRUE", lit(f.name + ": missing")))
                continue
            present_bits |= 1 << bit
            v, t, field_checks = self._field(f, cat, value, undecodable=undecodable)
            lv.append(f"{v} AS v_{f.name}")
            lt.append(f"{t} AS t_{f.name}")
            checks.extend(field_checks)
            if f.type in ("id", "event"):
                ids.append(f"t_{f.name}")
        for c, i in index.items():
            if cats[c] == "blob":
                checks.append(
                    Check(f"c{i} IS NOT NULL AND d{i} IS NULL", lit(c + ": invalid UTF-8"))
                )
        checks.extend(self._row_rules(set(mapped) | set(self.options.constants)))
        checks.extend(self._consent_rules(mapped, index, cats, has_object="_object" in names))

        # Level 4: the reason. A row is tested against one cheap guard that every failing row
        # trips (ids share a single greatest/least test); only rows that trip it pay for the
        # per-check messages.
        limit = self.settings.max_id_length
        guards = [c.condition for c in checks if not c.id_check]
        if ids:
            guards.append(f"greatest({', '.join(f'strlen({t})' for t in ids)}) > {limit}")
            guards.append(f"least({', '.join(ids)}) < '!'")
        messages = ", ".join(f"CASE WHEN {c.condition} THEN {c.message} END" for c in checks)
        reason = (
            f"CASE WHEN _error IS NOT NULL THEN _error "
            f"WHEN coalesce({' OR '.join(f'({g})' for g in guards)}, FALSE) "
            f"THEN NULLIF(concat_ws('; ', {messages}), '') END"
            if checks
            else "_error"
        )

        # Level 5: outputs with defaults and extras, and the raw row for bad rows only.
        out = self._outputs(
            mapped, index, cats, file_index, present_bits, has_object="_object" in names
        )
        raw_pairs = [f"{q(c)} := {self._raw_text(i, cats[c])}" for c, i in index.items()]
        raw = f"to_json(struct_pack({', '.join(raw_pairs)}))::VARCHAR" if raw_pairs else "'{}'"
        blobs = [(c, i) for c, i in index.items() if cats[c] == "blob"]
        if blobs:
            # The raw row shows bytes that are not UTF-8 escaped (\xFF); it names those values
            # too, so that a replay does not take the escape for the value (it stored
            # '\xFF…' as a user id before, issue 12).
            marks = ", ".join(
                f"CASE WHEN c{i} IS NOT NULL AND d{i} IS NULL THEN {lit(c)} END" for c, i in blobs
            )
            bad = f"list_filter([{marks}], lambda x: x IS NOT NULL)"
            raw = (
                f"CASE WHEN len({bad}) = 0 THEN {raw} ELSE to_json(struct_pack("
                f"{', '.join(raw_pairs)}, {q(UNDECODABLE)} := {bad}))::VARCHAR END"
            )
        typed = (
            f"SELECT *, {', '.join(lt)}\n"
            f"            FROM (SELECT *, {', '.join(lv)}\n"
            f"                  FROM (SELECT {', '.join(l1)} FROM {relation}))"
        )
        typed = self._returns_level(typed)
        skip = self._skip_expr()
        return (
            f"SELECT {', '.join(out)},\n"
            f"  _reason,\n"
            f"  CASE WHEN _reason IS NULL THEN NULL WHEN _raw_line IS NOT NULL "
            f"THEN _raw_line ELSE {raw} END AS _raw,\n"
            f"  _skip\n"
            f"FROM (SELECT *, CASE WHEN NOT _skip THEN {reason} END AS _reason\n"
            f"      FROM (SELECT *, {skip} AS _skip FROM ({typed})))"
        )

    def _returns_level(self, typed: str) -> str:
        """Wrap the typed rows so that order lines the ``returns`` rules name become refunds
        (``order_refunded`` with positive quantity and revenue), before any check runs."""
        conditions = []
        for rule in self.options.returns:
            if rule == "negative-quantity":
                conditions.append("t_quantity < 0")
            else:
                prefix = rule.removeprefix("cancel-prefix=")
                conditions.append(f"starts_with(t_order_id, {lit(prefix)})")
        if not conditions or self.kind != "events":
            return typed
        returned = f"t_event = {lit(_RETURNABLE)} AND ({' OR '.join(conditions)})"
        return (
            "SELECT * REPLACE ("
            "CASE WHEN _ret THEN 'order_refunded' ELSE t_event END AS t_event, "
            "CASE WHEN _ret THEN abs(t_quantity) ELSE t_quantity END AS t_quantity, "
            "CASE WHEN _ret THEN abs(t_revenue) ELSE t_revenue END AS t_revenue) "
            f"FROM (SELECT *, coalesce({returned}, FALSE) AS _ret FROM ({typed}))"
        )

    def _skip_expr(self) -> str:
        """Whether a row is skipped (``only_events``/``skip_events``): counted, not stored, not
        quarantined. A row whose event is missing is not one of ``only_events``."""
        if self.kind != "events":
            return "FALSE"
        if self.options.only_events:
            return f"NOT coalesce({is_in('t_event', sorted(self.options.only_events))}, FALSE)"
        if self.options.skip_events:
            return f"coalesce({is_in('t_event', sorted(self.options.skip_events))}, FALSE)"
        return "FALSE"

    def _raw_text(self, i: int, cat: str) -> str:
        if cat == "blob":
            return f"coalesce(d{i}, CAST(c{i} AS VARCHAR))"
        return f"CAST(c{i} AS VARCHAR)"

    def _field(
        self, f: Field, cat: str, value: str, *, undecodable: str | None = None
    ) -> tuple[str, str, list[Check]]:
        """(given-value expr, typed expr, checks) for field ``f`` fed by ``value`` of ``cat``.

        A conversion check is added only where the conversion can fail (text to number, say,
        but not a Parquet double to a number). ``undecodable`` holds where the value was given
        but is not UTF-8: that row is not also "missing".
        """
        name = f.name
        textual = cat in ("text", "blob")
        v = f"NULLIF({value}, '')" if textual else value
        V, T = f"v_{name}", f"t_{name}"
        quote = lit("'")
        shown = f"{quote} || left(CAST({V} AS VARCHAR), 60) || {quote}"

        def bad(what: str) -> str:
            return f"{lit(name + ': ')} || {shown} || {lit(' ' + what)}"

        def unconverted(what: str) -> Check:
            return Check(f"{V} IS NOT NULL AND {T} IS NULL", bad(what))

        checks: list[Check] = []
        if f.required:
            missing = (
                f"{V} IS NULL" if undecodable is None else f"{V} IS NULL AND NOT ({undecodable})"
            )
            checks.append(Check(missing, lit(name + ": missing")))
        if f.type in ("id", "event", "text"):
            if textual:
                t = V
            elif cat == "float":
                t = (
                    f"CASE WHEN isfinite({V}) AND {V} = trunc({V}) AND abs({V}) < 1e18 "
                    f"THEN CAST(CAST({V} AS HUGEINT) AS VARCHAR) WHEN isfinite({V}) THEN CAST({V} AS VARCHAR) END"
                )
                checks.append(unconverted("is not a valid value"))
            elif cat == "nested":
                t = f"CAST(to_json({V}) AS VARCHAR)"
            else:
                t = f"CAST({V} AS VARCHAR)"
            if f.type in ("id", "event"):
                limit = self.settings.max_id_length
                # strlen (bytes) bounds length (characters) from above; DuckDB evaluates the
                # right side of AND only where the left holds.
                checks.append(
                    Check(
                        f"strlen({T}) > {limit} AND length({T}) > {limit}",
                        lit(f"{name}: longer than {limit} characters"),
                        id_check=True,
                    )
                )
                checks.append(
                    Check(
                        f"{T} < '!' AND trim({T}, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)) = ''",
                        lit(name + ": blank"),
                        id_check=True,
                    )
                )
            if f.type == "event":
                t = self._event_expr(t)
                if self.options.custom_events:
                    # A source that sends any event name (Segment's): names outside the
                    # vocabulary are kept as custom events, under their snake_case form.
                    checks.append(Check(f"{T} = ''", bad("has no letters or digits")))
                else:
                    checks.append(
                        Check(
                            f"NOT {is_in(T, sorted(EVENT_NAMES))}",
                            f"{bad('is not a known event')} || '; map it with --event-map NAME=EVENT or [ingest.event_map]'",
                        )
                    )
            if name == "email":
                checks.append(
                    Check(f"NOT regexp_matches({T}, {lit(_EMAIL)})", bad("is not an email address"))
                )
        elif f.type in ("number", "integer"):
            if cat in ("int", "float"):
                num = f"CAST({V} AS DOUBLE)"
            elif textual:
                num = f"TRY_CAST(trim({V}) AS DOUBLE)"
            else:
                num = f"TRY_CAST(CAST({V} AS VARCHAR) AS DOUBLE)"
            if f.type == "number":
                t = num
                if cat not in ("int", "float"):
                    checks.append(unconverted("is not a number"))
            else:
                t = f"CASE WHEN isfinite({num}) AND {num} = round({num}) AND abs({num}) < 9e15 THEN CAST({num} AS BIGINT) END"
                if cat != "int":
                    checks.append(unconverted("is not a whole number"))
            low = f.minimum if f.minimum is not None else "-1.7976931348623157e308"
            high = (
                (str(self.now.year) if f.maximum == "now" else f.maximum)
                if f.maximum is not None
                else "1.7976931348623157e308"
            )
            # One range test also catches NaN and infinities; the messages tell them apart.
            range_msgs = [
                f"CASE WHEN NOT isfinite({T}) THEN {lit(name + ': must be a finite number')}"
            ]
            if f.minimum is not None:
                range_msgs.append(f"WHEN {T} < {f.minimum} THEN {bad(f'is below {f.minimum:g}')}")
            if f.maximum is not None:
                range_msgs.append(f"WHEN {T} > {high} THEN {bad(f'is above {high}')}")
            checks.append(
                Check(f"NOT ({T} BETWEEN {low} AND {high})", " ".join(range_msgs) + " END")
            )
        elif f.type == "timestamp":
            t = self._timestamp_expr(V, cat)
            if cat not in ("timestamp", "timestamptz", "date"):
                hint = (
                    " (use ISO 8601 or epoch seconds, or pass --ts-format or --ts-unit)"
                    if textual
                    else ""
                )
                checks.append(unconverted("is not a timestamp" + hint))
            future = f"TIMESTAMP {lit(self.now.isoformat(sep=' '))} + INTERVAL {int(self.settings.max_future_hours * 3600)} SECOND"
            earliest = f"TIMESTAMP {lit(self.settings.min_timestamp)}"
            checks.append(
                Check(
                    f"NOT ({T} BETWEEN {earliest} AND {future})",
                    f"{lit(name + ': ')} || {lit(chr(39))} || CAST({T} AS VARCHAR) || {lit(chr(39))} || CASE WHEN {T} > {future} "
                    f"THEN {lit(f' is more than {self.settings.max_future_hours:g} hours in the future')} "
                    f"ELSE {lit(f' is before {self.settings.min_timestamp}')} END",
                )
            )
        elif f.type == "boolean":
            if cat == "bool":
                t = V
            elif cat in ("int", "float"):
                t = f"CASE WHEN {V} = 1 THEN TRUE WHEN {V} = 0 THEN FALSE END"
            else:
                s = f"lower(trim(CAST({V} AS VARCHAR)))"
                t = f"CASE WHEN {s} IN ('true', 't', 'yes', 'y', '1') THEN TRUE WHEN {s} IN ('false', 'f', 'no', 'n', '0') THEN FALSE END"
            if cat != "bool":
                checks.append(unconverted("is not true or false"))
        elif f.type == "json":
            if cat == "nested":
                t = f"to_json({V})"
            else:
                s = f"CAST({V} AS VARCHAR)"
                t = f"CASE WHEN json_valid({s}) AND json_type({s}::JSON) = 'OBJECT' THEN {s}::JSON END"
                checks.append(
                    Check(f"{V} IS NOT NULL AND {T} IS NULL", lit(name + ": must be a JSON object"))
                )
        else:  # pragma: no cover - FieldType is closed
            raise AssertionError(f.type)
        return v, t, checks

    def _event_expr(self, text: str) -> str:
        """Mapped, else known as is, else normalised ("Order Completed" -> order_completed)."""
        norm = f"trim(regexp_replace(lower(trim({text})), '[^a-z0-9]+', '_', 'g'), '_')"
        if self.event_map:
            cases = " ".join(
                f"WHEN {lit(k)} THEN {lit(v)}" for k, v in sorted(self.event_map.items())
            )
            norm = f"coalesce(CASE {norm} {cases} END, {norm})"
            mapped = f"CASE {text} {cases} END"
        else:
            mapped = "NULL"
        return f"coalesce({mapped}, CASE WHEN {is_in(text, sorted(EVENT_NAMES))} THEN {text} ELSE {norm} END)"

    def _timestamp_expr(self, v: str, cat: str) -> str:
        epoch = self._epoch_expr()
        if cat in ("timestamp", "date"):
            return f"CAST({v} AS TIMESTAMP)"
        if cat == "timestamptz":
            return f"CAST({v} AS TIMESTAMP)"  # the session time zone is UTC
        if cat in ("int", "float"):
            return f"CASE WHEN isfinite(CAST({v} AS DOUBLE)) THEN {epoch.format(x=f'CAST({v} AS DOUBLE)')} END"
        s = f"trim(CAST({v} AS VARCHAR))"
        if self.options.ts_format:
            return f"CAST(try_strptime({s}, {lit(self.options.ts_format)}) AS TIMESTAMP)"
        # ISO 8601 first (the common case); only what it cannot read is tried as an epoch
        # number. COALESCE evaluates its second argument only for those rows.
        number = f"TRY_CAST({s} AS DOUBLE)"
        return (
            f"coalesce(CAST(TRY_CAST({s} AS TIMESTAMPTZ) AS TIMESTAMP), {epoch.format(x=number)})"
        )

    def _epoch_expr(self) -> str:
        """An epoch number ``{x}`` (a DOUBLE) as a timestamp: in ``ts_unit`` when known, else
        seconds below 1e11 (later than year 5138 is not seconds)."""
        if self.ts_unit is None:
            return "CASE WHEN abs({x}) < 1e11 THEN CAST(to_timestamp({x}) AS TIMESTAMP) END"
        micros = f"({{x}} * {TS_UNITS[self.ts_unit]!r})"
        # Microseconds past ±2.5e17 are beyond year 9999: not a time in any unit.
        return f"CASE WHEN abs({micros}) < 2.5e17 THEN make_timestamp(CAST(round({micros}) AS BIGINT)) END"

    def _row_rules(self, given: set[str]) -> list[Check]:
        """Rules across fields. ``given`` are the fields the source provides."""
        if self.kind != "events":
            return []
        rules = [
            Check(
                "t_user_id IS NULL AND t_anonymous_id IS NULL",
                "'needs a user_id or an anonymous_id'",
            )
        ]
        needs: dict[str, list[str]] = {}
        for event, fields in EVENT_REQUIRES.items():
            for name in fields:
                needs.setdefault(name, []).append(event)
        for name, events in sorted(needs.items()):
            message = f"t_event || {lit(' needs ' + name)}"
            if name == "order_id":
                if self.options.order_id is not None:
                    continue  # derived in the outputs
                message += (
                    f" || {lit(' (for a log without order ids: --order-id row or user-time)')}"
                )
            rules.append(Check(f"t_{name} IS NULL AND {is_in('t_event', sorted(events))}", message))
        return rules

    def _consent_rules(
        self,
        mapped: dict[str, str],
        index: dict[str, int],
        cats: dict[str, str],
        *,
        has_object: bool,
    ) -> list[Check]:
        """A consent event with an unknown purpose, status or channel, and a users-file consent
        column with an unknown status, are quarantined (:mod:`jingzhun.ingest.consent`). The
        values are read as the outputs will hold them: an extra column, else the JSON column's
        key."""
        extras_col = EXTRAS_COLUMN[self.kind]
        used = set(mapped.values())
        extras = {c: i for c, i in index.items() if c not in used}

        def extra(key: str) -> str | None:
            if key not in extras:
                return None
            if has_object:
                return f"json_extract_string(_object, {json_path(key)})"
            i = extras[key]
            return f"CAST({self._extra_value(i, cats[key])} AS VARCHAR)"

        def prop(key: str) -> str:
            given = f"json_extract_string(t_{extras_col}, {lit('$.' + key)})"
            e = extra(key)
            return f"coalesce({e}, {given})" if e else given

        if self.kind == "events":
            return [Check(c, m) for c, m in consent.event_checks(prop)]
        if self.kind != "users":
            return []
        pattern = re.compile(consent.ATTRIBUTE_PATTERN)
        columns = {c: v for c in extras if pattern.match(c) and (v := extra(c)) is not None}
        return [Check(c, m) for c, m in consent.users_checks(columns, f"t_{extras_col}")]

    def _outputs(
        self,
        mapped: dict[str, str],
        index: dict[str, int],
        cats: dict[str, str],
        file_index: int,
        present: int,
        *,
        has_object: bool = False,
    ) -> list[str]:
        out = [f"{file_index}::INTEGER AS _file", "_line", "_qid", f"{present}::BIGINT AS _present"]
        extras_col = EXTRAS_COLUMN[self.kind]
        used = set(mapped.values())
        extras = [(c, i) for c, i in index.items() if c not in used]
        for f in self.fields:
            expr = f"t_{f.name}"
            if f.name == extras_col and extras:
                # From JSON Lines, extras keep their JSON types (taken from the whole object).
                values = {
                    c: f"json_extract(_object, {json_path(c)})"
                    if has_object
                    else self._extra_value(i, cats[c])
                    for c, i in extras
                }
                pairs = ", ".join(f"{lit(c)}, {v}" for c, v in values.items())
                # json_merge_patch drops null members; rows whose extras are all null (most
                # rows, typically) skip the JSON work entirely.
                merged = (
                    f"json_merge_patch(coalesce(t_{f.name}, '{{}}'::JSON), json_object({pairs}))"
                )
                all_null = " AND ".join(f"d{i} IS NULL" for _, i in extras)
                expr = f"CASE WHEN {all_null} THEN t_{f.name} ELSE NULLIF(CAST({merged} AS VARCHAR), '{{}}')::JSON END"
            elif self.kind == "events" and f.name == "quantity":
                expr = f"CASE WHEN t_quantity IS NULL AND {is_in('t_event', _ITEM_LINE_EVENTS)} THEN 1.0 ELSE t_quantity END"
            elif self.kind == "events" and f.name == "revenue":
                qty = "coalesce(t_quantity, 1.0)"
                expr = f"coalesce(t_revenue, CASE WHEN {is_in('t_event', _REVENUE_EVENTS)} THEN {qty} * t_price END)"
            elif self.kind == "events" and f.name == "order_id" and self.options.order_id:
                # Purchases of a log without order ids (Taobao's): each row its own order, or
                # one order per visitor and timestamp.
                if self.options.order_id == "row":
                    parts = [f"coalesce(CAST(t_{n} AS VARCHAR), '')" for n in EVENT_ID_CONTENT]
                else:
                    parts = [
                        "coalesce(t_user_id, '')",
                        "coalesce(t_anonymous_id, '')",
                        "CAST(t_ts AS VARCHAR)",
                    ]
                derived = f"'o_' || md5(concat_ws(chr(31), {', '.join(parts)}))"
                expr = f"coalesce(t_order_id, CASE WHEN {is_in('t_event', _ORDER_EVENTS)} THEN {derived} END)"
            elif self.kind == "events" and f.name == "event_id":
                content = ", ".join(
                    f"coalesce(CAST(t_{n} AS VARCHAR), '')" for n in EVENT_ID_CONTENT
                )
                expr = f"coalesce(t_event_id, 'jz_' || md5(concat_ws(chr(31), {content})))"
            out.append(f"{expr} AS {q(f.name)}")
        return out

    @staticmethod
    def _extra_value(i: int, cat: str) -> str:
        if cat == "float":
            return f"CASE WHEN isfinite(d{i}) THEN d{i} END"  # NaN is not JSON
        if cat in ("timestamp", "timestamptz", "date"):
            return f"CAST(d{i} AS VARCHAR)"
        return f"d{i}"


def field_key(column: str) -> str:
    """A header as the field name it means: case, width (NFKC), surrounding spaces and inner
    runs of spaces, hyphens and underscores do not matter (``" E-Mail "`` is not ``email``,
    but ``" Email "``, ``"User ID"``, ``"user - id"`` and ``"ＵＳＥＲ＿ＩＤ"`` are ``email`` and
    ``user_id``)."""
    text = unicodedata.normalize("NFKC", column).strip().casefold()
    return re.sub(r"[\s_-]+", "_", text)


def snake_event(name: str) -> str:
    """An event name as the validator normalises it ("Order Completed" -> order_completed)."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


_DATA_LIKE = re.compile(r"^[+-]?(\d+([.,]\d*)?|\.\d+)([eE][+-]?\d+)?$|^\d{4}-\d{2}-\d{2}")


def _looks_like_data(names: list[str]) -> bool:
    """Whether a header reads like a row: half or more of its names are numbers or dates
    (Taobao's ``1,2268318,2520377,pv,1511544070``), which column names rarely are."""
    data = sum(1 for n in names if _DATA_LIKE.match(n.strip()))
    return bool(names) and 2 * data >= len(names)


def _suggest(name: str, columns: list[str]) -> str:
    import difflib

    norm = {re.sub(r"[^a-z0-9]", "", c.lower()): c for c in columns}
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    close = [norm[k] for k in difflib.get_close_matches(key, list(norm), n=1, cutoff=0.6)]
    if close:
        return f"map one with --map {close[0]}={name}"
    shown = ", ".join(columns[:12]) + (" …" if len(columns) > 12 else "")
    return f"map one with --map COLUMN={name} (columns: {shown})"


def describe(con: Any, relation: Sql) -> list[tuple[str, str]]:
    """(name, DuckDB type) of each column of ``relation``."""
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
