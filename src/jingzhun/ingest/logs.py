"""A whole foreign log file as a DataFrame, for offline analysis of files outside the store
(``recommend evaluate --interactions``, ``--item-features``, ``predict clv --transactions``).

No validation, quarantine or storage: that is ingest's job. Errors name the option and the file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from jingzhun.errors import InputError
from jingzhun.store.store import file_reader

#: How a tab may be typed on a command line, besides the character itself.
_TAB_SPELLINGS = ("\\t", "tab", "TAB")


def separator(sep: str | None) -> str | None:
    """``sep`` as the delimiter DuckDB should use: ``\\t`` and ``tab`` mean a tab; ``None``
    means sniff. Anything but one to four printable characters (or a tab) is refused: the
    value reaches DuckDB as a parameter, and must be one it reads as a delimiter."""
    if sep is None:
        return None
    if sep in _TAB_SPELLINGS:
        return "\t"
    bad = not 1 <= len(sep) <= 4 or any(
        not (c == "\t" or c.isprintable()) or c in "\"'\\" for c in sep
    )
    if bad:
        raise InputError(
            f"--sep {sep[:20]!r} is not a field separator",
            hint="give one character such as , ; | or \\t for tab",
        )
    return sep


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
    DuckDB; ``all_varchar`` leaves typing to the caller, which then names bad rows.

    Every value goes to DuckDB as a parameter, on a connection that may read this one file
    and nothing else (:func:`jingzhun.store.store.file_reader`).
    """
    import duckdb

    delim = separator(sep)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{flag} {path}: no such file", hint="check the path")
    name = str(path.resolve())
    if path.suffix.lower() == ".parquet":
        query, params = "SELECT * FROM read_parquet(?)", [name]
    else:
        query, params = (
            "SELECT * FROM read_csv(?, header = ?, all_varchar = ?",
            [
                name,
                header,
                all_varchar,
            ],
        )
        if delim:
            query, params = query + ", delim = ?", [*params, delim]
        query += ")"
    con = file_reader(path)
    try:
        return con.sql(query, params=params).df()
    except duckdb.Error as exc:
        raise InputError(
            f"{flag} {path}: cannot read ({str(exc).splitlines()[0]})", hint=hint
        ) from None
    finally:
        con.close()
