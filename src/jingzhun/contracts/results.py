"""Typed results: what a stage facade returns, and how it becomes JSON.

A facade method returns a dataclass deriving from :class:`Result`; ``to_dict()`` gives the
plain, JSON-ready dict that the CLI prints for ``--json`` and the HTTP API sends, so the two
always say the same thing. :func:`plain` is the one conversion of table cells (NumPy scalars
and arrays, pandas timestamps and missing values, DuckDB maps) into plain Python values.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime
from typing import Any


def plain(value: Any) -> Any:
    """A table cell or a result field as a plain Python value (for JSON and display).

    Datetimes stay datetimes (the JSON printer writes them as ISO text); NaN, NaT and ``pd.NA``
    become None; a DuckDB map (a list of key-value pairs) becomes a dict.
    """
    if value is None:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Result):
        return value.to_dict()
    if hasattr(value, "to_pydatetime") and not hasattr(value, "columns"):  # pd.Timestamp
        return None if value != value else value.to_pydatetime()
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a DataFrame: its records
        return [{k: plain(v) for k, v in r.items()} for r in value.to_dict("records")]
    if hasattr(value, "tolist"):  # NumPy arrays and scalars
        value = value.tolist()
        if isinstance(value, float) and math.isnan(value):
            return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, list) and value and isinstance(value[0], tuple) and len(value[0]) == 2:
        return {k: plain(v) for k, v in value}  # a map: [(key, value)]
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def json_ready(value: Any) -> Any:
    """A value as JSON takes it: :func:`plain`, then datetimes and dates as ISO text."""
    value = plain(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    return value


@dataclasses.dataclass
class Result:
    """Base of the facades' typed results: ``to_dict()`` is the JSON form."""

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (datetimes as ISO text, missing values as None)."""
        return {f.name: json_ready(getattr(self, f.name)) for f in dataclasses.fields(self)}
