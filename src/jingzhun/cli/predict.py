"""``jingzhun predict train|score|models|report|clv|propensity|uplift``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jingzhun.cli.common import (
    FromStoreOpt,
    Globals,
    JsonOpt,
    distinct_warnings,
    err,
    frame_records,
    from_store_for_spark,
    out,
    print_frame,
    print_json,
    steps,
    text,
)

app = typer.Typer(
    help="Predictions: purchase propensity, churn, customer lifetime value, uplift.",
    no_args_is_help=True,
)

TargetOpt = Annotated[
    str,
    typer.Option(
        "--target", "-t", help="propensity (buys within the horizon), churn, or uplift (score)."
    ),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="Score (and split) as of this time; default: the latest event."),
]


def _table(comparison: list[dict]) -> None:
    """The comparison: ranking on validation and test, the rest on test."""
    import pandas as pd

    names = {
        "validation_roc_auc": "val AUC",
        "validation_pr_auc": "val PR",
        "test_roc_auc": "AUC",
        "test_pr_auc": "PR AUC",
        "test_log_loss": "log loss",
        "test_brier": "Brier",
        "test_lift_10": "lift@10",
        "test_gain_20": "gain@20",
        "test_ece": "ECE",
    }
    rows = [{"model": r["model"], **{v: r.get(k) for k, v in names.items()}} for r in comparison]
    print_frame(pd.DataFrame(rows))


@app.command()
def train(
    ctx: typer.Context,
    target: TargetOpt = "propensity",
    horizon: Annotated[
        float | None, typer.Option("--horizon", help="Label window in days (default: [predict]).")
    ] = None,
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma-separated: logistic,tree,forest,lightgbm,mlp."),
    ] = None,
    train_windows: Annotated[
        int | None, typer.Option("--train-windows", help="Training cutoffs stacked.")
    ] = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare the classifiers on a time-based split; the best (calibrated) becomes active."""
    g: Globals = ctx.obj
    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    with distinct_warnings(), g.workspace(create=True) as ws, steps(not as_json) as say:
        result = ws.predict.train(
            target,
            horizon_days=horizon,
            as_of=as_of,
            models=names,
            train_windows=train_windows,
            progress=say,
        )
    if as_json:
        print_json(result.to_dict())
        return
    out.print(
        f"[bold]{text(result.model_id)}[/]: {text(result.target)}, best on validation ({text(result.select)}): "
        f"[bold]{text(result.model)}[/]; rows {text(result.rows)}; base rates {text(result.base_rates)}"
    )
    _table(result.comparison)
    t = result.test
    out.print(
        f"Test, calibrated: ROC AUC {t['roc_auc']:.3f}, PR AUC {t['pr_auc']:.3f}, log loss "
        f"{t['log_loss']:.4f}, Brier {t['brier']:.4f}, lift@10% {t['lift_10']:.2f}, ECE {t['ece']:.4f}."
    )


@app.command()
def score(
    ctx: typer.Context,
    target: TargetOpt = "propensity",
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="A model id (default: the active one).")
    ] = None,
    as_of: AsOfOpt = None,
    from_store: FromStoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score every user (churn: every active customer); write scores and tags (with --engine
    spark: on the lake --db names, from its profiles, by a model of the store --from-store
    names)."""
    g: Globals = ctx.obj
    store = from_store_for_spark(g, from_store, "predict score")
    if store is not None:
        from jingzhun.config import load_settings
        from jingzhun.contracts.time import parse_as_of
        from jingzhun.predict.on_lake import prepare, score_on_lake

        settings = load_settings(g.config)
        at = None if as_of is None else parse_as_of(as_of, param="as_of")
        with steps(not as_json) as say:
            say("reading the model from the store")
            job = prepare(store, settings, target, model)
            say("starting Spark")
            with g.lake() as lake:
                say(f"scoring {job.record.kind} on Spark")
                result = score_on_lake(lake, settings, job, at)
    else:
        with g.workspace(create=True) as ws, steps(not as_json) as say:
            say(f"scoring {target}")
            result = ws.predict.score(target, model=model, as_of=as_of)
    if as_json:
        print_json(result.to_dict())
        return
    out.print(
        f"{result.users:,} users scored with {text(result.model_id)} as of {result.as_of:%Y-%m-%d}: "
        f"mean {result.mean:.3f}; tags {text(result.tags)}."
    )


@app.command("models")
def models_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every trained predict model, newest first; the active ones are marked."""
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=True) as ws:
        frame = ws.predict.models()
    if as_json:
        print_json({"models": frame_records(frame)})
        return
    print_frame(frame)


@app.command()
def report(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The active models' comparisons (validation and test) and the score distributions."""
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=True) as ws:
        result = ws.predict_report()
    if as_json:
        print_json(result)
        return
    if not result["models"]:
        out.print("No predict models yet: run jingzhun predict train.")
    for target, m in result["models"].items():
        metrics = m["metrics"]
        out.print(
            f"[bold]{text(target)}[/]: {text(m['model_id'])} ({text(m['model'])}), as of {text(m['as_of'])}"
        )
        if "comparison" in metrics:
            rows = [
                {
                    "model": name,
                    **{f"{p}_{k}": v for p, vals in parts.items() for k, v in vals.items()},
                }
                for name, parts in metrics["comparison"].items()
            ]
            _table(rows)
    if result["scores"]:
        import pandas as pd

        print_frame(pd.DataFrame([{"score": k, **v} for k, v in result["scores"].items()]))


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
    try:
        dates = pd.to_datetime(frame[date_col], format=date_format, errors="coerce")
    except ValueError as exc:  # a bad directive in the format itself, e.g. %_
        raise InputError(
            f"--date-format {date_format!r} is not a strptime format ({exc})",
            hint="e.g. %Y%m%d or %d/%m/%Y",
        ) from None
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


TransactionsOpt = Annotated[
    Path | None,
    typer.Option("--transactions", help="A transaction log (CSV/TSV/Parquet with a header)."),
]
CustomerOpt = Annotated[str | None, typer.Option("--customer-col", help="Customer column.")]
DateOpt = Annotated[str | None, typer.Option("--date-col", help="Date column.")]
CalEndOpt = Annotated[
    str | None, typer.Option("--calibration-end", help="Last day of the calibration period.")
]
SepOpt = Annotated[str | None, typer.Option("--sep", help="Field separator; \\t for tab.")]
AmountOpt = Annotated[
    str | None, typer.Option("--amount-col", help="Amount column (for Gamma-Gamma).")
]
FormatOpt = Annotated[
    str | None, typer.Option("--date-format", help="strptime format, e.g. %Y%m%d.")
]
UnitOpt = Annotated[str, typer.Option("--time-unit", help="day or week.")]
HoldoutOpt = Annotated[
    str | None, typer.Option("--holdout-end", help="Last day of the holdout period.")
]
ModelOpt = Annotated[str, typer.Option("--model", help="bgnbd or paretonbd.")]


def _day(flag: str, value: str | None):
    import pandas as pd

    from jingzhun.errors import InputError

    if value is None:
        return None
    try:
        day = pd.Timestamp(value)
    except (ValueError, OverflowError):
        day = pd.NaT
    if pd.isna(day):  # '' parses as NaT, which failed later with a traceback (issue 12)
        raise InputError(f"{flag} {value!r} is not a date", hint="use YYYY-MM-DD")
    return day


def _log(transactions, sep, customer_col, date_col, amount_col, date_format, calibration_end):
    from jingzhun.errors import InputError

    for flag, value in (
        ("--customer-col", customer_col),
        ("--date-col", date_col),
        ("--calibration-end", calibration_end),
    ):
        if value is None:
            raise InputError(f"--transactions needs {flag}", hint=f"give {flag}")
    sep = "\t" if sep in ("\\t", "tab") else sep
    return read_transactions(
        transactions,
        sep=sep,
        customer_col=customer_col,
        date_col=date_col,
        amount_col=amount_col,
        date_format=date_format,
    )


@app.command()
def clv(
    ctx: typer.Context,
    transactions: TransactionsOpt = None,
    customer_col: CustomerOpt = None,
    date_col: DateOpt = None,
    calibration_end: CalEndOpt = None,
    sep: SepOpt = None,
    amount_col: AmountOpt = None,
    date_format: FormatOpt = None,
    time_unit: UnitOpt = "week",
    holdout_end: HoldoutOpt = None,
    model: ModelOpt = "bgnbd",
    as_json: JsonOpt = False,
) -> None:
    """Fit BG/NBD or Pareto/NBD (and Gamma-Gamma) to a transaction log, or — without
    --transactions — to the store's orders, writing clv, expected_orders and p_alive scores."""
    from jingzhun.predict.clv import fit_log, purchase_model, summarise

    purchase_model(model)  # before reading anything
    if transactions is None:
        g: Globals = ctx.obj
        with g.workspace(create=True) as ws, steps(not as_json) as say:
            say(f"fitting {model} and Gamma-Gamma to the store's orders")
            result = ws.predict_clv(model=model, unit=time_unit)
        if as_json:
            print_json(result)
            return
        params = ", ".join(f"{k} = {v:.4g}" for k, v in result["params"]["purchase"][model].items())
        out.print(
            f"{text(result['model_id'])}: {text(model)} on {result['customers']:,} customers ({text(params)}); "
            f"expected CLV {result['total_clv']:,.0f} in total, {result['mean_clv']:,.2f} on average."
        )
        return
    log = _log(transactions, sep, customer_col, date_col, amount_col, date_format, calibration_end)
    summary = summarise(
        log,
        calibration_end=_day("--calibration-end", calibration_end),
        holdout_end=_day("--holdout-end", holdout_end),
        unit=time_unit,
    )
    result = fit_log(summary, model)
    if as_json:
        print_json(result)
        return
    params = ", ".join(f"{k} = {v:.4g}" for k, v in result["params"].items())
    out.print(
        f"{text(result['model'])} on {result['customers']:,} customers: {text(params)}; log-likelihood {result['log_likelihood']:.1f}"
    )
    if result["gamma_gamma"]:
        out.print(
            "Gamma-Gamma: "
            + ", ".join(f"{text(k)} = {v:.4g}" for k, v in result["gamma_gamma"].items())
        )
    if result["holdout"]:
        h = result["holdout"]
        out.print(
            f"Holdout: {h['actual_transactions']:,.0f} actual vs {h['predicted_transactions']:,.1f} predicted repeat transactions; per-customer correlation {text(h['customer_correlation'])}"
        )


@app.command()
def propensity(
    transactions: Annotated[
        Path, typer.Option("--transactions", help="A transaction log (CSV/TSV/Parquet).")
    ],
    customer_col: CustomerOpt = None,
    date_col: DateOpt = None,
    calibration_end: CalEndOpt = None,
    holdout_end: HoldoutOpt = None,
    sep: SepOpt = None,
    amount_col: AmountOpt = None,
    date_format: FormatOpt = None,
    time_unit: UnitOpt = "week",
    model: ModelOpt = "bgnbd",
    as_json: JsonOpt = False,
) -> None:
    """Holdout ROC AUC of each classifier and of the CLV model: who buys between the
    calibration end and the holdout end?"""
    from jingzhun.errors import InputError
    from jingzhun.predict.clv import purchase_model
    from jingzhun.predict.transactions import propensity_log

    purchase_model(model)
    if holdout_end is None:
        raise InputError(
            "predict propensity needs --holdout-end", hint="the label is a purchase up to it"
        )
    log = _log(transactions, sep, customer_col, date_col, amount_col, date_format, calibration_end)
    with steps(not as_json) as say:
        result = propensity_log(
            log,
            calibration_end=_day("--calibration-end", calibration_end),
            holdout_end=_day("--holdout-end", holdout_end),
            model=model,
            unit=time_unit,
            progress=say,
        )
    if as_json:
        print_json(result)
        return
    import pandas as pd

    print_frame(pd.DataFrame([{"model": k, **v} for k, v in result["models"].items()]))
    out.print(
        f"Best on validation: [bold]{text(result['best'])}[/]; {result['holdout_buyers']:,} of "
        f"{result['customers']:,} customers bought in the holdout."
    )


@app.command()
def uplift(
    ctx: typer.Context,
    assignments: Annotated[
        Path | None,
        typer.Option(
            "--assignments",
            help="A past randomized campaign in a file: user_id, group (treatment/control), "
            "sent_at [, campaign_id]. Without it, --campaign names a campaign in the store.",
        ),
    ] = None,
    campaign: Annotated[
        str | None,
        typer.Option(
            "--campaign",
            help="A campaign sent from this store (or, with --assignments, the campaign_id "
            "to take from the file).",
        ),
    ] = None,
    window_days: Annotated[
        float | None,
        typer.Option(
            "--window-days",
            help="An order within N days of the send converts (default: the stored "
            "campaign's conversion window, else 14).",
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma-separated: t_learner,x_learner,class_transformation."),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth", help="The simulator's true uplift per user (truth/campaigns.parquet)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Learn who buys because of a message from a past randomized campaign — a stored one
    (--campaign NAME) or a file (--assignments); the best learner on validation (Qini)
    becomes the active uplift model (score it with --target uplift)."""
    from jingzhun.errors import InputError
    from jingzhun.ingest.logs import read_file

    if assignments is None and campaign is None:
        raise InputError(
            "give --campaign NAME (a campaign sent from this store) or --assignments FILE"
        )
    frame = (
        read_file(assignments, "--assignments", sep=None, hint="a CSV or Parquet file")
        if assignments is not None
        else None
    )
    true = read_file(truth, "--truth", sep=None, hint="truth/campaigns.parquet") if truth else None
    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    g: Globals = ctx.obj
    with g.workspace(create=True) as ws, steps(not as_json) as say:
        window = window_days
        if frame is None:
            assert campaign is not None
            frame = ws.campaigns.assignments(campaign)
            if window is None:
                window = ws.campaigns.spec(campaign).offer.conversion_window_days
        result = ws.predict_uplift(
            frame,
            campaign=campaign,
            window_days=14.0 if window is None else window,
            models=names,
            truth=true,
            progress=say,
        )
    unknown = int(result.get("unknown_users") or 0)
    if unknown:
        assigned = unknown + sum(result["rows"].values())
        verb = "is" if unknown == 1 else "are"
        # Most of them unknown: the file is likely another shop's (or another store's).
        hint = "; is the file from another shop?" if 2 * unknown > assigned else ""
        said = (
            f"{unknown:,} of the {assigned:,} users in --assignments {verb} not known to the "
            f"store at the send and were left out{hint}"
        )
        err.print(f"warning: {text(said)}")
    if as_json:
        print_json(result)
        return
    import pandas as pd

    rows = [
        {
            "model": name,
            **{
                f"{p} {k}": v
                for p, vals in parts.items()
                for k, v in vals.items()
                if k in ("qini_auc", "uplift_at_20")
            },
        }
        for name, parts in result["comparison"].items()
    ]
    print_frame(pd.DataFrame(rows))
    policy = result["policy"]
    out.print(
        f"[bold]{text(result['model_id'])}[/]: {text(result['model'])} (best Qini on validation). Conversion "
        f"{result['conversion']['treatment']:.2%} treated vs {result['conversion']['control']:.2%} control; "
        f"worth messaging (uplift x margin > cost): {policy['targeted_share']:.0%} of the test users."
    )
