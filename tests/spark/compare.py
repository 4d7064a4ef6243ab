"""How the Spark tests compare a value on both engines: floats from sums in another order
(Spark's partitions, DuckDB's threads) equal to :data:`REL`, lists and maps element by
element, NULL as NULL."""

from __future__ import annotations

import math

import pandas as pd

#: Floats from sums in another order: equal to this, relative.
REL = 1e-9


def null(x: object) -> bool:
    return x is None or x is pd.NA or x is pd.NaT or (isinstance(x, float) and math.isnan(x))


def same(a: object, b: object) -> bool:
    """Equal as values: floats to REL, lists and maps element by element, NULL as NULL."""
    if hasattr(a, "tolist"):
        a = a.tolist()
    if hasattr(b, "tolist"):
        b = b.tolist()
    if null(a) or null(b):
        return null(a) and null(b)
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=REL, abs_tol=1e-12)  # type: ignore[arg-type]
    if isinstance(a, dict) or isinstance(b, dict):  # maps: the same entries in the same order
        a, b = list(dict(a).items()), list(dict(b).items())  # type: ignore[call-overload]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
