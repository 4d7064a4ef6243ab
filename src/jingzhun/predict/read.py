"""What other parts read of the predict stage's latest scores (the ``scores`` table).

``predict score`` (and ``predict clv``) replace one kind of score at a time, so the table holds
the latest scores of each kind. The report, the CLI and the coming server and campaign stages
call these functions instead of querying it. Every value reaches DuckDB as a ``?`` parameter.

Examples
--------
>>> from jingzhun.predict import read                                   # doctest: +SKIP
>>> read.user_scores(store, "u42")[["score", "value", "percentile"]]    # doctest: +SKIP
        score     value  percentile
0       churn  0.083121    0.212000
1  propensity  0.412870    0.905000
"""

from __future__ import annotations

import json
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from jingzhun.errors import NotFoundError
from jingzhun.store import Store, engines
from jingzhun.store.sql import Sql

__all__ = ["score_query", "score_values", "scored", "scores", "user_scores"]


def scores(store: Store, kind: str | None = None) -> pd.DataFrame:
    """The latest scores of every user, of one kind or of all.

    Parameters
    ----------
    kind : str, optional
        One kind of score (propensity, churn, uplift, clv, expected_orders, p_alive); default
        every kind. A kind never scored gives an empty frame.

    Returns
    -------
    DataFrame
        The ``scores`` table's columns: ``user_id``, ``score`` (the kind), ``value``,
        ``percentile``, ``model_id``, ``reasons`` (JSON text), ``as_of``, ``computed_at``;
        ordered by kind, highest value first (ties by user id).
    """
    if kind is None:
        return store.sql("SELECT * FROM scores ORDER BY score, value DESC, user_id").df()
    return store.sql(
        "SELECT * FROM scores WHERE score = ? ORDER BY value DESC, user_id", [kind]
    ).df()


def user_scores(store: Store, user_id: str) -> pd.DataFrame:
    """One user's latest score of each kind, with the reasons behind it.

    Parameters
    ----------
    user_id : str
        The user.

    Returns
    -------
    DataFrame
        ``score`` (the kind), ``value``, ``percentile`` (0-1, 1 = highest), ``model_id``,
        ``reasons`` (a list of ``{"feature", "value", "effect"}`` dicts, strongest first, or
        None where the model gives none), ``as_of`` and ``computed_at``; one row per kind,
        ordered by kind. Empty for a user never scored.
    """
    frame = store.sql(
        """
        SELECT score, value, percentile, model_id, reasons, as_of, computed_at
        FROM scores WHERE user_id = ? ORDER BY score
        """,
        [user_id],
    ).df()
    # JSON arrives as text, a missing value as NaN.
    frame["reasons"] = [json.loads(r) if isinstance(r, str) else None for r in frame["reasons"]]
    return frame


def score_values(store: Store, kind: str) -> pd.Series:
    """The values of one kind of score, for its distribution.

    Parameters
    ----------
    kind : str
        The kind of score (propensity, churn, uplift, clv, expected_orders, p_alive).

    Returns
    -------
    Series
        ``value``, one per user scored, in no particular order; empty when the kind was
        never scored.
    """
    return store.sql("SELECT value FROM scores WHERE score = ?", [kind]).df()["value"]


def scored(backend: Any, kind: str, *, param: str = "score") -> ir.Table:
    """``user_id`` and ``value`` of one kind of score, one row per user scored, as an Ibis
    expression over ``backend`` (a store's DuckDB or a lake's Spark).

    Raises
    ------
    NotFoundError
        If no user has that score yet (the hint says which command writes it).
    """
    s = backend.table("scores") if "scores" in engines.tables(backend) else None
    rows = None if s is None else s.filter(s.score == kind).select("user_id", "value")
    if rows is None or not engines.scalar(backend, rows.limit(1).count()):
        command = "jingzhun predict clv" if kind == "clv" else f"jingzhun predict score {kind}"
        raise NotFoundError(f"{param}: no user has a {kind!r} score yet", hint=f"run {command}")
    return rows


def score_query(store: Store, kind: str, *, param: str = "score") -> tuple[Sql, list[object]]:
    """:func:`scored` on the store, as SQL and its parameters (none)."""
    return Sql(ibis.to_sql(scored(store.ibis(), kind, param=param), dialect="duckdb")), []
