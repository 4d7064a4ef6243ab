"""``jingzhun models list|show|activate``: the one registry of trained things."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer

from jingzhun.cli.common import Globals, JsonOpt, out, print_frame, print_json, text

app = typer.Typer(
    help="Trained models of every stage (segment runs, recommenders, predict models).",
    no_args_is_help=True,
)

IdArg = Annotated[str, typer.Argument(help="A model id, as `jingzhun models list` shows it.")]

#: What activating a model changes, by kind: said after `models activate`.
_AFTER_ACTIVATE = {
    "segment": "new users are assigned to it (jingzhun segment assign)",
    "recommender": "recommend show, session and batch use it now",
    "propensity": "rescore with it: jingzhun predict score --target propensity",
    "churn": "rescore with it: jingzhun predict score --target churn",
    "clv": "its scores are those of its fit; refit with jingzhun predict clv",
    "uplift": "rescore with it: jingzhun predict score --target uplift",
}


@app.command("list")
def list_(
    ctx: typer.Context,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="segment, recommender, propensity, churn, clv or uplift.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every trained model, newest first; the active ones are marked."""
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=True) as ws:
        records = ws.models.list(kind)
    if as_json:
        print_json({"models": [r.to_dict(full=False) for r in records]})
        return
    if not records:
        out.print("No trained models yet" + (f" of kind {text(kind)}." if kind else "."))
        return
    frame = pd.DataFrame(
        {
            "model_id": [r.model_id for r in records],
            "kind": [r.kind for r in records],
            "name": [r.name for r in records],
            "method": [r.method for r in records],
            "active": ["yes" if r.active else "" for r in records],
            "created": [f"{r.created_at:%Y-%m-%d %H:%M}" for r in records],
            "size": [_size(r.artefact_bytes) for r in records],
        }
    )
    print_frame(frame, "Models")


def _size(n: int) -> str:
    """Bytes as a person reads them: 2.1 KB, 24.8 MB (– for no fitted state)."""
    if n == 0:
        return "–"
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@app.command()
def show(ctx: typer.Context, model_id: IdArg, as_json: JsonOpt = False) -> None:
    """One model: what it is, what it was fitted on, its parameters and metrics."""
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=True) as ws:
        record = ws.models.get(model_id)
    d = record.to_dict()
    if as_json:
        print_json(d)
        return
    out.print(
        f"[bold]{text(record.model_id)}[/]: {text(record.kind)} · {text(record.method)} · "
        f"{'active' if record.active else 'history'} · created {text(d['created_at'])}"
        + (f" · data before {text(d['as_of'])}" if d["as_of"] else "")
        + f" · {record.artefact_bytes:,} bytes"
    )
    if record.features:
        out.print("Features: " + text(", ".join(record.features)))
    for title, values in (("Parameters", record.params), ("Details", record.info)):
        if values:
            out.print(text(title) + ": " + text(", ".join(f"{k}={v}" for k, v in values.items())))
    headline = {k: v for k, v in record.metrics.items() if isinstance(v, (int, float, str))}
    if headline:
        out.print("Metrics: " + text(", ".join(f"{k}={v}" for k, v in headline.items())))


@app.command()
def activate(ctx: typer.Context, model_id: IdArg, as_json: JsonOpt = False) -> None:
    """Make a model the active one of its kind (of its name, for segment runs)."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        record = ws.models.activate(model_id)
    if as_json:
        print_json(record.to_dict(full=False))
        return
    out.print(
        f"{text(record.model_id)} is now the active {text(record.kind)} model"
        + (f" of {text(record.name)}" if record.kind == "segment" else "")
        + "; "
        + text(_AFTER_ACTIVATE[record.kind])
        + "."
    )
