"""What other parts read of the recommend stage's latest batch (the ``recommendations`` table).

``recommend batch`` replaces the whole table in one transaction, so every row read here
belongs to the latest batch. The report, the CLI and the coming server and campaign stages
call these functions instead of querying the table; besides it they read only the catalog
(``items``) below the stage, for titles, and the item events for :func:`popular_items`. Every value reaches DuckDB as a ``?`` parameter.

Examples
--------
>>> from jingzhun.recommend import read                                 # doctest: +SKIP
>>> read.user_recommendations(store, "u42")[["rank", "item_id", "reason"]].head(2)  # doctest: +SKIP
   rank item_id        reason
0     1   i0193  bought:i0788
1     2   i0024       popular
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from jingzhun.checks import MAX_ROWS, bounded_int
from jingzhun.store import Store
from jingzhun.store.sql import Sql, ident

__all__ = [
    "BatchOverview",
    "batch_overview",
    "catalog_items",
    "cold_start_share",
    "example_users",
    "list_rows",
    "lists",
    "popular_items",
    "reason_counts",
    "titles",
    "top_items",
    "top_items_query",
    "user_recommendations",
]


@dataclass(frozen=True)
class BatchOverview:
    """The latest batch of recommendations at a glance.

    Attributes
    ----------
    model : str
        The model id the batch was made with.
    users : int
        Users with a list.
    items_shown : int
        Distinct items recommended to anyone.
    catalog_items : int
        Items in the catalog.
    rows : int
        Recommendations in the batch (users x list length, or fewer).
    created_at : datetime
        When the batch was written (UTC).
    """

    model: str
    users: int
    items_shown: int
    catalog_items: int
    rows: int
    created_at: datetime

    @property
    def coverage(self) -> float:
        """The share of the catalog recommended to anyone (0 for an empty catalog)."""
        return self.items_shown / max(self.catalog_items, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "created_at": self.created_at.isoformat(sep=" "),
            "coverage": self.coverage,
        }


def batch_overview(store: Store) -> BatchOverview | None:
    """The latest batch's model, reach and catalog coverage.

    Returns
    -------
    BatchOverview or None
        None when no batch was written (``jingzhun recommend batch``).
    """
    model, users, shown, catalog, rows, created = store.rows(
        """
        SELECT any_value(model), count(DISTINCT user_id), count(DISTINCT item_id),
               (SELECT count(*) FROM items), count(*), max(created_at)
        FROM recommendations
        """
    )[0]
    if not rows:
        return None
    return BatchOverview(
        model=str(model),
        users=int(users),
        items_shown=int(shown),
        catalog_items=int(catalog),
        rows=int(rows),
        created_at=created,
    )


def reason_counts(store: Store) -> pd.DataFrame:
    """How often each kind of reason explains a recommendation.

    Returns
    -------
    DataFrame
        ``kind`` (bought, viewed, interest, segment or popular: the reason code before its
        ``:``) and ``n``, commonest first (ties by kind).
    """
    return store.sql(
        "SELECT split_part(reason, ':', 1) AS kind, count(*) AS n FROM recommendations "
        "GROUP BY 1 ORDER BY 2 DESC, 1"
    ).df()


def cold_start_share(store: Store) -> float:
    """The share of users whose whole list is cold-start: popular items, overall or in their
    segment, and nothing personal.

    Returns
    -------
    float
        Between 0 and 1; 0 without a batch.
    """
    share = store.scalar(
        """
        SELECT avg(CASE WHEN only_popular THEN 1 ELSE 0 END) FROM (
            SELECT user_id, bool_and(reason = 'popular' OR reason LIKE 'segment:%') AS only_popular
            FROM recommendations GROUP BY 1
        )
        """
    )
    return float(share or 0)


def top_items(store: Store, *, limit: int = 15) -> pd.DataFrame:
    """The items recommended to the most users.

    Parameters
    ----------
    limit : int
        At most this many items (1 to ``MAX_ROWS``).

    Returns
    -------
    DataFrame
        ``item_id``, ``title`` (missing when the catalog has none) and ``n`` (lists the item
        is on), most first (ties by item id).

    Raises
    ------
    InputError
        If ``limit`` is not a whole number in range.
    """
    limit = bounded_int(limit, "limit", lo=1, hi=MAX_ROWS)
    return store.sql(
        """
        SELECT r.item_id, any_value(i.title) AS title, count(*) AS n
        FROM recommendations r LEFT JOIN items i USING (item_id)
        GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT ?
        """,
        [limit],
    ).df()


def example_users(store: Store, *, limit: int = 3) -> list[str]:
    """Users whose list mixes items explained by a purchase with items explained otherwise:
    good examples of what the recommender does.

    Parameters
    ----------
    limit : int
        At most this many users (1 to ``MAX_ROWS``).

    Returns
    -------
    list of str
        User ids in a fixed pseudo-random order (by the hash of the id), so the same batch
        gives the same examples.

    Raises
    ------
    InputError
        If ``limit`` is not a whole number in range.
    """
    limit = bounded_int(limit, "limit", lo=1, hi=MAX_ROWS)
    return [
        r[0]
        for r in store.rows(
            """
            SELECT user_id FROM recommendations GROUP BY user_id
            HAVING bool_or(reason LIKE 'bought:%') AND bool_or(reason NOT LIKE 'bought:%')
            ORDER BY hash(user_id) LIMIT ?
            """,
            [limit],
        )
    ]


def lists(store: Store, user_ids: Sequence[str], *, max_rank: int | None = None) -> pd.DataFrame:
    """The lists of some users, with the items' titles.

    Parameters
    ----------
    user_ids : sequence of str
        The users; ids without a list are left out of the result.
    max_rank : int, optional
        Keep only the top ``max_rank`` of each list (default: the whole list).

    Returns
    -------
    DataFrame
        ``user_id``, ``rank`` (1 = best), ``item_id``, ``title``, ``category``, ``price``,
        ``score``, ``reason`` (a
        reason code, see :func:`jingzhun.recommend.rules.reason_text`), ``model`` and
        ``created_at``, ordered by user and rank.

    Raises
    ------
    InputError
        If ``max_rank`` is not a whole number of at least 1.
    """
    return _lists(store, user_ids, max_rank).df()


def list_rows(
    store: Store,
    user_ids: Sequence[str],
    *,
    max_rank: int | None = None,
    table: str = "recommendations",
    items: str = "items",
) -> list[dict[str, Any]]:
    """:func:`lists` as plain dicts (None for missing values): what a loop over members reads
    without pandas' per-row cost. ``table`` and ``items``: the relations on the store's
    connection holding the lists and the catalog (a lake's rows handed over as Arrow)."""
    cursor = _lists(store, user_ids, max_rank, table, items)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _lists(
    store: Store,
    user_ids: Sequence[str],
    max_rank: int | None,
    table: str = "recommendations",
    items: str = "items",
) -> Any:
    if max_rank is not None:
        max_rank = bounded_int(max_rank, "max_rank", lo=1, hi=MAX_ROWS)
    # A semi-join on the ids (list_contains would test every row against the whole list).
    return store.sql(
        f"""
        SELECT r.user_id, r.rank, r.item_id, i.title, i.category, i.price, r.score, r.reason,
               r.model, r.created_at
        FROM {ident(table)} r LEFT JOIN {ident(items)} i USING (item_id)
        WHERE r.user_id IN (SELECT unnest(?::VARCHAR[])) AND (?::INTEGER IS NULL OR r.rank <= ?)
        ORDER BY r.user_id, r.rank
        """,
        [list(user_ids), max_rank, max_rank],
    )


def user_recommendations(store: Store, user_id: str) -> pd.DataFrame:
    """One user's list in the latest batch.

    Parameters
    ----------
    user_id : str
        The user.

    Returns
    -------
    DataFrame
        ``rank``, ``item_id``, ``title``, ``score``, ``reason``, ``model`` and ``created_at``,
        best first; empty when the batch has no list for the user (a user who arrived after
        it: serve them live with :class:`jingzhun.recommend.serving.Recommend`).
    """
    return lists(store, [user_id]).drop(columns="user_id")


def titles(
    store: Store, item_ids: Iterable[str] | None = None, *, items: str = "items"
) -> dict[str, str]:
    """Catalog titles by item id, for turning reason codes into sentences.

    Parameters
    ----------
    item_ids : iterable of str, optional
        Only these items (unknown ids are left out); default the whole catalog.
    items : str
        The catalog's relation on the store's connection (default the store's).

    Returns
    -------
    dict
        item id -> title (``""`` for an item without one).
    """
    if item_ids is None:
        rows = store.rows(f"SELECT item_id, coalesce(title, '') FROM {ident(items)}")
    else:
        rows = store.rows(
            f"SELECT item_id, coalesce(title, '') FROM {ident(items)} "
            "WHERE list_contains(?::VARCHAR[], item_id)",
            [sorted(set(item_ids))],
        )
    return dict(rows)


def top_items_query(k: int) -> tuple[Sql, list[object]]:
    """A query of each user's best ``k`` recommended item ids (``user_id``, ``items``: a list,
    best first) from the latest batch, and its parameters."""
    k = bounded_int(k, "k", lo=1, hi=1000)
    return (
        "SELECT user_id, list(item_id ORDER BY rank) AS items FROM recommendations "
        "WHERE rank <= ? GROUP BY user_id",
        [k],
    )


def catalog_items(store: Store, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Some items as the catalog describes them, for showing ids as names.

    Parameters
    ----------
    item_ids : iterable of str
        The items; ids the catalog does not have are left out of the result.

    Returns
    -------
    dict
        item id -> ``{"title", "category", "brand", "price"}`` (None where the catalog has no
        value).
    """
    rows = store.rows(
        "SELECT item_id, title, category, brand, price FROM items "
        "WHERE item_id IN (SELECT unnest(?::VARCHAR[]))",
        [sorted({str(i) for i in item_ids})],
    )
    return {
        item: {"title": title, "category": category, "brand": brand, "price": price}
        for item, title, category, brand, price in rows
    }


#: The item events :func:`popular_items` counts: a view, a cart add, an order line.
POPULAR_EVENTS = ("product_viewed", "product_added", "order_completed")


def popular_items(store: Store, *, limit: int = 10, days: int = 30) -> pd.DataFrame:
    """The items the most visitors viewed, carted or bought in the last ``days`` days of
    events (up to the latest event the store holds, not the clock).

    Parameters
    ----------
    limit : int
        At most this many items (1 to ``MAX_ROWS``).
    days : int
        The window, in whole days (1 to 36,500).

    Returns
    -------
    DataFrame
        ``item_id``, ``title`` and ``category`` (missing where the catalog has none) and
        ``visitors`` (distinct users or devices), most first (ties by item id); empty
        without item events.

    Raises
    ------
    InputError
        If ``limit`` or ``days`` is out of range.
    """
    limit = bounded_int(limit, "limit", lo=1, hi=MAX_ROWS)
    days = bounded_int(days, "days", lo=1, hi=36_500)
    return store.sql(
        """
        WITH recent AS (
            SELECT item_id, coalesce(user_id, anonymous_id) AS visitor FROM events
            WHERE item_id IS NOT NULL AND list_contains(?::VARCHAR[], event)
              AND ts > (SELECT max(ts) FROM events) - to_days(?::INTEGER)
        )
        SELECT r.item_id, any_value(i.title) AS title, any_value(i.category) AS category,
               count(DISTINCT r.visitor) AS visitors
        FROM recent r LEFT JOIN items i USING (item_id)
        GROUP BY 1 ORDER BY 4 DESC, 1 LIMIT ?
        """,
        [list(POPULAR_EVENTS), days, limit],
    ).df()
