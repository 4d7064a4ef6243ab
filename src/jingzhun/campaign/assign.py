"""Deterministic random assignment: a member's arm and variant from a hash of the campaign and
the user, the same in SQL (a whole audience at once) and in Python (one triggered member).

``unit(campaign, salt, user)`` is the first 52 bits of MD5(campaign ␟ salt ␟ user) as a number
in [0, 1): uniform, independent across campaigns and salts, and stable across DuckDB releases
(DuckDB's own ``hash()`` is not; the store keeps a canary for it). A user is in the control
group when ``unit(…, "control", …) < share`` — a Bernoulli draw per user, so a user's arm does
not depend on who else is in the audience (a triggered campaign assigns members one at a time
and gets the same arms). Stratified assignment instead ranks each stratum's members by the
same number and holds out the first ``round(share × size)``: exact shares per stratum.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from itertools import accumulate

from jingzhun.store.sql import Sql

#: 2**52: the unit hash's resolution (doubles hold 52-bit integers exactly).
_SCALE = float(1 << 52)
_SEP = "\x1f"


def unit(campaign: str, salt: str, user_id: str) -> float:
    """The user's uniform number in [0, 1) for ``campaign`` and ``salt``."""
    digest = hashlib.md5(
        f"{campaign}{_SEP}{salt}{_SEP}{user_id}".encode(), usedforsecurity=False
    ).hexdigest()
    return int(digest[:13], 16) / _SCALE


def unit_sql(user_column: Sql) -> Sql:
    """:func:`unit` in DuckDB SQL; takes two ``?`` parameters: the campaign and the salt."""
    return Sql(
        f"(('0x' || substr(md5(?::VARCHAR || chr(31) || ?::VARCHAR || chr(31) || {user_column})"
        ", 1, 13))::BIGINT / 4503599627370496.0)"
    )


def pick(u: float, weights: Sequence[float]) -> int:
    """The index of the weight whose cumulative share holds ``u`` (weights sum to 1)."""
    edges = list(accumulate(weights))
    return min(bisect.bisect_right(edges, u), len(weights) - 1)


def pick_sql(u: Sql, names: Sequence[str], weights: Sequence[float]) -> tuple[Sql, list[object]]:
    """:func:`pick` in SQL, returning the variant's name: a CASE over cumulative shares."""
    edges = list(accumulate(weights))
    if not names:
        return Sql("NULL::VARCHAR"), []
    parts, params = [], []
    for name, edge in zip(names[:-1], edges[:-1], strict=True):
        parts.append(f"WHEN {u} < ? THEN ?")
        params += [edge, name]
    sql = Sql(f"CASE {' '.join(parts)} ELSE ? END") if parts else Sql("?::VARCHAR")
    return sql, [*params, names[-1]]


__all__ = ["pick", "pick_sql", "unit", "unit_sql"]
