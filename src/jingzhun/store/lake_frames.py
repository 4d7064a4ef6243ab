"""Spark DataFrames over a lake: what a stage running on Spark needs beyond Ibis' expressions.

A stage's definitions are Ibis expressions and run on a lake as they run on a store
(:meth:`Lake.ibis`). Distributed scoring (issue 19) also applies a trained Python model to
the rows where they are, with ``mapInPandas``, and ranks every scored user among all of them;
those steps are Spark's own, and live here once for every stage:

- :func:`frame`: an Ibis expression as a Spark DataFrame;
- :func:`numbered`: each row's position in a global order, without one partition;
- :func:`replace_rows`: a table's rows of one kind replaced, the rest kept (one rename);
- :func:`driver_python`: Spark's local Python workers running the driver's interpreter;
- :func:`model_store`: the store whose registry holds the model a lake is scored with.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jingzhun.errors import NotFoundError
from jingzhun.store.engines import spark_frame
from jingzhun.store.store import Store, check_store_path

if TYPE_CHECKING:
    from pathlib import Path

    import ibis.expr.types as ir
    from pyspark.sql import Column, DataFrame, SparkSession

    from jingzhun.config import Settings
    from jingzhun.store.lake import Lake

#: ``monotonically_increasing_id`` keeps the partition in the bits above these.
_ROW_BITS = 33


def model_store(path: str | Path, settings: Settings) -> Store:
    """The store at ``path`` (``--from-store``) opened read-only, for the model a lake is
    scored with: a lake holds data, the store's registry the models. Its path is checked and
    named as the flag that gave it."""
    where = check_store_path(path, option="--from-store")
    if not where.is_file():
        raise NotFoundError(
            f"--from-store: no store at {where}",
            hint="name the DuckDB store the model was trained in",
        )
    return Store.open(where, settings, read_only=True)


def frame(lake: Lake, expr: ir.Table) -> DataFrame:
    """``expr`` (an Ibis expression over the lake's tables) as a Spark DataFrame: compiled by
    Ibis' PySpark backend, as :meth:`Lake.write` writes one."""
    return spark_frame(lake.backend, expr)


def require(lake: Lake, table: str, *, hint: str) -> None:
    """A :class:`NotFoundError` naming ``table`` when the lake does not hold it."""
    if table not in lake.tables():
        raise NotFoundError(f"the lake at {lake.path} has no {table} table", hint=hint)


def latest_as_of(lake: Lake) -> datetime:
    """Just after the lake's latest event (a store's ``default_as_of``): what a stage run
    without ``as_of`` sees."""
    latest = lake.table("events").ts.max().execute()
    if latest is None or latest != latest:  # NULL or NaT: no events
        raise NotFoundError("the lake has no events", hint="ingest events first")
    when = latest.to_pydatetime() if hasattr(latest, "to_pydatetime") else latest
    return when.replace(tzinfo=None) + timedelta(microseconds=1)


def driver_python(session: SparkSession) -> None:
    """Make a local session's Python workers run this interpreter.

    PySpark starts its workers with ``$PYSPARK_PYTHON``, else ``python3`` from PATH: under a
    virtualenv that is another Python, without jingzhun, pandas or pyarrow, and every
    ``mapInPandas`` fails in the worker. A local master's workers run on this machine, so the
    driver's interpreter is the right one; a cluster's come from its own configuration
    (``spark.pyspark.python``), and an explicit ``$PYSPARK_PYTHON`` is left alone."""
    context = session.sparkContext
    if str(context.master).startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        context.pythonExec = sys.executable


def numbered(rows: DataFrame, order: list[Column], column: str = "_row") -> tuple[DataFrame, int]:
    """``rows`` with ``column``: each row's position (1, 2, …) in ``order``, and how many rows.

    ``order`` must be total (end with a key), or tied rows take their positions in an order
    Spark chooses. A window over the whole table would gather every row in one partition;
    this sorts where the rows are (range partitions), counts each partition's rows (one
    small collect) and adds its offset. The sorted rows are checkpointed first (reliably when
    the session has a checkpoint folder, else locally): a sort computed twice may cut its
    partitions elsewhere, and the positions must not move between the count and their use.
    """
    from pyspark.sql import functions as F

    ordered = rows.orderBy(*order).withColumn("_jz_id", F.monotonically_increasing_id())
    if ordered.sparkSession.sparkContext.getCheckpointDir():
        ordered = ordered.checkpoint(eager=True)
    else:
        ordered = ordered.localCheckpoint(eager=True)
    part = F.shiftright(F.col("_jz_id"), _ROW_BITS)
    counts = {int(p): int(n) for p, n in ordered.groupBy(part.alias("p")).count().collect()}
    offsets: list[int] = []
    total = 0
    for p in range(max(counts, default=-1) + 1):
        offsets.append(total)
        total += counts.get(p, 0)
    if not offsets:
        return ordered.drop("_jz_id").withColumn(column, F.lit(0).cast("long")), 0
    offset = F.element_at(F.array(*(F.lit(o) for o in offsets)), (part + 1).cast("int"))
    local = F.col("_jz_id").bitwiseAND((1 << _ROW_BITS) - 1)
    return ordered.withColumn(column, offset + local + 1).drop("_jz_id"), total


def replace_rows(lake: Lake, table: str, rows: DataFrame, keep: Column | None = None) -> int:
    """Write ``table`` as ``rows`` and, when it exists, its rows that ``keep`` selects (the
    others are the ones replaced), in one rename (:meth:`Lake.write_frame`). The new rows
    take the existing table's column types. How many rows the table holds now."""
    if keep is not None and table in lake.tables():
        old = lake.session.read.parquet(str(lake.path / table))
        from pyspark.sql import functions as F

        rows = old.filter(keep).unionByName(
            rows.select(*(F.col(f.name).cast(f.dataType) for f in old.schema))
        )
    return lake.write_frame(table, rows)


def broadcast(session: SparkSession, value: Any) -> Any:
    """``value`` sent once to every worker (a model's bytes, the catalog), not with each task."""
    return session.sparkContext.broadcast(value)


__all__ = [
    "broadcast",
    "driver_python",
    "frame",
    "latest_as_of",
    "model_store",
    "numbered",
    "replace_rows",
    "require",
]
