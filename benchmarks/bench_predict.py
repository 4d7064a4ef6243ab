"""Predict: CLV fits on the full CDNOW log, propensity at 1M rows, uplift against the truth.

Targets (the predict issue): BG/NBD fit on the full CDNOW data (23,570 customers) <= 1 s;
propensity: train the best model on 1M users <= 60 s and score 1M users <= 10 s; uplift
validated on simulator data against the true uplift (correlation; Qini against the oracle's).

1. **CLV.** ``lifetimes/datasets/CDNOW_master.txt`` from the Lifetimes 0.11.3 wheel on PyPI
   (``pip download lifetimes==0.11.3 --no-deps`` into the git-ignored benchmarks/data/wheels;
   read with zipfile, lifetimes is never installed): 69,659 purchases of 23,570 customers,
   1997-01-01 to 1998-06-30. ``clv.summarise`` with calibration end 1997-09-30 (weeks) and
   holdout end 1998-06-30 (39 weeks). Timed: ``fit_bgnbd`` (median of 5), ``fit_paretonbd``
   (median of 3), ``fit_gamma_gamma`` (median of 5); recorded: parameters, log-likelihood, and
   holdout repeat transactions predicted against actual (in total and by calibration
   frequency). Baseline in the same process: the same BG/NBD likelihood (our
   ``bgnbd_log_likelihood``) minimised by plain ``scipy.optimize.minimize`` over the raw
   parameters from the same start (Nelder-Mead with default tolerances, and L-BFGS-B with
   bounds > 0 and numerical gradients), i.e. without our log-space parametrisation and
   L-BFGS-B + Nelder-Mead polish. Correctness check: the same code on the wheel's
   ``CDNOW_sample.txt`` (2,357 customers) against the published estimates.
2. **Propensity.** A 20,000-user shop (``simulate(SynthConfig(users=20000, seed=0))``) is
   ingested into a fresh store and ``predict.classify.training_sets`` builds the point-in-time
   sets (target propensity, horizon 30, the default two training windows). ``compare`` runs
   on those original rows (the model it picks and its validation AUC are recorded). Then the
   training rows are bootstrapped to 1,000,000 (rows drawn with replacement, labels kept with
   their rows, continuous features multiplied by exp(N(0, 0.02)) so rows are not exact
   duplicates): ``Classifier("lightgbm").fit(X, y, X_val, y_val)`` on them (the original
   validation set for early stopping) is timed, and in another process calibrated scoring
   (``predict_proba`` + ``Calibrator``) of 1,000,000 bootstrapped test rows, then
   ``contributions`` and ``top_reasons`` (the reasons ``predict score`` stores) separately.
   Baseline in the same run: LightGBM's own ``lightgbm.train`` with the same parameters and
   early stopping on the same rows (no signed log, no sklearn wrapper), its ``predict`` on
   the same 1M scoring rows and its ``pred_contrib`` on their first 100,000 (TreeSHAP is the
   slow part; ours is timed on the same slice and on all 1M).
3. **Uplift.** A 100,000-user shop (seed 0) with its randomized past campaign: items, users
   and events ingested into a fresh store, then ``predict.uplift_service.train(store,
   settings, campaigns.parquet, truth=truth/campaigns.parquet)``: every learner's validation
   and test figures (Qini coefficient, the oracle's Qini from ranking by the true uplift,
   their ratio, Pearson/Spearman with the true uplift, uplift@k), the chosen learner and the
   targeting policy.

Each part runs in its own process (peak RSS is that process's high-water mark); a part that
fails is recorded as such. Results: benchmarks/results/predict.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench_recommend import _attempt
from common import pypi_wheel, save

TARGET = {
    "bgnbd_fit_seconds": 1.0,
    "propensity_fit_1m_seconds": 60.0,
    "propensity_score_1m_seconds": 10.0,
}
LIFETIMES = "lifetimes==0.11.3"
MASTER = "lifetimes/datasets/CDNOW_master.txt"
SAMPLE = "lifetimes/datasets/CDNOW_sample.txt"
PROPENSITY_USERS = 20_000
UPLIFT_USERS = 100_000
ROWS = 1_000_000
JITTER = 0.02
CONTRIB_ROWS = 100_000

# Published maximum-likelihood estimates on the 2,357-customer CDNOW sample (the same figures
# tests/predict/test_clv.py checks against the tests' summary file).
PUBLISHED_SAMPLE = {
    "source": (
        "Fader, Hardie & Lee (2005) 'Counting your customers the easy way', section 5 "
        "(BG/NBD); Fader & Hardie (2005) Pareto/NBD note; Fader & Hardie (2013) Gamma-Gamma "
        "note (946 repeat customers)"
    ),
    "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "log_likelihood": -9582.4},
    "paretonbd": {
        "r": 0.553,
        "alpha": 10.578,
        "s": 0.606,
        "beta": 11.669,
        "log_likelihood": -9595.0,
    },
    "gamma_gamma": {"p": 6.25, "q": 3.74, "v": 15.44},
}

# -- 1. CLV on CDNOW -------------------------------------------------------------------------

CLV = r"""
import io, zipfile, statistics
import numpy as np, pandas as pd
from scipy import optimize
from jingzhun.predict import clv

def timed_runs(fn, n):
    wall, cpu, result = [], [], None
    for _ in range(n):
        c, t = time.process_time(), time.perf_counter()
        result = fn()
        wall.append(round(time.perf_counter() - t, 4))
        cpu.append(round(time.process_time() - c, 4))
    return result, {"median": statistics.median(wall), "all": wall, "cpu_median": statistics.median(cpu)}

with zipfile.ZipFile(P["wheel"]) as zf:
    master, sample = zf.read(P["master"]), zf.read(P["sample"])
t = time.perf_counter()
log = pd.read_csv(io.BytesIO(master), sep=r"\s+", header=0,
                  names=["customer", "date", "cds", "amount"], dtype={"customer": str, "date": str})
log["date"] = pd.to_datetime(log["date"], format="%Y%m%d")
_out["read_seconds"] = round(time.perf_counter() - t, 4)
_out["purchases"] = len(log)
_out["span"] = [str(log["date"].min().date()), str(log["date"].max().date())]
t = time.perf_counter()
s = clv.summarise(log, calibration_end="1997-09-30", holdout_end="1998-06-30", unit="week")
_out["summarise_seconds"] = round(time.perf_counter() - t, 4)
x, t_x, T = (s[c].to_numpy(np.float64) for c in ("x", "t_x", "T"))
m = s["m"].to_numpy(np.float64)
hold = s["holdout_x"].to_numpy(np.float64)
h = s.attrs["holdout_length"]
_out["customers"] = len(s)
_out["repeat_customers"] = int((x > 0).sum())
_out["calibration_repeat_transactions"] = float(x.sum())
_out["holdout_weeks"] = h

def fit_out(fit):
    return {"params": {k: round(v, 6) for k, v in fit.params.items()},
            "log_likelihood": round(fit.log_likelihood, 4), "converged": fit.converged,
            "iterations": fit.iterations}

def holdout(pred):
    by = []
    g = np.minimum(x, 7)
    for k in range(8):
        sel = g == k
        by.append({"x": f"{k}+" if k == 7 else str(k), "customers": int(sel.sum()),
                   "actual_mean": round(float(hold[sel].mean()), 4),
                   "predicted_mean": round(float(pred[sel].mean()), 4)})
    return {"actual_transactions": float(hold.sum()),
            "predicted_transactions": round(float(pred.sum()), 2),
            "error_pct": round(100 * (float(pred.sum()) / float(hold.sum()) - 1), 2),
            "customer_correlation": round(float(np.corrcoef(pred, hold)[0, 1]), 4),
            "by_calibration_frequency": by}

bg, bg_t = timed_runs(lambda: clv.fit_bgnbd(x, t_x, T), 5)
pn, pn_t = timed_runs(lambda: clv.fit_paretonbd(x, t_x, T), 3)
rep = np.isfinite(m) & (x > 0)
gg, gg_t = timed_runs(lambda: clv.fit_gamma_gamma(np.where(rep, x, 0), np.nan_to_num(m)), 5)
_out["bgnbd"] = {"fit_seconds": bg_t, **fit_out(bg), "holdout": holdout(clv.bgnbd_expected(bg.params, h, x, t_x, T))}
_out["paretonbd"] = {"fit_seconds": pn_t, **fit_out(pn), "holdout": holdout(clv.paretonbd_expected(pn.params, h, x, t_x, T))}
_out["gamma_gamma"] = {"fit_seconds": gg_t, **fit_out(gg), "customers": int(rep.sum()),
                       "mean_repeat_spend": round(float(m[rep].mean()), 4),
                       "mean_expected_spend": round(float(clv.gamma_gamma_expected_spend(gg.params, x[rep], m[rep]).mean()), 4)}

# Baseline: the same likelihood, plain scipy over the raw parameters, the same start.
start = np.array([0.5, max(float(T.mean()), 1.0), 1.0, 1.0])
def nll_raw(p):
    if (p <= 0).any():
        return np.inf
    v = -clv.bgnbd_log_likelihood(p, x, t_x, T).sum()
    return float(v) if np.isfinite(v) else np.inf
base = {}
for label, kw in (("nelder_mead_raw", {"method": "Nelder-Mead", "options": {"maxiter": 5000}}),
                  ("lbfgsb_bounded_raw", {"method": "L-BFGS-B", "bounds": [(1e-6, None)] * 4})):
    res, tm = timed_runs(lambda: optimize.minimize(nll_raw, start, **kw), 5)
    base[label] = {"fit_seconds": tm, "params": dict(zip(("r", "alpha", "a", "b"), (round(float(v), 6) for v in res.x))),
                   "log_likelihood": round(-float(res.fun), 4), "success": bool(res.success),
                   "iterations": int(res.nit), "function_evaluations": int(res.nfev),
                   "log_likelihood_gap_to_ours": round(-float(res.fun) - bg.log_likelihood, 4)}
_out["bgnbd_baseline"] = base

# Correctness: the 2,357-customer sample (columns: id, sample id, date, CDs, amount; no header).
smp = pd.read_csv(io.BytesIO(sample), sep=r"\s+", header=None,
                  names=["customer", "sid", "date", "cds", "amount"], dtype={"customer": str, "date": str})
smp["date"] = pd.to_datetime(smp["date"], format="%Y%m%d")
ss = clv.summarise(smp, calibration_end="1997-09-30", unit="week")
sx, stx, sT, sm = (ss[c].to_numpy(np.float64) for c in ("x", "t_x", "T", "m"))
srep = np.isfinite(sm) & (sx > 0)
_out["sample_check"] = {
    "customers": len(ss), "repeat_customers": int(srep.sum()),
    "bgnbd": fit_out(clv.fit_bgnbd(sx, stx, sT)),
    "paretonbd": fit_out(clv.fit_paretonbd(sx, stx, sT)),
    "gamma_gamma": fit_out(clv.fit_gamma_gamma(np.where(srep, sx, 0), np.nan_to_num(sm))),
}
"""

# -- 2. propensity ---------------------------------------------------------------------------

# Prepended to the propensity and uplift parts: the 1M bootstrap of a split's rows (with jitter).
BOOTSTRAP = r"""
import numpy as np
def bootstrap(X, y, n, seed, jitter):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), n)
    Xb, yb = X[idx], y[idx]
    cont = np.flatnonzero((np.abs(X - np.round(X)) > 1e-9).any(axis=0))
    Xb[:, cont] *= np.exp(rng.normal(0.0, jitter, (n, len(cont))))
    return Xb, yb, cont
def rss_mb():
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
class timed:
    def __init__(self, name):
        self.name = name
    def __enter__(self):
        self.c, self.t = time.process_time(), time.perf_counter()
    def __exit__(self, *exc):
        _out[self.name + "_seconds"] = round(time.perf_counter() - self.t, 3)
        _out[self.name + "_cpu_seconds"] = round(time.process_time() - self.c, 3)
def auc(y, p):
    from sklearn.metrics import roc_auc_score
    return round(float(roc_auc_score(y, p)), 5)
"""

PROPENSITY_DATA = r"""
from pathlib import Path
import pandas as pd
from jingzhun.synth import SynthConfig, simulate
from jingzhun.workspace import Workspace
from jingzhun.predict.classify import training_sets
from jingzhun.predict.propensity import Split, compare
work = Path(P["work"])
with timed("simulate_write"):
    simulate(SynthConfig(users=P["users"], seed=0)).write(work / "shop")
ws = Workspace.open(work / "propensity.duckdb")
with timed("ingest"):
    for kind in ("items", "users", "events"):
        ws.ingest(kind, [work / "shop" / f"{kind}.parquet"])
_out["events"] = int(ws.store.scalar("SELECT count(*) FROM events"))
with timed("training_sets"):
    cut, sets = training_sets(ws.store, ws.settings, target="propensity", horizon_days=30)
features = [c for c in sets["train"].columns if c not in ("user_id", "label", "cutoff")]
_out["cutoffs"] = cut.to_dict()
_out["features"] = len(features)
_out["rows"] = {k: len(v) for k, v in sets.items()}
_out["base_rates"] = {k: round(float(v["label"].mean()), 5) for k, v in sets.items()}
arrays = {}
for k, v in sets.items():
    arrays[f"X_{k}"] = v[features].to_numpy(np.float64)
    arrays[f"y_{k}"] = v["label"].to_numpy(np.int8)
np.savez(work / "sets.npz", features=np.array(features), **arrays)
_out["continuous_features"] = [features[i] for i in bootstrap(arrays["X_train"], arrays["y_train"], 10, 0, 0.0)[2]]
split = lambda k: Split(arrays[f"X_{k}"], arrays[f"y_{k}"])
with timed("compare"):
    c = compare(split("train"), split("validation"), split("test"))
_out["compare"] = {
    "best": c.best, "select": c.select, "calibration": c.calibrator.method,
    "best_validation_roc_auc": round(c.metrics[c.best]["validation"]["roc_auc"], 5),
    "best_test_roc_auc_calibrated": round(c.test_calibrated["roc_auc"], 5),
    "best_test_ece_calibrated": round(c.test_calibrated["ece"], 5),
    "models": {name: {"fit_seconds": c.seconds.get(name),
                      **{f"{part}_{m}": round(v[m], 5) for part, v in parts.items() for m in ("roc_auc", "pr_auc", "log_loss")}}
               for name, parts in c.metrics.items()},
    "warnings": c.warnings,
}
ws.close()
"""

PROPENSITY_FIT = r"""
from pathlib import Path
from jingzhun.predict.propensity import Classifier
work = Path(P["work"])
z = np.load(work / "sets.npz")
Xv, yv, Xt, yt = z["X_validation"], z["y_validation"], z["X_test"], z["y_test"]
with timed("bootstrap"):
    X, y, _ = bootstrap(z["X_train"], z["y_train"], P["rows"], 1, P["jitter"])
_out["train_rows"] = len(y)
_out["train_base_rate"] = round(float(y.mean()), 5)
# Diagnostic: the signed log Classifier.fit applies to the 1M rows (part of fit_seconds).
from jingzhun.predict.propensity import signed_log
with timed("signed_log_diagnostic"):
    signed_log(X)
_out["rss_before_fit_mb"] = rss_mb()
with timed("fit"):
    model = Classifier("lightgbm").fit(X, y, Xv, yv)
_out["rss_after_fit_mb"] = rss_mb()
_out["trees"] = int(model.booster_.num_trees())
_out["best_iteration"] = int(model.booster_.best_iteration)
_out["validation_roc_auc"] = auc(yv, model.predict_proba(Xv))
_out["test_roc_auc"] = auc(yt, model.predict_proba(Xt))
np.savez(work / "model.npz", **model.to_state())
"""

PROPENSITY_SCORE = r"""
from pathlib import Path
from jingzhun.predict.propensity import Calibrator, Classifier, top_reasons
work = Path(P["work"])
z = np.load(work / "sets.npz")
features = [str(f) for f in z["features"]]
with np.load(work / "model.npz", allow_pickle=False) as s:
    model = Classifier.from_state({k: s[k] for k in s.files})
with timed("calibrator_fit"):
    cal = Calibrator.fit(model.predict_proba(z["X_validation"]), z["y_validation"])
_out["calibration"] = cal.method
X, y, _ = bootstrap(z["X_test"], z["y_test"], P["rows"], 2, P["jitter"])
_out["score_rows"] = len(y)
_out["rss_before_score_mb"] = rss_mb()
with timed("score"):
    p = cal(model.predict_proba(X))
_out["rss_after_score_mb"] = rss_mb()
_out["score_mean"] = round(float(p.mean()), 5)
_out["score_roc_auc"] = auc(y, p)
with timed("contributions_slice"):
    model.contributions(X[: P["contrib_rows"]])
_out["contributions_slice_rows"] = P["contrib_rows"]
with timed("contributions"):
    contrib = model.contributions(X)
_out["rss_after_contributions_mb"] = rss_mb()
with timed("top_reasons"):
    reasons = top_reasons(contrib, X, features, 3)
_out["rss_after_top_reasons_mb"] = rss_mb()
_out["reasons_example"] = reasons[0]
_out["users_with_reasons"] = int(sum(1 for r in reasons if r))
_out["score_with_reasons_seconds"] = round(_out["score_seconds"] + _out["contributions_seconds"] + _out["top_reasons_seconds"], 3)
"""

# LightGBM's own API with the parameters of predict.lgbm.classifier_defaults, on the raw features.
PROPENSITY_BASELINE = r"""
from pathlib import Path
import lightgbm
from jingzhun.predict.lgbm import classifier_defaults as _lgbm_defaults
work = Path(P["work"])
z = np.load(work / "sets.npz")
Xv, yv, Xt, yt = z["X_validation"], z["y_validation"], z["X_test"], z["y_test"]
X, y, _ = bootstrap(z["X_train"], z["y_train"], P["rows"], 1, P["jitter"])
d = _lgbm_defaults(0)
params = {"objective": "binary", "learning_rate": d["learning_rate"], "num_leaves": d["num_leaves"],
          "min_data_in_leaf": d["min_child_samples"], "bagging_fraction": d["subsample"],
          "bagging_freq": d["subsample_freq"], "feature_fraction": d["colsample_bytree"],
          "lambda_l2": d["reg_lambda"], "seed": d["random_state"], "num_threads": d["n_jobs"],
          "verbose": -1, "deterministic": True, "force_row_wise": True, "metric": "binary_logloss"}
_out["params"] = params
_out["rss_before_fit_mb"] = rss_mb()
with timed("fit"):
    train = lightgbm.Dataset(X, y)
    valid = lightgbm.Dataset(Xv, yv, reference=train)
    booster = lightgbm.train(params, train, num_boost_round=d["n_estimators"], valid_sets=[valid],
                             callbacks=[lightgbm.early_stopping(50, verbose=False)])
_out["rss_after_fit_mb"] = rss_mb()
_out["trees"] = int(booster.num_trees())
_out["best_iteration"] = int(booster.best_iteration)
_out["validation_roc_auc"] = auc(yv, booster.predict(Xv))
_out["test_roc_auc"] = auc(yt, booster.predict(Xt))
del X, y, train
S, ys, _ = bootstrap(z["X_test"], z["y_test"], P["rows"], 2, P["jitter"])
with timed("score"):
    p = booster.predict(S)
# TreeSHAP costs ~0.3 ms a row here: the baseline's is timed on the first P["contrib_rows"] rows
# (the score part times ours on the same slice and on all 1M).
with timed("contributions_slice"):
    c = booster.predict(S[: P["contrib_rows"]], pred_contrib=True)
_out["contributions_slice_rows"] = P["contrib_rows"]
_out["rss_after_contributions_mb"] = rss_mb()
"""

# -- 3. uplift -------------------------------------------------------------------------------

UPLIFT = r"""
from pathlib import Path
import pandas as pd
from jingzhun.synth import SynthConfig, simulate
from jingzhun.workspace import Workspace
from jingzhun.predict import uplift_service
work = Path(P["work"])
with timed("simulate_write"):
    simulate(SynthConfig(users=P["users"], seed=0)).write(work / "shop")
ws = Workspace.open(work / "uplift.duckdb")
with timed("ingest"):
    for kind in ("items", "users", "events"):
        ws.ingest(kind, [work / "shop" / f"{kind}.parquet"])
_out["events"] = int(ws.store.scalar("SELECT count(*) FROM events"))
assignments = pd.read_parquet(work / "shop" / "campaigns.parquet")
truth = pd.read_parquet(work / "shop" / "truth" / "campaigns.parquet")
_out["campaign"] = str(assignments["campaign_id"].iloc[0])
_out["assigned"] = len(assignments)
_out["assigned_treated_share"] = round(float((assignments["group"] == "treatment").mean()), 4)
_out["true_uplift"] = {"mean": round(float(truth["uplift"].mean()), 5), "std": round(float(truth["uplift"].std()), 5),
                       "negative_share": round(float((truth["uplift"] < 0).mean()), 4),
                       "p_control_mean": round(float(truth["p_control"].mean()), 5),
                       "p_treated_mean": round(float(truth["p_treated"].mean()), 5)}
_out["rss_before_train_mb"] = rss_mb()
steps = []
t0 = time.perf_counter()
with timed("train"):
    result = uplift_service.train(ws.store, ws.settings, assignments, truth=truth,
                                  progress=lambda m: steps.append([m, round(time.perf_counter() - t0, 2)]))
_out["steps"] = steps
_out["result"] = result
ws.close()
"""


def _wheel() -> Path:
    return pypi_wheel(LIFETIMES, "[Ll]ifetimes-0.11.3-*.whl", [MASTER, SAMPLE])


def _libraries() -> dict[str, Any]:
    import lightgbm
    import numpy
    import pandas
    import scipy
    import sklearn

    return {
        "lightgbm": lightgbm.__version__,
        "scikit-learn": sklearn.__version__,
        "scipy": scipy.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
    }


def _get(part: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(part, dict) or key not in part:
            return None
        part = part[key]
    return part


def _le(value: Any, limit: float) -> bool | None:
    return None if value is None else bool(value <= limit)


def main() -> None:
    wheel = _wheel()
    clv = _attempt(
        "CLV on CDNOW",
        CLV,
        {"wheel": str(wheel), "master": MASTER, "sample": SAMPLE},
    )
    with tempfile.TemporaryDirectory(prefix="jz-bench-predict-") as tmp:
        params = {
            "work": tmp,
            "users": PROPENSITY_USERS,
            "rows": ROWS,
            "jitter": JITTER,
            "contrib_rows": CONTRIB_ROWS,
        }
        prop_data = _attempt(
            "propensity: shop, training sets, compare", BOOTSTRAP + PROPENSITY_DATA, params
        )
        if "error" in prop_data:
            prop_fit = prop_score = prop_base = {"error": "skipped: the training sets failed"}
        else:
            prop_fit = _attempt(
                "propensity: fit LightGBM on 1M (ours)", BOOTSTRAP + PROPENSITY_FIT, params
            )
            prop_score = (
                _attempt("propensity: score 1M (ours)", BOOTSTRAP + PROPENSITY_SCORE, params)
                if "error" not in prop_fit
                else {"error": "skipped: the fit failed"}
            )
            prop_base = _attempt(
                "propensity: baseline lightgbm.train on 1M", BOOTSTRAP + PROPENSITY_BASELINE, params
            )
    with tempfile.TemporaryDirectory(prefix="jz-bench-uplift-") as tmp:
        uplift = _attempt(
            "uplift on the simulator", BOOTSTRAP + UPLIFT, {"work": tmp, "users": UPLIFT_USERS}
        )

    overhead = {}
    for key in ("fit_seconds", "score_seconds", "contributions_slice_seconds"):
        ours = (prop_fit if key == "fit_seconds" else prop_score).get(key)
        base = prop_base.get(key)
        if ours is not None and base:
            overhead[key] = {"ours": ours, "lightgbm": base, "ratio": round(ours / base, 3)}
    bg_median = _get(clv, "bgnbd", "fit_seconds", "median")
    best = _get(uplift, "result", "best")
    chosen = _get(uplift, "result", "comparison", best, "test") if best else None
    met = {
        "bgnbd_fit_seconds": _le(bg_median, TARGET["bgnbd_fit_seconds"]),
        "propensity_fit_1m_seconds": _le(
            prop_fit.get("fit_seconds"), TARGET["propensity_fit_1m_seconds"]
        ),
        "propensity_score_1m_seconds": _le(
            prop_score.get("score_seconds"), TARGET["propensity_score_1m_seconds"]
        ),
        "propensity_score_with_reasons_1m_seconds": _le(
            prop_score.get("score_with_reasons_seconds"), TARGET["propensity_score_1m_seconds"]
        ),
        "uplift_chosen_learner_test_qini_positive": (
            None if not chosen or chosen.get("qini_auc") is None else chosen["qini_auc"] > 0
        ),
        "uplift_chosen_learner_true_spearman_positive": (
            None
            if not chosen or _get(chosen, "true_correlation", "spearman") is None
            else chosen["true_correlation"]["spearman"] > 0
        ),
    }
    uplift_summary = None
    if best:
        res = uplift["result"]
        uplift_summary = {
            "chosen": best,
            "test": {
                name: {
                    "qini_auc": _get(r, "test", "qini_auc"),
                    "oracle_qini_auc": _get(r, "test", "oracle_qini_auc"),
                    "qini_vs_oracle": _get(r, "test", "qini_vs_oracle"),
                    "pearson": _get(r, "test", "true_correlation", "pearson"),
                    "spearman": _get(r, "test", "true_correlation", "spearman"),
                    "uplift_at_10": _get(r, "test", "uplift_at_10"),
                    "uplift_at_30": _get(r, "test", "uplift_at_30"),
                }
                for name, r in res["comparison"].items()
            },
            "treated_share": res.get("treated_share"),
            "conversion": res.get("conversion"),
            "policy": res.get("policy"),
        }
    save(
        "predict",
        {
            "workload": (
                "CLV: BG/NBD, Pareto/NBD and Gamma-Gamma on the full CDNOW log (23,570 customers, "
                "calibration to 1997-09-30, holdout to 1998-06-30, weeks); propensity: LightGBM "
                f"fit on {ROWS:,} bootstrapped point-in-time rows of a {PROPENSITY_USERS:,}-user "
                f"simulated shop and calibrated scoring of {ROWS:,} rows; uplift: T-, X-learner "
                f"and class transformation on the randomized campaign of a {UPLIFT_USERS:,}-user "
                "simulated shop, against the simulator's true uplift"
            ),
            "data": {
                "clv": {
                    "wheel": wheel.name,
                    "member": MASTER,
                    "format": "whitespace-separated customer id, date YYYYMMDD, CDs, amount; header row",
                },
                "propensity": (
                    f"simulate(SynthConfig(users={PROPENSITY_USERS}, seed=0)) ingested into a fresh "
                    "store; predict.classify.training_sets(target='propensity', horizon_days=30, two "
                    "training windows). NOT 1M distinct users: the 1M training rows are a bootstrap "
                    "(rows drawn with replacement, seed 1, labels kept with their rows) of the "
                    "original training rows, every continuous (non-integer) feature multiplied by "
                    f"exp(N(0, {JITTER})) so that rows are not exact duplicates; early stopping on "
                    "the original validation rows. The 1M scoring rows are the same kind of "
                    "bootstrap (seed 2) of the original test rows. compare() ran on the original "
                    "rows only."
                ),
                "uplift": (
                    f"simulate(SynthConfig(users={UPLIFT_USERS}, seed=0)): items, users and events "
                    "ingested into a fresh store; assignments from campaigns.parquet, the true "
                    "uplift (p_treated - p_control per user) from truth/campaigns.parquet"
                ),
            },
            "target": TARGET,
            "libraries": _libraries(),
            "results": {
                "clv": clv,
                "propensity": {
                    "data_and_compare": prop_data,
                    "fit_1m_ours": prop_fit,
                    "score_1m_ours": prop_score,
                    "baseline_lightgbm_train": prop_base,
                    "overhead_vs_lightgbm": overhead,
                },
                "uplift": uplift,
                "uplift_summary": uplift_summary,
            },
            "met": met,
            "notes": [
                "CLV baseline: the same BG/NBD likelihood (jingzhun's bgnbd_log_likelihood) "
                "minimised by plain scipy.optimize.minimize over the raw parameters (r, alpha, a, "
                "b) from fit_bgnbd's start: Nelder-Mead with default tolerances, and L-BFGS-B with "
                "bounds (1e-6, inf) and finite-difference gradients. fit_bgnbd itself runs "
                "L-BFGS-B then a Nelder-Mead polish (xatol = fatol = 1e-8) over log-parameters. "
                "log_likelihood_gap_to_ours < 0 means the baseline stopped at a worse point.",
                "Propensity baseline: lightgbm.train with predict.lgbm.classifier_defaults translated to "
                "LightGBM's native names, early stopping 50 on the same validation rows, on the raw "
                "features (ours applies the signed log first and goes through LGBMClassifier). "
                "Trees are invariant to the monotone signed log up to binning, so best_iteration "
                "can differ slightly; compare per-tree time if it does.",
                "score_seconds is predict_proba + the fitted Calibrator on 1M rows (what the "
                "issue's 'score 1M users' measures); predict score also computes reasons "
                "(contributions = LightGBM pred_contrib, top_reasons = per-user JSON-able lists), "
                "timed separately, and writes the scores table (not measured here).",
                "The propensity fit and scoring figures exclude building the 1M-user feature "
                "matrix from a store (profile compute at each cutoff), which this benchmark does "
                "not do at 1M users.",
                "uplift figures are on the random 20% test split of the assigned users known at the "
                "send; the learner is chosen by validation Qini. oracle_qini_auc ranks the same "
                "test users by their true uplift, so qini_vs_oracle is the share of the achievable "
                "Qini the model attains on these noisy outcomes.",
                "cpu_seconds / other_cpu_seconds per part: CPU used by the part's process and by "
                "everything else on the machine meanwhile (two cores shared).",
            ],
        },
    )


if __name__ == "__main__":
    main()
