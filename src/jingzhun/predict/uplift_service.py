"""Uplift on a store: learn from a past randomized campaign, score every user, target.

The campaign is an assignment log — user_id, group (treatment or control) and sent_at, as
the simulator writes ``campaigns.parquet`` and the campaign stage will keep — and the outcome
is read from the store: an order within ``window_days`` of the send. Features are the
point-in-time profile at the send (``labels.features_at``): what was known when the message
went out. Users are split at random within each group into training (60%), validation (20%,
which chooses the learner by its Qini coefficient) and test (20%, reported once).

With the simulator's truth (``truth/campaigns.parquet``: the true uplift of each user) the
test set also reports the correlation with the true uplift and the oracle's Qini.

Targeting: a user is worth a message when uplift × margin > cost, the margin being
``[predict] margin`` × the user's expected order value (their average order value, or the
campaign's average for users who never ordered).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from jingzhun.checks import MAX_DAYS, MIN_DAYS, bounded_int, finite
from jingzhun.config import Settings
from jingzhun.errors import InputError
from jingzhun.predict import labels as lb
from jingzhun.predict.policy import best_share, profit_curve, targeting_policy
from jingzhun.predict.scores import Scored, find_model, record, write_scores
from jingzhun.predict.uplift_learners import UPLIFT_MODELS, UpliftModel, make_uplift_model
from jingzhun.predict.uplift_metrics import evaluate_uplift, qini_curve
from jingzhun.profile.build import default_as_of
from jingzhun.store import Registry, Store
from jingzhun.store.registry import npz_bytes

Progress = Callable[[str], None]

TREATED = ("treatment", "treated", "1", "true", "yes")
CONTROL = ("control", "holdout", "0", "false", "no")


def read_assignments(frame: pd.DataFrame, campaign: str | None = None) -> pd.DataFrame:
    """user_id, treated (bool), sent_at from an assignment log; one campaign."""
    missing = [c for c in ("user_id", "group") if c not in frame.columns]
    if missing:
        raise InputError(
            f"the assignments lack column {missing[0]!r}",
            hint="give user_id, group (treatment/control) and sent_at",
        )
    if "campaign_id" in frame.columns:
        ids = frame["campaign_id"].astype(str).unique().tolist()
        if campaign is None and len(ids) > 1:
            raise InputError(
                f"the assignments hold {len(ids)} campaigns",
                hint=f"pick one with --campaign: {', '.join(ids[:5])}",
            )
        if campaign is not None:
            if campaign not in ids:
                raise InputError(
                    f"--campaign {campaign!r} is not in the assignments",
                    hint=f"known: {', '.join(ids[:5])}",
                )
            frame = frame[frame["campaign_id"].astype(str) == campaign]
    group = frame["group"].astype(str).str.strip().str.lower()
    bad = ~group.isin(TREATED + CONTROL)
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise InputError(
            f"assignments row {row + 1}: group {frame['group'].iloc[row]!r} is neither treatment nor control",
            hint="use treatment/control (or 1/0)",
        )
    if "sent_at" not in frame.columns:
        raise InputError(
            "the assignments lack column 'sent_at'", hint="the time the message went out"
        )
    sent = pd.to_datetime(frame["sent_at"], errors="coerce", utc=True)
    if sent.isna().any():
        row = int(np.argmax(sent.isna().to_numpy()))
        raise InputError(
            f"assignments row {row + 1}: sent_at {frame['sent_at'].iloc[row]!r} is not a time"
        )
    out = pd.DataFrame(
        {
            "user_id": frame["user_id"].astype(str).to_numpy(),
            "treated": group.isin(TREATED).to_numpy(),
            "sent_at": sent.dt.tz_localize(None).to_numpy(),
        }
    )
    if out["user_id"].duplicated().any():
        dup = out.loc[out["user_id"].duplicated(), "user_id"].iloc[0]
        raise InputError(f"user {dup!r} is assigned twice", hint="one row per user and campaign")
    if out["treated"].all() or not out["treated"].any():
        raise InputError(
            "the campaign has no "
            + ("control" if out["treated"].all() else "treatment")
            + " group",
            hint="uplift needs a randomized control group",
        )
    return out


def _split(treated: np.ndarray, seed: int) -> np.ndarray:
    """0 train, 1 validation, 2 test: 60/20/20 at random within each group."""
    rng = np.random.default_rng(seed)
    part = np.zeros(len(treated), np.int8)
    for g in (True, False):
        idx = np.flatnonzero(treated == g)
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        part[idx[int(0.6 * n) : int(0.8 * n)]] = 1
        part[idx[int(0.8 * n) :]] = 2
    return part


def _margin(frame: pd.DataFrame, settings: Settings, fallback: float) -> np.ndarray:
    aov = frame["aov"].to_numpy(np.float64) if "aov" in frame else np.zeros(len(frame))
    value = np.where(aov > 0, aov, fallback)
    return settings.predict.margin * value


def train(
    store: Store,
    settings: Settings,
    assignments: pd.DataFrame,
    *,
    campaign: str | None = None,
    window_days: float = 14.0,
    models: list[str] | None = None,
    truth: pd.DataFrame | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fit the uplift learners on a past campaign, choose one on validation, report on test,
    and save it as the active uplift model."""
    started = time.perf_counter()
    say = progress or (lambda _m: None)
    seed = bounded_int(seed, "seed", lo=0, hi=2**32 - 1)  # numpy refuses a negative seed
    names = models or list(UPLIFT_MODELS)
    for name in names:
        make_uplift_model(name, params=params)  # unknown names fail before any work
    a = read_assignments(assignments, campaign)
    sent = pd.Timestamp(a["sent_at"].min()).to_pydatetime()
    latest = store.scalar("SELECT max(ts) FROM events")
    # NaN and infinities overflowed timedelta (tracebacks); 0 and below measured no outcome,
    # and 1e-300 days one that no order falls in (issue 12).
    window_days = finite(
        window_days,
        "--window-days",
        lo=MIN_DAYS,
        hi=MAX_DAYS,
        hint="in days, at least one hour (1/24); e.g. --window-days 14",
    )
    if latest is None or sent + timedelta(days=window_days) > latest + timedelta(days=1):
        raise InputError(
            f"the outcome window ({window_days:g} days after {sent:%Y-%m-%d}) is not yet in the store "
            f"(events end {latest:%Y-%m-%d})"
            if latest
            else "the store has no events",
            hint="ingest the events after the send, or shorten --window-days",
        )
    say(f"profiles as of the send, {sent:%Y-%m-%d %H:%M}")
    features = lb.features_at(store, settings, sent)
    names_f = [c for c in features.columns if c != "user_id"]
    data = a.merge(features, on="user_id", how="inner")
    unknown = len(a) - len(data)
    if len(data) < 200:
        raise InputError(
            f"only {len(data)} assigned users are known at the send", hint="check the user ids"
        )
    bought = lb.buyers(store, sent, sent + timedelta(days=window_days))
    y = data["user_id"].isin(bought).to_numpy(np.int8)
    t = data["treated"].to_numpy()
    X = data[names_f].to_numpy(np.float64)
    part = _split(t, seed)
    true = None
    if truth is not None:
        if "user_id" not in truth.columns or "uplift" not in truth.columns:
            raise InputError(
                "the truth needs columns user_id and uplift", hint="truth/campaigns.parquet"
            )
        known = pd.Series(
            pd.to_numeric(truth["uplift"], errors="coerce").to_numpy(np.float64),
            index=truth["user_id"].astype(str).to_numpy(),
        )
        true = known[~known.index.duplicated()].reindex(data["user_id"]).to_numpy(np.float64)
        if np.isnan(true).any():
            raise InputError(
                "the truth lacks some assigned users", hint="give the campaign's truth file"
            )
    fitted: dict[str, UpliftModel] = {}
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        say(f"fit {name}")
        model = make_uplift_model(name, params=params, random_state=seed)
        model.fit(X[part == 0], t[part == 0], y[part == 0])
        fitted[name] = model
        results[name] = {
            part_name: evaluate_uplift(
                y[part == k],
                t[part == k],
                model.predict(X[part == k]),
                true_uplift=None if true is None else true[part == k],
            )
            for k, part_name in ((1, "validation"), (2, "test"))
        }
    best = max(names, key=lambda m: results[m]["validation"]["qini_auc"] or -np.inf)
    model = fitted[best]
    test = part == 2
    u_test = model.predict(X[test])
    fallback = _campaign_order_value(store, sent, window_days)
    margin = _margin(data.loc[test], settings, fallback)
    curve = profit_curve(
        u_test,
        margin=margin,
        cost=settings.predict.message_cost,
        y=y[test],
        treatment=t[test],
        n_points=21,
    )
    share, profit = best_share(curve)
    qini_x, qini_y = qini_curve(y[test], t[test], u_test)
    pick = np.unique(np.linspace(0, len(qini_x) - 1, 51).round().astype(int))
    charts: dict[str, Any] = {
        "qini": {
            "share": (qini_x[pick] / max(qini_x[-1], 1)).round(4).tolist(),
            "model": qini_y[pick].round(3).tolist(),
        },
        "profit": {
            c: [None if not np.isfinite(v) else round(float(v), 4) for v in curve[c]]
            for c in curve.columns
        },
    }
    if true is not None:
        ox, oy = qini_curve(y[test], t[test], true[test])
        charts["qini"]["oracle"] = (
            oy[np.unique(np.linspace(0, len(ox) - 1, 51).round().astype(int))].round(3).tolist()
        )
    summary = {
        "rows": {
            "train": int((part == 0).sum()),
            "validation": int((part == 1).sum()),
            "test": int(test.sum()),
        },
        "treated_share": round(float(t.mean()), 4),
        "unknown_users": unknown,
        "conversion": {
            "treatment": round(float(y[t].mean()), 5),
            "control": round(float(y[~t].mean()), 5),
        },
        "comparison": results,
        "best": best,
        "policy": {
            "margin_rate": settings.predict.margin,
            "message_cost": settings.predict.message_cost,
            "targeted_share": round(
                float(
                    targeting_policy(
                        u_test, margin=margin, cost=settings.predict.message_cost
                    ).mean()
                ),
                4,
            ),
            "best_share": share,
            "best_expected_profit": round(float(profit), 2),
        },
        "charts": charts,
        "window_days": window_days,
    }
    with record(
        Registry(store),
        target="uplift",
        model=best,
        horizon_days=window_days,
        as_of=sent,
        cutoffs={"sent_at": sent.isoformat(sep=" "), "campaign": campaign},
        features=names_f,
        metrics=summary,
        artefact=npz_bytes(model.to_state()),
        seconds=time.perf_counter() - started,
    ) as saved:
        model_id = saved.model_id
    return {
        "model_id": model_id,
        "model": best,
        **{k: v for k, v in summary.items() if k != "charts"},
    }


def _campaign_order_value(store: Store, sent: datetime, days: float) -> float:
    value = store.scalar(
        "SELECT avg(revenue) FROM (SELECT order_id, sum(revenue) AS revenue FROM events "
        "WHERE event = 'order_completed' AND ts >= ? AND ts < ? GROUP BY order_id)",
        [sent - timedelta(days=365), sent + timedelta(days=days)],
    )
    return float(value or 1.0)


def score(
    store: Store, settings: Settings, *, model_id: str | None = None, as_of: datetime | None = None
) -> Scored:
    """The active uplift model applied to every user as of ``as_of``: ``uplift`` scores (the
    change in the chance of an order in the window if messaged) and the ``persuadable`` tag."""
    started = time.perf_counter()
    row = find_model(store, "uplift", model_id)
    if row.kind != "uplift":
        raise InputError(f"{row.model_id} is not an uplift model", hint="give an uplift-N id")
    model = UpliftModel.from_state(Registry(store).arrays(row.model_id))
    at = as_of or default_as_of(store)
    frame = lb.features_at(store, settings, at, row.features)
    u = model.predict(frame[row.features].to_numpy(np.float64))
    fallback = _campaign_order_value(store, at, 0)
    margin = _margin(frame, settings, fallback)
    target = targeting_policy(u, margin=margin, cost=settings.predict.message_cost)
    write_scores(
        store,
        {"uplift": pd.DataFrame({"user_id": frame["user_id"], "value": u})},
        model_id=row.model_id,
        as_of=at,
        tags={"uplift": "persuadable"},
        settings=settings,
    )
    tags = dict(
        store.rows(
            "SELECT value, count(*) FROM tags WHERE tag = 'persuadable' AND source = 'model' GROUP BY 1"
        )
    )
    profit = np.sum(np.where(target, u * margin - settings.predict.message_cost, 0.0))
    return Scored(
        "uplift",
        row.model_id,
        len(frame),
        at,
        float(u.mean()),
        tags,
        time.perf_counter() - started,
        {
            "worth_messaging": int(target.sum()),
            "expected_incremental_profit": round(float(profit), 2),
        },
    )
