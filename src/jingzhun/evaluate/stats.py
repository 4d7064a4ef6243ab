"""The statistics of a campaign's evaluation: lift of treatment over control with intervals
and p-values, CUPED variance reduction, the sample-ratio check, Holm's correction for A/B/n
variants, and the sample size a test needs.

Each function takes plain arrays or counts and returns a frozen result, so the campaign report,
the benchmark that checks the intervals' coverage on the simulator and the tests share one
definition. SciPy and statsmodels supply the distributions, the Welch test, the chi-square
test, Holm's step-down and the power equation; what is written here is the part no library
does for a campaign as a whole: the difference of two proportions with its unpooled (Wald)
interval and pooled z-test, the delta method for relative lift, and CUPED's adjustment with
θ pooled across arms.

Examples
--------
>>> r = proportion_lift(130, 1000, 100, 1000)   # conversions / members: treated, control
>>> round(r.lift, 3), r.ci_low < r.lift < r.ci_high
(0.03, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from jingzhun.errors import InputError

__all__ = [
    "Lift",
    "SampleRatio",
    "cuped",
    "holm",
    "mean_lift",
    "proportion_lift",
    "sample_ratio",
    "sample_size",
]


@dataclass(frozen=True)
class Lift:
    """Treatment against control for one metric.

    Attributes
    ----------
    treated, control : float
        The metric's mean in each arm (a rate for a proportion).
    lift : float
        ``treated − control``.
    ci_low, ci_high : float
        Its ``confidence`` interval.
    p_value : float
        Two-sided, for no difference.
    relative : float
        ``lift / control`` (NaN when control is 0).
    rel_low, rel_high : float
        Its interval by the delta method (NaN when control is 0).
    n_treated, n_control : int
    confidence : float
    method : str
        How it was computed.
    """

    treated: float
    control: float
    lift: float
    ci_low: float
    ci_high: float
    p_value: float
    relative: float
    rel_low: float
    rel_high: float
    n_treated: int
    n_control: int
    confidence: float
    method: str


def _stats() -> Any:
    """scipy.stats, imported when a figure needs it: 0.6 s that every command paid at start-up."""
    from scipy import stats

    return stats


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise InputError(
            f"confidence {confidence!r} is not between 0 and 1", hint="use 0.95 for 95%"
        )
    return float(_stats().norm.ppf(0.5 + confidence / 2))


def _relative(
    mt: float, mc: float, var_t: float, var_c: float, z: float
) -> tuple[float, float, float]:
    """``mt / mc − 1`` and its delta-method interval, the two means independent:
    Var(mt/mc) ≈ var_t / mc² + mt² var_c / mc⁴."""
    if mc == 0:
        return math.nan, math.nan, math.nan
    rel = mt / mc - 1
    se = math.sqrt(var_t / mc**2 + mt**2 * var_c / mc**4)
    return rel, rel - z * se, rel + z * se


def proportion_lift(
    x_treated: int, n_treated: int, x_control: int, n_control: int, confidence: float = 0.95
) -> Lift:
    """Difference of two conversion rates: the unpooled (Wald) interval, the pooled z-test's
    p-value (statsmodels' ``confint_proportions_2indep(method="wald")`` and
    ``proportions_ztest``), the relative lift by the delta method.

    Raises
    ------
    InputError
        If an arm is empty or converts more members than it has.
    """
    for name, x, n in (("treated", x_treated, n_treated), ("control", x_control, n_control)):
        if n <= 0:
            raise InputError(f"the {name} arm has no members", hint="a lift needs both arms")
        if not 0 <= x <= n:
            raise InputError(
                f"the {name} arm has {x} conversions among {n} members",
                hint="conversions are counted among members, 0 to n",
            )
    z = _z(confidence)
    pt, pc = x_treated / n_treated, x_control / n_control
    var_t, var_c = pt * (1 - pt) / n_treated, pc * (1 - pc) / n_control
    diff = pt - pc
    se = math.sqrt(var_t + var_c)
    pooled = (x_treated + x_control) / (n_treated + n_control)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_treated + 1 / n_control))
    p = 1.0 if se0 == 0 else float(2 * _stats().norm.sf(abs(diff) / se0))
    rel, lo, hi = _relative(pt, pc, var_t, var_c, z)
    return Lift(
        pt, pc, diff, diff - z * se, diff + z * se, p, rel, lo, hi,
        n_treated, n_control, confidence, "two proportions: Wald interval, pooled z-test",
    )  # fmt: skip


def mean_lift(treated: np.ndarray, control: np.ndarray, confidence: float = 0.95) -> Lift:
    """Difference of two means (revenue per member): Welch's t-test and interval (SciPy's
    ``ttest_ind(equal_var=False)``), the relative lift by the delta method.

    Raises
    ------
    InputError
        If an arm has fewer than two members or a value is not finite.
    """
    t = np.asarray(treated, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)
    for name, a in (("treated", t), ("control", c)):
        if a.size < 2:
            raise InputError(f"the {name} arm has {a.size} member(s)", hint="each arm needs two")
        if not np.isfinite(a).all():
            raise InputError(f"the {name} arm has values that are not finite numbers")
    z = _z(confidence)
    res = _stats().ttest_ind(t, c, equal_var=False)
    ci = res.confidence_interval(confidence)
    mt, mc = float(t.mean()), float(c.mean())
    var_t, var_c = t.var(ddof=1) / t.size, c.var(ddof=1) / c.size
    p = float(res.pvalue) if np.isfinite(res.pvalue) else 1.0
    low, high = (float(ci.low), float(ci.high)) if np.isfinite(ci.low) else (mt - mc, mt - mc)
    rel, lo, hi = _relative(mt, mc, var_t, var_c, z)
    return Lift(
        mt, mc, mt - mc, low, high, p, rel, lo, hi, t.size, c.size, confidence,
        "two means: Welch's t-test and interval",
    )  # fmt: skip


def cuped(
    y_treated: np.ndarray,
    x_treated: np.ndarray,
    y_control: np.ndarray,
    x_control: np.ndarray,
    confidence: float = 0.95,
) -> tuple[Lift, float]:
    """:func:`mean_lift` after CUPED (Deng et al., 2013): each outcome Y less θ(X − X̄), X the
    same metric before the campaign, θ = cov(Y, X) / var(X) over both arms together and X̄
    their common mean — randomisation makes X independent of the arm, so the difference
    keeps its expectation and loses the variance X explains. Returns the lift and θ (0 when
    X does not vary)."""
    yt, xt = np.asarray(y_treated, np.float64), np.asarray(x_treated, np.float64)
    yc, xc = np.asarray(y_control, np.float64), np.asarray(x_control, np.float64)
    if yt.shape != xt.shape or yc.shape != xc.shape:
        raise InputError(
            "each member needs an outcome and a pre-period value",
            hint="pass arrays of the same length per arm",
        )
    y, x = np.concatenate([yt, yc]), np.concatenate([xt, xc])
    var_x = x.var(ddof=1) if x.size > 1 else 0.0
    theta = float(np.cov(y, x, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
    mean_x = x.mean()
    lift = mean_lift(yt - theta * (xt - mean_x), yc - theta * (xc - mean_x), confidence)
    return Lift(**{**lift.__dict__, "method": "CUPED, then " + lift.method}), theta


@dataclass(frozen=True)
class SampleRatio:
    """Whether the arms got the members their shares promise (chi-square goodness of fit)."""

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    mismatch: bool  # p < threshold: the assignment or the logging is broken; do not trust lift


def sample_ratio(
    counts: list[int] | tuple[int, ...], shares: list[float] | tuple[float, ...],
    threshold: float = 0.001,
) -> SampleRatio:  # fmt: skip
    """The sample-ratio-mismatch check: members per arm against the shares they were assigned
    with (SciPy's ``chisquare``), flagged at ``p < threshold`` (0.001, the usual line)."""
    obs = np.asarray(counts, dtype=np.float64)
    share = np.asarray(shares, dtype=np.float64)
    if obs.shape != share.shape or obs.size < 2:
        raise InputError("give one count and one share per arm, two arms or more")
    if (share <= 0).any() or not math.isclose(float(share.sum()), 1.0, rel_tol=1e-6):
        raise InputError(f"shares {list(shares)} must be positive and sum to 1")
    if obs.sum() <= 0:
        raise InputError("no members in any arm")
    expected = share * obs.sum()
    chi2, p = _stats().chisquare(obs, expected)
    return SampleRatio(
        tuple(int(v) for v in obs), tuple(float(v) for v in expected), float(chi2), float(p),
        bool(p < threshold),
    )  # fmt: skip


def holm(p_values: list[float] | np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction for comparing several variants with control: the adjusted
    p-values and which reject at ``alpha`` — what statsmodels' ``multipletests(method="holm")``
    gives (a test checks they agree). Written out because that function runs a full
    ``gc.collect()`` on every call: 0.14 s of each campaign page in the dashboard."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p, np.zeros(0, dtype=bool)
    if ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
        raise InputError("p-values must be numbers from 0 to 1")
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])  # (m - i) p_(i), monotone
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted, adjusted <= alpha


def sample_size(
    baseline: float, mde: float, power: float = 0.8, alpha: float = 0.05, control_share: float = 0.5
) -> tuple[int, int]:
    """Members needed in treatment and control to detect an absolute lift of ``mde`` over a
    conversion rate of ``baseline`` with a two-sided test at ``alpha`` and this ``power``,
    ``control_share`` of all members in control — the normal approximation statsmodels'
    ``NormalIndPower`` solves, on the difference of proportions (unpooled variances).

    Raises
    ------
    InputError
        Naming the parameter that is out of range.
    """
    if not 0 < baseline < 1:
        raise InputError(f"--baseline {baseline!r} is not a rate between 0 and 1", param="baseline")
    if not 0 < baseline + mde < 1 or mde == 0:
        raise InputError(
            f"--mde {mde!r}: baseline + mde must be a rate between 0 and 1, mde not 0",
            hint="mde is an absolute difference, e.g. 0.01 for one percentage point",
            param="mde",
        )
    for name, v in (("power", power), ("alpha", alpha), ("control_share", control_share)):
        if not 0 < v < 1:
            raise InputError(f"--{name.replace('_', '-')} {v!r} is not between 0 and 1", param=name)
    p1, p0 = baseline + mde, baseline
    za, zb = _stats().norm.ppf(1 - alpha / 2), _stats().norm.ppf(power)
    # n_t = r·n_c with r = treated per control; Var(diff) = p1q1/n_t + p0q0/n_c.
    r = (1 - control_share) / control_share
    with np.errstate(all="ignore"):
        n_c = float((za + zb) ** 2 * (p1 * (1 - p1) / r + p0 * (1 - p0)) / mde**2)
        n_t = r * n_c
    if not (math.isfinite(n_c) and math.isfinite(n_t)) or max(n_c, n_t) > _MOST_MEMBERS:
        raise InputError(
            f"--mde {mde!r} with --alpha {alpha!r}, --power {power!r} and --control-share "
            f"{control_share!r}: a test would need more than {_MOST_MEMBERS:.0e} members",
            hint="look for a larger lift (--mde), or accept a larger --alpha or a lower --power",
            param="mde",
        )
    return math.ceil(n_t), math.ceil(n_c)


#: More members than any shop has: a plan beyond it is a mistake in its inputs.
_MOST_MEMBERS = 1e12
