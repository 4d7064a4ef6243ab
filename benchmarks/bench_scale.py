"""Scale (issue 19): profiles and ingest at growing sizes, DuckDB against pandas, Polars and
Spark local, and how their cost grows with the number of events.

Sizes (events / users; users grow with events, 10 events a user as in the other benchmarks):
tiny 100k / 10k (for trying the benchmark), S 1M / 100k, mid 2M / 200k, M 10M / 1M. Each is
the first N event rows of an N/10-user simulation (seed 1, ``common.shop_files``: dirty rows
included), ingested once with its users and items into a store and made into a lake with
``jingzhun lake init``, both cached under ``benchmarks/data/scale-N``.

**Profiles.** The same *core traits* computed five ways, each in a fresh process:

* ``jingzhun_duckdb_full``: ``Workspace.profiles.build()`` — all 52 traits (51 built in and
  ``views_beauty``, a computed trait from the benchmark's ``jingzhun.toml``), the category
  affinity, tags and the dashboard's activity tables — timed with each step;
* ``jingzhun_duckdb_core``: jingzhun's own trait definitions (``profile/traits.py``) for the
  core traits only, assembled as ``profile.build.plan`` assembles them, run on the store's
  DuckDB into an Arrow table. jingzhun has no setting that picks built-in traits, so this
  is the restricted build;
* ``polars_core``: the core traits in Polars' lazy API over the lake's Parquet
  (``pl.scan_parquet(...)...collect()``), written as a Polars user would;
* ``pandas_core``: the same in pandas, reading the lake's Parquet;
* ``spark_full``: ``jingzhun --engine spark profile build`` on the lake (Spark local[2]):
  traits, affinity and tags (no activity tables); its own figure excludes the JVM's start,
  the process's includes it. It is compared with DuckDB's build without tags and activity
  (the issue's like-for-like figure) and without activity only (the same work). ``spark_core``: the core traits of
  ``jingzhun_duckdb_core`` on Spark, in process, the session's start timed apart.

The core traits are defined by ``profile/traits.py`` and the pandas and Polars versions follow
those definitions (stitched anonymous events, events before ``as_of``, users signed up before
it, counts 0 for users without events). At the smallest size of a run the benchmark checks
that every implementation's core traits equal the full build's columns (the same users;
counts and times exactly, floats to 1e-9 relative): a comparison of different numbers is
none.

**Ingest.** ``jingzhun ingest events FILE`` (validation, quarantine, dedupe, identities, one
transaction) into a new store, against pandas and Polars reading the same Parquet, dropping
duplicate event ids and writing Parquet — far less work: no validation, no quarantine — and
``jingzhun --engine spark ingest events`` into a new lake when that command exists.

**Exponent.** log(seconds) = a + b·log(events) fitted over the sizes measured, per workload.

Run: ``python benchmarks/bench_scale.py [--sizes S,mid,M] [--repeat 2] [--no-spark]``;
``make bench`` runs the default sizes. Results: ``results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from common import DATA, ROOT, copy_store, run, run_command, save, shop_files

SIZES = {"tiny": 100_000, "S": 1_000_000, "mid": 2_000_000, "M": 10_000_000}
DEFAULT_SIZES = ("S", "mid", "M")
JINGZHUN = str(Path(sys.executable).with_name("jingzhun"))
CATEGORY = "beauty"
VIEWS = f"views_{CATEGORY}"
#: The benchmark's settings: one computed trait, the per-category view count.
CONFIG = f"""\
[[profile.traits]]
name = "{VIEWS}"
agg = "count"
where = "event = 'product_viewed' and category = '{CATEGORY}'"
"""
#: Built-in traits among the core ones (traits.AGGS, traits.DERIVED and two counts of table
#: traits), then the computed one.
CORE_AGGS = (
    "first_seen",
    "last_seen",
    "active_days",
    "events",
    "frequency",
    "monetary",
    "order_lines",
    "last_order_at",
    "n_product_viewed",
    "n_product_added",
    "distinct_items",
)
CORE_DERIVED = ("recency_days", "aov")
CORE = (*CORE_AGGS, *CORE_DERIVED, VIEWS)
#: Core traits that count (0 for a user without events, as the build fills them).
CORE_COUNTS = (
    "active_days",
    "events",
    "frequency",
    "order_lines",
    "n_product_viewed",
    "n_product_added",
    "distinct_items",
    VIEWS,
)
DAY_US = 86_400_000_000
REL = 1e-9
TARGET = {
    "duckdb_core_faster_than_polars_core_at_largest": True,
    "spark_within_x_of_duckdb_at_M": 5.0,
    "exponent_at_most": 1.1,
}


# -- the core traits, four ways ----------------------------------------------------------------


def core_ibis(backend: Any, as_of: Any) -> Any:
    """The core traits as one Ibis expression from jingzhun's own definitions, on any backend
    (the store's DuckDB or a lake's Spark): the base events, aggregates and derived traits of
    ``profile.traits``, the users who have a profile as ``profile.build.plan`` finds them."""
    from types import SimpleNamespace

    import ibis

    from jingzhun.profile import traits as tr
    from jingzhun.profile.build import EVENT_COLUMNS

    at = ibis.literal(as_of, type="timestamp")
    base, _ = tr.base_events(backend, at)
    e = base.select(*EVENT_COLUMNS)
    aggs = {a.name: a.fn(e) for a in tr.AGGS if a.name in CORE_AGGS}
    # The build takes these two from table traits that group by day and by item
    # (traits._weekday, traits._last_items); in one aggregate, as the Polars and pandas
    # versions write them, they are distinct counts: the same numbers.
    aggs["active_days"] = tr.distinct(e, e.ts.date())
    aggs["distinct_items"] = tr.distinct(e, e.item_id)
    # What the computed trait of CONFIG compiles to (count where event and category match).
    aggs[VIEWS] = e.count(where=(e.event == "product_viewed") & (e.category == CATEGORY))
    agg = e.group_by("user_id").aggregate(**aggs)
    users = backend.table("users")
    known = users.filter(users.created_at.isnull() | (users.created_at < at)).select(
        "user_id", "created_at"
    )
    p = known.outer_join(agg, "user_id")
    p = p.select(
        user_id=ibis.coalesce(p.user_id, p.user_id_right),
        created_at=p.created_at,
        **{name: p[name] for name in aggs},
    )
    p = p.mutate(
        **{name: p[name].fill_null(0).cast("int64") for name in CORE_COUNTS},
        monetary=p.monetary.fill_null(0.0),
    )
    ctx = SimpleNamespace(as_of=at)  # what the derived traits read of the context
    p = p.mutate(**{d.name: d.fn(p, ctx) for d in tr.DERIVED if d.name in CORE_DERIVED})
    return p.select("user_id", *CORE)


def core_polars(lake: str) -> Any:
    """The core traits in Polars' lazy API over the lake's Parquet (a LazyFrame)."""
    import polars as pl

    def scan(table: str) -> pl.LazyFrame:
        return pl.scan_parquet(f"{lake}/{table}/*.parquet")

    events = scan("events")
    as_of = events.select(pl.col("ts").max()).collect().item() + timedelta(microseconds=1)
    links = (
        scan("identities")
        .filter(pl.col("linked_at") < as_of)
        .select("anonymous_id", linked_user="user_id")
    )
    items = scan("items").select("item_id", "category")
    known = (
        scan("users")
        .filter(pl.col("created_at").is_null() | (pl.col("created_at") < as_of))
        .select("user_id", "created_at")
    )
    e = (
        events.filter((pl.col("ts") < as_of) & ~pl.col("custom"))
        .select("event", "user_id", "anonymous_id", "order_id", "item_id", "revenue", "ts")
        .join(links, on="anonymous_id", how="left")
        .with_columns(user_id=pl.coalesce("user_id", "linked_user"))
        .filter(pl.col("user_id").is_not_null())
        .join(items, on="item_id", how="left")
    )
    order = pl.col("event") == "order_completed"
    viewed = pl.col("event") == "product_viewed"
    agg = e.group_by("user_id").agg(
        first_seen=pl.col("ts").min(),
        last_seen=pl.col("ts").max(),
        active_days=pl.col("ts").dt.date().n_unique(),
        events=pl.len(),
        frequency=pl.col("order_id").filter(order).drop_nulls().n_unique(),
        gross=pl.col("revenue").filter(order).sum(),
        refunded=pl.col("revenue").filter(pl.col("event") == "order_refunded").sum(),
        order_lines=order.sum(),
        last_order_at=pl.col("ts").filter(order).max(),
        n_product_viewed=viewed.sum(),
        n_product_added=(pl.col("event") == "product_added").sum(),
        distinct_items=pl.col("item_id").drop_nulls().n_unique(),
        **{VIEWS: (viewed & (pl.col("category") == CATEGORY)).sum()},
    )
    return (
        known.join(agg, on="user_id", how="full", coalesce=True)
        .with_columns(
            pl.col(*CORE_COUNTS).fill_null(0).cast(pl.Int64),
            monetary=pl.max_horizontal(
                pl.col("gross").fill_null(0.0) - pl.col("refunded").fill_null(0.0), 0.0
            ),
        )
        .with_columns(
            recency_days=(pl.lit(as_of) - pl.col("last_order_at")).dt.total_microseconds()
            // DAY_US,
            aov=pl.when(pl.col("frequency") > 0).then(pl.col("monetary") / pl.col("frequency")),
        )
        .select("user_id", *CORE)
    )


def core_pandas(lake: str) -> Any:
    """The core traits in pandas, reading the lake's Parquet (a DataFrame)."""
    import pandas as pd

    ev = pd.read_parquet(
        f"{lake}/events",
        columns=[
            "event",
            "user_id",
            "anonymous_id",
            "order_id",
            "item_id",
            "revenue",
            "ts",
            "custom",
        ],
    )
    links = pd.read_parquet(f"{lake}/identities", columns=["anonymous_id", "user_id", "linked_at"])
    items = pd.read_parquet(f"{lake}/items", columns=["item_id", "category"])
    users = pd.read_parquet(f"{lake}/users", columns=["user_id", "created_at"])
    as_of = ev["ts"].max() + pd.Timedelta(microseconds=1)
    links = links.loc[links["linked_at"] < as_of, ["anonymous_id", "user_id"]]
    ev = ev[(ev["ts"] < as_of) & ~ev["custom"]]
    ev = ev.merge(links.rename(columns={"user_id": "linked_user"}), on="anonymous_id", how="left")
    ev["user_id"] = ev["user_id"].fillna(ev["linked_user"])
    ev = ev[ev["user_id"].notna()].merge(items, on="item_id", how="left")
    order = ev["event"] == "order_completed"
    viewed = ev["event"] == "product_viewed"
    ev = ev.assign(
        day=ev["ts"].dt.normalize(),
        order_id_o=ev["order_id"].where(order),
        gross=ev["revenue"].where(order),
        refunded=ev["revenue"].where(ev["event"] == "order_refunded"),
        is_order=order,
        order_ts=ev["ts"].where(order),
        viewed=viewed,
        added=ev["event"] == "product_added",
        views_cat=viewed & (ev["category"] == CATEGORY),
    )
    agg = (
        ev.groupby("user_id")
        .agg(
            first_seen=("ts", "min"),
            last_seen=("ts", "max"),
            active_days=("day", "nunique"),
            events=("ts", "size"),
            frequency=("order_id_o", "nunique"),
            gross=("gross", "sum"),
            refunded=("refunded", "sum"),
            order_lines=("is_order", "sum"),
            last_order_at=("order_ts", "max"),
            n_product_viewed=("viewed", "sum"),
            n_product_added=("added", "sum"),
            distinct_items=("item_id", "nunique"),
            views_cat=("views_cat", "sum"),
        )
        .rename(columns={"views_cat": VIEWS})
    )
    known = users[users["created_at"].isna() | (users["created_at"] < as_of)]
    p = known.set_index("user_id")[["created_at"]].join(agg, how="outer")
    counts = list(CORE_COUNTS)
    p[counts] = p[counts].fillna(0).astype("int64")
    p["monetary"] = (p["gross"].fillna(0.0) - p["refunded"].fillna(0.0)).clip(lower=0.0)
    p["recency_days"] = ((as_of - p["last_order_at"]) // pd.Timedelta(days=1)).astype("Int64")
    p["aov"] = (p["monetary"] / p["frequency"]).where(p["frequency"] > 0)
    return p.rename_axis("user_id").reset_index()[["user_id", *CORE]]


# -- workloads: each runs in a fresh process (common.run) and returns its figures -----------


def _write(table: Any, dump: str | None) -> None:
    if dump:
        import pyarrow.parquet as pq

        pq.write_table(table, dump)


def duckdb_full(db: str, config: str, dump: str | None = None) -> dict[str, Any]:
    """jingzhun's profile build on the store, each step timed: the pieces it materialises
    (by table), the profiles table, the tags and the activity tables."""
    from jingzhun.profile import activity
    from jingzhun.profile import build as build_module
    from jingzhun.workspace import Workspace

    steps: dict[str, float] = {}
    inside: list[str] = []  # the step running: a statement of the tags' is the tags' time

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if inside:
                return fn(*args, **kwargs)
            inside.append(name)
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                inside.pop()
                steps[name] = steps.get(name, 0.0) + time.perf_counter() - t

        return wrapper

    ws = Workspace.open(db, config=config)
    plain_run = ws.store.run

    def run_statement(query: str, params: Any = None) -> Any:
        # "CREATE OR REPLACE [TEMP] TABLE name AS …": time each table the build writes.
        words = query.split(None, 6)
        if words[:3] == ["CREATE", "OR", "REPLACE"]:
            name = (words[5] if words[3] == "TEMP" else words[4]).strip('"')
            return timed(name.removeprefix("_jz_profile_"), plain_run)(query, params)
        return plain_run(query, params)

    ws.store.run = run_statement  # type: ignore[method-assign]
    activity.write = timed("activity", activity.write)
    build_module.write_tags = timed("tags", build_module.write_tags)
    t = time.perf_counter()
    result = ws.profiles.build()
    seconds = time.perf_counter() - t
    ws.store.run = plain_run  # type: ignore[method-assign]
    if dump:
        _write(
            ws.store.con.sql(f"SELECT user_id, {', '.join(CORE)} FROM profiles").to_arrow_table(),
            dump,
        )
    ws.close()
    like_spark = seconds - steps.get("tags", 0.0) - steps.get("activity", 0.0)
    return {
        "seconds": round(seconds, 3),
        "build_seconds": round(result.seconds, 3),
        "without_tags_and_activity_seconds": round(like_spark, 3),
        "without_activity_seconds": round(seconds - steps.get("activity", 0.0), 3),
        "steps_seconds": {k: round(v, 3) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])},
        "users": result.users,
        "traits": len(result.traits) - 3,  # less user_id, as_of, created_at
    }


def duckdb_core(db: str, config: str, dump: str | None = None) -> dict[str, Any]:
    import ibis

    from jingzhun.profile.build import default_as_of
    from jingzhun.workspace import Workspace

    ws = Workspace.open(db, config=config, read_only=True)
    t = time.perf_counter()
    # As the build runs a piece: the expression compiled to DuckDB's SQL, then run.
    sql = ibis.to_sql(core_ibis(ws.store.ibis(), default_as_of(ws.store)), dialect="duckdb")
    compiled = time.perf_counter()
    table = ws.store.con.sql(sql).to_arrow_table()
    seconds = time.perf_counter() - t
    _write(table, dump)
    ws.close()
    return {
        "seconds": round(seconds, 3),
        "compile_seconds": round(compiled - t, 3),
        "query_seconds": round(seconds - (compiled - t), 3),
        "users": table.num_rows,
    }


def polars_core(lake: str, dump: str | None = None) -> dict[str, Any]:
    import polars as pl

    t = time.perf_counter()
    frame = core_polars(lake).collect()
    seconds = time.perf_counter() - t
    _write(frame.to_arrow(), dump)
    return {"seconds": round(seconds, 3), "users": frame.height, "polars": pl.__version__}


def pandas_core(lake: str, dump: str | None = None) -> dict[str, Any]:
    import pandas as pd
    import pyarrow as pa

    t = time.perf_counter()
    frame = core_pandas(lake)
    seconds = time.perf_counter() - t
    _write(pa.Table.from_pandas(frame, preserve_index=False), dump)
    return {"seconds": round(seconds, 3), "users": len(frame), "pandas": pd.__version__}


def spark_core(lake: str, dump: str | None = None) -> dict[str, Any]:
    from jingzhun.store.lake import Lake

    t = time.perf_counter()
    opened = Lake.open(lake)  # the JVM, the session, the lake's tables registered
    session = time.perf_counter() - t
    t = time.perf_counter()
    latest = opened.table("events").ts.max().execute()  # as build_on_lake finds as_of
    as_of = latest.to_pydatetime().replace(tzinfo=None) + timedelta(microseconds=1)
    table = core_ibis(opened.ibis(), as_of).to_pyarrow()
    seconds = time.perf_counter() - t
    jvm = _children_peak_rss_mb()
    opened.close()
    _write(table, dump)
    return {
        "seconds": round(seconds, 3),
        "session_seconds": round(session, 3),
        "users": table.num_rows,
        "jvm_peak_rss_mb": jvm,
    }


def _children_peak_rss_mb() -> float:
    """The peak resident memory (VmHWM) of this process's children: Spark's JVM."""
    total = 0
    me = str(os.getpid())
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            lines = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
        except OSError:
            continue
        if lines.get("PPid", "").strip() == me and "VmHWM" in lines:
            total += int(lines["VmHWM"].split()[0])
    return round(total / 1024, 1)


def polars_ingest(source: str, out: str) -> dict[str, Any]:
    import polars as pl

    t = time.perf_counter()
    pl.scan_parquet(source).unique(subset="event_id", keep="first").sink_parquet(out)
    seconds = time.perf_counter() - t
    rows = pl.scan_parquet(out).select(pl.len()).collect().item()
    return {"seconds": round(seconds, 3), "rows_written": rows}


def pandas_ingest(source: str, out: str) -> dict[str, Any]:
    import pandas as pd

    t = time.perf_counter()
    frame = pd.read_parquet(source).drop_duplicates(subset="event_id", keep="first")
    frame.to_parquet(out, index=False)
    seconds = time.perf_counter() - t
    return {"seconds": round(seconds, 3), "rows_written": len(frame)}


def where_time_goes(db: str) -> dict[str, Any]:
    """Where DuckDB's time goes in the core traits (not one of the timed runs), on a plain
    read-only connection to the store (the store's own is sealed against settings) with
    jingzhun's memory limit: one profiled run (its operators from DuckDB's JSON profile), then
    the query against itself without its three distinct counts. (Polars 2 has no per-node
    profile: ``LazyFrame.profile`` went with the streaming engine.)"""
    import duckdb
    import ibis

    from jingzhun.config import load_settings

    out: dict[str, Any] = {}
    memory = load_settings(None).store.memory_limit
    con = duckdb.connect(db, read_only=True, config={"memory_limit": memory})
    con.execute("SET TimeZone = 'UTC'")
    backend = ibis.duckdb.from_connection(con)
    as_of = con.execute("SELECT max(ts) FROM events").fetchall()[0][0] + timedelta(microseconds=1)
    sql = ibis.to_sql(core_ibis(backend, as_of), dialect="duckdb")
    with tempfile.TemporaryDirectory() as tmp:
        profile_file = Path(tmp) / "profile.json"
        con.execute("PRAGMA enable_profiling = 'json'")
        con.execute(f"PRAGMA profiling_output = '{profile_file}'")
        t = time.perf_counter()
        con.sql(sql).to_arrow_table()
        wall = time.perf_counter() - t
        con.execute("PRAGMA disable_profiling")
        doc = json.loads(profile_file.read_text(encoding="utf-8"))
    # What the exact distinct counts cost: the same query with COUNT(DISTINCT x) as COUNT(x)
    # (wrong numbers for active_days, frequency and distinct_items: a diagnostic), the two
    # taking turns, the fastest of three each.
    plain = sql.replace("COUNT(DISTINCT ", "COUNT(")
    turns: dict[str, list[float]] = {"core": [], "without_distinct": []}
    for _ in range(3):
        for name, query in (("core", sql), ("without_distinct", plain)):
            t = time.perf_counter()
            con.sql(query).to_arrow_table()
            turns[name].append(time.perf_counter() - t)
    con.close()
    operators: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        extra = node.get("extra_info") or {}
        what = {
            k: str(v)[:160]
            for k, v in extra.items()
            if k in ("Groups", "Aggregates", "Join Type", "Conditions", "Table", "CTE Name")
        }
        operators.append(
            {
                "operator": node.get("name"),
                "seconds": round(node.get("timing", 0.0), 3),
                "rows": node.get("intermediate_rows"),
                **what,
            }
        )
        for child in node.get("children", []):
            walk(child)

    for node in doc.get("operator", []):
        walk(node)
    operators.sort(key=lambda o: -o["seconds"])
    # DuckDB computes each COUNT(DISTINCT …) (active_days, frequency, distinct_items) as group
    # bys of its own, fed by a shared CTE of the base events and joined back; the one group
    # by with min/max/sum is every other aggregate.
    groups = [o for o in operators if o["operator"] == "HASH_GROUP_BY"]
    main_group = [o for o in groups if "min(" in o.get("Aggregates", "")]
    fanout = [o for o in operators if o["operator"] == "CTE"]
    out["duckdb_core"] = {
        "query_seconds": round(min(turns["core"]), 3),
        "query_without_distinct_counts_seconds": round(min(turns["without_distinct"]), 3),
        "profiled_wall_seconds": round(wall, 3),
        "cpu_seconds": round(doc.get("query", {}).get("cpu_time", 0.0), 3),
        "spilled_bytes": doc.get("system", {}).get("total_bytes_spilled"),
        "group_by_seconds": round(sum(o["seconds"] for o in groups), 3),
        "distinct_group_bys_seconds": round(
            sum(o["seconds"] for o in groups) - sum(o["seconds"] for o in main_group), 3
        ),
        "cte_fanout_seconds": round(sum(o["seconds"] for o in fanout), 3),
        "top_operators": operators[:12],
    }
    return out


def _child(function: str, **kwargs: Any) -> str:
    """Code for ``common.run``: call ``function`` of this module with ``kwargs`` in a fresh
    interpreter and keep what it returns (its ``seconds`` as ``work_seconds``: the wrapper
    writes its own ``seconds``)."""
    return (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import bench_scale\n"
        f"_r = bench_scale.{function}(**{kwargs!r})\n"
        "_r['work_seconds'] = _r.pop('seconds', None)\n"
        "_out.update(_r)\n"
    )


def _run_child(code: str, *, timeout: float) -> dict[str, Any]:
    """``common.run`` of a :func:`_child`: ``seconds`` is the workload's own figure, and
    ``in_process_seconds`` the whole exec (imports too); ``process_seconds`` adds the
    interpreter's start."""
    result = run(code, timeout=timeout)
    result["in_process_seconds"] = result.pop("seconds")
    result["seconds"] = result.pop("work_seconds")
    return result


# -- the parent: data, runs, checks, fit ---------------------------------------------------------


def _made_by() -> dict[str, int]:
    """What a cached store and lake must have been made by: this schema and lake format."""
    from jingzhun.store import latest_schema_version
    from jingzhun.store.lake import FORMAT

    return {"schema_version": latest_schema_version(), "lake_format": FORMAT}


def prepare(rows: int) -> dict[str, Any]:
    """The store and lake of size ``rows``, made once (events, users, items ingested; the
    lake made with ``lake init``) and cached under ``benchmarks/data/scale-ROWS`` — made
    again when jingzhun's schema or lake format has changed since. With the tables' row
    counts (``tables``)."""
    folder = DATA / f"scale-{rows}"
    paths: dict[str, Any] = {
        "folder": folder,
        "store": folder / "store.duckdb",
        "lake": folder / "lake",
        "events_parquet": shop_files(rows)["events_parquet"],
    }
    ready = folder / "ready"
    if ready.exists():
        made = json.loads(ready.read_text(encoding="utf-8"))
        if made.get("made_by") == _made_by():
            return {**paths, "tables": made["tables"]}
    files = shop_files(rows)
    tmp = DATA / f".scale-{rows}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    store = tmp / "store.duckdb"
    for kind, source in (
        ("items", files["items"]),
        ("users", files["users"]),
        ("events", files["events_parquet"]),
    ):
        _jingzhun(["--db", store, "ingest", kind, source, "--json"], timeout=3600)
    counts = json.loads(
        _jingzhun(["--db", store, "lake", "init", "--out", tmp / "lake", "--json"])["stdout"]
    )["tables"]
    made = {"made_by": _made_by(), "tables": counts}
    (tmp / "ready").write_text(json.dumps(made) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return {**paths, "tables": counts}


def _jingzhun(args: list[Any], *, timeout: float = 1800, check: bool = True) -> dict[str, Any]:
    result = run_command([JINGZHUN, *args], timeout=timeout)
    if check and result["returncode"] != 0:
        raise RuntimeError(f"jingzhun {' '.join(map(str, args))}: {result['stderr'][-2000:]}")
    return result


def _json_tail(text: str) -> dict[str, Any]:
    """The JSON object a ``--json`` command printed (its last line that is one)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON in {text[-500:]!r}")


def _best(runs: list[dict[str, Any]], key: str = "seconds") -> dict[str, Any]:
    fastest = min(runs, key=lambda r: r[key])
    return {**fastest, "all_seconds": [r[key] for r in runs]}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _measure(code: str, repeat: int, *, timeout: float = 3600) -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        load = _load()
        runs.append({**_run_child(code, timeout=timeout), "load_1m_before": load})
    return _best(runs)


def profiles(
    paths: dict[str, Any], config: Path, repeat: int, opts: Any, dumps: Path | None
) -> dict[str, Any]:
    """The profile workloads at one size. DuckDB, Polars and pandas take turns (A B C D A B
    C D …), so a machine whose speed drifts slows each alike; Spark runs after them."""
    db, lake = str(paths["store"]), str(paths["lake"])

    def dump(name: str) -> str | None:
        return str(dumps / f"{name}.parquet") if dumps else None

    workloads = {
        "jingzhun_duckdb_full": None,  # on a fresh copy of the store each run: it writes
        "jingzhun_duckdb_core": _child(
            "duckdb_core", db=db, config=str(config), dump=dump("jingzhun_duckdb_core")
        ),
        "polars_core": _child("polars_core", lake=lake, dump=dump("polars_core")),
        "pandas_core": _child("pandas_core", lake=lake, dump=dump("pandas_core")),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in workloads}
    for i in range(repeat):
        for name, code in workloads.items():
            with tempfile.TemporaryDirectory(prefix="jz-bench-scale-") as tmp:
                if code is None:
                    copy = Path(tmp) / "store.duckdb"
                    copy_store(db, copy)
                    code = _child(
                        "duckdb_full",
                        db=str(copy),
                        config=str(config),
                        dump=dump(name) if i == 0 else None,
                    )
                load = _load()
                runs[name].append({**_run_child(code, timeout=3600), "load_1m_before": load})
    out: dict[str, Any] = {name: _best(r) for name, r in runs.items()}
    if opts.spark:
        out["spark_full"] = spark_full(lake, config, opts.spark_repeat, opts.spark_timeout)
        try:
            out["spark_core"] = _measure(
                _child("spark_core", lake=lake, dump=dump("spark_core")),
                opts.spark_repeat,
                timeout=opts.spark_timeout,
            )
        except Exception as exc:  # Spark missing or failing: recorded, not the benchmark's end
            out["spark_core"] = {"available": False, "error": str(exc)[-600:]}
        if dumps and out["spark_full"].get("available"):
            spark_profiles = Path(lake) / "profiles"
            if spark_profiles.is_dir():
                import pyarrow.dataset as ds
                import pyarrow.parquet as pq

                table = ds.dataset(spark_profiles, format="parquet").to_table(
                    columns=["user_id", *CORE]
                )
                pq.write_table(table, dump("spark_full"))
    return out


def spark_full(lake: str, config: Path, repeat: int, timeout: float) -> dict[str, Any]:
    """``jingzhun --engine spark profile build`` as a command: its own figure (the build,
    after Spark started) and the process's (the interpreter, the JVM and the session too)."""
    runs = []
    for _ in range(repeat):
        load = _load()
        r = _jingzhun(
            ["--engine", "spark", "--config", config, "--db", lake, "profile", "build", "--json"],
            timeout=timeout,
            check=False,
        )
        if r["timed_out"] or r["returncode"] != 0:
            return {
                "available": False,
                "returncode": r["returncode"],
                "timed_out": r["timed_out"],
                "error": r["stderr"].strip()[-600:],
            }
        built = _json_tail(r["stdout"])
        runs.append(
            {
                "available": True,
                "seconds": built["seconds"],
                "process_seconds": r["process_seconds"],
                "startup_seconds": round(r["process_seconds"] - built["seconds"], 3),
                "users": built["users"],
                "traits": len(built["traits"]) - 3,
                "peak_rss_mb": r["peak_rss_mb"],
                "peak_tree_rss_mb": r["peak_tree_rss_mb"],
                "load_1m_before": load,
            }
        )
    return _best(runs)


def ingest(
    paths: dict[str, Any], config: Path, repeat: int, opts: Any, spark_state: dict[str, Any]
) -> dict[str, Any]:
    """The ingest workloads at one size, each into a new store or file; jingzhun, Polars and
    pandas take turns, Spark runs after them."""
    source = str(paths["events_parquet"])
    counts = ("rows_read", "inserted", "duplicates", "quarantined", "identities_linked")

    def jingzhun_duckdb(tmp: str) -> dict[str, Any]:
        store = Path(tmp) / "store.duckdb"
        r = _jingzhun(
            ["--config", config, "--db", store, "ingest", "events", source, "--json"],
            timeout=3600,
        )
        report = _json_tail(r["stdout"])
        return {
            "seconds": report["seconds"],
            **{k: r[k] for k in ("process_seconds", "peak_rss_mb", "peak_tree_rss_mb")},
            **{k: report[k] for k in counts},
        }

    def child(function: str) -> Any:
        return lambda tmp: _run_child(
            _child(function, source=source, out=f"{tmp}/events.parquet"), timeout=3600
        )

    workloads = {
        "jingzhun_duckdb": jingzhun_duckdb,
        "polars": child("polars_ingest"),
        "pandas": child("pandas_ingest"),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in workloads}
    for _ in range(repeat):
        for name, workload in workloads.items():
            with tempfile.TemporaryDirectory(prefix="jz-bench-scale-ingest-") as tmp:
                load = _load()
                runs[name].append({**workload(tmp), "load_1m_before": load})
    out: dict[str, Any] = {name: _best(r) for name, r in runs.items()}
    if opts.spark:
        if spark_state.get("unavailable"):
            out["spark"] = spark_state["unavailable"]
        else:
            out["spark"] = spark_ingest(source, config, opts.spark_repeat, opts.spark_timeout)
            if not out["spark"].get("available"):
                spark_state["unavailable"] = out["spark"]
    return out


def spark_ingest(source: str, config: Path, repeat: int, timeout: float) -> dict[str, Any]:
    """Events into a new lake on Spark: what ``jingzhun --engine spark --db LAKE ingest events
    FILE`` runs (:func:`spark_ingest_child`), in a fresh process so that Spark's start is timed
    apart. "Not available" when it says it does not run on Spark (the command's exit 2) or
    fails, with what it said."""
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="jz-bench-scale-lake-") as tmp:
            load = _load()
            code = _child(
                "spark_ingest_child", source=source, config=str(config), lake=f"{tmp}/lake"
            )
            try:
                runs.append({**_run_child(code, timeout=timeout), "load_1m_before": load})
            except Exception as exc:  # not on Spark yet, no Spark here, or a failure
                said = str(exc)
                return {
                    "available": False,
                    "reason": "not on Spark yet" if "does not run on" in said else "failed",
                    "message": said[-600:],
                }
    return _best(runs)


def spark_ingest_child(source: str, config: str, lake: str) -> dict[str, Any]:
    """The body of ``jingzhun --engine spark ingest events SOURCE`` (cli/ingest.py): the
    checks, a new lake opened on Spark, :func:`jingzhun.ingest.lake.ingest_on_lake`."""
    from jingzhun.config import load_settings
    from jingzhun.ingest.lake import check_ingest, ingest_on_lake
    from jingzhun.store.lake import Lake

    settings = load_settings(config)
    check_ingest("events", settings)
    t = time.perf_counter()
    opened = Lake.open(lake, master=settings.spark.master, create=True)
    session = time.perf_counter() - t
    t = time.perf_counter()
    result = ingest_on_lake(opened, settings, "events", [source])
    seconds = time.perf_counter() - t
    jvm = _children_peak_rss_mb()
    opened.close()
    return {
        "available": True,
        "seconds": round(seconds, 3),
        "session_seconds": round(session, 3),
        "reported_seconds": round(result.seconds, 3),
        "jvm_peak_rss_mb": jvm,
        **{k: getattr(result, k) for k in ("rows_read", "inserted", "duplicates", "quarantined")},
    }


# -- checks and fits ----------------------------------------------------------------------------


def differences(reference: Any, other: Any) -> dict[str, Any]:
    """How ``other``'s core traits differ from ``reference``'s, user by user: rows missing on
    either side, and per trait the users whose values differ (counts and times exactly,
    floats to :data:`REL` relative, nulls where the other has nulls). Empty: equal."""
    import polars as pl

    found: dict[str, Any] = {}
    if reference.height != other.height:
        found["rows"] = [reference.height, other.height]
    ref_ids, other_ids = set(reference["user_id"]), set(other["user_id"])
    if ref_ids != other_ids:
        found["users_only_in_reference"] = len(ref_ids - other_ids)
        found["users_only_in_other"] = len(other_ids - ref_ids)
    joined = reference.join(other, on="user_id", how="inner", suffix="_other")
    for name in CORE:
        a, b = pl.col(name), pl.col(f"{name}_other")
        if reference.schema[name].is_float():
            close = (a - b).abs() <= REL * pl.max_horizontal(a.abs(), b.abs())
        else:
            close = a.cast(reference.schema[name]) == b.cast(reference.schema[name])
        same = (a.is_null() & b.is_null()) | close.fill_null(False)
        bad = joined.select((~same).sum()).item()
        if bad:
            example = joined.filter(~same).select("user_id", name, f"{name}_other").head(3)
            found[name] = {
                "users": int(bad),
                "examples": [[str(v) for v in row] for row in example.rows()],
            }
    return found


def check_equal(dumps: Path, names: list[str]) -> dict[str, Any]:
    import polars as pl

    reference = pl.read_parquet(dumps / "jingzhun_duckdb_full.parquet").select("user_id", *CORE)
    result: dict[str, Any] = {"reference": "jingzhun_duckdb_full", "traits": list(CORE), "rel": REL}
    for name in names:
        path = dumps / f"{name}.parquet"
        if not path.exists():
            result[name] = {"checked": False}
            continue
        found = differences(reference, pl.read_parquet(path).select("user_id", *CORE))
        result[name] = {
            "checked": True,
            "equal": not found,
            **({"differences": found} if found else {}),
        }
    result["all_equal"] = all(
        v.get("equal", True) for k, v in result.items() if isinstance(v, dict) and "checked" in v
    )
    return result


def exponent(points: list[tuple[float, float]]) -> float | None:
    """b of log(seconds) = a + b·log(events), least squares; None under three sizes."""
    if len(points) < 3:
        return None
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return round(
        sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        / sum((x - mx) ** 2 for x in xs),
        3,
    )


#: The figure each exponent fits: (section, workload, key).
FITS = {
    "profiles": {
        "jingzhun_duckdb_full": "seconds",
        "jingzhun_duckdb_full_without_tags_and_activity": (
            "jingzhun_duckdb_full",
            "without_tags_and_activity_seconds",
        ),
        "jingzhun_duckdb_core": "seconds",
        "polars_core": "seconds",
        "pandas_core": "seconds",
        "spark_full": "seconds",
        "spark_full_with_start": ("spark_full", "process_seconds"),
        "spark_core": "seconds",
    },
    "ingest": {
        "jingzhun_duckdb": "seconds",
        "polars": "seconds",
        "pandas": "seconds",
        "spark": "seconds",
        "spark_with_start": ("spark", "process_seconds"),
    },
}


def fit(results: dict[str, Any], sizes: list[str], rows: dict[str, int]) -> dict[str, Any]:
    fits: dict[str, Any] = {}
    for section, series in FITS.items():
        fits[section] = {}
        for label, spec in series.items():
            workload, key = spec if isinstance(spec, tuple) else (label, spec)
            points = []
            for size in sizes:
                r = results[section].get(size, {}).get(workload, {})
                if r.get(key):
                    points.append((rows[size], r[key]))
            b = exponent(points)
            if b is not None:
                fits[section][label] = b
    return fits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default=",".join(DEFAULT_SIZES),
        help="comma-separated: tiny, S, mid, M or a number of events",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs of each DuckDB, Polars and pandas workload (best kept)",
    )
    parser.add_argument(
        "--spark-repeat", type=int, default=2, help="runs of each Spark workload (best kept)"
    )
    parser.add_argument("--spark-timeout", type=float, default=3600)
    parser.add_argument("--no-spark", dest="spark", action="store_false")
    parser.add_argument("--no-ingest", dest="ingest", action="store_false")
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="make (or check) the cached data of the sizes, measure nothing",
    )
    opts = parser.parse_args(argv)
    import importlib.util

    if importlib.util.find_spec("polars") is None:
        raise SystemExit("error: bench_scale needs Polars: pip install -e '.[bench]' (make bench)")
    sizes = [s.strip() for s in opts.sizes.split(",") if s.strip()]
    rows = {s: SIZES[s] if s in SIZES else int(s) for s in sizes}
    sizes.sort(key=lambda s: rows[s])
    config = DATA / "scale-jingzhun.toml"
    DATA.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG, encoding="utf-8")
    if opts.prepare_only:
        for size in sizes:
            t = time.perf_counter()
            prepare(rows[size])
            print(f"-- {size}: data ready in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        return

    started = time.perf_counter()
    results: dict[str, Any] = {"profiles": {}, "ingest": {}, "where_time_goes": {}}
    described: dict[str, Any] = {}
    equality: dict[str, Any] = {}
    spark_state: dict[str, Any] = {}
    load_before = os.getloadavg()
    for index, size in enumerate(sizes):
        t = time.perf_counter()
        print(f"-- {size}: {rows[size]:,} events: data", file=sys.stderr, flush=True)
        paths = prepare(rows[size])
        described[size] = {
            "source_events": rows[size],
            "simulated_users": max(1000, rows[size] // 10),
            "stored": paths["tables"],
            "data_seconds": round(time.perf_counter() - t),
        }
        with tempfile.TemporaryDirectory(prefix="jz-bench-scale-check-") as tmp:
            dumps = Path(tmp) if index == 0 else None
            print(f"-- {size}: profiles", file=sys.stderr, flush=True)
            results["profiles"][size] = profiles(paths, config, opts.repeat, opts, dumps)
            if dumps:
                equality = {
                    "size": size,
                    **check_equal(
                        dumps,
                        [
                            "jingzhun_duckdb_core",
                            "polars_core",
                            "pandas_core",
                            "spark_full",
                            "spark_core",
                        ],
                    ),
                }
                print(f"-- {size}: equal: {equality['all_equal']}", file=sys.stderr, flush=True)
        results["where_time_goes"][size] = run(_child("where_time_goes", db=str(paths["store"])))
        described[size]["profiles"] = results["profiles"][size]["jingzhun_duckdb_full"]["users"]
        if opts.ingest:
            print(f"-- {size}: ingest", file=sys.stderr, flush=True)
            results["ingest"][size] = ingest(paths, config, opts.repeat, opts, spark_state)
        print(f"-- {size}: done in {time.perf_counter() - t:.0f}s", file=sys.stderr, flush=True)

    fits = fit(results, sizes, rows)
    largest = sizes[-1]
    p = results["profiles"][largest]
    duck_core, polars = p["jingzhun_duckdb_core"]["seconds"], p["polars_core"]["seconds"]
    ratios: dict[str, Any] = {
        "size": largest,
        "duckdb_core_over_polars_core": round(duck_core / polars, 2),
        "duckdb_full_over_polars_core": round(p["jingzhun_duckdb_full"]["seconds"] / polars, 2),
        "pandas_core_over_duckdb_core": round(p["pandas_core"]["seconds"] / duck_core, 2),
    }
    spark = p.get("spark_full", {})
    if spark.get("available"):
        like = p["jingzhun_duckdb_full"]["without_tags_and_activity_seconds"]
        ratios.update(
            spark_full_over_duckdb_like_for_like=round(spark["seconds"] / like, 2),
            spark_full_with_start_over_duckdb_like_for_like=round(
                spark["process_seconds"] / like, 2
            ),
            spark_full_over_duckdb_without_activity=round(
                spark["seconds"] / p["jingzhun_duckdb_full"]["without_activity_seconds"], 2
            ),
            spark_full_over_duckdb_full=round(
                spark["seconds"] / p["jingzhun_duckdb_full"]["seconds"], 2
            ),
        )
    if p.get("spark_core", {}).get("seconds"):
        ratios["spark_core_over_duckdb_core"] = round(p["spark_core"]["seconds"] / duck_core, 2)
    met: dict[str, Any] = {
        "core_traits_equal": equality.get("all_equal"),
        "duckdb_core_faster_than_polars_core": duck_core < polars,
    }
    if "spark_full_over_duckdb_like_for_like" in ratios and largest == "M":
        met["spark_within_5x_of_duckdb_at_M"] = (
            ratios["spark_full_over_duckdb_like_for_like"] <= 5.0
        )
    for label in ("jingzhun_duckdb_full", "spark_full"):
        if label in fits["profiles"]:
            met[f"exponent_{label}_at_most_1.1"] = (
                fits["profiles"][label] <= TARGET["exponent_at_most"]
            )

    import importlib.metadata as md

    versions = {}
    for package in ("polars", "pandas", "pyspark", "ibis-framework"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    java = shutil.which("java")
    if java:
        said = run_command([java, "-version"], timeout=60)["stderr"].strip().splitlines()
        versions["java"] = said[0] if said else None
    save(
        "scale",
        {
            "workload": "profiles and ingest at growing sizes (first N events of an N/10-user simulation, seed 1)",
            "sizes": described,
            "core_traits": list(CORE),
            "config": CONFIG,
            "target": TARGET,
            "results": results,
            "equality": equality,
            "exponents": fits,
            "ratios": ratios,
            "met": met,
            "versions": versions,
            "load_1m_5m_15m": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in os.getloadavg()],
            },
            "seconds": round(time.perf_counter() - started),
            "notes": [
                "seconds: each workload's own figure in a fresh process, best of the runs (all_seconds keeps every run); "
                "process_seconds adds the interpreter (and for Spark the JVM and session) start.",
                "jingzhun_duckdb_full computes every trait, the category affinity, tags and activity; "
                "without_tags_and_activity_seconds: traits and affinity (the issue's like-for-like figure); "
                "without_activity_seconds: traits, affinity and tags, what spark_full computes.",
                "jingzhun_duckdb_core: jingzhun's own trait definitions restricted to the core traits (jingzhun has no setting "
                "that picks built-in traits), run on the store's DuckDB into Arrow. DuckDB reads its store; Polars and pandas "
                "read the lake's Parquet of the same rows.",
                "DuckDB runs with jingzhun's default memory limit (1GB); Polars and pandas have none.",
                "ingest: jingzhun validates, quarantines, dedupes against the store, links identities and stores in one "
                "transaction; polars and pandas only read, drop duplicate event ids and write Parquet: far less work.",
                "exponents: b of log(seconds) = a + b log(events), users growing with events (10 events a user).",
            ],
        },
    )


if __name__ == "__main__":
    main(sys.argv[1:])
