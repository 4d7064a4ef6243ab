"""Classifiers for propensity and churn: fit, compare, choose, calibrate, explain, save.

The five classifiers the seeds name — logistic regression, a decision tree, a random forest,
gradient boosting (LightGBM) and an MLP — behind one small interface. ``compare`` fits each on
the training rows, scores them on validation and test, and keeps the best on validation
(ROC AUC by default), whose probabilities are then calibrated on validation (isotonic with
enough of both classes, else Platt's sigmoid). Per-user reasons come from LightGBM's
``pred_contrib`` (exact TreeSHAP values; no SHAP dependency), or from the coefficients of the
logistic regression when that is the model.

Every feature passes through a signed log, ``sign(x) log1p(|x|)``: money and counts are
heavily skewed, the linear model and the MLP need it, and trees are unaffected by a monotone
transform. Models save without pickle: scikit-learn ones through ``skops.io`` with a fixed list
of trusted types, LightGBM as its own text format.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

from jingzhun.contracts.estimator import Estimator, Param, check_matrix, unknown_parameters
from jingzhun.contracts.models import CLASSIFIERS  # the names, on the ground floor for config
from jingzhun.errors import InputError
from jingzhun.predict import lgbm

#: Metric used to choose the best model on validation, and whether higher is better.
SELECT_METRICS: dict[str, bool] = {
    "roc_auc": True,
    "pr_auc": True,
    "log_loss": False,
    "brier": False,
}

#: skops may load only these types beyond its defaults (what our sklearn models contain).
_TRUSTED = (
    "sklearn.tree._tree.Tree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
)


def signed_log(X: np.ndarray) -> np.ndarray:
    """``sign(x) log1p(|x|)`` elementwise, as float64: skewed money and counts made tame."""
    X = np.asarray(X, dtype=np.float64)
    return np.sign(X) * np.log1p(np.abs(X))


def _sklearn(name: str, random_state: int, params: dict[str, Any]) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    if name == "logistic":
        defaults: dict[str, Any] = {"C": 1.0, "max_iter": 1000}
        cls: Callable[..., Any] = LogisticRegression
    elif name == "tree":
        defaults = {"max_depth": 6, "min_samples_leaf": 100, "random_state": random_state}
        cls = DecisionTreeClassifier
    elif name == "forest":
        defaults = {
            "n_estimators": 200,
            "min_samples_leaf": 20,
            "max_features": "sqrt",
            "max_samples": 0.5,
            "n_jobs": 2,
            "random_state": random_state,
        }
        cls = RandomForestClassifier
    else:  # mlp
        defaults = {
            "hidden_layer_sizes": (64, 32),
            "alpha": 1e-3,
            "early_stopping": True,
            "max_iter": 200,
            "random_state": random_state,
        }
        cls = MLPClassifier
    valid = set(cls().get_params())
    unknown = set(params) - valid
    if unknown:
        raise unknown_parameters(name, unknown, sorted(valid))
    model = cls(**{**defaults, **params})
    # scikit-learn checks values only inside fit(), after the training sets are built, and
    # raises its own error there (C = -1 ended in a traceback, issue 12): check them now.
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        model._validate_params()
    except (InvalidParameterError, ValueError, TypeError) as exc:
        raise InputError(
            f"[predict.params] {name}: {str(exc).splitlines()[0]}",
            hint="fix the value in jingzhun.toml",
        ) from None
    if name in ("logistic", "mlp"):
        return make_pipeline(StandardScaler(), model)
    return model


def _labels(y: Any, n: int, where: str, name: str) -> np.ndarray:
    """Labels as int8 0/1, one per row of the features."""
    arr = np.asarray(y)
    if arr.ndim != 1 or len(arr) != n:
        raise InputError(
            f"{where}: `{name}` must hold one label per row of the features ({n}), "
            f"got shape {arr.shape}",
            hint="pass 1 for a positive and 0 for a negative, aligned with the features",
        )
    if not np.isin(arr, (0, 1)).all():
        raise InputError(
            f"{where}: `{name}` must hold only 0 and 1",
            hint="pass 1 for a positive and 0 for a negative",
        )
    return arr.astype(np.int8)


class Classifier(Estimator):
    """One of ``CLASSIFIERS``: fit on (X, y), probabilities for class 1, saved without pickle.

    Follows the estimator contract (:mod:`jingzhun.contracts.estimator`): the constructor
    checks the parameters, :meth:`fit` learns ``model_`` (scikit-learn) or ``booster_``
    (LightGBM), ``n_features_in_``, ``warnings_`` and ``fit_seconds_``, and
    :meth:`to_state`/:meth:`from_state` round-trip the parameters and the fitted model as
    NumPy arrays (scikit-learn models through ``skops``, LightGBM as its text format).

    Parameters
    ----------
    name : str
        One of ``CLASSIFIERS``.
    params : dict, optional
        The underlying estimator's parameters (scikit-learn's or LightGBM's names); an unknown
        name is an error listing the valid ones, and a value scikit-learn refuses is an error
        now rather than in ``fit``.
    random_state : int
        Seed for every random choice.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 3)); y = (X[:, 0] + rng.normal(size=2000) > 0).astype(int)
    >>> model = Classifier("logistic").fit(X, y)
    >>> float(model.predict_proba(X[:1])[0]) > 0
    True
    >>> Classifier.from_state(model.to_state()).get_params()
    {'name': 'logistic', 'params': {}, 'random_state': 0}
    """

    family: ClassVar[str] = "classifier"
    PARAMS: ClassVar[Mapping[str, Param]] = {
        "name": Param("lightgbm", str, choices=CLASSIFIERS, help="which classifier"),
        "params": Param({}, dict, help="the underlying estimator's parameters"),
        "random_state": Param(0, int, 0, 2**32 - 1, help="seed of every random choice"),
    }
    _fitted: ClassVar[str] = "model_"

    params: dict[str, Any]
    random_state: int

    def __init__(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        random_state: int = 0,
        **unknown: Any,
    ) -> None:
        if name not in CLASSIFIERS:
            raise InputError(
                f"classifier {name!r} is unknown", hint=f"use one of: {', '.join(CLASSIFIERS)}"
            )
        self.name = name  # the messages of the checks below name the classifier
        super().__init__(name=name, params=dict(params or {}), random_state=random_state, **unknown)

    def _validate(self) -> None:
        if self.name == "lightgbm":
            lgbm.check_names("lightgbm", self.params, extra=("early_stopping_rounds",))
        else:
            _sklearn(self.name, self.random_state, self.params)  # validates the parameters

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> Self:
        """Fit on (X, y). LightGBM stops early on (X_val, y_val) when given."""
        started = time.perf_counter()
        where = f"{self.name}.fit"
        X = check_matrix(X, where)
        y = _labels(y, len(X), where, "y")
        if (X_val is None) != (y_val is None):
            raise InputError(
                f"{where}: give both `X_val` and `y_val` or neither",
                hint="early stopping needs the validation rows and their labels",
            )
        if X_val is not None:
            X_val = check_matrix(X_val, where, n_features=X.shape[1])
            y_val = _labels(y_val, len(X_val), where, "y_val")
        X = signed_log(X)
        self.warnings_: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if self.name == "lightgbm":
                import lightgbm

                params = {**lgbm.classifier_defaults(self.random_state), **self.params}
                rounds = params.pop("early_stopping_rounds", 50)
                model = lightgbm.LGBMClassifier(**params)
                if X_val is not None and y_val is not None:
                    model.fit(
                        X,
                        y,
                        eval_set=[(signed_log(X_val), y_val)],
                        eval_metric="binary_logloss",
                        callbacks=[lightgbm.early_stopping(rounds, verbose=False)],
                    )
                else:
                    model.fit(X, y)
                self.booster_ = model.booster_
                self.model_ = None
            else:
                self.model_ = _sklearn(self.name, self.random_state, self.params).fit(X, y)
                self.booster_ = None
        for w in caught:
            if "converge" in str(w.message).lower():
                self.warnings_.append(
                    f"{self.name} did not converge ({str(w.message).splitlines()[0][:120]}); "
                    "raise max_iter in its params"
                )
        self.n_features_in_: int | None = X.shape[1]
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _features(self, X: np.ndarray, where: str) -> np.ndarray:
        self._check_fitted()
        return signed_log(check_matrix(X, where, n_features=self.n_features_in_))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(y = 1 | x), uncalibrated."""
        X = self._features(X, f"{self.name}.predict_proba")
        if self.booster_ is not None:
            return np.asarray(self.booster_.predict(X), dtype=np.float64)
        return np.asarray(self.model_.predict_proba(X)[:, 1], dtype=np.float64)

    def contributions(self, X: np.ndarray) -> np.ndarray | None:
        """Per-feature contributions to the log-odds (n × features), or None for models
        without them: LightGBM's TreeSHAP values, or coefficient × standardised value for the
        logistic regression (its exact decomposition around the average user)."""
        X = self._features(X, f"{self.name}.contributions")
        if self.booster_ is not None:
            return np.asarray(self.booster_.predict(X, pred_contrib=True))[:, :-1]
        if self.name == "logistic":
            scaler, lr = self.model_[0], self.model_[-1]
            return scaler.transform(X) * lr.coef_[0]
        return None

    # -- persistence --------------------------------------------------------------------------

    def _learned(self) -> dict[str, Any]:
        return {
            "n_features_in": self.n_features_in_,
            "warnings": self.warnings_,
            "fit_seconds": self.fit_seconds_,
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        if self.booster_ is not None:
            return {"blob": np.array(self.booster_.model_to_string())}
        import skops.io as sio

        return {"blob": np.frombuffer(sio.dumps(self.model_), dtype=np.uint8)}

    def _restore(self, learned: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> None:
        features = learned.get("n_features_in")
        self.n_features_in_ = None if features is None else int(features)
        self.warnings_ = list(learned.get("warnings", []))
        self.fit_seconds_ = float(learned.get("fit_seconds", 0.0))
        blob = np.asarray(state["blob"])
        if self.name == "lightgbm":
            import lightgbm

            self.booster_ = lightgbm.Booster(model_str=str(blob[()]))
            self.model_ = None
        else:
            import skops.io as sio

            data = blob.tobytes()
            untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in _TRUSTED]
            if untrusted:
                raise InputError(
                    f"the saved {self.name} model holds types jingzhun does not load: "
                    f"{untrusted[:3]}",
                    hint="retrain it with jingzhun predict train",
                )
            self.model_ = sio.loads(data, trusted=[*_TRUSTED])
            self.booster_ = None

    @classmethod
    def _registry(cls) -> Mapping[str, type[Estimator]]:
        return dict.fromkeys(CLASSIFIERS, cls)

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> Self:
        """The classifier :meth:`to_state` described. A state written before the estimator
        contract (``name``, ``random_state`` and ``blob``, without its parameters) still loads,
        with the default parameters."""
        if "meta" in state:
            return super().from_state(state)
        try:
            name = str(np.asarray(state["name"])[()])
            seed = int(np.asarray(state["random_state"])[()])
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(
                f"not a saved classifier ({exc!r})", hint="retrain it with jingzhun predict train"
            ) from None
        model = cls(name, random_state=seed)
        model._restore({}, state)
        return model


def check_classes(y: np.ndarray, where: str, hint: str, unit: str = "rows") -> None:
    """Both classes present: a label window with one class (or no rows) can neither train a
    classifier nor measure one."""
    y = np.asarray(y)
    n, pos = len(y), int(y.sum())
    if n == 0:
        raise InputError(f"{where}: no {unit} to learn from", hint=hint)
    if pos in (0, n):
        which = "every one" if pos == n else "none"
        raise InputError(
            f"{where} labels have a single class: {which} of the {n} {unit} is positive",
            hint=hint,
        )


# -- metrics ------------------------------------------------------------------------------------


def _top(p: np.ndarray, share: float) -> np.ndarray:
    n = max(1, round(share * len(p)))
    return np.argsort(-p, kind="stable")[:n]


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier, lift and gain at the top 10% and 20%, and the
    expected calibration error (10 equal-count bins)."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype=np.int8)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    if np.isnan(p).any():
        raise InputError("a model produced NaN probabilities", hint="check the features")
    base = y.mean()
    out = {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "base_rate": float(base),
        "rows": len(y),
    }
    for share in (0.1, 0.2):
        top = _top(p, share)
        hit = y[top].mean()
        out[f"lift_{int(share * 100)}"] = float(hit / base) if base > 0 else float("nan")
        out[f"gain_{int(share * 100)}"] = float(y[top].sum() / max(y.sum(), 1))
    out["ece"] = float(expected_calibration_error(y, p))
    return out


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Mean predicted and observed rate in equal-count bins (the reliability diagram)."""
    order = np.argsort(p, kind="stable")
    parts = np.array_split(order, min(bins, len(p)))
    return {
        "predicted": [float(p[i].mean()) for i in parts if len(i)],
        "observed": [float(y[i].mean()) for i in parts if len(i)],
        "rows": [len(i) for i in parts if len(i)],
    }


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    t = calibration_table(y, p, bins)
    n = sum(t["rows"])
    return sum(
        r / n * abs(a - b) for r, a, b in zip(t["rows"], t["predicted"], t["observed"], strict=True)
    )


def curves(y: np.ndarray, p: np.ndarray, points: int = 51) -> dict[str, Any]:
    """ROC, cumulative gains and calibration, thinned to ``points`` for charts."""
    from sklearn.metrics import roc_curve

    y = np.asarray(y, dtype=np.int8)
    fpr, tpr, _ = roc_curve(y, p)
    pick = np.unique(np.linspace(0, len(fpr) - 1, points).round().astype(int))
    order = np.argsort(-p, kind="stable")
    captured = np.concatenate([[0.0], np.cumsum(y[order]) / max(y.sum(), 1)])
    share = np.linspace(0, 1, points)
    gains = captured[np.round(share * len(y)).astype(int)]
    return {
        "roc": {"fpr": fpr[pick].round(4).tolist(), "tpr": tpr[pick].round(4).tolist()},
        "gains": {"share": share.round(4).tolist(), "captured": gains.round(4).tolist()},
        "calibration": calibration_table(y, p),
    }


# -- calibration --------------------------------------------------------------------------------


@dataclass
class Calibrator:
    """Isotonic regression (as interpolation knots) or Platt's sigmoid on the log-odds."""

    method: str
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def fit(cls, p: np.ndarray, y: np.ndarray, method: str = "auto") -> Calibrator:
        """``auto``: isotonic when both classes have at least 500 rows (isotonic overfits
        small samples), else sigmoid."""
        y = np.asarray(y, dtype=np.int8)
        if method == "auto":
            pos = int(y.sum())
            method = "isotonic" if min(pos, len(y) - pos) >= 500 else "sigmoid"
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
            return cls("isotonic", iso.X_thresholds_.copy(), iso.y_thresholds_.copy())
        if method == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p)[:, None], y)
            return cls("sigmoid", np.array([lr.coef_[0, 0], lr.intercept_[0]]), np.zeros(0))
        if method == "none":
            return cls("none")
        raise InputError(
            f"calibration {method!r} is unknown", hint="use auto, isotonic, sigmoid or none"
        )

    def __call__(self, p: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.interp(p, self.x, self.y)
        if self.method == "sigmoid":
            a, b = self.x
            return 1.0 / (1.0 + np.exp(-(a * _logit(p) + b)))
        return np.asarray(p, dtype=np.float64)

    def to_state(self) -> dict[str, np.ndarray]:
        return {"cal_method": np.array(self.method), "cal_x": self.x, "cal_y": self.y}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> Calibrator:
        return cls(str(state["cal_method"]), state["cal_x"], state["cal_y"])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


# -- reasons ------------------------------------------------------------------------------------


def top_reasons(
    contrib: np.ndarray, X: np.ndarray, features: list[str], k: int = 3
) -> list[list[dict[str, Any]]]:
    """The ``k`` features pushing each user's score up the most (positive contributions only),
    with the user's value: ``[{"feature", "value", "effect"}]`` per user."""
    k = min(k, contrib.shape[1])
    top = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
    effect = np.take_along_axis(contrib, top, axis=1)
    value = np.take_along_axis(np.asarray(X, dtype=np.float64), top, axis=1)
    names = np.asarray(features, dtype=object)[top]
    return [
        [
            {"feature": str(n), "value": round(float(v), 4), "effect": round(float(e), 4)}
            for n, v, e in zip(nr, vr, er, strict=True)
            if e > 0
        ]
        for nr, vr, er in zip(names, value, effect, strict=True)
    ]


# -- the comparison -----------------------------------------------------------------------------


@dataclass
class Split:
    """One part of a split: features and labels."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Comparison:
    """Every model's metrics, the best on validation, fitted and calibrated."""

    metrics: dict[str, dict[str, dict[str, float]]]  # model -> part -> metric
    best: str
    select: str
    model: Classifier
    calibrator: Calibrator
    explainer: Classifier  # LightGBM (or the logistic model itself) for reasons
    test_calibrated: dict[str, float]
    curves: dict[str, Any]  # the best model's test curves (calibrated)
    warnings: list[str]
    seconds: dict[str, float]

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for name, parts in self.metrics.items():
            row: dict[str, Any] = {"model": name}
            for part, values in parts.items():
                row.update({f"{part}_{k}": v for k, v in values.items() if k != "rows"})
            rows.append(row)
        return rows


def _sample(split: Split, rows: int | None, seed: int) -> Split:
    if rows is None or len(split) <= rows:
        return split
    idx = np.sort(np.random.default_rng(seed).choice(len(split), rows, replace=False))
    return Split(split.X[idx], split.y[idx])


def compare(
    train: Split,
    validation: Split,
    test: Split | None = None,
    *,
    models: tuple[str, ...] | list[str] = CLASSIFIERS,
    params: dict[str, dict[str, Any]] | None = None,
    select: str = "roc_auc",
    calibration: str = "auto",
    compare_rows: int | None = 200_000,
    random_state: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Fit each model, measure it on validation (and test), keep the best on validation.

    Models are compared on at most ``compare_rows`` training rows (a random sample; the slow
    ones scale badly), and the best is refitted on every training row.
    """
    if select not in SELECT_METRICS:
        raise InputError(
            f"--select {select!r} is unknown", hint=f"use one of: {', '.join(SELECT_METRICS)}"
        )
    if not models:
        raise InputError("no models to compare", hint=f"name some of: {', '.join(CLASSIFIERS)}")
    for part, split in (("training", train), ("validation", validation), ("test", test)):
        if split is not None:
            check_classes(
                split.y,
                f"the {part}",
                hint="choose another --horizon or --as-of so that some users buy and some don't",
            )
    params = params or {}
    say = progress or (lambda _m: None)
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    fitted: dict[str, Classifier] = {}
    notes: list[str] = []
    seconds: dict[str, float] = {}
    sample = _sample(train, compare_rows, random_state)
    for name in models:
        say(f"fit {name}")
        model = Classifier(name, params.get(name), random_state).fit(
            sample.X, sample.y, validation.X, validation.y
        )
        notes.extend(model.warnings_)
        seconds[name] = round(model.fit_seconds_, 3)
        metrics[name] = {
            "validation": classification_metrics(validation.y, model.predict_proba(validation.X))
        }
        if test is not None:
            metrics[name]["test"] = classification_metrics(test.y, model.predict_proba(test.X))
        fitted[name] = model
    higher = SELECT_METRICS[select]
    best = (max if higher else min)(models, key=lambda m: metrics[m]["validation"][select])
    model = fitted[best]
    if len(sample) < len(train):
        say(f"refit {best} on all {len(train):,} training rows")
        model = Classifier(best, params.get(best), random_state).fit(
            train.X, train.y, validation.X, validation.y
        )
        seconds[f"{best}_full"] = round(model.fit_seconds_, 3)
    calibrator = Calibrator.fit(model.predict_proba(validation.X), validation.y, calibration)
    if best in ("lightgbm", "logistic"):
        explainer = model
    elif "lightgbm" in fitted:
        explainer = fitted["lightgbm"]
    else:
        explainer = Classifier("lightgbm", params.get("lightgbm"), random_state).fit(
            sample.X, sample.y, validation.X, validation.y
        )
    test_cal: dict[str, float] = {}
    chart: dict[str, Any] = {}
    if test is not None:
        p = calibrator(model.predict_proba(test.X))
        test_cal = classification_metrics(test.y, p)
        chart = curves(test.y, p)
    return Comparison(
        metrics, best, select, model, calibrator, explainer, test_cal, chart, notes, seconds
    )


def to_arrays(
    model: Classifier, calibrator: Calibrator, explainer: Classifier
) -> dict[str, np.ndarray]:
    """The model, its calibrator and its explainer as one set of named arrays (no pickle)."""
    state = {f"model_{k}": v for k, v in model.to_state().items()}
    state.update(calibrator.to_state())
    if explainer is not model:
        state.update({f"explainer_{k}": v for k, v in explainer.to_state().items()})
    return state


def from_arrays(state: dict[str, np.ndarray]) -> tuple[Classifier, Calibrator, Classifier]:
    """What :func:`to_arrays` wrote: the model, its calibrator and its explainer."""
    model = Classifier.from_state(
        {k.removeprefix("model_"): v for k, v in state.items() if k.startswith("model_")}
    )
    explainer = model
    if any(k.startswith("explainer_") for k in state):
        explainer = Classifier.from_state(
            {
                k.removeprefix("explainer_"): v
                for k, v in state.items()
                if k.startswith("explainer_")
            }
        )
    return model, Calibrator.from_state(state), explainer


def save_npz(path: Any, model: Classifier, calibrator: Calibrator, explainer: Classifier) -> None:
    """The model, its calibrator and its explainer in one ``.npz`` file."""
    buffer = io.BytesIO()
    np.savez(buffer, **to_arrays(model, calibrator, explainer))
    path.write_bytes(buffer.getvalue())


def load_npz(path: Any) -> tuple[Classifier, Calibrator, Classifier]:
    """What :func:`save_npz` wrote."""
    with np.load(path, allow_pickle=False) as z:
        return from_arrays({k: z[k] for k in z.files})
