"""Segmentation: 1M users x 20 features with MiniBatchKMeans and automatic k ≤ 60 s; one new
user assigned < 1 ms; and every method's agreement with the simulator's true personas.

Scale: the 20 features are the profiles of the benchmark shop (the first 10M events of a
1M-user simulation, 752,951 profiled users), resampled with replacement to 1,000,000 rows and
cached as .npy. The timed workload is what ``jingzhun segment run --method minibatch-kmeans``
does after reading the profiles: feature pipeline, k scan 2-10 by silhouette, final fit and
labels for every user. The baseline, in the same run, is one MiniBatchKMeans fit at a fixed k
on the same matrix (what automatic k costs on top of it).

Quality: a 50,000-user simulation (seed 3) goes through ingest and profile build; every
method runs with automatic k and its adjusted Rand index against the true personas is reported.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import DATA, best, copy_store, run, save, shop_files
from jingzhun.segment.features import DEFAULT_FEATURES

TARGET = {"minibatch_auto_k_seconds": 60.0, "assign_one_ms": 1.0, "k_within": 1}
# The default feature set and eight profile traits more.
FEATURES_20 = [
    *DEFAULT_FEATURES,
    "frequency",
    "monetary",
    "recency_days",
    "days_since_seen",
    "active_days",
    "sessions",
    "cart_to_purchase",
    "distinct_items",
]


def _matrix(rows: int) -> Path:
    path = DATA / f"segment-features-{rows}.npy"
    if path.exists():
        return path
    store = DATA / "profile-store-10000000.duckdb"
    if not store.exists():
        import bench_profile

        shop_files()
        bench_profile.main(repeat=1)
    with tempfile.TemporaryDirectory(prefix="jz-bench-seg-") as tmp:
        db = Path(tmp) / "store.duckdb"
        copy_store(store, db)
        run(
            f"""
            import numpy as np
            from jingzhun.workspace import Workspace
            from jingzhun.segment import features as F
            from jingzhun.segment.runs import _columns
            ws = Workspace.open({str(db)!r})
            ws.profile_build()
            X = ws.sql(F.select_sql({FEATURES_20!r}, _columns(ws.store)))[{FEATURES_20!r}].to_numpy(np.float64)
            rng = np.random.default_rng(0)
            X = X[rng.integers(0, len(X), {rows})]
            np.save({str(path)!r}, X)
            _out["profiled_users"] = int(ws.store.count("profiles"))
            ws.close()
            """,
            timeout=3600,
        )
    return path


SCALE = """
import numpy as np
from jingzhun.segment import features as F, methods as M
X = np.load({path!r})
names = {names!r}
t = time.perf_counter()
Z = F.FeaturePipeline(names).fit_transform(X)
fit = M.fit("minibatch-kmeans", Z, k=None, random_state=0)
_out["auto_k_seconds"] = round(time.perf_counter() - t, 3)
_out["users"], _out["features"] = X.shape
_out["k"] = int(fit.params["k"])
_out["k_scan"] = fit.scan
# One new user at a time, in process (what the server will do for a user it has just seen).
from jingzhun.segment.runs import Segmenter
seg = Segmenter.from_model(names, F.FeaturePipeline(names).fit(X), fit.model)
rows = [dict(zip(names, map(float, X[i]))) for i in np.random.default_rng(1).integers(0, len(X), 2000)]
times = []
for r in rows:
    t0 = time.perf_counter()
    seg.assign(r)
    times.append((time.perf_counter() - t0) * 1000)
times.sort()
_out["assign_ms"] = {{"p50": round(times[len(times) // 2], 4), "p99": round(times[int(len(times) * 0.99) - 1], 4), "n": len(times)}}
"""

BASELINE = """
import numpy as np
from sklearn.cluster import MiniBatchKMeans
from jingzhun.segment import features as F
X = np.load({path!r})
t = time.perf_counter()
Z = F.FeaturePipeline({names!r}).fit_transform(X)
MiniBatchKMeans(n_clusters=6, batch_size=4096, n_init=3, random_state=0).fit(Z)
_out["fixed_k_seconds"] = round(time.perf_counter() - t, 3)
"""

QUALITY = """
import numpy as np, pandas as pd
from sklearn.metrics import adjusted_rand_score
from jingzhun.synth import SynthConfig, simulate
from jingzhun.workspace import Workspace
data = simulate(SynthConfig(users={users}, seed={seed}))
files = data.write({out!r})
ws = Workspace.open({out!r} + "/store.duckdb")
for kind in ("items", "users", "events"):
    ws.ingest(kind, [files[kind]])
ws.profile_build()
truth = pd.read_parquet({out!r} + "/truth/users.parquet")[["user_id", "persona"]]
_out["true_personas"] = int(truth.persona.nunique())
res = {{}}
for method in ("kmeans", "minibatch-kmeans", "hierarchical", "gmm", "som", "dbscan", "hdbscan", "rfm"):
    t0 = time.perf_counter()
    r = ws.segment_run(method, stability_resamples=3)
    secs = time.perf_counter() - t0
    m = ws.segment_members(r.run_id).merge(truth, on="user_id")
    res[method] = {{
        "segments": r.segments,
        "k": r.params.get("k"),
        "ari_vs_personas": round(float(adjusted_rand_score(m.persona, m.segment)), 4),
        "silhouette": r.metrics.get("silhouette"),
        "stability_ari": r.metrics.get("stability_ari"),
        "noise_share": r.metrics.get("noise_share"),
        "seconds": round(secs, 2),
    }}
_out["methods"] = res
_out["users"] = int(ws.store.count("profiles"))
ws.close()
"""


def main(rows: int = 1_000_000, repeat: int = 2, quality_users: int = 50_000) -> None:
    path = _matrix(rows)
    scale = [
        run(SCALE.format(path=str(path), names=FEATURES_20), timeout=1800) for _ in range(repeat)
    ]
    baseline = run(BASELINE.format(path=str(path), names=FEATURES_20))
    with tempfile.TemporaryDirectory(prefix="jz-bench-segq-") as tmp:
        quality = run(QUALITY.format(users=quality_users, seed=3, out=tmp), timeout=3600)
    s = best(scale, key="auto_k_seconds")
    s["all_seconds"] = [r["auto_k_seconds"] for r in scale]
    truth_k = quality["true_personas"]
    k_methods = ("kmeans", "minibatch-kmeans", "hierarchical", "gmm", "som")
    met = {
        "minibatch_auto_k_seconds": s["auto_k_seconds"] <= TARGET["minibatch_auto_k_seconds"],
        "assign_one_ms": s["assign_ms"]["p99"] < TARGET["assign_one_ms"],
        "k_within_one_of_personas": {
            m: abs(quality["methods"][m]["segments"] - truth_k) <= TARGET["k_within"]
            for m in k_methods
        },
    }
    save(
        "segment",
        {
            "workload": (
                f"{rows:,} users x {len(FEATURES_20)} profile features (752,951 profiled users of "
                f"the benchmark shop, resampled); quality on a {quality_users:,}-user simulation"
            ),
            "target": TARGET,
            "results": {
                "minibatch_kmeans_auto_k": s,
                "baseline_fixed_k": baseline,
                "quality": quality,
            },
            "met": met,
        },
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
