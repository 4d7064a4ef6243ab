"""CLV models against the published maximum-likelihood estimates on the CDNOW sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jingzhun.errors import InputError
from jingzhun.predict import clv

DATA = Path(__file__).resolve().parents[1] / "data" / "cdnow_summary.csv"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(DATA)


def test_bgnbd_reproduces_fader_hardie_lee_2005(cdnow) -> None:
    fit = clv.fit_bgnbd(cdnow.x, cdnow.t_x, cdnow["T"])
    # Published (FHL 2005, section 5): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4
    assert fit.converged
    assert fit.params["r"] == pytest.approx(0.243, abs=5e-4)
    assert fit.params["alpha"] == pytest.approx(4.414, abs=5e-3)
    assert fit.params["a"] == pytest.approx(0.793, abs=5e-4)
    assert fit.params["b"] == pytest.approx(2.426, abs=5e-3)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.05)


def test_paretonbd_reproduces_fader_hardie_2005(cdnow) -> None:
    fit = clv.fit_paretonbd(cdnow.x, cdnow.t_x, cdnow["T"])
    # Published: r = 0.553, alpha = 10.578, s = 0.606, beta = 11.669, LL = -9595.0
    assert fit.converged
    assert fit.params["r"] == pytest.approx(0.553, abs=1e-3)
    assert fit.params["alpha"] == pytest.approx(10.578, abs=2e-2)
    assert fit.params["s"] == pytest.approx(0.606, abs=1e-3)
    assert fit.params["beta"] == pytest.approx(11.669, abs=3e-2)
    assert fit.log_likelihood == pytest.approx(-9595.0, abs=0.05)


def test_gamma_gamma_reproduces_fader_hardie_2013(cdnow) -> None:
    fit = clv.fit_gamma_gamma(cdnow.x, cdnow.zbar)
    # Published: p = 6.25, q = 3.74, v = 15.44 (946 customers with repeat purchases)
    assert fit.converged
    assert fit.params["p"] == pytest.approx(6.25, abs=5e-3)
    assert fit.params["q"] == pytest.approx(3.74, abs=5e-3)
    assert fit.params["v"] == pytest.approx(15.44, abs=2e-2)


def test_bgnbd_conditional_expectation_matches_the_paper(cdnow) -> None:
    params = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    # FHL 2005, section 5: a customer with x = 2, t_x = 30.43, T = 38.86 is expected to make
    # 1.226 purchases in the next 39 weeks.
    value = clv.bgnbd_expected(params, 39, np.array([2.0]), np.array([30.43]), np.array([38.86]))
    assert value[0] == pytest.approx(1.226, abs=2e-3)
    # P(alive) is 1 without repeat purchases: the model's assumption, not a propensity.
    alive = clv.bgnbd_p_alive(
        params, np.array([0.0, 2.0]), np.array([0.0, 5.0]), np.array([38.0, 38.0])
    )
    assert alive[0] == 1.0 and 0 < alive[1] < 1


def test_gamma_gamma_expected_spend_shrinks_toward_the_population_mean() -> None:
    params = {"p": 6.25, "q": 3.74, "v": 15.44}
    pop = 6.25 * 15.44 / 2.74
    few, many = clv.gamma_gamma_expected_spend(
        params, np.array([1.0, 50.0]), np.array([100.0, 100.0])
    )
    assert pop < few < many < 100.0


def test_log_likelihoods_are_finite_for_extreme_customers() -> None:
    x = np.array([0.0, 1.0, 200.0])
    t_x = np.array([0.0, 0.1, 39.0])
    T = np.array([39.0, 39.0, 39.0])
    for ll in (
        clv.bgnbd_log_likelihood(np.array([0.24, 4.4, 0.79, 2.4]), x, t_x, T),
        clv.paretonbd_log_likelihood(np.array([0.55, 10.6, 0.61, 11.7]), x, t_x, T),
        clv.paretonbd_log_likelihood(np.array([0.55, 11.7, 0.61, 10.6]), x, t_x, T),
    ):
        assert np.isfinite(ll).all()


@pytest.mark.parametrize(
    ("x", "t_x", "T"),
    [([], [], []), ([-1], [0], [1]), ([1], [2], [1]), ([0], [1], [2])],
)
def test_inconsistent_customer_data_is_an_input_error(x, t_x, T) -> None:
    with pytest.raises(InputError):
        clv.fit_bgnbd(np.array(x, float), np.array(t_x, float), np.array(T, float))


def test_gamma_gamma_needs_repeat_customers() -> None:
    with pytest.raises(InputError, match="repeat"):
        clv.fit_gamma_gamma(np.array([0.0, 1.0]), np.array([0.0, 10.0]))
