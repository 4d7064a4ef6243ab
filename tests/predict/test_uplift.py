"""Uplift metrics against hand-worked examples, the models against a simulated randomized
campaign with a known true uplift, state round trips, input errors and the targeting policy."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit

from jingzhun.errors import InputError
from jingzhun.predict.policy import best_share, profit_curve, targeting_policy
from jingzhun.predict.uplift_learners import (
    UPLIFT_MODELS,
    ClassTransformation,
    TLearner,
    UpliftModel,
    XLearner,
    make_uplift_model,
)
from jingzhun.predict.uplift_metrics import (
    evaluate_uplift,
    perfect_qini_curve,
    perfect_uplift_curve,
    qini_auc_score,
    qini_curve,
    uplift_at_k,
    uplift_auc_score,
    uplift_curve,
)

# -- a hand-worked example -------------------------------------------------------------------
#
# Eight users, already in descending score order:
#
#   row  score  t  y   N_t Y_t N_c Y_c   qini = Y_t - Y_c N_t/N_c   uplift = (Y_t/N_t - Y_c/N_c) k
#    0    0.9   1  1    1   1   0   0    1                         (1   - 0  ) * 1 = 1
#    1    0.8   0  0    1   1   1   0    1                         (1   - 0  ) * 2 = 2
#    2    0.7   1  1    2   2   1   0    2                         (1   - 0  ) * 3 = 3
#    3    0.6   0  1    2   2   2   1    2 - 1*2/2 = 1             (1   - 1/2) * 4 = 2
#    4    0.5   1  0    3   2   2   1    2 - 1*3/2 = 1/2           (2/3 - 1/2) * 5 = 5/6
#    5    0.4   0  0    3   2   3   1    2 - 1*3/3 = 1             (2/3 - 1/3) * 6 = 2
#    6    0.3   1  0    4   2   3   1    2 - 1*4/3 = 2/3           (1/2 - 1/3) * 7 = 7/6
#    7    0.2   0  1    4   2   4   2    2 - 2*4/4 = 0             (1/2 - 1/2) * 8 = 0
#
# Qini area (trapezoids of width 1): 1/2 + 1 + 3/2 + 3/2 + 3/4 + 3/4 + 5/6 + 1/3 = 43/6.
# Perfect Qini: score y*t - y*(1-t) = [1, 0, 1, -1, 0, 0, 0, -1]; ties go together, so the
# points are k=2 (rows 0, 2: 2 treated converters) -> 2; k=6 (+ rows 1, 4, 5, 6: N_t=4, Y_t=2,
# N_c=2, Y_c=0) -> 2; k=8 -> 0. Area 2 + 8 + 2 = 12; the random line ends at 0 (area 0).
# Qini coefficient 43/6 / 12 = 43/72.
# Uplift area: 1/2 + 3/2 + 5/2 + 5/2 + 17/12 + 17/12 + 19/12 + 7/12 = 12.
# Perfect uplift: 2 control converters, 2 treated non-converters, so (no majority) the score
# is 2*(y == t) + t = [3, 2, 3, 0, 1, 2, 1, 0]: points k=2 -> (1-0)*2 = 2, k=4 -> (1-0)*4 = 4,
# k=6 -> (2/4-0)*6 = 3, k=8 -> 0. Area 2 + 6 + 7 + 3 = 18: AUUC 12 / 18 = 2/3.

SCORE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
T = np.array([1, 0, 1, 0, 1, 0, 1, 0])
Y = np.array([1, 0, 1, 1, 0, 0, 0, 1])


def test_qini_curve_by_hand() -> None:
    n, q = qini_curve(Y, T, SCORE)
    np.testing.assert_array_equal(n, np.arange(9))
    np.testing.assert_allclose(q, [0, 1, 1, 2, 1, 1 / 2, 1, 2 / 3, 0])


def test_uplift_curve_by_hand() -> None:
    n, u = uplift_curve(Y, T, SCORE)
    np.testing.assert_array_equal(n, np.arange(9))
    np.testing.assert_allclose(u, [0, 1, 2, 3, 2, 5 / 6, 2, 7 / 6, 0])


def test_perfect_curves_by_hand() -> None:
    n, q = perfect_qini_curve(Y, T)
    np.testing.assert_array_equal(n, [0, 2, 6, 8])
    np.testing.assert_allclose(q, [0, 2, 2, 0])
    n, u = perfect_uplift_curve(Y, T)
    np.testing.assert_array_equal(n, [0, 2, 4, 6, 8])
    np.testing.assert_allclose(u, [0, 2, 4, 3, 0])
    # Without negative effects the perfect curve jumps to the total incremental conversions.
    n, q = perfect_qini_curve(Y, T, negative_effect=False)
    np.testing.assert_allclose(n, [0, 0, 8])
    np.testing.assert_allclose(q, [0, 0, 0])


def test_normalised_areas_by_hand() -> None:
    assert qini_auc_score(Y, T, SCORE) == pytest.approx(43 / 72)
    assert uplift_auc_score(Y, T, SCORE) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("k", "strategy", "expected"),
    [
        (0.5, "overall", 1 - 1 / 2),  # top 4: treated rows 0, 2 (1, 1); control 1, 3 (0, 1)
        (0.375, "overall", 1 - 0),  # top 3: treated 0, 2; control 1
        (4, "overall", 1 - 1 / 2),  # the same top 4 as a count
        (0.5, "by_group", 1 - 1 / 2),  # top 2 treated (0, 2) and top 2 control (1, 3)
        (0.75, "by_group", 2 / 3 - 1 / 3),  # top 3 of each group: (0, 2, 4) and (1, 3, 5)
        (1.0, "overall", 2 / 4 - 2 / 4),  # everyone: the average treatment effect
    ],
)
def test_uplift_at_k_by_hand(k, strategy, expected) -> None:
    assert uplift_at_k(Y, T, SCORE, k=k, strategy=strategy) == pytest.approx(expected)


def test_uplift_at_k_strategies_differ_when_groups_are_unbalanced_at_the_top() -> None:
    # Both treated users rank first: the overall top half has no control user (NaN), while
    # by_group compares the best treated (y=1) with the best control user (y=0).
    y, t, s = [1, 0, 0, 1], [1, 1, 0, 0], [4, 3, 2, 1]
    assert np.isnan(uplift_at_k(y, t, s, k=0.5, strategy="overall"))
    assert uplift_at_k(y, t, s, k=0.5, strategy="by_group") == 1.0


def test_tied_scores_are_targeted_together() -> None:
    n, q = qini_curve(Y, T, np.zeros(8))
    np.testing.assert_array_equal(n, [0, 8])
    np.testing.assert_allclose(q, [0, 0])
    # Two tiers: rows 0-3 at 1, rows 4-7 at 0 -> points at k = 4 and 8 only.
    n, q = qini_curve(Y, T, np.repeat([1.0, 0.0], 4))
    np.testing.assert_array_equal(n, [0, 4, 8])
    np.testing.assert_allclose(q, [0, 1, 0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curves_do_not_depend_on_row_order_within_ties(seed) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    y, t = rng.integers(0, 2, n), rng.integers(0, 2, n)
    score = rng.integers(0, 20, n) / 10  # many ties
    perm = rng.permutation(n)
    for curve in (qini_curve, uplift_curve):
        a, b = curve(y, t, score), curve(y[perm], t[perm], score[perm])
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-12, atol=1e-9)


def _tiered_campaign(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A campaign and its perfect ranking: treated converters, control non-converters, treated
    non-converters, control converters. For the Qini curve the two middle tiers are
    interchangeable (it stays flat across them: no control converter yet); the uplift curve's
    perfect ranking wants them in this order when control converters are the fewer."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < np.where(t == 1, 0.3, 0.2)).astype(int)
    tier = np.select([(t == 1) & (y == 1), (t == 0) & (y == 0), (t == 1) & (y == 0)], [3, 2, 1], 0)
    return y, t, tier.astype(float)


def test_perfect_ranking_scores_one_and_reversed_scores_negative() -> None:
    y, t, score = _tiered_campaign(5000, 0)
    assert qini_auc_score(y, t, score) == pytest.approx(1.0)
    assert uplift_auc_score(y, t, score) == pytest.approx(1.0)
    assert qini_auc_score(y, t, -score) < -0.5
    assert uplift_auc_score(y, t, -score) < -0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_random_ranking_scores_about_zero(seed) -> None:
    rng = np.random.default_rng(seed)
    n = 100_000
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < np.where(t == 1, 0.25, 0.2)).astype(int)
    # Over 20 seeds of this size the largest |Qini coefficient| measured was 0.009.
    assert abs(qini_auc_score(y, t, rng.random(n))) < 0.02
    assert abs(uplift_auc_score(y, t, rng.random(n))) < 0.02


def test_continuous_outcomes_in_the_qini_curve() -> None:
    revenue = Y * np.array([10.0, 0, 30, 5, 0, 0, 0, 20])
    _, q = qini_curve(revenue, T, SCORE)
    # k=4: Y_t = 10 + 30, Y_c = 5, N_t = N_c = 2 -> 35; k=8: 40 - 25 = 15.
    assert q[4] == pytest.approx(35) and q[-1] == pytest.approx(15)
    assert np.isfinite(qini_auc_score(revenue, T, SCORE))


# -- the simulated campaign ------------------------------------------------------------------

#: The tests train single-threaded: OpenMP's two threads stall each other whenever another
#: process holds one of this machine's two cores (the file took 7 s idle, 100 s under load).
ONE_THREAD = {"n_jobs": 1}


def make_campaign(
    n: int, treated_share: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A randomized campaign: 8 features, a baseline conversion rate p0(x) around 0.25 and a
    heterogeneous true uplift tau(x) from about -0.14 to +0.18 (about half the users are
    sleeping dogs, tau < 0), y ~ Bernoulli(p0 + t * tau). Returns X, t, y, tau."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    p0 = expit(-1.3 + 0.7 * X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 2] * X[:, 3])
    tau = 0.12 * np.tanh(1.5 * X[:, 4]) + 0.08 * (X[:, 5] > 0.5) - 0.02
    p1 = np.clip(p0 + tau, 0.0, 1.0)
    t = (rng.random(n) < treated_share).astype(np.int64)
    y = (rng.random(n) < np.where(t == 1, p1, p0)).astype(np.int64)
    return X, t, y, p1 - p0


@pytest.fixture(scope="module", params=[0.5, 0.7], ids=["split50", "split70"])
def campaign(request) -> dict:
    share = request.param
    X, t, y, _ = make_campaign(20_000, share, seed=1)
    X_test, t_test, y_test, tau_test = make_campaign(20_000, share, seed=2)
    return {
        "share": share,
        "train": (X, t, y),
        "test": (X_test, t_test, y_test, tau_test),
        "random_qini": qini_auc_score(y_test, t_test, np.random.default_rng(3).random(len(y_test))),
    }


# Measured with the default LightGBM parameters on five train/test seed pairs (minimum over
# seeds; 50/50 and 70/30 splits):
#   model                 Spearman(pred, tau)   Qini coef.   Qini / oracle's Qini
#   t_learner             0.63  0.60            0.069 0.067  0.58  0.54
#   x_learner             0.73  0.67            0.083 0.080  0.70  0.64
#   class_transformation  0.58  0.54            0.070 0.069  0.59  0.55
# A random score's Qini coefficient stayed within [-0.008, 0.022]. The thresholds below leave
# a margin under those minima.
RECOVERY = {
    "t_learner": {"spearman": 0.5, "qini_vs_oracle": 0.45},
    "x_learner": {"spearman": 0.6, "qini_vs_oracle": 0.55},
    "class_transformation": {"spearman": 0.45, "qini_vs_oracle": 0.45},
}


@pytest.mark.parametrize("name", list(UPLIFT_MODELS))
def test_models_recover_the_true_uplift(campaign, name) -> None:
    model = make_uplift_model(name, params=ONE_THREAD, random_state=0).fit(*campaign["train"])
    X_test, t_test, y_test, tau = campaign["test"]
    result = evaluate_uplift(y_test, t_test, model.predict(X_test), true_uplift=tau)
    want = RECOVERY[name]
    assert result["true_correlation"]["spearman"] >= want["spearman"]
    assert result["qini_auc"] >= campaign["random_qini"] + 0.04
    assert result["qini_vs_oracle"] >= want["qini_vs_oracle"]
    assert result["oracle_qini_auc"] == pytest.approx(qini_auc_score(y_test, t_test, tau))


def test_class_transformation_reweighting_keeps_the_uplift_level() -> None:
    # With 70% treated, the unweighted transformation's 2 P(z=1|x) - 1 is 1.4 p1 - 0.6 p0 - 0.4,
    # far below the true uplift; the re-weighted one is centred on the true average effect.
    X, t, y, _ = make_campaign(20_000, 0.7, seed=1)
    X_test, _, _, tau = make_campaign(20_000, 0.7, seed=2)
    weighted = ClassTransformation(params=ONE_THREAD, random_state=0).fit(X, t, y).predict(X_test)
    plain = (
        ClassTransformation(params=ONE_THREAD, reweight=False, random_state=0)
        .fit(X, t, y)
        .predict(X_test)
    )
    assert abs(weighted.mean() - tau.mean()) < 0.03
    assert plain.mean() - tau.mean() < -0.1


def test_x_learner_uses_the_given_propensity() -> None:
    X, t, y, _ = make_campaign(3000, 0.7, seed=4)
    params = ONE_THREAD | {"n_estimators": 20}
    fitted = XLearner(params=params, random_state=0).fit(X, t, y)
    assert fitted.propensity_ == pytest.approx(t.mean())
    given = XLearner(params=params, random_state=0, propensity=0.25).fit(X, t, y)
    b = given.boosters_
    expected = 0.25 * b["tau_control"].predict(X) + 0.75 * b["tau_treated"].predict(X)
    np.testing.assert_allclose(given.predict(X), expected)


def test_profit_on_the_simulated_campaign() -> None:
    X, t, y, _ = make_campaign(20_000, 0.5, seed=1)
    X_test, t_test, y_test, _ = make_campaign(20_000, 0.5, seed=2)
    uplift = XLearner(params=ONE_THREAD, random_state=0).fit(X, t, y).predict(X_test)
    curve = profit_curve(uplift, margin=10.0, cost=0.3, y=y_test, treatment=t_test)
    share, _ = best_share(curve)
    at_best = curve.loc[curve["share"] == share, "observed_profit"].item()
    # Everyone: a +0.6-point average effect is worth 0.06 per message against a 0.30 cost.
    everyone = curve["observed_profit"].iloc[-1]
    assert everyone < 0 < at_best
    assert 0.2 < share < 0.6


# -- state round trips -----------------------------------------------------------------------


def _revenue_campaign(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, t, y, _ = make_campaign(n, 0.5, seed)
    amount = np.random.default_rng(seed + 1).lognormal(3.0, 0.5, n)
    return X, t, y * amount


@pytest.mark.parametrize(
    ("name", "outcome"),
    # the class transformation takes binary outcomes only (see test_model_input_errors)
    [(name, "binary") for name in UPLIFT_MODELS]
    + [("t_learner", "revenue"), ("x_learner", "revenue")],
)
def test_state_round_trip_through_npz(tmp_path, name, outcome) -> None:
    if outcome == "revenue":
        X, t, y = _revenue_campaign(3000, 5)
    else:
        X, t, y, _ = make_campaign(3000, 0.6, 5)
    params = ONE_THREAD | {"n_estimators": 30}
    model = make_uplift_model(name, params=params, random_state=1).fit(X, t, y)
    assert model.outcome_ == ("continuous" if outcome == "revenue" else "binary")
    path = tmp_path / "model.npz"
    np.savez(path, allow_pickle=False, **model.to_state())
    with np.load(path, allow_pickle=False) as npz:
        loaded = UpliftModel.from_state(npz)
        again = type(model).from_state(npz)
    X_new = make_campaign(500, 0.5, 6)[0]
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict(X_new), model.predict(X_new))
    np.testing.assert_array_equal(again.predict(X_new), model.predict(X_new))


def test_state_is_numpy_arrays_only() -> None:
    X, t, y, _ = make_campaign(2000, 0.5, 7)
    state = TLearner(params=ONE_THREAD | {"n_estimators": 5}).fit(X, t, y).to_state()
    assert set(state) == {"meta", "booster.treated", "booster.control"}
    for value in state.values():
        assert isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.ndim == 0


def test_from_state_checks_the_model() -> None:
    X, t, y, _ = make_campaign(2000, 0.5, 7)
    state = TLearner(params=ONE_THREAD | {"n_estimators": 5}).fit(X, t, y).to_state()
    with pytest.raises(InputError, match="t_learner"):
        XLearner.from_state(state)
    with pytest.raises(InputError, match="not a saved uplift model"):
        UpliftModel.from_state({"weights": np.zeros(3)})
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **{k: v for k, v in state.items() if k != "booster.control"})
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz, pytest.raises(InputError, match="boosters"):
        UpliftModel.from_state(npz)


# -- input errors ----------------------------------------------------------------------------


def test_unknown_model_lists_the_valid_ones() -> None:
    with pytest.raises(InputError, match="s_learner") as err:
        make_uplift_model("s_learner")
    assert all(name in err.value.hint for name in UPLIFT_MODELS)


@pytest.mark.parametrize("name", list(UPLIFT_MODELS))
def test_unknown_lightgbm_parameter_lists_the_valid_ones(name) -> None:
    with pytest.raises(InputError, match="n_estimator'") as err:
        make_uplift_model(name, params={"n_estimator": 10})
    assert "n_estimators" in err.value.hint and "num_leaves" in err.value.hint
    # fit checks too, for models built directly
    X, t, y, _ = make_campaign(500, 0.5, 8)
    with pytest.raises(InputError, match="n_estimator'"):
        UPLIFT_MODELS[name](params=ONE_THREAD | {"n_estimator": 10}).fit(X, t, y)


@pytest.mark.parametrize(
    ("param", "hint"),
    [("objective", "chooses"), ("random_state", "random_state="), ("class_weight", "distort")],
)
def test_reserved_lightgbm_parameters(param, hint) -> None:
    with pytest.raises(InputError, match=param) as err:
        make_uplift_model("t_learner", params={param: None})
    assert hint in err.value.hint


@pytest.mark.parametrize(
    ("param", "match"),
    [({"num_leaves": -1}, "num_leaves"), ({"n_estimators": 2.5}, "num_iterations")],
)
def test_bad_lightgbm_values_are_input_errors(param, match) -> None:
    X, t, y, _ = make_campaign(500, 0.5, 8)
    with pytest.raises(InputError, match=match):
        TLearner(params=ONE_THREAD | param).fit(X, t, y)


def test_bad_constructor_argument() -> None:
    with pytest.raises(InputError, match="reweight"):
        make_uplift_model("t_learner", reweight=False)


@pytest.mark.parametrize(
    ("y", "t", "score", "match"),
    [
        (Y, np.ones(8), SCORE, "only treated"),
        (Y, np.zeros(8), SCORE, "only control"),
        (Y, T[:7], SCORE, "`treatment` has 7 values but `y` has 8"),
        (Y, T, SCORE[:7], "`uplift` has 7 values but `y` has 8"),
        (Y, T, np.r_[SCORE[:7], np.nan], "`uplift` has 1 NaN"),
        (Y, np.r_[T[:7], 2], SCORE, "must be binary"),
        (np.r_[Y[:7], np.nan], T, SCORE, "`y` has 1 missing"),
        (Y.reshape(2, 4), T, SCORE, "1-D"),
        (Y, np.array(list("ababcdcd")), SCORE, "not numeric"),
    ],
)
@pytest.mark.parametrize(
    "metric", [qini_curve, uplift_curve, qini_auc_score, uplift_auc_score, uplift_at_k]
)
def test_metric_input_errors(metric, y, t, score, match) -> None:
    with pytest.raises(InputError, match=match) as err:
        metric(y, t, score)
    assert err.value.hint
    assert metric.__name__ in err.value.message


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0.0}, "share"),
        ({"k": 1.5}, "share"),
        ({"k": 9}, "out of range"),
        ({"k": 0.01}, "selects nobody"),
        ({"k": "a"}, "not a number"),
        ({"strategy": "first"}, "strategy"),
    ],
)
def test_uplift_at_k_errors(kwargs, match) -> None:
    with pytest.raises(InputError, match=match):
        uplift_at_k(Y, T, SCORE, **kwargs)


def test_auuc_needs_binary_outcomes() -> None:
    with pytest.raises(InputError, match="binary"):
        uplift_auc_score(Y * 12.5, T, SCORE)


def test_model_input_errors() -> None:
    X, t, y, _ = make_campaign(1000, 0.5, 9)
    small = ONE_THREAD | {"n_estimators": 5}
    with pytest.raises(InputError, match="only treated"):
        TLearner(params=small).fit(X, np.ones(1000), y)
    with pytest.raises(InputError, match="`X` has 1000 rows but `y` has 999"):
        TLearner(params=small).fit(X, t, y[:-1])
    with pytest.raises(InputError, match="constant"):
        TLearner(params=small).fit(X, t, np.where(t == 1, y, 0))
    with pytest.raises(InputError, match="needs 1/0 conversions") as err:
        ClassTransformation(params=small).fit(X, t, y * 3.5)
    assert "x_learner" in err.value.hint
    with pytest.raises(InputError, match="propensity"):
        XLearner(params=small, propensity=1.5).fit(X, t, y)
    with pytest.raises(InputError, match="not fitted"):
        TLearner().predict(X)
    model = TLearner(params=small).fit(X, t, y)
    with pytest.raises(InputError, match="7 features, the model was fitted on 8"):
        model.predict(X[:, :7])
    with pytest.raises(InputError, match="numeric"):
        model.predict(np.full((2, 8), "x"))


# -- targeting -------------------------------------------------------------------------------

UPLIFT = np.array([0.1, -0.02, 0.05, 0.2])


@pytest.mark.parametrize(
    ("margin", "cost", "expected"),
    [
        # values 1.0, -0.2, 0.5, 2.0 against 0.6
        (10.0, 0.6, [True, False, False, True]),
        # values 1.0, -0.2, 1.0, 0.4 against 0.6
        (np.array([10.0, 10.0, 20.0, 2.0]), 0.6, [True, False, True, False]),
        # per-user costs: 1.0 > 1.2? no; -0.2 > -1? yes (a paid-for placement); 0.5 > 0; 2 > 3?
        (10.0, np.array([1.2, -1.0, 0.0, 3.0]), [False, True, True, False]),
        # exactly at break-even is not worth it
        (10.0, 1.0, [False, False, False, True]),
    ],
)
def test_targeting_policy_by_hand(margin, cost, expected) -> None:
    np.testing.assert_array_equal(targeting_policy(UPLIFT, margin=margin, cost=cost), expected)


def test_profit_curve_by_hand() -> None:
    # Sorted by uplift * margin: users 3 (2.0), 0 (1.0), 2 (0.5), 1 (-0.2); net of the 0.6 cost
    # 1.4, 0.4, -0.1, -0.8. Held-out outcomes in that order: 3 treated y=1, 0 control y=0,
    # 2 treated y=0, 1 control y=1.
    y = np.array([0, 1, 0, 1])
    t = np.array([0, 0, 1, 1])
    curve = profit_curve(UPLIFT, margin=10.0, cost=0.6, y=y, treatment=t, n_points=5)
    expected = pd.DataFrame(
        {
            "share": [0.0, 0.25, 0.5, 0.75, 1.0],
            "users": [0, 1, 2, 3, 4],
            "expected_incremental_conversions": [0.0, 0.2, 0.3, 0.35, 0.33],
            "expected_profit": [0.0, 1.4, 1.8, 1.7, 0.9],
            # k=1: no control user yet; k=2: (1 - 0) * 2; k=3: (1/2 - 0) * 3; k=4: (1/2 - 1/2) * 4
            "observed_incremental_conversions": [0.0, np.nan, 2.0, 1.5, 0.0],
            # the same in money (margin 10) less k * 0.6
            "observed_profit": [0.0, np.nan, 18.8, 13.2, -2.4],
        }
    )
    pd.testing.assert_frame_equal(curve, expected)
    assert best_share(curve) == (0.5, pytest.approx(1.8))
    assert best_share(curve, "observed_profit") == (0.5, pytest.approx(18.8))


def test_profit_curve_with_per_user_margin() -> None:
    # values 1.0, -0.2, 1.0, 0.4: users 0 and 2 tie (input order), then 3, then 1.
    curve = profit_curve(UPLIFT, margin=[10.0, 10.0, 20.0, 2.0], cost=0.6, n_points=5)
    np.testing.assert_allclose(curve["expected_profit"], [0, 0.4, 0.8, 0.6, -0.2])
    np.testing.assert_allclose(
        curve["expected_incremental_conversions"], [0, 0.1, 0.15, 0.35, 0.33]
    )
    assert "observed_profit" not in curve


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_share_agrees_with_the_policy(seed) -> None:
    rng = np.random.default_rng(seed)
    uplift = rng.normal(0.01, 0.05, 1000)
    margin = rng.lognormal(2.0, 0.5, 1000)
    curve = profit_curve(uplift, margin=margin, cost=0.2, n_points=1001)
    share, profit = best_share(curve)
    policy = targeting_policy(uplift, margin=margin, cost=0.2)
    # n_points = n + 1: every user count is a point, so the peak is exactly the policy.
    assert share == pytest.approx(policy.mean())
    assert profit == pytest.approx(np.sum((uplift * margin - 0.2)[policy]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"margin": [1.0, 2.0], "cost": 0.1}, "`margin` must be a number or one value per user"),
        ({"margin": 1.0, "cost": np.nan}, "`cost` has missing"),
        ({"margin": 1.0, "cost": 0.1, "uplift": [0.1, np.nan, 0, 0]}, "NaN"),
        ({"margin": 1.0, "cost": 0.1, "y": [1, 0, 1, 0]}, "both `y` and `treatment`"),
        ({"margin": 1.0, "cost": 0.1, "n_points": 1}, "n_points"),
    ],
)
def test_profit_curve_errors(kwargs, match) -> None:
    kwargs = {"uplift": UPLIFT} | kwargs
    with pytest.raises(InputError, match=match):
        profit_curve(kwargs.pop("uplift"), **kwargs)


def test_best_share_errors() -> None:
    curve = profit_curve(UPLIFT, margin=10.0, cost=0.6, n_points=5)
    with pytest.raises(InputError, match="observed_profit"):
        best_share(curve, "observed_profit")


# -- evaluation ------------------------------------------------------------------------------


def test_evaluate_uplift_matches_the_metrics() -> None:
    result = evaluate_uplift(Y, T, SCORE)
    assert result == {
        "qini_auc": pytest.approx(43 / 72),
        "auuc": pytest.approx(2 / 3),
        # The 10% and 20% tops of 8 users hold 0 users and 1 (treated) user: undefined, None.
        "uplift_at_10": None,
        "uplift_at_20": None,
        "uplift_at_30": pytest.approx(1.0),  # top 2: row 0 (treated, 1), row 1 (control, 0)
    }


def test_evaluate_uplift_with_the_true_uplift() -> None:
    _, t, y, tau = make_campaign(5000, 0.5, seed=10)
    pred = tau + np.random.default_rng(0).normal(0, 0.1, 5000)
    result = evaluate_uplift(y, t, pred, true_uplift=tau)
    assert result["true_correlation"]["pearson"] == pytest.approx(np.corrcoef(pred, tau)[0, 1])
    assert result["true_correlation"]["spearman"] == pytest.approx(
        stats.spearmanr(pred, tau).statistic
    )
    assert result["oracle_qini_auc"] == pytest.approx(qini_auc_score(y, t, tau))
    assert (
        0
        < result["qini_vs_oracle"]
        == pytest.approx(qini_auc_score(y, t, pred) / result["oracle_qini_auc"])
    )
    revenue = evaluate_uplift(y * 9.5, t, pred)
    assert revenue["auuc"] is None and revenue["qini_auc"] is not None
