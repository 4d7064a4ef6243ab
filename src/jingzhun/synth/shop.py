"""The shop simulator: a year of a realistic online shop, with its ground truth.

Everything is drawn with NumPy over whole populations at once (no per-user Python loops), so a
million users and ten million events take well under a minute. The story, per user:

1. A persona (see :mod:`jingzhun.synth.personas`) gives the distributions the user's own
   parameters are drawn from: purchase rate, dropout probability, category tastes (Dirichlet),
   price sensitivity, appetite for discounts, channels, hour of day, email responsiveness.
2. Purchases follow a Poisson process modulated by the calendar (weekly rhythm, 618, Double
   11, Double 12, the Spring Festival lull, slow growth); after each purchase the user drops out
   for good with their dropout probability (BG/NBD's story). The process starts at sign-up,
   which may be before the simulated window; only events inside the window are written.
3. Alive users also browse. Visitors browse anonymously before signing up and some never sign
   up. Sessions walk a funnel: page view, product views (mostly in one category; items drawn
   by power-law popularity, the cheapest of a few candidates for the price sensitive), cart
   adds, checkout, order lines with quantity, list price, discount and revenue.
4. A past email campaign is sent to a random treatment group of consenting users, with a
   hold-out control group; opens, clicks and the incremental purchases follow the response
   model of :mod:`jingzhun.synth.world`.
5. About 1% of event rows are made dirty (exact duplicates, malformed values, missing ids) and
   recorded in ``truth/dirty_rows.parquet`` with what ingest should do with each.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jingzhun.checks import bounded_int, finite
from jingzhun.errors import InputError
from jingzhun.outputs import atomic_write, check_output_dir, check_output_path
from jingzhun.synth import vocab
from jingzhun.synth.people import people
from jingzhun.synth.personas import PERSONA_NAMES, PERSONAS
from jingzhun.synth.strings import choose, fixed_width, join, scramble
from jingzhun.synth.world import (
    CATEGORY_NAMES,
    REFERENCE_MESSAGE,
    RESPONSE_WINDOW_DAYS,
    Message,
    convert_rate,
    natural_probability,
    treated_probability,
    write_world_params,
)

#: Called with a short description of the step now running.
StepFn = Callable[[str], None]

_PAGE, _VIEW, _ADD, _CHECKOUT, _ORDER = 0, 1, 2, 3, 4
_EVENT_NAMES = [
    "page_viewed",
    "product_viewed",
    "product_added",
    "checkout_started",
    "order_completed",
    "signed_up",
    "message_sent",
    "email_delivered",
    "email_opened",
    "email_clicked",
    "campaign_converted",
]
_SIGNED_UP, _SENT, _DELIVERED, _OPENED, _CLICKED, _CONVERTED = 5, 6, 7, 8, 9, 10
_US_PER_DAY = 86_400_000_000
_SESSION_CHUNK = 1 << 20


#: Bounds of a simulation: what a machine can hold, and dates every stage can handle.
MAX_USERS = 10_000_000
MAX_ITEMS = 1_000_000
MAX_HISTORY_DAYS = 3_650
MAX_SEED = 2**63 - 1
MAX_ANONYMOUS = 10.0
FIRST_END = date(2000, 1, 1)
LAST_END = date(2100, 12, 31)


@dataclass(frozen=True)
class SynthConfig:
    """What to simulate. Deterministic: equal configs give byte-equal tables."""

    users: int = 20_000
    items: int | None = None  # default: users / 10, between 200 and 50,000
    days: int = 365
    seed: int = 0
    end: date = date(2026, 10, 31)  # the last simulated day (inclusive)
    anonymous_visitors: float = 0.3  # visitors who never sign up, per user
    dirty_rate: float = 0.01
    campaign_control_share: float = 0.3

    def __post_init__(self) -> None:
        # Types and upper bounds first (a huge count would allocate terabytes, a date before
        # 2000 or after 2100 overflows or is quarantined by ingest); then the floors.
        for name, hi in (("users", MAX_USERS), ("days", MAX_HISTORY_DAYS), ("seed", MAX_SEED)):
            object.__setattr__(self, name, bounded_int(getattr(self, name), f"--{name}", hi=hi))
        if self.items is not None:
            object.__setattr__(self, "items", bounded_int(self.items, "--items", hi=MAX_ITEMS))
        if not isinstance(self.end, date) or isinstance(self.end, datetime):
            raise InputError(f"--end {self.end!r} is not a date", hint="use YYYY-MM-DD")
        if not FIRST_END <= self.end <= LAST_END:
            raise InputError(
                f"--end {self.end.isoformat()} is out of range",
                hint=f"give a day from {FIRST_END} to {LAST_END}",
            )
        for value, name in (
            (self.dirty_rate, "dirty rate"),
            (self.campaign_control_share, "campaign control share"),
        ):
            finite(value, name)
        finite(self.anonymous_visitors, "anonymous visitors per user", hi=MAX_ANONYMOUS)
        if self.users < 10:
            raise InputError(
                f"--users {self.users} is too small", hint="simulate at least 10 users"
            )
        n_categories = len(vocab.CATEGORIES)
        if self.items is not None and self.items < n_categories:
            raise InputError(
                f"--items {self.items} is too small",
                hint=f"simulate at least {n_categories} items (one per category)",
            )
        if self.days < 60:
            raise InputError(
                f"--days {self.days} is too short",
                hint="simulate at least 60 days (a campaign needs a 30-day tail)",
            )
        if not 0 <= self.dirty_rate <= 0.2:
            raise InputError(f"dirty rate {self.dirty_rate} must be between 0 and 0.2")
        if self.seed < 0:
            raise InputError(f"--seed {self.seed} must be non-negative")
        if not 0.0 < self.campaign_control_share < 1.0:
            raise InputError(
                f"campaign control share {self.campaign_control_share} must be between 0 and 1"
            )
        if self.anonymous_visitors < 0:
            raise InputError(
                f"anonymous visitors per user {self.anonymous_visitors} must be non-negative"
            )

    @property
    def start(self) -> date:
        """The first simulated day; ``end`` is the last (both inclusive)."""
        return self.end - timedelta(days=self.days - 1)

    @property
    def n_items(self) -> int:
        return (
            self.items if self.items is not None else int(min(50_000, max(200, self.users // 10)))
        )


@dataclass
class ShopData:
    """The simulated shop: the shop's own data and the ground truth behind it."""

    config: SynthConfig
    events: pa.Table
    users: pa.Table
    items: pa.Table
    campaigns: pa.Table  # assignment log of the past campaign(s)
    truth_users: pa.Table
    truth_dirty: pa.Table
    truth_campaigns: pa.Table
    truth_anomalies: pa.Table  # scraper bots and bulk orders the cleaning report should flag
    truth_complements: pa.Table  # each item's planted co-purchase partner
    stats: dict[str, object] = field(default_factory=dict)

    def write(self, out: str | Path, *, segment: bool = False) -> dict[str, str]:
        """Write the tables as Parquet under ``out`` (ground truth under ``out/truth``);
        with ``segment``, the events and users as a Segment archive too
        (``segment.jsonl.gz``, see :mod:`jingzhun.synth.segment`)."""
        check_output_dir(out)
        out = Path(out)
        truth = out / "truth"
        files = {
            "events": out / "events.parquet",
            "users": out / "users.parquet",
            "items": out / "items.parquet",
            "campaigns": out / "campaigns.parquet",
            "truth_users": truth / "users.parquet",
            "truth_dirty": truth / "dirty_rows.parquet",
            "truth_campaigns": truth / "campaigns.parquet",
            "truth_anomalies": truth / "anomalies.parquet",
            "truth_complements": truth / "complements.parquet",
        }
        archive = out / "segment.jsonl.gz"
        # Every file is checked (a folder, a device or a FIFO under one of these names is
        # refused) before the first is written.
        for path in [*files.values(), truth / "config.json", truth / "world.json", archive]:
            check_output_path(path, create_parents=True)
        try:
            truth.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create {truth}: {exc.strerror}", hint="check --out") from exc
        for name, path in files.items():
            table: pa.Table = getattr(self, name)
            with atomic_write(path) as fh:  # never a half-written file under the final name
                pq.write_table(table, fh, row_group_size=1 << 20, compression="zstd")
        meta = {
            "config": {**asdict(self.config), "end": self.config.end.isoformat()},
            "stats": self.stats,
        }
        with atomic_write(truth / "config.json", "w", encoding="utf-8") as fh:
            fh.write(json.dumps(meta, indent=2, default=str))
        write_world_params(truth)
        written = {k: str(v) for k, v in files.items()}
        if segment:
            from jingzhun.synth.segment import write_segment_archive

            n = write_segment_archive(self.events, self.users, self.truth_dirty, archive)
            self.stats["segment_messages"] = n
            written["segment"] = str(archive)
        return written


# -- helpers ---------------------------------------------------------------------------------


def _sample_rows(
    cum: np.ndarray, rows: np.ndarray, rng: np.random.Generator, chunk: int = 1 << 21
) -> np.ndarray:
    """For each r in ``rows``, a category drawn from the cumulative distribution ``cum[r]``."""
    out = np.empty(len(rows), dtype=np.int16)
    for a in range(0, len(rows), chunk):
        r = rows[a : a + chunk]
        u = rng.random(len(r), dtype=np.float32)
        out[a : a + chunk] = (cum[r] < u[:, None]).sum(axis=1)
    return np.minimum(out, cum.shape[1] - 1)


def _beta(rng: np.random.Generator, params: np.ndarray, persona: np.ndarray) -> np.ndarray:
    return rng.beta(params[persona, 0], params[persona, 1])


def _mean_beta(rng: np.random.Generator, mean: np.ndarray, strength: float = 12.0) -> np.ndarray:
    return rng.beta(mean * strength, (1.0 - mean) * strength)


class _Calendar:
    """Daily demand intensity over the simulated span and its cumulative, for time sampling."""

    def __init__(self, first_day: int, days: int, start: date) -> None:
        self.first = first_day
        d = np.arange(first_day, days + 1)
        dates = np.datetime64(start, "D") + d
        weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        month = dates.astype("M8[M]").astype(np.int64) % 12 + 1
        dom = (dates - dates.astype("M8[M]").astype("M8[D]")).astype(np.int64) + 1
        week = np.array([0.92, 0.92, 0.95, 0.97, 1.05, 1.12, 1.07])[weekday]
        browse = week.copy()
        buy = week.copy()
        rules = [  # (month, first day, last day, browse factor, purchase factor)
            (11, 1, 10, 1.5, 1.4),  # Double 11 pre-sales
            (11, 11, 11, 2.5, 4.0),  # Double 11
            (6, 1, 17, 1.2, 1.2),
            (6, 18, 18, 1.8, 2.5),  # 618
            (12, 12, 12, 1.5, 1.8),  # Double 12
            (2, 1, 10, 0.7, 0.6),  # Spring Festival lull
        ]
        for m, lo, hi, fb, fp in rules:
            hit = (month == m) & (dom >= lo) & (dom <= hi)
            browse[hit] *= fb
            buy[hit] *= fp
        trend = 1.0 + 0.25 * (d - first_day) / max(days - first_day, 1)
        browse *= trend
        buy *= trend
        window = d >= 0
        browse /= browse[window].mean()
        buy /= buy[window].mean()
        self.promo = np.clip(buy / week - 1.0, 0.0, None)  # > 0 on promotion days
        self.edges = np.arange(first_day, days + 2, dtype=np.float64)
        self.cum_browse = np.concatenate(([0.0], np.cumsum(browse)))
        self.cum_buy = np.concatenate(([0.0], np.cumsum(buy)))

    def mass(self, cum: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.edges, cum)

    def sample(
        self, cum: np.ndarray, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Times in [lo, hi) distributed by the intensity whose cumulative is ``cum``."""
        a, b = self.mass(cum, lo), self.mass(cum, hi)
        return np.interp(a + rng.random(len(a)) * (b - a), cum, self.edges)

    def promo_level(self, day: np.ndarray) -> np.ndarray:
        return self.promo[np.clip(day - self.first, 0, len(self.promo) - 1)]


# -- the simulation --------------------------------------------------------------------------


def simulate(config: SynthConfig, step: StepFn | None = None) -> ShopData:
    """Simulate the shop described by ``config``.

    Examples
    --------
    >>> data = simulate(SynthConfig(users=1000, seed=7))      # doctest: +SKIP
    >>> data.write("shop/")                                    # doctest: +SKIP
    """
    say = step or (lambda _msg: None)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(11)]
    r_cat, r_user, r_proc, r_sess, r_item, r_pii, r_camp, r_dirty, r_time, r_vis, r_anom = rngs
    D = config.days
    start = config.start
    N = config.users
    M = config.n_items
    C = len(vocab.CATEGORIES)

    say("catalogue")
    items = _catalogue(M, r_cat)

    say("users")
    users = _users(config, items, r_user)
    first_day = int(np.floor(users["signup"].min())) - 1
    cal = _Calendar(first_day, D, start)

    say("purchase process")
    proc = _purchase_process(users, cal, D, r_proc)

    say("campaign")
    camp = _campaign(config, users, proc, cal, items, r_camp)

    say("sessions")
    sessions = _sessions(config, users, proc, camp, cal, r_sess, r_vis)

    say("events")
    # The potential-purchase arrays are spent once sessions exist; free them before the
    # largest step.
    for spent in ("uid", "t"):
        proc.pop(spent)
    events, ev_stats = _events(
        config, sessions, users, items, camp, cal, start, r_item, r_time, r_anom
    )
    del sessions["actor"], sessions["t"]

    say("dirty rows")
    events, dirty, anomalies = _dirty(events, config, r_dirty)

    say("tables")
    n_visitors = sessions["n_visitors"]
    users_table = _users_table(users, start, r_pii)
    truth = _truth_table(users, proc)
    stats = {
        "users": N,
        "anonymous_visitors": int(n_visitors),
        "items": M,
        "events": events.num_rows,
        "dirty_event_rows": dirty.num_rows,
        "orders": int(ev_stats["orders"]),
        "alive_at_end": int(proc["alive_end_flag"].sum()),
        "persona_counts": {
            name: int((users["persona"] == i).sum()) for i, name in enumerate(PERSONA_NAMES)
        },
        "window": [start.isoformat(), config.end.isoformat()],
        "categories": C,
    }
    return ShopData(
        config=config,
        events=events,
        users=users_table,
        items=items["table"],
        campaigns=camp["assignments"],
        truth_users=truth,
        truth_dirty=dirty,
        truth_campaigns=camp["truth"],
        truth_anomalies=anomalies,
        truth_complements=pa.table(
            {
                "item_id": items["ids"],
                "complement_id": items["ids"].take(pa.array(items["complement"])),
            }
        ),
        stats=stats,
    )


def _catalogue(M: int, rng: np.random.Generator) -> dict[str, object]:
    cats = vocab.CATEGORIES
    weights = np.array([c.weight for c in cats])
    weights /= weights.sum()
    category = np.sort(rng.choice(len(cats), M, p=weights))
    # Every category gets at least one item so every taste can be served.
    category[: len(cats)] = np.arange(len(cats))
    category = np.sort(category)
    price = np.empty(M)
    brand = np.empty(M, dtype=object)
    noun = np.empty(M, dtype=object)
    adj = np.array(vocab.ADJECTIVES, dtype=object)[rng.integers(0, len(vocab.ADJECTIVES), M)]
    desc = np.empty(M, dtype=object)
    popularity = np.empty(M)
    for c, cat in enumerate(cats):
        idx = np.flatnonzero(category == c)
        n = len(idx)
        raw = rng.lognormal(np.log(cat.median_price), cat.price_sigma, n)
        # Shop prices end in 9 or 0.9: 58.9, 199, 1299.
        price[idx] = np.where(raw < 100, np.floor(raw) + 0.9, np.floor(raw / 10) * 10 + 9)
        b = rng.zipf(1.6, n) - 1
        brand[idx] = np.array(cat.brands, dtype=object)[np.minimum(b, len(cat.brands) - 1)]
        noun[idx] = np.array(cat.nouns, dtype=object)[rng.integers(0, len(cat.nouns), n)]
        terms = np.array(cat.terms, dtype=object)
        t1, t2 = rng.integers(0, len(terms), n), rng.integers(0, len(terms), n)
        desc[idx] = [
            f"{a}, {b2} {nn.lower()} for everyday use."
            for a, b2, nn in zip(terms[t1], terms[t2], noun[idx], strict=True)
        ]
        # Power-law popularity within the category (Zipf exponent ~1.1 on a random ranking).
        ranks = rng.permutation(n) + 1
        pop = ranks.astype(np.float64) ** -1.1
        popularity[idx] = pop / pop.sum()
    title = [f"{b} {a} {n}" for b, a, n in zip(brand, adj, noun, strict=True)]
    active = rng.random(M) > 0.03
    stock = np.where(rng.random(M) < 0.05, 0, rng.negative_binomial(2, 0.02, M))
    rating = np.round(np.clip(rng.normal(4.5, 0.35, M), 1.0, 5.0), 1)
    # Cumulative popularity, offset by category: item = searchsorted(gcdf, category + u).
    within = np.concatenate([np.cumsum(popularity[category == c]) for c in range(len(cats))])
    gcdf = category + np.minimum(within, 1.0)
    gcdf[np.r_[np.flatnonzero(np.diff(category)), M - 1]] = np.arange(len(cats)) + 1.0  # exact ends
    ids = fixed_width("sku", np.arange(1, M + 1), 6)
    table = pa.table(
        {
            "item_id": ids,
            "title": pa.array(title, pa.string()),
            "description": pa.array(desc.tolist(), pa.string()),
            "category": choose(list(CATEGORY_NAMES), category).dictionary_decode(),
            "brand": pa.array(brand.tolist(), pa.string()),
            "price": pa.array(price),
            "active": pa.array(active),
            "stock": pa.array(stock.astype(np.int64)),
            "rating": pa.array(rating),
        }
    )
    # Each item has one complement, a popular item of the complementary category: bought
    # together often enough for a market-basket analysis to find.
    names = [c.name for c in cats]
    target = np.array([names.index(vocab.COMPLEMENTS[c.name]) for c in cats])[category]
    complement = np.minimum(np.searchsorted(gcdf, target + rng.random(M) ** 2), M - 1)
    same = complement == np.arange(M)
    complement[same] = np.minimum(np.searchsorted(gcdf, target[same] + 0.999), M - 1)
    return {
        "table": table,
        "category": category,
        "price": price,
        "gcdf": gcdf,
        "ids": ids,
        "popularity": popularity,
        "complement": complement,
    }


def _persona_array(attr: str) -> np.ndarray:
    return np.array([getattr(p, attr) for p in PERSONAS], dtype=np.float64)


def _users(
    config: SynthConfig, items: dict[str, object], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    N, D = config.users, config.days
    C = len(vocab.CATEGORIES)
    shares = _persona_array("share")
    persona = rng.choice(len(PERSONAS), N, p=shares / shares.sum()).astype(np.int8)
    sign = np.array([p.signup for p in PERSONAS])
    signup = rng.uniform(sign[persona, 0], sign[persona, 1]) * D
    rate_mean, rate_shape = _persona_array("purchase_rate"), _persona_array("rate_shape")
    rate = rng.gamma(rate_shape[persona], rate_mean[persona] / rate_shape[persona])
    dropout = _beta(rng, np.array([p.dropout for p in PERSONAS]), persona)
    browse = rng.gamma(2.0, _persona_array("browse_rate")[persona] / 2.0)
    sens = _beta(rng, np.array([p.price_sensitivity for p in PERSONAS]), persona)
    affinity = _beta(rng, np.array([p.discount_affinity for p in PERSONAS]), persona)
    base = np.array([c.weight for c in vocab.CATEGORIES])
    base /= base.sum()
    alpha = _persona_array("concentration")[persona][:, None] * C * base[None, :]
    g = rng.gamma(alpha).astype(np.float64) + 1e-12
    prefs = g / g.sum(axis=1, keepdims=True)
    channel_alpha = np.array([p.channels for p in PERSONAS])[persona] * 8.0
    cg = rng.gamma(channel_alpha)
    channels = cg / cg.sum(axis=1, keepdims=True)
    hour = np.mod(rng.normal(_persona_array("hour")[persona], 2.5), 24.0)
    # Two staple items per user, from the user's own favourite categories.
    fav = _sample_rows(np.cumsum(prefs, axis=1).astype(np.float32), np.repeat(np.arange(N), 2), rng)
    staples = np.searchsorted(items["gcdf"], fav + rng.random(len(fav))).reshape(N, 2)
    return {
        "persona": persona,
        "signup": signup,
        "rate": rate,
        "dropout": dropout,
        "browse": browse,
        "sens": sens,
        "affinity": affinity,
        "prefs": prefs,
        "prefs_cum": np.cumsum(prefs, axis=1).astype(np.float32),
        "channels_cum": np.cumsum(channels, axis=1).astype(np.float32),
        "hour": hour,
        "staples": np.minimum(staples, len(items["price"]) - 1),
        "views": _persona_array("views")[persona],
        "quantity": _persona_array("quantity")[persona],
        "staple_p": _persona_array("staples")[persona],
        "open": _mean_beta(rng, _persona_array("open_rate")[persona]),
        "click": _mean_beta(rng, _persona_array("click_rate")[persona]),
        "convert": _mean_beta(rng, _persona_array("convert_rate")[persona]),
        "dog": rng.random(N) < _persona_array("sleeping_dog")[persona],
        "opt_in": rng.random(N) < _persona_array("opt_in")[persona],
        "ids": fixed_width("u", np.arange(1, N + 1), 8),
        "anon": scramble(np.arange(N), config.seed + 11),
    }


def _purchase_process(
    users: dict[str, np.ndarray], cal: _Calendar, D: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """BG/NBD-style purchases from sign-up to the end; the dropout point; who is alive."""
    N = len(users["rate"])
    lo = users["signup"]
    hi = np.full(N, float(D))
    span = cal.mass(cal.cum_buy, hi) - cal.mass(cal.cum_buy, lo)
    n_pot = rng.poisson(users["rate"] * span)
    uid = np.repeat(np.arange(N), n_pot)
    t = cal.sample(cal.cum_buy, lo[uid], hi[uid], rng)
    order = np.lexsort((t, uid))
    uid, t = uid[order], t[order]
    starts = np.concatenate(([0], np.cumsum(n_pot)[:-1]))
    rank = np.arange(len(uid)) - np.repeat(starts, n_pot)
    made = rng.geometric(
        users["dropout"]
    )  # purchases up to and including the one after which they leave
    keep = rank < made[uid]
    died = made <= n_pot
    last = np.where(died, starts + made - 1, 0)
    death = np.where(died, t[np.minimum(last, max(len(t) - 1, 0))] if len(t) else 0.0, np.inf)
    p_uid, p_t = uid[keep], t[keep]
    return {
        "uid": p_uid,
        "t": p_t,
        "death": death,  # inf for users alive at the end
        "alive_end_flag": ~died,
        "n_purchases_window": np.bincount(p_uid[p_t >= 0], minlength=N),
        "n_purchases_total": np.bincount(p_uid, minlength=N),
    }


def _campaign(
    config: SynthConfig,
    users: dict[str, np.ndarray],
    proc: dict[str, np.ndarray],
    cal: _Calendar,
    items: dict[str, object],
    rng: np.random.Generator,
) -> dict[str, object]:
    """One randomized email campaign 30 days before the end, with a hold-out control group."""
    D = config.days
    send = float(D - 30) + 10.0 / 24.0  # 10:00 on that day
    category = int(rng.integers(0, len(CATEGORY_NAMES)))
    message = Message(category=CATEGORY_NAMES[category], discount=0.15)
    campaign_id = f"cmp_{(config.start + timedelta(days=D - 30)):%Y%m%d}_{CATEGORY_NAMES[category]}"
    eligible = np.flatnonzero(users["opt_in"] & (users["signup"] < send))
    control = rng.random(len(eligible)) < config.campaign_control_share
    treated_users = eligible[~control]
    alive_at_send = proc["death"][eligible] > send
    p0 = natural_probability(users["rate"][eligible], alive_at_send, RESPONSE_WINDOW_DAYS)
    r = convert_rate(
        users["convert"][eligible],
        users["sens"][eligible],
        users["prefs"][eligible, category],
        message.discount,
    )
    p1 = treated_probability(
        p0, users["open"][eligible], users["click"][eligible], r, users["dog"][eligible]
    )
    n = len(treated_users)
    delivered = rng.random(n) < 0.97
    opened = delivered & (rng.random(n) < users["open"][treated_users])
    clicked = opened & (rng.random(n) < users["click"][treated_users])
    open_t = send + rng.exponential(0.6, n)
    click_t = open_t + rng.exponential(0.01, n)
    # Incremental purchase: a clicker who would not buy anyway converts with probability r.
    window = (proc["t"] >= send) & (proc["t"] < send + RESPONSE_WINDOW_DAYS)
    buys_anyway = np.zeros(len(users["rate"]), dtype=bool)
    buys_anyway[proc["uid"][window]] = True
    r_treated = r[~control]
    dog = users["dog"][treated_users]
    incremental = clicked & ~dog & ~buys_anyway[treated_users] & (rng.random(n) < r_treated)
    # Sleeping dogs who got the message forgo each natural purchase in the window half the time.
    suppressed = np.zeros(len(users["rate"]), dtype=bool)
    suppressed[treated_users[dog & delivered]] = True
    sent_at = np.datetime64(config.start, "us") + np.int64(send * _US_PER_DAY)
    assignments = pa.table(
        {
            "campaign_id": pa.array([campaign_id] * len(eligible), pa.string()),
            "user_id": users["ids"].take(pa.array(eligible)),
            "group": pa.array(np.where(control, "control", "treatment").tolist(), pa.string()),
            "sent_at": pa.array(np.full(len(eligible), sent_at), pa.timestamp("us", tz="UTC")),
        }
    )
    truth = pa.table(
        {
            "campaign_id": assignments["campaign_id"],
            "user_id": assignments["user_id"],
            "group": assignments["group"],
            "p_control": pa.array(p0),
            "p_treated": pa.array(p1),
            "uplift": pa.array(p1 - p0),
        }
    )
    return {
        "id": campaign_id,
        "message": message,
        "category": category,
        "send": send,
        "users": treated_users,
        "delivered": delivered,
        "opened": opened,
        "clicked": clicked,
        "open_t": open_t,
        "click_t": click_t,
        "incremental": incremental,
        "suppressed": suppressed,
        "assignments": assignments,
        "truth": truth,
    }


def _sessions(
    config: SynthConfig,
    users: dict[str, np.ndarray],
    proc: dict[str, np.ndarray],
    camp: dict[str, object],
    cal: _Calendar,
    rng: np.random.Generator,
    r_vis: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Session starts: purchases, browsing, anonymous visits, campaign conversions."""
    N, D = config.users, float(config.days)
    send = camp["send"]
    # Purchase sessions inside the window, minus those sleeping dogs forwent after the send.
    pt, pu = proc["t"], proc["uid"]
    in_win = pt >= 0
    forgo = (
        camp["suppressed"][pu]
        & (pt >= send)
        & (pt < send + RESPONSE_WINDOW_DAYS)
        & (rng.random(len(pt)) < 0.5)
    )
    keep = in_win & ~forgo
    buy_actor, buy_t = pu[keep], pt[keep]
    # Browsing while alive (and a little after the last purchase), inside the window.
    lo = np.maximum(users["signup"], 0.0)
    tail = rng.exponential(10.0, N)
    hi = np.minimum(proc["death"] + tail, D)
    ok = hi > lo
    span = np.where(
        ok, cal.mass(cal.cum_browse, np.where(ok, hi, lo)) - cal.mass(cal.cum_browse, lo), 0.0
    )
    nb = rng.poisson(users["browse"] * span)
    br_actor = np.repeat(np.arange(N), nb)
    br_t = cal.sample(cal.cum_browse, lo[br_actor], hi[br_actor], rng)
    # Anonymous browsing in the two weeks before signing up.
    fresh = np.flatnonzero((users["signup"] >= 0) & (users["signup"] < D))
    npre = rng.poisson(0.8, len(fresh))
    pre_actor = np.repeat(fresh, npre)
    s = users["signup"][pre_actor]
    pre_t = cal.sample(cal.cum_browse, np.maximum(s - 14.0, 0.0), s, rng)
    # Visitors who never sign up: actors N .. N + V - 1.
    V = round(config.anonymous_visitors * N)
    nv = 1 + r_vis.poisson(0.6, V)
    vis_actor = N + np.repeat(np.arange(V), nv)
    vis_t = cal.sample(cal.cum_browse, np.zeros(len(vis_actor)), np.full(len(vis_actor), D), r_vis)
    # Campaign conversions: a purchase session minutes after the click.
    inc = camp["users"][camp["incremental"]]
    inc_t = camp["click_t"][camp["incremental"]] + rng.exponential(0.02, len(inc))
    actor = np.concatenate([buy_actor, inc, br_actor, pre_actor, vis_actor])
    t = np.concatenate([buy_t, inc_t, br_t, pre_t, vis_t])
    purchase = np.concatenate(
        [
            np.ones(len(buy_actor) + len(inc), bool),
            np.zeros(len(br_actor) + len(pre_actor) + len(vis_actor), bool),
        ]
    )
    identified = np.concatenate(
        [
            np.ones(len(buy_actor) + len(inc) + len(br_actor), bool),
            np.zeros(len(pre_actor) + len(vis_actor), bool),
        ]
    )
    from_campaign = np.zeros(len(actor), bool)
    from_campaign[len(buy_actor) : len(buy_actor) + len(inc)] = True
    return {
        "actor": actor,
        "t": t,
        "purchase": purchase,
        "identified": identified,
        "campaign": from_campaign,
        "n_visitors": V,
        "visitor_anon": scramble(np.arange(N, N + V), config.seed + 11),
    }


def _events(
    config: SynthConfig,
    sessions: dict[str, np.ndarray],
    users: dict[str, np.ndarray],
    items: dict[str, object],
    camp: dict[str, object],
    cal: _Calendar,
    start: date,
    rng: np.random.Generator,
    r_time: np.random.Generator,
    r_anom: np.random.Generator,
) -> tuple[dict[str, object], dict[str, int]]:
    """Expand sessions into funnel events, plus sign-ups and the campaign's email events.

    Index columns are int32 and intermediates are freed early: at a million users this
    step holds tens of millions of rows.
    """
    N = config.users
    # Session start: the sampled day, at the user's usual hour most of the time. Sessions are
    # then put in time order, so the expanded events are nearly sorted already.
    is_user0 = sessions["actor"] < N
    hour_pref = np.where(is_user0, users["hour"][np.where(is_user0, sessions["actor"], 0)], 20.0)
    S = len(sessions["actor"])
    day = np.floor(sessions["t"]).astype(np.int64)
    global_hours = np.array(
        [
            1,
            0.6,
            0.4,
            0.3,
            0.3,
            0.5,
            1,
            2,
            3,
            4,
            4.5,
            5,
            6,
            5.5,
            4.5,
            4.5,
            4.5,
            4.5,
            5,
            6,
            7.5,
            8,
            6.5,
            3.5,
        ]
    )
    gh = r_time.choice(24, S, p=global_hours / global_hours.sum()) + r_time.random(S)
    own = np.mod(r_time.normal(hour_pref, 1.5), 24.0)
    hour = np.where(r_time.random(S) < 0.6, own, gh)
    t_day = np.where(sessions["campaign"], sessions["t"], day + hour / 24.0)
    start_us = (
        int((np.datetime64(start, "D") - np.datetime64("1970-01-01", "D")).astype(np.int64))
        * _US_PER_DAY
    )
    s_us = start_us + (t_day * _US_PER_DAY).astype(np.int64)
    by_time = np.argsort(s_us, kind="stable")
    s_us, day = s_us[by_time], day[by_time]
    actor = sessions["actor"][by_time].astype(np.int32)
    purchase = sessions["purchase"][by_time]
    identified = sessions["identified"][by_time]
    from_campaign = sessions["campaign"][by_time]
    del hour_pref, gh, own, hour, t_day, by_time, is_user0

    order_no = (np.cumsum(purchase) - 1).astype(np.int32)
    # Tastes and channels with one more row: the population default for anonymous visitors.
    base = np.array([c.weight for c in vocab.CATEGORIES])
    users = {
        **users,
        "prefs_cum_v": np.vstack(
            [users["prefs_cum"], np.cumsum(base / base.sum()).astype(np.float32)[None, :]]
        ),
        "chan_cum_v": np.vstack(
            [users["channels_cum"], np.cumsum([0.35, 0.35, 0.30]).astype(np.float32)[None, :]]
        ),
    }
    session = {
        "actor": actor,
        "purchase": purchase,
        "identified": identified,
        "campaign": from_campaign,
        "s_us": s_us,
        "day": day,
        "order_no": order_no,
    }
    # Expand a fixed number of sessions at a time: bounded temporaries, and (the chunk size
    # being a constant) the same draws for the same seed.
    pieces: list[dict[str, np.ndarray]] = []
    for a in range(0, S, _SESSION_CHUNK):
        part = {k: v[a : a + _SESSION_CHUNK] for k, v in session.items()}
        part["window_end_us"] = start_us + config.days * _US_PER_DAY
        pieces.append(_expand(config, part, users, items, camp, cal, rng, r_time))
    cols = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    del pieces, session
    extra = _side_events(config, users, camp, start_us, r_time)
    bots, anomalies = _anomalies(config, cols, sessions["n_visitors"], items, start_us, r_anom)
    extra = {k: np.concatenate([extra[k], bots[k].astype(extra[k].dtype)]) for k in extra}
    order = np.argsort(
        np.concatenate([cols["ts"], extra["ts"]]), kind="stable"
    )  # timsort: nearly sorted runs
    for k2 in cols:
        cols[k2] = np.concatenate([cols[k2], extra[k2].astype(cols[k2].dtype)])[order]
    del order
    meta = {
        "anomalies": anomalies,
        "anon_pool": np.concatenate(
            [users["anon"], sessions["visitor_anon"], anomalies["bot_anon"]]
        ),
        "orders": int(purchase.sum()),
        "campaign_id": camp["id"],
    }
    return {"cols": cols, "meta": meta}, {"orders": int(purchase.sum())}


def _expand(
    config: SynthConfig,
    part: dict[str, np.ndarray],
    users: dict[str, np.ndarray],
    items: dict[str, object],
    camp: dict[str, object],
    cal: _Calendar,
    rng: np.random.Generator,
    r_time: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Funnel events of a run of sessions (see :func:`_events`)."""
    N = config.users
    actor, purchase, identified = part["actor"], part["purchase"], part["identified"]
    from_campaign, s_us, day, order_no = (
        part["campaign"],
        part["s_us"],
        part["day"],
        part["order_no"],
    )
    S = len(actor)
    is_user = actor < N
    ua = np.where(is_user, actor, 0)
    prefs_cum, chan_cum = users["prefs_cum_v"], users["chan_cum_v"]
    pref_row = np.where(is_user, actor, N)
    sens = np.where(is_user, users["sens"][ua], 0.5).astype(np.float32)

    # Funnel shape per session.
    views_mean = np.where(is_user, users["views"][ua], 1.2)
    n_items = np.where(purchase, np.minimum(1 + rng.poisson(0.35, S), 4), 0).astype(np.int32)
    n_view = np.maximum(1 + rng.poisson(np.where(purchase, 0.8, views_mean)), n_items).astype(
        np.int32
    )
    browse_add = ~purchase & (rng.random(S) < 0.12)
    n_add = np.where(purchase, n_items, browse_add).astype(np.int32)
    n_check = np.where(purchase, 1, browse_add & (rng.random(S) < 0.25)).astype(np.int32)
    n_order = n_items
    T = (1 + n_view + n_add + n_check + n_order).astype(np.int32)
    del views_mean, browse_add

    # Items viewed: mostly in one category per session; the cheapest of three popular
    # candidates for the price sensitive, the dearest now and then for the others.
    view_s = np.repeat(np.arange(S, dtype=np.int32), n_view)
    nv_total = len(view_s)
    sess_cat = _sample_rows(prefs_cum, pref_row, rng)
    cat = sess_cat[view_s].astype(np.float64)
    stray = np.flatnonzero(rng.random(nv_total) < 0.15)
    cat[stray] = _sample_rows(prefs_cum, pref_row[view_s[stray]], rng)
    gcdf, price = items["gcdf"], items["price"]
    last_item = len(price) - 1
    best = np.minimum(np.searchsorted(gcdf, cat + rng.random(nv_total)), last_item).astype(np.int32)
    view_item = best.copy()
    cheap, dear = best.copy(), best.copy()
    for _ in range(2):
        cand = np.minimum(np.searchsorted(gcdf, cat + rng.random(nv_total)), last_item).astype(
            np.int32
        )
        cheap = np.where(price[cand] < price[cheap], cand, cheap)
        dear = np.where(price[cand] > price[dear], cand, dear)
    del cat, cand, best
    u = rng.random(nv_total, dtype=np.float32)
    s_view = sens[view_s]
    view_item = np.where(
        u < s_view, cheap, np.where(u < s_view + (1 - s_view) * 0.3, dear, view_item)
    )
    del cheap, dear, u, s_view
    # Staples: some purchase sessions open on (and buy) one of the user's usual items.
    vbase = np.concatenate(([0], np.cumsum(n_view, dtype=np.int64)[:-1]))
    staple_p = np.where(is_user, users["staple_p"][ua], 0.0)
    restock = np.flatnonzero(purchase & is_user & (rng.random(S) < staple_p))
    view_item[vbase[restock]] = users["staples"][ua[restock], rng.integers(0, 2, len(restock))]
    # Complements: in an order of several items, a later item is often the first one's
    # complement (planted co-purchases, recorded in truth/complements.parquet).
    multi = np.flatnonzero(n_items >= 2)
    extra = n_items[multi] - 1
    slot = (
        vbase[np.repeat(multi, extra)]
        + 1
        + (np.arange(extra.sum()) - np.repeat(np.cumsum(extra) - extra, extra))
    )
    first = view_item[vbase[np.repeat(multi, extra)]]
    pair = rng.random(len(slot)) < 0.45
    view_item[slot[pair]] = items["complement"][first[pair]]
    qty_extra = np.where(is_user, users["quantity"][ua], 0.2)
    line_q = (1 + rng.poisson(qty_extra[view_s])).astype(np.float32)
    del view_s, staple_p, restock

    # Expand to events.
    tbase = np.concatenate(([0], np.cumsum(T, dtype=np.int64)[:-1]))
    es = np.repeat(np.arange(S, dtype=np.int32), T)
    E = len(es)
    pos = (np.arange(E, dtype=np.int64) - np.repeat(tbase, T)).astype(np.int32)
    nv_e = n_view[es]
    after_views = nv_e + n_add[es]
    after_check = after_views + n_check[es]
    kind = np.full(E, _ORDER, dtype=np.int8)
    kind[pos <= after_check] = _CHECKOUT
    kind[pos <= after_views] = _ADD
    kind[pos <= nv_e] = _VIEW
    kind[pos == 0] = _PAGE
    slot = np.full(E, -1, dtype=np.int32)
    m = kind == _VIEW
    slot[m] = pos[m] - 1
    m = kind == _ADD
    slot[m] = pos[m] - 1 - nv_e[m]
    m = kind == _ORDER
    slot[m] = pos[m] - 1 - after_check[m]
    del nv_e, after_views, after_check, m
    has_item = slot >= 0
    vidx = vbase[es[has_item]] + slot[has_item]
    item = np.full(E, -1, dtype=np.int32)
    item[has_item] = view_item[vidx]
    line = (kind == _ADD) | (kind == _ORDER)
    qty = np.full(E, np.nan, dtype=np.float32)
    qty[line] = line_q[vbase[es[line]] + slot[line]]
    unit = np.full(E, np.nan)
    unit[has_item] = price[item[has_item]]
    del slot, vidx, line_q, has_item, line
    # Discounts on order lines: more on promotion days and for promotion hunters.
    order_rows = np.flatnonzero(kind == _ORDER)
    sess_of_order = es[order_rows]
    promo_level = cal.promo_level(day[sess_of_order])
    aff = np.where(is_user[sess_of_order], users["affinity"][ua[sess_of_order]], 0.3)
    p_disc = np.clip((0.12 + 0.25 * promo_level) * (0.3 + 1.6 * aff), 0.0, 0.9)
    levels = np.array([0.05, 0.1, 0.15, 0.2, 0.3, 0.5])
    k = len(order_rows)
    disc = np.where(
        rng.random(k) < p_disc, levels[rng.choice(6, k, p=[0.15, 0.3, 0.2, 0.2, 0.1, 0.05])], 0.0
    )
    disc = np.where(from_campaign[sess_of_order], np.maximum(disc, camp["message"].discount), disc)
    discount = np.full(E, np.nan)
    discount[order_rows] = np.where(disc > 0, disc, np.nan)
    revenue = np.full(E, np.nan)
    revenue[order_rows] = np.round(qty[order_rows] * unit[order_rows] * (1.0 - disc), 2)
    del promo_level, aff, p_disc, disc
    # Times within the session: exponential gaps of about 40 seconds.
    gaps = (r_time.exponential(40.0, E) * 1e6).astype(np.int64)
    gaps[pos == 0] = 0
    del pos
    cum = np.cumsum(gaps)
    del gaps
    ts = s_us[es] + cum - np.repeat(cum[tbase], T)
    del cum, tbase
    # Who: user ids after sign-up, device ids before (and on some signed-in web/app sessions).
    chan = np.where(from_campaign, 3, _sample_rows(chan_cum, pref_row, rng)).astype(np.int8)
    carry_anon = ~identified | (rng.random(S) < 0.3)
    order_of = np.full(E, -1, dtype=np.int32)
    order_of[order_rows] = order_no[sess_of_order]
    cols = {
        "kind": kind,
        "user": np.where(identified[es], actor[es], -1).astype(np.int32),
        "anon": np.where(carry_anon[es], actor[es], -1).astype(
            np.int32
        ),  # visitors' ids follow the users'
        "order": order_of,
        "item": item,
        "quantity": qty,
        "price": unit,
        "revenue": revenue,
        "discount": discount,
        "channel": chan[es],
        "campaign": np.where(from_campaign[es], 0, -1).astype(np.int8),
        "ts": ts,
    }
    del es
    # A session that starts late on the last day runs past the window: the log ends at the
    # window's end, so its later events are not written.
    inside = ts < part["window_end_us"]
    if not inside.all():
        cols = {k: v[inside] for k, v in cols.items()}
    return cols


def _anomalies(
    config: SynthConfig,
    cols: dict[str, np.ndarray],
    n_visitors: int,
    items: dict[str, object],
    start_us: int,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """What a cleaning report should catch: scraper bots and a few bulk orders.

    Bots are anonymous visitors that fire 60-400 product views within a few minutes, one to
    three times. Bulk orders multiply the quantity (and revenue) of every line of a few orders
    by 50-200. ``cols`` is changed in place for the bulk orders; the bots' events are returned.
    """
    N, D = config.users, config.days
    n_bots = max(1, round(config.users * 0.0005))
    bursts = 1 + rng.poisson(0.8, n_bots)
    burst_bot = np.repeat(np.arange(n_bots), bursts)
    burst_t = rng.uniform(0, D, len(burst_bot))
    size = rng.integers(60, 400, len(burst_bot))
    ev_burst = np.repeat(np.arange(len(burst_bot)), size)
    within = np.cumsum(rng.exponential(0.4, len(ev_burst))) * 1e6  # ~0.4 s apart
    first = np.concatenate(([0], np.cumsum(size)[:-1]))
    within = within - np.repeat(within[first], size)
    ts = start_us + (burst_t[ev_burst] * _US_PER_DAY).astype(np.int64) + within.astype(np.int64)
    ts = np.minimum(ts, start_us + D * _US_PER_DAY - 1)  # a burst at the very end stays inside
    n = len(ev_burst)
    pop = items["popularity"] / items["popularity"].sum()
    item = rng.choice(len(pop), n, p=pop)
    actor = N + n_visitors + burst_bot[ev_burst]
    nan = np.full(n, np.nan)
    bots = {
        "kind": np.full(n, _VIEW, np.int8),
        "user": np.full(n, -1),
        "anon": actor,
        "order": np.full(n, -1),
        "item": item,
        "quantity": nan,
        "price": items["price"][item],
        "revenue": nan,
        "discount": nan,
        "channel": np.zeros(n, np.int8),
        "campaign": np.full(n, -1),
        "ts": ts,
    }
    # Bulk orders: a handful of orders with every line's quantity multiplied.
    orders = np.unique(cols["order"][cols["order"] >= 0])
    k = max(1, round(len(orders) * 0.0003)) if len(orders) else 0
    bulk = rng.choice(orders, k, replace=False) if k else np.empty(0, np.int32)
    factor = rng.integers(50, 200, k)
    lines = np.flatnonzero(np.isin(cols["order"], bulk))
    if k:
        by_order = np.argsort(bulk)
        mult = factor[by_order][np.searchsorted(bulk[by_order], cols["order"][lines])]
        cols["quantity"][lines] *= mult
        cols["revenue"][lines] = np.round(cols["revenue"][lines] * mult, 2)
    bot_anon = scramble(np.arange(N + n_visitors, N + n_visitors + n_bots), config.seed + 11)
    bot_events = np.bincount(burst_bot, weights=size, minlength=n_bots).astype(np.int64)
    return bots, {
        "bot_anon": bot_anon,
        "bot_events": bot_events,
        "bulk_orders": bulk,
        "bulk_factor": factor,
    }


def _side_events(
    config: SynthConfig,
    users: dict[str, np.ndarray],
    camp: dict[str, object],
    start_us: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Sign-up events, and the campaign's sent/delivered/opened/clicked/converted events."""
    D = config.days
    fresh = np.flatnonzero((users["signup"] >= 0) & (users["signup"] < D))
    cu = camp["users"]
    parts: list[tuple[np.ndarray, int, np.ndarray, bool]] = [
        (fresh, _SIGNED_UP, users["signup"][fresh], False),
        (cu, _SENT, np.full(len(cu), camp["send"]), True),
        (
            cu[camp["delivered"]],
            _DELIVERED,
            np.full(camp["delivered"].sum(), camp["send"]) + 30 / 86400,
            True,
        ),
        (cu[camp["opened"]], _OPENED, camp["open_t"][camp["opened"]], True),
        (cu[camp["clicked"]], _CLICKED, camp["click_t"][camp["clicked"]], True),
        (cu[camp["incremental"]], _CONVERTED, camp["click_t"][camp["incremental"]] + 0.05, True),
    ]
    who = np.concatenate([p[0] for p in parts])
    kind = np.concatenate([np.full(len(p[0]), p[1], np.int8) for p in parts])
    t = np.concatenate([p[2] for p in parts])
    in_camp = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])
    n = len(who)
    nan = np.full(n, np.nan)
    return {
        "kind": kind,
        "user": who,
        "anon": np.where(kind == _SIGNED_UP, who, -1),
        "order": np.full(n, -1),
        "item": np.full(n, -1),
        "quantity": nan,
        "price": nan,
        "revenue": nan,
        "discount": nan,
        "channel": np.where(in_camp, 3, 1),
        "campaign": np.where(in_camp, 0, -1),
        "ts": start_us + (t * _US_PER_DAY).astype(np.int64) + rng.integers(0, 1_000_000, n),
    }


def _strings(pool: pa.Array, index: np.ndarray) -> pa.Array:
    """Plain strings ``pool[index]``, null where index < 0.

    High-cardinality ids are written as plain strings: Parquet writers handle a
    million-entry Arrow dictionary poorly (slow, and larger files).
    """
    missing = index < 0
    return pool.take(pa.array(np.where(missing, 0, index), mask=missing))


def _dirty(
    generated: dict[str, object], config: SynthConfig, rng: np.random.Generator
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Make about ``dirty_rate`` of the rows dirty; build the events table and the truth.

    Returns the events, the dirty rows' truth and the anomalies' truth (bots, bulk orders).
    """
    cols: dict[str, np.ndarray] = generated["cols"]
    meta = generated["meta"]
    n = len(cols["ts"])
    k = round(config.dirty_rate * n)
    n_dup, n_bad = int(k * 0.4), int(k * 0.35)
    n_missing = k - n_dup - n_bad
    picked = rng.choice(n, n_dup + n_bad + n_missing, replace=False) if k else np.empty(0, np.int64)
    dup_src, bad, missing = picked[:n_dup], picked[n_dup : n_dup + n_bad], picked[n_dup + n_bad :]
    event_code = cols.pop("kind").astype(np.int32)
    user = cols.pop("user")
    anon = cols.pop("anon")
    price = cols.pop("price")
    ts = cols.pop("ts")
    had_price = ~np.isnan(price)
    # Malformed values, one kind per row, each a value ingest must refuse.
    kinds = rng.integers(0, 5, len(bad))
    kinds[(kinds <= 1) & ~had_price[bad]] = (
        0  # a NaN where no price belongs is no error: make it negative
    )
    details = np.array(
        ["price:negative", "price:nan", "ts:future", "event:unknown", "user_id:too_long"],
        dtype=object,
    )[kinds]
    typo, long_id = len(_EVENT_NAMES), config.users  # codes just past the pools
    rows = bad[kinds == 0]
    price[rows] = -np.where(np.isnan(price[rows]), 9.9, price[rows])
    nan_rows = bad[kinds == 1]
    price[nan_rows] = np.nan
    rows = bad[kinds == 2]
    ts[rows] = (
        int((np.datetime64("2099-01-01", "D") - np.datetime64("1970-01-01", "D")).astype(np.int64))
        * _US_PER_DAY
        + rows % _US_PER_DAY
    )
    event_code[bad[kinds == 3]] = typo
    user[bad[kinds == 4]] = long_id
    user[missing] = -1
    anon[missing] = -1
    # Exact duplicates right after their originals, as retrying clients produce them.
    take = np.concatenate([np.arange(n), dup_src])
    copy = np.concatenate([np.zeros(n, bool), np.ones(len(dup_src), bool)])
    order = np.lexsort((copy, take))
    take, copy = take[order], copy[order]
    del order
    inverse = np.empty(n, dtype=np.int64)
    inverse[take[~copy]] = np.flatnonzero(~copy)
    price_null = ~had_price
    price_null[bad] = False  # malformed prices stay as written (negative, or NaN), not null

    users_pool = pa.concat_arrays(
        [fixed_width("u", np.arange(1, config.users + 1), 8), pa.array(["u" * 300])]
    )
    anon_pool = fixed_width("anon_", meta["anon_pool"], 12, base=16)
    order_pool = fixed_width(
        "ord_", scramble(np.arange(meta["orders"]), config.seed + 202, bits=40), 10, base=16
    )
    item_pool = fixed_width("sku", np.arange(1, int(max(cols["item"].max(), 0)) + 2), 6)
    # Column by column, freeing each NumPy source as soon as its Arrow column exists.
    arrays: dict[str, pa.Array] = {}
    arrays["event_id"] = fixed_width("evt_", scramble(take, config.seed + 101), 12, base=16)
    arrays["event"] = choose([*_EVENT_NAMES, "prodct_viewd"], event_code[take])
    del event_code
    arrays["user_id"] = _strings(users_pool, user[take])
    del user
    arrays["anonymous_id"] = _strings(anon_pool, anon[take])
    del anon
    arrays["order_id"] = _strings(order_pool, cols.pop("order")[take])
    arrays["item_id"] = _strings(item_pool, cols.pop("item")[take])
    q = cols.pop("quantity")[take]
    arrays["quantity"] = pa.array(
        np.nan_to_num(q).astype(np.int16), mask=np.isnan(q)
    )  # whole units
    del q
    arrays["price"] = pa.array(price[take], mask=price_null[take])
    arrays["revenue"] = pa.array(cols.pop("revenue")[take], from_pandas=True)
    arrays["currency"] = choose(["CNY"], np.where(had_price[take], 0, -1))
    del price, price_null, had_price
    arrays["channel"] = choose([*vocab.CHANNELS, "email"], cols.pop("channel")[take])
    arrays["campaign_id"] = choose([meta["campaign_id"]], cols.pop("campaign")[take])
    arrays["ts"] = pa.array(ts[take], pa.timestamp("us", tz="UTC"))
    del ts
    arrays["discount"] = pa.array(cols.pop("discount")[take], from_pandas=True)
    table = pa.table(arrays)
    del arrays
    anomalies = meta["anomalies"]
    n_bots = len(anomalies["bot_anon"])
    first_bot = len(meta["anon_pool"]) - n_bots
    anomaly_table = pa.table(
        {
            "kind": pa.array(
                ["bot"] * n_bots + ["bulk_order"] * len(anomalies["bulk_orders"]), pa.string()
            ),
            "id": pa.concat_arrays(
                [
                    anon_pool.take(pa.array(np.arange(first_bot, first_bot + n_bots))),
                    order_pool.take(pa.array(anomalies["bulk_orders"].astype(np.int64))),
                ]
            ),
            "detail": pa.array(
                [f"{int(e)} product views in bursts" for e in anomalies["bot_events"]]
                + [f"every line's quantity x{int(f)}" for f in anomalies["bulk_factor"]],
                pa.string(),
            ),
        }
    )
    dup_rows = np.flatnonzero(copy)
    truth = pa.table(
        {
            "row": pa.array(
                np.concatenate([dup_rows, inverse[bad], inverse[missing]]).astype(np.int64)
            ),
            "kind": pa.array(
                ["duplicate"] * len(dup_rows)
                + ["malformed"] * len(bad)
                + ["missing_id"] * len(missing),
                pa.string(),
            ),
            "detail": pa.array(
                ["event_id seen on the previous row"] * len(dup_rows)
                + details.tolist()
                + ["user_id:null,anonymous_id:null"] * len(missing),
                pa.string(),
            ),
            "expected": pa.array(
                ["duplicate"] * len(dup_rows) + ["quarantined"] * (len(bad) + len(missing)),
                pa.string(),
            ),
        }
    ).sort_by("row")
    return table, truth, anomaly_table


def _users_table(users: dict[str, np.ndarray], start: date, rng: np.random.Generator) -> pa.Table:
    """The shop's customer records: attributes and personal data (PII), with a little dirt."""
    N = len(users["signup"])
    persona = users["persona"]
    created_us = (
        np.datetime64(start, "us") + (users["signup"] * _US_PER_DAY).astype("timedelta64[us]")
    ).astype("datetime64[us]")
    pii = people(N, rng, users["prefs"])
    young = persona == PERSONA_NAMES.index("new_user")
    birth = np.clip(np.round(rng.normal(np.where(young, 1998, 1990), 9.0)), 1950, 2008).astype(
        np.int64
    )
    birth_bad = rng.random(N) < 0.002
    birth[birth_bad] = 1850  # impossible: ingest must quarantine these rows
    weights = np.array([c[3] for c in vocab.CITIES])
    city = rng.choice(len(vocab.CITIES), N, p=weights / weights.sum())
    signup_channel = rng.choice(len(vocab.SIGNUP_CHANNELS), N, p=[0.45, 0.25, 0.25, 0.05])
    return pa.table(
        {
            "user_id": users["ids"],
            "created_at": pa.array(created_us, pa.timestamp("us", tz="UTC")),
            "gender": pii["gender"],
            "birth_year": pa.array(birth),
            "city": choose([c[0] for c in vocab.CITIES], city).dictionary_decode(),
            "region": choose([c[2] for c in vocab.CITIES], city).dictionary_decode(),
            "signup_channel": choose(
                list(vocab.SIGNUP_CHANNELS), signup_channel
            ).dictionary_decode(),
            "marketing_opt_in": pa.array(users["opt_in"]),
            "name": pii["name"],
            "email": pii["email"],
            "phone": pii["phone"],
            "address": join(
                choose([c[1] for c in vocab.CITIES], city).dictionary_decode(),
                pii["street"],
                sep=" ",
            ),
        }
    )


def _truth_table(users: dict[str, np.ndarray], proc: dict[str, np.ndarray]) -> pa.Table:
    """What the simulator knows about each user that the shop's data can only reveal."""
    alive = proc["alive_end_flag"]
    ref = REFERENCE_MESSAGE
    p0 = natural_probability(users["rate"], alive, RESPONSE_WINDOW_DAYS)
    r = convert_rate(users["convert"], users["sens"], None, ref.discount)
    p1 = treated_probability(p0, users["open"], users["click"], r, users["dog"])
    # Expected spend per order: quantity times the price level the user tends to buy at.
    aov = (1.0 + users["quantity"]) * 1.3 * np.exp(np.log(120.0) + 0.8 * (0.5 - users["sens"]))
    cols: dict[str, object] = {
        "user_id": users["ids"],
        "persona": choose(
            list(PERSONA_NAMES), users["persona"].astype(np.int64)
        ).dictionary_decode(),
        "signup_day": pa.array(users["signup"]),
        "purchase_rate": pa.array(users["rate"]),
        "dropout_prob": pa.array(users["dropout"]),
        "alive": pa.array(alive),
        "purchases": pa.array(proc["n_purchases_window"].astype(np.int64)),
        "expected_purchases_90d": pa.array(np.where(alive, users["rate"] * 90.0, 0.0)),
        "price_sensitivity": pa.array(users["sens"]),
        "discount_affinity": pa.array(users["affinity"]),
        "open_rate": pa.array(users["open"]),
        "click_rate": pa.array(users["click"]),
        "convert_rate": pa.array(users["convert"]),
        "sleeping_dog": pa.array(users["dog"]),
        "marketing_opt_in": pa.array(users["opt_in"]),
        "aov": pa.array(aov),
        "p_control": pa.array(p0),
        "p_treated": pa.array(p1),
        "uplift": pa.array(p1 - p0),
    }
    for c, name in enumerate(CATEGORY_NAMES):
        cols[f"pref_{name}"] = pa.array(users["prefs"][:, c])
    return pa.table(cols)


def default_end() -> date:
    return SynthConfig().end


def parse_end(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as exc:
        raise InputError(f"--end {value!r} is not a date", hint="use YYYY-MM-DD") from exc
