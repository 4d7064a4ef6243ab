"""``jingzhun segment run|list|show|export|assign``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
import typer

from jingzhun.cli.common import (
    Globals,
    JsonOpt,
    err,
    frame_records,
    out,
    print_frame,
    print_json,
    steps,
    text,
)

if TYPE_CHECKING:
    from jingzhun.workspace import Workspace

app = typer.Typer(
    help="Segments: RFM, k-means, hierarchical, DBSCAN/HDBSCAN, GMM, SOM, with portraits.",
    no_args_is_help=True,
)

#: The top-categories cell of a segment whose users viewed and bought nothing with a category.
NO_CATEGORIES = "(no category activity)"

RunArg = Annotated[
    str | None,
    typer.Argument(help="A run id or a name (its active run); default: the latest run."),
]


def _features(value: str | None) -> list[str] | None:
    from jingzhun.errors import InputError

    if value is None:
        return None
    names = [f.strip() for f in value.split(",") if f.strip()]
    if not names:
        raise InputError("--features is empty: name traits separated by commas, e.g. aov,frequency")
    return names


def _k_range(value: str) -> tuple[int, int]:
    from jingzhun.errors import InputError

    try:
        lo, hi = (int(v) for v in value.split("-"))
    except ValueError:
        raise InputError(f"--k-range {value!r}: give MIN-MAX, e.g. 2-10") from None
    return lo, hi


def _pca(value: str | None) -> float | int | None:
    from jingzhun.errors import InputError

    if value is None:
        return None
    try:
        return int(value) if value.isdigit() else float(value)
    except ValueError:
        raise InputError(
            f"--pca {value!r}: give a variance fraction (0.9) or a number of components (5)"
        ) from None


@app.command()
def run(
    ctx: typer.Context,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help="rfm, kmeans, minibatch-kmeans, hierarchical, dbscan, hdbscan, gmm or som.",
        ),
    ] = "kmeans",
    k: Annotated[str, typer.Option("--k", help="Number of segments, or 'auto'.")] = "auto",
    features: Annotated[
        str | None,
        typer.Option("--features", help="Comma-separated traits (default: a documented set)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The run's name (default: the method).")
    ] = None,
    pca: Annotated[
        str | None, typer.Option("--pca", help="Keep this variance fraction or components.")
    ] = None,
    k_range: Annotated[
        str, typer.Option("--k-range", help="The k scanned by --k auto, MIN-MAX (2 to 100).")
    ] = "2-10",
    eps: Annotated[
        float | None, typer.Option("--eps", help="dbscan: neighbourhood radius (default: knee).")
    ] = None,
    min_samples: Annotated[
        int | None, typer.Option("--min-samples", min=2, help="dbscan/hdbscan: core size.")
    ] = None,
    min_cluster_size: Annotated[
        int | None, typer.Option("--min-cluster-size", min=2, help="hdbscan: smallest cluster.")
    ] = None,
    grid: Annotated[
        int | None, typer.Option("--grid", min=2, help="som: grid side (at most 100).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random state, 0 to 2^32-1.")] = 0,
    stability: Annotated[
        int,
        typer.Option(
            "--stability", min=0, help="Bootstrap refits for the stability ARI (0 to 100)."
        ),
    ] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Segment the profiles; the run becomes its name's active run (with --engine spark:
    the lake's profiles, computed on Spark; the run kept in the lake)."""
    options: dict[str, Any] = {
        key: value
        for key, value in {
            "eps": eps,
            "min_samples": min_samples,
            "min_cluster_size": min_cluster_size,
            "grid": grid,
        }.items()
        if value is not None
    }
    g: Globals = ctx.obj
    chosen: dict[str, Any] = {
        "k": k,
        "features": _features(features),
        "name": name,
        "pca": _pca(pca),
        "k_range": _k_range(k_range),
        "random_state": seed,
        "stability_resamples": stability,
    }
    if g.spark():
        result = _run_on_lake(g, method, options=options, progress=not as_json, **chosen)
    else:
        with g.workspace(create=True) as ws, steps(not as_json) as say:
            say(f"segmenting with {method}")
            result = ws.segments.run(method, **chosen, **options)
    if result.dropped_features:
        err.print(
            "warning: left out default features that are the same for every user: "
            f"{text(', '.join(result.dropped_features))} (choose traits with --features)"
        )
    if as_json:
        print_json(result.to_dict())
        return
    m = result.metrics
    out.print(
        f"Run [bold]{text(result.run_id)}[/]: {result.users:,} users in {result.segments:,} segments "
        f"by {text(result.method)} in {result.seconds:.1f}s."
    )
    quality = [
        f"{label} {m[key]:.3f}"
        for key, label in (
            ("silhouette", "silhouette"),
            ("calinski_harabasz", "Calinski-Harabasz"),
            ("davies_bouldin", "Davies-Bouldin"),
            ("stability_ari", "stability (ARI)"),
            ("noise_share", "noise"),
        )
        if isinstance(m.get(key), int | float)
    ]
    if quality:
        out.print("Quality: " + text(", ".join(quality)))
    _print_portraits(result.portraits)


def _run_on_lake(g: Globals, method: str, *, progress: bool, **run: Any) -> Any:
    """``segment run`` on the lake ``--db`` names (``--engine spark``): the options and the
    lake's profiles checked before Spark starts, the run kept in the lake."""
    from jingzhun.cli.profile import lake_with_profiles
    from jingzhun.segment.runs import check_run, run_on_lake

    checked = {key: v for key, v in run.items() if key != "pca"}
    check_run(method, **checked)
    with steps(progress) as say:
        say("starting Spark")
        with lake_with_profiles(g) as lake:
            say(f"segmenting with {method} on Spark")
            return run_on_lake(lake, method=method, **run)


def _print_portraits(portraits: list[dict[str, Any]]) -> None:
    rows = []
    for p in portraits:
        rows.append(
            {
                "segment": p["segment"],
                "name": p["label"],
                "users": p["users"],
                "share": p["share"],
                "revenue share": p["revenue_share"],
                # No category activity at all (users who never viewed a product): said, not blank.
                "top categories": ", ".join(c for c, *_ in p["top_categories"]) or NO_CATEGORIES,
            }
        )
    print_frame(pd.DataFrame(rows), "Segments", max_width=48)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every run, newest first; the active run of each name is marked."""
    g: Globals = ctx.obj
    with _runs(g) as ws:
        runs = ws.segments.list()
    if as_json:
        print_json({"runs": frame_records(runs)})
        return
    print_frame(runs, "Segment runs")


@app.command()
def show(ctx: typer.Context, run: RunArg = None, as_json: JsonOpt = False) -> None:
    """A run's parameters, metrics and segment portraits."""
    g: Globals = ctx.obj
    with _runs(g) as ws:
        info = ws.segment(run)
    if as_json:
        print_json(info)
        return
    out.print(
        f"[bold]{text(info['run_id'])}[/] ({text(info['method'])}, {'active' if info['active'] else 'history'}): "
        f"{info['users']:,} users, {info['segments']:,} segments, created {text(info['created_at'])}"
    )
    if info["features"]:
        out.print("Features: " + text(", ".join(info["features"])))
    _print_portraits(info["portraits"])
    if info["portraits"]:
        # Traits as rows, segments as columns: stays readable however many traits there are.
        z = pd.DataFrame(
            {p["segment"]: {t: v["z"] for t, v in p["traits"].items()} for p in info["portraits"]}
        ).reset_index(names="trait")
        print_frame(z, "Traits against the population (z-scores; columns are segments)")


@app.command()
def export(
    ctx: typer.Context,
    run: RunArg = None,
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="A .parquet or .csv file.", show_default=False)
    ] = Path("segment-members.parquet"),
    desensitize: Annotated[
        bool,
        typer.Option(
            "--desensitize",
            help="User ids as keyed pseudonyms (the same as profile export --desensitize).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a run's members (user_id, segment, label) to Parquet or CSV."""
    g: Globals = ctx.obj
    if g.spark() and desensitize:
        from jingzhun.errors import InputError

        raise InputError(
            "segment export --desensitize does not run on --engine spark: the pseudonyms' key "
            "is a store's vault's",
            hint="export without --desensitize, or from the DuckDB store",
        )
    # A pseudonym's key is the vault's: made on first use, so the store opens for writing.
    with (
        _runs(g, members=True, ref=run)
        if g.spark()
        else g.workspace(create=False, read_only=not desensitize)
    ) as ws:
        rows = ws.segments.export(out_path, run, desensitize=desensitize)
    if as_json:
        print_json({"out": str(out_path), "rows": rows})
        return
    out.print(f"Wrote {rows:,} members to {text(out_path)}.")


@contextlib.contextmanager
def _runs(g: Globals, *, members: bool = False, ref: str | None = None) -> Iterator[Workspace]:
    """The workspace whose runs ``list``, ``show`` and ``export`` read: the store's; with
    ``--engine spark`` a scratch store holding the lake's runs (``load_runs``: read from the
    lake's Parquet, no Spark started; with ``members``, those of the run ``ref`` names)."""
    if not g.spark():
        with g.workspace(create=False, read_only=True) as ws:
            yield ws
        return
    from jingzhun.segment.lake_runs import load_members, load_runs

    with g.lake_scratch() as (lake, ws):
        load_runs(lake, ws.store)
        if members:  # the one run's, once the runs say which run ``ref`` names
            from jingzhun.segment.runs import resolve

            load_members(lake, ws.store, resolve(ws.store, ref)["run_id"])
        yield ws


@app.command()
def assign(ctx: typer.Context, run: RunArg = None, as_json: JsonOpt = False) -> None:
    """Place users profiled since the run into its segments, without refitting."""
    g: Globals = ctx.obj
    if g.spark():
        result = _assign_on_lake(g, run, progress=not as_json)
    else:
        with g.workspace(create=True) as ws:
            result = ws.segment_assign(run)
    if as_json:
        print_json(result)
        return
    counts = ", ".join(f"{k} {v:,}" for k, v in result["segments"].items())
    out.print(
        f"Assigned {result['assigned']:,} new users to {text(result['run_id'])}"
        + (f": {text(counts)}" if counts else ".")
    )


def _assign_on_lake(g: Globals, ref: str | None, *, progress: bool) -> dict[str, Any]:
    """``segment assign`` on the lake ``--db`` names: the run and its members read from the
    lake's Parquet and its profiles checked before Spark starts; the new members kept in the
    lake."""
    from jingzhun.cli.profile import lake_with_profiles
    from jingzhun.segment.runs import assign_new_on_lake

    with _runs(g, members=True, ref=ref) as ws, steps(progress) as say:
        say("starting Spark")
        with lake_with_profiles(g) as lake:
            say("assigning new users on Spark")
            return assign_new_on_lake(lake, ws.store, ref)
