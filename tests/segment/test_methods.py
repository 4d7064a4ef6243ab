"""Clustering methods on well-separated synthetic blobs: automatic k, agreement with the truth,
stored models that reproduce the labels, noise, the knee rule, quality and stability, errors and
determinism."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from jingzhun.errors import InputError
from jingzhun.segment import methods as M

CENTERS = 4
K_AUTO = ("kmeans", "minibatch-kmeans", "hierarchical", "som")
DENSITY = ("dbscan", "hdbscan")
ALL = (*K_AUTO, "gmm", *DENSITY)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small fits run fastest on one OpenMP/BLAS thread (idle worker threads spin and compete
    for the two cores); the results do not depend on it."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(
        n_samples=1200, centers=CENTERS, n_features=12, cluster_std=1.0, random_state=7
    )
    return X, y


@pytest.fixture(scope="module")
def auto(blobs) -> dict[str, M.Fit]:
    """Every method fitted once on the blobs with its automatic choices (k, eps …)."""
    X, _ = blobs
    return {m: M.fit(m, X, k=None, random_state=0) for m in ALL}


def _far(X: np.ndarray) -> np.ndarray:
    return X.mean(axis=0) + 1000.0


# -- finding the blobs ------------------------------------------------------------------------


@pytest.mark.parametrize("method", K_AUTO)
def test_auto_k_chooses_the_four_blobs(auto, blobs, method: str) -> None:
    _, y = blobs
    fit = auto[method]
    assert fit.params["k"] == CENTERS
    assert adjusted_rand_score(y, fit.labels) > 0.9
    assert fit.labels.dtype == np.int64
    assert sorted(np.unique(fit.labels)) == list(range(CENTERS))
    # the scan covers the default range and picks the best silhouette
    assert [r["k"] for r in fit.scan] == list(range(2, 11))
    best = max(fit.scan, key=lambda r: r["silhouette"])
    assert best["k"] == CENTERS
    for row in fit.scan:
        assert {"silhouette", "calinski_harabasz", "davies_bouldin"} <= set(row)


def test_gmm_chooses_four_components_by_bic(auto, blobs) -> None:
    _, y = blobs
    fit = auto["gmm"]
    assert fit.params["k"] == CENTERS
    assert fit.params["covariance"] == "full"
    bic = {r["k"]: r["bic"] for r in fit.scan}
    assert sorted(bic) == list(range(2, 11))
    assert min(bic, key=bic.get) == CENTERS
    assert adjusted_rand_score(y, fit.labels) > 0.9
    assert str(fit.model["kind"]) == "gmm"
    assert fit.model["weights"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("method", DENSITY)
def test_density_methods_find_the_blobs_with_little_noise(auto, blobs, method: str) -> None:
    _, y = blobs
    fit = auto[method]
    noise = fit.labels == -1
    assert noise.mean() < 0.05
    assert len(np.unique(fit.labels[~noise])) == CENTERS
    assert adjusted_rand_score(y[~noise], fit.labels[~noise]) > 0.9
    assert adjusted_rand_score(y, fit.labels) > 0.9
    assert "radius" in fit.model


def test_dbscan_eps_is_the_knee_of_the_k_distance_curve(auto, blobs) -> None:
    X, _ = blobs
    params = auto["dbscan"].params
    ms = params["min_samples"]
    assert ms == max(10, 2 * X.shape[1])
    dist, _ = NearestNeighbors(n_neighbors=ms).fit(X).kneighbors(X)
    kd = np.sort(dist[:, -1])
    assert params["eps"] == pytest.approx(kd[M.knee(kd)], abs=1e-6)
    assert float(auto["dbscan"].model["radius"]) == pytest.approx(params["eps"], abs=1e-6)


# -- assigning with the stored model ------------------------------------------------------------


@pytest.mark.parametrize("method", ALL)
def test_assign_reproduces_the_training_labels(auto, blobs, method: str) -> None:
    X, _ = blobs
    fit = auto[method]
    again = M.assign(fit.model, X)
    assert again.dtype == np.int64
    if method in ("kmeans", "minibatch-kmeans"):
        np.testing.assert_array_equal(again, fit.labels)
    else:
        assert (again == fit.labels).mean() >= 0.98


@pytest.mark.parametrize("method", ALL)
def test_a_single_row_is_assigned_as_in_a_batch(auto, blobs, method: str) -> None:
    X, _ = blobs
    model = auto[method].model
    rows = np.vstack([X[::40], _far(X)])
    batch = M.assign(model, rows)
    single = np.array([M.assign(model, r)[0] for r in rows])
    np.testing.assert_array_equal(single, batch)
    # chunking the batch does not change it either
    np.testing.assert_array_equal(M.assign(model, rows, chunk=7), batch)


@pytest.mark.parametrize("method", DENSITY)
def test_a_far_away_point_is_noise_for_density_models(auto, blobs, method: str) -> None:
    X, _ = blobs
    model = auto[method].model
    assert M.assign(model, _far(X)).tolist() == [-1]
    assert M.assign(model, np.vstack([_far(X), -_far(X), X[0]]))[:2].tolist() == [-1, -1]


@pytest.mark.parametrize("method", [*K_AUTO, "gmm"])
def test_a_far_away_point_still_gets_a_segment_without_noise(auto, blobs, method) -> None:
    X, _ = blobs
    assert M.assign(auto[method].model, _far(X))[0] in range(CENTERS)


@pytest.mark.parametrize("method", ["hierarchical", "dbscan", "hdbscan"])
def test_users_outside_the_fitting_sample_are_labelled_by_the_model(
    blobs, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = blobs
    monkeypatch.setitem(M.SAMPLE, method, 400)
    fit = M.fit(method, X, random_state=1, **({"k": CENTERS} if method == "hierarchical" else {}))
    assert fit.params["sample"] == 400
    assert len(fit.labels) == len(X)
    assert adjusted_rand_score(y, fit.labels) > 0.9
    # the sample (drawn first from the run's random generator) keeps the method's own labels;
    # every other user gets the model's
    sample = M._sample(X, 400, np.random.default_rng(1))
    outside = np.setdiff1d(np.arange(len(X)), sample)
    again = M.assign(fit.model, X)
    np.testing.assert_array_equal(again[outside], fit.labels[outside])
    assert (again[sample] == fit.labels[sample]).mean() >= 0.98


# -- the knee ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 1, 1, 1, 1, 1, 1, 1, 10, 20], 7),
        ([20, 1, 10, 1, 1, 1, 1, 1, 1, 1], 7),  # the curve is sorted first
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 30, 60, 100], 10),
        ([0.0, 0.1, 0.2, 5.0], 2),
        ([3, 3, 3, 3], 3),  # flat: the last point
    ],
)
def test_knee_of_a_hand_made_curve(values: list[float], expected: int) -> None:
    assert M.knee(np.array(values)) == expected


# -- quality and stability ---------------------------------------------------------------------


def test_quality_leaves_noise_out(blobs) -> None:
    X, y = blobs
    labels = y.astype(np.int64).copy()
    labels[:120] = -1
    q = M.quality(X, labels, np.random.default_rng(0))
    assert q["noise_share"] == pytest.approx(0.1)
    keep = labels >= 0
    assert q["silhouette"] == pytest.approx(silhouette_score(X[keep], labels[keep]), abs=1e-4)
    assert q["calinski_harabasz"] > 0
    assert q["davies_bouldin"] > 0
    one = M.quality(X, np.where(keep, 0, -1), np.random.default_rng(0))
    assert np.isnan(one["silhouette"])
    assert "calinski_harabasz" not in one


def test_stability_is_high_for_real_segments_and_near_0_for_chance(auto, blobs) -> None:
    X, _ = blobs
    fit = auto["kmeans"]
    stable = M.stability("kmeans", X, fit.labels, fit.params, resamples=3, size=800)
    assert 0.99 <= stable <= 1.0
    shuffled = np.random.default_rng(0).permutation(fit.labels)
    chance = M.stability("kmeans", X, shuffled, fit.params, resamples=2, size=800)
    assert abs(chance) < 0.05


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["spectral", "rfm", "KMeans", ""])
def test_an_unknown_method_is_an_input_error(blobs, method: str) -> None:
    X, _ = blobs
    with pytest.raises(InputError, match=rf"--method '{method}' is not a clustering method"):
        M.fit(method, X)


@pytest.mark.parametrize("method", ALL)
def test_too_few_users(blobs, method: str) -> None:
    X, _ = blobs
    need = M.MIN_USERS[method]
    with pytest.raises(InputError, match=rf"needs at least {need} users.*has {need - 1}"):
        M.fit(method, X[: need - 1])


@pytest.mark.parametrize("k", [0, 1, 30, 31, 100])
@pytest.mark.parametrize("method", ["kmeans", "hierarchical", "gmm"])
def test_k_out_of_range(blobs, method: str, k: int) -> None:
    X, _ = blobs
    with pytest.raises(InputError, match=rf"--k {k}: must be between 2 and .* \(29\)"):
        M.fit(method, X[:30], k=k)


def test_the_largest_k_is_one_less_than_the_users(blobs) -> None:
    X, _ = blobs
    fit = M.fit("kmeans", X[:12], k=11)
    assert len(np.unique(fit.labels)) == 11


@pytest.mark.parametrize("k_range", [(1, 5), (0, 3), (6, 3), (-2, 4)])
def test_a_bad_k_range(blobs, k_range: tuple[int, int]) -> None:
    X, _ = blobs
    with pytest.raises(InputError, match=rf"--k-range {k_range[0]}-{k_range[1]}"):
        M.fit("kmeans", X, k_range=k_range)


@pytest.mark.parametrize(
    ("method", "k_range"), [("kmeans", (40, 50)), ("hierarchical", (40, 50)), ("gmm", (7, 9))]
)
def test_a_k_range_beyond_the_users_is_an_input_error(blobs, method, k_range) -> None:
    X, _ = blobs
    with pytest.raises(InputError, match="--k-range"):
        M.fit(method, X[:30], k_range=k_range)


# -- determinism and consistency ----------------------------------------------------------------


@pytest.mark.parametrize("method", ALL)
def test_the_same_random_state_gives_the_same_segments(blobs, method: str) -> None:
    X, _ = blobs
    k = {"k": CENTERS} if method in M.K_METHODS else {}
    a = M.fit(method, X, random_state=5, **k)
    b = M.fit(method, X, random_state=5, **k)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.params == b.params
    assert set(a.model) == set(b.model)
    for key in a.model:
        np.testing.assert_array_equal(a.model[key], b.model[key])


@pytest.fixture(scope="module")
def two_far_blobs() -> np.ndarray:
    """Two tight blobs far apart: most of a large SOM grid lies in the empty space between."""
    X, _ = make_blobs(
        n_samples=600,
        centers=2,
        n_features=4,
        cluster_std=0.3,
        center_box=(-50, 50),
        random_state=1,
    )
    return X


@pytest.mark.parametrize(
    "method",
    [
        "kmeans",
        "minibatch-kmeans",
        "hierarchical",
        "som",
    ],
)
def test_every_segment_of_the_model_has_members(two_far_blobs, method: str) -> None:
    fit = M.fit(method, two_far_blobs, k=12, random_state=0)
    used = set(np.unique(fit.labels).tolist())
    assert used == set(np.unique(fit.model["segment_of"]).tolist())
    assert fit.params["k"] == len(used)


def test_som_reports_its_grid_and_errors(auto) -> None:
    fit = auto["som"]
    side = fit.params["grid"][0]
    assert fit.params["grid"] == [side, side]
    assert 5 <= side <= 15
    assert len(fit.model["points"]) == side * side
    assert np.array(fit.extra["umatrix"]).shape == (side, side)
    assert np.array(fit.extra["hits"]).sum() == fit.params["sample"]
    assert 0 <= fit.extra["topographic_error"] <= 1
    assert fit.extra["quantization_error"] > 0


# -- sizes bounded by the users fitted (issue 12) ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        # these reached scikit-learn and ended in a ValueError traceback
        ("dbscan", {"min_samples": 100_000}, "--min-samples must be between 2 and 1,200, not"),
        ("hdbscan", {"min_samples": 100_000}, "--min-samples must be between 2 and 1,200, not"),
        ("dbscan", {"min_samples": 1_201}, "--min-samples must be between 2 and 1,200, not"),
        ("hdbscan", {"min_cluster_size": 5_000}, "--min-cluster-size must be between 2 and 1,200"),
        # 100 x 100 nodes for 1,200 users: most nodes hold no one, and it trains for minutes
        ("som", {"grid": 100}, "--grid must be between 2 and 34, not 100"),
    ],
)
def test_sizes_beyond_the_users_fitted_are_refused_before_any_work(
    blobs, method: str, options: dict, message: str
) -> None:
    X, _ = blobs
    with pytest.raises(InputError) as err:
        M.fit(method, X, **options)
    assert str(err.value).startswith(message), str(err.value)


def test_sizes_at_the_bound_are_fitted(blobs) -> None:
    X, _ = blobs
    assert M.fit("som", X, k=4, grid=34).params["grid"] == [34, 34]
    fit = M.fit("dbscan", X, eps=1000.0, min_samples=1_200)  # one dense region: everyone
    assert fit.params["min_samples"] == 1_200 and (fit.labels == 0).all()


def test_stability_refits_a_density_model_whatever_its_min_samples(blobs) -> None:
    """The bootstrap resamples hold at least min_samples users, so a run whose main fit
    worked does not fail in its stability refits."""
    X, _ = blobs
    fit = M.fit("dbscan", X, eps=1000.0, min_samples=300)
    ari = M.stability("dbscan", X, fit.labels, fit.params, resamples=1, size=200)
    assert ari == 1.0
