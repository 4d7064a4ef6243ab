"""Classifiers, metrics, calibration, reasons and persistence of the propensity models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jingzhun.errors import InputError
from jingzhun.predict.propensity import (
    CLASSIFIERS,
    Calibrator,
    Classifier,
    Split,
    calibration_table,
    classification_metrics,
    compare,
    expected_calibration_error,
    load_npz,
    save_npz,
    top_reasons,
)

FEATURES = [f"f{i}" for i in range(6)]


def data(n: int, seed: int) -> Split:
    """Skewed positive features; the log-odds depend on two of them and an interaction."""
    rng = np.random.default_rng(seed)
    X = rng.lognormal(size=(n, len(FEATURES)))
    z = np.log(X)
    logit = -1.5 + 0.9 * z[:, 0] - 0.6 * z[:, 1] + 0.5 * (z[:, 2] > 0) * (z[:, 3] > 0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return Split(X, y)


def test_metrics_by_hand() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    m = classification_metrics(y, p)
    # Top 10% = 1 user (0.9, a buyer): precision 1, base rate 0.3 -> lift 3.33; gain 1/3.
    assert m["lift_10"] == pytest.approx(1 / 0.3)
    assert m["gain_10"] == pytest.approx(1 / 3)
    # Top 20% = 0.9 (buyer), 0.8 (not): precision 0.5 -> lift 1.667; gain 1/3.
    assert m["lift_20"] == pytest.approx(0.5 / 0.3)
    assert m["gain_20"] == pytest.approx(1 / 3)
    # ROC AUC: pairs (pos, neg) ordered correctly. Positives at ranks 1, 3, 10 (of 10).
    # 0.9 beats 7 negatives, 0.7 beats 6, 0.05 beats 0 -> 13 / 21.
    assert m["roc_auc"] == pytest.approx(13 / 21)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["base_rate"] == pytest.approx(0.3)


def test_calibration_error_of_a_calibrated_and_a_biased_score() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.6, 200_000)
    y = (rng.random(len(p)) < p).astype(np.int8)
    assert expected_calibration_error(y, p) < 0.005
    assert expected_calibration_error(y, p * 0.5) == pytest.approx(np.mean(p) * 0.5, abs=0.01)
    table = calibration_table(y, p)
    assert len(table["predicted"]) == 10 and sum(table["rows"]) == len(p)


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibrators_repair_a_distorted_probability(method: str) -> None:
    rng = np.random.default_rng(1)
    true = rng.uniform(0.02, 0.5, 100_000)
    y = (rng.random(len(true)) < true).astype(np.int8)
    distorted = true**0.5  # over-confident, same ranking
    half = len(y) // 2
    cal = Calibrator.fit(distorted[:half], y[:half], method)
    before = expected_calibration_error(y[half:], distorted[half:])
    after = expected_calibration_error(y[half:], cal(distorted[half:]))
    assert before > 0.15 and after < 0.01
    restored = Calibrator.from_state(cal.to_state())
    assert np.allclose(restored(distorted[:50]), cal(distorted[:50]))


def test_auto_calibration_uses_sigmoid_on_small_samples() -> None:
    y = np.array([0, 1] * 100)
    assert Calibrator.fit(np.linspace(0.1, 0.9, 200), y, "auto").method == "sigmoid"
    with pytest.raises(InputError, match="calibration 'beta'"):
        Calibrator.fit(np.linspace(0.1, 0.9, 200), y, "beta")


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_each_classifier_learns_and_round_trips_without_pickle(name: str, tmp_path: Path) -> None:
    train, test = data(6000, 0), data(3000, 1)
    model = Classifier(name).fit(train.X, train.y, test.X, test.y)
    p = model.predict_proba(test.X)
    assert p.shape == (len(test),) and np.all((p >= 0) & (p <= 1))
    assert classification_metrics(test.y, p)["roc_auc"] > 0.7
    path = tmp_path / "m.npz"
    save_npz(path, model, Calibrator("none"), model)
    with np.load(path, allow_pickle=False) as z:  # loads without pickle
        assert "model_blob" in z.files
    loaded, cal, explainer = load_npz(path)
    # Equal up to summation order (the forest averages its trees on two threads).
    assert np.allclose(loaded.predict_proba(test.X), p, rtol=1e-12, atol=1e-15)
    assert cal.method == "none" and explainer.name == name


def test_unknown_classifier_and_parameter_are_clear_errors() -> None:
    with pytest.raises(InputError, match="classifier 'xgboost' is unknown"):
        Classifier("xgboost")
    with pytest.raises(InputError, match="forest: unknown parameter 'trees'") as exc:
        Classifier("forest", {"trees": 10})
    assert "n_estimators" in exc.value.hint
    with pytest.raises(InputError, match="lightgbm: unknown parameter 'depth'"):
        Classifier("lightgbm", {"depth": 3})


def test_lightgbm_contributions_add_up_to_the_log_odds() -> None:
    train = data(5000, 2)
    model = Classifier("lightgbm", {"n_estimators": 50}).fit(train.X, train.y)
    X = data(200, 3).X
    contrib = model.contributions(X)
    full = model.booster_.predict(np.sign(X) * np.log1p(np.abs(X)), pred_contrib=True)
    raw = model.booster_.predict(np.sign(X) * np.log1p(np.abs(X)), raw_score=True)
    assert contrib.shape == (200, len(FEATURES))
    assert np.allclose(contrib.sum(axis=1) + full[:, -1], raw)


def test_logistic_contributions_are_its_decision_function() -> None:
    train = data(5000, 4)
    model = Classifier("logistic").fit(train.X, train.y)
    X = data(100, 5).X
    contrib = model.contributions(X)
    logit = np.log(model.predict_proba(X) / (1 - model.predict_proba(X)))
    assert np.allclose(contrib.sum(axis=1) + model.model_[-1].intercept_[0], logit)


def test_top_reasons_are_the_largest_positive_contributions() -> None:
    contrib = np.array([[0.5, -0.2, 0.1], [-0.1, -0.3, -0.2]])
    X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    reasons = top_reasons(contrib, X, ["a", "b", "c"], k=2)
    assert reasons[0] == [
        {"feature": "a", "value": 1.0, "effect": 0.5},
        {"feature": "c", "value": 3.0, "effect": 0.1},
    ]
    assert reasons[1] == []  # nothing pushes this user up


def test_compare_chooses_on_validation_and_calibrates() -> None:
    train, val, test = data(20_000, 6), data(8000, 7), data(8000, 8)
    result = compare(train, val, test, models=["logistic", "tree", "lightgbm"])
    aucs = {m: result.metrics[m]["validation"]["roc_auc"] for m in result.metrics}
    assert result.best == max(aucs, key=aucs.get)
    assert set(result.metrics[result.best]) == {"validation", "test"}
    assert result.test_calibrated["ece"] < 0.03
    assert result.test_calibrated["roc_auc"] > 0.7
    assert len(result.curves["roc"]["fpr"]) > 10 and result.curves["gains"]["captured"][-1] == 1.0
    # The tree alone is the worst of the three on this smooth signal.
    assert aucs["tree"] < max(aucs["logistic"], aucs["lightgbm"])
    by_loss = compare(train, val, test, models=["logistic", "tree"], select="log_loss")
    losses = {m: by_loss.metrics[m]["validation"]["log_loss"] for m in by_loss.metrics}
    assert by_loss.best == min(losses, key=losses.get)


def test_compare_refits_the_best_on_every_training_row() -> None:
    train, val = data(12_000, 9), data(4000, 10)
    result = compare(train, val, models=["logistic"], compare_rows=3000)
    assert "logistic_full" in result.seconds


def test_single_class_labels_are_refused() -> None:
    train, val = data(2000, 11), data(2000, 12)
    flat = Split(val.X, np.zeros(len(val), np.int8))
    with pytest.raises(InputError, match="validation labels have a single class"):
        compare(train, flat, models=["logistic"])
    with pytest.raises(InputError, match="--select 'auc' is unknown"):
        compare(train, val, models=["logistic"], select="auc")


def test_non_convergence_is_reported_not_hidden() -> None:
    train = data(3000, 13)
    model = Classifier("mlp", {"max_iter": 2, "early_stopping": False}).fit(train.X, train.y)
    assert model.warnings_ and "did not converge" in model.warnings_[0]
    assert "max_iter" in model.warnings_[0]


def test_check_classes_names_the_set_and_the_unit() -> None:
    from jingzhun.predict.propensity import check_classes

    with pytest.raises(
        InputError,
        match="the holdout labels have a single class: every one of the 3 customers is positive",
    ) as exc:
        check_classes(np.ones(3), "the holdout", hint="move --holdout-end", unit="customers")
    assert exc.value.hint == "move --holdout-end"
    with pytest.raises(InputError, match="none of the 2 rows is positive"):
        check_classes(np.zeros(2), "the test", hint="h")
    with pytest.raises(InputError, match="the test: no users to learn from"):
        check_classes(np.zeros(0), "the test", hint="h", unit="users")
    check_classes(np.array([0, 1]), "the test", hint="h")


@pytest.mark.parametrize(
    ("name", "params"),
    [("logistic", {"C": -1}), ("logistic", {"C": "x"}), ("forest", {"n_estimators": 0})],
)
def test_bad_parameter_values_are_refused_before_any_fit(name: str, params: dict) -> None:
    """Issue 12: scikit-learn checked them inside fit(), after the training sets were built,
    and its error escaped as a traceback."""
    from jingzhun.predict.propensity import Classifier

    with pytest.raises(InputError, match=rf"^\[predict.params\] {name}: "):
        Classifier(name, params)
