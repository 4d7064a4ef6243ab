"""``jingzhun recommend train|list|batch|show|session|evaluate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from jingzhun.cli.common import (
    FromStoreOpt,
    Globals,
    JsonOpt,
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
    help="Recommendations: popularity, item/user kNN, ALS, BPR, EASE, content, hybrid; rules, evaluation.",
    no_args_is_help=True,
)

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="A model name or model id (default: the active model)."),
]


def _params(values: list[str] | None) -> dict[str, Any]:
    from jingzhun.errors import InputError

    params: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param {item!r}", hint="write NAME=VALUE, e.g. --param factors=64")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


@app.command()
def train(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="pop, itemknn, userknn, als, bpr, ease, content or hybrid (default: [recommend] model).",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A hyperparameter NAME=VALUE (repeatable)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a model on the store's interactions; it becomes the active model."""
    g: Globals = ctx.obj
    with g.workspace(create=True) as ws, steps(not as_json) as say:
        say(f"training {model or ws.settings.recommend.model}")
        result = ws.recs.train(model, params=_params(param))
    if as_json:
        print_json(result.to_dict())
        return
    out.print(
        f"Model [bold]{text(result.model_id)}[/]: {result.users:,} users x {result.items:,} items, "
        f"{result.interactions:,} interactions, fitted in {result.fit_seconds:.1f}s; saved in the store as the active model."
    )


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every trained model version, newest first; the active one is marked."""
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=True) as ws:
        models = ws.recs.models()
    if as_json:
        print_json({"models": frame_records(models)})
        return
    if not models.empty:
        models = models.assign(created_at=models["created_at"].dt.strftime("%Y-%m-%d %H:%M"))
    print_frame(
        models[
            ["model_id", "active", "users", "items", "interactions", "fit_seconds", "created_at"]
        ],
        "Recommendation models",
    )


@app.command()
def batch(
    ctx: typer.Context,
    k: Annotated[
        int | None, typer.Option("--k", help="Items per user (default: [recommend] k).")
    ] = None,
    model: ModelOpt = None,
    from_store: FromStoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Top k for every user, after the business rules, into the recommendations table (with
    --engine spark: on the lake --db names, by a model of the store --from-store names)."""
    g: Globals = ctx.obj
    store = from_store_for_spark(g, from_store, "recommend batch")
    if store is not None:
        from jingzhun.config import load_settings
        from jingzhun.recommend.on_lake import batch_on_lake, prepare

        settings = load_settings(g.config)
        with steps(not as_json) as say:
            say("reading the model from the store")
            job = prepare(store, settings, model, k)
            say("starting Spark")
            with g.lake() as lake:
                say("recommending on Spark")
                done = batch_on_lake(lake, settings, job)
        rows, users, model_id = done.rows, done.users, done.model
    else:
        rows, users, model_id = _batch(g, k, model, as_json)
    if as_json:
        print_json({"rows": rows, "users": int(users or 0), "model": model_id})
        return
    out.print(f"Wrote {rows:,} recommendations for {int(users or 0):,} users ({text(model_id)}).")


def _batch(g: Globals, k: int | None, model: str | None, as_json: bool) -> tuple[int, Any, Any]:
    with g.workspace(create=True) as ws, steps(not as_json) as say:
        say("recommending for every user")
        rows = ws.recs.batch(
            k,
            model=model,
            progress=lambda done, total: say(f"recommending: {done:,}/{total:,} users"),
        )
        latest = ws.recs.latest_batch()
    if latest is None:
        return rows, 0, None
    return rows, latest.users, latest.model


@app.command()
def show(
    ctx: typer.Context,
    user_id: Annotated[
        str, typer.Argument(help="The user; an unknown user gets cold-start recommendations.")
    ],
    k: Annotated[int, typer.Option("--k", help="How many items.")] = 10,
    model: ModelOpt = None,
    lang: Annotated[str, typer.Option("--lang", help="Explanations in en or zh.")] = "en",
    as_json: JsonOpt = False,
) -> None:
    """One user's recommendations, computed now from their latest history, with reasons."""
    from jingzhun.errors import InputError

    if lang not in ("en", "zh"):
        raise InputError(f"--lang {lang!r}", hint="use en or zh")
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=True) as ws:
        result = ws.recommend(user_id, k, model=model, lang=lang)
    if as_json:
        print_json(result)
        return
    cold = result["cold_start"]
    note = " (cold start: no history yet, so ranked by popularity)" if cold else ""
    seg = f", segment {result['segment']}" if result.get("segment") else ""
    out.print(f"[bold]{text(user_id)}[/] by {text(result['model'])}{text(seg)}{text(note)}")
    frame = pd.DataFrame(result["items"])
    if not frame.empty:
        # A cold start ranks by popularity alone: the model's scores are tie-breakers too small
        # to read (1e-06, 0), so the rank stands for them.
        columns = ["rank", "item_id", "title", "explanation"]
        frame = frame[columns if cold else [*columns[:3], "score", columns[3]]]
    print_frame(frame, "Recommendations", max_width=48)


@app.command()
def session(
    ctx: typer.Context,
    items: Annotated[list[str], typer.Argument(help="The session's item ids, oldest first.")],
    k: Annotated[int, typer.Option("--k", help="How many items.")] = 10,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Real-time recommendations for the items of a browsing session."""
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=True) as ws:
        frame = ws.recs.session(items, k, model=model)
    unknown: list[str] = frame.attrs.get("unknown_items", [])
    if unknown:
        shown = ", ".join(unknown[:10]) + (", …" if len(unknown) > 10 else "")
        what = (
            "none of the session's items is known to the model: these are popular items"
            if len(unknown) == len(items)
            else f"{len(unknown):,} of the {len(items):,} session items are not known to the "
            "model and were left out"
        )
        err.print(f"warning: {text(what)} (unknown: {text(shown)}); check the ids, or retrain")
    if as_json:
        # The unknown items only when there are some, beside the list.
        extra = {"unknown_items": unknown} if unknown else {}
        print_json({"items": frame_records(frame.drop(columns="session_items")), **extra})
        return
    print_frame(frame.drop(columns="session_items"), "Next in this session")


@app.command()
def evaluate(
    ctx: typer.Context,
    interactions: Annotated[
        Path | None,
        typer.Option(
            "--interactions",
            help="Any interaction log (CSV/TSV/Parquet); default: the store's events.",
        ),
    ] = None,
    sep: Annotated[
        str | None, typer.Option("--sep", help="Field separator (default: sniffed); \\t for tab.")
    ] = None,
    user_col: Annotated[
        str, typer.Option("--user-col", help="User column (name, or number from 1).")
    ] = "user_id",
    item_col: Annotated[str, typer.Option("--item-col", help="Item column.")] = "item_id",
    rating_col: Annotated[str | None, typer.Option("--rating-col", help="Rating column.")] = None,
    time_col: Annotated[
        str | None, typer.Option("--time-col", help="Time column (epoch seconds or ISO).")
    ] = None,
    min_rating: Annotated[
        float | None,
        typer.Option(
            "--min-rating", help="Test items rated at least this are relevant (default: all)."
        ),
    ] = None,
    item_features: Annotated[
        Path | None,
        typer.Option(
            "--item-features",
            help="Item catalog (item_id, title, category, brand, price …) for content.",
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="random-by-user:RATIO, stratified-by-item:RATIO, temporal-global:RATIO or leave-last-out.",
        ),
    ] = "random-by-user:0.75",
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed of the split and tuning, 0 to 2^32-1.")
    ] = 42,
    k: Annotated[int, typer.Option("--k", help="List length.")] = 10,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Comma-separated: pop,itemknn,userknn,als,bpr,ease,content,hybrid (default: all that apply).",
        ),
    ] = None,
    budget: Annotated[
        int,
        typer.Option(
            "--budget", min=1, help="Configurations tried per model on validation (1 to 1000)."
        ),
    ] = 12,
    as_json: JsonOpt = False,
) -> None:
    """Compare models offline: split, tune on validation, score on test."""
    from jingzhun.errors import InputError
    from jingzhun.recommend.evaluate import comparison_frame, read_log
    from jingzhun.recommend.evaluate import evaluate as run_evaluation

    if interactions is None and item_features is not None:
        raise InputError(
            "--item-features goes with --interactions", hint="the store's catalog is used otherwise"
        )
    sep = "\t" if sep in ("\\t", "tab") else sep
    g: Globals = ctx.obj
    options: dict[str, Any] = {
        "split_spec": split,
        "models": None if models is None else [m for m in models.split(",") if m.strip()],
        "k": k,
        "seed": seed,
        "min_rating": min_rating,
        "budget": budget,
    }
    with steps(not as_json) as say:
        if interactions is not None:
            log = read_log(
                interactions,
                sep=sep,
                user_col=user_col,
                item_col=item_col,
                rating_col=rating_col,
                time_col=time_col,
            )
            features = _catalog_file(item_features, sep, item_col) if item_features else None
            result = run_evaluation(log, item_features=features, progress=say, **options).to_json()
        else:
            with g.workspace(create=True) as ws:
                result = ws.recommend_evaluate(progress=say, **options)
    if as_json:
        print_json(result)
        return
    out.print(
        f"{result['log']['interactions']:,} interactions, {result['log']['users']:,} users, {result['log']['items']:,} items; "
        f"split {text(result['split'])}, {result['log']['test_users']:,} test users; metrics at k={text(result['k'])}."
    )
    print_frame(
        comparison_frame(result),
        "Model comparison (test part; hyperparameters chosen on validation)",
    )
    out.print(f"Best by nDCG@{text(result['k'])}: [bold]{text(result['best'])}[/]")


def _catalog_file(path: Path, sep: str | None, item_col: str) -> pd.DataFrame:
    from jingzhun.errors import InputError
    from jingzhun.ingest.logs import read_file

    frame = read_file(
        path, "--item-features", sep=sep, all_varchar=False, hint="give a CSV or Parquet catalog"
    )
    if item_col not in frame.columns and "item_id" not in frame.columns:
        raise InputError(
            f"--item-features {path}: no column {item_col!r}",
            hint=f"the columns are: {', '.join(frame.columns)}",
        )
    return frame.rename(columns={item_col: "item_id"})
