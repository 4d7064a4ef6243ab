"""Where a lake keeps its segment runs (``--engine spark``): four lake tables that mirror the
store's, column for column.

================== =====================================================================
lake table         the store's
================== =====================================================================
segment_runs       the ``segment_runs`` view of the registry (``models``, kind segment):
                   run_id, name, method, params, features, metrics (JSON text), users,
                   segments, as_of, model (the .npz artefact; NULL for RFM), active,
                   created_at
segment_members    ``segment_members``: run_id, user_id, segment, fitted, assigned_at
segment_portraits  ``segment_portraits``: run_id, segment, label, users, share,
                   revenue_share, traits, top_categories (JSON text)
segment_projection ``segment_projection``: run_id, user_id, segment, x, y
================== =====================================================================

Why mirror tables rather than a registry of its own: a lake is the store's tables as Parquet,
so a run in a lake is read with the same names and columns as a run in a store (by Spark, by
DuckDB, by pandas), and the run ids are the registry's (``NAME-N``). A lake has no
transactions: each table is replaced in one rename (:meth:`Lake.write`), and ``segment_runs``
is written last, so a run that failed half way has no record — its rows in the other tables
are orphans, which the next run that takes the same id replaces. One writer at a time, as with
a DuckDB store. Appending a run rewrites each table with the earlier runs' rows (Parquet is not
appended to in place); partitioning ``segment_members`` by ``run_id`` would write only the new
run's folder.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from jingzhun.contracts.time import utcnow
from jingzhun.store.lake import read_rows
from jingzhun.store.registry import _json

if TYPE_CHECKING:
    from pathlib import Path

    from jingzhun.store.lake import Lake
    from jingzhun.store.store import Store

#: Each lake table of a run and its columns (Ibis types), in the store's column order.
SCHEMAS: dict[str, dict[str, str]] = {
    "segment_runs": {
        "run_id": "string",
        "name": "string",
        "method": "string",
        "params": "string",
        "features": "string",
        "metrics": "string",
        "users": "int64",
        "segments": "int64",
        "as_of": "timestamp",
        "model": "binary",
        "active": "boolean",
        "created_at": "timestamp",
    },
    "segment_members": {
        "run_id": "string",
        "user_id": "string",
        "segment": "string",
        "fitted": "boolean",
        "assigned_at": "timestamp",
    },
    "segment_portraits": {
        "run_id": "string",
        "segment": "string",
        "label": "string",
        "users": "int64",
        "share": "float64",
        "revenue_share": "float64",
        "traits": "string",
        "top_categories": "string",
    },
    "segment_projection": {
        "run_id": "string",
        "user_id": "string",
        "segment": "string",
        "x": "float64",
        "y": "float64",
    },
}


def next_run_id(series: str, taken: list[str]) -> str:
    """``SERIES-N``: N one more than the ids under ``series-`` so far, skipping any taken —
    the rule of the store's registry (``Registry._new_id``)."""
    n = sum(1 for t in taken if t.startswith(f"{series}-"))
    while True:
        n += 1
        if f"{series}-{n}" not in taken:
            return f"{series}-{n}"


def runs(lake: Lake) -> pd.DataFrame:
    """The lake's segment runs (``segment_runs``), oldest first; empty before the first."""
    if "segment_runs" not in lake.tables():
        return pd.DataFrame({c: [] for c in SCHEMAS["segment_runs"]})
    table = lake.table("segment_runs")
    return table.order_by("created_at").to_pandas()


def load_runs(lake: Path, store: Store) -> None:
    """The lake's segment runs in ``store`` (a new scratch store) as a store keeps them, so
    the store's own readers — ``segment list``, ``show``, ``export`` — read a lake's runs with
    the same code: each run's registry row (the inverse of the store's ``segment_runs`` view,
    as migration 006 moved the old table into the registry), its portraits and projection.
    Read from the lake's Parquet on this machine by pyarrow, without Spark: runs, portraits
    and projections are small (a few rows a segment, at most 4,000 points a run)."""
    runs = read_rows(lake, "segment_runs")
    if runs is None or not runs.num_rows:
        return
    store.con.from_arrow(runs).query(
        "_jz_lake_runs",
        """INSERT INTO models (model_id, kind, name, method, params, features, metrics, info,
                              as_of, fit_seconds, artefact, path, active, created_at)
           SELECT run_id, 'segment', name, method, params, features, metrics,
                  json_object('users', users, 'segments', segments),
                  as_of, NULL, model, NULL, active, created_at
           FROM _jz_lake_runs""",
    ).fetchall()
    for name in ("segment_portraits", "segment_projection"):
        _load(store, name, read_rows(lake, name))


def load_members(lake: Path, store: Store, run_id: str) -> None:
    """The members of the lake's run ``run_id`` in ``store`` (after :func:`load_runs`), read
    for that run only (Parquet's row-group statistics skip the other runs' rows)."""
    import pyarrow.dataset as pads

    _load(
        store, "segment_members", read_rows(lake, "segment_members", pads.field("run_id") == run_id)
    )


def _load(store: Store, name: str, rows: Any) -> None:
    if rows is not None:
        store.insert_arrow(name, rows.select(list(SCHEMAS[name])))


def _rows(name: str, frame: pd.DataFrame) -> ir.Table:
    schema = SCHEMAS[name]
    return ibis.memtable(frame[list(schema)], schema=schema)


def _append(
    lake: Lake, name: str, new: ir.Table, run_id: str, *, update: Any = None, replace: bool = True
) -> None:
    """Replace the lake table ``name`` with its rows but those of ``run_id`` (a failed
    attempt's orphans; all its rows kept when not ``replace``) and ``new``'s; ``update`` maps
    the kept rows first (Ibis)."""
    schema = ibis.schema(SCHEMAS[name])
    parts = [new]
    if name in lake.tables():
        kept = lake.table(name)
        if replace:
            kept = kept.filter(kept.run_id != run_id)
        if update is not None:
            kept = update(kept)
        parts.insert(0, kept.select(*schema.names).cast(schema))
    lake.write(name, parts[0].union(*parts[1:], distinct=False) if len(parts) > 1 else new)


def add_members(lake: Lake, run_id: str, new: pd.DataFrame, *, at: datetime) -> None:
    """Add ``new`` (user_id, segment) to the run ``run_id``'s members in the lake, assigned
    at ``at`` and not fitted (``segment assign``: the store's ``_insert_members``); the rows
    there are kept."""
    rows = new[["user_id", "segment"]].assign(run_id=run_id, fitted=False, assigned_at=at)
    _append(lake, "segment_members", _rows("segment_members", rows), run_id, replace=False)


def write_run(
    lake: Lake,
    name: str,
    method: str,
    params: dict[str, Any],
    feats: list[str],
    metrics: dict[str, Any],
    members: pd.DataFrame,
    portrait: pd.DataFrame,
    model: bytes | None,
    as_of: datetime | None,
    projection: pd.DataFrame | None,
) -> str:
    """Record a run in the lake (the arguments of the store's ``runs._write``): members,
    portraits and projection first, the run's record last; the run becomes the active one of
    its name. Its id."""
    earlier = runs(lake)
    run_id = next_run_id(name, [str(r) for r in earlier.run_id])
    now = utcnow()
    rows = members[["user_id", "segment"]].assign(run_id=run_id, fitted=True, assigned_at=now)
    _append(lake, "segment_members", _rows("segment_members", rows), run_id)
    _append(
        lake,
        "segment_portraits",
        _rows("segment_portraits", portrait.assign(run_id=run_id)),
        run_id,
    )
    if projection is not None and len(projection):
        _append(
            lake,
            "segment_projection",
            _rows("segment_projection", projection.assign(run_id=run_id)),
            run_id,
        )
    record = pd.DataFrame(
        [
            {
                "run_id": run_id,
                "name": name,
                "method": method,
                "params": _json(dict(params)),
                "features": _json(list(feats)),
                "metrics": _json(dict(metrics)),
                "users": len(members),
                "segments": int(members.segment.nunique()),
                "as_of": as_of,
                "model": model,
                "active": True,
                "created_at": now,
            }
        ]
    )

    def retire(kept: ir.Table) -> ir.Table:  # the name's earlier active run becomes history
        return kept.mutate(active=kept.active & (kept.name != name))

    _append(lake, "segment_runs", _rows("segment_runs", record), run_id, update=retire)
    return run_id


__all__ = [
    "SCHEMAS",
    "add_members",
    "load_members",
    "load_runs",
    "next_run_id",
    "runs",
    "write_run",
]
