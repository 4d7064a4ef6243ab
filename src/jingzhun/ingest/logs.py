"""A whole foreign log file as a DataFrame, for offline analysis of files outside the store
(``recommend evaluate --interactions``, ``--item-features``, ``predict clv --transactions``).

No validation, quarantine or storage: that is ingest's job. Errors name the option and the file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from jingzhun.errors import InputError


def read_file(
    path: str | Path,
    flag: str,
    *,
    sep: str | None = None,
    header: bool = True,
    all_varchar: bool = True,
    hint: str = "check --sep and the file format",
) -> pd.DataFrame:
    """Read a Parquet file, or a delimited text file (separator sniffed unless ``sep``), with
    DuckDB; ``all_varchar`` leaves typing to the caller, which then names bad rows."""
    import duckdb

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{flag} {path}: no such file", hint="check the path")
    q = str(path).replace("'", "''")
    if path.suffix.lower() == ".parquet":
        query = f"SELECT * FROM read_parquet('{q}')"
    else:
        opts = [f"header={'true' if header else 'false'}"]
        if all_varchar:
            opts.append("all_varchar=true")
        if sep:
            opts.append(f"delim='{sep}'")
        query = f"SELECT * FROM read_csv('{q}', {', '.join(opts)})"
    try:
        return duckdb.connect().sql(query).df()
    except duckdb.Error as exc:
        raise InputError(
            f"{flag} {path}: cannot read ({str(exc).splitlines()[0]})", hint=hint
        ) from None
