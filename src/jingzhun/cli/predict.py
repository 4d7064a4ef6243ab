"""``jingzhun predict clv`` (the rest of the predict stage is still to come)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jingzhun.cli.common import out, print_json

app = typer.Typer(
    help="Predictions: customer lifetime value (BG/NBD, Pareto/NBD, Gamma-Gamma).",
    no_args_is_help=True,
)


def read_transactions(
    path: Path,
    *,
    sep: str | None,
    customer_col: str,
    date_col: str,
    amount_col: str | None,
    date_format: str | None,
):
    """A transaction log as columns customer, date[, amount]; bad dates and amounts are
    errors naming the row."""
    import pandas as pd

    from jingzhun.errors import InputError
    from jingzhun.ingest.logs import read_file

    frame = read_file(path, "--transactions", sep=sep, hint="check --sep")
    for flag, col in (
        ("--customer-col", customer_col),
        ("--date-col", date_col),
        ("--amount-col", amount_col),
    ):
        if col is not None and col not in frame.columns:
            raise InputError(
                f"{flag} {col!r}: no such column in {path.name}",
                hint=f"the columns are: {', '.join(frame.columns)}",
            )
    if frame.empty:
        raise InputError(f"--transactions {path}: no rows", hint="give a file with transactions")
    dates = pd.to_datetime(frame[date_col], format=date_format, errors="coerce")
    if dates.isna().any():
        row = int(dates.isna().to_numpy().argmax())
        raise InputError(
            f"{path.name}: row {row + 2}, {date_col}={frame[date_col].iloc[row]!r} is not a date",
            hint="give --date-format, e.g. %Y%m%d or %d/%m/%Y",
        )
    data = {"customer": frame[customer_col], "date": dates}
    if amount_col is not None:
        amounts = pd.to_numeric(frame[amount_col], errors="coerce")
        if amounts.isna().any():
            row = int(amounts.isna().to_numpy().argmax())
            raise InputError(
                f"{path.name}: row {row + 2}, {amount_col}={frame[amount_col].iloc[row]!r} is not a number",
                hint="fix the row or leave out --amount-col",
            )
        data["amount"] = amounts
    return pd.DataFrame(data)


@app.command()
def clv(
    transactions: Annotated[
        Path, typer.Option("--transactions", help="A transaction log (CSV/TSV with a header).")
    ],
    customer_col: Annotated[str, typer.Option("--customer-col", help="Customer column.")],
    date_col: Annotated[str, typer.Option("--date-col", help="Date column.")],
    calibration_end: Annotated[
        str, typer.Option("--calibration-end", help="Last day of the calibration period.")
    ],
    sep: Annotated[str | None, typer.Option("--sep", help="Field separator; \\t for tab.")] = None,
    amount_col: Annotated[
        str | None, typer.Option("--amount-col", help="Amount column (for Gamma-Gamma).")
    ] = None,
    date_format: Annotated[
        str | None, typer.Option("--date-format", help="strptime format, e.g. %Y%m%d.")
    ] = None,
    time_unit: Annotated[str, typer.Option("--time-unit", help="day or week.")] = "week",
    holdout_end: Annotated[
        str | None, typer.Option("--holdout-end", help="Last day of the holdout period.")
    ] = None,
    model: Annotated[str, typer.Option("--model", help="bgnbd or paretonbd.")] = "bgnbd",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Fit BG/NBD or Pareto/NBD (and Gamma-Gamma) to any transaction log."""
    import pandas as pd

    from jingzhun.errors import InputError
    from jingzhun.predict.clv import fit_log, purchase_model, summarise

    def day(flag: str, value: str | None):
        if value is None:
            return None
        try:
            return pd.Timestamp(value)
        except ValueError:
            raise InputError(f"{flag} {value!r} is not a date", hint="use YYYY-MM-DD") from None

    sep = "\t" if sep in ("\\t", "tab") else sep
    purchase_model(model)  # before reading the file
    log = read_transactions(
        transactions,
        sep=sep,
        customer_col=customer_col,
        date_col=date_col,
        amount_col=amount_col,
        date_format=date_format,
    )
    summary = summarise(
        log,
        calibration_end=day("--calibration-end", calibration_end),
        holdout_end=day("--holdout-end", holdout_end),
        unit=time_unit,
    )
    result = fit_log(summary, model)
    if as_json:
        print_json(result)
        return
    params = ", ".join(f"{k} = {v:.4g}" for k, v in result["params"].items())
    out.print(
        f"{result['model']} on {result['customers']:,} customers: {params}; log-likelihood {result['log_likelihood']:.1f}"
    )
    if result["gamma_gamma"]:
        out.print(
            "Gamma-Gamma: " + ", ".join(f"{k} = {v:.4g}" for k, v in result["gamma_gamma"].items())
        )
    if result["holdout"]:
        h = result["holdout"]
        out.print(
            f"Holdout: {h['actual_transactions']:,.0f} actual vs {h['predicted_transactions']:,.1f} predicted repeat transactions; per-customer correlation {h['customer_correlation']}"
        )
