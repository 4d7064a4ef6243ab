"""Build the ``profiles`` table (one row per user), ``profile_affinity`` and the tags.

Everything the build will compute is checked first — custom traits, score weights, tag rules
and bins are parsed and their names resolved — so a mistake in ``jingzhun.toml`` fails with the
trait's or rule's name and position before anything is written. The profile is then one Ibis
expression, compiled to SQL and written with the tags and the build record in one transaction.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import ibis
import ibis.expr.types as ir

from jingzhun.config import CustomTrait, Settings
from jingzhun.contracts.events import EVENT_COLUMNS as STORED_EVENT_COLUMNS
from jingzhun.contracts.time import utcnow
from jingzhun.errors import InputError, NotFoundError
from jingzhun.profile import activity
from jingzhun.profile import expr as ex
from jingzhun.profile import traits as tr
from jingzhun.profile.tags import TagPlan, plan_tags, refused, write_tags, write_tags_on_lake
from jingzhun.store import Store
from jingzhun.store.lake_frames import latest_as_of
from jingzhun.store.sql import ident

if TYPE_CHECKING:
    from jingzhun.store.lake import Lake

log = logging.getLogger(__name__)

#: Columns a custom trait's ``of`` and ``where`` may name: the event's own columns, then the
#: item attributes :func:`~jingzhun.profile.traits.base_events` joins to each event.
EVENT_COLUMNS: tuple[str, ...] = (*STORED_EVENT_COLUMNS, "category", "brand", "price_percentile")


def _reads(traits: list[CustomTrait]) -> tuple[str, ...]:
    """The event columns the build reads: the built-in traits' (:data:`traits.READS`) and
    those the custom ``traits`` name. The base the build stages holds these only — the event
    id, the device id and the like are a third of the events' bytes and no trait reads them.
    A trait whose ``where`` does not parse reads every column here; :func:`_custom_agg`
    names its error."""
    names = set(tr.READS)
    for t in traits:
        if t.of:
            names.add(t.of)
        if t.where:
            try:
                names |= ex.parse(t.where).names()
            except ex.ExprError:
                return EVENT_COLUMNS
    return tuple(c for c in EVENT_COLUMNS if c in names)


@dataclass
class BuildResult:
    as_of: datetime
    users: int
    traits: list[str]
    tags: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat(sep=" ")
        d["seconds"] = round(self.seconds, 3)
        return d


def default_as_of(store: Store) -> datetime:
    """Just after the latest event, so a rebuild on the same data gives the same profile."""
    latest = store.scalar("SELECT max(ts) FROM events")
    if latest is None:
        raise NotFoundError(
            "the store has no events to build profiles from", hint="ingest events first"
        )
    return latest + timedelta(microseconds=1)


def _custom_agg(t: CustomTrait, e: ir.Table, as_of: ir.Value) -> ir.Value:
    where = f"profile trait {t.name!r}"
    cond: ir.BooleanValue | None = None
    if t.where:
        label = f"{where} where"
        node = ex.parse(t.where, where=label)
        ex.check_names(node, t.where, dict.fromkeys(EVENT_COLUMNS), label)
        ex.check_no_aggregates(node, t.where, label)
        cond = ex.compile_condition(node, e, source=t.where, where=label, now=as_of)
    if t.window_days is not None:
        recent = e.ts >= as_of - ibis.interval(seconds=int(t.window_days * 86_400))
        cond = recent if cond is None else cond & recent
    if t.agg == "count":
        return e.count(where=cond) if cond is not None else e.count()
    if t.of is None:
        raise InputError(
            f"{where}: agg {t.agg!r} needs 'of' (the column to aggregate)",
            hint=f'e.g. of = "revenue"; columns: {", ".join(EVENT_COLUMNS)}',
        )
    if t.of not in EVENT_COLUMNS:
        raise InputError(
            f"{where}: of = {t.of!r} is not an event column",
            hint=f"use one of: {', '.join(EVENT_COLUMNS)}",
        )
    col = e[t.of]
    if t.agg in ("sum", "mean", "min", "max"):
        if t.agg in ("sum", "mean") and not col.type().is_numeric():
            raise InputError(
                f"{where}: {t.agg} needs a numeric column, and {t.of!r} is {col.type()}"
            )
        return getattr(col, t.agg)(where=cond)
    if t.agg == "distinct":
        return tr.distinct(e, col, cond)
    if t.agg == "mode":
        return col.mode(where=cond)
    if t.agg == "first":
        return col.argmin(e.ts, where=cond)
    return col.argmax(e.ts, where=cond)  # last


def _zero(p: ir.Table, counts: Iterable[str], sums: Iterable[str] = ()) -> ir.Table:
    """``p`` with its ``counts`` whole numbers, 0 where null (a user without events), and its
    ``sums`` of money 0.0 there."""
    zero = {n: p[n].fill_null(0).cast("int64") for n in counts}
    zero.update({n: p[n].fill_null(0.0) for n in sums})
    return p.mutate(**zero)


def _score(p: ir.Table, weights: dict[str, float]) -> ir.Value:
    """P(u) = Σ |w_i| F_i(u) / Σ |w_i|, F_i the user's rank (0-1) in trait i among users who
    have a value; 1 - rank for a negative weight (lower is better); 0 without a value."""
    total = sum(abs(w) for w in weights.values()) or 1.0
    parts = []
    for name, w in weights.items():
        x = p[name]
        rank = ibis.rank().over(order_by=x)  # 0-based; nulls sort last
        n = x.count().over()
        f = ibis.ifelse(n > 1, rank.cast("float64") / (n - 1), 1.0)
        f = 1.0 - f if w < 0 else f
        parts.append(ibis.ifelse(x.isnull(), 0.0, f) * (abs(w) / total))
    out = parts[0]
    for part in parts[1:]:
        out = out + part
    return out


@dataclass
class Plan:
    """The checked build: the profile and affinity expressions and the tags to compute."""

    profile: ir.Table
    affinity: ir.Table
    columns: list[str]
    tags: TagPlan
    base: ir.Table  # the events traits read (stitched, before as_of, item attributes joined)
    pieces: dict[str, ir.Table]  # "agg" and each table trait: what the profile joins
    items: ir.Table  # the item attributes base joins (traits.item_ranks)


#: Profile columns that are not traits; custom traits may not take these names.
RESERVED = ("user_id", "as_of", "created_at")


def plan(
    store: Store | Lake,
    settings: Settings,
    as_of: datetime,
    *,
    tables: dict[str, ir.Table] | None = None,
) -> Plan:
    """The profile as Ibis expressions, every name and type checked; nothing runs. The same
    expressions run on the store's DuckDB or on a lake's Spark (:func:`build_on_lake`).

    ``tables`` holds pieces already materialised — "items" (the item attributes the events
    are joined to), "base" (the events), "affinity", "agg" and the table traits by name —
    which the expressions then read instead of recomputing.
    """
    tables = tables or {}
    cfg = settings.profile
    front = _front(store, settings, as_of, tables)
    at, users, ctx = front.at, front.ctx.users, front.ctx

    builtin = {name for name, _ in tr.catalogue()}
    seen_names: set[str] = set()
    for t in cfg.traits:
        if t.name in builtin:
            raise InputError(
                f"profile trait {t.name!r} is a built-in trait",
                hint="give the custom trait another name",
            )
        if t.name in RESERVED:
            raise InputError(
                f"profile trait {t.name!r} is a profile column",
                hint="give the custom trait another name",
            )
        if t.name in seen_names:
            raise InputError(
                f"profile trait {t.name!r} is declared twice",
                hint="give each custom trait its own name",
            )
        seen_names.add(t.name)
    custom = front.custom(cfg.traits)
    pieces = _pieces(front, custom)
    use = {name: tables.get(name, expr) for name, expr in pieces.items()}
    agg = use["agg"]
    # Who has a profile: users signed up before as_of (or without a sign-up time) and anyone
    # with an event before it.
    known = users.filter(users.created_at.isnull() | (users.created_at < at)).select(
        user_id=ibis._.user_id.cast("string"), created_at=ibis._.created_at
    )
    # Which table traits the score ranks (active_days, by default): those join before it, the
    # rest (maps and lists, mostly) after it, so the staged wide profile the score reads is
    # narrower — on Spark, writing and reading back the wide rows' maps cost more than
    # computing them.
    early = [t.name for t in tr.TABLES if set(use[t.name].columns) & set(cfg.score)]
    late = [t.name for t in tr.TABLES if t.name not in early]
    # The table traits joined to the aggregates (every user in a trait's table has events, so
    # is in the aggregates): on Spark all of them are bucketed by user_id and join without a
    # shuffle. After the outer join, the coalesced user_id is a new column that no bucketing
    # covers, and each join after it shuffled again.
    for name in early:
        agg = agg.left_join(use[name], "user_id").drop("user_id_right")
    agg = agg.mutate(user_id=agg.user_id.cast("string"))
    # One outer join: the known users and those with events, each once (a union of their ids
    # joined to both again cost Spark a distinct over both and two more joins).
    p = known.outer_join(agg, known.user_id == agg.user_id)
    p = p.select(
        ibis.coalesce(p.user_id, p.user_id_right).name("user_id"),
        "created_at",
        *(c for c in agg.columns if c != "user_id"),
    )
    # Counts are whole numbers, 0 for users without events; sums of money are 0.0.
    counts = [n for n, _ in tr.catalogue() if n.startswith("n_") or n in tr.COUNT_TRAITS]
    counts += [t.name for t in cfg.traits if t.agg in ("count", "distinct")]
    p = _zero(p, (n for n in counts if n in p.columns), tr.SUM_TRAITS)
    # Derived traits read the aggregates (and the table traits the score ranks).
    p = p.mutate(**{d.name: d.fn(p, ctx) for d in tr.DERIVED})

    late_columns = [c for name in late for c in use[name].columns if c != "user_id"]
    names = [*p.columns, *late_columns]
    for name in cfg.score:
        if name not in names:
            raise InputError(
                f"[profile.score] names unknown trait {name!r}",
                hint=f"use traits such as: {', '.join(n for n in names if n not in ('user_id', 'created_at'))[:300]}",
            )
        if not p[name].type().is_numeric():
            raise InputError(f"[profile.score] trait {name!r} is not numeric ({p[name].type()})")
    p = p.mutate(as_of=at)
    pieces["wide"] = p
    # The score ranks every user in each weighted trait: window sorts, done over a narrow
    # projection of the materialised profile (sorting the wide rows costs ~4x more).
    p = tables.get("wide", p)
    scores = None
    if cfg.score:
        narrow = p.select("user_id", *cfg.score)
        scores = narrow.select("user_id", score=_score(narrow, cfg.score))
    for name in late:  # bucketed like the wide profile on Spark: joined before the scores
        p = p.left_join(use[name], "user_id").drop("user_id_right")
    p = _zero(p, (n for n in counts if n in late_columns))
    if scores is not None:
        p = p.left_join(scores, "user_id").drop("user_id_right")
    else:
        p = p.mutate(score=ibis.null("float64"))
    ordered = [
        "user_id",
        "as_of",
        "created_at",
        *(n for n, _ in tr.catalogue() if n in names),
        *custom,
        "score",
    ]
    p = p.select(*ordered)
    tags = plan_tags(p, settings.tags)
    return Plan(p, front.affinity(), ordered, tags, front.base, pieces, front.item_ranks())


@dataclass
class _Front:
    """What every step of the build starts from: the events (the base, or its materialised
    table), the item attributes and the traits' context."""

    at: ir.Value
    base: ir.Table
    items: ir.Table
    events: ir.Table
    ctx: tr.Ctx

    def custom(self, traits: list[CustomTrait]) -> dict[str, ir.Value]:
        """The configured traits' aggregates over the events."""
        return {t.name: _custom_agg(t, self.events, self.at) for t in traits}

    def affinity(self) -> ir.Table:
        return tr.affinity(self.ctx).mutate(as_of=self.at)

    def item_ranks(self) -> ir.Table:
        """The item attributes the base joins (what the "items" piece holds)."""
        return tr.item_ranks(self.items)


def _front(
    store: Store | Lake, settings: Settings, as_of: datetime, tables: dict[str, ir.Table]
) -> _Front:
    cfg = settings.profile
    at = ibis.literal(as_of, type="timestamp")
    base, items = tr.base_events(store.ibis(), at, tables.get("items"))
    base = base.select(*_reads(cfg.traits))
    events = tables.get("base", base)
    ctx = tr.Ctx(
        events,
        items,
        store.ibis().table("users"),
        at,
        cfg.half_life_days,
        cfg.weights,
        cfg.last_items,
        tables.get("affinity"),
    )
    return _Front(at, base, items, events, ctx)


def _pieces(front: _Front, custom: dict[str, ir.Value]) -> dict[str, ir.Table]:
    """The per-user aggregates (built-in and ``custom``) and each table trait: what the
    profile joins."""
    events = front.events
    pieces = {
        "agg": events.group_by("user_id").aggregate(
            **{a.name: a.fn(events) for a in tr.AGGS}, **custom
        )
    }
    pieces.update({table.name: table.fn(front.ctx) for table in tr.TABLES})
    return pieces


def build(store: Store, settings: Settings, as_of: datetime | None = None) -> BuildResult:
    """Build profiles, affinity and tags as of ``as_of`` (default: just after the latest event).

    Every piece is computed once: the stitched base events, the affinity (stored as
    ``profile_affinity``), the per-user aggregates and each table trait go to temporary tables,
    and the profile joins those. One big query would make DuckDB evaluate shared subqueries
    more than once.
    """
    started = time.perf_counter()
    if as_of is None:
        as_of = default_as_of(store)
    if store.count("events") == 0:
        raise NotFoundError(
            "the store has no events to build profiles from", hint="ingest events first"
        )
    the_plan = plan(store, settings, as_of)  # every check happens here, before any write
    now = utcnow()
    temps: list[str] = []
    try:
        with store.transaction():
            the_plan = _duckdb_plan(store, settings, as_of, temps, keep_affinity=True)
            # Stored in user id order: a lookup of some users (a campaign's batch of members,
            # the server's user view) reads the few row groups the zone maps point to, not
            # the whole table (82 ms -> a few ms for 512 users of a million).
            store.run(
                "CREATE OR REPLACE TABLE profiles AS SELECT * FROM "
                f"({ibis.to_sql(the_plan.profile, dialect='duckdb')}) ORDER BY user_id"
            )
            store.run("CREATE INDEX profiles_user_id ON profiles (user_id)")
            tag_counts = write_tags(store, the_plan.tags, now)
            activity.write(store, as_of)  # what the dashboard's overview reads
            users = store.scalar("SELECT count(*) FROM profiles")
            seconds = time.perf_counter() - started
            store.run(
                "INSERT INTO profile_builds VALUES (?, ?, ?, ?, ?, ?)",
                [as_of, now, users, json.dumps(the_plan.columns), json.dumps(tag_counts), seconds],
            )
    finally:
        _drop(store, temps)
    return BuildResult(
        as_of, int(users), the_plan.columns, tag_counts, time.perf_counter() - started
    )


#: ``materialise(name, expr, keep)``: compute ``expr`` once into a table the engine reads back
#: (``keep``: the table the build keeps, ``profile_affinity``; else a temporary one).
Materialise = Callable[[str, ir.Table, bool], ir.Table]


def _materialise(
    store: Store | Lake,
    settings: Settings,
    as_of: datetime,
    materialise: Materialise,
    *,
    refuses: tuple[type[Exception], ...],
    engine: str,
    items: bool = False,
) -> Plan:
    """Compute every piece of the plan once — the base events, the affinity, the per-user
    aggregates and each table trait, then the wide profile — with ``materialise``, and return
    the plan that reads them: the same steps on DuckDB (tables) and on Spark (Parquet).
    ``items``: the item attributes first too (Spark: a table read from a small file is one it
    broadcasts to the events; the same join in the base's plan is a sort-merge join, which
    shuffles and sorts every event by item). An error of ``refuses`` while a configured trait
    is in the plan is named as that trait's."""
    # Each step's expressions read the pieces materialised before it. The steps before the
    # wide profile need only the front of the plan (the whole plan is ~0.2 s of Ibis
    # expression building; predict's training builds the profile at four cutoffs).
    tables: dict[str, ir.Table] = {}
    if items:
        tables["items"] = materialise(
            "items", _front(store, settings, as_of, tables).item_ranks(), False
        )
    tables["base"] = materialise("base", _front(store, settings, as_of, tables).base, False)
    front = _front(store, settings, as_of, tables)
    tables["affinity"] = materialise("profile_affinity", front.affinity(), True)
    front = _front(store, settings, as_of, tables)
    custom_aggs = front.custom(settings.profile.traits)
    custom = list(custom_aggs)
    try:
        for name, expr in _pieces(front, custom_aggs).items():
            tables[name] = materialise(name, expr, False)
        step = plan(store, settings, as_of, tables=tables)
        tables["wide"] = materialise("wide", step.pieces["wide"], False)
    except refuses as exc:
        if not custom:
            raise
        # The built-in traits run on every store; a configured one is what the engine refused.
        raise refused(f"computed traits ({', '.join(custom)})", exc, engine) from exc
    return plan(store, settings, as_of, tables=tables)


def _on_duckdb(store: Store, temps: list[str], *, keep_affinity: bool) -> Materialise:
    """:data:`Materialise` on the store: a table each (temporary ones named in ``temps``);
    ``keep_affinity`` writes ``profile_affinity``, else the affinity is temporary too."""

    def materialise(name: str, expr: ir.Table, keep: bool) -> ir.Table:
        temp = not (keep and keep_affinity)
        table = f"_jz_profile_{name}" if temp else name
        kind = "TEMP TABLE" if temp else "TABLE"
        query = ibis.to_sql(expr, dialect="duckdb")
        store.run(f"CREATE OR REPLACE {kind} {ident(table)} AS {query}")
        if temp:
            temps.append(table)
        return store.ibis().table(table)

    return materialise


def _duckdb_plan(
    store: Store, settings: Settings, as_of: datetime, temps: list[str], *, keep_affinity: bool
) -> Plan:
    materialise = _on_duckdb(store, temps, keep_affinity=keep_affinity)
    return _materialise(
        store, settings, as_of, materialise, refuses=(duckdb.Error,), engine="DuckDB"
    )


def _drop(store: Store, temps: list[str]) -> None:
    for table in temps:
        store.run(f"DROP TABLE IF EXISTS temp.{ident(table)}")


def compute(store: Store, settings: Settings, as_of: datetime, into: str) -> list[str]:
    """The profile as of ``as_of`` into the temporary table ``into``; nothing else is written.

    This is the point-in-time profile the predict stage trains on: the same traits as
    ``build``, from the events strictly before ``as_of`` only. Returns the columns.
    """
    if store.count("events") == 0:
        raise NotFoundError(
            "the store has no events to build profiles from", hint="ingest events first"
        )
    plan(store, settings, as_of)  # every check before any table is made
    temps: list[str] = []
    try:
        the_plan = _duckdb_plan(store, settings, as_of, temps, keep_affinity=False)
        query = ibis.to_sql(the_plan.profile, dialect="duckdb")
        store.run(f"CREATE OR REPLACE TEMP TABLE {ident(into)} AS {query}")
    finally:
        _drop(store, temps)
    return the_plan.columns


def require_profiles(store: Store) -> None:
    exists = store.scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'profiles'"
    )
    if not exists:
        raise NotFoundError("no profiles yet", hint="run jingzhun profile build")


def profile_columns(store: Store) -> dict[str, str]:
    """The profiles table's columns and their DuckDB types, in table order."""
    require_profiles(store)
    return store.columns("profiles")


def build_on_lake(lake: Lake, settings: Settings, as_of: datetime | None = None) -> BuildResult:
    """Build profiles, affinity and tags on Spark (``--engine spark``): the plan :func:`build`
    runs on DuckDB, the same Ibis expressions, compiled by Ibis' PySpark backend and written to
    the lake as ``profiles``, ``profile_affinity`` and ``tags`` (each replaced in one rename).

    Every piece is computed once, as :func:`build` materialises them on DuckDB
    (:func:`_materialise`, the same steps): written as Parquet to a hidden staging folder in
    the lake and read back, so each later query is a small plan over files — not the whole
    profile's lineage, which Catalyst took seconds to analyse and Spark recomputed per use.
    The staged affinity becomes ``profile_affinity`` in one rename. The tags are computed from
    the written ``profiles``, as :func:`build` computes them from the stored table.
    """
    started = time.perf_counter()
    for t in settings.profile.traits:
        if t.agg == "mode":  # Ibis' PySpark compiler has no Mode (issue 19)
            raise InputError(
                f'profile trait {t.name!r} (agg = "mode") does not run on Spark: Ibis\' '
                "PySpark backend has no mode aggregate",
                hint="build it on the DuckDB store, or use another agg on Spark",
            )
    if as_of is None:
        as_of = latest_as_of(lake)  # just after the lake's latest event, as on a store
    plan(lake, settings, as_of)  # every check, the tags' too, before anything runs
    from pyspark.errors import PySparkException

    now = utcnow()
    staging = lake.staging("profile-build")
    tables: list[str] = []
    try:
        materialise = _on_spark(lake, staging, tables)
        p = _materialise(
            lake,
            settings,
            as_of,
            materialise,
            refuses=(PySparkException,),
            engine="Spark",
            items=True,
        )
        users = lake.write("profiles", p.profile)
        lake.adopt("profile_affinity", staging / "profile_affinity")
        tag_counts = write_tags_on_lake(lake, p.tags, now)
    finally:
        for table in tables:  # the session's entries; their files go with the staging folder
            lake.backend.drop_table(table, force=True)
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(as_of, users, list(p.columns), tag_counts, time.perf_counter() - started)


def _on_spark(lake: Lake, staging: Path, tables: list[str]) -> Materialise:
    """:data:`Materialise` on a lake: each piece written as Parquet into ``staging`` (a
    folder per piece), as a table of the session (named in ``tables``) that the next steps
    read.

    A piece with ``user_id`` (but the one the lake keeps) is written bucketed by it
    (``bucketBy``, as many buckets as the session's shuffle partitions), and Spark knows it:
    every later step that groups or joins by user reads it partitioned already, where it
    shuffled it again per step. At 10M events the staged events cost 5-8 s more to write,
    each per-user step over them 1-4 s less (whole builds 106-129 s against 124-133 s
    unbucketed, in process).
    """
    buckets = int(lake.session.conf.get("spark.sql.shuffle.partitions") or 8)
    suffix = staging.name.rsplit(".", 1)[-1]  # the staging folder's own: two builds apart

    def materialise(name: str, expr: ir.Table, keep: bool) -> ir.Table:
        t = time.perf_counter()
        table = f"_jz_profile_{name}_{suffix}"
        writer = lake.session.sql(lake.backend.compile(expr)).write.mode("overwrite")
        if not keep:
            # Read once or twice, then deleted: no dictionary encoding, which cost the staged
            # events a third of their write (at 10M events 14-17 s against 20-24 s, three
            # runs each in one session) and the steps that read them no time.
            writer = writer.option("parquet.enable.dictionary", "false")
            if "user_id" in expr.columns:
                # Bucketed (not the affinity, which the lake keeps): an empty piece is no
                # file, and the lake's reader then has no schema; the session's table has its
                # own.
                writer = writer.bucketBy(buckets, "user_id")
        tables.append(table)
        writer.option("path", str(staging / name)).format("parquet").saveAsTable(table)
        log.debug("profile piece %s on Spark: %.1f s", name, time.perf_counter() - t)
        return lake.backend.table(table)

    return materialise
