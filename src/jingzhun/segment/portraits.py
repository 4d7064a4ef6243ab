"""Segment portraits: who is in a segment, against the whole population, in words.

A portrait gives the size and share, the share of revenue, the mean and median of each trait
beside the population's (as a z-score: how many population standard deviations the segment's
mean lies away), the categories the segment leans to (its mean affinity and the lift over the
population), and a readable name made from the traits that stand out most, such as
"High spend · frequent buyers · electronics".

Names are unique within a run. Segments whose names would be the same (density methods find
several groups of shoppers who never ordered, alike in all but tenure) are told apart by the
trait they differ in most, in words ("… · long-standing", "… · new"); only segments that no
named trait tells apart are numbered ("Typical customers (2)").
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

#: Words for a trait whose segment mean lies well above / below the population's.
WORDS: dict[str, tuple[str, str]] = {
    "monetary": ("high spend", "low spend"),
    "frequency": ("frequent buyers", "rare buyers"),
    "recency_days": ("lapsed", "recent buyers"),
    "tenure_days": ("long-standing", "new"),
    "days_since_seen": ("dormant", "active lately"),
    "active_days": ("highly active", "seldom active"),
    "sessions": ("many visits", "few visits"),
    "aov": ("big baskets", "small baskets"),
    "discount_share": ("deal seekers", "full-price buyers"),
    "price_percentile": ("premium", "budget"),
    "view_to_cart": ("decisive", "window shoppers"),
    "cart_to_purchase": ("closers", "cart abandoners"),
    "views_per_session": ("heavy browsers", "quick visits"),
    "affinity_concentration": ("focused", "broad taste"),
    "email_open_rate": ("email engaged", "email silent"),
    "score": ("high score", "low score"),
    "orders_per_month": ("frequent buyers", "rare buyers"),
    "sessions_per_month": ("frequent visitors", "rare visitors"),
    "recency_share": ("lapsing", "recently active buyers"),
}
#: Features that are coordinates of something else (the hour on a circle): never named.
UNNAMED = ("hour_sin", "hour_cos")
STANDS_OUT = 0.5  # |z| from which a trait names the segment
CATEGORY_LIFT = 1.25  # a category names the segment from this lift over the population


def compute(
    members: pd.DataFrame,
    traits: pd.DataFrame,
    affinity: pd.DataFrame | None,
    revenue: pd.Series | None,
) -> pd.DataFrame:
    """Portraits of every segment.

    Parameters
    ----------
    members : DataFrame
        ``user_id``, ``segment`` (one row per user).
    traits : DataFrame
        ``user_id`` and the numeric traits to describe (raw, untransformed), same users.
    affinity : DataFrame or None
        ``user_id``, ``category``, ``score`` (the affinity vector A(u), long form).
    revenue : Series or None
        Revenue per user (index ``user_id``) for the revenue share.
    """
    df = members.merge(traits, on="user_id", how="left")
    names = [c for c in traits.columns if c != "user_id"]
    pop_mean = df[names].mean()
    pop_std = df[names].std(ddof=0).replace(0, np.nan)
    grouped = df.groupby("segment", sort=False)
    size = grouped.size()
    total = len(df)
    means, medians = grouped[names].mean(), grouped[names].median()
    z = (means - pop_mean) / pop_std
    rev_share = None
    if revenue is not None and revenue.sum() > 0:
        rev = members.assign(_r=members.user_id.map(revenue).fillna(0.0))
        rev_share = rev.groupby("segment")._r.sum() / revenue.sum()
    cats = _categories(members, affinity)
    rows = []
    for seg in size.sort_values(ascending=False).index:
        t = {
            n: {
                "mean": _num(means.at[seg, n]),
                "median": _num(medians.at[seg, n]),
                "population_mean": _num(pop_mean[n]),
                "z": _num(z.at[seg, n]),
            }
            for n in names
        }
        top = cats.get(seg, [])
        rows.append(
            {
                "segment": seg,
                "label": label(seg, t, top),
                "users": int(size[seg]),
                "share": float(size[seg] / total),
                "revenue_share": None if rev_share is None else float(rev_share.get(seg, 0.0)),
                "traits": json.dumps(t),
                "top_categories": json.dumps(top),
            }
        )
    out = pd.DataFrame(rows)
    if not out.empty:
        out["label"] = distinguish(
            out.label.tolist(), [json.loads(t) for t in out.traits], out.segment.tolist()
        )
    # Still the same words for two segments: number them, so every label is unique.
    dup = out.label.duplicated(keep=False)
    if dup.any():
        out.loc[dup, "label"] = out[dup].label + " (" + out[dup].segment.astype(str) + ")"
    return out


def _num(v: Any) -> float | None:
    v = float(v)
    return None if not np.isfinite(v) else round(v, 6)


def _categories(
    members: pd.DataFrame, affinity: pd.DataFrame | None, top: int = 3
) -> dict[str, list[list[Any]]]:
    """Per segment: its top categories as [category, mean share, lift over the population]."""
    if affinity is None or affinity.empty:
        return {}
    a = affinity.merge(members, on="user_id")
    users = members.groupby("segment").size()
    seg = a.groupby(["segment", "category"]).score.sum().reset_index()
    seg["share"] = seg.score / seg.segment.map(users)
    pop = a.groupby("category").score.sum() / len(members)
    seg["lift"] = seg.share / seg.category.map(pop)
    seg = seg.sort_values(["segment", "share", "category"], ascending=[True, False, True])
    return {
        s: [
            [c, round(float(sh), 4), round(float(li), 3)]
            for c, sh, li in zip(g.category, g.share, g.lift, strict=True)
        ]
        for s, g in ((s, g.head(top)) for s, g in seg.groupby("segment", sort=False))
    }


def distinguish(
    labels: list[str], traits: list[dict[str, dict[str, Any]]], segments: list[str]
) -> list[str]:
    """Labels made different, in words, where segments would share one.

    For each group of segments with the same label, the named traits are taken in order of
    how far apart the group's z-scores lie (the trait that separates them most first). A
    segment whose label is still shared gets the trait's word when the trait stands out in it
    (``|z| >= STANDS_OUT``) and the word is not in its label yet; a segment where the trait
    does not stand out keeps its label, which that alone may make unique. Traits are tried
    until every label of the group differs or none is left; what is still shared is left for
    the caller to number.

    Parameters
    ----------
    labels : list of str
        A label per segment, as :func:`label` made it.
    traits : list of dict
        Per segment, the portrait's traits (``{name: {"z": …}}``), in the order of ``labels``.
    segments : list of str
        The segment names, in the same order ("noise" is never relabelled).

    Examples
    --------
    >>> t = lambda **z: {n: {"z": v} for n, v in z.items()}
    >>> distinguish(
    ...     ["Broad taste", "Broad taste", "Broad taste"],
    ...     [t(affinity_concentration=-1.8, tenure_days=0.4),
    ...      t(affinity_concentration=-1.8, tenure_days=1.1),
    ...      t(affinity_concentration=-1.8, tenure_days=-1.5)],
    ...     ["2", "3", "4"],
    ... )
    ['Broad taste', 'Broad taste · long-standing', 'Broad taste · new']
    """
    out = list(labels)
    groups: dict[str, list[int]] = {}
    for i, (shared_label, seg) in enumerate(zip(labels, segments, strict=True)):
        if seg != "noise":
            groups.setdefault(shared_label, []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        names = {n for i in members for n in traits[i] if n not in UNNAMED}
        spread: dict[str, float] = {}
        for name in names:
            known = [z for i in members if (z := traits[i].get(name, {}).get("z")) is not None]
            if any(abs(z) >= STANDS_OUT for z in known):
                spread[name] = max(known) - min(known)
        for name in sorted(spread, key=lambda n: (-spread[n], n)):
            if spread[name] <= 0:
                break
            shared = [i for i in members if sum(out[j] == out[i] for j in members) > 1]
            if not shared:
                break
            high, low = WORDS.get(name, (f"high {name}", f"low {name}"))
            for i in shared:
                z = traits[i].get(name, {}).get("z")
                if z is None or abs(z) < STANDS_OUT:
                    continue
                word = high if z > 0 else low
                if word.lower() not in (w.lower() for w in out[i].split(" · ")):
                    out[i] = f"{out[i]} · {word}"
    return out


def label(segment: str, traits: dict[str, dict[str, Any]], top: list[list[Any]]) -> str:
    """A readable name from the traits that stand out most and a leaning category."""
    if segment == "noise":
        return "Unclustered (noise)"
    scored = sorted(
        (
            (abs(v["z"]), name, v["z"])
            for name, v in traits.items()
            if v["z"] is not None and name not in UNNAMED and abs(v["z"]) >= STANDS_OUT
        ),
        reverse=True,
    )
    words: list[str] = []
    for _, name, zv in scored:
        high, low = WORDS.get(name, (f"high {name}", f"low {name}"))
        word = high if zv > 0 else low
        if word.lower() not in (w.lower() for w in words):
            words.append(word)
        if len(words) == 2:
            break
    leaning = [c for c, _share, lift in top if lift >= CATEGORY_LIFT]
    if leaning:
        words.append(leaning[0])
    if not words:
        words = ["Typical customers"]
    text = " · ".join(words)
    return text[0].upper() + text[1:]
