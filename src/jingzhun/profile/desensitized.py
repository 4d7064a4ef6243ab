"""Desensitized profile exports: row-level (pseudonyms, generalized quasi-identifiers,
k-anonymity) and aggregate (counts per group, groups smaller than k suppressed, Laplace noise
with a stated ε). The transformations are :mod:`jingzhun.store.desensitize`'s."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from jingzhun.contracts.results import Result
from jingzhun.errors import InputError
from jingzhun.profile.build import profile_columns
from jingzhun.store import Store
from jingzhun.store import desensitize as ds
from jingzhun.store.export import copy_out
from jingzhun.store.sql import Sql, ident

#: The quasi-identifiers a desensitized export carries, generalized: what, joined with other
#: data, could single a person out.
QUASI = ["age_band", "gender", "region"]


@dataclass
class Exported(Result):
    """What a desensitized export wrote."""

    rows: int
    file: str
    k: int | None = None
    masked: int = 0  # rows whose quasi-identifiers were masked for k
    left_out: int = 0  # rows left out (masked rows fewer than k)
    epsilon: float | None = None
    noise_scale: float | None = None  # Laplace scale 1/ε of each count
    groups: int = 0
    suppressed_groups: int = 0
    suppressed_users: int = 0


def _rows(store: Store) -> tuple[Sql, list[object]]:
    """Every profile with the user id as a pseudonym, times as months, and the generalized
    quasi-identifiers from users (age band, gender, region; city never)."""
    kinds = profile_columns(store)
    cols: list[str] = []
    for c, t in kinds.items():
        if c == "user_id":
            cols.append(f"{ds.pseudonym_sql('p.user_id')} AS user_id")
        elif t.startswith("TIMESTAMP") and c != "as_of":
            cols.append(f"{ds.month_sql('p.' + ident(c))} AS {ident(c)}")
        else:
            cols.append(f"p.{ident(c)}")
    cols += [
        f"{ds.age_band_sql('u.birth_year', 'p.as_of')} AS age_band",
        "u.gender AS gender",
        "u.region AS region",
    ]
    sql = Sql(f"SELECT {', '.join(cols)} FROM profiles p LEFT JOIN users u USING (user_id)")
    return sql, ds.pseudonym_params(store)


def export(store: Store, out: str | os.PathLike[str], *, k: int | None = None) -> Exported:
    """Write the desensitized profiles (see :func:`_rows`), ``k``-anonymous over
    :data:`QUASI` when ``k`` is given; lists and maps as JSON text in CSV."""
    k = ds.check_k(k)
    rows, params = _rows(store)
    if Path(out).suffix.lower() == ".csv":
        kinds = profile_columns(store)
        nested = [c for c, t in kinds.items() if "[]" in t or t.startswith("MAP")]
        if nested:
            rows = f"SELECT * REPLACE ({', '.join(f'to_json({ident(c)})::VARCHAR AS {ident(c)}' for c in nested)}) FROM ({rows})"
    masked = 0
    if k is not None:
        masked = int(
            store.scalar(
                f"SELECT count(*) FILTER (WHERE _n < {int(k)}) FROM (SELECT count(*) OVER "
                f"(PARTITION BY {', '.join(QUASI)}) AS _n FROM ({rows}))",
                params,
            )
        )
        rows = ds.k_anonymous_sql(rows, "user_id", QUASI, k)
    else:
        rows = f"SELECT * FROM ({rows}) ORDER BY user_id"
    n = copy_out(store, rows, out, params=params)
    left_out = store.count("profiles") - n
    return Exported(rows=n, file=str(out), k=k, masked=masked, left_out=left_out)


def aggregate(
    store: Store,
    by: list[str],
    out: str | os.PathLike[str] | None = None,
    *,
    k: int | None = None,
    epsilon: float | None = None,
) -> tuple[pd.DataFrame, Exported]:
    """Users per group of ``by`` (quasi-identifiers and text traits), groups of fewer than
    ``k`` users suppressed, counts with Laplace(1/ε) noise when ``epsilon`` is given; written
    to ``out`` (Parquet or CSV) if given."""
    k, epsilon = ds.check_k(k), ds.check_epsilon(epsilon)
    kinds = profile_columns(store)
    allowed = QUASI + [
        c for c, t in kinds.items() if t in ("VARCHAR", "BOOLEAN") and c != "user_id"
    ]
    if not by:
        raise InputError(
            "--by names no column", hint=f"one or more of: {', '.join(allowed)}", param="by"
        )
    for c in by:
        if c not in allowed:
            raise InputError(
                f"--by {c[:40]!r} is not a column to group by",
                hint=f"one of: {', '.join(allowed)}",
                param="by",
            )
    if len(set(by)) != len(by):
        raise InputError("--by names a column twice", param="by")
    rows, params = _rows(store)
    cols = ", ".join(ident(c) for c in by)
    frame = store.sql(
        f"SELECT {cols}, count(*) AS users FROM ({rows}) GROUP BY ALL ORDER BY {cols}", params
    ).df()
    result = Exported(rows=0, file=str(out) if out else "", k=k, epsilon=epsilon, groups=len(frame))
    if k is not None:
        small = frame["users"] < k
        result.suppressed_groups = int(small.sum())
        result.suppressed_users = int(frame.loc[small, "users"].sum())
        frame = frame.loc[~small].reset_index(drop=True)
    if epsilon is not None:
        frame["users"] = ds.laplace(frame["users"].to_numpy(), epsilon)
        result.noise_scale = 1.0 / epsilon
    result.rows = len(frame)
    if out is not None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        store.con.register("_jz_aggregate", table)
        try:
            copy_out(store, "SELECT * FROM _jz_aggregate", out)
        finally:
            store.con.unregister("_jz_aggregate")
    return frame, result


__all__ = ["QUASI", "Exported", "aggregate", "export"]
