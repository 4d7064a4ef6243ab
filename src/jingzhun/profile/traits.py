"""Computed traits: one definition per trait, as Ibis expressions over the store.

Every trait is a named, documented definition (dbt-style) of one of three shapes:

* ``Agg`` — an aggregate over the user's events, computed together with the others in one
  grouped pass (``frequency = order ids, distinct, among order lines``);
* ``Derived`` — an expression over other traits (``aov = monetary / frequency``);
* ``Table`` — its own grouped query, joined on ``user_id`` (modes, top lists, last items).

The events a trait sees are :func:`base_events`: the events strictly before ``as_of``, with
anonymous history under the known user when the link between them was made before ``as_of``,
and the item's category, brand and price percentile joined. Nothing in a trait reads a later event, so a profile built ``--as-of`` a
past time is what it would have been then; the leakage test in ``tests/profile`` proves it.

Definitions use only portable Ibis operations, so the same traits can run on Spark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from jingzhun.contracts.events import COUNTED_EVENTS
from jingzhun.profile.expr import days_between, seconds_between

DAY = 86_400
ORDER = "order_completed"
REFUND = "order_refunded"
#: Traits that count things (whole numbers, 0 rather than null for users without events).
COUNT_TRAITS = ("events", "frequency", "order_lines", "active_days", "distinct_items", "sessions")
#: The event columns (and joined item attributes) the built-in traits read; a build's events
#: carry these and those its custom traits name (``profile.build._reads``).
READS = (
    "event",
    "user_id",
    "order_id",
    "item_id",
    "quantity",
    "price",
    "revenue",
    "channel",
    "ts",
    "category",
    "brand",
    "price_percentile",
)
#: Traits that sum amounts (0.0 rather than null for users without events).
SUM_TRAITS = ("monetary", "units", "refunded")


@dataclass(frozen=True)
class Ctx:
    """What trait definitions see: the events, the items, the time and the settings."""

    events: ir.Table  # base_events(): before as_of, items joined
    items: ir.Table
    users: ir.Table
    as_of: ir.Value  # timestamp literal
    half_life_days: float
    weights: dict[str, float]  # event -> interaction weight (view 1, cart 3, purchase 5)
    last_n: int
    affinity: ir.Table | None = None  # the stored profile_affinity, when already computed


@dataclass(frozen=True)
class Agg:
    name: str
    doc: str
    fn: Callable[[ir.Table], ir.Value]


@dataclass(frozen=True)
class Derived:
    name: str
    doc: str
    fn: Callable[[ir.Table, Ctx], ir.Value]


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    fn: Callable[[Ctx], ir.Table]  # user_id, the trait's column and those of ``also``
    #: Further traits the same grouped query gives (a count of the rows it groups by user
    #: costs nothing more there; a distinct count in the aggregates costs a pass).
    also: tuple[Also, ...] = field(default=())


@dataclass(frozen=True)
class Also:
    """A further column of a :class:`Table` trait. ``after``: the trait (listed before this
    table) it follows in the profile's columns (None: the table's own column), so a count
    that moved from the aggregates to a table kept its place: models and exports read the
    profile's columns in order."""

    name: str
    doc: str
    after: str | None = None


def _is_order(e: ir.Table) -> ir.BooleanValue:
    return e.event == ORDER


def _gross(e: ir.Table) -> ir.Value:
    """Order-line revenue (0.0 without order lines)."""
    return e.revenue.sum(where=_is_order(e)).fill_null(0.0)


def _refunded(e: ir.Table) -> ir.Value:
    """Refunded revenue: ``order_refunded`` rows carry the amount as a positive number."""
    return e.revenue.sum(where=e.event == REFUND).fill_null(0.0)


def _discounted(e: ir.Table) -> ir.Value:
    # A line paid below list price: revenue < quantity × price (to the cent).
    return (e.revenue < e.quantity * e.price - 0.005).cast("float64")


def _capped(x: ir.Value, cap: float) -> ir.Value:
    # Not least(): DuckDB's least() skips NULL, so least(NULL, 1) would be 1.
    return ibis.ifelse(x > cap, cap, x)


def _floor0(x: ir.Value) -> ir.Value:
    return ibis.ifelse(x < 0, 0.0, x)


def _safe_ratio(a: ir.Value, b: ir.Value) -> ir.Value:
    return ibis.ifelse(b > 0, a.cast("float64") / b, ibis.null("float64"))


def distinct(e: ir.Table, x: ir.Value, where: ir.BooleanValue | None = None) -> ir.Value:
    """How many distinct non-null values of ``x`` (where ``where``) the group has: what a
    custom trait with ``agg = "distinct"`` counts, beside the built-in ``frequency``.

    DuckDB: ``count(DISTINCT x)``. Spark: ``size(collect_set(x))``, the same number: Spark
    runs two or more distinct counts in one aggregate as an ``Expand`` that copies every event
    once per distinct column before the shuffle; a set per user is an ordinary aggregate over
    the events once.
    """
    if ibis.get_backend(e).name != "pyspark":
        return x.nunique(where=where)
    if where is not None:
        x = ibis.ifelse(where, x, ibis.null(x.type()))  # collect_set skips nulls
    return _collect_set(x.type())(x).length().cast("int64")


def _collect_set(of: dt.DataType) -> Callable[[ir.Value], ir.ArrayValue]:
    """Spark's ``collect_set`` aggregate (Ibis writes ``collect(distinct=True)`` as
    ``collect_list(DISTINCT x)``, a distinct aggregate again)."""

    def collect_set(arg: Any) -> Any: ...

    return ibis.udf.agg.builtin(collect_set, name="collect_set", signature=((of,), dt.Array(of)))


# -- aggregates over the user's events --------------------------------------------------------

_COUNT_EVENTS = list(COUNTED_EVENTS)

AGGS: tuple[Agg, ...] = (
    Agg("first_seen", "Time of the user's first event (any kind).", lambda e: e.ts.min()),
    Agg("last_seen", "Time of the user's latest event (any kind).", lambda e: e.ts.max()),
    Agg("events", "Events of any kind.", lambda e: e.count()),
    Agg(
        "frequency",
        "Distinct orders (order_id of order_completed lines).",
        # count(DISTINCT …) on both engines. The aggregates' one distinct count, so Spark
        # groups by (user, order) first and merges: cheaper than its collect_set, whose object
        # aggregate sorts every event (a set per user of each distinct trait cost the 10M-event
        # aggregate 12 s of 20; days and items now come from table traits that group by them).
        lambda e: e.order_id.nunique(where=_is_order(e)),
    ),
    Agg(
        "monetary",
        "Net spend: order-line revenue (after discount) minus refunded revenue, never below 0.",
        lambda e: _floor0(_gross(e) - _refunded(e)),
    ),
    Agg(
        "refunded",
        "Refunded revenue (sum of order_refunded revenue; 0 without refunds).",
        _refunded,
    ),
    Agg(
        "refund_rate",
        "Refunded / gross order-line revenue, at most 1 (null without order revenue).",
        lambda e: _capped(_safe_ratio(_refunded(e), _gross(e)), 1.0),
    ),
    Agg(
        "order_lines",
        "Order lines (order_completed events).",
        lambda e: e.count(where=_is_order(e)),
    ),
    Agg(
        "units",
        "Units bought (sum of order-line quantity).",
        lambda e: e.quantity.sum(where=_is_order(e)).fill_null(0.0),
    ),
    Agg("first_order_at", "Time of the first order line.", lambda e: e.ts.min(where=_is_order(e))),
    Agg("last_order_at", "Time of the latest order line.", lambda e: e.ts.max(where=_is_order(e))),
    Agg(
        "discount_share",
        "Share of order lines bought below list price (price sensitivity).",
        lambda e: _discounted(e).mean(
            where=_is_order(e) & e.price.notnull() & e.quantity.notnull()
        ),
    ),
    Agg(
        "price_percentile",
        "Mean percentile (0-1) of the bought items' price within their category: low = buys cheap.",
        lambda e: e.price_percentile.mean(where=_is_order(e)),
    ),
    Agg(
        "sessions",
        "Page views, the start of a visit (a proxy for sessions).",
        lambda e: e.count(where=e.event == "page_viewed"),
    ),
    *(
        Agg(
            f"n_{name}",
            f"Count of {name} events.",
            lambda e, name=name: e.count(where=e.event == name),
        )
        for name in _COUNT_EVENTS
    ),
)


# -- derived traits -----------------------------------------------------------------------------

DERIVED: tuple[Derived, ...] = (
    Derived(
        "recency_days",
        "Whole days from the latest order to as_of (null for users without orders).",
        lambda p, c: days_between(c.as_of, p.last_order_at),
    ),
    Derived(
        "tenure_days",
        "Whole days from the first event (or sign-up, if earlier) to as_of.",
        lambda p, c: days_between(c.as_of, ibis.least(p.first_seen, p.created_at)),
    ),
    Derived(
        "days_since_seen",
        "Whole days from the latest event to as_of.",
        lambda p, c: days_between(c.as_of, p.last_seen),
    ),
    Derived(
        "aov",
        "Average order value, net of refunds: monetary / frequency.",
        lambda p, c: _safe_ratio(p.monetary, p.frequency),
    ),
    Derived(
        "view_to_cart",
        "Cart adds per product view.",
        lambda p, c: _safe_ratio(p.n_product_added, p.n_product_viewed),
    ),
    Derived(
        "cart_to_purchase",
        "Order lines per cart add, at most 1 (null without cart adds).",
        lambda p, c: _capped(_safe_ratio(p.order_lines, p.n_product_added), 1.0),
    ),
    Derived(
        "email_open_rate",
        "Opened messages per delivered (or sent) message.",
        lambda p, c: _safe_ratio(
            p.n_email_opened, ibis.greatest(p.n_email_delivered, p.n_message_sent)
        ),
    ),
)


# -- traits that need their own query -----------------------------------------------------------


def _mode(
    c: Ctx,
    value: Callable[[ir.Table], ir.Value],
    name: str,
    where: Callable[[ir.Table], ir.Value] | None = None,
) -> ir.Table:
    e = c.events
    if where is not None:
        e = e.filter(where(e))
    e = e.mutate(_v=value(e)).filter(ibis._._v.notnull())
    counts = e.group_by(["user_id", "_v"]).aggregate(_n=ibis._.count(), _last=ibis._.ts.max())
    return _most(counts, name)


def _most(counts: ir.Table, name: str, **also: ir.Value) -> ir.Table:
    """The user's most frequent ``_v`` of ``counts`` (a row per user and value: ``_n`` events,
    the latest at ``_last``) as ``name``; ties go to the most recent, then to the smaller value.
    ``also``: window expressions over the user's rows, kept beside it."""
    rank = ibis.row_number().over(
        group_by=counts.user_id, order_by=[counts._n.desc(), counts._last.desc(), counts._v]
    )
    most = counts.mutate(_r=rank, **also).filter(ibis._._r == 0)
    return most.select("user_id", **{name: most._v}, **{k: most[k] for k in also})


def _weekday(c: Ctx) -> ir.Table:
    """The weekday with most events, and the days with events (``active_days``): one grouping
    by user and day gives both (a distinct count of days among the aggregates cost Spark a
    set per user, a pass of its own)."""
    e = c.events
    days = e.group_by(["user_id", e.ts.date().name("_day")]).aggregate(
        _n=ibis._.count(), _last=ibis._.ts.max()
    )
    days = days.filter(days._day.notnull())
    # int64 on both engines: DuckDB's date parts are BIGINT, Spark's INT (the lake's profiles
    # then had another column type than the store's)
    weekdays = days.group_by(
        ["user_id", days._day.day_of_week.index().cast("int64").name("_v")]
    ).aggregate(_n=ibis._._n.sum(), _last=ibis._._last.max(), _days=ibis._.count())
    total = weekdays._days.sum().over(group_by=weekdays.user_id)
    return _most(weekdays, "preferred_weekday", active_days=total)


def affinity(c: Ctx) -> ir.Table:
    """The behaviour vector A(u) = Σ_t α_t R(u, t) over categories (the seeds' formula).

    Each event with an item adds its interaction weight (view, cart, purchase …) to the item's
    category, discounted by α = 0.5^(age / half-life): recent behaviour counts more. Scores are
    normalised to sum to 1 per user.

    The age counts from the user's latest weighted event, not from ``as_of``: that scales all
    of a user's weights by one factor, which the normalisation cancels, and keeps them from
    underflowing to 0 (with a one-hour half-life, every user idle for 45 days lost their
    affinity).
    """
    e = c.events.filter(c.events.category.notnull())
    weight = ibis.cases(*((e.event == k, float(v)) for k, v in c.weights.items()), else_=0.0)
    e = e.mutate(_weight=weight).filter(ibis._._weight > 0)
    latest = e.ts.max().over(group_by=e.user_id)
    age_days = seconds_between(latest, e.ts) / DAY
    decay = (ibis.literal(0.5).log() * age_days / c.half_life_days).exp()
    raw = (
        e.mutate(_w=e._weight * decay)
        .filter(ibis._._w > 0)
        .group_by(["user_id", "category"])
        .aggregate(raw=ibis._._w.sum())
    )
    # The user's total as a window over their rows, not an aggregate joined back: Spark
    # inlines the aggregate's input on both sides of such a join and ran the events' window
    # and grouping twice (at 10M events, 17-22 s where this takes 10-12 s).
    return raw.select(
        "user_id", "category", score=raw.raw / raw.raw.sum().over(group_by=raw.user_id)
    )


def _ordered(key: ir.Value, value: ir.Value, where: ir.BooleanValue | None = None) -> ir.MapValue:
    """The group's ``key -> value`` map, its entries in ascending order of ``key`` (an
    aggregate). Keys must be unique in the group (a row number, a category of the user's):
    then no tie leaves the order to the engine.

    ``value.collect(order_by=key)`` said this before, but Ibis' PySpark backend cannot order
    an aggregate (Spark's ``collect_list`` has no ORDER BY), and sorting collected structs
    and then mapping them to their values needs a lambda, which Ibis writes as ``x -> …``:
    DuckDB 2 refuses that syntax. So: collect ``{k, v}`` structs, sort them (structs sort by
    their first field first), and make a map of them — with no lambda, the same on both:

    * DuckDB: ``map_from_entries(list_sort(array_agg({'k': key, 'v': value})))``
    * Spark: ``map_from_entries(array_sort(collect_list(struct(key AS k, value AS v))))``

    Both keep a map's entries in the order they were given (Spark calls the order of
    ``map_values`` undefined, but its map builder appends entries in order).
    """
    pairs = ibis.struct({"k": key, "v": value}).collect(where=where).sort()
    return _map_from_entries(pairs.type())(pairs)


def _map_from_entries(pairs: dt.Array) -> Callable[[ir.ArrayValue], ir.MapValue]:
    """SQL's ``map_from_entries`` (DuckDB and Spark both have it; Ibis has no operation for
    it), typed for an array of ``{k, v}`` structs."""
    k, v = pairs.value_type.types

    def map_from_entries(entries: Any) -> Any: ...

    return ibis.udf.scalar.builtin(
        map_from_entries, name="map_from_entries", signature=((pairs,), dt.Map(k, v))
    )


def _in_order(
    key: ir.Value, value: ir.Value, where: ir.BooleanValue | None = None
) -> ir.ArrayValue:
    """The group's values (those ``where`` holds) in ascending order of ``key`` (unique in the
    group): the values of :func:`_ordered`."""
    return _ordered(key, value, where).values()


def _ranked(table: ir.Table, key: str, score: str) -> ir.Table:
    """``table`` with ``_r``: each row's place (0 first) in its user's rows by ``score``, the
    highest first, ties to the smaller ``key``."""
    rank = ibis.row_number().over(
        group_by=table.user_id, order_by=[table[score].desc(), table[key]]
    )
    return table.mutate(_r=rank)


def _top(c: Ctx, table: ir.Table, key: str, score: str, k: int, name: str) -> ir.Table:
    top = _ranked(table, key, score).filter(ibis._._r < k)
    return top.group_by("user_id").aggregate(**{name: _in_order(top._r, top[key])})


def _top_brands(c: Ctx) -> ir.Table:
    e = c.events.filter(c.events.brand.notnull())
    weight = ibis.cases(*((e.event == k, float(v)) for k, v in c.weights.items()), else_=0.0)
    scored = (
        e.mutate(_w=weight)
        .filter(ibis._._w > 0)
        .group_by(["user_id", "brand"])
        .aggregate(score=ibis._._w.sum())
    )
    return _top(c, scored, "brand", "score", 3, "top_brands")


def _affinity_map(c: Ctx) -> ir.Table:
    a = affinity(c) if c.affinity is None else c.affinity.select("user_id", "category", "score")
    # One pass over the user's rows gives both: the map (keys in category order; a user has
    # one row per category) and the top 3. A join of the two, each its own pass over the
    # affinity, cost Spark two shuffles of it and a sort-merge join.
    r = _ranked(a, "category", "score")
    return r.group_by("user_id").aggregate(
        category_affinity=_ordered(r.category, r.score),
        top_categories=_in_order(r._r, r.category, where=r._r < 3),
    )


def _last_items(c: Ctx) -> ir.Table:
    e = c.events.filter(c.events.item_id.notnull())
    latest = e.group_by(["user_id", "item_id"]).aggregate(_t=ibis._.ts.max())
    rank = ibis.row_number().over(
        group_by=latest.user_id, order_by=[latest._t.desc(), latest.item_id]
    )
    r = latest.mutate(_r=rank)
    # distinct_items: the user's rows here, one per item (a distinct count among the
    # aggregates cost Spark a set per user, a pass of its own)
    return r.group_by("user_id").aggregate(
        last_items=_in_order(r._r, r.item_id, where=r._r < c.last_n), distinct_items=r.count()
    )


TABLES: tuple[Table, ...] = (
    Table(
        "category_affinity",
        "Time-decayed category affinity A(u) (a map category -> share) and the top 3 categories.",
        _affinity_map,
        (Also("top_categories", "The 3 categories with the highest affinity."),),
    ),
    Table("top_brands", "The 3 brands with the most weighted interactions.", _top_brands),
    Table(
        "preferred_channel",
        "The channel most of the user's events came through.",
        lambda c: _mode(c, lambda e: e.channel, "preferred_channel"),
    ),
    Table(
        "preferred_weekday",
        "The weekday (0 = Monday) with most events.",
        _weekday,
        (
            Also(
                "active_days", "Distinct calendar days (UTC) with at least one event.", "last_seen"
            ),
        ),
    ),
    Table(
        "preferred_hour",
        "The hour of day (UTC) with most events.",
        lambda c: _mode(c, lambda e: e.ts.hour().cast("int64"), "preferred_hour"),
    ),
    Table(
        "last_items",
        "The last items (most recent first) the user viewed, carted or bought.",
        _last_items,
        (Also("distinct_items", "Distinct items viewed, carted or bought.", "price_percentile"),),
    ),
)


def catalogue() -> list[tuple[str, str]]:
    """(name, doc) of every built-in trait, in profile-column order."""
    out = [(a.name, a.doc) for a in AGGS] + [(d.name, d.doc) for d in DERIVED]
    for t in TABLES:
        out.append((t.name, t.doc))
        for a in t.also:
            at = len(out) if a.after is None else [n for n, _ in out].index(a.after) + 1
            out.insert(at, (a.name, a.doc))
    out.append(
        (
            "score",
            "P(u): weighted mean of the user's 0-1 rank in each trait of [profile.score] "
            "(1 - rank for a negative weight); empty when no weights are set.",
        )
    )
    return out


def stitched(backend: Any, as_of: ir.Value, users: Sequence[str] | None = None) -> ir.Table:
    """Events before ``as_of``, anonymous ones under the user their device was linked to —
    by a link made before ``as_of`` too: a later sign-up is not yet known then.

    ``users`` keeps only those users' events (their own and their devices'), filtered before
    the join so that one user's history is an index-friendly scan, not a pass over all events.
    """
    # Custom events (a Segment source's names outside the vocabulary) wait until mapped.
    events = backend.table("events").filter((ibis._.ts < as_of) & ~ibis._.custom).drop("custom")
    links = (
        backend.table("identities")
        .filter(ibis._.linked_at < as_of)
        .select("anonymous_id", linked_user="user_id")
    )
    if users is not None:
        ids = list(users)
        mine = links.filter(links.linked_user.isin(ids)).anonymous_id
        # Two selective scans (a union) rather than one OR with a subquery, which DuckDB
        # runs as a mark join over every event.
        events = events.filter(events.user_id.isin(ids)).union(
            events.filter(events.user_id.isnull() & events.anonymous_id.isin(mine)), distinct=False
        )
    joined = events.left_join(links, events.anonymous_id == links.anonymous_id)
    return joined.select(
        *(c for c in events.columns if c not in ("user_id", "event_key")),
        user_id=ibis.coalesce(joined.user_id, joined.linked_user),
    )


def item_ranks(items: ir.Table) -> ir.Table:
    """Each item's category, brand and price percentile: what :func:`base_events` joins."""
    # Percentiles among the category's priced items only: an item without a price neither
    # gets one nor moves the others'.
    priced = items.filter(items.price.notnull())
    pct = priced.select(
        "item_id",
        price_percentile=ibis.percent_rank().over(group_by=priced.category, order_by=priced.price),
    )
    return (
        items.select("item_id", "category", "brand").left_join(pct, "item_id").drop("item_id_right")
    )


def base_events(
    backend: Any, as_of: ir.Value, ranked: ir.Table | None = None
) -> tuple[ir.Table, ir.Table]:
    """Stitched events of known users before ``as_of``, with item attributes; and the items.
    ``ranked``: :func:`item_ranks` already computed (a small table Spark then broadcasts)."""
    events = stitched(backend, as_of)
    items = backend.table("items")
    if ranked is None:
        ranked = item_ranks(items)
    e = events.filter(events.user_id.notnull())
    return e.left_join(ranked, "item_id").drop("item_id_right"), items
