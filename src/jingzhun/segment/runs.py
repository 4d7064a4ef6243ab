"""Segment runs: fit a method on the profiles, store members, portraits and the model.

A run is written in one transaction (``segment_runs``, ``segment_members``,
``segment_portraits``); it becomes the active run of its name and the previous active run of
that name is kept as history. Users who get profiles later are assigned to the active run's
segments by its stored model (:func:`assign_new`, :class:`Segmenter`), without refitting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from jingzhun.checks import MAX_ROWS, bounded_int, finite
from jingzhun.contracts.time import utcnow
from jingzhun.errors import InputError, NotFoundError
from jingzhun.segment import features as F
from jingzhun.segment import methods as M
from jingzhun.segment import portraits
from jingzhun.segment.inputs import NO_ORDERS as NO_ORDERS  # the name readers import here
from jingzhun.segment.inputs import Inputs
from jingzhun.store import ModelRecord, Registry, Store, engines
from jingzhun.store.sql import Sql

if TYPE_CHECKING:
    from jingzhun.store.lake import Lake

NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-."


@dataclass
class RunResult:
    run_id: str
    name: str
    method: str
    users: int
    segments: int
    params: dict[str, Any]
    features: list[str]
    metrics: dict[str, Any]
    portraits: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    #: Default features left out because no user differs in them (``price_percentile`` in a
    #: store without a catalog).
    dropped_features: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "name": self.name,
            "method": self.method,
            "users": self.users,
            "segments": self.segments,
            "params": self.params,
            "features": self.features,
            "metrics": self.metrics,
            "portraits": self.portraits,
            "seconds": round(self.seconds, 3),
            # Only when a default feature was left out: constant for every user.
            **({"dropped_features": self.dropped_features} if self.dropped_features else {}),
        }


def check_name(name: str) -> str:
    if not name or len(name) > 64 or any(c not in NAME_CHARS for c in name.lower()):
        raise InputError(
            f"--name {name!r}: use 1-64 letters, digits, '_', '-' or '.'",
            hint="e.g. --name value-segments",
        )
    return name


def run(
    store: Store,
    *,
    method: str = "kmeans",
    k: int | str | None = "auto",
    features: list[str] | None = None,
    name: str | None = None,
    pca: float | int | None = None,
    k_range: tuple[int, int] = (2, 10),
    random_state: int = 0,
    stability_resamples: int = 5,
    options: dict[str, Any] | None = None,
) -> RunResult:
    """Fit ``method`` on the profiles and store the run as the active run of ``name``."""
    return _run(
        Inputs.of_store(store),
        lambda fitted: _write(store, *fitted),
        method=method,
        k=k,
        features=features,
        name=name,
        pca=pca,
        k_range=k_range,
        random_state=random_state,
        stability_resamples=stability_resamples,
        options=options,
    )


def run_on_lake(
    lake: Lake,
    *,
    method: str = "kmeans",
    k: int | str | None = "auto",
    features: list[str] | None = None,
    name: str | None = None,
    pca: float | int | None = None,
    k_range: tuple[int, int] = (2, 10),
    random_state: int = 0,
    stability_resamples: int = 5,
    options: dict[str, Any] | None = None,
) -> RunResult:
    """:func:`run` on a lake (``--engine spark``): the same inputs, computed by Spark from the
    lake's ``profiles``, ``tags`` and ``profile_affinity``; the same fit and portraits; the
    run kept in the lake's ``segment_runs``, ``segment_members``, ``segment_portraits`` and
    ``segment_projection`` (:mod:`jingzhun.segment.lake_runs`)."""
    from jingzhun.segment.lake_runs import write_run

    return _run(
        Inputs.of_lake(lake),
        lambda fitted: write_run(lake, *fitted),
        method=method,
        k=k,
        features=features,
        name=name,
        pca=pca,
        k_range=k_range,
        random_state=random_state,
        stability_resamples=stability_resamples,
        options=options,
    )


def _run(
    inputs: Inputs,
    save: Callable[[tuple[Any, ...]], str],
    *,
    method: str,
    k: int | str | None,
    features: list[str] | None,
    name: str | None,
    pca: float | int | None,
    k_range: tuple[int, int],
    random_state: int,
    stability_resamples: int,
    options: dict[str, Any] | None,
) -> RunResult:
    """Check, read the inputs, fit and describe the run on either engine, and ``save`` it."""
    t0 = time.perf_counter()
    name, kk = check_run(
        method,
        k=k,
        features=features,
        name=name,
        k_range=k_range,
        random_state=random_state,
        stability_resamples=stability_resamples,
        options=options,
    )
    columns = inputs.columns()
    as_of = inputs.as_of()
    dropped: list[str] = []
    if method == "rfm":
        members, params, metrics, model, feats = inputs.rfm(), {}, {}, None, []
        projection = None
        traits_cols = [c for c in ("recency_days", "frequency", "monetary", "aov") if c in columns]
        traits = (
            inputs.features(traits_cols)
            if traits_cols
            else inputs.frame(inputs.table("profiles").select("user_id"))
        )
    else:
        feats = list(features or [f for f in F.DEFAULT_FEATURES if f in F.numeric_traits(columns)])
        if not feats:
            raise InputError("--features: name at least one trait")
        traits = inputs.features(feats)
        if not features:  # a default no user differs in is left out; one asked for is an error
            traits, feats, dropped = F.drop_constant_defaults(traits, feats)
        X = traits[feats].to_numpy(np.float64)
        if len(X) == 0:
            raise InputError(
                "no profiles to segment", hint="ingest events, then jingzhun profile build"
            )
        pipe = F.FeaturePipeline(feats, pca=pca).fit(X)
        Z = pipe.transform(X)
        fitted = M.fit(
            method, Z, k=kk, k_range=k_range, random_state=random_state, **(options or {})
        )
        labels, order = _relabel(fitted.labels)
        _prune(fitted.model, order)
        rng = np.random.default_rng(random_state)
        metrics = M.quality(Z, labels, rng)
        if fitted.scan:
            metrics["k_scan"] = fitted.scan
        if stability_resamples > 0 and len(np.unique(labels[labels >= 0])) > 1:
            metrics["stability_ari"] = M.stability(
                method,
                Z,
                labels,
                fitted.params,
                resamples=stability_resamples,
                random_state=random_state,
            )
        metrics |= {
            k2: v for k2, v in fitted.extra.items() if k2 not in ("umatrix", "hits", "node_segment")
        }
        params = fitted.params | {"features": pipe.describe(), "random_state": random_state}
        if kk is None and method in M.K_METHODS:
            params["k_asked"] = f"auto ({k_range[0]}-{k_range[1]})"
        segs = np.where(labels >= 0, (labels + 1).astype(str), "noise")
        members = pd.DataFrame({"user_id": traits.user_id.to_numpy(), "segment": segs})
        model = _pack(pipe, fitted.model, order, fitted.extra)
        projection = _projection(Z, members)
    portrait = portraits.compute(members, traits, inputs.affinity(), inputs.revenue())
    if method == "rfm":  # the standard RFM names are the portrait's name
        portrait["label"] = portrait.segment
    run_id = save(
        (name, method, params, feats, metrics, members, portrait, model, as_of, projection)
    )
    return RunResult(
        run_id=run_id,
        name=name,
        method=method,
        users=len(members),
        segments=int(members.segment.nunique()),
        params=params,
        features=feats,
        metrics=metrics,
        portraits=[_portrait_dict(r) for r in portrait.to_dict("records")],
        seconds=time.perf_counter() - t0,
        dropped_features=dropped,
    )


def check_run(
    method: str,
    *,
    k: int | str | None = "auto",
    features: list[str] | None = None,
    name: str | None = None,
    k_range: tuple[int, int] = (2, 10),
    random_state: int = 0,
    stability_resamples: int = 5,
    options: dict[str, Any] | None = None,
) -> tuple[str, int | None]:
    """Every check of a run's options that needs no data (the run's name and its k, or
    None for auto): done before anything is read, and before Spark starts on a lake."""
    if method not in M.METHODS:
        raise InputError(
            f"--method {method!r} is not a segmentation method",
            hint="choose one of: " + ", ".join(M.METHODS),
        )
    name = check_name(name or method)
    kk = _parse_k(k, method)
    _check_numbers(k_range, random_state, stability_resamples, options or {})
    if method == "rfm" and features:
        raise InputError("--features: rfm segments come from the RFM tags, not from features")
    return name, kk


#: Most segments a run may ask for: beyond this no portrait reads well, and the k scan (one
#: full fit per k) and the stability refits would run for hours.
MAX_K = 100
#: Most bootstrap refits for the stability ARI (each one refits the method).
MAX_RESAMPLES = 100
#: Largest SOM grid side (grid² nodes, each trained on every user).
MAX_GRID = 100


def _check_numbers(
    k_range: tuple[int, int], random_state: int, resamples: int, options: dict[str, Any]
) -> None:
    """Bound every number a run takes, so none hangs the machine or reaches a library as a
    value it rejects with a traceback (issue 12: --k-range 2-100000 and --stability 100000
    ran for hours, --eps 0 and --seed -1 ended in tracebacks)."""
    lo, hi = (bounded_int(v, "--k-range") for v in k_range)
    if not 2 <= lo <= hi <= MAX_K:
        raise InputError(
            f"--k-range {lo}-{hi}: give MIN-MAX with 2 <= MIN <= MAX <= {MAX_K}", hint="e.g. 2-10"
        )
    bounded_int(random_state, "--seed", lo=0, hi=2**32 - 1)
    bounded_int(resamples, "--stability", lo=0, hi=MAX_RESAMPLES)
    if options.get("eps") is not None:
        finite(options["eps"], "--eps", lo=0, lo_open=True, hi=1e6)
    for key, flag in (("min_samples", "--min-samples"), ("min_cluster_size", "--min-cluster-size")):
        if options.get(key) is not None:
            bounded_int(options[key], flag, lo=2, hi=MAX_ROWS)
    if options.get("grid") is not None:
        bounded_int(options["grid"], "--grid", lo=2, hi=MAX_GRID)


def _parse_k(k: int | str | None, method: str) -> int | None:
    if k is None or (isinstance(k, str) and k.strip().lower() == "auto"):
        return None
    try:
        value = int(k)
    except (TypeError, ValueError):
        raise InputError(f"--k {k!r}: give a whole number or 'auto'") from None
    if method not in M.K_METHODS:
        raise InputError(
            f"--k does not apply to --method {method}",
            hint=f"--k works with: {', '.join(M.K_METHODS)}",
        )
    if value < 2:
        raise InputError(f"--k {value}: a segmentation needs at least 2 segments")
    if value > MAX_K:
        raise InputError(
            f"--k {value}: must be between 2 and the number of users minus one, and at most {MAX_K}"
        )
    return value


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber clusters by size (0 = largest); noise stays -1. Returns labels and old->new."""
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    new_of_old = np.full(int(labels.max()) + 1 if len(ids) else 0, -1, dtype=np.int64)
    new_of_old[order] = np.arange(len(order))
    out = np.where(labels >= 0, new_of_old[np.maximum(labels, 0)] if len(ids) else -1, -1)
    return out.astype(np.int64), new_of_old


def _prune(model: dict[str, np.ndarray], new_of_old: np.ndarray) -> None:
    """Drop model points whose segment got no user (a SOM node group, a mini-batch centre no
    one is nearest to), so that later users are never placed in a segment without members."""
    if str(model["kind"]) != "centroid":
        return
    seg = model["segment_of"]
    keep = (seg < len(new_of_old)) & (new_of_old[np.minimum(seg, len(new_of_old) - 1)] >= 0)
    if not keep.all():
        model["points"], model["segment_of"] = model["points"][keep], seg[keep]


def _pack(pipe, model, new_of_old, extra) -> bytes:
    arrays = {f"pipe_{k}": v for k, v in pipe.arrays().items()}
    arrays |= {f"model_{k}": v for k, v in model.items()}
    arrays["new_of_old"] = new_of_old
    for key in ("umatrix", "hits", "node_segment"):
        if key in extra:
            arrays[f"extra_{key}"] = np.asarray(extra[key])
    return F.to_npz(arrays)


#: Members drawn for a run's picture on two principal components.
PROJECTED = 4000


def _projection(Z: np.ndarray, members: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """Up to :data:`PROJECTED` members (a seeded uniform sample) on the first two principal
    components of the fitted space ``Z``: the run's picture, drawn once when it is fitted."""
    from sklearn.decomposition import PCA

    pick = np.sort(np.random.default_rng(seed).permutation(len(Z))[:PROJECTED])
    sample = Z[pick]
    if sample.shape[1] >= 2 and len(sample) >= 2:
        xy = PCA(n_components=2, random_state=0).fit_transform(sample)
    else:
        xy = np.c_[sample[:, :1], sample[:, :1]] if sample.shape[1] else np.zeros((len(pick), 2))
    return pd.DataFrame(
        {
            "user_id": members.user_id.to_numpy()[pick],
            "segment": members.segment.to_numpy()[pick],
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    )


def projection_of(store: Store, run_id: str) -> pd.DataFrame:
    """The run's members on two principal components (``user_id``, ``segment``, ``x``,
    ``y``), as written when it was fitted; empty for RFM runs and runs fitted before."""
    return store.sql(
        "SELECT user_id, segment, x, y FROM segment_projection WHERE run_id = ?", [run_id]
    ).df()


def _write(
    store, name, method, params, feats, metrics, members, portrait, model, as_of, projection
) -> str:
    """Record the run in the model registry with its members, portraits and projection, in
    one transaction; the run becomes the active one of its name."""
    port = portrait.copy()
    with Registry(store).saving(
        kind="segment",
        name=name,
        method=method,
        params=params,
        features=feats,
        metrics=metrics,
        info={"users": len(members), "segments": int(members.segment.nunique())},
        as_of=as_of,
        artefact=model,
    ) as saved:
        run_id, con = saved.model_id, saved.con
        _insert_members(con, run_id, members, fitted=True, at=utcnow())
        port.insert(0, "run_id", run_id)
        con.register("_jz_portraits", port)
        try:
            con.execute(
                "INSERT INTO segment_portraits SELECT run_id, segment, label, users, share, revenue_share, traits, top_categories FROM _jz_portraits"
            )
        finally:
            con.unregister("_jz_portraits")
        if projection is not None and len(projection):
            con.register("_jz_projection", projection)
            try:
                con.execute(
                    "INSERT INTO segment_projection SELECT ?, user_id, segment, x, y "
                    "FROM _jz_projection",
                    [run_id],
                )
            finally:
                con.unregister("_jz_projection")
    return run_id


def _insert_members(con: Any, run_id: str, members: pd.DataFrame, *, fitted: bool, at: Any) -> None:
    """Append ``members`` (user_id, segment) to ``segment_members`` inside the caller's
    transaction."""
    rows = pa.table(
        {
            "user_id": pa.array(members.user_id.to_numpy(dtype=object), pa.string()),
            "segment": pa.array(members.segment.to_numpy(dtype=object), pa.string()),
        }
    )
    con.register("_jz_members", rows)
    try:
        con.execute(
            "INSERT INTO segment_members SELECT ?, user_id, segment, ?, ? FROM _jz_members",
            [run_id, fitted, at],
        )
    finally:
        con.unregister("_jz_members")


def _portrait_dict(r: dict[str, Any]) -> dict[str, Any]:
    return r | {
        "traits": json.loads(r["traits"]) if isinstance(r["traits"], str) else r["traits"],
        "top_categories": json.loads(r["top_categories"])
        if isinstance(r["top_categories"], str)
        else r["top_categories"],
    }


# -- reading runs -----------------------------------------------------------------------------


def _run_dict(record: ModelRecord) -> dict[str, Any]:
    return {
        "run_id": record.model_id,
        "name": record.name,
        "method": record.method,
        "params": record.params,
        "features": record.features,
        "metrics": record.metrics,
        "users": record.info.get("users"),
        "segments": record.info.get("segments"),
        "as_of": record.as_of,
        "active": record.active,
        "created_at": record.created_at,
    }


def resolve(store: Store, ref: str | None) -> dict[str, Any]:
    """A run by run id, or the active run of a name (default: the latest active run)."""
    registry = Registry(store)
    if ref is None:
        latest = registry.active("segment")
        if latest is None:
            raise NotFoundError("no segment runs yet", hint="run jingzhun segment run")
        return _run_dict(latest)
    return _run_dict(registry.get(run_id_of(store.ibis(), ref), kind="segment"))


def run_id_of(backend: Any, ref: str) -> str:
    """The run ``ref`` names in ``backend``'s ``segment_runs`` (a store's view of its
    registry, or a lake's table: either engine): a run id wins over a name (a run named
    "value-1" and the first run of "value"), else the newest active run of the name."""
    if "segment_runs" not in engines.tables(backend):
        raise NotFoundError("no segment runs yet", hint="run jingzhun segment run")
    t = backend.table("segment_runs")
    rows = engines.frame(
        backend,
        t.filter((t.run_id == ref) | (t.name == ref)).select(
            "run_id", "name", "active", "created_at"
        ),
    )
    if (rows.run_id == ref).any():
        return ref
    active = rows[(rows.name == ref) & rows.active.astype(bool)]
    if len(active):
        return str(active.sort_values(["created_at", "run_id"]).run_id.iloc[-1])
    known = sorted(engines.column(backend, t.select("name").distinct(), "name"))
    raise NotFoundError(
        f"no segment run or name {ref!r}",
        hint=("known names: " + ", ".join(known)) if known else "run jingzhun segment run",
    )


#: The columns ``segment list`` shows, in order.
RUN_COLUMNS = (
    "run_id",
    "name",
    "method",
    "active",
    "users",
    "segments",
    "silhouette",
    "stability",
    "created_at",
)


def list_runs(store: Store) -> pd.DataFrame:
    """Every run, newest first, with its headline metrics."""
    rows = [
        {
            "run_id": r.model_id,
            "name": r.name,
            "method": r.method,
            "active": r.active,
            "users": r.info.get("users"),
            "segments": r.info.get("segments"),
            "silhouette": r.metrics.get("silhouette"),
            "stability": r.metrics.get("stability_ari"),
            "created_at": r.created_at,
        }
        for r in Registry(store).list("segment")
    ]
    frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    return frame.astype({"silhouette": "float64", "stability": "float64"})


def portraits_of(store: Store, run_id: str) -> list[dict[str, Any]]:
    df = store.sql(
        "SELECT * EXCLUDE (run_id) FROM segment_portraits WHERE run_id = ? ORDER BY users DESC, segment",
        [run_id],
    ).df()
    return [_portrait_dict(r) for r in df.to_dict("records")]


def members_of(store: Store, run_id: str) -> pd.DataFrame:
    return store.sql(
        """
        SELECT m.user_id, m.segment, p.label, m.fitted, m.assigned_at
        FROM segment_members m LEFT JOIN segment_portraits p USING (run_id, segment)
        WHERE m.run_id = ? ORDER BY m.user_id
        """,
        [run_id],
    ).df()


def members_page(
    store: Store, run_id: str, segment: str | None, offset: int, limit: int
) -> tuple[pd.DataFrame, int]:
    """One page of a run's members (as :func:`members_of`, by user id), of one segment or all,
    and how many there are: read with LIMIT/OFFSET, so a page of a million-member run costs
    milliseconds, not the whole table."""
    where: Sql = "m.run_id = ?"
    params: list[object] = [run_id]
    if segment is not None:
        where, params = "m.run_id = ? AND m.segment = ?", [run_id, segment]
    total = store.scalar(f"SELECT count(*) FROM segment_members m WHERE {where}", params)
    page = store.sql(
        f"""
        SELECT m.user_id, m.segment, p.label, m.fitted, m.assigned_at
        FROM segment_members m LEFT JOIN segment_portraits p USING (run_id, segment)
        WHERE {where} ORDER BY m.user_id LIMIT ? OFFSET ?
        """,
        [*params, int(limit), int(offset)],
    ).df()
    return page, int(total)


def user_segments(store: Store, user_id: str) -> list[dict[str, Any]]:
    """The user's segment in every active run (run_id, name, segment, label, fitted), newest
    run first; empty when the user is in none."""
    active = {r.model_id: r for r in Registry(store).list("segment") if r.active}
    if not active:
        return []
    rows = store.rows(
        """
        SELECT m.run_id, m.segment, p.label, m.fitted
        FROM segment_members m LEFT JOIN segment_portraits p USING (run_id, segment)
        WHERE m.user_id = ? AND list_contains(?, m.run_id)
        """,
        [user_id, list(active)],
    )
    found = {run_id: (segment, label, fitted) for run_id, segment, label, fitted in rows}
    return [
        {
            "run_id": run_id,
            "name": record.name,
            "segment": found[run_id][0],
            "label": found[run_id][1],
            "fitted": bool(found[run_id][2]),
        }
        for run_id, record in active.items()
        if run_id in found
    ]


# -- assignment without refitting ---------------------------------------------------------------


class Segmenter:
    """The active run of a name, loaded once, to place users in its segments in microseconds.

    Examples
    --------
    >>> seg = ws.segmenter("value")                                   # doctest: +SKIP
    >>> seg.assign({"recency_days": 3, "frequency": 4, ...})          # doctest: +SKIP
    '2'
    """

    def __init__(self, store: Store, ref: str | None = None) -> None:
        info = resolve(store, ref)
        self.run_id: str = info["run_id"]
        self.method: str = info["method"]
        self.features: list[str] = info["features"]
        self._store = store
        if self.method == "rfm":
            self.pipe = None
            return
        arrays = Registry(store).arrays(self.run_id)
        self.pipe = F.FeaturePipeline.from_arrays(
            self.features, {k[5:]: v for k, v in arrays.items() if k.startswith("pipe_")}
        )
        self.model = {k[6:]: v for k, v in arrays.items() if k.startswith("model_")}
        self.new_of_old = arrays["new_of_old"]
        self.extra = {k[6:]: v for k, v in arrays.items() if k.startswith("extra_")}

    @classmethod
    def from_model(
        cls,
        features: list[str],
        pipe: F.FeaturePipeline,
        model: dict[str, np.ndarray],
        new_of_old: np.ndarray | None = None,
    ) -> Segmenter:
        """A segmenter from a fitted pipeline and method model, without a store."""
        seg = cls.__new__(cls)
        seg.run_id, seg.method, seg.features = "", str(model.get("kind", "")), list(features)
        seg.pipe, seg.model, seg.extra = pipe, model, {}
        n = len(np.unique(model["segment_of"])) if "segment_of" in model else len(model["means"])
        seg.new_of_old = np.arange(n) if new_of_old is None else new_of_old
        return seg

    def _codes(self, labels: np.ndarray) -> np.ndarray:
        new = np.where(labels >= 0, self.new_of_old[np.maximum(labels, 0)], -1)
        return np.where(new >= 0, (new + 1).astype(str), "noise")

    def assign_matrix(self, X: np.ndarray) -> np.ndarray:
        """Segment codes for raw (untransformed) feature rows, columns in ``features`` order."""
        if self.pipe is None:
            raise InputError("an rfm run assigns from RFM tags, not from features")
        return self._codes(M.assign(self.model, self.pipe.transform(X)))

    def assign(self, traits: dict[str, float]) -> str:
        """The segment for one user's feature values, by the run's feature names (``features``:
        derived ones such as ``orders_per_month`` included; missing ones count as 0)."""
        x = np.array([[float(traits.get(f) or 0.0) for f in self.features]])
        return str(self.assign_matrix(x)[0])


def assign_new(store: Store, ref: str | None = None) -> dict[str, Any]:
    """Assign profiled users who are not yet members of the run; return counts per segment."""
    seg = Segmenter(store, ref)
    new = _unplaced(Inputs.of_store(store), seg, _member_ids(store, seg.run_id))
    if len(new):
        with store.transaction() as con:
            _insert_members(con, seg.run_id, new, fitted=False, at=utcnow())
    return _assigned(seg.run_id, new)


def assign_new_on_lake(lake: Lake, runs: Store, ref: str | None = None) -> dict[str, Any]:
    """:func:`assign_new` on a lake (``--engine spark``): the run read from ``runs``, a scratch
    store holding the lake's runs and the run's members (``lake_runs.load_runs`` and
    ``load_members``); the profiles (or RFM tags) read by Spark through the same
    definitions; the new members added to the lake's ``segment_members`` in one rename."""
    from jingzhun.segment.lake_runs import add_members

    seg = Segmenter(runs, ref)
    new = _unplaced(Inputs.of_lake(lake), seg, _member_ids(runs, seg.run_id))
    if len(new):
        add_members(lake, seg.run_id, new, at=utcnow())
    return _assigned(seg.run_id, new)


def _member_ids(store: Store, run_id: str) -> pd.Series:
    return store.sql("SELECT user_id FROM segment_members WHERE run_id = ?", [run_id]).df().user_id


def _unplaced(inputs: Inputs, seg: Segmenter, known: pd.Series) -> pd.DataFrame:
    """``user_id`` and ``segment`` of each profiled user not among ``known``, placed by the run's
    model (an RFM run: by the user's RFM tag)."""
    if seg.method == "rfm":
        new = inputs.rfm()
    else:
        missing = [f for f in seg.features if f not in F.numeric_traits(inputs.columns())]
        if missing:
            raise InputError(
                f"run {seg.run_id} uses trait {missing[0]!r}, which the profiles no longer have",
                hint="rebuild profiles with the same traits, or run a new segmentation",
            )
        new = inputs.features(seg.features)
    new = new[~new.user_id.isin(known)]
    if seg.method != "rfm" and len(new):
        new = pd.DataFrame(
            {
                "user_id": new.user_id,
                "segment": seg.assign_matrix(new[seg.features].to_numpy(np.float64)),
            }
        )
    return new


def _assigned(run_id: str, new: pd.DataFrame) -> dict[str, Any]:
    counts = new.segment.value_counts().to_dict() if len(new) else {}
    return {
        "run_id": run_id,
        "assigned": len(new),
        "segments": {str(k): int(v) for k, v in counts.items()},
    }
