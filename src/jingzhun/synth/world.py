"""The simulated world: how each simulated customer responds to a marketing message.

The response model is a funnel. A treated user opens the message with probability ``o``,
clicks with probability ``c`` given an open, and a click converts a user who would not have
bought anyway with probability ``r`` (higher with a discount for the price sensitive, and with
a message about a category the user loves). Untreated, a user buys in the window with the
natural probability ``p0`` of their purchase process (zero once they have dropped out).
"Sleeping dogs" are the exception: a message halves their natural purchase probability.

So the true effect of treating user u is

    uplift = (1 - p0) * o * c * r           for most users,
    uplift = -p0 / 2                        for sleeping dogs,

which later stages (uplift models, campaign evaluation) are measured against.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from jingzhun.errors import InputError
from jingzhun.synth.vocab import CATEGORIES

CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)


@dataclass(frozen=True)
class Message:
    """A marketing message: optionally about one category, with an optional discount."""

    category: str | None = None
    discount: float = 0.0
    channel: str = "email"

    def __post_init__(self) -> None:
        if self.category is not None and self.category not in CATEGORY_NAMES:
            raise InputError(
                f"message category {self.category!r} is unknown",
                hint=f"use one of {', '.join(CATEGORY_NAMES)}",
            )
        if not 0.0 <= self.discount < 1.0:
            raise InputError(f"message discount {self.discount} must be in [0, 1)")


#: The message the ground truth's p_control / p_treated / uplift refer to.
REFERENCE_MESSAGE = Message(category=None, discount=0.10)
#: Days after a send in which a purchase counts as a conversion.
RESPONSE_WINDOW_DAYS = 14


def natural_probability(rate: np.ndarray, alive: np.ndarray, days: float) -> np.ndarray:
    """Chance of at least one purchase in ``days`` for a Poisson buyer (0 once dropped out)."""
    return np.where(alive, 1.0 - np.exp(-rate * days), 0.0)


def convert_rate(
    base: np.ndarray, sensitivity: np.ndarray, category_pref: np.ndarray | None, discount: float
) -> np.ndarray:
    """Chance that a click converts a non-buyer, for a message with ``discount``.

    A discount helps in proportion to price sensitivity; a message about one category
    converts up to 3x as often for a user who loves it (pref near 1) and a third as often
    for one who never buys it.
    """
    r = base * (1.0 + 3.0 * discount * sensitivity)
    if category_pref is not None:
        r = r * (1.0 / 3.0 + 8.0 / 3.0 * np.sqrt(category_pref))
    return np.clip(r, 0.0, 1.0)


def treated_probability(
    p0: np.ndarray,
    open_rate: np.ndarray,
    click_rate: np.ndarray,
    conversion: np.ndarray,
    dog: np.ndarray,
) -> np.ndarray:
    """Chance of a purchase in the window when messaged (see the module docstring)."""
    return np.where(dog, p0 / 2.0, p0 + (1.0 - p0) * open_rate * click_rate * conversion)


class World:
    """Per-user response parameters, from the simulator's ground truth.

    Parameters
    ----------
    truth : pandas.DataFrame
        One row per user with the columns of ``truth/users.parquet``.

    Examples
    --------
    >>> world = World.load("demo/")                                       # doctest: +SKIP
    >>> out = world.respond(["u00000001"], treated=[True], message=Message("beauty", 0.2), seed=1)
    """

    def __init__(self, truth: pd.DataFrame) -> None:
        required = {
            "user_id",
            "purchase_rate",
            "alive",
            "open_rate",
            "click_rate",
            "convert_rate",
            "price_sensitivity",
            "sleeping_dog",
            "aov",
            *(f"pref_{c}" for c in CATEGORY_NAMES),
        }
        missing = required - set(truth.columns)
        if missing:
            raise InputError(
                f"ground truth lacks columns {sorted(missing)}",
                hint="regenerate it with jingzhun synth",
            )
        self.truth = truth.reset_index(drop=True)
        self._index = pd.Index(self.truth["user_id"].to_numpy(dtype=object))
        self._prefs = self.truth[[f"pref_{c}" for c in CATEGORY_NAMES]].to_numpy(dtype=np.float64)

    @classmethod
    def load(cls, directory: str | Path) -> World:
        path = Path(directory) / "truth" / "users.parquet"
        if not path.exists():
            raise InputError(
                f"no ground truth at {path}", hint="generate data with jingzhun synth --out DIR"
            )
        return cls(pq.read_table(path).to_pandas())

    def _rows(self, user_ids: list[str] | np.ndarray | pd.Series) -> np.ndarray:
        idx = self._index.get_indexer(np.asarray(user_ids, dtype=object))
        if (idx < 0).any():
            unknown = np.asarray(user_ids, dtype=object)[idx < 0][:3]
            raise InputError(f"users not in the simulated world: {', '.join(map(str, unknown))}")
        return idx

    def probabilities(
        self,
        user_ids: list[str] | np.ndarray | pd.Series,
        message: Message,
        *,
        days: float = RESPONSE_WINDOW_DAYS,
    ) -> pd.DataFrame:
        """True purchase probabilities in the window, untreated and treated, and the uplift."""
        rows = self._rows(user_ids)
        t = self.truth
        p0 = natural_probability(
            t["purchase_rate"].to_numpy(np.float64)[rows], t["alive"].to_numpy(bool)[rows], days
        )
        p1 = treated_probability(
            p0,
            t["open_rate"].to_numpy(np.float64)[rows],
            t["click_rate"].to_numpy(np.float64)[rows],
            self._convert_rate(rows, message),
            t["sleeping_dog"].to_numpy(bool)[rows],
        )
        return pd.DataFrame(
            {
                "user_id": np.asarray(user_ids, dtype=object),
                "p_control": p0,
                "p_treated": p1,
                "uplift": p1 - p0,
            }
        )

    def _convert_rate(self, rows: np.ndarray, message: Message) -> np.ndarray:
        pref = (
            None
            if message.category is None
            else self._prefs[rows, CATEGORY_NAMES.index(message.category)]
        )
        return convert_rate(
            self.truth["convert_rate"].to_numpy(np.float64)[rows],
            self.truth["price_sensitivity"].to_numpy(np.float64)[rows],
            pref,
            message.discount,
        )

    def respond(
        self,
        user_ids: list[str] | np.ndarray | pd.Series,
        *,
        treated: list[bool] | np.ndarray,
        message: Message,
        seed: int,
        days: float = RESPONSE_WINDOW_DAYS,
    ) -> pd.DataFrame:
        """Simulate what each user does in the window after a send (or a hold-out).

        Returns one row per user: ``opened``, ``clicked`` (False when untreated), ``converted``
        (any purchase in the window), ``revenue``, and the true probabilities.
        """
        treated = np.asarray(treated, dtype=bool)
        probs = self.probabilities(user_ids, message, days=days)
        if len(treated) != len(probs):
            raise InputError(f"treated has {len(treated)} values for {len(probs)} users")
        rows = self._rows(user_ids)
        rng = np.random.default_rng(seed)
        n = len(rows)
        o = self.truth["open_rate"].to_numpy(np.float64)[rows]
        c = self.truth["click_rate"].to_numpy(np.float64)[rows]
        dog = self.truth["sleeping_dog"].to_numpy(bool)[rows]
        opened = treated & (rng.random(n) < o)
        clicked = opened & (rng.random(n) < c)
        p0 = probs["p_control"].to_numpy()
        natural = rng.random(n) < np.where(treated & dog, p0 / 2.0, p0)
        incremental = (
            clicked & ~dog & ~natural & (rng.random(n) < self._convert_rate(rows, message))
        )
        converted = natural | incremental
        aov = self.truth["aov"].to_numpy(np.float64)[rows] * (1.0 - message.discount * incremental)
        revenue = np.where(
            converted, rng.lognormal(np.log(np.maximum(aov, 1.0)) - 0.125, 0.5, n), 0.0
        )
        out = probs.copy()
        out.insert(1, "treated", treated)
        out["opened"] = opened
        out["clicked"] = clicked
        out["converted"] = converted
        out["revenue"] = np.round(revenue, 2)
        return out


def response_events(
    responses: pd.DataFrame,
    *,
    campaign: str,
    start: pd.Timestamp | np.datetime64 | str,
    days: float,
    items: pd.DataFrame,
    category: str | None = None,
    seed: int,
) -> pd.DataFrame:
    """What :meth:`World.respond` says happened, as the shop's tracking would log it.

    Treated users get ``message_sent`` and ``email_delivered`` at ``start``; those who opened,
    ``email_opened`` (hours later) and those who clicked, ``email_clicked`` (minutes after the
    open), all with ``campaign_id``. Each conversion is an ``order_completed`` of one catalog
    item (of ``category`` when the message was about one) with the simulated revenue, within
    the ``days`` after ``start``: soon after the click for a clicker, anywhere in the window
    otherwise. The columns are those of the shop's events file.
    """
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    window = pd.Timedelta(days=days)
    r = responses.reset_index(drop=True)
    n = len(r)
    users = r["user_id"].to_numpy(dtype=object)
    treated = r["treated"].to_numpy(bool)
    opened = r["opened"].to_numpy(bool)
    clicked = r["clicked"].to_numpy(bool)
    converted = r["converted"].to_numpy(bool)
    hours = pd.to_timedelta(rng.exponential(6.0, n).clip(0.05, days * 24 * 0.5), unit="h")
    open_ts = t0 + hours
    click_ts = open_ts + pd.to_timedelta(rng.uniform(0.5, 30.0, n), unit="min")
    soon = click_ts + pd.to_timedelta(rng.exponential(12.0, n), unit="h")
    anywhere = t0 + window * rng.uniform(0.0, 1.0, n)
    order_ts = np.where(clicked, soon, anywhere)
    order_ts = pd.DatetimeIndex(order_ts).where(pd.DatetimeIndex(order_ts) < t0 + window, anywhere)
    pool = items if category is None else items[items["category"] == category]
    if pool.empty:
        pool = items
    picks = pool.iloc[rng.integers(0, len(pool), n)]
    frames = []

    def rows(mask: np.ndarray, event: str, ts: Any, **extra: Any) -> None:
        if not mask.any():
            return
        ts_all = (
            pd.DatetimeIndex(ts) if not isinstance(ts, pd.Timestamp) else pd.DatetimeIndex([ts] * n)
        )
        frame = pd.DataFrame(
            {
                "event": event,
                "user_id": users[mask],
                "ts": ts_all[mask],
                "campaign_id": campaign if event != "order_completed" else None,
                "channel": "email",
                **{k: np.asarray(v)[mask] for k, v in extra.items()},
            }
        )
        frames.append(frame)

    rows(treated, "message_sent", t0)
    rows(treated, "email_delivered", pd.DatetimeIndex([t0] * n) + pd.Timedelta(seconds=5))
    rows(opened, "email_opened", open_ts)
    rows(clicked, "email_clicked", click_ts)
    order_ids = np.array([f"ord_{campaign}_{i:08d}" for i in range(n)], dtype=object)
    rows(
        converted,
        "order_completed",
        order_ts,
        order_id=order_ids,
        item_id=picks["item_id"].to_numpy(dtype=object),
        quantity=np.ones(n),
        price=r["revenue"].to_numpy(np.float64),
        revenue=r["revenue"].to_numpy(np.float64),
        currency=np.full(n, "CNY", dtype=object),
    )
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out.insert(
        0,
        "event_id",
        [f"evt_{campaign}_{e}_{u}" for e, u in zip(out["event"], out["user_id"], strict=True)],
    )
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


def world_params() -> dict[str, object]:
    """The model constants, written next to the truth for reference."""
    return {
        "reference_message": asdict(REFERENCE_MESSAGE),
        "response_window_days": RESPONSE_WINDOW_DAYS,
        "categories": list(CATEGORY_NAMES),
    }


def write_world_params(directory: Path) -> None:
    (directory / "world.json").write_text(json.dumps(world_params(), indent=2), encoding="utf-8")


__all__ = ["REFERENCE_MESSAGE", "RESPONSE_WINDOW_DAYS", "Message", "World", "response_events"]
