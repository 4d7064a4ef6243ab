"""``jingzhun profile build|show|export|traits``, ``jingzhun tags list``, ``jingzhun analyze …``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
import typer

from jingzhun.cli.common import (
    Globals,
    JsonOpt,
    frame_records,
    out,
    print_frame,
    print_json,
    steps,
    text,
)
from jingzhun.config import load_settings
from jingzhun.contracts.time import parse_as_of
from jingzhun.errors import InputError

if TYPE_CHECKING:
    from jingzhun.store.lake import Lake
    from jingzhun.workspace import Workspace

app = typer.Typer(
    help="Profiles (用户画像): computed traits per user, point in time.", no_args_is_help=True
)
tags_app = typer.Typer(help="Tags from rules, RFM and quantile bins.", no_args_is_help=True)
analyze_app = typer.Typer(
    help="Behaviour analysis: trends, funnel, cohorts, baskets, frequency.", no_args_is_help=True
)

SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Only events from this time (ISO 8601).")
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="Only events before this time (ISO 8601).")
]


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    # The core names the parameter as Python spells it; the error handler shows it as a flag.
    return parse_as_of(value, param=option.removeprefix("--").replace("-", "_"))


@app.command()
def build(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Use only events before this time (default: just after the latest event).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute every user's traits, category affinity and tags (with --engine spark: on the
    lake --db names)."""
    g: Globals = ctx.obj
    if g.spark():
        from jingzhun.profile.build import build_on_lake

        with steps() as say:
            say("starting Spark")
            with g.lake() as lake:
                say("building profiles on Spark")
                result = build_on_lake(lake, load_settings(g.config), _when(as_of, "--as-of"))
    else:
        with g.workspace(create=True) as ws, steps() as say:
            say("building profiles")
            result = ws.profiles.build(as_of)
    if as_json:
        print_json(result.to_dict())
        return
    out.print(
        f"Built {result.users:,} profiles as of {text(result.as_of)} in {result.seconds:.1f}s ({len(result.traits) - 3:,} traits)."
    )
    if result.tags:
        out.print(
            "Tags: "
            + ", ".join(
                f"{text(k)} {v:,}"
                for k, v in result.tags.items()
                if not k.startswith("rfm_") or k == "rfm_segment"
            )
        )


@app.command()
def show(
    ctx: typer.Context,
    user_id: Annotated[
        str, typer.Argument(help="A user id (or a linked anonymous id).", show_default=False)
    ],
    events: Annotated[
        int, typer.Option("--events", "-n", min=0, help="How many latest events to list.")
    ] = 10,
    as_json: JsonOpt = False,
) -> None:
    """One user's traits, tags, linked devices, latest events and consents in force
    (--engine spark: from the lake, the user's rows read without starting Spark)."""
    g: Globals = ctx.obj
    with _reading(g, "user", user_id) as ws:
        p = ws.profile(user_id, events=events)
    if as_json:
        print_json(p)
        return
    out.print(
        f"[bold]{text(p['user_id'])}[/]"
        + (f"  (devices: {text(', '.join(p['anonymous_ids']))})" if p["anonymous_ids"] else "")
    )
    rows = [{"trait": k, "value": _show(v)} for k, v in p["traits"].items() if k != "user_id"]
    print_frame(pd.DataFrame(rows), max_width=90)
    if p["tags"]:
        out.print("Tags: " + ", ".join(f"{text(k)}={text(v)}" for k, v in p["tags"].items()))
    if p["last_events"]:
        print_frame(pd.DataFrame(p["last_events"]), "Latest events")
    default = ws.settings.privacy.default_marketing_consent
    out.print(
        "Consents: "
        + (
            ", ".join(
                f"{text(c['purpose'])}/{text(c['channel'])}={text(c['status'])}"
                for c in p["consents"]
            )
            if p["consents"]
            else "none recorded"
        )
        + f" (marketing without one: {text(default)})"
    )


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(value.items(), key=lambda kv: -kv[1])[:6]
        )
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:,.4g}"
    return "–" if value is None else str(value)


KOpt = Annotated[
    int | None,
    typer.Option(
        "--k-anonymity",
        help="Every combination of age band, gender and region (or group) appears at least "
        "K times: rarer ones are masked or left out. 2 or more.",
        show_default=False,
    ),
]


@app.command()
def export(
    ctx: typer.Context,
    to: Annotated[Path, typer.Option("--out", "-o", help="A .parquet or .csv file.")],
    desensitize: Annotated[
        bool,
        typer.Option(
            "--desensitize",
            help="User ids as keyed pseudonyms, times as months, age band / gender / region "
            "instead of birth year and city.",
        ),
    ] = False,
    k: KOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the profiles to Parquet or CSV (lists and maps as JSON text in CSV);
    --desensitize (脱敏) for data leaving the team, --k-anonymity K on top of it (with
    --engine spark: from the lake, without --desensitize)."""
    g: Globals = ctx.obj
    if k is not None and not desensitize:
        raise InputError("--k-anonymity needs --desensitize", hint="add --desensitize")
    if g.spark():
        n = _export_on_lake(g, to, desensitize=desensitize)
        if as_json:
            print_json({"rows": n, "file": str(to)})
        else:
            out.print(f"Wrote {n:,} profiles to {text(to)}")
        return
    with g.workspace(create=False) as ws:
        done = ws.profiles.export_desensitized(to, k=k) if desensitize else None
        n = done.rows if done is not None else ws.profiles.export(to)
    if as_json:
        print_json(done.to_dict() if done is not None else {"rows": n, "file": str(to)})
        return
    out.print(f"Wrote {n:,} profiles to {text(to)}" + (" (desensitized)" if done else ""))
    if done is not None and done.k is not None:
        out.print(
            f"k = {done.k:d}: quasi-identifiers masked in {done.masked:,} rows, "
            f"{done.left_out:,} rows left out."
        )


@contextlib.contextmanager
def _reading(g: Globals, what: str, user_id: str | None = None) -> Iterator[Workspace]:
    """The workspace ``show`` and ``tags list`` read: the store's; with ``--engine spark`` a
    scratch store holding what they read of the lake (``what``: one user's rows, or the
    tags), read without Spark."""
    if not g.spark():
        with g.workspace(create=False) as ws:
            yield ws
        return
    from jingzhun.profile.read import load_tags_from_lake, load_user_from_lake

    with g.lake_scratch() as (lake, ws):
        if what == "user":
            load_user_from_lake(lake, ws.store, str(user_id))
        else:
            load_tags_from_lake(lake, ws.store)
        yield ws


def lake_with_profiles(g: Globals) -> Lake:
    """The lake ``--db`` names, opened on Spark once it is known to hold profiles (checked on
    its folder first: a lake without them is one line and exit code 2, before Spark starts)."""
    from jingzhun.profile.read import require_lake_profiles

    db = g.db or os.environ.get("JINGZHUN_DB")
    if db:  # without one, g.lake() names the missing --db
        require_lake_profiles(db)
    return g.lake()


def _export_on_lake(g: Globals, to: Path, *, desensitize: bool) -> int:
    """``profile export`` from a lake: the file checked, then the lake, then Spark."""
    from jingzhun.profile.read import check_lake_export, export_profiles_on_lake

    if desensitize:
        raise InputError(
            "profile export --desensitize does not run on --engine spark: the pseudonyms' key "
            "is a store's (its vault), and a lake has none",
            hint="export without --desensitize, or desensitize from the DuckDB store",
        )
    db = g.db or os.environ.get("JINGZHUN_DB")
    if db:
        check_lake_export(db, to)
    with steps() as say:
        say("starting Spark")
        with lake_with_profiles(g) as lake:
            say("exporting profiles from Spark")
            return export_profiles_on_lake(lake, to)


@app.command()
def aggregate(
    ctx: typer.Context,
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="Columns to group by, comma-separated: age_band, gender, region, or a text "
            "trait (preferred_channel …).",
            show_default=False,
        ),
    ],
    to: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write a .parquet or .csv file.")
    ] = None,
    k: KOpt = None,
    epsilon: Annotated[
        float | None,
        typer.Option(
            "--epsilon",
            help="Add Laplace noise of scale 1/EPSILON to each count (ε-differential "
            "privacy of the counts; smaller is more private).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Users per group, for sharing: groups under --k-anonymity suppressed, counts noised
    with --epsilon."""
    g: Globals = ctx.obj
    columns = [c.strip() for c in by.split(",") if c.strip()]
    with g.workspace(create=False) as ws:
        frame, done = ws.profiles.aggregate(columns, to, k=k, epsilon=epsilon)
    if as_json:
        print_json({**done.to_dict(), "groups": frame_records(frame)})
        return
    print_frame(frame, "Users per group")
    if done.k is not None:
        out.print(
            f"k = {done.k:d}: {done.suppressed_groups:,} groups of {done.suppressed_users:,} "
            "users suppressed."
        )
    if done.noise_scale is not None:
        out.print(
            f"Counts carry Laplace noise of scale {done.noise_scale:g} (ε = {done.epsilon:g})."
        )
    if to is not None:
        out.print(f"Wrote {done.rows:,} groups to {text(to)}")


@app.command()
def traits(as_json: JsonOpt = False) -> None:
    """The built-in traits and what each means."""
    from jingzhun.profile.traits import catalogue

    rows = [{"trait": n, "meaning": d} for n, d in catalogue()]
    if as_json:
        print_json({"traits": rows})
    else:
        print_frame(pd.DataFrame(rows), max_width=100)


@tags_app.command("list")
def tags_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every tag value and how many users carry it (--engine spark: the lake's tags)."""
    g: Globals = ctx.obj
    with _reading(g, "tags") as ws:
        frame = ws.profiles.tags()
    if as_json:
        print_json({"tags": frame_records(frame)})
    elif frame.empty:
        out.print("No tags yet: jingzhun profile build")
    else:
        print_frame(frame.drop(columns="computed_at"))


def _analysis(ctx: typer.Context, name: str, as_json: bool, **options: Any) -> None:
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws, steps() as say:
        say(f"analysing {name}")
        result = ws.analyze(name, **options)
    if as_json:
        print_json(result.to_dict())
        return
    for key, value in result.summary.items():
        if value is not None:
            out.print(f"[bold]{text(key)}[/]: {text(value)}")
    for title, frame in result.tables.items():
        shown = frame if len(frame) <= 40 else frame.tail(40)
        print_frame(
            shown.round(4), title if len(frame) <= 40 else f"{title} (last 40 of {len(frame)})"
        )


@analyze_app.command()
def trends(
    ctx: typer.Context,
    since: SinceOpt = None,
    until: UntilOpt = None,
    weeks: Annotated[int, typer.Option(min=2, help="Complete weeks the trend is fitted on.")] = 12,
    as_json: JsonOpt = False,
) -> None:
    """Daily and weekly actives, orders and revenue, with a 7-day average and the trend."""
    _analysis(
        ctx,
        "trends",
        as_json,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        weeks=weeks,
    )


@analyze_app.command()
def funnel(
    ctx: typer.Context,
    steps_: Annotated[
        str, typer.Option("--steps", help="Comma-separated events, in order.")
    ] = "product_viewed,product_added,checkout_started,order_completed",
    within_days: Annotated[
        float | None,
        typer.Option(
            "--within-days",
            min=0.0,
            help="Later steps must follow the first within this many days.",
        ),
    ] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Visitors reaching each step in order, and the conversion between steps."""
    names = tuple(s.strip() for s in steps_.split(",") if s.strip())
    _analysis(
        ctx,
        "funnel",
        as_json,
        steps=names,
        within_days=within_days,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
    )


@analyze_app.command()
def cohorts(
    ctx: typer.Context,
    months: Annotated[int, typer.Option(min=1, help="The latest cohorts to show.")] = 12,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Monthly first-order cohorts: the share ordering again k months later."""
    _analysis(
        ctx,
        "cohorts",
        as_json,
        months=months,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
    )


@analyze_app.command()
def baskets(
    ctx: typer.Context,
    level: Annotated[str, typer.Option(help="item, category or brand.")] = "category",
    min_support: Annotated[
        float,
        typer.Option("--min-support", help="Share of orders a value (and a pair) must reach."),
    ] = 0.001,
    min_confidence: Annotated[
        float, typer.Option("--min-confidence", help="Smallest P(B | A) kept.")
    ] = 0.05,
    top: Annotated[int, typer.Option(min=1, help="Rules to show, by lift.")] = 50,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Market-basket association rules with support, confidence and lift."""
    _analysis(
        ctx,
        "baskets",
        as_json,
        level=level,
        min_support=min_support,
        min_confidence=min_confidence,
        top=top,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
    )


@analyze_app.command()
def frequency(
    ctx: typer.Context, since: SinceOpt = None, until: UntilOpt = None, as_json: JsonOpt = False
) -> None:
    """Orders per customer and days between a customer's orders."""
    _analysis(
        ctx, "frequency", as_json, since=_when(since, "--since"), until=_when(until, "--until")
    )
