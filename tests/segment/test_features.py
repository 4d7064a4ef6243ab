"""The feature pipeline on hand-made matrices: which columns get log1p, robust scaling and its
std fallback, constant features, missing values, PCA, storing the fitted pipeline; and the SQL
that selects features from the profiles (fills, derived features, unknown and repeated names)."""

from __future__ import annotations

import io

import duckdb
import numpy as np
import pytest
from sklearn.decomposition import PCA

from jingzhun.errors import InputError
from jingzhun.segment.features import (
    DERIVED,
    NEEDS,
    FeaturePipeline,
    from_npz,
    numeric_traits,
    select_sql,
    to_npz,
)

N = 2000


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _iqr(values: np.ndarray) -> float:
    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 - q1)


@pytest.fixture(scope="module")
def mixed() -> tuple[list[str], np.ndarray, list[bool]]:
    """Columns of known shape and whether each should get log1p."""
    rng = _rng(1)
    money = rng.lognormal(3.0, 1.0, N)  # non-negative, right-skewed
    normal = rng.normal(50.0, 5.0, N)  # symmetric
    shifted = rng.lognormal(0.0, 1.0, N) - 3.0  # right-skewed but negative values
    left = money.max() - money  # non-negative, left-skewed
    counts = rng.poisson(0.4, N).astype(float)  # a count most users have at 0 or 1: skewed
    uniform = rng.uniform(0.0, 1.0, N)  # non-negative, not skewed
    X = np.column_stack([money, normal, shifted, left, counts, uniform])
    names = ["money", "normal", "shifted", "left", "counts", "uniform"]
    return names, X, [True, False, False, False, True, False]


# -- log1p ------------------------------------------------------------------------------------


def test_log1p_goes_exactly_to_skewed_non_negative_columns(mixed) -> None:
    names, X, expected = mixed
    pipe = FeaturePipeline(names).fit(X)
    assert pipe.log_.tolist() == expected
    assert pipe.describe()["log1p"] == [n for n, e in zip(names, expected, strict=True) if e]
    # the transform is log1p then (value - median) / IQR, computed here independently
    Z = pipe.transform(X)
    for j, logged in enumerate(expected):
        col = np.log1p(X[:, j]) if logged else X[:, j]
        q1, med, q3 = np.percentile(col, [25, 50, 75])
        scale = q3 - q1 if q3 - q1 > 1e-12 else col.std()
        np.testing.assert_allclose(Z[:, j], (col - med) / scale, rtol=1e-12, atol=1e-12)


def test_log1p_decision_is_kept_for_new_rows(mixed) -> None:
    names, X, _ = mixed
    pipe = FeaturePipeline(names).fit(X)
    # a new user with a negative value in a logged column is clipped at 0, not NaN
    row = X[:1].copy()
    row[0, 0] = -5.0
    z = pipe.transform(row)
    assert np.isfinite(z).all()
    assert z[0, 0] == pytest.approx((np.log1p(0.0) - pipe.center_[0]) / pipe.scale_[0])


# -- scaling ----------------------------------------------------------------------------------


def test_robust_scaling_gives_median_0_and_iqr_1(mixed) -> None:
    names, X, logged = mixed
    Z = FeaturePipeline(names).fit_transform(X)
    for j in range(X.shape[1]):
        if _iqr(np.log1p(X[:, j]) if logged[j] else X[:, j]) > 0:
            assert np.median(Z[:, j]) == pytest.approx(0.0, abs=1e-9), names[j]
            assert _iqr(Z[:, j]) == pytest.approx(1.0, abs=1e-9), names[j]


def test_std_is_the_scale_where_the_iqr_is_0() -> None:
    rng = _rng(2)
    rare = np.zeros(N)
    rare[: N // 10] = rng.lognormal(1.0, 0.5, N // 10)  # 90 % of users at 0
    other = rng.normal(size=N)
    X = np.column_stack([rare, other])
    pipe = FeaturePipeline(["rare", "other"]).fit(X)
    assert pipe.log_.tolist() == [True, False]
    logged = np.log1p(rare)
    assert _iqr(logged) == 0
    assert pipe.center_[0] == 0.0
    assert pipe.scale_[0] == pytest.approx(logged.std(), rel=1e-12)
    Z = pipe.transform(X)
    assert Z[:, 0].std() == pytest.approx(1.0, rel=1e-9)
    assert pipe.scale_[1] == pytest.approx(_iqr(other), rel=1e-12)


@pytest.mark.parametrize(("column", "value"), [(0, 7.0), (1, 0.0), (2, -3.5)])
def test_a_constant_feature_is_an_input_error_naming_it(column: int, value: float) -> None:
    names = ["tenure_days", "aov", "hour_sin"]
    X = _rng(3).lognormal(size=(300, 3))
    X[:, column] = value
    with pytest.raises(InputError) as err:
        FeaturePipeline(names).fit(X)
    msg = str(err.value)
    assert f"'{names[column]}'" in msg
    assert "constant" in msg
    assert f"{value:g}" in msg
    assert "--features" in msg
    assert err.value.exit_code == 2
    assert "\n" not in msg


def test_a_feature_missing_for_everyone_is_constant_at_0() -> None:
    X = _rng(4).normal(size=(100, 2))
    X[:, 1] = np.nan
    with pytest.raises(InputError, match=r"'b' is constant \(every user has 0\)"):
        FeaturePipeline(["a", "b"]).fit(X)


def test_the_wrong_number_of_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="columns"):
        FeaturePipeline(["a", "b", "c"]).fit(np.ones((10, 2)))


# -- missing values ---------------------------------------------------------------------------


def test_nan_counts_as_0_in_fit_and_transform(mixed) -> None:
    names, X, _ = mixed
    holes = X.copy()
    rng = _rng(5)
    holes[rng.random(X.shape) < 0.1] = np.nan
    zeros = np.nan_to_num(holes, nan=0.0)
    a = FeaturePipeline(names).fit(holes)
    b = FeaturePipeline(names).fit(zeros)
    assert a.log_.tolist() == b.log_.tolist()
    np.testing.assert_array_equal(a.center_, b.center_)
    np.testing.assert_array_equal(a.scale_, b.scale_)
    np.testing.assert_array_equal(a.transform(holes), a.transform(zeros))
    assert np.isfinite(a.transform(holes)).all()
    row = np.full(len(names), np.nan)
    np.testing.assert_array_equal(a.transform(row), a.transform(np.zeros(len(names))))


# -- PCA --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def correlated() -> tuple[list[str], np.ndarray]:
    """Eight columns driven by three latent factors plus a little noise."""
    rng = _rng(6)
    latent = rng.normal(size=(N, 3))
    mix = rng.normal(size=(3, 8))
    X = latent @ mix + 0.05 * rng.normal(size=(N, 8))
    return [f"f{i}" for i in range(8)], X


def test_pca_with_a_fraction_keeps_the_fewest_components_reaching_it(correlated) -> None:
    names, X = correlated
    pipe = FeaturePipeline(names, pca=0.9).fit(X)
    scaled = FeaturePipeline(names).fit_transform(X)
    ratios = PCA(svd_solver="full").fit(scaled).explained_variance_ratio_
    want = int(np.searchsorted(np.cumsum(ratios), 0.9) + 1)
    assert want < len(names)
    assert pipe.components_.shape == (want, len(names))
    assert pipe.explained_.sum() >= 0.9
    Z = pipe.transform(X)
    assert Z.shape == (N, want)
    assert pipe.output_names == [f"pc{i + 1}" for i in range(want)]
    d = pipe.describe()
    assert d["pca_components"] == want
    assert d["pca_explained"] == pytest.approx(float(ratios[:want].sum()), abs=1e-4)
    # the components are uncorrelated, in decreasing order of variance
    cov = np.cov(Z, rowvar=False)
    assert np.allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-8)
    assert np.all(np.diff(np.diag(cov)) <= 1e-9)


@pytest.mark.parametrize("n", [1, 2, 8])
def test_pca_with_a_number_keeps_that_many_components(correlated, n: int) -> None:
    names, X = correlated
    pipe = FeaturePipeline(names, pca=n).fit(X)
    assert pipe.transform(X).shape == (N, n)
    assert len(pipe.explained_) == n
    assert pipe.describe()["pca_components"] == n
    without = FeaturePipeline(names).fit(X)
    assert without.output_names == names
    assert "pca_components" not in without.describe()


@pytest.mark.parametrize("pca", [0.0, 1.0, 1.5, -0.2, float("nan"), 0, -1, 9])
def test_bad_pca_values_are_input_errors(correlated, pca: float | int) -> None:
    names, X = correlated
    with pytest.raises(InputError) as err:
        FeaturePipeline(names, pca=pca).fit(X)
    assert str(err.value).startswith(f"--pca {pca}")
    assert "1 to 8" in str(err.value)
    assert err.value.exit_code == 2


# -- storing a fitted pipeline -----------------------------------------------------------------


@pytest.mark.parametrize("pca", [None, 0.8, 3])
def test_arrays_round_trip_gives_an_identical_transform(correlated, pca) -> None:
    names, X = correlated
    X = np.abs(X) ** 2  # some skew, so that log1p is in play
    pipe = FeaturePipeline(names, pca=pca).fit(X)
    assert pipe.log_.any()
    again = FeaturePipeline.from_arrays(names, pipe.arrays())
    np.testing.assert_array_equal(again.transform(X), pipe.transform(X))
    assert again.output_names == pipe.output_names
    # and through .npz bytes, as a run stores it
    blob = to_npz(pipe.arrays())
    assert isinstance(blob, bytes)
    arrays = from_npz(blob)
    assert set(arrays) == set(pipe.arrays())
    assert arrays["log"].dtype == bool
    stored = FeaturePipeline.from_arrays(names, arrays)
    np.testing.assert_array_equal(stored.transform(X), pipe.transform(X))
    np.testing.assert_array_equal(stored.transform(X[7]), pipe.transform(X[7:8]))


def test_npz_keeps_string_arrays_and_refuses_pickles() -> None:
    arrays = {
        "kind": np.array("centroid"),
        "points": np.arange(6.0).reshape(3, 2),
        "segment_of": np.array([0, 1, 1]),
    }
    back = from_npz(to_npz(arrays))
    assert str(back["kind"]) == "centroid"
    np.testing.assert_array_equal(back["points"], arrays["points"])
    np.testing.assert_array_equal(back["segment_of"], arrays["segment_of"])
    buf = io.BytesIO()
    np.savez(buf, evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        from_npz(buf.getvalue())


# -- selecting features from the profiles -------------------------------------------------------

COLUMNS = {
    "user_id": "VARCHAR",
    "frequency": "BIGINT",
    "monetary": "DOUBLE",
    "aov": "DOUBLE",
    "recency_days": "BIGINT",
    "tenure_days": "BIGINT",
    "sessions": "BIGINT",
    "n_product_viewed": "BIGINT",
    "preferred_hour": "BIGINT",
    "preferred_channel": "VARCHAR",
    "category_affinity": "MAP(VARCHAR, DOUBLE)",
    "price": "DECIMAL(18,2)",
}


def test_numeric_traits_are_numeric_columns_and_derivable_features() -> None:
    names = numeric_traits(COLUMNS)
    assert "user_id" not in names and "preferred_channel" not in names
    assert "category_affinity" not in names
    assert {"frequency", "monetary", "aov", "price"} <= set(names)
    assert set(DERIVED) <= set(names)  # every input of every derived feature is there
    few = {"user_id": "VARCHAR", "frequency": "BIGINT", "tenure_days": "BIGINT"}
    derived = [n for n in numeric_traits(few) if n in DERIVED]
    assert derived == [d for d in DERIVED if set(NEEDS[d]) <= set(few)] == ["orders_per_month"]


@pytest.mark.parametrize(
    ("features", "needle", "suggestion"),
    [
        (["aov", "monetry"], "'monetry'", "did you mean 'monetary'?"),
        (["frequncy"], "'frequncy'", "did you mean 'frequency'?"),
        (["xyzzy"], "'xyzzy'", None),
        (["preferred_channel"], "'preferred_channel'", "did you mean 'preferred_hour'?"),
        (["user_id"], "'user_id'", None),
    ],
)
def test_select_sql_unknown_feature(features, needle: str, suggestion: str | None) -> None:
    with pytest.raises(InputError) as err:
        select_sql(features, COLUMNS)
    msg = err.value.message
    assert msg.startswith("--features: unknown or non-numeric trait")
    assert needle in msg
    if suggestion:
        assert suggestion in msg
    else:
        assert "did you mean" not in msg
    assert err.value.hint.startswith("choose from: ")
    assert "monetary" in err.value.hint and "orders_per_month" in err.value.hint
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("features", "dup"),
    [(["aov", "aov"], "aov"), (["frequency", "hour_sin", "monetary", "hour_sin"], "hour_sin")],
)
def test_select_sql_named_twice(features: list[str], dup: str) -> None:
    with pytest.raises(InputError, match=rf"--features: '{dup}' is named twice"):
        select_sql(features, COLUMNS)


def test_select_sql_fills_missing_values_and_derives_features() -> None:
    con = duckdb.connect()
    con.execute(
        """
        CREATE TABLE profiles (user_id VARCHAR, frequency BIGINT, monetary DOUBLE, aov DOUBLE,
            recency_days BIGINT, tenure_days BIGINT, sessions BIGINT, n_product_viewed BIGINT,
            preferred_hour BIGINT, preferred_channel VARCHAR,
            category_affinity MAP(VARCHAR, DOUBLE), price DECIMAL(18,2))
        """
    )
    con.execute(
        """
        INSERT INTO profiles VALUES
        ('b', 3, 90.0, 30.0, 5, 90, 6, 12, 18, 'web', MAP {'home': 0.75, 'beauty': 0.25}, 9.5),
        ('a', 0, NULL, NULL, NULL, 10, 0, 0, NULL, NULL, NULL, NULL)
        """
    )
    feats = [
        "recency_days",
        "aov",
        "orders_per_month",
        "recency_share",
        "views_per_session",
        "affinity_concentration",
        "hour_sin",
        "hour_cos",
        "sessions_per_month",
    ]
    rows = con.execute(select_sql(feats, COLUMNS)).fetchall()
    assert [r[0] for r in rows] == ["a", "b"]  # ordered by user
    a, b = (dict(zip(["user_id", *feats], r, strict=True)) for r in rows)
    # a never ordered: recency is their tenure, money 0, and no session gives 0 views per session
    assert a["recency_days"] == 10.0
    assert a["aov"] == 0.0
    assert a["orders_per_month"] == 0.0
    assert a["recency_share"] == 1.0
    assert a["views_per_session"] == 0.0
    assert a["affinity_concentration"] == 0.0
    assert a["hour_sin"] == pytest.approx(0.0, abs=1e-12)  # no hour: noon
    assert a["hour_cos"] == pytest.approx(-1.0)
    assert b["recency_days"] == 5.0
    assert b["orders_per_month"] == pytest.approx(3 * 30 / 90)
    assert b["sessions_per_month"] == pytest.approx(6 * 30 / 90)
    assert b["recency_share"] == pytest.approx(5 / 90)
    assert b["views_per_session"] == pytest.approx(2.0)
    assert b["affinity_concentration"] == pytest.approx(0.75)
    assert b["hour_sin"] == pytest.approx(np.sin(2 * np.pi * 18 / 24))
    assert b["hour_cos"] == pytest.approx(np.cos(2 * np.pi * 18 / 24))
    assert all(isinstance(r[i], float) for r in rows for i in range(1, len(feats) + 1))
    # a tenure under a month counts as one month
    con.execute("UPDATE profiles SET tenure_days = 3, frequency = 2 WHERE user_id = 'a'")
    (opm,) = con.execute(select_sql(["orders_per_month"], COLUMNS)).fetchall()[0][1:]
    assert opm == pytest.approx(2.0)
