"""``jingzhun predict clv`` on a real transaction log (CDNOW), as a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.subprocess_cli import copy_store, error_line, human, one_json, run, snapshot, sql

DATA = Path(__file__).resolve().parents[1] / "data" / "cdnow_sample.csv"
BASE = (
    "predict",
    "clv",
    "--transactions",
    str(DATA),
    "--customer-col",
    "customer_id",
    "--date-col",
    "date",
    "--date-format",
    "%Y%m%d",
)


def test_clv_json_reproduces_the_published_bgnbd_and_gamma_gamma(tmp_path: Path) -> None:
    res = run(
        tmp_path,
        *BASE,
        "--amount-col",
        "amount",
        "--calibration-end",
        "1997-09-30",
        "--holdout-end",
        "1998-06-30",
        "--json",
    )
    result = one_json(res)
    assert set(result) >= {
        "model",
        "params",
        "log_likelihood",
        "customers",
        "gamma_gamma",
        "holdout",
    }
    assert result["model"] == "bgnbd" and result["customers"] == 2357
    p = result["params"]
    # Fader, Hardie & Lee (2005): r 0.243, alpha 4.414, a 0.793, b 2.426, LL -9582.4 — from
    # the raw transactions, with same-day purchases merged and weeks as the unit.
    assert (round(p["r"], 3), round(p["alpha"], 3), round(p["a"], 3), round(p["b"], 3)) == (
        0.243,
        4.414,
        0.793,
        2.426,
    )
    assert result["log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    gg = result["gamma_gamma"]
    assert (round(gg["p"], 2), round(gg["q"], 2), round(gg["v"], 1)) == (6.25, 3.74, 15.4)
    h = result["holdout"]
    assert set(h) == {"actual_transactions", "predicted_transactions", "customer_correlation"}
    assert h["actual_transactions"] > 0 and 0.5 < h["customer_correlation"] < 1
    assert 0.8 < h["predicted_transactions"] / h["actual_transactions"] < 1.2


def test_clv_paretonbd_human_output(tmp_path: Path) -> None:
    text = human(run(tmp_path, *BASE, "--calibration-end", "1997-09-30", "--model", "paretonbd"))
    assert "paretonbd on 2,357 customers" in text and "r = 0.5533" in text


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--calibration-end", "1999-01-01"), ("--calibration-end", "outside the data")),
        (
            ("--calibration-end", "1997-09-30", "--holdout-end", "1997-06-30"),
            ("--holdout-end", "not after"),
        ),
        (("--calibration-end", "not-a-date"), ("--calibration-end", "not a date")),
        (("--calibration-end", "1997-09-30", "--model", "lifetimes"), ("--model", "bgnbd")),
        (
            ("--calibration-end", "1997-09-30", "--time-unit", "month"),
            ("--time-unit", "day or week"),
        ),
        (("--calibration-end", "1997-09-30", "--amount-col", "price"), ("--amount-col", "amount")),
    ],
)
def test_clv_bad_input_exits_2_with_one_line(tmp_path: Path, args, needles) -> None:
    error_line(run(tmp_path, *BASE, *args), *needles)


def test_clv_unparsable_date_names_the_row(tmp_path: Path) -> None:
    bad = tmp_path / "tx.csv"
    bad.write_text("c,d\n1,2020-01-01\n1,yesterday\n", encoding="utf-8")
    res = run(
        tmp_path,
        "predict",
        "clv",
        "--transactions",
        str(bad),
        "--customer-col",
        "c",
        "--date-col",
        "d",
        "--calibration-end",
        "2020-01-01",
    )
    error_line(res, "row 3", "'yesterday'", "--date-format")


# -- predict propensity on a transaction log ---------------------------------------------------

PROPENSITY = (
    "predict",
    "propensity",
    "--transactions",
    str(DATA),
    "--customer-col",
    "customer_id",
    "--date-col",
    "date",
    "--date-format",
    "%Y%m%d",
    "--amount-col",
    "amount",
    "--calibration-end",
    "1997-09-30",
)


def test_propensity_json_has_each_classifier_and_the_clv_model(tmp_path: Path) -> None:
    result = one_json(run(tmp_path, *PROPENSITY, "--holdout-end", "1998-06-30", "--json"))
    models = result["models"]
    assert set(models) == {"logistic", "tree", "forest", "lightgbm", "mlp", "bgnbd"}
    assert result["best"] in models
    best_val = max(m["validation_auc"] for m in models.values())
    assert models[result["best"]]["validation_auc"] == best_val
    for m in models.values():
        assert 0.6 < m["auc"] < 0.9
    # BG/NBD's expected transactions rank the holdout buyers about as well as the classifiers.
    assert models["bgnbd"]["auc"] > 0.74
    assert result["customers"] == 2357


def test_propensity_human_table(tmp_path: Path) -> None:
    text = human(run(tmp_path, *PROPENSITY, "--holdout-end", "1998-06-30", "--model", "paretonbd"))
    assert "paretonbd" in text and "Best on validation" in text


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ((), ("--holdout-end",)),
        (("--holdout-end", "1997-08-01"), ("--holdout-end 1997-08-01", "not after")),
        (("--holdout-end", "soon"), ("--holdout-end 'soon'", "YYYY-MM-DD")),
    ],
)
def test_propensity_bad_input(tmp_path: Path, args, needles) -> None:
    error_line(run(tmp_path, *PROPENSITY, *args), *needles)


def test_propensity_early_calibration_end(tmp_path: Path) -> None:
    args = [a if a != "1997-09-30" else "1997-01-05" for a in PROPENSITY]
    error_line(run(tmp_path, *args, "--holdout-end", "1997-06-30"), "leaves 4 days of history")


# -- predict train | score | report on a store -----------------------------------------------


@pytest.fixture(scope="module")
def store(shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("predict_cli")
    for kind in ("items", "users", "events"):
        res = run(folder, "ingest", kind, shop.file(kind), "--json", db=folder / "store.duckdb")
        assert res.code == 0, res.stderr
    return folder / "store.duckdb"


def test_train_score_report_round_trip(store: Path, tmp_path: Path) -> None:
    db = copy_store(store, tmp_path / "a")
    trained = one_json(
        run(tmp_path, "predict", "train", "--models", "logistic,lightgbm", "--json", db=db)
    )
    assert trained["model_id"] == "propensity-1"
    assert {r["model"] for r in trained["comparison"]} == {"logistic", "lightgbm"}
    assert trained["test"]["roc_auc"] > 0.65
    scored = one_json(run(tmp_path, "predict", "score", "--json", db=db))
    assert scored["users"] == sql(db, "SELECT count(*) FROM scores")[0][0]
    clv = one_json(run(tmp_path, "predict", "clv", "--json", db=db))
    assert clv["model_id"] == "clv-1" and clv["converged"]
    report = one_json(run(tmp_path, "predict", "report", "--json", db=db))
    assert set(report["models"]) == {"propensity", "clv"}
    assert set(report["scores"]) == {"propensity", "clv", "expected_orders", "p_alive"}
    text = human(run(tmp_path, "predict", "report", db=db))
    assert "propensity-1" in text and "AUC" in text
    listed = one_json(run(tmp_path, "predict", "models", "--json", db=db))
    assert [m["model_id"] for m in listed["models"]] == ["clv-1", "propensity-1"]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("train", "--target", "buyers"), ("--target 'buyers' is unknown", "propensity, churn")),
        (("train", "--horizon", "400"), ("--horizon 400", "lower --horizon")),
        (("train", "--models", "logistic,xgb"), ("classifier 'xgb' is unknown",)),
        (("train", "--as-of", "someday"), ("--as-of 'someday'", "ISO 8601")),
        (("score",), ("no trained propensity model", "predict train")),
        (("score", "--target", "churn"), ("no trained churn model",)),
    ],
)
def test_store_commands_bad_input(store: Path, tmp_path: Path, args, needles) -> None:
    db = copy_store(store, tmp_path / "b")
    before = snapshot(db)
    error_line(run(tmp_path, "predict", *args, db=db), *needles)
    assert snapshot(db) == before
    assert not (db.parent / (db.name + ".models") / "predict").exists() or not any(
        (db.parent / (db.name + ".models") / "predict").iterdir()
    )


def test_uplift_and_its_scores(store: Path, tmp_path: Path, shop) -> None:
    db = copy_store(store, tmp_path / "u")
    result = one_json(
        run(
            tmp_path,
            "predict",
            "uplift",
            "--assignments",
            shop.file("campaigns"),
            "--truth",
            str(shop.dir / "truth" / "campaigns.parquet"),
            "--models",
            "t_learner,x_learner",
            "--json",
            db=db,
        )
    )
    assert result["model_id"] == "uplift-1" and result["model"] in ("t_learner", "x_learner")
    assert set(result["comparison"]) == {"t_learner", "x_learner"}
    assert "true_correlation" in result["comparison"]["x_learner"]["test"]
    scored = one_json(run(tmp_path, "predict", "score", "--target", "uplift", "--json", db=db))
    assert scored["users"] == sql(db, "SELECT count(*) FROM scores WHERE score = 'uplift'")[0][0]
    assert scored["worth_messaging"] >= 0
    error_line(
        run(tmp_path, "predict", "uplift", "--assignments", str(tmp_path / "none.csv"), db=db),
        "--assignments",
        "no such file",
    )
    error_line(
        run(
            tmp_path,
            "predict",
            "uplift",
            "--assignments",
            shop.file("campaigns"),
            "--models",
            "s_learner",
            db=db,
        ),
        "unknown uplift model 's_learner'",
    )


#: (args, needles): NaN and infinities were tracebacks (they overflowed timedelta), and so was
#: 100,000 training windows; each is refused before any work, naming the option and its range.
NUMBERS = [
    (
        ("train", "--horizon", "nan"),
        ("--horizon must be a finite number between 0.0416667 and 36,500, not nan", "one hour"),
    ),
    (("train", "--horizon", "inf"), ("--horizon must be a finite number between", "not inf")),
    (("train", "--horizon", "1e308"), ("--horizon must be between 0.0416667 and 36,500",)),
    # labelled nothing, after a minute of point-in-time profiles
    (("train", "--horizon", "1e-300"), ("--horizon must be between", "not 1e-300", "one hour")),
    (("train", "--train-windows", "100000"), ("--train-windows must be between 1 and 50",)),
    (("train", "--train-windows", "-1"), ("--train-windows", "-1")),
    (("uplift", "--window-days", "nan"), ("--window-days must be a finite number", "not nan")),
    (("uplift", "--window-days", "inf"), ("--window-days must be a finite number", "not inf")),
    (("uplift", "--window-days", "-1"), ("--window-days must be between", "not -1")),
    (("uplift", "--window-days", "1e-300"), ("--window-days must be between", "one hour")),
]
#: One quick model per command, so that a value that is not refused fails fast.
_ONE = {"train": "logistic", "uplift": "class_transformation"}


@pytest.mark.parametrize(("args", "needles"), NUMBERS, ids=[" ".join(a) for a, _ in NUMBERS])
def test_numbers_out_of_bounds_are_refused_before_any_work(
    store: Path, tmp_path: Path, shop, args, needles
) -> None:
    db = copy_store(store, tmp_path / "n")
    before = snapshot(db)
    extra = ("--assignments", shop.file("campaigns")) if args[0] == "uplift" else ()
    error_line(run(tmp_path, "predict", *args, *extra, "--models", _ONE[args[0]], db=db), *needles)
    assert snapshot(db) == before
    assert not (db.parent / (db.name + ".models")).exists()
