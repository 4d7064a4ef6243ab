"""Campaign statistics against SciPy and statsmodels on fixed inputs, and their intervals'
coverage, CUPED's gain and the sample size's power on simulated experiments with a known
effect."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from jingzhun.errors import InputError
from jingzhun.evaluate.stats import (
    cuped,
    holm,
    mean_lift,
    proportion_lift,
    sample_ratio,
    sample_size,
)


@pytest.mark.parametrize(
    ("xt", "nt", "xc", "nc"),
    [(130, 1000, 100, 1000), (7, 250, 19, 900), (0, 50, 3, 60), (5000, 90000, 480, 10000)],
)
def test_proportion_lift_is_statsmodels_wald_interval_and_pooled_z_test(
    xt: int, nt: int, xc: int, nc: int
) -> None:
    r = proportion_lift(xt, nt, xc, nc)
    low, high = confint_proportions_2indep(xt, nt, xc, nc, method="wald", compare="diff")
    _, p = proportions_ztest([xt, xc], [nt, nc])
    assert r.lift == pytest.approx(xt / nt - xc / nc, abs=1e-15)
    assert (r.ci_low, r.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert r.p_value == pytest.approx(p, rel=1e-9)


def test_mean_lift_is_welch_as_scipy_and_statsmodels_compute_it() -> None:
    rng = np.random.default_rng(3)
    t = rng.gamma(0.3, 40.0, size=800)  # revenue per member: mostly 0-ish, a long tail
    c = rng.gamma(0.3, 35.0, size=1200)
    r = mean_lift(t, c)
    res = stats.ttest_ind(t, c, equal_var=False)
    low, high = CompareMeans(DescrStatsW(t), DescrStatsW(c)).tconfint_diff(usevar="unequal")
    assert r.p_value == pytest.approx(res.pvalue, rel=1e-9)
    assert (r.ci_low, r.ci_high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert r.relative == pytest.approx(t.mean() / c.mean() - 1)


def _experiments(n: int, effect: float, rng: np.random.Generator, members: int = 2000):
    """``n`` randomized experiments: a pre-period value X that predicts the outcome, and an
    outcome raised by ``effect`` in treatment."""
    for _ in range(n):
        x = rng.gamma(2.0, 10.0, size=members)
        arm = rng.random(members) < 0.5
        y = 0.8 * x + rng.normal(0, 10, size=members) + effect * arm
        yield y[arm], x[arm], y[~arm], x[~arm]


def test_welch_and_cuped_intervals_cover_the_true_effect_and_cuped_is_narrower() -> None:
    rng = np.random.default_rng(11)
    effect, n = 1.5, 400
    plain_hits = cuped_hits = 0
    plain_width = cuped_width = 0.0
    estimates = []
    for yt, xt, yc, xc in _experiments(n, effect, rng):
        plain = mean_lift(yt, yc)
        adjusted, theta = cuped(yt, xt, yc, xc)
        plain_hits += plain.ci_low <= effect <= plain.ci_high
        cuped_hits += adjusted.ci_low <= effect <= adjusted.ci_high
        plain_width += plain.ci_high - plain.ci_low
        cuped_width += adjusted.ci_high - adjusted.ci_low
        estimates.append(adjusted.lift)
        assert 0.6 < theta < 1.0  # the slope of Y on X (0.8)
    # 400 experiments: a 95% interval's coverage falls in 0.925-0.975 with probability 0.99.
    assert 0.925 <= plain_hits / n <= 0.975
    assert 0.925 <= cuped_hits / n <= 0.975
    # Var(Y) = 0.8² Var(X) + 10² = 128 + 100 within an arm; CUPED leaves the 100.
    assert cuped_width / plain_width == pytest.approx(math.sqrt(100 / 228), abs=0.03)
    assert abs(np.mean(estimates) - effect) < 0.1  # unbiased


def test_proportion_interval_coverage_and_a_a_false_positives() -> None:
    rng = np.random.default_rng(5)
    n, nt, nc, pc, effect = 1000, 3000, 3000, 0.08, 0.02
    xt = rng.binomial(nt, pc + effect, size=n)
    xc = rng.binomial(nc, pc, size=n)
    hits = sum(
        (r := proportion_lift(int(a), nt, int(b), nc)).ci_low <= effect <= r.ci_high
        for a, b in zip(xt, xc, strict=True)
    )
    assert 0.925 <= hits / n <= 0.975
    aa = rng.binomial(nt, pc, size=(n, 2))
    false_positives = sum(proportion_lift(int(a), nt, int(b), nc).p_value < 0.05 for a, b in aa)
    assert 0.03 <= false_positives / n <= 0.07


def test_relative_lift_interval_by_the_delta_method() -> None:
    r = proportion_lift(130, 1000, 100, 1000)
    pt, pc = 0.13, 0.10
    se = math.sqrt(pt * (1 - pt) / 1000 / pc**2 + pt**2 * pc * (1 - pc) / 1000 / pc**4)
    z = stats.norm.ppf(0.975)
    assert r.relative == pytest.approx(0.3)
    assert (r.rel_low, r.rel_high) == (pytest.approx(0.3 - z * se), pytest.approx(0.3 + z * se))
    assert math.isnan(proportion_lift(3, 100, 0, 100).relative)  # control 0: no ratio


def test_sample_ratio_mismatch_is_scipys_chi_square() -> None:
    ok = sample_ratio([8030, 1970], [0.8, 0.2])
    chi2, p = stats.chisquare([8030, 1970], [8000, 2000])
    assert (ok.chi2, ok.p_value) == (pytest.approx(chi2), pytest.approx(p))
    assert not ok.mismatch
    assert sample_ratio([8300, 1700], [0.8, 0.2]).mismatch  # p ~ 1e-13: broken assignment


def test_holm_is_statsmodels_holm() -> None:
    p = [0.01, 0.04, 0.03, 0.005, 0.2]
    adjusted, reject = holm(p)
    want_reject, want, _, _ = multipletests(p, alpha=0.05, method="holm")
    np.testing.assert_allclose(adjusted, want)
    assert reject.tolist() == want_reject.tolist()
    assert holm([])[0].size == 0
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 30):
        for p in (rng.uniform(0, 0.2, n), np.round(rng.uniform(0, 0.1, n), 2)):  # ties too
            adjusted, reject = holm(p)
            want_reject, want, _, _ = multipletests(p, alpha=0.05, method="holm")
            np.testing.assert_allclose(adjusted, want)
            assert reject.tolist() == want_reject.tolist()


def test_sample_size_is_the_power_equation_and_gives_that_power() -> None:
    baseline, mde = 0.05, 0.01
    nt, nc = sample_size(baseline, mde)
    p1, p0 = baseline + mde, baseline
    sigma = math.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2)
    want = NormalIndPower().solve_power(effect_size=mde / sigma, alpha=0.05, power=0.8)
    assert nt == nc and abs(nc - want) <= 1.5
    # Simulated: that many members per arm find the effect about 80% of the time.
    rng = np.random.default_rng(2)
    xt = rng.binomial(nt, p1, size=2000)
    xc = rng.binomial(nc, p0, size=2000)
    found = np.mean(
        [
            proportion_lift(int(a), nt, int(b), nc).p_value < 0.05
            for a, b in zip(xt, xc, strict=True)
        ]
    )
    assert 0.77 <= found <= 0.83
    # A 20% control needs more members in all, fewer in control.
    t2, c2 = sample_size(baseline, mde, control_share=0.2)
    assert t2 + c2 > nt + nc and c2 < nc


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda: proportion_lift(5, 0, 1, 10), "treated arm has no members"),
        (lambda: proportion_lift(11, 10, 1, 10), "11 conversions among 10"),
        (lambda: proportion_lift(1, 10, 1, 10, confidence=95), "confidence 95"),
        (lambda: mean_lift([1.0], [1.0, 2.0]), "treated arm has 1 member"),
        (lambda: mean_lift([1.0, float("nan")], [1.0, 2.0]), "not finite"),
        (lambda: cuped([1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0]), "pre-period value"),
        (lambda: sample_ratio([10, 10], [0.5, 0.6]), "sum to 1"),
        (lambda: sample_ratio([10], [1.0]), "two arms"),
        (lambda: holm([0.5, 1.5]), "from 0 to 1"),
        (lambda: sample_size(1.2, 0.01), "--baseline 1.2"),
        (lambda: sample_size(0.05, 0.0), "--mde 0.0"),
        (lambda: sample_size(0.05, 1e-300), "more than 1e+12 members"),
        (lambda: sample_size(0.05, 0.01, alpha=1e-300), "more than 1e+12 members"),
        (lambda: sample_size(0.05, 0.01, power=1.0), "--power 1.0"),
        (lambda: sample_size(0.05, 0.01, control_share=0), "--control-share 0"),
    ],
)
def test_bad_input_names_what_to_fix(call, text: str) -> None:
    with pytest.raises(InputError) as err:
        call()
    assert text in str(err.value)
