"""``ws.ingest``: the collect stage's facade — files in, quarantine, cleaning, the store's summary.

Examples
--------
>>> batch = ws.ingest.files("events", ["events.parquet"])            # doctest: +SKIP
>>> ws.ingest.quarantine.reasons()                                   # doctest: +SKIP
>>> ws.ingest.summary().tables["events"]                             # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from jingzhun.contracts.events import KINDS
from jingzhun.contracts.results import Result
from jingzhun.errors import InputError
from jingzhun.ingest import quarantine as q
from jingzhun.ingest.pipeline import BatchResult, Ingestor, Progress
from jingzhun.ingest.validate import IngestOptions

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from jingzhun.config import Settings
    from jingzhun.ingest.clean import CleaningReport
    from jingzhun.store import Store


@dataclass
class StoreSummary(Result):
    """Row counts, the time span of events, events by type, identity and quarantine status."""

    store: str
    schema_version: int
    tables: dict[str, int]
    events_from: str | None
    events_to: str | None
    events_by_type: dict[str, int]
    known_users_with_anonymous_history: int
    anonymous_events: int
    anonymous_events_stitched: int
    quarantine_open: int


class Quarantine:
    """The quarantined rows: list, export, replay after a fix, discard."""

    def __init__(self, store: Store, ingestor: Ingestor) -> None:
        self._store, self._ingestor = store, ingestor

    def batches(self) -> pd.DataFrame:
        """Every ingest batch with its counts, newest first."""
        return q.batches(self._store)

    def reasons(self, selection: q.Selection = q.OPEN) -> pd.DataFrame:
        """Quarantined rows counted by reason."""
        return q.reasons(self._store, selection)

    def rows(self, selection: q.Selection = q.OPEN, *, limit: int | None = 50) -> pd.DataFrame:
        """The quarantined rows themselves (raw values and reasons)."""
        return q.rows(self._store, selection, limit=limit)

    def page(
        self, selection: q.Selection = q.OPEN, *, limit: int = 50, after: int | None = None
    ) -> pd.DataFrame:
        """One page of the selected rows, oldest first: those whose ``quarantine_id`` is
        greater than ``after`` (the last id of the previous page)."""
        from jingzhun.ingest.read import quarantine_page

        return quarantine_page(self._store, selection, limit=limit, after=after)

    def export(self, out: str | os.PathLike[str], selection: q.Selection = q.OPEN) -> int:
        """Write the selected rows to a file to fix by hand; the number of rows."""
        return q.export(self._store, out, selection)

    def replay(
        self,
        selection: q.Selection = q.OPEN,
        *,
        file: str | os.PathLike[str] | None = None,
        event_map: dict[str, str] | None = None,
    ) -> list[BatchResult]:
        """Ingest the selected rows again (or their fixed copy in ``file``)."""
        return q.replay(self._store, self._ingestor, selection, file=file, event_map=event_map)

    def discard(self, selection: q.Selection) -> int:
        """Mark the selected rows resolved without ingesting them; how many."""
        return q.discard(self._store, selection)


class Ingest:
    """The collect stage on one store.

    Parameters
    ----------
    store : Store
        The open store.
    settings : Settings
        ``[ingest]`` and ``[clean]`` are used.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store, self._settings = store, settings
        self.quarantine = Quarantine(store, self._ingestor())

    def _ingestor(self) -> Ingestor:
        return Ingestor(
            self._store,
            self._settings.ingest,
            pseudonymize=self._settings.privacy.pseudonymize_ids,
        )

    def files(
        self,
        kind: str,
        paths: Sequence[str | os.PathLike[str]],
        *,
        format: str | None = None,
        mapping: dict[str, str] | None = None,
        constants: dict[str, str] | None = None,
        event_map: dict[str, str] | None = None,
        ts_format: str | None = None,
        columns: Sequence[str] | None = None,
        header: bool = True,
        ts_unit: str | None = None,
        order_id: str | None = None,
        returns: Sequence[str] = (),
        only_events: Sequence[str] = (),
        skip_events: Sequence[str] = (),
        item_columns: dict[str, str] | None = None,
        progress: Progress | None = None,
        stdin: BinaryIO | None = None,
    ) -> BatchResult:
        """Ingest files (``"-"`` for stdin) of ``kind`` (events, users or items) as one batch.

        ``columns``/``header`` read a CSV without a header; ``ts_unit`` (s, ms, us, ns) reads
        epoch numbers (found from their magnitude when not given); ``order_id`` ("row" or
        "user-time") derives order ids for purchases without one; ``returns``
        ("negative-quantity", "cancel-prefix=C") turns order lines into refunds;
        ``only_events``/``skip_events`` keep or skip events (counted as skipped);
        ``item_columns`` (item field -> source column) fills the items table from the rows.
        ``format="segment"`` reads Segment/RudderStack messages (detected from the content of
        JSON Lines too).
        """
        if kind not in KINDS:
            raise InputError(f"unknown kind {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
        options = IngestOptions(
            kind,  # type: ignore[arg-type]
            mapping=dict(mapping or {}),
            constants=dict(constants or {}),
            event_map=dict(event_map or {}),
            ts_format=ts_format,
            format=format,
            columns=tuple(columns) if columns is not None else None,
            header=header and columns is None,
            ts_unit=ts_unit,
            order_id=order_id,
            returns=tuple(returns),
            only_events=tuple(only_events),
            skip_events=tuple(skip_events),
            item_columns=dict(item_columns or {}),
            custom_events=format == "segment",
        )
        return self._ingestor().ingest(
            [str(p) for p in paths], options, progress=progress, stdin=stdin
        )

    __call__ = files  # ws.ingest("events", [...]) reads as it always did

    def messages(
        self,
        data: bytes,
        *,
        label: str = "api",
        event_map: dict[str, str] | None = None,
    ) -> tuple[BatchResult, pa.Table]:
        """Ingest Segment messages (JSON Lines in ``data``) as one events batch named
        ``label``: what the server's tracking API received. Identify traits go to users and
        PII, aliases to identities, as from a Segment archive. Returns the batch and its event
        rows counted by line (see :meth:`Ingestor.messages`)."""
        options = IngestOptions(
            "events", format="segment", event_map=dict(event_map or {}), custom_events=True
        )
        return self._ingestor().messages(data, options, label=label)

    def timeline(
        self,
        user_id: str,
        *,
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
    ) -> list[dict[str, Any]]:
        """One page of a user's events (and their linked devices'), newest first: those
        before ``before``, the ``(ts, event_id)`` of the previous page's last row.

        Raises
        ------
        NotFoundError
            If the store knows no user ``user_id`` (no users row, event or device link).
        """
        from jingzhun.errors import NotFoundError
        from jingzhun.ingest.read import user_events, user_known
        from jingzhun.store.desensitize import user_key

        user_id = user_key(self._store, user_id)
        rows = user_events(self._store, user_id, limit=limit, before=before)
        if not rows and before is None and not user_known(self._store, user_id):
            raise NotFoundError(
                f"no user {user_id!r}",
                hint="check the id: users come from ingested users and events "
                "(jingzhun ingest summary counts them)",
            )
        return rows

    def custom_events(self) -> dict[str, int]:
        """Custom events (names outside the vocabulary a Segment source sent) by name, with
        their counts: what analytics ignore until :meth:`remap` maps them."""
        from jingzhun.ingest.read import custom_events

        frame = custom_events(self._store)
        return {str(name): int(n) for name, n in zip(frame["event"], frame["n"], strict=True)}

    def remap(self, event_map: dict[str, str]) -> dict[str, int]:
        """Map stored custom events to known events (``{"video_played": "product_viewed"}``;
        a spec name such as "Video Played" means its snake_case form): from then on analytics
        see them. One transaction; returns how many events each name changed."""
        from jingzhun.contracts.events import EVENT_NAMES, EVENT_REQUIRES
        from jingzhun.ingest.validate import snake_event

        if not event_map:
            raise InputError("nothing to remap", hint="give --event-map NAME=EVENT")
        for src, dst in event_map.items():
            if dst not in EVENT_NAMES:
                raise InputError(
                    f"--event-map {src}={dst}: {dst!r} is not a known event",
                    hint=f"use one of: {', '.join(sorted(EVENT_NAMES))}",
                )
        changed: dict[str, int] = {}
        with self._store.transaction() as con:
            for src, dst in event_map.items():
                name = snake_event(src)
                needs = EVENT_REQUIRES.get(dst, ())
                if needs:
                    # Field names come from the event vocabulary, not from the caller.
                    lacking = con.execute(
                        "SELECT count(*) FROM events WHERE custom AND event = ? AND ("
                        + " OR ".join(f"{f} IS NULL" for f in needs)
                        + ")",
                        [name],
                    ).fetchone()[0]
                    if lacking:
                        raise InputError(
                            f"--event-map {src}={dst}: {lacking:,} stored {name} events lack "
                            f"{' or '.join(needs)}, which {dst} needs",
                            hint="map it when ingesting, where the message's fields are read: "
                            f"jingzhun ingest events FILE --event-map '{src}={dst}'",
                        )
                n = con.execute(
                    "UPDATE events SET event = ?, custom = FALSE WHERE custom AND event = ?",
                    [dst, name],
                ).fetchone()[0]
                changed[name] = int(n)
        return changed

    def clean(
        self,
        *,
        flag: bool = True,
        remove: Sequence[str] = (),
        outlier_method: Literal["mad", "iqr"] | None = None,
        outlier_threshold: float | None = None,
        burst_events_per_minute: int | None = None,
    ) -> CleaningReport:
        """The cleaning report (bots, bursts, outlier orders …); the given options replace
        ``[clean]`` settings for this run."""
        # Here: the cleaning's Ibis expressions are not what ingest needs (Ibis is 0.2 s).
        from jingzhun.ingest.clean import clean, run_settings

        settings = run_settings(
            self._settings.clean,
            outlier_method=outlier_method,
            outlier_threshold=outlier_threshold,
            burst_events_per_minute=burst_events_per_minute,
        )
        return clean(self._store, settings, flag=flag, remove=tuple(remove))

    def summary(self) -> StoreSummary:
        """Row counts, the time span of events, events by type, identity and quarantine status."""
        from jingzhun.ingest.read import summary

        return StoreSummary(**summary(self._store))
