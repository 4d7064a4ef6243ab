"""jingzhun (精准): precision marketing on a company's own data.

>>> import jingzhun
>>> ws = jingzhun.open("shop.duckdb")          # doctest: +SKIP
>>> ws.ingest("events", ["events.parquet"])    # doctest: +SKIP
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jingzhun")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"


def open(path=None, *, config=None, read_only: bool = False):
    """Open (or create) the store at ``path`` and return a :class:`~jingzhun.workspace.Workspace`.

    ``path`` defaults to ``$JINGZHUN_DB`` or ``./jingzhun.duckdb``; ``config`` to
    ``$JINGZHUN_CONFIG`` or ``./jingzhun.toml`` when present.
    """
    from jingzhun.workspace import Workspace

    return Workspace.open(path, config=config, read_only=read_only)


__all__ = ["__version__", "open"]
