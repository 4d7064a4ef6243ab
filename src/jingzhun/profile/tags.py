"""Tags: rule tags, RFM scores and segments, quantile bins. Table ``tags``.

* **Rule tags** (``[[tags.rules]]``): ``name`` and ``when``, an expression over profile traits in
  the language of :mod:`jingzhun.profile.expr` — ``monetary >= p90(monetary)``. Users for whom
  it holds get the tag with value ``true``.
* **RFM** (``[tags] rfm = true``): for customers (frequency ≥ 1), R, F and M scores 1-5 from
  the user's percentile among customers — ``1 + floor(5 · percent_rank)``, so ties share the
  score of their lowest position (every one-order customer gets F = 1) — with R ranked on
  recency descending (recent is better). Tags ``rfm_r``, ``rfm_f``, ``rfm_m``, ``rfm_score``
  ("545") and ``rfm_segment``, named by the standard R×F map (below).
* **Quantile bins** (``[[tags.bins]]``): cut a trait at quantiles, label each bucket.

A rule that names an unknown trait, has a syntax error or compares mismatched types fails with
the rule's name and the position, before anything is written.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb
import ibis
import ibis.expr.types as ir

from jingzhun.config import TagBins, TagSettings
from jingzhun.errors import InputError
from jingzhun.profile import expr as ex
from jingzhun.store import Store
from jingzhun.store.sql import Sql

if TYPE_CHECKING:
    from jingzhun.store.lake import Lake

BUILT_IN_SOURCES = ("rule", "rfm", "bin")
#: The tags RFM writes.
RFM_TAGS = ("rfm_r", "rfm_f", "rfm_m", "rfm_score", "rfm_segment")
#: The ``tags`` table's columns, in order (the store's table and a lake's).
TAG_COLUMNS = ("user_id", "tag", "value", "source", "computed_at")

#: The standard RFM segments by (R, F) score. Every pair 1-5 × 1-5 has exactly one.
RFM_SEGMENTS: dict[str, list[tuple[int, int]]] = {
    "Champions": [(5, 4), (5, 5)],
    "Loyal": [(3, 4), (3, 5), (4, 4), (4, 5)],
    "Potential loyalist": [(4, 2), (4, 3), (5, 2), (5, 3)],
    "New customers": [(5, 1)],
    "Promising": [(4, 1)],
    "Need attention": [(3, 3)],
    "About to sleep": [(3, 1), (3, 2)],
    "At risk": [(1, 3), (1, 4), (2, 3), (2, 4)],
    "Can't lose them": [(1, 5), (2, 5)],
    "Hibernating": [(1, 2), (2, 1), (2, 2)],
    "Lost": [(1, 1)],
}


def rfm_segment(r: int, f: int) -> str:
    for name, cells in RFM_SEGMENTS.items():
        if (r, f) in cells:
            return name
    raise ValueError(f"RFM scores out of range: R={r}, F={f}")


@dataclass(frozen=True)
class RulePlan:
    name: str
    source: str
    node: ex.Node


@dataclass(frozen=True)
class BinPlan:
    bins: TagBins
    where: ex.Node | None


@dataclass(frozen=True)
class TagPlan:
    rules: list[RulePlan]
    rfm: bool
    bins: list[BinPlan]


def plan_tags(profile: ir.Table, settings: TagSettings) -> TagPlan:
    """Parse and check every rule and bin against the profile's columns; write nothing."""
    columns = {c: profile[c].type() for c in profile.columns}
    names: set[str] = set(RFM_TAGS) if settings.rfm else set()
    rules = []
    for rule in settings.rules:
        where = f"tag rule {rule.name!r}"
        if rule.name in RFM_TAGS and settings.rfm:
            raise InputError(
                f"{where}: the name is an RFM tag",
                hint="rename the rule, or set [tags] rfm = false",
            )
        if rule.name in names:
            raise InputError(f"{where} is declared twice", hint="give each tag rule its own name")
        names.add(rule.name)
        rules.append(RulePlan(rule.name, "rule", condition(rule.when, profile, columns, where)))
    bins = []
    for b in settings.bins:
        where = f"tag bins {b.name!r}"
        if b.name in names:
            taken = "an RFM tag" if settings.rfm and b.name in RFM_TAGS else "a tag rule"
            raise InputError(
                f"{where}: the name is already {taken}", hint="give the bins another name"
            )
        names.add(b.name)
        if b.trait not in columns:
            raise InputError(f"{where}: unknown trait {b.trait!r}")
        if not columns[b.trait].is_numeric():
            raise InputError(f"{where}: trait {b.trait!r} is not numeric ({columns[b.trait]})")
        if b.labels is not None and len(b.labels) != len(b.quantiles) + 1:
            raise InputError(
                f"{where}: {len(b.quantiles)} quantiles make {len(b.quantiles) + 1} bins, but {len(b.labels)} labels are given"
            )
        bins.append(
            BinPlan(b, condition(b.where, profile, columns, f"{where} where") if b.where else None)
        )
    if settings.rfm:
        for needed in ("recency_days", "frequency", "monetary"):
            if needed not in columns:
                raise InputError(f"RFM tags need the trait {needed!r}")
    return TagPlan(rules, settings.rfm, bins)


def condition(text: str, profile: ir.Table, columns: dict[str, object], where: str) -> ex.Node:
    """Parse ``text`` as a condition over profile traits and check it compiles to a boolean.

    ``days_since(x)`` counts from the profile's ``as_of``.
    """
    node = ex.parse(text, where=where)
    ex.check_names(node, text, columns, where)
    ex.compile_condition(node, profile, source=text, where=where, now=profile["as_of"])
    return node


def rfm_scores(profiles: ir.Table) -> ir.Table:
    """The customers' R, F and M scores (1-5) and their RFM segment name: ``user_id``, ``r``,
    ``f``, ``m``, ``segment``."""
    c = profiles.filter(profiles.frequency >= 1)

    def score(order: ir.Value) -> ir.Value:
        return ibis.least(
            (ibis.percent_rank().over(order_by=order) * 5).floor().cast("int64") + 1, 5
        )

    scored = c.select(
        "user_id",
        r=score(c.recency_days.desc()),
        f=score(c.frequency),
        m=score(c.monetary),
    )
    seg = ibis.cases(
        *(
            (ibis.or_(*((scored.r == r) & (scored.f == f) for r, f in cells)), name)
            for name, cells in RFM_SEGMENTS.items()
        )
    )
    return scored.mutate(segment=seg)


def _rfm_values(scored: ir.Table) -> dict[str, ir.Value]:
    """Each RFM tag's value over :func:`rfm_scores`' rows, in :data:`RFM_TAGS` order."""
    r, f, m = (scored[c].cast("string") for c in ("r", "f", "m"))
    return {
        "rfm_r": r,
        "rfm_f": f,
        "rfm_m": m,
        "rfm_score": r.concat(f, m),  # "545"
        "rfm_segment": scored.segment,
    }


def _bin_rows(profiles: ir.Table, bp: BinPlan) -> ir.Table:
    """``user_id`` and the bin label of every user with a value (and, with ``where``, for
    whom it holds): cut at the quantiles of those users' values, ``x <= cut_i`` gives
    ``label_i``, above the last cut the last label.

    The cuts are one aggregate joined to every row (``quantile_cont`` on DuckDB,
    ``percentile`` on Spark: both exact, interpolating between the two nearest values), so
    the cut points are never written into the query as decimal text."""
    b = bp.bins
    rows = profiles.filter(profiles[b.trait].notnull())
    if bp.where is not None:
        rows = rows.filter(ex.compile_ibis(bp.where, profiles, now=profiles.as_of).fill_null(False))
    rows = rows.select("user_id", x=rows[b.trait])
    cuts = rows.aggregate(_cuts=rows.x.quantile(list(b.quantiles)))
    both = rows.cross_join(cuts)
    labels = b.labels or [f"q{i + 1}" for i in range(len(b.quantiles) + 1)]
    value = ibis.cases(
        *((both.x <= both._cuts[i], labels[i]) for i in range(len(b.quantiles))),
        else_=labels[-1],
    )
    return both.select("user_id", value=value)


@dataclass(frozen=True)
class TagRows:
    """One tag's rows: ``rows`` has ``user_id`` and ``value``."""

    tag: str
    source: str
    rows: ir.Table
    rule: bool = False  # a tag rule: a failure names it as "tag rule NAME"

    def table(self, now: datetime) -> ir.Table:
        """The rows as the ``tags`` table's columns (:data:`TAG_COLUMNS`)."""
        return self.rows.select(
            "user_id",
            tag=ibis.literal(self.tag, type="string"),
            value=self.rows.value.cast("string"),
            source=ibis.literal(self.source, type="string"),
            computed_at=ibis.literal(now, type="timestamp"),
        )

    @property
    def what(self) -> str:
        return f"tag rule {self.tag!r}" if self.rule else f"tag {self.tag!r}"


def tag_rows(
    profiles: ir.Table, plan: TagPlan, *, rfm: ir.Table | None = None
) -> Iterator[TagRows]:
    """Every built-in tag of ``plan`` over ``profiles`` as Ibis expressions — rule tags, the
    RFM tags, the bins, in that order — the one definition both engines run. ``rfm``: the
    RFM scores already materialised (:func:`rfm_scores`), read instead of recomputed."""
    for rule in plan.rules:
        cond = ex.compile_ibis(rule.node, profiles, now=profiles.as_of)
        rows = profiles.filter(cond.fill_null(False)).select("user_id", value=ibis.literal("true"))
        yield TagRows(rule.name, rule.source, rows, rule=True)
    if plan.rfm:
        scored = rfm_scores(profiles) if rfm is None else rfm
        for tag, value in _rfm_values(scored).items():
            yield TagRows(tag, "rfm", scored.select("user_id", value=value))
    for bp in plan.bins:
        yield TagRows(bp.bins.name, "bin", _bin_rows(profiles, bp))


def refused(what: str, exc: Exception, engine: str = "DuckDB") -> InputError:
    """An expression that passed every check but that the engine refused when it ran (integer
    overflow, arithmetic on a condition, ``between`` bounds of another type; on Spark also a
    division by zero, which ANSI mode makes an error): an error naming the setting, not a
    traceback; the build's transaction rolls back (on a lake nothing is replaced)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(
        f"{what}: {engine} refused it when it ran: {first[:300]}",
        hint="check the expression's types: no arithmetic on conditions (write "
        "(a > 1) and (b > 1)), numbers within ±9.2e18, between bounds of the value's type",
    )


def write_tags(store: Store, plan: TagPlan, now: datetime) -> dict[str, int]:
    """Replace the built-in tags with fresh ones from the stored ``profiles``; return counts.

    Each tag is inserted from its Ibis expression (:func:`tag_rows`) compiled for DuckDB; the
    RFM scores go to a temporary table first, so their window sorts run once for five tags."""
    backend = store.ibis()
    profiles = backend.table("profiles")
    store.run("DELETE FROM tags WHERE list_contains(?, source)", [list(BUILT_IN_SOURCES)])
    rfm = None
    if plan.rfm:
        scores: Sql = ibis.to_sql(rfm_scores(profiles), dialect="duckdb")
        store.run(f"CREATE OR REPLACE TEMP TABLE _jz_rfm AS {scores}")
        rfm = store.ibis().table("_jz_rfm")
    counts: dict[str, int] = {}
    try:
        for t in tag_rows(profiles, plan, rfm=rfm):
            query: Sql = ibis.to_sql(t.table(now), dialect="duckdb")
            try:
                counts[t.tag] = int(store.scalar(f"INSERT INTO tags SELECT * FROM ({query})"))
            except duckdb.Error as exc:
                raise refused(t.what, exc) from exc
    finally:
        if rfm is not None:
            # After a refused rule the transaction is aborted (its rollback discards the
            # table): the drop must not hide the refusal.
            with contextlib.suppress(duckdb.Error):
                store.run("DROP TABLE IF EXISTS temp._jz_rfm")
    return counts


def write_tags_on_lake(lake: Lake, plan: TagPlan, now: datetime) -> dict[str, int]:
    """:func:`write_tags` on a lake (``--engine spark``): the same expressions over the lake's
    ``profiles``, their union written as the lake's ``tags`` (replaced in one rename) with the
    tags of other sources (a model's) kept; return counts."""
    profiles = lake.table("profiles")
    staging = lake.staging("tags")
    rfm = None
    try:
        if plan.rfm:
            # As write_tags: the RFM scores are computed once for their five tags (Spark
            # would otherwise run their window sorts once a tag, in one job).
            lake.backend.to_parquet(rfm_scores(profiles), staging / "rfm")
            rfm = lake.backend.read_parquet(staging / "rfm", table_name="_jz_rfm")
        return _write_tags_on_lake(lake, plan, now, profiles, rfm)
    finally:
        if rfm is not None:
            lake.session.catalog.dropTempView("_jz_rfm")
        shutil.rmtree(staging, ignore_errors=True)


def _write_tags_on_lake(
    lake: Lake, plan: TagPlan, now: datetime, profiles: ir.Table, rfm: ir.Table | None
) -> dict[str, int]:
    sets = list(tag_rows(profiles, plan, rfm=rfm))
    parts = [t.table(now) for t in sets]
    if "tags" in lake.tables():
        kept = lake.table("tags")
        kept = kept.filter(~kept.source.isin(list(BUILT_IN_SOURCES)))
        parts.append(kept.select(*TAG_COLUMNS).cast(parts[0].schema() if parts else kept.schema()))
    if not parts:  # no rules, no RFM, no bins, and no tags before: an empty table
        parts = [
            ibis.memtable(
                {c: [] for c in TAG_COLUMNS},
                schema={c: "timestamp" if c == "computed_at" else "string" for c in TAG_COLUMNS},
            )
        ]
    union = parts[0].union(*parts[1:], distinct=False) if len(parts) > 1 else parts[0]
    from pyspark.errors import PySparkException

    try:
        lake.write("tags", union)
    except PySparkException as exc:
        # One job wrote every tag: find the one Spark refuses, to name it.
        for t in sets:
            try:
                t.rows.count().execute()
            except PySparkException as one:
                raise refused(t.what, one, "Spark") from one
        raise refused("tags", exc, "Spark") from exc
    written = lake.table("tags")
    names = written.filter(written.source.isin(list(BUILT_IN_SOURCES)))
    found = {
        row["tag"]: int(row["n"])
        for row in names.group_by("tag").aggregate(n=names.count()).to_pyarrow().to_pylist()
    }
    return {t.tag: found.get(t.tag, 0) for t in sets}
