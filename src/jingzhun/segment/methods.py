"""Clustering methods over the feature matrix, each with a stored model that assigns new users.

Every method returns a :class:`Fit`: integer labels (``-1`` is noise), the chosen parameters,
the scan that chose them, and the model as plain arrays. Assignment without refitting is one
of two rules, so it is the same code for every method:

- ``centroid``: the nearest of a set of points (k-means centres, Ward cluster means, SOM
  nodes, DBSCAN/HDBSCAN core points), mapped to its segment; for the density methods a point
  farther than ``radius`` from every core point is noise, as DBSCAN itself would say;
- ``gmm``: the mixture component with the highest posterior.

Methods that cannot scale to every user (Ward, DBSCAN, HDBSCAN, GMM, SOM) are fitted on a
random sample and the rest are assigned by the model, which is also how users who arrive later
are placed. Automatic k: the silhouette on a sample (Calinski–Harabasz and Davies–Bouldin are
reported beside it); for Gaussian mixtures the BIC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jingzhun.checks import bounded_int
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

#: Methods whose number of segments is asked with --k (auto: chosen by a scan).
K_METHODS = ("kmeans", "minibatch-kmeans", "hierarchical", "gmm", "som")

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
SAMPLE = {"hierarchical": 10_000, "dbscan": 20_000, "hdbscan": 15_000, "gmm": 20_000, "som": 50_000}
SCAN_SAMPLE = 50_000  # k-means scans k on at most this many users


@dataclass
class Fit:
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


# -- methods --------------------------------------------------------------------------------------


def _kmeans(X, k, rng, *, k_range, minibatch: bool, **_: Any) -> Fit:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    # k is chosen with full k-means on a sample of at most SCAN_SAMPLE users for both
    # variants: the scan then costs the same for 50k users or 5M, and mini-batch noise does
    # not blur the choice. The final fit uses every user.
    scan: list[dict] = []
    init = "k-means++"
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
    if minibatch:
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


def _hierarchical(X, k, rng, *, k_range, **_: Any) -> Fit:
    from scipy.cluster.hierarchy import fcluster, linkage

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


def knee(values: np.ndarray) -> int:
    """The knee of an increasing curve: the point farthest below the chord from end to end."""
    y = np.sort(np.asarray(values, dtype=np.float64))
    x = np.linspace(0.0, 1.0, len(y))
    span = y[-1] - y[0]
    if span <= 0:
        return len(y) - 1
    yn = (y - y[0]) / span
    return int(np.argmax(x - yn))


def _dbscan(X, k, rng, *, eps=None, min_samples=None, **_: Any) -> Fit:
    from sklearn.cluster import DBSCAN
    from sklearn.neighbors import NearestNeighbors

    idx = _sample(X, SAMPLE["dbscan"], rng)
    S = X[idx]
    ms = int(min_samples or max(10, 2 * X.shape[1]))
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


def _hdbscan(X, k, rng, *, min_cluster_size=None, min_samples=None, **_: Any) -> Fit:
    from sklearn.cluster import HDBSCAN
    from sklearn.neighbors import NearestNeighbors

    idx = _sample(X, SAMPLE["hdbscan"], rng)
    S = X[idx]
    mcs = int(min_cluster_size or max(25, len(S) // 100))
    ms = int(min_samples or min(mcs, 2 * X.shape[1]))
    lab_s = HDBSCAN(min_cluster_size=mcs, min_samples=ms, copy=True).fit_predict(S)
    lab_s = lab_s.astype(np.int64)
    member = lab_s >= 0
    if not member.any():
        raise InputError(
            f"hdbscan put every user in noise (min_cluster_size {mcs})",
            hint="pass a smaller --min-cluster-size",
        )
    # New users join the cluster of their nearest clustered user when they are as close to it
    # as clustered users are to each other (95th percentile of nearest-neighbour distances).
    P, lp = S[member], lab_s[member]
    nn, _ = NearestNeighbors(n_neighbors=2).fit(P).kneighbors(P)
    radius = float(np.quantile(nn[:, 1], 0.95))
    model = _centroid_model(P, lp, radius=radius)
    labels = assign(model, X)
    labels[idx] = lab_s
    params = {"min_cluster_size": mcs, "min_samples": ms, "sample": len(S), "radius": radius}
    return Fit(labels, model, params)


def _gmm(X, k, rng, *, k_range, **_: Any) -> Fit:
    from sklearn.mixture import GaussianMixture

    idx = _sample(X, SAMPLE["gmm"], rng)
    S = X[idx]

    def fit(kk: int) -> GaussianMixture:
        gm = GaussianMixture(
            n_components=kk,
            covariance_type="full",
            n_init=1,
            reg_covar=1e-4,
            max_iter=200,
            random_state=int(rng.integers(2**31)),
        ).fit(S)
        if not gm.converged_:
            import warnings

            warnings.warn(
                f"gmm with k={kk} did not converge in 200 iterations; its BIC is approximate",
                stacklevel=2,
            )
        return gm

    scan: list[dict] = []
    best = None
    if k is None:
        for kk in range(k_range[0], min(k_range[1], len(S) // 5) + 1):
            gm = fit(kk)
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
        gm = fit(k)
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


def _som(X, k, rng, *, k_range, grid=None, **_: Any) -> Fit:
    from minisom import MiniSom
    from sklearn.cluster import KMeans

    idx = _sample(X, SAMPLE["som"], rng)
    S = X[idx]
    # Vesanto's rule of thumb: about 5·sqrt(n) nodes, on a square grid, kept small enough to
    # read (5x5 to 15x15).
    side = int(grid or np.clip(round(np.sqrt(5 * np.sqrt(len(S)))), 5, 15))
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
    # Group the nodes into segments: k-means over the node weights, weighted by how many users
    # each node holds; k by the silhouette of the users' resulting segments.
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
    # those nodes (every fitted user keeps its nearest node, so every kept group has members).
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
    return Fit(labels, model, {"k": len(used), "grid": [side, side], "sample": len(S)}, scan, extra)


_FITTERS = {
    "kmeans": lambda X, k, rng, **o: _kmeans(X, k, rng, minibatch=False, **o),
    "minibatch-kmeans": lambda X, k, rng, **o: _kmeans(X, k, rng, minibatch=True, **o),
    "hierarchical": _hierarchical,
    "dbscan": _dbscan,
    "hdbscan": _hdbscan,
    "gmm": _gmm,
    "som": _som,
}


def fit(
    method: str,
    X: np.ndarray,
    *,
    k: int | None = None,
    k_range: tuple[int, int] = (2, 10),
    random_state: int = 0,
    **options: Any,
) -> Fit:
    """Fit ``method`` on the transformed matrix ``X`` (rows: users)."""
    if method not in _FITTERS:
        raise InputError(
            f"--method {method!r} is not a clustering method",
            hint="choose one of: " + ", ".join(METHODS),
        )
    n = len(X)
    need = MIN_USERS[method]
    if n < need:
        raise InputError(
            f"--method {method} needs at least {need} users with profiles; the store has {n}",
            hint="ingest more data or use --method rfm",
        )
    if k is not None and method in K_METHODS and not 2 <= k <= n - 1:
        raise InputError(
            f"--k {k}: must be between 2 and the number of users minus one ({n - 1})",
            hint="pass a smaller --k or --k auto",
        )
    lo, hi = k_range
    if not 2 <= lo <= hi:
        raise InputError(f"--k-range {lo}-{hi}: give two numbers 2 <= MIN <= MAX")
    _check_sizes(method, min(n, SAMPLE.get(method, n)), options)
    rng = np.random.default_rng(random_state)
    return _FITTERS[method](X, k, rng, k_range=k_range, **options)


def _check_sizes(method: str, fitted: int, options: dict[str, Any]) -> None:
    """Sizes the fitted users must hold: a core point's neighbours and a smallest cluster
    (scikit-learn raised a ValueError traceback past the users, issue 12), and a SOM grid of
    at most one node per user (100 x 100 nodes for 2,000 users trained for minutes, nearly
    every node empty)."""
    if method in ("dbscan", "hdbscan"):
        for key, flag in (
            ("min_samples", "--min-samples"),
            ("min_cluster_size", "--min-cluster-size"),
        ):
            if options.get(key) is not None:
                bounded_int(
                    options[key],
                    flag,
                    lo=2,
                    hi=fitted,
                    hint=f"{method} is fitted on {fitted:,} users",
                )
    if method == "som" and options.get("grid") is not None:
        side = max(2, math.isqrt(fitted))
        bounded_int(
            options["grid"],
            "--grid",
            lo=2,
            hi=side,
            hint=f"at most one node per user: som is fitted on {fitted:,} users",
        )


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
