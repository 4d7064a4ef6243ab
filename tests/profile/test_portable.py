"""The trait definitions in forms both engines run alike (issue 19): time differences to the
microsecond, ordered lists and maps without an ordered aggregate, and every built-in trait and
every function of the expression language compiled for Spark — without starting Spark."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import ibis
import pytest
from ibis.common.exceptions import IbisError

from jingzhun.config import Settings
from jingzhun.profile import expr as ex
from jingzhun.profile import traits as tr
from jingzhun.workspace import Workspace

NOW = datetime(2024, 3, 11, 0, 0, 0, 250_000)

#: (later, earlier): sub-second parts, a day less and more a microsecond, negative spans, a
#: span across 2^30 s after the epoch (2004-01-10), where epoch seconds as doubles change ulp.
PAIRS: list[tuple[datetime, datetime]] = [
    (NOW, NOW),
    (NOW, NOW - timedelta(microseconds=1)),
    (NOW, NOW - timedelta(days=1) + timedelta(microseconds=1)),
    (NOW, NOW - timedelta(days=1)),
    (NOW, NOW - timedelta(days=1, microseconds=1)),
    (NOW, datetime(2024, 1, 1, 23, 59, 59, 999_999)),
    (NOW, datetime(2003, 12, 31, 7, 0, 0, 123_457)),
    (datetime(2003, 12, 31, 7, 0, 0, 123_457), NOW),
    (datetime(2024, 3, 9, 23, 0), datetime(2024, 3, 10, 0, 30, 0, 1)),
]


@pytest.fixture(scope="module")
def con() -> Iterator[Any]:
    backend = ibis.duckdb.connect()
    yield backend
    backend.disconnect()


def _micros(later: datetime, earlier: datetime) -> int:
    return (later - earlier) // timedelta(microseconds=1)


def test_time_differences_are_exact_to_the_microsecond(con: Any) -> None:
    t = ibis.memtable(
        {"i": list(range(len(PAIRS))), "a": [p[0] for p in PAIRS], "b": [p[1] for p in PAIRS]},
        schema={"i": "int64", "a": "timestamp", "b": "timestamp"},
    )
    out = con.execute(
        t.select(
            "i",
            us=ex.micros_between(t.a, t.b),
            s=ex.seconds_between(t.a, t.b),
            d=ex.days_between(t.a, t.b),
        ).order_by("i")
    )
    for (later, earlier), us, s, d in zip(PAIRS, out["us"], out["s"], out["d"], strict=True):
        exact = _micros(later, earlier)
        assert us == exact
        assert s == exact / 1e6  # one rounding of the exact microseconds
        assert d == exact // 86_400_000_000  # floor, negative spans too
    assert str(out["d"].dtype).lower() == "int64"


def test_a_date_counts_from_its_midnight(con: Any) -> None:
    t = ibis.memtable({"d": [date(2024, 3, 9)]}, schema={"d": "date"})
    now = ibis.literal(NOW, type="timestamp")
    got = con.execute(t.select(us=ex.micros_between(now, t.d), d=ex.days_between(now, t.d)))
    assert got["us"][0] == _micros(NOW, datetime(2024, 3, 9))
    assert got["d"][0] == 2


def test_days_since_counts_whole_days_to_the_microsecond(con: Any) -> None:
    t = ibis.memtable(
        {"ts": [NOW - timedelta(days=1) + timedelta(microseconds=1), NOW - timedelta(days=1)]},
        schema={"ts": "timestamp"},
    )
    now = ibis.literal(NOW, type="timestamp")
    days = ex.compile_ibis(ex.parse("days_since(ts)"), t, now=now)
    assert con.execute(t.select(d=days))["d"].tolist() == [0, 1]


def test_days_since_of_a_number_names_the_function() -> None:
    t = ibis.table({"x": "int64"}, name="t")
    now = ibis.literal(NOW, type="timestamp")
    with pytest.raises(ex.ExprError, match=r"cannot apply days_since\(\) to number at column 1"):
        ex.compile_ibis(ex.parse("days_since(x) > 1"), t, now=now, source="days_since(x) > 1")


def test_ordered_values_and_maps_follow_the_key(con: Any) -> None:
    # Rows in no particular order; keys unique per group, as the traits give them.
    t = ibis.memtable(
        {
            "g": ["a", "a", "a", "b", "a", "b"],
            "r": [2, 0, 3, 1, 1, 0],
            "cat": ["toys", "Home", "beauty", "x", "baby", "y"],
            "v": ["z", "w", "q", "x", "y", "y"],
            "s": [0.25, 0.5, 0.125, 1.0, 0.0625, 2.0],
        }
    )
    out = con.execute(
        t.group_by("g")
        .aggregate(values=tr._in_order(t.r, t.v), shares=tr._ordered(t.cat, t.s))
        .order_by("g")
    )
    assert [list(v) for v in out["values"]] == [["w", "y", "z", "q"], ["y", "x"]]
    # Keys in byte order, as ORDER BY sorts text: upper case first.
    first = out["shares"][0]
    assert list(first) == ["Home", "baby", "beauty", "toys"]
    assert first == {"Home": 0.5, "baby": 0.0625, "beauty": 0.125, "toys": 0.25}
    assert out["shares"][1] == {"x": 1.0, "y": 2.0}


# -- compiled for Spark: nothing a trait or a rule uses is missing from Ibis' PySpark backend ---

RULES = [
    "monetary > 0 and monetary >= p90(monetary)",
    "quantile(aov, 0.3) < aov or median(monetary) > 1",
    "mean(aov) > 1 or min(aov) < max(aov)",
    "abs(-aov) > 1 and coalesce(aov, 0) % 2 = 1",
    "lower(preferred_channel) = 'app' and preferred_channel not in ('x', 'y')",
    "days_since(last_seen) > 3 and aov between 1 and 2 and aov is not null",
    "top_categories contains 'beauty' and last_items contains 'i1'",
    "monetary / frequency > 1 and not (frequency - 1 >= 2 * 3)",
]


@pytest.fixture(scope="module")
def definitions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every trait definition over an empty store's tables (compiled, never run)."""
    ws = Workspace.open(tmp_path_factory.mktemp("portable") / "store.duckdb", config=None)
    try:
        cfg = Settings().profile
        at = ibis.literal(NOW, type="timestamp")
        events, items = tr.base_events(ws.store.ibis(), at)
        users = ws.store.ibis().table("users")
        ctx = tr.Ctx(events, items, users, at, cfg.half_life_days, cfg.weights, cfg.last_items)
        agg = events.group_by("user_id").aggregate(**{a.name: a.fn(events) for a in tr.AGGS})
        p = agg.left_join(users.select("user_id", "created_at"), "user_id").drop("user_id_right")
        for table in tr.TABLES:
            p = p.left_join(table.fn(ctx), "user_id").drop("user_id_right")
        p = p.mutate(**{d.name: d.fn(p, ctx) for d in tr.DERIVED})
        found: dict[str, Any] = {"agg": agg, "affinity": tr.affinity(ctx), "profile": p}
        found.update({f"table {t.name}": t.fn(ctx) for t in tr.TABLES})
        for rule in RULES:
            cond = ex.compile_condition(ex.parse(rule), p, source=rule, where="rule", now=at)
            found[f"rule {rule}"] = p.filter(cond).select("user_id")
        where = "event = 'order_completed' and days_since(ts) < 30 and category in ('beauty')"
        cond = ex.compile_condition(ex.parse(where), events, source=where, where="w", now=at)
        found["event filter"] = events.aggregate(n=events.count(where=cond))
        yield found
    finally:
        ws.close()


def _pyspark_sql(expr: Any) -> str:
    pytest.importorskip("pyspark")
    _ = ibis.pyspark  # registers the backend's options, which its compiler reads
    return ibis.to_sql(expr, dialect="pyspark")


def test_every_trait_and_rule_compiles_for_pyspark(definitions: dict[str, Any]) -> None:
    refused = {}
    for name, expr in definitions.items():
        try:
            _pyspark_sql(expr)
        except IbisError as exc:  # e.g. OperationNotDefinedError, UnsupportedOperationError
            refused[name] = f"{type(exc).__name__}: {exc}"
    assert not refused, refused


def test_the_forms_chosen_for_each_engine(definitions: dict[str, Any]) -> None:
    profile = definitions["profile"]
    duck = ibis.to_sql(profile, dialect="duckdb")
    spark = _pyspark_sql(profile)
    # Time differences in exact microseconds; not epoch seconds (whole seconds on Spark).
    assert "DATE_DIFF('MICROSECOND'" in duck and "EPOCH(" not in duck
    assert "DATEDIFF(MICROSECOND" in spark and "UNIX_TIMESTAMP" not in spark
    # Ordered lists as sorted structs made a map: no ordered aggregate, no lambda.
    assert "MAP_FROM_ENTRIES(LIST_SORT(ARRAY_AGG(" in duck.replace("\n", "").replace(" ", "")
    assert "MAP_FROM_ENTRIES(ARRAY_SORT(COLLECT_LIST(STRUCT(" in spark.replace("\n", "")
    assert "->" not in duck  # Ibis writes lambdas as x -> …, which DuckDB 2 refuses
