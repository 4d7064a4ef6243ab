"""``jingzhun campaign …``: campaigns — so far ``plan``, the members a test needs.

``plan`` answers the first question of a campaign with a control group: how many members must
each arm have to see a lift of the size that matters? (The campaign spec, audiences, sending
and reports come with the rest of the campaign stage.)
"""

from __future__ import annotations

from typing import Annotated

import typer

from jingzhun.cli.common import out, print_json
from jingzhun.evaluate.stats import sample_size

app = typer.Typer(
    help="Campaigns: plan the size of a test with a control group.",
    no_args_is_help=True,
)


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
