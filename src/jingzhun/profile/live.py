"""Real-time profiles: an accepted event moves its user's traits at once, without a rebuild.

:class:`LiveProfiles` holds, for the users it has touched lately, the running state behind the
profile traits that change with every event — counts, order ids, gross and refunded revenue,
units, first and last times, the time-decayed category weights and the latest items — and
folds each committed batch of events into it, vectorised over the batch. Reading a user's
traits is then a dictionary look-up and a little arithmetic.

The traits agree with what :func:`jingzhun.profile.build.build` computes as of the same time
(same names; counts exactly, amounts and shares to rounding), because the state follows the
build's definitions in :mod:`jingzhun.profile.traits` term by term:

* the events are the stitched ones: a user's own, and the anonymous events of every device
  linked to them (an anonymous event counts once both it and the link are before ``as_of``);
  custom events are left out, as analytics leave them out;
* ``frequency`` counts distinct order ids, so a line of an order already counted adds none;
* ``monetary`` is gross order-line revenue minus refunded revenue, floored at 0, so both sums
  are kept, not their floored difference;
* the category affinity keeps raw weights Σ w·0.5^((L − t)/half-life) anchored at a time L
  of the user's weighted events, as the build anchors them at the latest: a later event is
  added scaled up to L (the sums are rescaled to a new L only after 64 half-lives, so that a
  batch does not touch every weight held); shares are the weights over their total, the
  same whatever L is;
* ``last_items`` ranks items by their latest event, then by id.

Seeding
    A user not held is seeded on first touch (:meth:`LiveProfiles.get`, or
    :meth:`LiveProfiles.load` for many at once) from the store with one query for their whole
    stitched history, folded by the same code as live batches. The stored ``profiles`` row of
    the last build is *not* a usable starting point: it keeps the affinity shares but not the
    raw total needed to add a new event to them, the order count but not the order ids (an
    order's later line would count twice), ``monetary`` after the floor at 0 (a refund that
    exceeded the gross loses the gross), and it misses events that reached the store after
    the build with earlier times, and the anonymous history of devices linked after it. So
    neither the last build nor its ``as_of`` matters here: events stored before the server
    started, after the build or not, are in the seed. The price is a scan of
    ``events.user_id`` per seeding query (DuckDB has no index on it): about 8 ms for one user
    on a store of 70,000 events, 26 ms on 1.4 million; :meth:`LiveProfiles.load` seeds 5,000
    users in one such query (0.36 s on 1.4 million).

Batches
    :meth:`LiveProfiles.apply` takes a committed batch's rows (``SELECT * FROM events WHERE
    batch_id = ?``) and folds them into the users held; users not held are left to be seeded
    from the store, which already holds the batch. A batch is folded once (its id is
    remembered), and a user seeded after a batch committed but before it was applied does not
    count it twice (the seed remembers which unapplied batches it read). A batch that links a
    device to a held user drops that user, to be seeded again with the device's history.

Time
    Events at or after the clock's "now" when they arrive (a client clock ahead, or a link
    made by a future event) wait beside the state and are folded once ``as_of`` passes them,
    so ``get(as_of)`` sees what the build sees: events strictly before ``as_of``. The state
    only moves forward: asking for an ``as_of`` at or before an event already folded is an
    error (build the profiles as of a past time for that).

What the state does not follow: traits of the build that are not listed in
:data:`LIVE_TRAITS` (modes, active days, distinct items, custom traits, tags, the score), a
changed item category or a re-linked device (call :meth:`LiveProfiles.invalidate` after
rewriting items, ``ingest remap`` or ``clean --remove``).

Examples
--------
>>> live = LiveProfiles(ws.store, ws.settings)                         # doctest: +SKIP
>>> live.apply_batch(result.batch_id)  # after the batch committed     # doctest: +SKIP
>>> live.get("u42")["top_categories"]                                 # doctest: +SKIP
['baby', 'grocery', 'pets']
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.config import Settings
from jingzhun.contracts.events import COUNTED_EVENTS
from jingzhun.contracts.results import Result
from jingzhun.contracts.time import parse_as_of, utcnow
from jingzhun.errors import InputError
from jingzhun.profile.traits import DAY, ORDER, REFUND
from jingzhun.store import Store

__all__ = ["DEFAULT_CAPACITY", "LIVE_TRAITS", "ApplyResult", "LiveProfiles"]

#: Users held at most, by default; the least recently touched go first and are seeded again
#: from the store on their next touch. A held user costs about 2-4 kB.
DEFAULT_CAPACITY = 100_000
#: Batch ids remembered as applied (a batch is folded once; apply is idempotent).
_APPLIED_MEMORY = 65_536
#: Item categories and device links cached at most; the caches start over beyond this.
_CACHE_LIMIT = 2_000_000
#: Users seeded per query by :meth:`LiveProfiles.load`.
_SEED_CHUNK = 20_000
#: Users merged per hold of the state lock when a batch is folded.
_MERGE_BLOCK = 64

_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)
_LN_HALF = math.log(0.5)
_NONE_MIN = np.iinfo(np.int64).min  # "no time" in a group's max
_NONE_MAX = np.iinfo(np.int64).max  # "no time" in a group's min
_COUNTED = pd.Index(COUNTED_EVENTS)
_K = len(COUNTED_EVENTS)
_IDX = {name: i for i, name in enumerate(COUNTED_EVENTS)}

#: The traits :meth:`LiveProfiles.get` returns, named and defined as in the ``profiles`` table.
LIVE_TRAITS: tuple[str, ...] = (
    "first_seen",
    "last_seen",
    "events",
    "frequency",
    "monetary",
    "refunded",
    "refund_rate",
    "order_lines",
    "units",
    "first_order_at",
    "last_order_at",
    "sessions",
    *(f"n_{name}" for name in COUNTED_EVENTS),
    "recency_days",
    "days_since_seen",
    "aov",
    "view_to_cart",
    "cart_to_purchase",
    "email_open_rate",
    "category_affinity",
    "top_categories",
    "last_items",
)

#: Event columns a batch must have; ``batch_id`` and ``custom`` are used when present.
_NEEDED = ("event", "user_id", "anonymous_id", "order_id", "item_id", "quantity", "revenue", "ts")


# -- rows as arrays -----------------------------------------------------------------------------


@dataclass
class _Rows:
    """Events ready to fold: their user resolved, the item's category joined, times as
    microseconds since the epoch; ``due`` is when the event starts to count (its time, or the
    device link's when that is later)."""

    user: np.ndarray  # object (str)
    event: np.ndarray  # object (str)
    order_id: np.ndarray  # object (str or None)
    item_id: np.ndarray  # object (str or None)
    category: np.ndarray  # object (str or None)
    quantity: np.ndarray  # float64, NaN for null
    revenue: np.ndarray  # float64, NaN for null
    ts: np.ndarray  # int64 µs
    due: np.ndarray  # int64 µs
    batch_id: np.ndarray  # object (str or None)

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index: np.ndarray) -> _Rows:
        return _Rows(**{name: getattr(self, name)[index] for name in _ROW_FIELDS})

    @staticmethod
    def concat(parts: Sequence[_Rows]) -> _Rows:
        return _Rows(
            **{name: np.concatenate([getattr(p, name) for p in parts]) for name in _ROW_FIELDS}
        )


_ROW_FIELDS = tuple(_Rows.__dataclass_fields__)


def _text(table: pa.Table, name: str) -> np.ndarray:
    """A text column as an object array (None for null); dictionary columns decoded."""
    col = table[name]
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        col = pc.cast(col, pa.string())
    return col.to_numpy(zero_copy_only=False).astype(object)


def _number(table: pa.Table, name: str) -> np.ndarray:
    return pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _micros(table: pa.Table, name: str) -> np.ndarray:
    """A timestamp column as int64 microseconds since the epoch (UTC)."""
    col = table[name]
    col = pc.cast(col, pa.timestamp("us", tz=getattr(col.type, "tz", None)), safe=False)
    return pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)


def _to_us(value: datetime) -> int:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return (value - _EPOCH) // _US


def _to_dt(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def _present(values: np.ndarray) -> np.ndarray:
    """Which entries of an object array hold a value."""
    return np.asarray(pd.notna(values), dtype=bool)


def _isin(values: np.ndarray, members: Iterable[Any]) -> np.ndarray:
    return pd.Series(values, dtype=object).isin(list(members)).to_numpy(dtype=bool)


def _group_max(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, _NONE_MIN, dtype=np.int64)
    np.maximum.at(out, codes, values)
    return out


def _group_min(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, _NONE_MAX, dtype=np.int64)
    np.minimum.at(out, codes, values)
    return out


def _decay(age_us: float | np.ndarray, half_life_days: float) -> Any:
    """0.5^(age / half-life), computed as the build's SQL does: EXP(LN(0.5) * days / h)."""
    return np.exp((_LN_HALF * ((age_us / 1e6) / DAY)) / half_life_days)


def _decay1(age_us: float, half_life_days: float) -> float:
    """:func:`_decay` of one number (math.exp: NumPy's costs ~1 µs a call in the merge)."""
    return math.exp((_LN_HALF * ((age_us / 1e6) / DAY)) / half_life_days)


# -- one user's state ---------------------------------------------------------------------------


class _State:
    """What the live traits of one user are computed from."""

    __slots__ = (
        "aff",
        "aff_ref",
        "bought",
        "counts",
        "devices",
        "events",
        "first_order_at",
        "first_seen",
        "gross",
        "horizon",
        "items",
        "iw",
        "iw_ref",
        "last_order_at",
        "last_seen",
        "order_lines",
        "orders",
        "pending",
        "refunded",
        "skip",
        "units",
    )

    def __init__(self, devices: set[str], skip: set[str]) -> None:
        self.counts = [0] * _K
        self.events = 0
        self.order_lines = 0
        self.orders: set[str] = set()
        self.gross = 0.0
        self.refunded = 0.0
        self.units = 0.0
        self.first_seen: int | None = None
        self.last_seen: int | None = None
        self.first_order_at: int | None = None
        self.last_order_at: int | None = None
        self.aff_ref: int | None = None  # a weighted event's time: the decay anchor
        self.aff: dict[str, float] = {}  # category -> Σ w·0.5^((aff_ref - t)/h)
        self.items: dict[str, int] = {}  # item -> latest event time; the top last_n kept
        # Interactions, when kept: item -> Σ w·0.5^((iw_ref - t)/h) with the recommender's
        # weights and half-life, anchored like ``aff``; ``bought``: items with an order line.
        self.iw_ref: int | None = None
        self.iw: dict[str, float] = {}
        self.bought: set[str] = set()
        self.horizon: int | None = None  # the latest ``due`` folded: as_of must pass it
        self.devices = devices  # anonymous ids linked to the user when seeded
        self.skip = skip  # unapplied batches the seed already read
        self.pending: _Rows | None = None  # events not yet due


@dataclass(frozen=True)
class _Config:
    half_life_days: float
    weights: dict[str, float]
    last_n: int
    #: The interactions' event weights and half-life (None: interactions not kept).
    interaction_weights: dict[str, float] | None = None
    interaction_half_life: float = 0.0


def _weights_of(events: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    """Each event's weight (0 for an event without one)."""
    table = pd.Index(list(weights))
    values = np.array([float(v) for v in weights.values()] + [0.0])
    return values[table.get_indexer(events)]  # -1 (not weighted) picks the trailing 0.0


@dataclass
class _Decayed:
    """Per (user, key) sums of w·0.5^((anchor − t)/h) over rows, each user's anchor their
    latest weighted row here: ``anchor[u]``; user u's keys and sums are
    ``names[bounds[u]:bounds[u + 1]]`` and ``sums[…]`` (Python lists: the merge reads them one
    user at a time, which NumPy indexing makes ~10x slower)."""

    anchor: list[int]
    names: list[Any]
    sums: list[float]
    bounds: list[int]

    @staticmethod
    def of(
        codes: np.ndarray, keys: np.ndarray, ts: np.ndarray, w: np.ndarray, n: int, h: float
    ) -> _Decayed:
        anchor = _group_max(codes, ts, n)
        terms = w * _decay((anchor[codes] - ts).astype(np.float64), h)
        keep = terms > 0  # the build drops terms that underflow to 0 (a key may vanish)
        codes, terms = codes[keep], terms[keep]
        k_codes, uniq = pd.factorize(keys[keep])
        n_keys = max(len(uniq), 1)
        pairs, inv = np.unique(codes * n_keys + k_codes, return_inverse=True)
        sums = np.bincount(inv, weights=terms, minlength=len(pairs))
        bounds = np.searchsorted(pairs // n_keys, np.arange(n + 1))
        names = (
            np.asarray(uniq, dtype=object)[pairs % n_keys] if len(uniq) else np.array([], object)
        )
        return _Decayed(anchor.tolist(), names.tolist(), sums.tolist(), bounds.tolist())

    def merge(self, u: int, held: dict[str, float], ref: int | None, h: float) -> int | None:
        """Add user ``u``'s sums into ``held`` (anchored at ``ref``); returns the anchor.

        The anchor stays where it is and later sums are scaled up to it (by 2^(Δ/h) > 1), so
        a batch does not rescale every weight a user holds (their many items' weights; the
        reader scales once); only when that factor would pass 2^64 does the anchor move to
        the later event and the held weights decay by one factor. Earlier sums (events that
        arrived late) are scaled down to the anchor."""
        lo, hi = self.bounds[u], self.bounds[u + 1]
        if hi <= lo:
            return ref
        new = self.anchor[u]
        if ref is None:
            ref, factor = new, 1.0
        elif new > ref and (new - ref) / 1e6 / DAY < 64 * h:
            factor = _decay1(float(ref - new), h)  # > 1: a later event weighs more
        elif new >= ref:
            if new > ref:
                # The anchor moves to this batch's latest event: every older weight decays.
                factor = _decay1(float(new - ref), h)
                for key in held:
                    held[key] *= factor
            ref, factor = new, 1.0
        else:  # events older than the anchor (arrived late)
            factor = _decay1(float(ref - new), h)
        names, sums = self.names, self.sums
        for i in range(lo, hi):
            key = names[i]
            held[key] = held.get(key, 0.0) + sums[i] * factor
        return ref


def _fold(
    rows: _Rows, states: dict[str, _State], cfg: _Config, lock: threading.Lock | None = None
) -> None:
    """Add ``rows`` to the states of their users (every user of ``rows`` has one).

    Each quantity is computed for all users of the rows at once (bincount, ufunc.at, unique
    over combined codes); the Python loop runs per user, not per row, to merge them in. With
    ``lock``, it is held only while a block of users is merged, not while the batch is
    computed: a reader of held states waits for one block at most, never for a whole batch.
    """
    if len(rows) == 0:
        return
    codes, users = pd.factorize(rows.user)
    codes = codes.astype(np.int64)
    n = len(users)
    ev = rows.event
    is_order = ev == ORDER
    is_refund = ev == REFUND
    ts = rows.ts

    events = np.bincount(codes, minlength=n)
    ecode = _COUNTED.get_indexer(ev)
    counted = ecode >= 0
    counts = np.bincount(codes[counted] * _K + ecode[counted], minlength=n * _K).reshape(n, _K)
    lines = np.bincount(codes[is_order], minlength=n)
    rev_ok = ~np.isnan(rows.revenue)
    qty_ok = ~np.isnan(rows.quantity)
    m = is_order & rev_ok
    gross = np.bincount(codes[m], weights=rows.revenue[m], minlength=n)
    m = is_refund & rev_ok
    refunded = np.bincount(codes[m], weights=rows.revenue[m], minlength=n)
    m = is_order & qty_ok
    units = np.bincount(codes[m], weights=rows.quantity[m], minlength=n)
    first = _group_min(codes, ts, n)
    last = _group_max(codes, ts, n)
    first_order = _group_min(codes[is_order], ts[is_order], n)
    last_order = _group_max(codes[is_order], ts[is_order], n)
    horizon = _group_max(codes, rows.due, n)

    # Order ids per user (distinct), sorted by user so each user's ids are one slice.
    m = is_order & _present(rows.order_id)
    o_codes, o_ids = codes[m], rows.order_id[m]
    order = np.argsort(o_codes, kind="stable")
    o_codes, o_ids = o_codes[order], o_ids[order]
    o_bounds = np.searchsorted(o_codes, np.arange(n + 1))

    # Affinity: each weighted event with a category, decayed from the user's latest one here.
    weight = _weights_of(ev, cfg.weights)
    m = (weight > 0) & _present(rows.category)
    aff = _Decayed.of(codes[m], rows.category[m], ts[m], weight[m], n, cfg.half_life_days)

    # Interactions (the recommender's): the same per item, with the items ordered.
    inter, b_items, b_bounds = None, np.array([], object), np.zeros(n + 1, np.int64)
    if cfg.interaction_weights is not None:
        weight = _weights_of(ev, cfg.interaction_weights)
        m = (weight > 0) & _present(rows.item_id)
        inter = _Decayed.of(
            codes[m], rows.item_id[m], ts[m], weight[m], n, cfg.interaction_half_life
        )
        m &= is_order
        order = np.argsort(codes[m], kind="stable")
        b_items = rows.item_id[m][order]
        b_bounds = np.searchsorted(codes[m][order], np.arange(n + 1))

    # Latest time of each (user, item).
    m = _present(rows.item_id)
    i_codes, i_ts = codes[m], ts[m]
    item_codes, items = pd.factorize(rows.item_id[m])
    n_items = max(len(items), 1)
    i_keys, i_inv = np.unique(i_codes * n_items + item_codes, return_inverse=True)
    i_max = np.full(len(i_keys), _NONE_MIN, dtype=np.int64)
    np.maximum.at(i_max, i_inv, i_ts)
    i_bounds = np.searchsorted(i_keys // n_items, np.arange(n + 1))
    i_names = (
        np.asarray(items, dtype=object)[i_keys % n_items] if len(items) else np.array([], object)
    )

    # Merge, one user at a time (plain Python values from here on), a block under the lock.
    h = cfg.half_life_days
    any_counts = counts.any(axis=1).tolist()
    counts_l = counts.tolist()
    events_l, lines_l, gross_l, refunded_l, units_l = (
        a.tolist() for a in (events, lines, gross, refunded, units)
    )
    first_l, last_l, first_order_l, last_order_l, horizon_l = (
        a.tolist() for a in (first, last, first_order, last_order, horizon)
    )
    o_bounds_l, o_ids_l = o_bounds.tolist(), o_ids.tolist()
    b_bounds_l, b_items_l = b_bounds.tolist(), b_items.tolist()
    i_bounds_l, i_names_l, i_max_l = i_bounds.tolist(), i_names.tolist(), i_max.tolist()
    names = np.asarray(users, dtype=object).tolist()
    guard = lock if lock is not None else contextlib.nullcontext()
    for start in range(0, n, _MERGE_BLOCK):
        with guard:
            for u in range(start, min(n, start + _MERGE_BLOCK)):
                st = states[names[u]]
                st.events += events_l[u]
                if any_counts[u]:
                    st.counts = [a + b for a, b in zip(st.counts, counts_l[u], strict=True)]
                if lines_l[u]:
                    st.order_lines += lines_l[u]
                    st.gross += gross_l[u]
                    st.units += units_l[u]
                    f, la = first_order_l[u], last_order_l[u]
                    st.first_order_at = (
                        f if st.first_order_at is None else min(st.first_order_at, f)
                    )
                    st.last_order_at = la if st.last_order_at is None else max(st.last_order_at, la)
                st.refunded += refunded_l[u]
                f, la = first_l[u], last_l[u]
                st.first_seen = f if st.first_seen is None else min(st.first_seen, f)
                st.last_seen = la if st.last_seen is None else max(st.last_seen, la)
                hz = horizon_l[u]
                st.horizon = hz if st.horizon is None else max(st.horizon, hz)
                lo, hi = o_bounds_l[u], o_bounds_l[u + 1]
                if hi > lo:
                    st.orders.update(o_ids_l[lo:hi])
                st.aff_ref = aff.merge(u, st.aff, st.aff_ref, h)
                if inter is not None:
                    st.iw_ref = inter.merge(u, st.iw, st.iw_ref, cfg.interaction_half_life)
                    lo, hi = b_bounds_l[u], b_bounds_l[u + 1]
                    if hi > lo:
                        st.bought.update(b_items_l[lo:hi])
                lo, hi = i_bounds_l[u], i_bounds_l[u + 1]
                if hi > lo:
                    held = st.items
                    for item, t in zip(i_names_l[lo:hi], i_max_l[lo:hi], strict=True):
                        if t > held.get(item, _NONE_MIN):
                            held[item] = t
                    if len(held) > cfg.last_n:
                        # An item dropped here can only come back with a newer event of its own.
                        st.items = dict(
                            sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))[: cfg.last_n]
                        )


def _days(at_s: float, us: int | None) -> int | None:
    """Whole days from ``us`` to ``at_s``, as the build's FLOOR((EPOCH(a) - EPOCH(b)) / 86400)."""
    return None if us is None else math.floor((at_s - us / 1e6) / DAY)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _traits(st: _State, at_us: int, last_n: int) -> dict[str, Any]:
    """The live traits of one state as of ``at_us`` (every event in it is before)."""
    at_s = at_us / 1e6
    n = {name: st.counts[i] for name, i in _IDX.items()}
    frequency = len(st.orders)
    monetary = st.gross - st.refunded
    monetary = 0.0 if monetary < 0 else monetary
    refund_rate = _ratio(st.refunded, st.gross)
    cart_to_purchase = _ratio(st.order_lines, n["product_added"])
    positive = {c: v for c, v in st.aff.items() if v > 0}
    total = sum(positive.values())
    affinity = {c: positive[c] / total for c in sorted(positive)} if positive else None
    # Ties go to the smaller name, as in the build; scores equal there may differ here in the
    # last bits (another summation order), so they are compared to 12 decimals.
    top = (
        [c for c, _ in sorted(affinity.items(), key=lambda kv: (-round(kv[1], 12), kv[0]))[:3]]
        if affinity
        else None
    )
    ranked = sorted(st.items.items(), key=lambda kv: (-kv[1], kv[0]))[:last_n]
    opened_of = max(n["email_delivered"], n["message_sent"])
    out: dict[str, Any] = {
        "first_seen": _to_dt(st.first_seen),
        "last_seen": _to_dt(st.last_seen),
        "events": st.events,
        "frequency": frequency,
        "monetary": monetary,
        "refunded": st.refunded,
        "refund_rate": None if refund_rate is None else min(refund_rate, 1.0),
        "order_lines": st.order_lines,
        "units": st.units,
        "first_order_at": _to_dt(st.first_order_at),
        "last_order_at": _to_dt(st.last_order_at),
        "sessions": n["page_viewed"],
        **{f"n_{name}": value for name, value in n.items()},
        "recency_days": _days(at_s, st.last_order_at),
        "days_since_seen": _days(at_s, st.last_seen),
        "aov": _ratio(monetary, frequency),
        "view_to_cart": _ratio(n["product_added"], n["product_viewed"]),
        "cart_to_purchase": None if cart_to_purchase is None else min(cart_to_purchase, 1.0),
        "email_open_rate": _ratio(n["email_opened"], opened_of),
        "category_affinity": affinity,
        "top_categories": top,
        "last_items": [item for item, _ in ranked] or None,
    }
    return out


# -- the holder ---------------------------------------------------------------------------------


@dataclass
class ApplyResult(Result):
    """What :meth:`LiveProfiles.apply` did with a batch.

    Attributes
    ----------
    rows : int
        Rows given.
    folded : int
        Rows added to held users' traits.
    pending : int
        Rows of held users kept until their time comes (at or after the clock's now).
    users : int
        Held users whose traits changed.
    dropped_users : int
        Held users dropped because the batch linked a device to them; their next touch seeds
        them again, the device's history included.
    ignored : int
        Rows of batches applied before, custom events, anonymous rows of unlinked devices and
        rows a seed already read.
    seconds : float
        Time taken.
    """

    rows: int
    folded: int = 0
    pending: int = 0
    users: int = 0
    dropped_users: int = 0
    ignored: int = 0
    seconds: float = 0.0


class LiveProfiles:
    """Profile traits kept current event by event, for the users touched lately.

    Parameters
    ----------
    store : Store
        The open store. Queries run on a cursor of its connection made here, so request
        threads and the writer thread may call this object while the store's own connection
        is busy.
    settings : Settings
        ``[profile]``: the half-life, the event weights and how many last items.
    capacity : int, default DEFAULT_CAPACITY
        Users held at most (least recently touched dropped first).
    clock : callable, optional
        The current time as naive UTC (default :func:`~jingzhun.contracts.time.utcnow`);
        events at or after it wait until an ``as_of`` passes them.
    interactions : (dict, float), optional
        Also keep each user's item interactions, with these event weights and half-life in
        days (the recommender's: :func:`jingzhun.recommend.interactions.interaction_weights`),
        for :meth:`interactions`.

    Notes
    -----
    Thread safety: :meth:`apply`, :meth:`load` and the seeding in :meth:`get` take one lock
    for the store (so one query runs at a time on the cursor); the held states take another,
    held only while states are merged or read, so :meth:`get` of a held user never waits for
    a query.

    Examples
    --------
    >>> live = LiveProfiles(ws.store, ws.settings)                     # doctest: +SKIP
    >>> live.get("u42", as_of="2026-06-30")["frequency"]               # doctest: +SKIP
    3
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], datetime] = utcnow,
        interactions: tuple[dict[str, float], float] | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise InputError(
                f"capacity {capacity!r} is not a whole number of users >= 1", param="capacity"
            )
        cfg = settings.profile
        kept = interactions is not None
        self._cfg = _Config(
            float(cfg.half_life_days),
            dict(cfg.weights),
            int(cfg.last_items),
            dict(interactions[0]) if kept else None,
            float(interactions[1]) if kept else 0.0,
        )
        self.capacity = capacity
        self._clock = clock
        self._con = store.con.cursor()
        self._con.execute("SET TimeZone = 'UTC'")
        self._io = threading.Lock()  # the cursor, seeding and applying
        self._lock = threading.Lock()  # the states
        self._states: OrderedDict[str, _State] = OrderedDict()
        self._waiting: set[str] = set()  # held users with pending rows
        self._applied: set[str] = set()
        self._applied_order: deque[str] = deque()
        self._categories: dict[str, str | None] = {}
        self._links: dict[str, tuple[str, int]] = {}  # anonymous_id -> (user_id, linked_at µs)
        # Batches that finished by now are never applied here: a seed need not remember them.
        self._watermark = self._con.execute(
            "SELECT max(finished_at) FROM ingest_batches"
        ).fetchall()[0][0]
        # The latest event time the store holds (µs), kept up by apply: the default as_of of
        # :meth:`interactions`, as the recommender's history query defaults to it.
        latest = self._con.execute("SELECT max(ts) FROM events").fetchall()[0][0]
        self._latest_us: int | None = None if latest is None else _to_us(latest)

    # -- public ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Users held."""
        return len(self._states)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._states

    def close(self) -> None:
        """Close the cursor; the object is of no further use."""
        with self._io:
            self._con.close()

    def invalidate(self, user_ids: Iterable[str] | None = None) -> None:
        """Drop some users (or every user and the item and device caches) so that they are
        seeded again from the store: after items were rewritten, ``ingest remap``, ``clean
        --remove``, or anything else that changes stored events in place."""
        with self._io, self._lock:
            if user_ids is None:
                self._states.clear()
                self._waiting.clear()
                self._categories.clear()
                self._links.clear()
                return
            for user in user_ids:
                self._states.pop(user, None)
                self._waiting.discard(user)

    def load(
        self,
        user_ids: Iterable[str] | None = None,
        *,
        chunk: int = _SEED_CHUNK,
        stop: threading.Event | None = None,
    ) -> int:
        """Seed users not yet held from the store.

        Parameters
        ----------
        user_ids : iterable of str, optional
            The users to seed (those already held are left as they are). Default: warm up
            with the ``capacity`` most recently active users, then known users without
            events while there is room.
        chunk : int, default 20,000
            Users seeded per query. The store lock is taken per chunk, so a server warming
            up in the background holds up its batches for one chunk at a time.
        stop : threading.Event, optional
            Checked between chunks: once set, the users seeded so far stay and loading ends.

        Returns
        -------
        int
            Users seeded.
        """
        if user_ids is None:
            with self._io:
                recent = self._con.execute(
                    """
                    SELECT u FROM (
                        SELECT coalesce(e.user_id, i.user_id) AS u, max(e.ts) AS t
                        FROM events e LEFT JOIN identities i
                          ON e.user_id IS NULL AND i.anonymous_id = e.anonymous_id
                        WHERE NOT e.custom GROUP BY 1)
                    WHERE u IS NOT NULL ORDER BY t DESC, u LIMIT ?
                    """,
                    [self.capacity],
                ).fetchall()
                # Known users without any event fill the room left: asked about (an email's
                # recommendations, a profile page) they answer without a query too.
                room = self.capacity - len(recent)
                quiet: list[str] = []
                if room > 0:
                    active = {r[0] for r in recent}
                    quiet = [
                        r[0]
                        for r in self._con.execute(
                            "SELECT user_id FROM users ORDER BY user_id"
                        ).fetchall()
                        if r[0] not in active
                    ][:room]
            # Least recent first, so that the most recent end up the last to be dropped.
            wanted = quiet + [r[0] for r in reversed(recent)]
        else:
            wanted = list(dict.fromkeys(str(u) for u in user_ids))
        seeded = 0
        step = max(1, int(chunk))
        for start in range(0, len(wanted), step):
            if stop is not None and stop.is_set():
                break
            with self._io:
                with self._lock:
                    part = [u for u in wanted[start : start + step] if u not in self._states]
                if part:
                    self._seed(part)
                    seeded += len(part)
        return seeded

    def get(self, user_id: str, as_of: datetime | str | None = None) -> dict[str, Any]:
        """The user's live traits as of ``as_of``.

        Parameters
        ----------
        user_id : str
            The user (a user id, not a device id).
        as_of : datetime or str, optional
            Naive UTC or ISO 8601; default now (the clock). It must be later than every event
            already folded for the user: the state does not go back.

        Returns
        -------
        dict
            ``user_id``, ``as_of`` and the :data:`LIVE_TRAITS`, as in the ``profiles`` table
            (zeros and nulls for a user without events).

        Raises
        ------
        InputError
            If ``as_of`` is not a time, or not after an event already counted for the user.
        """
        return self._with(user_id, as_of, self._read)

    def interactions(self, user_id: str, as_of: datetime | str | None = None) -> pd.DataFrame:
        """The user's item interactions as of ``as_of``, as the recommender's history query
        gives them (:func:`jingzhun.recommend.interactions.interactions_frame` for one user):
        each weighted event halved every half-life of age, summed per item.

        Parameters
        ----------
        user_id : str
            The user (a user id, not a device id).
        as_of : datetime or str, optional
            As for :meth:`get`, but by default just after the latest event the store holds
            (the clock's now when it holds none), as the history query and the profile build
            default to it; not before the user's latest counted event.

        Returns
        -------
        pandas.DataFrame
            ``user_id``, ``item_id``, ``weight`` (> 0), ``purchased``; sorted by item.

        Raises
        ------
        InputError
            If this object was made without ``interactions``, or ``as_of`` is as :meth:`get`
            refuses it.
        """
        if self._cfg.interaction_weights is None:
            raise InputError(
                "these live profiles keep no interactions",
                hint="make LiveProfiles with interactions=(weights, half_life_days)",
                param="interactions",
            )
        if as_of is None and self._latest_us is not None:
            return self._with(user_id, None, self._interactions, at_us=self._latest_us + 1)
        return self._with(user_id, as_of, self._interactions)

    def _with(
        self,
        user_id: str,
        as_of: datetime | str | None,
        read: Callable[[str, _State, int, bool], Any],
        at_us: int | None = None,
    ) -> Any:
        """``read(user, state, at_us, default)`` for the user's state, seeded if not held
        (``at_us``: the default time instead of the clock's now)."""
        default = as_of is None
        if isinstance(as_of, str):
            as_of = parse_as_of(as_of)
        if at_us is None:
            at = self._clock() if as_of is None else as_of
            if not isinstance(at, datetime):
                raise InputError(f"as_of {at!r} is not a time", param="as_of")
            at_us = _to_us(at)
        user_id = str(user_id)
        with self._lock:
            st = self._states.get(user_id)
            if st is not None:
                self._states.move_to_end(user_id)
                return read(user_id, st, at_us, default)
        # Seeded and read with the store lock held, so no batch lands in between.
        with self._io:
            with self._lock:
                st = self._states.get(user_id)
            if st is None:
                st = self._seed([user_id])[user_id]
            with self._lock:
                return read(user_id, st, at_us, default)

    def apply(self, rows: pa.Table) -> ApplyResult:
        """Fold a committed batch's event rows into the users held.

        Parameters
        ----------
        rows : pyarrow.Table
            Event rows as the ``events`` table holds them (``SELECT * FROM events WHERE
            batch_id = ?``): at least event, user_id, anonymous_id, order_id, item_id,
            quantity, revenue and ts; ``batch_id`` (for applying each batch once) and
            ``custom`` are used when present.

        Returns
        -------
        ApplyResult

        Raises
        ------
        InputError
            If a needed column is missing.
        """
        started = time.perf_counter()
        missing = [c for c in _NEEDED if c not in rows.column_names]
        if missing:
            raise InputError(
                f"rows lack the event column(s) {', '.join(missing)}",
                hint="pass the batch's rows as stored: SELECT * FROM events WHERE batch_id = ?",
                param="rows",
            )
        result = ApplyResult(rows=rows.num_rows)
        if rows.num_rows == 0:
            return result
        with self._io:
            self._apply(rows, result)
        result.seconds = time.perf_counter() - started
        return result

    def apply_batch(self, batch_id: str) -> ApplyResult:
        """Read a committed batch's event rows from the store and :meth:`apply` them.

        Parameters
        ----------
        batch_id : str
            The batch (``BatchResult.batch_id``).

        Returns
        -------
        ApplyResult
        """
        with self._io:
            rows = self._con.sql(
                "SELECT * FROM events WHERE batch_id = ?", params=[str(batch_id)]
            ).to_arrow_table()
        return self.apply(rows)

    # -- internals ------------------------------------------------------------------------------

    def _read(self, user_id: str, st: _State, at_us: int, default: bool) -> dict[str, Any]:
        """Traits of a held state (the state lock held)."""
        at_us = self._settle(user_id, st, at_us, default)
        out = {"user_id": user_id, "as_of": _to_dt(at_us)}
        out.update(_traits(st, at_us, self._cfg.last_n))
        return out

    def _interactions(self, user_id: str, st: _State, at_us: int, default: bool) -> pd.DataFrame:
        """Interactions of a held state (the state lock held)."""
        at_us = self._settle(user_id, st, at_us, default)
        items = sorted(st.iw)
        weight = np.array([st.iw[i] for i in items], dtype=np.float64)
        if st.iw_ref is not None and len(items):
            weight *= _decay(float(at_us - st.iw_ref), self._cfg.interaction_half_life)
        keep = weight > 0
        ids = np.asarray(items, dtype=object)[keep]
        # Object columns, not pandas' Arrow strings: half the cost on a request's path.
        return pd.DataFrame(
            {
                "user_id": pd.Series(np.full(len(ids), user_id, dtype=object), dtype=object),
                "item_id": pd.Series(ids, dtype=object),
                "weight": weight[keep],
                "purchased": np.array([i in st.bought for i in ids.tolist()], dtype=bool),
            }
        )

    def _settle(self, user_id: str, st: _State, at_us: int, default: bool) -> int:
        """Fold what came due before ``at_us``; the time to read at (the state lock held)."""
        if st.pending is not None and int(st.pending.due.min()) < at_us:
            self._fold_due(user_id, st, at_us)
        if st.horizon is not None and at_us <= st.horizon:
            if not default:
                raise InputError(
                    f"as_of {_to_dt(at_us)} is not after the latest event already counted for "
                    f"user {user_id!r} ({_to_dt(st.horizon)})",
                    hint="live profiles only move forward; build profiles as of a past time "
                    "for that (jingzhun profile build --as-of)",
                    param="as_of",
                )
            at_us = st.horizon + 1  # the clock went back: answer as of just after the events
        return at_us

    def _fold_due(self, user_id: str, st: _State, now_us: int) -> None:
        """Fold the user's pending rows that are due before ``now_us`` (the state lock held)."""
        pending = st.pending
        assert pending is not None
        due = pending.due < now_us
        _fold(pending.take(due), {user_id: st}, self._cfg)
        st.pending = pending.take(~due) if (~due).any() else None
        if st.pending is None:
            self._waiting.discard(user_id)

    def _hold(self, user_id: str, st: _State) -> None:
        """Hold a state, dropping the least recently touched beyond capacity (lock held)."""
        self._states[user_id] = st
        self._states.move_to_end(user_id)
        while len(self._states) > self.capacity:
            gone, _ = self._states.popitem(last=False)
            self._waiting.discard(gone)

    def _seed(self, users: list[str]) -> dict[str, _State]:
        """Read the users' stitched histories, fold them into fresh states and hold those
        (the io lock held). Returns the new states by user."""
        con = self._con
        devices: dict[str, set[str]] = {u: set() for u in users}
        for anon, user, linked_at in con.execute(
            "SELECT anonymous_id, user_id, linked_at FROM identities "
            "WHERE user_id IN (SELECT unnest(?::VARCHAR[]))",
            [users],
        ).fetchall():
            devices[user].add(anon)
            self._remember_link(anon, user, linked_at)
        table = con.sql(
            """
            WITH wanted AS (SELECT DISTINCT unnest(?::VARCHAR[]) AS user_id),
            links AS (
                SELECT anonymous_id, user_id, linked_at FROM identities
                WHERE user_id IN (SELECT user_id FROM wanted)),
            mine AS (
                SELECT event, user_id, order_id, item_id, quantity, revenue, ts, ts AS due,
                       batch_id
                FROM events
                WHERE user_id IN (SELECT user_id FROM wanted) AND NOT custom
                UNION ALL
                SELECT e.event, l.user_id, e.order_id, e.item_id, e.quantity, e.revenue, e.ts,
                       greatest(e.ts, l.linked_at), e.batch_id
                FROM events e JOIN links l ON e.anonymous_id = l.anonymous_id
                WHERE e.user_id IS NULL AND NOT e.custom)
            SELECT m.*, i.category FROM mine m LEFT JOIN items i ON i.item_id = m.item_id
            """,
            params=[users],
        ).to_arrow_table()
        rows = _Rows(
            user=_text(table, "user_id"),
            event=_text(table, "event"),
            order_id=_text(table, "order_id"),
            item_id=_text(table, "item_id"),
            category=_text(table, "category"),
            quantity=_number(table, "quantity"),
            revenue=_number(table, "revenue"),
            ts=_micros(table, "ts"),
            due=_micros(table, "due"),
            batch_id=_text(table, "batch_id"),
        )
        self._remember_categories(rows.item_id, rows.category)
        # Batches this seed read that were not applied yet: apply must not add them again.
        unapplied = [b for b in pd.unique(rows.batch_id).tolist() if b not in self._applied]
        recent: set[str] = set()
        if unapplied:
            recent = {
                r[0]
                for r in con.execute(
                    "SELECT batch_id FROM ingest_batches "
                    "WHERE batch_id IN (SELECT unnest(?::VARCHAR[])) "
                    "AND (?::TIMESTAMP IS NULL OR finished_at > ?::TIMESTAMP)",
                    [unapplied, self._watermark, self._watermark],
                ).fetchall()
            }
        skips: dict[str, set[str]] = {u: set() for u in users}
        if recent:
            m = _isin(rows.batch_id, recent)
            for user, batch in set(
                zip(rows.user[m].tolist(), rows.batch_id[m].tolist(), strict=True)
            ):
                skips[user].add(batch)
        states = {u: _State(devices[u], skips[u]) for u in users}
        now = _to_us(self._clock())
        later = rows.due >= now
        _fold(rows.take(~later), states, self._cfg)
        if later.any():
            waiting = rows.take(later)
            for user in pd.unique(waiting.user).tolist():
                states[user].pending = waiting.take(waiting.user == user)
        with self._lock:
            for user, st in states.items():
                self._hold(user, st)
                if st.pending is not None:
                    self._waiting.add(user)
        return states

    def _remember_link(self, anon: str, user: str, linked_at: datetime) -> None:
        if len(self._links) >= _CACHE_LIMIT:
            self._links.clear()
        self._links[anon] = (user, _to_us(linked_at))

    def _remember_categories(self, items: np.ndarray, categories: np.ndarray) -> None:
        m = _present(items)
        if not m.any():
            return
        if len(self._categories) >= _CACHE_LIMIT:
            self._categories.clear()
        pairs = pd.DataFrame({"i": items[m], "c": categories[m]}).drop_duplicates("i")
        self._categories.update(zip(pairs["i"].tolist(), pairs["c"].tolist(), strict=True))

    def _categories_of(self, items: np.ndarray) -> np.ndarray:
        """The category of each item id (None when unknown); items not cached are read."""
        out = np.full(len(items), None, dtype=object)
        m = _present(items)
        if not m.any():
            return out
        codes, uniq = pd.factorize(items[m])
        names = uniq.tolist()
        missing = [i for i in names if i not in self._categories]
        if missing:
            found = self._con.execute(
                "SELECT item_id, category FROM items WHERE item_id IN (SELECT unnest(?::VARCHAR[]))",
                [missing],
            ).fetchall()
            if len(self._categories) + len(found) >= _CACHE_LIMIT:
                self._categories.clear()
            self._categories.update(found)
        cats = np.array([self._categories.get(i) for i in names] + [None], dtype=object)
        out[m] = cats[codes]
        return out

    def _apply(self, table: pa.Table, result: ApplyResult) -> None:
        n = table.num_rows
        batch = _text(table, "batch_id") if "batch_id" in table.column_names else None
        keep = np.ones(n, dtype=bool)
        if "custom" in table.column_names:
            custom = pc.fill_null(table["custom"], False).to_numpy(zero_copy_only=False)
            keep &= ~custom.astype(bool)
        fresh: list[str] = []
        if batch is not None:
            given = [b for b in pd.unique(batch).tolist() if b is not None]
            fresh = [b for b in given if b not in self._applied]
            if len(fresh) < len(given):
                keep &= _isin(batch, fresh) | ~_present(batch)
        user_id = _text(table, "user_id")
        anon = _text(table, "anonymous_id")
        has_anon = _present(anon)
        own = _present(user_id)

        # Device links: those this batch made, and those of the anonymous ids it carries.
        needed = [a for a in pd.unique(anon[has_anon & keep]).tolist() if a not in self._links]
        new_links: list[tuple[str, str]] = []
        if needed or fresh:
            for a, user, linked_at, b in self._con.execute(
                "SELECT anonymous_id, user_id, linked_at, batch_id FROM identities "
                "WHERE anonymous_id IN (SELECT unnest(?::VARCHAR[])) "
                "OR batch_id IN (SELECT unnest(?::VARCHAR[]))",
                [needed, fresh],
            ).fetchall():
                self._remember_link(a, user, linked_at)
                if b in fresh:
                    new_links.append((a, user))
        stitch = ~own & has_anon & keep
        resolved = user_id.copy()
        linked_at = np.zeros(n, dtype=np.int64)
        if stitch.any():
            s_anon = anon[stitch]
            s_codes, s_uniq = pd.factorize(s_anon)
            found = [self._links.get(a) for a in s_uniq.tolist()]
            s_users = np.array([f[0] if f else None for f in found] + [None], dtype=object)
            s_at = np.array([f[1] if f else 0 for f in found] + [0], dtype=np.int64)
            resolved[stitch] = s_users[s_codes]
            linked_at[stitch] = s_at[s_codes]

        ts = _micros(table, "ts")
        if n:
            top = int(ts.max())
            self._latest_us = top if self._latest_us is None else max(self._latest_us, top)
        due = np.where(stitch, np.maximum(ts, linked_at), ts)
        with self._lock:
            states = self._states
            # A device newly linked to a held user brings its earlier anonymous history: the
            # user is dropped, to be seeded again with that history on the next touch.
            drop = {u for a, u in new_links if u in states and a not in states[u].devices}
            m = keep & stitch
            if m.any():
                pairs = set(zip(resolved[m].tolist(), anon[m].tolist(), strict=True))
                drop |= {u for u, a in pairs if u in states and a not in states[u].devices}
            for user in drop:
                del states[user]
                self._waiting.discard(user)
            result.dropped_users = len(drop)
            # Which rows' users are held: looked up per distinct user of the batch, not by
            # listing every held user (there may be 100,000).
            r_codes, r_users = pd.factorize(resolved)
            held = np.array([u in states for u in r_users.tolist()] + [False], dtype=bool)
            keep &= held[r_codes]  # code -1 (no user) picks the trailing False
            # Rows of a batch a seed read before the batch was applied are in the state already.
            if batch is not None and keep.any():
                for user in pd.unique(resolved[keep]).tolist():
                    skip = states[user].skip
                    if skip:
                        keep &= ~((resolved == user) & _isin(batch, skip))
                        skip.difference_update(fresh)
        result.ignored = int(n - keep.sum())
        idx = np.flatnonzero(keep)
        if len(idx):
            item_id = _text(table, "item_id")[idx]
            rows = _Rows(
                user=resolved[idx],
                event=_text(table, "event")[idx],
                order_id=_text(table, "order_id")[idx],
                item_id=item_id,
                category=self._categories_of(item_id),
                quantity=_number(table, "quantity")[idx],
                revenue=_number(table, "revenue")[idx],
                ts=ts[idx],
                due=due[idx],
                batch_id=batch[idx] if batch is not None else np.full(len(idx), None, object),
            )
            now = _to_us(self._clock())
            later = rows.due >= now
            with self._lock:
                states = {u: self._states[u] for u in pd.unique(rows.user).tolist()}
            # No other thread seeds, drops or evicts a state meanwhile (the io lock is held);
            # readers take the state lock between blocks of users.
            _fold(rows.take(~later), states, self._cfg, self._lock)
            with self._lock:
                if later.any():
                    waiting = rows.take(later)
                    for user in pd.unique(waiting.user).tolist():
                        part = waiting.take(waiting.user == user)
                        st = states[user]
                        st.pending = (
                            part if st.pending is None else _Rows.concat([st.pending, part])
                        )
                        self._waiting.add(user)
                for user in pd.unique(rows.user).tolist():
                    self._states.move_to_end(user)
                result.folded = int((~later).sum())
                result.pending = int(later.sum())
                result.users = len(states)
        self._fold_waiting()
        for b in fresh:
            self._applied.add(b)
            self._applied_order.append(b)
            if len(self._applied_order) > _APPLIED_MEMORY:
                self._applied.discard(self._applied_order.popleft())

    def _fold_waiting(self) -> None:
        """Fold pending rows that have come due by now, for every held user."""
        if not self._waiting:
            return
        now = _to_us(self._clock())
        with self._lock:
            for user in list(self._waiting):
                st = self._states.get(user)
                if st is None or st.pending is None:
                    self._waiting.discard(user)
                elif int(st.pending.due.min()) < now:
                    self._fold_due(user, st, now)
