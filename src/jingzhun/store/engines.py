"""Running an Ibis expression on either engine: a store's DuckDB or a lake's Spark.

The stages' definitions are Ibis expressions over a backend's tables; most are compiled and
written where they run. What a stage reads back to Python — a check's few rows, a campaign's
audience — goes through here, because neither backend's own ``to_pandas`` serves both:
Ibis' DuckDB backend fetches with a method DuckDB 2 no longer has, and its PySpark backend
collects through pandas row by row where Spark's ``toArrow`` is columnar.
"""

from __future__ import annotations

from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa


def _is_spark(backend: Any) -> bool:
    return getattr(backend, "name", "") == "pyspark"


def tables(backend: Any) -> set[str]:
    """The tables and views ``backend`` holds (temporary ones too)."""
    if _is_spark(backend):
        return set(backend.list_tables())
    rows = backend.con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    return {r[0] for r in rows}


def spark_frame(backend: Any, expr: ir.Table) -> Any:
    """``expr`` as a Spark DataFrame on Ibis' PySpark ``backend``: compiled, with the
    in-memory tables it names (``ibis.memtable``) registered first as Ibis' own execution
    registers them."""
    backend._run_pre_execute_hooks(expr)
    return backend.raw_sql(backend.compile(expr))


def arrow(backend: Any, expr: ir.Table) -> pa.Table:
    """``expr``'s rows as Arrow, computed where ``backend`` is."""
    if _is_spark(backend):
        result = spark_frame(backend, expr)
        if hasattr(result, "toArrow"):  # pyspark >= 4.0
            return result.toArrow()
        return pa.Table.from_pandas(result.toPandas())  # pragma: no cover - pyspark 3.5
    return backend.con.sql(ibis.to_sql(expr, dialect="duckdb")).to_arrow_table()


def frame(backend: Any, expr: ir.Table) -> pd.DataFrame:
    """``expr``'s rows as a DataFrame (as ``store.sql(…).df()`` gives them on DuckDB)."""
    if _is_spark(backend):
        return arrow(backend, expr).to_pandas()
    return backend.con.sql(ibis.to_sql(expr, dialect="duckdb")).df()


def column(backend: Any, expr: ir.Table, name: str) -> list[Any]:
    """One column of ``expr``'s rows, as Python values."""
    return frame(backend, expr.select(name))[name].tolist()


def scalar(backend: Any, expr: ir.Scalar) -> Any:
    """A scalar expression's value (None for NULL)."""
    value = frame(backend, expr.name("v").as_table())["v"].iloc[0]
    return None if pd.isna(value) else value


__all__ = ["arrow", "column", "frame", "scalar", "spark_frame", "tables"]
