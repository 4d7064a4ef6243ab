"""Deterministic assignment: the same number in SQL and Python, shares that hold."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from scipy import stats

from jingzhun.campaign.assign import pick, pick_sql, unit, unit_sql


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("CREATE TABLE u AS SELECT 'u' || i::VARCHAR AS user_id FROM range(20000) t(i)")
    return c


def test_sql_and_python_give_the_same_number(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        f"SELECT user_id, {unit_sql('user_id')} FROM u ORDER BY user_id LIMIT 500",
        ["spring", "control"],
    ).fetchall()
    for user, value in rows:
        assert value == unit("spring", "control", user)
    # Awkward ids: non-ASCII, quotes, the separator itself.
    for user in ["张伟", "o'brien", "a\x1fb", ""]:
        got = con.execute(f"SELECT {unit_sql('?')}", ["c", "s", user]).fetchall()[0][0]
        assert got == unit("c", "s", user)


def test_the_numbers_are_uniform_and_independent_across_salts(
    con: duckdb.DuckDBPyConnection,
) -> None:
    a, b = zip(
        *con.execute(
            f"SELECT {unit_sql('user_id')}, {unit_sql('user_id')} FROM u",
            ["spring", "control", "spring", "variant"],
        ).fetchall(),
        strict=True,
    )
    a, b = np.array(a), np.array(b)
    assert ((a >= 0) & (a < 1)).all()
    assert stats.kstest(a, "uniform").pvalue > 0.001
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.03
    # Another campaign draws other arms.
    other = np.array(
        [
            r[0]
            for r in con.execute(
                f"SELECT {unit_sql('user_id')} FROM u", ["autumn", "control"]
            ).fetchall()
        ]
    )
    assert abs(np.corrcoef(a, other)[0, 1]) < 0.03


def test_pick_follows_the_weights(con: duckdb.DuckDBPyConnection) -> None:
    weights = [0.2, 0.3, 0.5]
    assert [pick(u, weights) for u in (0.0, 0.19, 0.2, 0.49, 0.5, 0.999999)] == [0, 0, 1, 1, 2, 2]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE v AS SELECT user_id, {unit_sql('user_id')} AS x FROM u",
        ["c", "v"],
    )
    sql, params = pick_sql("x", ["a", "b", "c"], weights)
    rows = con.execute(f"SELECT x, {sql} FROM v", params).fetchall()
    for x, name in rows[:2000]:
        assert name == "abc"[pick(x, weights)]
    counts = np.array([sum(1 for _, n in rows if n == k) for k in "abc"])
    assert stats.chisquare(counts, np.array(weights) * len(rows)).pvalue > 0.001
    one, p1 = pick_sql("x", ["only"], [1.0])
    assert {r[0] for r in con.execute(f"SELECT {one} FROM v", p1).fetchall()} == {"only"}
