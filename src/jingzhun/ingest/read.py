"""What other parts read of the collect stage's tables: events, identities, ingest batches and
quarantine.

The report, the CLI and the coming server call these functions instead of querying the tables
the ingest stage writes. Every value reaches DuckDB as a ``?`` parameter; every result is a
DataFrame, an array, a dict or a small dataclass with plain Python values.

Examples
--------
>>> from jingzhun.ingest import read                                    # doctest: +SKIP
>>> read.summary(store)["tables"]["events"]                             # doctest: +SKIP
120345
>>> read.order_totals(store)                                            # doctest: +SKIP
OrderTotals(orders=7549, revenue=1203984.5)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from jingzhun.checks import MAX_ROWS, bounded_int
from jingzhun.ingest.quarantine import Selection, _check_batch, opened_raw
from jingzhun.store import TABLES, Store, engines
from jingzhun.store.sql import Sql, ident
from jingzhun.store.vault import SEALED_FIELDS, opened_people, vault_for

__all__ = [
    "ACTIVITY_EVENTS",
    "OrderTotals",
    "active_in_windows_query",
    "buyers",
    "campaign_events_query",
    "channel_mix",
    "clicks_query",
    "contacts",
    "contacts_index_query",
    "daily_events",
    "daily_sales",
    "event_items_query",
    "health",
    "items_query",
    "latest_event_time",
    "order_totals",
    "order_values",
    "orders_between_query",
    "orders_in_windows_query",
    "orders_of_windows_query",
    "quarantine_page",
    "recent_batches",
    "summary",
    "triggered",
    "user_events",
    "user_known",
]

#: The funnel's events, counted per day by :func:`daily_events` unless told otherwise.
ACTIVITY_EVENTS: tuple[str, ...] = (
    "page_viewed",
    "product_viewed",
    "product_added",
    "checkout_started",
    "order_completed",
)


@dataclass(frozen=True)
class OrderTotals:
    """Completed orders and their revenue over the whole store.

    Attributes
    ----------
    orders : int
        Distinct ``order_id`` of ``order_completed`` events.
    revenue : float
        The sum of those events' ``revenue`` (0 when there is none): what was sold.
    refunded : float
        The sum of ``order_refunded`` events' ``revenue``: what was given back. What the
        shop kept is ``revenue - refunded`` (:attr:`net`).
    """

    orders: int
    revenue: float
    refunded: float = 0.0

    @property
    def net(self) -> float:
        return self.revenue - self.refunded

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summary(store: Store) -> dict[str, Any]:
    """Row counts, the time span of events, events by type, identity and quarantine status.

    Returns
    -------
    dict
        ``store`` (its path), ``schema_version``, ``tables`` (rows per collect-stage table),
        ``events_from`` and ``events_to`` (ISO timestamps, or None without events),
        ``events_by_type`` (most frequent first, ties by name),
        ``known_users_with_anonymous_history``,
        ``anonymous_events``, ``anonymous_events_stitched`` and ``quarantine_open``.

    Examples
    --------
    >>> summary(store)["events_by_type"]                                # doctest: +SKIP
    {'page_viewed': 80412, 'product_viewed': 25110, ...}
    """
    quick = health(store)
    first, stitched_users, anon_events, stitched_events = store.rows(
        """
        SELECT min(e.ts),
               (SELECT count(DISTINCT user_id) FROM identities),
               count(*) FILTER (WHERE e.user_id IS NULL),
               count(*) FILTER (WHERE e.user_id IS NULL AND i.user_id IS NOT NULL)
        FROM events e LEFT JOIN identities i ON e.user_id IS NULL AND i.anonymous_id = e.anonymous_id
        """
    )[0]
    by_event = dict(store.rows("SELECT event, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC, 1"))
    return {
        "store": str(store.path),
        "schema_version": store.schema_version(),
        "tables": quick["tables"],
        "events_from": first.isoformat(sep=" ") if first else None,
        "events_to": quick["events_to"],
        "events_by_type": {k: int(v) for k, v in by_event.items()},
        "known_users_with_anonymous_history": int(stitched_users or 0),
        "anonymous_events": int(anon_events or 0),
        "anonymous_events_stitched": int(stitched_events or 0),
        "quarantine_open": quick["quarantine_open"],
    }


def health(store: Store) -> dict[str, Any]:
    """What :func:`summary` says that costs no scan: ``tables`` (rows per collect-stage
    table), ``events_to`` (the newest event's time, ISO, or None) and ``quarantine_open``
    (milliseconds on a store of millions of events, where the summary takes a second)."""
    last = latest_event_time(store)
    return {
        "tables": {t: store.count(t) for t in TABLES},
        "events_to": last.isoformat(sep=" ") if last else None,
        "quarantine_open": int(
            store.scalar("SELECT count(*) FROM quarantine WHERE resolved_at IS NULL")
        ),
    }


def order_totals(store: Store, backend: Any = None) -> OrderTotals:
    """How many orders were completed and their total revenue: of the store's events, or of
    ``backend``'s (a lake's on Spark) — one Ibis expression either way.

    Returns
    -------
    OrderTotals
        Zero orders and zero revenue on a store without orders.
    """
    b = store.ibis() if backend is None else backend
    e = b.table("events")
    e = e.filter(e.event.isin(["order_completed", "order_refunded"]))
    done, back = e.event == "order_completed", e.event == "order_refunded"
    totals = e.aggregate(
        orders=e.order_id.nunique(where=done),
        revenue=e.revenue.sum(where=done).fill_null(0),
        refunded=e.revenue.sum(where=back).fill_null(0),
    )
    row = engines.frame(b, totals).iloc[0]
    return OrderTotals(
        orders=int(row.orders), revenue=float(row.revenue), refunded=float(row.refunded)
    )


def daily_events(store: Store, events: Sequence[str] = ACTIVITY_EVENTS) -> pd.DataFrame:
    """Events per day and name, for the names in ``events``.

    Parameters
    ----------
    events : sequence of str
        Event names to count (default :data:`ACTIVITY_EVENTS`); other events are left out.

    Returns
    -------
    DataFrame
        ``day`` (the day, UTC, as a timestamp at midnight), ``event``, ``n``; one row per
        day and event that occurred, ordered by day.
    """
    return store.sql(
        """
        SELECT date_trunc('day', ts)::DATE AS day, event, count(*) AS n FROM events
        WHERE list_contains(?::VARCHAR[], event)
        GROUP BY ALL ORDER BY day
        """,
        [list(events)],
    ).df()


def daily_sales(store: Store) -> pd.DataFrame:
    """Completed orders and revenue per day.

    Returns
    -------
    DataFrame
        ``day`` (the day, UTC, as a timestamp at midnight), ``orders`` (distinct order
        ids), ``revenue`` (sum of the lines' revenue), ``refunded`` (sum of the day's
        refunds' revenue, 0 without any); one row per day with an order or a refund, ordered
        by day.
    """
    return store.sql(
        """
        SELECT date_trunc('day', ts)::DATE AS day,
               count(DISTINCT order_id) FILTER (WHERE event = 'order_completed') AS orders,
               coalesce(sum(revenue) FILTER (WHERE event = 'order_completed'), 0) AS revenue,
               coalesce(sum(revenue) FILTER (WHERE event = 'order_refunded'), 0) AS refunded
        FROM events WHERE event IN ('order_completed', 'order_refunded')
        GROUP BY ALL ORDER BY day
        """
    ).df()


def channel_mix(store: Store) -> pd.DataFrame:
    """Page views per acquisition channel.

    Returns
    -------
    DataFrame
        ``channel`` ("–" for views without one) and ``n``, most views first (ties by name).
    """
    return store.sql(
        "SELECT coalesce(channel, '–') AS channel, count(*) AS n FROM events "
        "WHERE event = 'page_viewed' GROUP BY 1 ORDER BY 2 DESC, 1"
    ).df()


def recent_batches(store: Store, *, limit: int = 30) -> pd.DataFrame:
    """The latest ingest batches with their counts, newest first.

    Parameters
    ----------
    limit : int
        At most this many batches (1 to ``MAX_ROWS``).

    Returns
    -------
    DataFrame
        ``batch_id``, ``kind``, ``sources`` (the files, comma-separated), ``rows_read``,
        ``inserted``, ``duplicates``, ``quarantined``, ``skipped`` (left out by
        ``--only-events``/``--skip-events``), ``previously_removed`` (kept out: removed by
        ``clean --remove`` before) and ``seconds`` (the batch's duration, rounded to
        hundredths).

    Raises
    ------
    InputError
        If ``limit`` is not a whole number in range.
    """
    limit = bounded_int(limit, "limit", lo=1, hi=MAX_ROWS)
    return store.sql(
        """
        SELECT batch_id, kind, array_to_string(CAST(sources AS VARCHAR[]), ', ') AS sources,
               rows_read, inserted, duplicates, quarantined, skipped, previously_removed,
               round(epoch(finished_at - started_at), 2) AS seconds
        FROM ingest_batches ORDER BY started_at DESC LIMIT ?
        """,
        [limit],
    ).df()


def order_values(store: Store) -> np.ndarray:
    """The value of every completed order: the sum of its lines' revenue.

    Returns
    -------
    ndarray of float64
        One value per order with a known revenue, in no particular order.
    """
    values = store.sql(
        "SELECT sum(revenue) AS v FROM events "
        "WHERE event = 'order_completed' AND revenue IS NOT NULL GROUP BY order_id"
    ).df()["v"]
    return values.to_numpy(dtype=np.float64)


def custom_events(store: Store) -> pd.DataFrame:
    """Custom events (names outside the vocabulary, from Segment sources) by name.

    Returns
    -------
    DataFrame
        ``event`` and ``n`` (its rows), most frequent first; empty without any.
    """
    return store.sql(
        "SELECT event, count(*) AS n FROM events WHERE custom GROUP BY event ORDER BY n DESC, event"
    ).df()


#: The columns of a user's timeline, in order (:func:`user_events`).
TIMELINE_COLUMNS: tuple[str, ...] = (
    "event_id",
    "event",
    "ts",
    "user_id",
    "anonymous_id",
    "item_id",
    "order_id",
    "quantity",
    "price",
    "revenue",
    "currency",
    "channel",
    "campaign_id",
    "properties",
)


def user_events(
    store: Store,
    user_id: str,
    *,
    limit: int = 50,
    before: tuple[datetime, str] | None = None,
) -> list[dict[str, Any]]:
    """One page of a user's timeline: their events and those of the devices linked to them,
    newest first.

    The order is ``(ts, event_id)`` descending, a total order (event ids are unique), so a
    caller walks the whole timeline by passing the last row's ``(ts, event_id)`` as
    ``before``: every event comes exactly once, even among events of the same instant.

    Parameters
    ----------
    user_id : str
        The user.
    limit : int
        At most this many events (1 to ``MAX_ROWS``).
    before : (datetime, str), optional
        Only events strictly after this ``(ts, event_id)`` in timeline order (older, or as
        old with a smaller id); default from the newest.

    Returns
    -------
    list of dict
        One dict per event with :data:`TIMELINE_COLUMNS` (``properties`` parsed from JSON).

    Raises
    ------
    InputError
        If ``limit`` is not a whole number in range.
    """
    limit = bounded_int(limit, "limit", lo=1, hi=MAX_ROWS)
    ts, event_id = before if before is not None else (None, None)
    rows = store.rows(
        f"""
        SELECT {", ".join(TIMELINE_COLUMNS)} FROM events
        WHERE (user_id = ?
               OR anonymous_id IN (SELECT anonymous_id FROM identities WHERE user_id = ?))
          AND (?::TIMESTAMP IS NULL OR ts < ?::TIMESTAMP
               OR (ts = ?::TIMESTAMP AND event_id < ?::VARCHAR))
        ORDER BY ts DESC, event_id DESC LIMIT ?
        """,
        [user_id, user_id, ts, ts, ts, event_id, limit],
    )
    out = [dict(zip(TIMELINE_COLUMNS, r, strict=True)) for r in rows]
    for row in out:  # JSON arrives as text
        if isinstance(row["properties"], str):
            row["properties"] = json.loads(row["properties"])
    return out


def user_known(store: Store, user_id: str) -> bool:
    """Whether the store knows ``user_id``: in the users table, on an event, or linked to a
    device.

    Returns
    -------
    bool
    """
    return bool(
        store.scalar(
            """
            SELECT EXISTS (SELECT 1 FROM users WHERE user_id = ?)
                OR EXISTS (SELECT 1 FROM identities WHERE user_id = ?)
                OR EXISTS (SELECT 1 FROM events WHERE user_id = ?)
            """,
            [user_id, user_id, user_id],
        )
    )


def quarantine_page(
    store: Store, selection: Selection, *, limit: int = 50, after: int | None = None
) -> pd.DataFrame:
    """One page of the selected quarantined rows, oldest first.

    Parameters
    ----------
    selection : Selection
        Which rows (batch, reason text, resolved ones or not).
    limit : int
        At most this many rows (1 to ``MAX_ROWS``).
    after : int, optional
        Only rows whose ``quarantine_id`` is greater (the last id of the previous page).

    Returns
    -------
    DataFrame
        The columns of :func:`jingzhun.ingest.quarantine.rows`, ordered by ``quarantine_id``.

    Raises
    ------
    NotFoundError
        If the selection names a batch that does not exist.
    InputError
        If ``limit`` is not a whole number in range.
    """
    _check_batch(store, selection.batch_id)
    where: Sql
    where, params = selection.where()
    frame = store.sql(
        f"""
        SELECT quarantine_id, batch_id, kind, source, line_no, reason, raw, received_at,
               resolved_at, resolved_batch_id
        FROM quarantine WHERE {where} AND (?::BIGINT IS NULL OR quarantine_id > ?::BIGINT)
        ORDER BY quarantine_id LIMIT ?
        """,
        [*params, after, after, bounded_int(limit, "limit", lo=1, hi=MAX_ROWS)],
    ).df()
    return opened_raw(store, frame)


def latest_event_time(store: Store) -> datetime | None:
    """The time of the newest stored event: the store's "now" (None when it has none)."""
    return store.scalar("SELECT max(ts) FROM events")


def buyers(events: ir.Table, since: datetime, until: datetime) -> ir.Table:
    """The ``user_id`` of every user with an order in ``[since, until)``, from ``events``: the
    stitched events (anonymous history under the known user) as an Ibis table, on either
    engine."""
    e = events.filter(
        (events.event == "order_completed")
        & events.user_id.notnull()
        & (events.ts >= since)
        & (events.ts < until)
    )
    return e.select("user_id").distinct()


def contacts(
    store: Store,
    user_ids: Sequence[str],
    fields: Sequence[str] = ("email", "phone", "name"),
) -> pd.DataFrame:
    """The contact fields of ``user_ids`` decrypted from the vault: ``user_id`` and each of
    ``fields`` (personal data: only delivery and data-subject requests read it). A user
    without a pii row is absent; a field they never gave is None.

    A store whose personal data predates the vault has it encrypted now; a missing or wrong
    vault key is a :class:`~jingzhun.store.vault.VaultKeyError`.
    """
    unknown = sorted(set(fields) - set(SEALED_FIELDS))
    if unknown:
        raise ValueError(f"not personal data fields: {unknown}")
    has_rows = store.scalar("SELECT count(*) FROM (SELECT 1 FROM pii LIMIT 1)")
    # First: a store from before the vault gets it now, and its rows sealed.
    vault = vault_for(store, create=bool(has_rows))
    names: Sql = ", ".join(fields)
    if vault is None:
        return pd.DataFrame(columns=["user_id", *fields])
    # A cursor of its own: its temporary table is no other reader's (the server reads
    # contacts from several threads).
    with store.con.cursor() as con:
        opened_people(
            con,
            vault,
            "SELECT user_id, sealed FROM pii WHERE user_id IN (SELECT unnest(?::VARCHAR[]))",
            "_jz_contacts",
            [list(user_ids)],
        )
        return con.sql(f"SELECT user_id, {names} FROM _jz_contacts ORDER BY user_id").df()


def contacts_index_query() -> Sql:
    """A query of each known user's blind-index tokens, ``user_id``, ``email_index`` and
    ``phone_index`` (None when they gave none): who can be reached, without decrypting."""
    return "SELECT user_id, email_index, phone_index FROM pii"


def orders_between_query() -> Sql:
    """A query of each user's orders in ``[start, end)`` (two ``?`` parameters): ``user_id``,
    ``orders`` (distinct), ``revenue`` (the lines' sum) and ``first_ts``; anonymous history
    stitched to the known user."""
    return (
        "SELECT user_id, count(DISTINCT order_id) AS orders, sum(coalesce(revenue, 0)) AS revenue, "
        "min(ts) AS first_ts FROM stitched_events "
        "WHERE event = 'order_completed' AND user_id IS NOT NULL AND ts >= ? AND ts < ? "
        "GROUP BY user_id"
    )


def orders_in_windows_query(starts: Sql) -> Sql:
    """Each user's orders in a window of their own: ``starts`` is a query of ``user_id`` and
    ``start``; the window is ``[start + a, start + b)`` for two ``?`` intervals a and b.
    Columns as :func:`orders_between_query`."""
    return (
        "SELECT s.user_id, count(DISTINCT e.order_id) AS orders, "
        "sum(coalesce(e.revenue, 0)) AS revenue, min(e.ts) AS first_ts "
        f"FROM ({starts}) s JOIN stitched_events e ON e.user_id = s.user_id "
        "AND e.event = 'order_completed' AND e.ts >= s.start + ?::INTERVAL "
        "AND e.ts < s.start + ?::INTERVAL GROUP BY s.user_id"
    )


def orders_of_windows_query(starts: Sql) -> Sql:
    """Each order of each user in a window of their own (``starts``: ``user_id``, ``start``;
    the window ``[start, start + ?)``, one ``?`` interval): ``user_id``, ``order_id``, ``ts``
    and ``revenue`` (its lines' sum), one row per order."""
    return (
        "SELECT s.user_id, e.order_id, min(e.ts) AS ts, sum(coalesce(e.revenue, 0)) AS revenue "
        f"FROM ({starts}) s JOIN stitched_events e ON e.user_id = s.user_id "
        "AND e.event = 'order_completed' AND e.ts >= s.start AND e.ts < s.start + ?::INTERVAL "
        "GROUP BY s.user_id, e.order_id"
    )


def clicks_query() -> Sql:
    """Every click on a campaign's link: ``user_id``, ``campaign_id``, ``ts``."""
    return (
        "SELECT user_id, campaign_id, ts FROM stitched_events "
        "WHERE event = 'email_clicked' AND campaign_id IS NOT NULL AND user_id IS NOT NULL"
    )


def active_in_windows_query(starts: Sql) -> tuple[Sql, list[str]]:
    """The ``user_id`` of each user active on the shop (an event of :data:`ACTIVITY_EVENTS`:
    messages and their opens do not count) in a window of their own, ``[start, start + b)``;
    it takes the events (returned too) and the interval b as ``?`` parameters."""
    return (
        f"SELECT DISTINCT s.user_id FROM ({starts}) s JOIN stitched_events e "
        "ON e.user_id = s.user_id AND list_contains(?::VARCHAR[], e.event) "
        "AND e.ts >= s.start AND e.ts < s.start + ?::INTERVAL",
        list(ACTIVITY_EVENTS),
    )


def triggered(
    events: ir.Table,
    event: str,
    start: datetime,
    end: datetime,
    without: str | None = None,
    until: datetime | None = None,
) -> ir.Table:
    """Users whose latest ``event`` (the trigger) falls in ``[start, end)`` and, with
    ``without``, with no ``without`` event (say, an order) from it up to ``until``:
    ``user_id`` and ``at`` (the trigger's time). ``events``: the stitched events as an Ibis
    table, on either engine."""
    known = events.filter(events.user_id.notnull())
    last = (
        known.filter((known.event == event) & (known.ts >= start) & (known.ts < end))
        .group_by("user_id")
        .aggregate(at=known.ts.max())
    )
    if without is None:
        return last
    later = known.filter(known.event == without)
    if until is not None:
        later = later.filter(later.ts < until)
    later = later.select(w_user="user_id", w_ts="ts")
    return last.anti_join(later, [last.user_id == later.w_user, later.w_ts >= last.at])


def event_items_query(events: str = "stitched_events") -> Sql:
    """The items of one event per user in ``[?, ?)``, newest first (``user_id``, ``items``),
    for some users: parameters event, from, to, user ids. ``events``: the stitched events'
    relation (default the store's view)."""
    return (
        "SELECT user_id, list(item_id ORDER BY ts DESC) AS items FROM ("
        f"SELECT user_id, item_id, max(ts) AS ts FROM {ident(events)} "
        "WHERE event = ? AND item_id IS NOT NULL AND ts >= ? AND ts < ? "
        "AND user_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL) GROUP BY user_id"
    )


def items_query(items: str = "items") -> Sql:
    """A query of the catalog's ``item_id``, ``title``, ``category`` and ``price``
    (``items``: the catalog's relation, default the store's)."""
    return f"SELECT item_id, title, category, price FROM {ident(items)}"


def campaign_events_query() -> Sql:
    """A query of the opens and clicks of one campaign (one ``?``: its name): ``user_id``,
    ``event`` and ``first_ts``, one row per user and event."""
    return (
        "SELECT user_id, event, min(ts) AS first_ts FROM stitched_events "
        "WHERE campaign_id = ? AND user_id IS NOT NULL "
        "AND event IN ('email_opened', 'email_clicked') GROUP BY ALL"
    )
