"""The Workspace: one store and its settings, and every stage's operations on it.

The CLI, the server and notebooks all go through this class; it holds no state that the store
does not hold.

Examples
--------
>>> import jingzhun
>>> with jingzhun.open("shop.duckdb") as ws:                           # doctest: +SKIP
...     ws.ingest("events", ["events.parquet"]).inserted
...     ws.summary()["tables"]["events"]
...     ws.sql("select event, count(*) from events group by 1")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from jingzhun.config import Settings, load_settings, resolve_db_path
from jingzhun.errors import InputError
from jingzhun.ingest import quarantine as q
from jingzhun.ingest.clean import CleaningReport, clean
from jingzhun.ingest.pipeline import BatchResult, Ingestor, Progress
from jingzhun.ingest.schema import KINDS
from jingzhun.ingest.validate import IngestOptions
from jingzhun.store import TABLES, Store


class Workspace:
    """Everything jingzhun does to one store.

    Parameters
    ----------
    store : Store
        The open store.
    settings : Settings
        Loaded from ``jingzhun.toml`` (or defaults).
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._ibis: Any = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        read_only: bool = False,
    ) -> Workspace:
        """Open the store at ``path`` (default ``$JINGZHUN_DB`` or ``./jingzhun.duckdb``)."""
        settings = load_settings(config)
        return cls(Store.open(resolve_db_path(path), settings, read_only=read_only), settings)

    @property
    def path(self) -> Path:
        return self.store.path

    # -- collect ------------------------------------------------------------------------------

    def ingest(
        self,
        kind: str,
        paths: Sequence[str | os.PathLike[str]],
        *,
        format: str | None = None,
        mapping: dict[str, str] | None = None,
        constants: dict[str, str] | None = None,
        event_map: dict[str, str] | None = None,
        ts_format: str | None = None,
        progress: Progress | None = None,
        stdin: BinaryIO | None = None,
    ) -> BatchResult:
        """Ingest files (``"-"`` for stdin) of ``kind`` (events, users or items) as one batch."""
        if kind not in KINDS:
            raise InputError(f"unknown kind {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
        options = IngestOptions(
            kind,  # type: ignore[arg-type]
            mapping=dict(mapping or {}),
            constants=dict(constants or {}),
            event_map=dict(event_map or {}),
            ts_format=ts_format,
            format=format,
        )
        return self._ingestor().ingest(
            [str(p) for p in paths], options, progress=progress, stdin=stdin
        )

    def _ingestor(self) -> Ingestor:
        return Ingestor(self.store, self.settings.ingest)

    def quarantine_batches(self) -> pd.DataFrame:
        return q.batches(self.store)

    def quarantine_reasons(self, selection: q.Selection = q.OPEN) -> pd.DataFrame:
        return q.reasons(self.store, selection)

    def quarantine_rows(
        self, selection: q.Selection = q.OPEN, *, limit: int | None = 50
    ) -> pd.DataFrame:
        return q.rows(self.store, selection, limit=limit)

    def quarantine_export(
        self, out: str | os.PathLike[str], selection: q.Selection = q.OPEN
    ) -> int:
        return q.export(self.store, out, selection)

    def quarantine_replay(
        self,
        selection: q.Selection = q.OPEN,
        *,
        file: str | os.PathLike[str] | None = None,
        event_map: dict[str, str] | None = None,
    ) -> list[BatchResult]:
        return q.replay(self.store, self._ingestor(), selection, file=file, event_map=event_map)

    def quarantine_discard(self, selection: q.Selection) -> int:
        return q.discard(self.store, selection)

    def clean(
        self, *, flag: bool = True, remove: Sequence[str] = (), **overrides: Any
    ) -> CleaningReport:
        """The cleaning report; ``overrides`` replace ``[clean]`` settings for this run."""
        settings = self.settings.clean.model_copy(
            update={k: v for k, v in overrides.items() if v is not None}
        )
        return clean(self.store, settings, flag=flag, remove=tuple(remove))

    # -- look ---------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Row counts, the time span of events, events by type, identity and quarantine status."""
        con = self.store.con
        counts = {t: self.store.count(t) for t in TABLES}
        first, last, stitched_users, anon_events, stitched_events = con.execute(
            """
            SELECT min(e.ts), max(e.ts),
                   (SELECT count(DISTINCT user_id) FROM identities),
                   count(*) FILTER (WHERE e.user_id IS NULL),
                   count(*) FILTER (WHERE e.user_id IS NULL AND i.user_id IS NOT NULL)
            FROM events e LEFT JOIN identities i ON e.user_id IS NULL AND i.anonymous_id = e.anonymous_id
            """
        ).fetchone()
        by_event = dict(
            con.execute("SELECT event, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC").fetchall()
        )
        open_q = con.execute(
            "SELECT count(*) FROM quarantine WHERE resolved_at IS NULL"
        ).fetchone()[0]
        return {
            "store": str(self.path),
            "schema_version": self.store.schema_version(),
            "tables": counts,
            "events_from": first.isoformat(sep=" ") if first else None,
            "events_to": last.isoformat(sep=" ") if last else None,
            "events_by_type": {k: int(v) for k, v in by_event.items()},
            "known_users_with_anonymous_history": int(stitched_users or 0),
            "anonymous_events": int(anon_events or 0),
            "anonymous_events_stitched": int(stitched_events or 0),
            "quarantine_open": int(open_q),
        }

    def sql(self, query: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run SQL on the store and return a DataFrame."""
        return self.store.sql(query, params).df()

    @property
    def ibis(self) -> Any:
        """An Ibis DuckDB backend over this store's connection (for ``ws.ibis.table("events")``)."""
        if self._ibis is None:
            import ibis

            self._ibis = ibis.duckdb.from_connection(self.store.con)
        return self._ibis

    # -- report -------------------------------------------------------------------------------

    def report(
        self, out: str | os.PathLike[str], *, lang: str = "en", title: str | None = None
    ) -> Path:
        """Write the HTML report of everything in the store to ``out``."""
        from jingzhun.report import build_report

        return build_report(self, Path(out), lang=lang, title=title)

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"
