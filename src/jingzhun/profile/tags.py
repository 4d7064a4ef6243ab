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

from dataclasses import dataclass
from datetime import datetime

import duckdb
import ibis
import ibis.expr.types as ir

from jingzhun.config import TagBins, TagSettings
from jingzhun.errors import InputError
from jingzhun.profile import expr as ex
from jingzhun.store import Store

BUILT_IN_SOURCES = ("rule", "rfm", "bin")
#: The tags RFM writes.
RFM_TAGS = ("rfm_r", "rfm_f", "rfm_m", "rfm_score", "rfm_segment")
#: Each RFM tag and its value, SQL over the scored customers.
_RFM_VALUES = (
    ("rfm_r", "r::VARCHAR"),
    ("rfm_f", "f::VARCHAR"),
    ("rfm_m", "m::VARCHAR"),
    ("rfm_score", "r::VARCHAR || f::VARCHAR || m::VARCHAR"),
    ("rfm_segment", "segment"),
)

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


def _rfm(profiles: ir.Table) -> ir.Table:
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


def refused(what: str, exc: Exception) -> InputError:
    """An expression that passed every check but that DuckDB refused when it ran (integer
    overflow, arithmetic on a condition, ``between`` bounds of another type): an error naming
    the setting, not a traceback; the build's transaction rolls back."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputError(
        f"{what}: DuckDB refused it when it ran: {first[:300]}",
        hint="check the expression's types: no arithmetic on conditions (write "
        "(a > 1) and (b > 1)), numbers within ±9.2e18, between bounds of the value's type",
    )


def write_tags(store: Store, plan: TagPlan, now: datetime) -> dict[str, int]:
    """Replace the built-in tags with fresh ones from the stored ``profiles``; return counts."""
    backend = store.ibis()
    profiles = backend.table("profiles")
    store.run("DELETE FROM tags WHERE list_contains(?, source)", [list(BUILT_IN_SOURCES)])
    counts: dict[str, int] = {}

    def insert(table: ir.Table, tag: str, source: str) -> None:
        sql = ibis.to_sql(table, dialect="duckdb")
        n = store.scalar(
            f"INSERT INTO tags SELECT user_id, ?, value, ?, ? FROM ({sql})", [tag, source, now]
        )
        counts[tag] = int(n)

    for rule in plan.rules:
        cond = ex.compile_ibis(rule.node, profiles, now=profiles.as_of)
        try:
            insert(
                profiles.filter(cond.fill_null(False)).select(
                    "user_id", value=ibis.literal("true")
                ),
                rule.name,
                rule.source,
            )
        except duckdb.Error as exc:
            raise refused(f"tag rule {rule.name!r}", exc) from exc
    if plan.rfm:
        rfm = _rfm(profiles)
        store.run(f"CREATE OR REPLACE TEMP TABLE _jz_rfm AS {ibis.to_sql(rfm, dialect='duckdb')}")
        for tag, expr in _RFM_VALUES:
            n = store.scalar(
                f"INSERT INTO tags SELECT user_id, ?, {expr}, 'rfm', ? FROM _jz_rfm", [tag, now]
            )
            counts[tag] = int(n)
        store.run("DROP TABLE temp._jz_rfm")
    for bp in plan.bins:
        b = bp.bins
        rows = profiles.filter(profiles[b.trait].notnull())
        if bp.where is not None:
            rows = rows.filter(
                ex.compile_ibis(bp.where, profiles, now=profiles.as_of).fill_null(False)
            )
        store.run(
            f"CREATE OR REPLACE TEMP TABLE _jz_bin AS {ibis.to_sql(rows.select('user_id', x=rows[b.trait]), dialect='duckdb')}"
        )
        cuts = store.scalar("SELECT quantile_cont(x, ?) FROM _jz_bin", [b.quantiles])
        labels = b.labels or [f"q{i + 1}" for i in range(len(b.quantiles) + 1)]
        n = 0
        if cuts is not None:
            # Cut points and labels go in as parameters: x <= cut_i gives label_i.
            case = " ".join("WHEN x <= ? THEN ?" for _ in cuts)
            pairs = [v for cut, label in zip(cuts, labels, strict=False) for v in (cut, label)]
            n = store.scalar(
                f"INSERT INTO tags SELECT user_id, ?, CASE {case} ELSE ? END, 'bin', ? FROM _jz_bin",
                [b.name, *pairs, labels[-1], now],
            )
        store.run("DROP TABLE temp._jz_bin")
        counts[b.name] = int(n)
    return counts
