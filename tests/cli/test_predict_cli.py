"""``jingzhun predict clv`` on a real transaction log (CDNOW), as a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.subprocess_cli import error_line, human, one_json, run

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
