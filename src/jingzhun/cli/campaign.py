"""``jingzhun campaign create|list|show|preview|send|report|plan``.

``plan`` answers the first question of a campaign with a control group: how many members must
each arm have to see a lift of the size that matters? ``create`` stores a spec (TOML, see
docs/campaigns.md), ``preview`` shows what a send would do, ``send`` draws the audience once
and works the delivery queue (exactly once: run it again after any failure), ``report`` says
what the campaign caused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    text,
)
from jingzhun.errors import NotFoundError
from jingzhun.evaluate.stats import sample_size
from jingzhun.store.store import check_store_path
from jingzhun.workspace import Workspace

if TYPE_CHECKING:
    from jingzhun.store.lake import Lake

app = typer.Typer(
    help="Campaigns: audiences with a control group, personalized email, exactly-once sends, "
    "lift with confidence intervals.",
    no_args_is_help=True,
)

#: What a lake does not hold and a campaign on Spark reads from ``--from-store``.
_STORE_HOLDS = "the campaigns, personal data, suppressions and deliveries"


@contextmanager
def _campaigns(
    g: Globals, from_store: Path | None, command: str, *, write: bool = True
) -> Iterator[tuple[Workspace, Lake | None]]:
    """The workspace whose campaigns a command reads, and the lake its audience is drawn
    from: on DuckDB the store ``--db`` names (no lake); on ``--engine spark`` the store
    ``--from-store`` names (read-only unless the command writes) and the lake ``--db``
    names — the store is checked before Spark starts."""
    store = from_store_for_spark(g, from_store, command, holds=_STORE_HOLDS)
    if store is None:
        with g.workspace(create=False) as ws:
            yield ws, None
        return
    where = check_store_path(store, option="--from-store")
    if not where.is_file():
        raise NotFoundError(
            f"--from-store: no store at {where}", hint=f"name the store that holds {_STORE_HOLDS}"
        )
    with Workspace.open(where, config=g.config, read_only=not write) as ws, g.lake() as lake:
        yield ws, lake


NameArg = Annotated[str, typer.Argument(help="The campaign's name.", show_default=False)]
LangOpt = Annotated[
    str, typer.Option("--lang", help="Language of recommendation reasons: en or zh.")
]


@app.command()
def create(
    ctx: typer.Context,
    spec: Annotated[
        Path, typer.Argument(help="The campaign spec, a TOML file.", show_default=False)
    ],
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a draft of the same name.")
    ] = False,
    from_store: FromStoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a campaign: its spec checked against the store (segments, tags, traits, scores)
    and its templates compiled (with --engine spark: checked against the lake --db names,
    stored in the store --from-store names)."""
    g: Globals = ctx.obj
    with _campaigns(g, from_store, "campaign create") as (ws, lake):
        info = ws.campaigns.create(spec, replace=replace, lake=lake)
    if as_json:
        print_json(info.to_dict())
        return
    out.print(
        f"Campaign [bold]{text(info.name)}[/] ({text(info.channel)}) stored as a draft; "
        f"see it with: jingzhun campaign preview {text(info.name)}"
    )


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every campaign, newest first, with what was sent."""
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=True) as ws:
        frame = ws.campaigns.list()
    if as_json:
        print_json({"campaigns": frame_records(frame)})
        return
    print_frame(frame, "Campaigns")


@app.command()
def show(ctx: typer.Context, name: NameArg, as_json: JsonOpt = False) -> None:
    """A campaign's spec, state and deliveries by state."""
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=True) as ws:
        info = ws.campaigns.get(name)
    if as_json:
        print_json(info.to_dict())
        return
    out.print(f"[bold]{text(info.name)}[/] · {text(info.channel)} · {text(info.state)}")
    out.print(
        text(
            f"created {info.created_at}, drawn {info.snapshot_at or '-'}, sent {info.sent_at or '-'}"
        )
    )
    print_frame(pd.DataFrame([info.counts]), "Deliveries by state")
    out.print(text(json.dumps(info.spec, ensure_ascii=False, indent=2)))


@app.command()
def preview(
    ctx: typer.Context,
    name: NameArg,
    sample: Annotated[
        int, typer.Option("--sample", min=0, max=100, help="Rendered messages to show.")
    ] = 5,
    lang: LangOpt = "en",
    from_store: FromStoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What a send would do, writing nothing: audience size after each exclusion, arms,
    segments, expected incremental conversions and profit, rendered samples (with --engine
    spark: the audience drawn on Spark from the lake --db names, the campaign read from the
    store --from-store names)."""
    g: Globals = ctx.obj
    with _campaigns(g, from_store, "campaign preview", write=False) as (ws, lake):
        p = ws.campaigns.preview(name, sample=sample, lang=lang, lake=lake)
    if as_json:
        print_json(p.to_dict())
        return
    a = p.audience
    out.print(f"[bold]{text(name)}[/]: {a['matched']:,} users match the audience conditions")
    rows = [
        {"step": s["step"], "removed": s["removed"], "remaining": s["remaining"]}
        for s in a["steps"]
    ]
    if rows:
        print_frame(pd.DataFrame(rows), "Exclusions, in order")
    out.print(f"Members {a['members']:,}: treatment {a['treatment']:,}, control {a['control']:,}")
    if a["by_segment"] and any(r["segment"] != "(none)" for r in a["by_segment"]):
        print_frame(pd.DataFrame(a["by_segment"]), "By segment")
    if a["by_variant"]:
        print_frame(pd.DataFrame(a["by_variant"]), "By variant")
    e = p.expected
    if e:
        out.print(
            f"Expected from the uplift scores: {e['incremental_conversions']:,.1f} incremental "
            f"conversions, profit {e['incremental_profit']:,.2f} after {e['cost']:,.2f} of cost"
        )
    for s_ in p.samples:
        out.rule(f"{text(s_['user_id'])} · variant {text(s_['variant'])}")
        if s_["subject"] is not None:
            out.print(f"Subject: {text(s_['subject'])}")
        for line in s_["text"].splitlines():
            out.print(text(line))


@app.command()
def send(
    ctx: typer.Context,
    name: NameArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Draw and render everything; send and write nothing.")
    ] = False,
    lang: LangOpt = "en",
    as_json: JsonOpt = False,
) -> None:
    """Send the campaign: the first run draws the audience and stores its members; every run
    sends what is still queued (run it again after a failure: nobody gets it twice)."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        result = ws.campaigns.send(name, dry_run=dry_run, lang=lang)
    if as_json:
        print_json(result.to_dict())
    else:
        c = result.counts
        verb = "would send" if dry_run else "sent"
        done = c["queued"] if dry_run else c["sent"]
        left = 0 if dry_run else c["queued"] + c["sending"]
        out.print(
            f"[bold]{text(name)}[/]: {text(verb)} {done:,}; "
            f"control {c['control']:,}, failed {c['failed']:,}, suppressed {c['suppressed']:,}, "
            f"excluded {c['excluded']:,}, still queued {left:,}"
        )
        for reason, n in result.excluded.items():
            out.print(f"  excluded: {text(reason)} {n:,}")
    if result.error:
        err.print(
            f"error: {text(result.error)}; run jingzhun campaign send {text(name)} again to resume"
        )
        raise typer.Exit(1)


@app.command()
def trigger(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Triggered campaigns to run (default: every one).", show_default=False),
    ] = None,
    lang: LangOpt = "en",
    as_json: JsonOpt = False,
) -> None:
    """Run triggered campaigns now: each takes in the users its [trigger] holds for (say, a
    cart abandoned for an hour) and sends them their message — run it from cron every few
    minutes, or let jingzhun serve do it."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        results = ws.campaigns.trigger(names or None, lang=lang)
    if as_json:
        print_json({"campaigns": [r.to_dict() for r in results]})
        return
    if not results:
        out.print("No triggered campaigns.")
    for r in results:
        out.print(
            f"[bold]{text(r.campaign)}[/]: sent {r.attempted:,} now; "
            f"{r.counts['sent']:,} sent, {r.counts['control']:,} held out in all"
        )
        if r.error:
            err.print(f"error: {text(r.error)}")


@app.command()
def export(
    ctx: typer.Context,
    name: NameArg,
    platform: Annotated[
        str, typer.Option("--platform", help="google (Customer Match) or meta (custom audience).")
    ],
    out_path: Annotated[
        Path, typer.Option("--out", help="The CSV file to write (hashed emails and phones).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Export an ads campaign's treatment arm as a hashed customer list (SHA-256 of
    normalized emails and phones); the control group is held out."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        result = ws.campaigns.export(name, platform=platform, out=out_path)
    if as_json:
        print_json(result.to_dict())
        return
    out.print(
        f"Wrote {result.users:,} users ({result.emails:,} emails, {result.phones:,} phones) "
        f"for {text(result.platform)} to {text(result.out)}"
    )
    if result.bad_emails or result.bad_phones or result.no_identifier:
        err.print(
            f"left out: {result.bad_emails:,} unusable emails, {result.bad_phones:,} unusable "
            f"phones, {result.no_identifier:,} users with neither"
        )


@app.command()
def report(ctx: typer.Context, name: NameArg, as_json: JsonOpt = False) -> None:
    """What the campaign caused: funnel, rates, lift over control with 95% intervals (plain
    and CUPED), sample-ratio check, variants (Holm), incremental profit and ROI."""
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=True) as ws:
        r = ws.evaluate.campaign(name)
    if as_json:
        print_json(r.to_dict())
        return
    f = r.funnel
    out.print(f"[bold]{text(name)}[/] · {text(r.channel)} · drawn {text(r.snapshot_at)}")
    if not r.window_complete:
        err.print(f"note: the {r.window_days:g}-day conversion window has not ended yet")
    print_frame(
        pd.DataFrame(
            [
                {
                    k: f[k]
                    for k in (
                        "treatment",
                        "control",
                        "sent",
                        "bounced",
                        "opened",
                        "clicked",
                        "unsubscribed",
                        "converted",
                        "revenue",
                        "cost",
                    )
                }
            ]
        ),
        "Funnel",
    )
    rows = []
    for label, lift in (
        ("conversion", r.conversion),
        ("conversion (CUPED)", r.conversion_cuped),
        ("revenue per member", r.revenue),
        ("revenue per member (CUPED)", r.revenue_cuped),
    ):
        rows.append(_lift_row(label, lift))
    print_frame(pd.DataFrame(rows), "Treatment against control (95% intervals)")
    if r.variants:
        print_frame(
            pd.DataFrame(
                [{**_lift_row(v["variant"], v), "p (Holm)": v["p_holm"]} for v in r.variants]
            ),
            "Variants against control",
        )
    srm = r.sample_ratio
    flag = "MISMATCH: do not trust the lift" if srm["mismatch"] else "ok"
    expected = [round(x) for x in srm["expected"]]
    out.print(
        text(
            f"Sample ratio: {srm['observed']} against {expected}, p = {srm['p_value']:.3g} ({flag})"
        )
    )
    a = r.attributed
    out.print(
        text(
            f"Credited by clicks ({a['model'].replace('_', ' ')}): {a['orders']:,} orders, "
            f"revenue {a['revenue']:,.2f} (who clicked on the way, not what the campaign caused)"
        )
    )
    i = r.incremental
    roi = f"{i['roi']:.2f}" if i["roi"] is not None else "-"
    out.print(
        text(
            f"Incremental: {i['conversions']:,.1f} conversions, revenue {i['revenue']:,.2f} "
            f"[{i['revenue_low']:,.2f}, {i['revenue_high']:,.2f}], profit {i['profit']:,.2f}, "
            f"ROI {roi}"
        )
    )


def _lift_row(label: str, lift: dict[str, Any]) -> dict[str, Any]:
    return {
        "metric": label,
        "treatment": lift["treated"],
        "control": lift["control"],
        "lift": lift["lift"],
        "95% low": lift["ci_low"],
        "95% high": lift["ci_high"],
        "p": lift["p_value"],
    }


@app.command()
def plan(
    baseline: Annotated[
        float,
        typer.Option(
            "--baseline",
            help="The conversion rate without the campaign, 0-1 (e.g. 0.05 for 5%).",
            show_default=False,
        ),
    ],
    mde: Annotated[
        float,
        typer.Option(
            "--mde",
            help="The smallest absolute lift worth finding (e.g. 0.01: one percentage point).",
            show_default=False,
        ),
    ],
    power: Annotated[
        float, typer.Option("--power", help="Chance of finding a lift that large.")
    ] = 0.8,
    alpha: Annotated[float, typer.Option("--alpha", help="Two-sided significance level.")] = 0.05,
    control_share: Annotated[
        float,
        typer.Option("--control-share", help="Share of the members held out as control, 0-1."),
    ] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Members needed in treatment and control to detect a lift of --mde over --baseline
    (two proportions, normal approximation)."""
    treated, control = sample_size(baseline, mde, power, alpha, control_share)
    if as_json:
        print_json(
            {
                "baseline": baseline,
                "mde": mde,
                "power": power,
                "alpha": alpha,
                "control_share": control_share,
                "treated": treated,
                "control": control,
                "total": treated + control,
            }
        )
        return
    out.print(
        f"To find a lift of {mde:+.4g} over a conversion rate of {baseline:.4g} "
        f"({power:.0%} power, two-sided α = {alpha:g}):"
    )
    out.print(f"  treatment {treated:,} members, control {control:,}, {treated + control:,} in all")
