"""Clustering methods over the feature matrix, each an estimator with a model that assigns new
users.

Each method is an :class:`~jingzhun.contracts.estimator.Estimator` registered by its CLI name
in :data:`ESTIMATORS`: the constructor checks its parameters (an unknown one is an error that
lists the valid ones), :meth:`Method.fit` learns ``labels_`` (integer labels, ``-1`` is noise),
``model_`` (the model as plain arrays), ``chosen_`` (the parameters it settled on), ``scan_``
(the scan that chose them) and ``extra_``; :meth:`Method.predict` assigns rows with the model;
``to_state``/``from_state`` save and load it as NumPy arrays. The module-level :func:`fit`
(what segment runs call) builds a method by name and returns its :class:`Fit`.

Assignment without refitting is one of two rules, so it is the same code for every method:

- ``centroid``: the nearest of a set of points (k-means centres, Ward cluster means, SOM
  nodes, DBSCAN/HDBSCAN core points), mapped to its segment; for the density methods a point
  farther than ``radius`` from every core point is noise, as DBSCAN itself would say;
- ``gmm``: the mixture component with the highest posterior.

Methods that cannot scale to every user (Ward, DBSCAN, HDBSCAN, GMM, SOM) are fitted on a
random sample and the rest are assigned by the model, which is also how users who arrive later
are placed. Automatic k: the silhouette on a sample (Calinski–Harabasz and Davies–Bouldin are
reported beside it); for Gaussian mixtures the BIC. RFM segments come from tags, not from a
fitted model (:mod:`jingzhun.segment.runs`), so ``rfm`` has no estimator here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

from jingzhun.checks import MAX_ROWS, bounded_int, shown
from jingzhun.contracts.estimator import Estimator, Param, check_matrix, unknown_parameters
from jingzhun.errors import InputError

METHODS: tuple[str, ...] = (
    "rfm",
    "kmeans",
    "minibatch-kmeans",
    "hierarchical",
    "dbscan",
    "hdbscan",
    "gmm",
    "som",
)

#: The smallest number of users each method can do anything useful with.
MIN_USERS = {
    "kmeans": 10,
    "minibatch-kmeans": 10,
    "hierarchical": 10,
    "gmm": 20,
    "som": 50,
    "dbscan": 50,
    "hdbscan": 50,
}

SILHOUETTE_SAMPLE = 10_000
#: Users each sampled method is fitted on at most (read at fit time).
SAMPLE = {"hierarchical": 10_000, "dbscan": 20_000, "hdbscan": 15_000, "gmm": 20_000, "som": 50_000}
SCAN_SAMPLE = 50_000  # k-means scans k on at most this many users
#: Largest SOM grid side (grid² nodes, each trained on every user).
MAX_GRID = 100


@dataclass
class Fit:
    """What fitting a method gives: labels per user (``-1`` is noise), the model as arrays,
    the parameters it chose, the scan that chose them and method-specific extras."""

    labels: np.ndarray
    model: dict[str, np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)
    scan: list[dict[str, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# -- assignment -----------------------------------------------------------------------------------


def assign(model: dict[str, np.ndarray], X: np.ndarray, *, chunk: int = 65_536) -> np.ndarray:
    """Labels for the rows of ``X`` (already transformed) under a stored model."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    kind = str(model["kind"])
    if kind == "gmm":
        return _gmm_log_prob(model, X).argmax(axis=1).astype(np.int64)
    points, segment_of = model["points"], model["segment_of"]
    radius = float(model["radius"]) if "radius" in model else None
    if len(X) == 1:  # the per-user path: no chunking, no sklearn overhead
        d2 = ((points - X[0]) ** 2).sum(axis=1)
        i = int(d2.argmin())
        if radius is not None and d2[i] > radius**2:
            return np.array([-1])
        return segment_of[[i]].astype(np.int64)
    from sklearn.metrics import pairwise_distances_argmin_min

    out = np.empty(len(X), dtype=np.int64)
    for lo in range(0, len(X), chunk):
        idx, dist = pairwise_distances_argmin_min(X[lo : lo + chunk], points)
        lab = segment_of[idx].astype(np.int64)
        if radius is not None:
            lab[dist > radius] = -1
        out[lo : lo + chunk] = lab
    return out


def _gmm_log_prob(model: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    means, prec_chol, weights = model["means"], model["precisions_cholesky"], model["weights"]
    n, d = X.shape
    out = np.empty((n, len(means)))
    for j, (mu, pc) in enumerate(zip(means, prec_chol, strict=True)):
        y = (X - mu) @ pc
        log_det = np.log(np.diag(pc)).sum()
        out[:, j] = -0.5 * (d * np.log(2 * np.pi) + (y**2).sum(axis=1)) + log_det
    return out + np.log(weights)


def _centroid_model(
    points: np.ndarray, segment_of: np.ndarray, radius: float | None = None
) -> dict[str, np.ndarray]:
    model = {
        "kind": np.array("centroid"),
        "points": np.ascontiguousarray(points, dtype=np.float64),
        "segment_of": np.asarray(segment_of, dtype=np.int64),
    }
    if radius is not None:
        model["radius"] = np.array(float(radius))
    return model


def _means(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return np.vstack([X[labels == j].mean(axis=0) for j in range(k)])


# -- quality --------------------------------------------------------------------------------------


def quality(X: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """Silhouette (on a sample), Calinski–Harabasz and Davies–Bouldin, noise left out."""
    keep = labels >= 0
    Xk, lk = X[keep], labels[keep]
    out: dict[str, float] = {"noise_share": round(float(1 - keep.mean()), 4)}
    if len(np.unique(lk)) < 2:
        return out | {"silhouette": float("nan")}
    if len(Xk) > 200_000:
        pick = rng.choice(len(Xk), 200_000, replace=False)
        Xk, lk = Xk[pick], lk[pick]
    scores = _scan_row(Xk, lk, 0, rng)
    del scores["k"]
    return out | scores


def _silhouette(X: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> float:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    size = min(len(X), SILHOUETTE_SAMPLE)
    seed = int(rng.integers(2**31))
    return float(silhouette_score(X, labels, sample_size=size, random_state=seed))


def _scan_row(X: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator) -> dict:
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    return {
        "k": k,
        "silhouette": round(_silhouette(X, labels, rng), 4),
        "calinski_harabasz": round(float(calinski_harabasz_score(X, labels)), 2),
        "davies_bouldin": round(float(davies_bouldin_score(X, labels)), 4),
    }


def _best_k(scan: list[dict[str, float]], k_range: tuple[int, int], n: int) -> int:
    if not scan:
        raise InputError(
            f"--k-range {k_range[0]}-{k_range[1]}: no k in it can be fitted to {n} users",
            hint="lower the range's minimum or pass --k",
        )
    return int(max(scan, key=lambda r: (r["silhouette"], -r["k"]))["k"])


def _sample(X: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if len(X) <= size:
        return np.arange(len(X))
    return np.sort(rng.choice(len(X), size, replace=False))


def knee(values: np.ndarray) -> int:
    """The knee of an increasing curve: the point farthest below the chord from end to end."""
    y = np.sort(np.asarray(values, dtype=np.float64))
    x = np.linspace(0.0, 1.0, len(y))
    span = y[-1] - y[0]
    if span <= 0:
        return len(y) - 1
    yn = (y - y[0]) / span
    return int(np.argmax(x - yn))


# -- checks that depend on the data ---------------------------------------------------------------


def _check_users(method: str, n: int) -> None:
    need = MIN_USERS[method]
    if n < need:
        raise InputError(
            f"--method {method} needs at least {need} users with profiles; the store has {n}",
            hint="ingest more data or use --method rfm",
        )


def _check_k(k: Any, n: int) -> None:
    value = bounded_int(k, "--k")
    if not 2 <= value <= n - 1:
        raise InputError(
            f"--k {value}: must be between 2 and the number of users minus one ({n - 1})",
            hint="pass a smaller --k or --k auto",
        )


def _check_size(value: int | None, flag: str, fitted: int, hint: str) -> None:
    """A size the fitted users must hold: a core point's neighbours and a smallest cluster
    (scikit-learn raised a ValueError traceback past the users, issue 12), and a SOM grid of
    at most one node per user (100 x 100 nodes for 2,000 users trained for minutes, nearly
    every node empty)."""
    if value is not None:
        bounded_int(value, flag, lo=2, hi=fitted, hint=hint)


# -- the methods ----------------------------------------------------------------------------------


class Method(Estimator):
    """Base of the clustering methods: fit on a transformed feature matrix, assign new rows.

    Parameters
    ----------
    random_state : int, default 0
        Seed of every random choice (samples, initialisations, the k scan).

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> X, _ = make_blobs(n_samples=300, centers=3, n_features=4, random_state=0)
    >>> model = ESTIMATORS["kmeans"](random_state=0).fit(X)
    >>> model.chosen_["k"], len(model.labels_)
    (3, 300)
    >>> ESTIMATORS["kmeans"](epz=0.5)
    Traceback (most recent call last):
    ...
    jingzhun.errors.InputError: kmeans: unknown parameter 'epz'; valid parameters: k, k_range, random_state
    """

    family: ClassVar[str] = "segment method"
    PARAMS: ClassVar[Mapping[str, Param]] = {
        "random_state": Param(0, int, 0, help="seed of every random choice"),
    }
    _fitted: ClassVar[str] = "model_"

    random_state: int

    def fit(self, X: Any) -> Self:
        """Cluster the rows of ``X`` (users × transformed features).

        Returns
        -------
        self
            With ``labels_``, ``model_``, ``chosen_``, ``scan_``, ``extra_`` and
            ``n_features_in_`` set.
        """
        X = check_matrix(X, f"{self.name}.fit")
        n = len(X)
        _check_users(self.name, n)
        self._check_data(n)
        fitted = self._fit(X, np.random.default_rng(self.random_state))
        self.labels_ = fitted.labels
        self.model_ = fitted.model
        self.chosen_ = fitted.params
        self.scan_ = fitted.scan
        self.extra_ = fitted.extra
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Segment labels of the rows of ``X`` (transformed as for fitting) under the model."""
        self._check_fitted()
        return assign(
            self.model_, check_matrix(X, f"{self.name}.predict", n_features=self.n_features_in_)
        )

    def result(self) -> Fit:
        """The fit as a :class:`Fit` (what segment runs store)."""
        self._check_fitted()
        return Fit(self.labels_, self.model_, self.chosen_, self.scan_, self.extra_)

    def _check_data(self, n: int) -> None:
        """Checks of the parameters against the number of users, before any work."""

    def _fit(self, X: np.ndarray, rng: np.random.Generator) -> Fit:
        raise NotImplementedError

    # -- state ------------------------------------------------------------------------------

    def _learned(self) -> dict[str, Any]:
        return {
            "n_features_in": self.n_features_in_,
            "chosen": self.chosen_,
            "scan": self.scan_,
            "extra": self.extra_,
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"labels": self.labels_} | {f"model.{k}": v for k, v in self.model_.items()}

    def _restore(self, learned: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> None:
        model = {
            str(k).removeprefix("model."): np.asarray(state[k])
            for k in state
            if str(k).startswith("model.")
        }
        if "kind" not in model or "labels" not in state:
            raise InputError(
                f"the saved {self.name} model lacks its arrays", hint="fit the method again"
            )
        self.n_features_in_ = int(learned["n_features_in"])
        self.chosen_ = dict(learned["chosen"])
        self.scan_ = list(learned["scan"])
        self.extra_ = dict(learned["extra"])
        self.labels_ = np.asarray(state["labels"])
        self.model_ = model

    @classmethod
    def _registry(cls) -> Mapping[str, type[Estimator]]:
        return ESTIMATORS


def _check_k_range(k_range: tuple[Any, ...]) -> tuple[int, int]:
    if len(k_range) != 2:
        raise InputError(f"--k-range {shown(k_range)}: give two numbers MIN-MAX", hint="e.g. 2-10")
    lo, hi = (bounded_int(v, "--k-range") for v in k_range)
    if not 2 <= lo <= hi:
        raise InputError(f"--k-range {lo}-{hi}: give two numbers 2 <= MIN <= MAX")
    return lo, hi


class ScanK(Method):
    """A method whose number of segments is ``k``, or chosen by a scan over ``k_range``.

    Parameters
    ----------
    k : int, optional
        The number of segments; by default the best of ``k_range``.
    k_range : tuple of two ints, default (2, 10)
        The k a scan tries, both ends included.
    random_state : int, default 0
        As in :class:`Method`.
    """

    PARAMS: ClassVar[Mapping[str, Param]] = {
        "k": Param(None, int, 2, help="segments; by default the best of k_range"),
        "k_range": Param((2, 10), tuple, help="the k a scan tries: (MIN, MAX)"),
        **Method.PARAMS,
    }

    k: int | None
    k_range: tuple[int, int]

    def _validate(self) -> None:
        self.k_range = _check_k_range(self.k_range)

    def _check_data(self, n: int) -> None:
        if self.k is not None:
            _check_k(self.k, n)


class KMeansMethod(ScanK):
    """k-means on every user; k scanned with full k-means on a sample (``kmeans``)."""

    name = "kmeans"
    minibatch: ClassVar[bool] = False

    def _fit(self, X: np.ndarray, rng: np.random.Generator) -> Fit:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        # k is chosen with full k-means on a sample of at most SCAN_SAMPLE users for both
        # variants: the scan then costs the same for 50k users or 5M, and mini-batch noise does
        # not blur the choice. The final fit uses every user.
        k, k_range = self.k, self.k_range
        scan: list[dict] = []
        init: Any = "k-means++"
        if k is None:
            S = X[_sample(X, SCAN_SAMPLE, rng)]
            centres: dict[int, np.ndarray] = {}
            for kk in range(k_range[0], min(k_range[1], len(S) - 1) + 1):
                km = KMeans(n_clusters=kk, n_init=4, random_state=int(rng.integers(2**31))).fit(S)
                centres[kk] = km.cluster_centers_
                scan.append(_scan_row(S, km.labels_, kk, rng))
            k = _best_k(scan, k_range, len(S))
            init = centres[k]
        seed = int(rng.integers(2**31))
        if self.minibatch:
            km = MiniBatchKMeans(
                n_clusters=k,
                init=init,
                n_init=1 if scan else 3,
                batch_size=4096,
                random_state=seed,
                max_no_improvement=20,
            ).fit(X)
            labels = km.predict(X).astype(np.int64)
        else:
            km = KMeans(n_clusters=k, init=init, n_init=1 if scan else 4, random_state=seed).fit(X)
            labels = km.labels_.astype(np.int64)
        return Fit(labels, _centroid_model(km.cluster_centers_, np.arange(k)), {"k": k}, scan)


class MiniBatchKMeansMethod(KMeansMethod):
    """Mini-batch k-means on every user; k scanned as for k-means (``minibatch-kmeans``)."""

    name = "minibatch-kmeans"
    minibatch = True


class WardMethod(ScanK):
    """Ward's hierarchical clustering on a sample; the rest by the nearest cluster mean
    (``hierarchical``)."""

    name = "hierarchical"

    def _fit(self, X: np.ndarray, rng: np.random.Generator) -> Fit:
        from scipy.cluster.hierarchy import fcluster, linkage

        k, k_range = self.k, self.k_range
        idx = _sample(X, SAMPLE["hierarchical"], rng)
        S = X[idx]
        tree = linkage(S, method="ward")
        scan: list[dict] = []
        if k is None:
            for kk in range(k_range[0], min(k_range[1], len(S) - 1) + 1):
                lab = fcluster(tree, kk, criterion="maxclust") - 1
                if len(np.unique(lab)) == kk:
                    scan.append(_scan_row(S, lab, kk, rng))
            k = _best_k(scan, k_range, len(S))
        lab_s = (fcluster(tree, k, criterion="maxclust") - 1).astype(np.int64)
        k = int(lab_s.max()) + 1
        model = _centroid_model(_means(S, lab_s, k), np.arange(k))
        labels = assign(model, X)
        labels[idx] = lab_s  # the sample keeps the tree's own labels
        return Fit(labels, model, {"k": k, "linkage": "ward", "sample": len(S)}, scan)


class DBSCANMethod(Method):
    """DBSCAN on a sample; ``eps`` at the knee of the sorted k-distance curve by default
    (``dbscan``).

    Parameters
    ----------
    eps : float, optional
        Neighbourhood radius.
    min_samples : int, optional
        Neighbours of a core point; by default ``max(10, 2 × features)``.
    random_state : int, default 0
        As in :class:`Method`.
    """

    name = "dbscan"
    PARAMS: ClassVar[Mapping[str, Param]] = {
        "eps": Param(None, float, 0, 1e6, lo_open=True, help="neighbourhood radius"),
        "min_samples": Param(None, int, 2, MAX_ROWS, help="neighbours of a core point"),
        **Method.PARAMS,
    }

    eps: float | None
    min_samples: int | None

    def _check_data(self, n: int) -> None:
        fitted = min(n, SAMPLE[self.name])
        hint = f"{self.name} is fitted on {fitted:,} users"
        _check_size(self.min_samples, "--min-samples", fitted, hint)

    def _fit(self, X: np.ndarray, rng: np.random.Generator) -> Fit:
        from sklearn.cluster import DBSCAN
        from sklearn.neighbors import NearestNeighbors

        eps = self.eps
        idx = _sample(X, SAMPLE["dbscan"], rng)
        S = X[idx]
        ms = int(self.min_samples or max(10, 2 * X.shape[1]))
        params: dict[str, Any] = {"min_samples": ms, "sample": len(S)}
        if eps is None:
            dist, _ = NearestNeighbors(n_neighbors=ms).fit(S).kneighbors(S)
            kd = np.sort(dist[:, -1])
            eps = float(kd[knee(kd)])
            params["eps_from"] = f"knee of the sorted {ms}-distance curve"
        params["eps"] = round(float(eps), 6)
        db = DBSCAN(eps=eps, min_samples=ms).fit(S)
        lab_s = db.labels_.astype(np.int64)
        core = db.core_sample_indices_
        if len(np.unique(lab_s[lab_s >= 0])) < 1:
            raise InputError(
                f"dbscan found no dense region (eps {eps:.4g}, min_samples {ms})",
                hint="pass a larger --eps or a smaller --min-samples, or use --method hdbscan",
            )
        model = _centroid_model(S[core], lab_s[core], radius=eps)
        labels = assign(model, X)
        labels[idx] = lab_s
        return Fit(labels, model, params)


class HDBSCANMethod(Method):
    """HDBSCAN on a sample; later users join the cluster of their nearest clustered user when
    close enough (``hdbscan``).

    Parameters
    ----------
    min_cluster_size : int, optional
        Smallest cluster; by default ``max(25, sample / 100)``.
    min_samples : int, optional
        Neighbours of a core point; by default ``min(min_cluster_size, 2 × features)``.
    random_state : int, default 0
        As in :class:`Method`.
    """

    name = "hdbscan"
    PARAMS: ClassVar[Mapping[str, Param]] = {
        "min_cluster_size": Param(None, int, 2, MAX_ROWS, help="smallest cluster"),
        "min_samples": Param(None, int, 2, MAX_ROWS, help="neighbours of a core point"),
        **Method.PARAMS,
    }

    min_cluster_size: int | None
    min_samples: int | None

    def _check_data(self, n: int) -> None:
        fitted = min(n, SAMPLE[self.name])
        hint = f"{self.name} is fitted on {fitted:,} users"
        _check_size(self.min_samples, "--min-samples", fitted, hint)
        _check_size(self.min_cluster_size, "--min-cluster-size", fitted, hint)

    def _fit(self, X: np.ndarray, rng: np.random.Generator) -> Fit:
        from sklearn.cluster import HDBSCAN
        from sklearn.neighbors import NearestNeighbors

        idx = _sample(X, SAMPLE["hdbscan"], rng)
        S = X[idx]
        mcs = int(self.min_cluster_size or max(25, len(S) // 100))
        ms = int(self.min_samples or min(mcs, 2 * X.shape[1]))
        lab_s = HDBSCAN(min_cluster_size=mcs, min_samples=ms, copy=True).fit_predict(S)
        lab_s = lab_s.astype(np.int64)
        member = lab_s >= 0
        if not member.any():
            raise InputError(
                f"hdbscan put every user in noise (min_cluster_size {mcs})",
                hint="pass a smaller --min-cluster-size",
            )
        # New users join the cluster of their nearest clustered user when they are as close to
        # it as clustered users are to each other (95th percentile of nearest-neighbour
        # distances).
        P, lp = S[member], lab_s[member]
        nn, _ = NearestNeighbors(n_neighbors=2).fit(P).kneighbors(P)
        radius = float(np.quantile(nn[:, 1], 0.95))
        model = _centroid_model(P, lp, radius=radius)
        labels = assign(model, X)
        labels[idx] = lab_s
        params = {"min_cluster_size": mcs, "min_samples": ms, "sample": len(S), "radius": radius}
        return Fit(labels, model, params)


class GMMMethod(ScanK):
    """A Gaussian mixture (full covariances) on a sample; k by the BIC (``gmm``)."""

    name = "gmm"

    def _fit(self, X: np.ndarray, rng: np.random.Generator) -> Fit:
        from sklearn.mixture import GaussianMixture

        k, k_range = self.k, self.k_range
        idx = _sample(X, SAMPLE["gmm"], rng)
        S = X[idx]

        def mixture(kk: int) -> GaussianMixture:
            gm = GaussianMixture(
                n_components=kk,
                covariance_type="full",
                n_init=1,
                reg_covar=1e-4,
                max_iter=200,
                random_state=int(rng.integers(2**31)),
            ).fit(S)
            if not gm.converged_:
                warnings.warn(
                    f"gmm with k={kk} did not converge in 200 iterations; its BIC is approximate",
                    stacklevel=2,
                )
            return gm

        scan: list[dict] = []
        best = None
        if k is None:
            for kk in range(k_range[0], min(k_range[1], len(S) // 5) + 1):
                gm = mixture(kk)
                bic = float(gm.bic(S))
                row = (
                    _scan_row(S, gm.predict(S), kk, rng)
                    if len(np.unique(gm.predict(S))) > 1
                    else {"k": kk}
                )
                scan.append(row | {"bic": round(bic, 1)})
                if best is None or bic < best[0]:
                    best = (bic, gm)
            if best is None:
                _best_k([], k_range, len(S))
            gm = best[1]
        else:
            gm = mixture(k)
        model = {
            "kind": np.array("gmm"),
            "means": gm.means_,
            "precisions_cholesky": gm.precisions_cholesky_,
            "weights": gm.weights_,
        }
        labels = assign(model, X)
        # Components no user ends up in would be empty segments: renumber the used ones.
        used = np.unique(labels)
        if len(used) < gm.n_components:
            keep = used
            model = {k2: (v[keep] if v.ndim and k2 != "kind" else v) for k2, v in model.items()}
            model["weights"] = model["weights"] / model["weights"].sum()
            labels = np.searchsorted(keep, labels)
        return Fit(labels, model, {"k": len(used), "covariance": "full", "sample": len(S)}, scan)


class SOMMethod(ScanK):
    """A self-organising map on a sample, its nodes grouped into k segments (``som``).

    Parameters
    ----------
    grid : int, optional
        Side of the square grid; by default about 5·sqrt(users) nodes, 5x5 to 15x15.
    k, k_range, random_state
        As in :class:`ScanK`.
    """

    name = "som"
    PARAMS: ClassVar[Mapping[str, Param]] = {
        "grid": Param(None, int, 2, MAX_GRID, help="side of the square grid"),
        **ScanK.PARAMS,
    }

    grid: int | None

    def _check_data(self, n: int) -> None:
        super()._check_data(n)
        fitted = min(n, SAMPLE[self.name])
        hint = f"at most one node per user: som is fitted on {fitted:,} users"
        _check_size(self.grid, "--grid", max(2, math.isqrt(fitted)), hint)

    def _fit(self, X: np.ndarray, rng: np.random.Generator) -> Fit:
        from minisom import MiniSom
        from sklearn.cluster import KMeans

        k, k_range = self.k, self.k_range
        idx = _sample(X, SAMPLE["som"], rng)
        S = X[idx]
        # Vesanto's rule of thumb: about 5·sqrt(n) nodes, on a square grid, kept small enough
        # to read (5x5 to 15x15).
        side = int(self.grid or np.clip(round(np.sqrt(5 * np.sqrt(len(S)))), 5, 15))
        som = MiniSom(
            side,
            side,
            S.shape[1],
            sigma=max(1.0, side / 4),
            learning_rate=0.5,
            random_seed=int(rng.integers(2**31)),
        )
        som.pca_weights_init(S)
        som.train(S, num_iteration=max(10_000, 2 * len(S)), random_order=True)
        nodes = som.get_weights().reshape(side * side, -1)
        node_of = assign(_centroid_model(nodes, np.arange(len(nodes))), S)
        # Group the nodes into segments: k-means over the node weights, weighted by how many
        # users each node holds; k by the silhouette of the users' resulting segments.
        hits = np.bincount(node_of, minlength=len(nodes)).astype(np.float64)

        def group(kk: int) -> np.ndarray:
            km = KMeans(n_clusters=kk, n_init=4, random_state=int(rng.integers(2**31)))
            return km.fit(nodes, sample_weight=hits + 1e-3).labels_

        scan: list[dict] = []
        if k is None:
            for kk in range(k_range[0], min(k_range[1], len(nodes) - 1) + 1):
                lab = group(kk)[node_of]
                if len(np.unique(lab)) > 1:
                    scan.append(_scan_row(S, lab, kk, rng))
            k = _best_k(scan, k_range, len(S))
        seg_of_node = group(k)
        # A group of nodes that no user is nearest to would be a segment without members: drop
        # those nodes (every fitted user keeps its nearest node, so every kept group has
        # members).
        keep = np.isin(seg_of_node, np.unique(seg_of_node[node_of]))
        used, seg_kept = np.unique(seg_of_node[keep], return_inverse=True)
        model = _centroid_model(nodes[keep], seg_kept)
        labels = assign(model, X)
        seg_of_node = np.where(keep, np.searchsorted(used, seg_of_node), -1)
        extra = {
            "umatrix": som.distance_map().tolist(),
            "hits": hits.reshape(side, side).tolist(),
            "node_segment": seg_of_node.reshape(side, side).tolist(),
            "quantization_error": float(som.quantization_error(S[:20_000])),
            "topographic_error": float(som.topographic_error(S[:5_000])),
        }
        chosen = {"k": len(used), "grid": [side, side], "sample": len(S)}
        return Fit(labels, model, chosen, scan, extra)


#: Every clustering method's estimator, by its CLI name.
ESTIMATORS: dict[str, type[Method]] = {
    m.name: m
    for m in (
        KMeansMethod,
        MiniBatchKMeansMethod,
        WardMethod,
        DBSCANMethod,
        HDBSCANMethod,
        GMMMethod,
        SOMMethod,
    )
}

#: Methods whose number of segments is asked with --k (auto: chosen by a scan).
K_METHODS: tuple[str, ...] = tuple(n for n, m in ESTIMATORS.items() if issubclass(m, ScanK))


def fit(
    method: str,
    X: np.ndarray,
    *,
    k: int | None = None,
    k_range: tuple[int, int] = (2, 10),
    random_state: int = 0,
    **options: Any,
) -> Fit:
    """Fit ``method`` on the transformed matrix ``X`` (rows: users).

    ``k`` and ``k_range`` apply to the methods of :data:`K_METHODS` (``k_range`` is ignored by
    the others); ``options`` are the method's own parameters (``eps``, ``min_samples``,
    ``min_cluster_size``, ``grid``). An option the method does not have is an error that lists
    the valid ones.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> X, _ = make_blobs(n_samples=300, centers=3, n_features=4, random_state=0)
    >>> fit("kmeans", X, k=3).params
    {'k': 3}
    >>> fit("kmeans", X, epz=0.5)
    Traceback (most recent call last):
    ...
    jingzhun.errors.InputError: kmeans: unknown parameter 'epz'; valid parameters: k, k_range, random_state
    """
    estimator = ESTIMATORS.get(method)
    if estimator is None:
        raise InputError(
            f"--method {method!r} is not a clustering method",
            hint="choose one of: " + ", ".join(METHODS),
        )
    params = {**options, "random_state": random_state}
    scans = issubclass(estimator, ScanK)
    if scans:
        params |= {"k": k, "k_range": k_range}
    elif k is not None:
        raise InputError(
            f"--k does not apply to --method {method}",
            hint=f"--k works with: {', '.join(K_METHODS)}",
        )
    unknown = set(params) - set(estimator.PARAMS)
    if unknown:
        raise unknown_parameters(method, unknown, estimator.PARAMS)
    # The checks against the users first: their messages say how many there are.
    n = len(X)
    _check_users(method, n)
    if scans and k is not None:
        _check_k(k, n)
    return estimator(**params).fit(X).result()


def refit_labels(
    method: str, X: np.ndarray, params: dict[str, Any], random_state: int
) -> dict[str, np.ndarray]:
    """Refit with the chosen parameters (no scan) and return the model: for stability."""
    fixed: dict[str, Any] = {}
    if method in K_METHODS:
        fixed["k"] = int(params["k"])
    if method == "dbscan":
        fixed |= {"eps": params["eps"], "min_samples": params["min_samples"]}
    if method == "hdbscan":
        fixed |= {
            "min_cluster_size": params["min_cluster_size"],
            "min_samples": params["min_samples"],
        }
    if method == "som":
        fixed["grid"] = params["grid"][0]
    return fit(method, X, random_state=random_state, **fixed).model


def stability(
    method: str,
    X: np.ndarray,
    labels: np.ndarray,
    params: dict[str, Any],
    *,
    resamples: int = 5,
    size: int = 10_000,
    random_state: int = 0,
) -> float:
    """Mean adjusted Rand index between the run's labels and refits on bootstrap resamples.

    Each resample (with replacement, at most ``size`` users) is clustered again with the run's
    parameters; its model labels a fixed evaluation sample, compared with the run's labels there.
    1 means the same segments every time; near 0, segments that are chance.
    """
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(random_state + 1)
    ev = _sample(X, 5_000, rng)
    # A resample holds at least the run's sizes (min_samples, min_cluster_size, one user per
    # SOM node), so a refit is refused for no size the run itself was fitted with.
    grid = params.get("grid") or [0]
    least = (int(params.get("min_samples", 0)), int(params.get("min_cluster_size", 0)))
    size = max(size, *least, int(grid[0]) ** 2)
    scores = []
    for b in range(resamples):
        boot = rng.choice(len(X), min(len(X), size), replace=True)
        model = refit_labels(method, X[boot], params, random_state + 100 + b)
        scores.append(adjusted_rand_score(labels[ev], assign(model, X[ev])))
    return round(float(np.mean(scores)), 4)
