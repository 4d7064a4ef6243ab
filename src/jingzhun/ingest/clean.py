"""The cleaning report: outlier orders, bot-like bursts, duplicates, missing attributes.

Nothing is deleted unless asked. Suspicious events are *flagged* in ``event_flags`` (one row
per event and flag, replaced on every run), so later stages can choose to skip them. With
``remove``, flagged events of the named kinds move to the quarantine (reason ``removed by
clean: …``) in one transaction, from where a replay can bring them back.

* **Outlier orders**: order values (sum of line revenue) are log-normal, so they are judged on
  the log scale: modified z-score ``0.6745 (x - median) / MAD`` beyond the threshold
  (Iglewicz & Hoaglin), or outside ``[Q1 - k IQR, Q3 + k IQR]``.
* **Bursts**: more events than the threshold in one clock minute from one visitor (user or
  anonymous id) — scrapers and bots, not shoppers.
* **Duplicates**: the share of rows each ingest skipped as duplicate event ids, and rows that
  are stored twice under different ids (same visitor, event, item, order and time).
* **Missing attributes**: the share of nulls in every column of events, users and items.

One definition on both engines (issue 19): each is an Ibis expression — :func:`order_values`,
:func:`outlier_statistics`, :func:`outlier_orders`, :func:`burst_minutes`,
:func:`duplicate_groups`, :func:`missing_counts`, :func:`flag_rows` — that a store's DuckDB and
a lake's Spark compile alike: :func:`clean` inserts the flags into the store's ``event_flags``
in one transaction, :func:`clean_on_lake` writes them as the lake's ``event_flags`` in one
rename. The statistics (median, MAD, quartiles) are computed where the orders are and joined
to them, never formatted into SQL. A number in a flag's text is rounded and written as DuckDB
does it; on Spark one form gives the same digits (:func:`_round`, :func:`_rounded_text`).
Only ``remove`` stays on the store: the quarantine, and the replay that brings removed events
back, are the store's.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from jingzhun.checks import bounded_int, finite
from jingzhun.config import MAX_BURST, MAX_OUTLIER_THRESHOLD, CleanSettings
from jingzhun.contracts.time import utcnow
from jingzhun.errors import InputError
from jingzhun.ingest.pipeline import new_batch_id, record_batch
from jingzhun.ingest.validate import IngestOptions
from jingzhun.store import Store, engines
from jingzhun.store.sql import Sql, ident

if TYPE_CHECKING:
    from jingzhun.store.lake import Lake

FLAGS = ("outlier_order", "bot_burst", "content_duplicate")
Flag = Literal["outlier_order", "bot_burst", "content_duplicate"]
#: The ``event_flags`` table's columns, in order (the store's table and a lake's).
FLAG_COLUMNS = ("event_id", "flag", "detail", "flagged_at")
#: Bookkeeping columns, left out of the missing-value counts.
BOOKKEEPING = ("batch_id", "event_key", "received_at", "updated_at")
#: The tables whose missing values are counted.
MISSING_TABLES = ("events", "users", "items")
#: The modified z-score's constant (Iglewicz & Hoaglin): ``0.6745 (x - median) / MAD``.
MAD_CONSTANT = 0.6745


@dataclass
class CleaningReport:
    """What :func:`clean` found, and did.

    Mind the units: outliers are counted in **orders** (an order's value is the sum of its
    lines), while ``flagged`` and ``removed`` count **events**: an outlier order flags each of
    its order lines (``order_completed`` events), so 3 outlier orders may flag 6 events.

    Attributes
    ----------
    outliers : dict
        ``method``, ``threshold``, ``orders`` judged, ``outliers`` (orders; ``high``, ``low``),
        the fences in money and up to five ``examples``.
    bursts : dict
        Visitors (``actors``), clock ``minutes`` and ``events`` over the burst threshold.
    duplicates : dict
        Rows each ingest skipped as duplicates, and events stored twice under different ids.
    missing : list of dict
        Per table and column: rows, missing values and their rate.
    flagged : dict
        Events flagged, per flag (empty with ``flag=False``).
    removed : dict
        Events moved to the quarantine, per flag and in ``total``.
    """

    outliers: dict[str, object] = field(default_factory=dict)
    bursts: dict[str, object] = field(default_factory=dict)
    duplicates: dict[str, object] = field(default_factory=dict)
    missing: list[dict[str, object]] = field(default_factory=list)
    flagged: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# -- the definitions: Ibis expressions both engines compile -----------------------------------


def _spark(t: ir.Expr) -> bool:
    return ibis.get_backend(t).name == "pyspark"


def _actor(t: ir.Table) -> ir.StringValue:
    """The visitor of an event: its user id, else ``anon:`` and its anonymous id."""
    return ibis.coalesce(t.user_id, "anon:" + t.anonymous_id)


def _content(t: ir.Table) -> dict[str, ir.Value]:
    """What makes two events the same but for their ids: visitor, event, item, order, time."""
    return {
        "c_event": t.event,
        "c_user": t.user_id.fill_null(""),
        "c_anonymous": t.anonymous_id.fill_null(""),
        "c_item": t.item_id.fill_null(""),
        "c_order": t.order_id.fill_null(""),
        "c_ts": t.ts,
    }


def order_values(events: ir.Table) -> ir.Table:
    """Every order's value, the sum of its lines' revenue, and ``x`` = ln(1 + value), the
    scale it is judged on: ``order_id``, ``value``, ``x``."""
    lines = events.filter(
        (events.event == "order_completed") & events.order_id.notnull() & events.revenue.notnull()
    )
    orders = lines.group_by("order_id").aggregate(value=lines.revenue.sum())
    return orders.mutate(x=(orders.value + 1).ln())


def outlier_statistics(orders: ir.Table, method: str) -> ir.Table:
    """One row: ``n`` orders and the statistics of their ``x`` that ``method`` judges by —
    ``med`` and ``mad`` (the median absolute deviation from it) for mad, the quartiles ``q1``
    and ``q3`` for iqr. Computed where the orders are and joined to them: the statistics
    never travel as decimal text (nor a Python ``inf`` or ``nan`` as SQL)."""
    if method == "mad":
        center = orders.aggregate(n=orders.count(), med=orders.x.median())
        both = orders.cross_join(center)
        return center.cross_join(both.aggregate(mad=(both.x - both.med).abs().median()))
    return orders.aggregate(
        n=orders.count(), q1=orders.x.quantile(0.25), q3=orders.x.quantile(0.75)
    )


def outlier_orders(orders: ir.Table, stats: ir.Table, method: str, k: float) -> ir.Table:
    """The orders whose score is beyond ``k`` either way: ``order_id``, ``value``, ``score``
    — the modified z-score for mad; for iqr the distance beyond the nearer quartile in IQRs
    (0 inside the box). A spread of 0 scores every order 0 (none is an outlier)."""
    j = orders.cross_join(stats)
    if method == "mad":
        scale = j.mad / MAD_CONSTANT
        # nullif: the division is never by 0 (Spark's ANSI mode fails the query on one)
        score = ibis.cases((scale != 0, (j.x - j.med) / scale.nullif(0)), else_=0.0)
    else:
        iqr = j.q3 - j.q1
        per = iqr.nullif(0)
        score = ibis.cases(
            (iqr == 0, 0.0),
            (j.x > j.q3, (j.x - j.q3) / per),
            (j.x < j.q1, -(j.q1 - j.x) / per),
            else_=0.0,
        )
    scored = j.select("order_id", "value", score=score)
    return scored.filter(scored.score.abs() > k)


def burst_minutes(events: ir.Table, limit: int) -> ir.Table:
    """Each visitor's clock minutes with more than ``limit`` events: ``actor``, ``minute``,
    ``n`` (events that minute)."""
    per = events.group_by(actor=_actor(events), minute=events.ts.truncate("m")).aggregate(
        n=events.count()
    )
    return per.filter(per.n > limit)


def duplicate_groups(events: ir.Table) -> ir.Table:
    """Events stored more than once under different ids: one row per content (the
    ``c_…`` columns of :func:`_content`) with ``first_id``, its least event id, and ``n``."""
    groups = events.group_by(**_content(events)).aggregate(
        first_id=events.event_id.min(), n=events.count()
    )
    return groups.filter(groups.n > 1)


def missing_counts(table: ir.Table, columns: list[str]) -> ir.Table:
    """One row: the table's ``rows`` and, as ``c0``, ``c1`` …, each column's values present."""
    return table.aggregate(
        rows=table.count(), **{f"c{i}": table[c].count() for i, c in enumerate(columns)}
    )


def flag_rows(
    events: ir.Table, outliers: ir.Table, bursts: ir.Table, duplicates: ir.Table, now: datetime
) -> dict[str, ir.Table]:
    """Each flag's rows of ``event_flags`` (:data:`FLAG_COLUMNS`): the lines of outlier
    orders, the events of burst minutes, and every copy of a content but its first id."""
    lines = events.filter(events.event == "order_completed").select("event_id", "order_id")
    o = lines.join(outliers, "order_id")
    outlier = o.select(
        "event_id",
        detail="order "
        + o.order_id
        + " worth "
        + _rounded_text(o.value, 2)
        + " (score "
        + _rounded_text(o.score, 1)
        + ")",
    )
    seen = events.select("event_id", actor=_actor(events), minute=events.ts.truncate("m"))
    b = seen.join(bursts, ["actor", "minute"])
    burst = b.select(
        "event_id",
        detail=b.n.cast("string") + " events in the minute " + b.minute.strftime("%Y-%m-%d %H:%M"),
    )
    content = _content(events)
    d = events.select("event_id", **content).join(duplicates, list(content))
    copies = d.filter(d.event_id != d.first_id)
    copy = copies.select(
        "event_id", detail="same visitor, event, item, order and time as " + copies.first_id
    )
    return {
        name: t.select(
            "event_id",
            flag=ibis.literal(name, type="string"),
            detail=t.detail,
            flagged_at=ibis.literal(now, type="timestamp"),
        )
        for name, t in (
            ("outlier_order", outlier),
            ("bot_burst", burst),
            ("content_duplicate", copy),
        )
    }


#: Below this a number rounded to 2 decimals keeps every digit in a double (15 significant).
_EXACT = 1e13


def _round(x: ir.FloatingValue, digits: int) -> ir.FloatingValue:
    """``round(x, digits)`` as DuckDB computes it: the exact binary value rounded, halves away
    from zero (2.675 is 2.67499999…: 2.67).

    Spark's ``round`` rounds the shortest decimal text instead (2.675: 2.68). On Spark the
    same number comes from ``x·10^digits`` computed exactly as the sum of two doubles
    (Dekker's product: the high half of ``x`` times a small integer is exact), which says on
    which side of a half the exact product lies. Beyond :data:`_EXACT` Spark's own round."""
    if not _spark(x):
        return x.round(digits)
    m = 10**digits
    a = x.abs()
    g = ibis.ifelse(a < _EXACT, a, 0.0)  # NaN, inf and the large: not used below
    p = g * m  # the product, rounded
    split = g * 134217729.0  # 2^27 + 1: Veltkamp's split of g into two 26-bit halves
    hi = split - (split - g)
    err = (hi * m - p) + (g - hi) * m  # g·m - p, exactly
    low, high = p.floor(), p.ceil()
    n = ibis.cases(
        (p - low == 0.5, ibis.ifelse(err < 0, low, high)),
        (p - low > 0.5, high),
        else_=low,
    )
    r = n.cast("float64") / m
    return ibis.cases((x == 0, x), (a < _EXACT, ibis.ifelse(x < 0, -r, r)), else_=x.round(digits))


def _rounded_text(x: ir.FloatingValue, digits: int) -> ir.StringValue:
    """:func:`_round` as text, as DuckDB writes a DOUBLE: the shortest decimal that reads
    back as the number, at least one decimal ('100000.0', '9095.2').

    Spark writes Java's form ('1.0E7'): there the rounded number goes through a DECIMAL of
    ``digits`` places, less its last 0 ('9095.20' → '9095.2'), which is DuckDB's text below
    :data:`_EXACT` (0 keeps its sign: Java's '-0.0' is DuckDB's)."""
    r = _round(x, digits)
    if not _spark(x):
        return r.cast("string")
    assert digits in (1, 2)
    fixed = r.cast(dt.Decimal(38, digits)).cast("string")
    if digits == 2:
        fixed = ibis.ifelse(fixed.endswith("0"), fixed.substr(0, fixed.length() - 1), fixed)
    return ibis.cases((r == 0, r.cast("string")), (r.abs() < _EXACT, fixed), else_=r.cast("string"))


# -- where they run --------------------------------------------------------------------------


@dataclass
class _Run:
    """Where one cleaning run computes: the Ibis backend, and ``materialise``, which computes
    a piece once (a temporary table on DuckDB, Parquet staged in the lake on Spark)."""

    backend: Any
    materialise: Callable[[str, ir.Table], ir.Table]

    def table(self, name: str) -> ir.Table:
        return self.backend.table(name)

    def rows(self, expr: ir.Table) -> list[dict[str, Any]]:
        return engines.arrow(self.backend, expr).to_pylist()


@contextlib.contextmanager
def _on_store(store: Store) -> Iterator[_Run]:
    backend = store.ibis()
    made: list[str] = []

    def materialise(name: str, expr: ir.Table) -> ir.Table:
        table = f"_jz_{name}"
        query: Sql = ibis.to_sql(expr, dialect="duckdb")
        store.run(f"CREATE OR REPLACE TEMP TABLE {ident(table)} AS {query}")
        made.append(table)
        return backend.table(table)

    try:
        yield _Run(backend, materialise)
    finally:
        for table in made:
            # after an error the transaction may be aborted (its rollback drops them)
            with contextlib.suppress(duckdb.Error):
                store.run(f"DROP TABLE IF EXISTS temp.{ident(table)}")


@contextlib.contextmanager
def _on_lake(lake: Lake) -> Iterator[_Run]:
    staging = lake.staging("clean")
    views: list[str] = []

    def materialise(name: str, expr: ir.Table) -> ir.Table:
        folder = staging / name
        lake.backend.to_parquet(expr, folder)
        view = f"_jz_clean_{name}"
        views.append(view)
        return lake.backend.read_parquet(folder, table_name=view)

    try:
        yield _Run(lake.backend, materialise)
    finally:
        for view in views:
            lake.session.catalog.dropTempView(view)
        shutil.rmtree(staging, ignore_errors=True)


# -- the report ------------------------------------------------------------------------------


def _value(log_value: float) -> float:
    """An order value from its ln(1 + value)."""
    return round(math.expm1(float(log_value)), 2)


def threshold(settings: CleanSettings) -> float:
    """The outlier threshold: the setting, else 3.5 (mad) or 3 (iqr)."""
    if settings.outlier_threshold is not None:
        return settings.outlier_threshold
    return 3.5 if settings.outlier_method == "mad" else 3.0


def _outliers(run: _Run, events: ir.Table, settings: CleanSettings) -> tuple[dict, ir.Table]:
    method, k = settings.outlier_method, threshold(settings)
    orders = run.materialise("orders", order_values(events))
    stats = outlier_statistics(orders, method)
    found = run.materialise("outliers", outlier_orders(orders, stats, method, k))
    row = run.rows(stats)[0]
    n = int(row["n"])
    if n == 0:
        return {
            "method": method,
            "threshold": k,
            "orders": 0,
            "outliers": 0,
            "high": 0,
            "low": 0,
            "examples": [],
        }, found
    # The fences in money, from the statistics as the score used them.
    if method == "mad":
        med, mad = row["med"], row["mad"]
        scale = mad / MAD_CONSTANT if mad else None
        stats_out = {"median_value": _value(med), "mad_log": round(float(mad), 4)}
        fences = (_value(med - k * scale), _value(med + k * scale)) if scale else (None, None)
    else:
        q1, q3 = row["q1"], row["q3"]
        iqr = q3 - q1
        stats_out = {"q1_value": _value(q1), "q3_value": _value(q3)}
        fences = (_value(q1 - k * iqr), _value(q3 + k * iqr)) if iqr else (None, None)
    counts = run.rows(
        found.aggregate(outliers=found.count(), high=found.count(where=found.score > 0))
    )[0]
    top = found.order_by([found.score.abs().desc(), found.order_id]).limit(5)
    examples = run.rows(
        top.select("order_id", value=_round(top.value, 2), score=_round(top.score, 2))
    )
    # (a conditional count of no rows is NULL on Spark)
    flagged, high = int(counts["outliers"]), int(counts["high"] or 0)
    return {
        "method": method,
        "threshold": k,
        "orders": n,
        "outliers": flagged,
        "high": high,
        "low": flagged - high,
        **stats_out,
        # Order values beyond which an order is an outlier (in money, not on the log scale).
        "fences": {"low": fences[0], "high": fences[1]},
        "examples": [
            {"order_id": e["order_id"], "value": float(e["value"]), "score": float(e["score"])}
            for e in examples
        ],
    }, found


def _bursts(run: _Run, events: ir.Table, settings: CleanSettings) -> tuple[dict, ir.Table]:
    limit = settings.burst_events_per_minute
    bursts = run.materialise("bursts", burst_minutes(events, limit))
    total = run.rows(
        bursts.aggregate(
            actors=bursts.actor.nunique(),
            minutes=bursts.count(),
            events=bursts.n.sum().fill_null(0),
        )
    )[0]
    per = bursts.group_by("actor").aggregate(
        minutes=bursts.count(), events=bursts.n.sum(), peak=bursts.n.max()
    )
    top = run.rows(
        per.order_by([per.events.desc(), ibis.asc(per.actor, nulls_first=False)]).limit(5)
    )
    return {
        "threshold_per_minute": limit,
        "actors": int(total["actors"]),
        "minutes": int(total["minutes"]),
        "events": int(total["events"]),
        "top": [
            {
                "actor": t["actor"],
                "minutes": int(t["minutes"]),
                "events": int(t["events"]),
                "peak_per_minute": int(t["peak"]),
            }
            for t in top
        ],
    }, bursts


def _duplicates(run: _Run, events: ir.Table) -> tuple[dict, ir.Table]:
    batches = run.table("ingest_batches")
    first = batches.filter(batches.replay_of.isnull())
    per_kind = run.rows(
        first.group_by("kind")
        .aggregate(rows_read=first.rows_read.sum(), duplicates=first.duplicates.sum())
        .order_by("kind")
    )
    groups = run.materialise("duplicates", duplicate_groups(events))
    # Rows stored beyond the first of their content: all rows less the distinct contents.
    counts = run.rows(
        events.aggregate(total=events.count()).cross_join(
            groups.aggregate(extra=(groups.n.sum() - groups.count()).fill_null(0))
        )
    )[0]
    total, extra = int(counts["total"]), int(counts["extra"])
    ingest = {}
    for kind in per_kind:
        r, d = int(kind["rows_read"]), int(kind["duplicates"])
        ingest[kind["kind"]] = {
            "rows_read": r,
            "duplicates": d,
            "rate": round(d / r, 6) if r else 0.0,
        }
    return {
        "ingest": ingest,
        "content_duplicates": extra,
        "content_duplicate_rate": round(extra / total, 6) if total else 0.0,
    }, groups


def _missing(run: _Run) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for name in MISSING_TABLES:
        table = run.table(name)
        cols = [c for c in table.columns if c not in BOOKKEEPING]
        counts = run.rows(missing_counts(table, cols))[0]
        n = int(counts["rows"])
        for i, c in enumerate(cols):
            gone = n - int(counts[f"c{i}"])
            out.append(
                {
                    "table": name,
                    "column": c,
                    "rows": n,
                    "missing": gone,
                    "rate": round(gone / n, 6) if n else 0.0,
                }
            )
    return out


def _report(
    run: _Run, settings: CleanSettings
) -> tuple[CleaningReport, Callable[[datetime], dict[str, ir.Table]]]:
    """The report, and a function of the time that gives each flag's rows."""
    events = run.table("events")
    report = CleaningReport()
    report.outliers, outliers = _outliers(run, events, settings)
    report.bursts, bursts = _bursts(run, events, settings)
    report.duplicates, groups = _duplicates(run, events)
    report.missing = _missing(run)
    return report, lambda now: flag_rows(events, outliers, bursts, groups, now)


def check_settings(settings: CleanSettings) -> None:
    """Check the settings again: options given for one run (``model_copy(update=…)``) skip
    the validation ``jingzhun.toml`` gets. Errors name the CLI options."""
    if settings.outlier_method not in ("mad", "iqr"):
        raise InputError(
            f"--method {str(settings.outlier_method)[:40]!r} is unknown", hint="use mad or iqr"
        )
    if settings.outlier_threshold is not None:
        finite(
            settings.outlier_threshold, "--threshold", lo=0, lo_open=True, hi=MAX_OUTLIER_THRESHOLD
        )
    bounded_int(settings.burst_events_per_minute, "--burst", lo=1, hi=MAX_BURST)


def run_settings(base: CleanSettings, **overrides: Any) -> CleanSettings:
    """``base`` (``[clean]``) with the options given for one run (those not None)."""
    return base.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def check_clean(
    settings: CleanSettings, remove: tuple[str, ...] = (), *, engine: str = "duckdb"
) -> None:
    """Every check of a run's options, before anything runs: the flags ``remove`` names, the
    settings, and (on Spark) that ``remove`` is not asked for."""
    unknown = [r for r in remove if r not in FLAGS]
    if unknown:
        raise InputError(
            f"--remove {unknown[0]!r} is not a flag", hint=f"use one of: {', '.join(FLAGS)}"
        )
    check_settings(settings)
    if remove and engine != "duckdb":
        raise InputError(
            f"--remove does not run on --engine {engine}: the quarantine it moves events to, "
            "and the replay that brings them back, are the DuckDB store's",
            hint="flag on the lake (clean without --remove), or run clean --remove on the "
            "store and make the lake again with lake init (docs/scaling.md)",
        )


def clean(
    store: Store, settings: CleanSettings, *, flag: bool = True, remove: tuple[str, ...] = ()
) -> CleaningReport:
    """Build the cleaning report; flag suspicious events; optionally move them to quarantine."""
    check_clean(settings, remove)
    with _on_store(store) as run:
        report, flags = _report(run, settings)
        if flag or remove:
            report.flagged = _flag(store, flags(utcnow()))
        if remove:
            report.removed = _remove(store, remove)
    return report


def clean_on_lake(lake: Lake, settings: CleanSettings, *, flag: bool = True) -> CleaningReport:
    """:func:`clean` on a lake (``--engine spark``): the same expressions over the lake's
    tables; the flags written as the lake's ``event_flags`` (replaced in one rename, flags of
    other kinds kept). ``--remove`` is refused (:func:`check_clean`)."""
    check_settings(settings)
    with _on_lake(lake) as run:
        report, flags = _report(run, settings)
        if flag:
            report.flagged = _flag_on_lake(lake, flags(utcnow()))
    return report


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(FLAGS, 0)
    counts.update({r["flag"]: int(r["n"]) for r in rows})
    return counts


def _flag(store: Store, rows: dict[str, ir.Table]) -> dict[str, int]:
    with store.transaction() as con:
        con.execute("DELETE FROM event_flags WHERE list_contains(?, flag)", [list(FLAGS)])
        for expr in rows.values():
            query: Sql = ibis.to_sql(expr, dialect="duckdb")
            con.execute(f"INSERT INTO event_flags SELECT * FROM ({query})")
        rows_by_flag = con.execute(
            "SELECT flag, count(*) AS n FROM event_flags GROUP BY flag"
        ).fetchall()
    return _counts([{"flag": f, "n": n} for f, n in rows_by_flag])


def _flag_on_lake(lake: Lake, rows: dict[str, ir.Table]) -> dict[str, int]:
    """The lake's ``event_flags`` replaced by ``rows`` and its flags of other kinds, with the
    store's columns (from its migrations)."""
    from jingzhun.store.lake import store_tables

    empty = store_tables("event_flags")["event_flags"]
    schema = ibis.Schema.from_pyarrow(empty.schema)
    parts = [t.cast(schema) for t in rows.values()]
    if "event_flags" in lake.tables():
        kept = lake.table("event_flags")
        kept = kept.filter(~kept.flag.isin(list(FLAGS)))
        parts.append(kept.select(*FLAG_COLUMNS).cast(schema))
    lake.write("event_flags", parts[0].union(*parts[1:], distinct=False))
    written = lake.table("event_flags")
    return _counts(
        engines.arrow(
            lake.backend, written.group_by("flag").aggregate(n=written.count())
        ).to_pylist()
    )


def _remove(store: Store, kinds: tuple[str, ...]) -> dict[str, int]:
    """Move events flagged with ``kinds`` to the quarantine, atomically."""
    now = utcnow()
    batch_id = new_batch_id(now)
    with store.transaction() as con:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _jz_remove AS SELECT event_id, min(flag) AS flag, min(detail) AS detail FROM event_flags WHERE list_contains(?, flag) GROUP BY event_id",
            [list(kinds)],
        )
        n = con.execute("SELECT count(*) FROM _jz_remove").fetchone()[0]
        record_batch(
            con,
            batch_id=batch_id,
            kind="events",
            sources=["clean"],
            options=IngestOptions("events").to_json(),
            started_at=now,
        )
        con.execute(
            """
            INSERT INTO quarantine (quarantine_id, batch_id, kind, source, line_no, raw, reason, received_at)
            SELECT (SELECT coalesce(max(quarantine_id), 0) FROM quarantine) + row_number() OVER (ORDER BY e.ts, e.event_id),
                   ?, 'events', 'clean', NULL,
                   to_json(struct_pack(event_id := e.event_id, event := e.event, user_id := e.user_id,
                       anonymous_id := e.anonymous_id, order_id := e.order_id, item_id := e.item_id,
                       quantity := e.quantity::VARCHAR, price := e.price::VARCHAR, revenue := e.revenue::VARCHAR,
                       currency := e.currency, channel := e.channel, campaign_id := e.campaign_id,
                       ts := strftime(e.ts, '%Y-%m-%dT%H:%M:%S.%fZ'), properties := e.properties::VARCHAR))::VARCHAR,
                   'removed by clean: ' || r.flag || ' (' || r.detail || ')', ?
            FROM events e JOIN _jz_remove r USING (event_id)
            """,
            [batch_id, now],
        )
        # A re-ingest of the events' file keeps them out; a replay of these rows brings them back.
        con.execute(
            """
            INSERT INTO removed_events
            SELECT json_extract_string(raw, '$.event_id'), quarantine_id, received_at
            FROM quarantine WHERE batch_id = ?
            """,
            [batch_id],
        )
        con.execute("DELETE FROM events WHERE event_id IN (SELECT event_id FROM _jz_remove)")
        con.execute("DELETE FROM event_flags WHERE event_id IN (SELECT event_id FROM _jz_remove)")
        by_flag = con.execute("SELECT flag, count(*) FROM _jz_remove GROUP BY flag").fetchall()
        con.execute("DROP TABLE temp._jz_remove")
    out = {f: int(c) for f, c in by_flag}
    out["total"] = int(n)
    return out
