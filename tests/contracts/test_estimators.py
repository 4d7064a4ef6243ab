"""One contract for every registered model of every family (issue 13).

Segment methods, propensity/churn classifiers, uplift learners, CLV models and recommenders
each go through the same suite: construct with defaults, fit on a small fixture, predict,
save as ``.npz`` (written to disk and read back without pickle), predict again identically;
refuse an unknown parameter (naming it and listing the valid ones), a parameter out of its
range, and wrongly shaped input (a wrong number of columns, NaN, nothing at all) with a clear
message. A :class:`Case` adapts each family's calling conventions to the suite; the
recommenders' own, richer suite is ``tests/recommend/test_models.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_blobs
from threadpoolctl import threadpool_limits

from jingzhun.contracts.estimator import Estimator, Param
from jingzhun.contracts.models import CLASSIFIERS
from jingzhun.errors import InputError
from jingzhun.predict.clv import CLV_MODELS, CLVModel, PurchaseModel
from jingzhun.predict.propensity import Classifier
from jingzhun.predict.uplift_learners import UPLIFT_MODELS, UpliftModel
from jingzhun.recommend.data import Interactions, ItemFeatures, Vocabulary
from jingzhun.recommend.models import MODELS, Recommender, load
from jingzhun.segment.methods import ESTIMATORS, METHODS, Method

DATA = Path(__file__).resolve().parents[1] / "data" / "cdnow_summary.csv"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small fits run fastest on one BLAS/OpenMP thread; the results do not depend on it."""
    with threadpool_limits(limits=1):
        yield


# -- fixtures: one small data set per family ----------------------------------------------------


def blobs() -> np.ndarray:
    """120 users in three separated groups, four features (enough for every method's
    minimum of users)."""
    X, _ = make_blobs(n_samples=120, centers=3, n_features=4, cluster_std=0.6, random_state=0)
    return X


def labelled(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four skewed, non-negative features (as profiles are) and a label that depends on two."""
    rng = np.random.default_rng(seed)
    X = rng.lognormal(0.0, 1.0, size=(n, 4))
    y = (np.log(X[:, 0]) - 0.5 * np.log(X[:, 1]) + rng.normal(size=n) > 0).astype(np.int8)
    return X, y


def campaign(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A randomized campaign whose message helps users with a high first feature."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    t = (rng.random(n) < 0.5).astype(np.int8)
    p = 0.2 + 0.1 * (X[:, 1] > 0) + t * 0.15 * (X[:, 0] > 0)
    return X, t, (rng.random(n) < p).astype(np.int8)


def customers() -> pd.DataFrame:
    """500 CDNOW customers: x, t_x, T and the mean repeat spend zbar."""
    return pd.read_csv(DATA).iloc[:500]


ITEMS = [f"i{i:02d}" for i in range(20)]


def interactions(weights: float = 1.0, *, empty: bool = False) -> Interactions:
    """40 users in two groups, each buying within its own half of 20 items."""
    rng = np.random.default_rng(0)
    rows = [
        (f"u{g}{u:02d}", ITEMS[int(i) + 10 * g], float(rng.choice([1.0, 3.0])) * weights)
        for g in range(2)
        for u in range(20)
        for i in rng.choice(10, 4, replace=False)
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "weight"])
    if empty:
        frame = frame.iloc[:0]
    return Interactions.from_frame(frame, weight_col="weight", items=ITEMS)


def item_features() -> ItemFeatures:
    half = [i < 10 for i in range(len(ITEMS))]
    catalog = pd.DataFrame(
        {
            "item_id": ITEMS,
            "title": [("green tea " if h else "steel pan ") + str(i) for i, h in enumerate(half)],
            "category": ["tea" if h else "cookware" for h in half],
            "brand": ["leaf" if h else "iron" for h in half],
            "price": np.linspace(5, 50, len(ITEMS)),
        }
    )
    return ItemFeatures.from_frame(catalog, Vocabulary(ITEMS))


# -- the families ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One registered model and how the suite calls it.

    ``make(**params)`` constructs it; ``fit``/``predict`` run it on the family's fixture;
    ``save``/``load`` write and read a ``.npz``; ``specs`` are its declared parameters;
    ``wrong_columns``, ``nan`` and ``empty`` give it bad input (the first a fitted model, the
    others a new one), each refused with an :class:`InputError` whose message holds the
    matching entry of ``messages``.
    """

    family: str
    name: str
    make: Callable[..., Any]
    specs: Mapping[str, Param]
    fit: Callable[[Any], Any]
    predict: Callable[[Any], Any]
    save: Callable[[Any, Path], None]
    load: Callable[[Path], Any]
    wrong_columns: Callable[[Any], Any]
    nan: Callable[[Any], Any]
    empty: Callable[[Any], Any]
    messages: Mapping[str, str] = field(default_factory=dict)
    #: Parameters the fit-and-predict steps use (small and single-threaded, so that the
    #: suite is fast and its answers are exact); construction is checked with the defaults.
    small: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.family}:{self.name}"


def _save_state(model: Estimator, path: Path) -> None:
    np.savez(path, **model.to_state())


def _loader(base: type[Estimator]) -> Callable[[Path], Any]:
    """Read the file back through the family's base class: it finds the model's class."""

    def load_state(path: Path) -> Any:
        with np.load(path, allow_pickle=False) as npz:
            return base.from_state(npz)

    return load_state


MATRIX = {
    "wrong_columns": "features, the model was fitted on 4",
    "nan": "NaN or infinite values",
    "empty": "must be a non-empty 2-D matrix",
}


def segment_cases() -> list[Case]:
    X = blobs()
    with_nan = X.copy()
    with_nan[3, 1] = np.nan
    return [
        Case(
            family="segment",
            name=name,
            make=cls,
            specs=cls.PARAMS,
            fit=lambda m: m.fit(X),
            predict=lambda m: m.predict(X),
            save=_save_state,
            load=_loader(Method),
            wrong_columns=lambda m: m.predict(X[:, :3]),
            nan=lambda m: m.fit(with_nan),
            empty=lambda m: m.fit(np.zeros((0, 4))),
            messages=MATRIX,
        )
        for name, cls in ESTIMATORS.items()
    ]


def classifier_cases() -> list[Case]:
    X, y = labelled(600, 0)
    X_val, y_val = labelled(200, 1)
    with_nan = X.copy()
    with_nan[5, 2] = np.nan
    small = {
        "forest": {"params": {"n_estimators": 25, "n_jobs": 1}},
        "lightgbm": {"params": {"n_jobs": 1}},
    }
    return [
        Case(
            family="classifier",
            name=name,
            make=lambda name=name, **params: Classifier(name, **params),
            specs=Classifier.PARAMS,
            fit=lambda m: m.fit(X, y, X_val, y_val),
            predict=lambda m: m.predict_proba(X_val),
            save=_save_state,
            load=_loader(Classifier),
            wrong_columns=lambda m: m.predict_proba(X_val[:, :3]),
            nan=lambda m: m.fit(with_nan, y),
            empty=lambda m: m.fit(np.zeros((0, 4)), np.zeros(0)),
            messages=MATRIX,
            small=small.get(name, {}),
        )
        for name in CLASSIFIERS
    ]


def uplift_cases() -> list[Case]:
    X, t, y = campaign(1500, 0)
    X_new = campaign(300, 1)[0]
    y_nan = y.astype(np.float64)
    y_nan[7] = np.nan
    return [
        Case(
            family="uplift",
            name=name,
            make=cls,
            specs=cls.PARAMS,
            fit=lambda m: m.fit(X, t, y),
            predict=lambda m: m.predict(X_new),
            save=_save_state,
            load=_loader(UpliftModel),
            wrong_columns=lambda m: m.predict(X_new[:, :3]),
            # NaN features are routed by LightGBM (they are allowed); a NaN outcome is not.
            nan=lambda m: m.fit(X, t, y_nan),
            empty=lambda m: m.fit(np.zeros((0, 4)), t[:0], y[:0]),
            messages=MATRIX | {"nan": "`y` has 1 missing or infinite values"},
            small={"params": {"n_jobs": 1, "n_estimators": 40}},
        )
        for name, cls in UPLIFT_MODELS.items()
    ]


def clv_cases() -> list[Case]:
    c = customers()
    x, t_x, T, m = (c[k].to_numpy(np.float64) for k in ("x", "t_x", "T", "zbar"))
    x_nan = x.copy()
    x_nan[4] = np.nan
    messages = {
        "wrong_columns": "must be equal-length, non-empty vectors",
        "nan": "missing or infinite",
        "empty": "must be equal-length, non-empty vectors",
    }
    purchases: dict[str, Callable[[Any], Any]] = {
        "fit": lambda mod: mod.fit(x, t_x, T),
        "predict": lambda mod: mod.predict(39.0, x, t_x, T),
        "wrong_columns": lambda mod: mod.predict(39.0, x, t_x[:-1], T),
        "nan": lambda mod: mod.fit(x_nan, t_x, T),
        "empty": lambda mod: mod.fit(x[:0], t_x[:0], T[:0]),
    }
    spend: dict[str, Callable[[Any], Any]] = {
        "fit": lambda mod: mod.fit(x, m),
        "predict": lambda mod: mod.predict(x, m),
        "wrong_columns": lambda mod: mod.predict(x, m[:-1]),
        "nan": lambda mod: mod.fit(x_nan, m),
        "empty": lambda mod: mod.fit(x[:0], m[:0]),
    }
    return [
        Case(
            family="clv",
            name=name,
            make=cls,
            specs=cls.PARAMS,
            save=_save_state,
            load=_loader(CLVModel),
            messages=messages,
            **(purchases if issubclass(cls, PurchaseModel) else spend),
        )
        for name, cls in CLV_MODELS.items()
    ]


def recommender_cases() -> list[Case]:
    data, features = interactions(), item_features()
    users = np.r_[data.users.ids, ["nobody"]]
    nan_data = interactions(np.nan)
    wrong_history = sp.csr_matrix(np.ones((1, len(ITEMS) - 1), np.float32))
    small = {"als": {"factors": 8, "regularization": 10.0}, "bpr": {"factors": 8}}
    small["hybrid"] = {"component_params": {"als": small["als"]}}

    def save(model: Recommender, path: Path) -> None:
        model.save(path)

    return [
        Case(
            family="recommender",
            name=name,
            make=cls,
            specs=cls.PARAMS,
            fit=lambda mod: mod.fit(data, features=features),
            predict=lambda mod: mod.recommend(users, 5),
            save=save,
            load=load,
            wrong_columns=lambda mod: mod.recommend(["u000"], 5, history=wrong_history),
            nan=lambda mod: mod.fit(nan_data, features=features),
            empty=lambda mod: mod.fit(interactions(empty=True), features=features),
            messages={
                "wrong_columns": "history has shape (1, 19)",
                "nan": "NaN or infinite weights",
                "empty": "no interactions to learn from",
            },
            small=small.get(name, {}),
        )
        for name, cls in MODELS.items()
    ]


CASES = [
    *segment_cases(),
    *classifier_cases(),
    *uplift_cases(),
    *clv_cases(),
    *recommender_cases(),
]
FAMILIES = ("segment", "classifier", "uplift", "clv", "recommender")


def test_every_registered_model_of_every_family_is_in_the_suite() -> None:
    names = {family: {c.name for c in CASES if c.family == family} for family in FAMILIES}
    assert names == {
        "segment": set(ESTIMATORS),
        "classifier": set(CLASSIFIERS),
        "uplift": set(UPLIFT_MODELS),
        "clv": set(CLV_MODELS),
        "recommender": set(MODELS),
    }
    # Every clustering method the CLI offers has an estimator but rfm, which reads tags.
    assert set(METHODS) - set(ESTIMATORS) == {"rfm"}


@pytest.fixture(scope="module")
def fits() -> dict[str, tuple[Any, Any]]:
    """Each case's model fitted once (with its ``small`` parameters) and its predictions."""
    return {}


def fitted(case: Case, fits: dict[str, tuple[Any, Any]]) -> tuple[Any, Any]:
    """The case's fitted model and its predictions (``fit`` returns the model itself)."""
    if case.id not in fits:
        model = case.make(**case.small)
        assert case.fit(model) is model
        fits[case.id] = (model, case.predict(model))
    return fits[case.id]


def assert_same_answers(a: Any, b: Any) -> None:
    """Predictions equal exactly: arrays (NaN where NaN), or recommendations (ids and scores)."""
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
        return
    assert (a.items == b.items).all()
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.cold, b.cold)


def params_of(model: Any) -> dict[str, Any]:
    return model.params if isinstance(model, Recommender) else model.get_params()


# -- the contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_defaults_construct_an_unfitted_model_that_says_so(case: Case) -> None:
    model = case.make()
    for name, spec in case.specs.items():
        if name != "name":  # a classifier's name is the case's, not the spec's default
            assert params_of(model)[name] == spec.check(case.name, name, spec.default)
    assert type(model).__name__ in repr(model)
    with pytest.raises(InputError, match="not fitted"):
        case.predict(model)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fit_predict_save_load_predict_again_identically(
    case: Case, fits: dict[str, tuple[Any, Any]], tmp_path: Path
) -> None:
    model, before = fitted(case, fits)
    path = tmp_path / f"{case.name}.npz"
    case.save(model, path)
    with np.load(path, allow_pickle=False) as npz:  # numbers and text only, no pickle
        assert all(npz[k].dtype != object for k in npz.files)
    back = case.load(path)
    assert type(back) is type(model)
    assert params_of(back) == params_of(model)
    assert_same_answers(before, case.predict(back))
    assert_same_answers(before, case.predict(model))  # predicting changes nothing


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_an_unknown_parameter_is_named_with_the_valid_ones(case: Case) -> None:
    with pytest.raises(InputError) as err:
        case.make(no_such_param=1)
    assert "unknown parameter 'no_such_param'" in err.value.message
    assert case.name in err.value.message
    assert err.value.hint is not None
    for name in case.specs:
        assert name in err.value.hint


def _out_of_range(case: Case) -> tuple[str, Any]:
    """A parameter with a lower bound, and a value below it."""
    name, spec = next((n, p) for n, p in case.specs.items() if p.low is not None)
    return name, spec.kind(spec.low) - 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_parameter_out_of_its_range_is_refused(case: Case) -> None:
    name, value = _out_of_range(case)
    with pytest.raises(InputError, match=name) as err:
        case.make(**{name: value})
    assert "must be" in err.value.message, err.value.message


@pytest.mark.parametrize("bad", ["wrong_columns", "nan", "empty"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_wrongly_shaped_input_is_refused_clearly(
    case: Case, bad: str, fits: dict[str, tuple[Any, Any]]
) -> None:
    model = fitted(case, fits)[0] if bad == "wrong_columns" else case.make(**case.small)
    with pytest.raises(InputError) as err:
        getattr(case, bad)(model)
    assert case.messages[bad] in err.value.message, err.value.message
    assert "\n" not in str(err.value)


# -- what the contract fixed --------------------------------------------------------------------


def test_a_classifier_keeps_its_parameters_through_its_state(tmp_path: Path) -> None:
    """``Classifier.from_state`` dropped the parameters: a loaded forest said it had none."""
    X, y = labelled(400, 2)
    params = {"n_estimators": 15, "min_samples_leaf": 5, "n_jobs": 1}
    model = Classifier("forest", params, random_state=3).fit(X, y)
    np.savez(tmp_path / "forest.npz", **model.to_state())
    with np.load(tmp_path / "forest.npz", allow_pickle=False) as npz:
        back = Classifier.from_state(npz)
    assert back.get_params() == {"name": "forest", "params": params, "random_state": 3}
    assert back.params == params and back.random_state == 3
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))


def test_a_classifier_saved_before_the_contract_still_loads() -> None:
    X, y = labelled(400, 4)
    model = Classifier("logistic").fit(X, y)
    old = {
        "name": np.array("logistic"),
        "random_state": np.array(0),
        "blob": model.to_state()["blob"],
    }
    back = Classifier.from_state(old)
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("option", ["epz", "eps", "grid"])
def test_a_segment_method_refuses_options_it_does_not_have(option: str) -> None:
    """``fit('kmeans', X, epz=0.5)`` ran, silently ignoring the option."""
    from jingzhun.segment.methods import fit

    with pytest.raises(InputError, match=f"kmeans: unknown parameter '{option}'") as err:
        fit("kmeans", blobs(), **{option: 0.5})
    assert err.value.hint == "valid parameters: k, k_range, random_state"


def test_loading_a_state_of_another_family_is_refused() -> None:
    model = ESTIMATORS["kmeans"](k=3).fit(blobs())
    with pytest.raises(InputError, match="saved uplift model is 'kmeans'"):
        UpliftModel.from_state(model.to_state())
    with pytest.raises(InputError, match="not a saved CLV model"):
        CLVModel.from_state({"weights": np.zeros(3)})
