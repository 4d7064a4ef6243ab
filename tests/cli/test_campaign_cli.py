"""``jingzhun campaign plan``: the members a test with a control group needs."""

from __future__ import annotations

import json

import pytest

from jingzhun.evaluate.stats import sample_size


def test_plan_prints_the_members_per_arm(cli) -> None:
    r = cli("campaign", "plan", "--baseline", "0.05", "--mde", "0.01")
    assert r.code == 0, r.stderr
    assert "treatment 8,155 members, control 8,155, 16,310 in all" in r.stdout


def test_plan_json_is_the_sample_size_with_its_inputs(cli) -> None:
    r = cli(
        "campaign", "plan", "--baseline", "0.031", "--mde", "0.004", "--power", "0.9",
        "--alpha", "0.01", "--control-share", "0.1", "--json",
    )  # fmt: skip
    assert r.code == 0, r.stderr
    body = json.loads(r.stdout)
    treated, control = sample_size(0.031, 0.004, 0.9, 0.01, 0.1)
    assert (body["treated"], body["control"], body["total"]) == (
        treated,
        control,
        treated + control,
    )
    assert body["control_share"] == 0.1 and control < treated


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--baseline", "0", "--mde", "0.01"), "--baseline 0.0"),
        (("--baseline", "0.05", "--mde", "0.99"), "--mde 0.99"),
        (("--baseline", "0.05", "--mde", "0.01", "--control-share", "1"), "--control-share 1.0"),
        (("--baseline", "0.05", "--mde", "0.01", "--alpha", "inf"), "--alpha inf"),
    ],
)
def test_plan_refuses_what_is_not_a_rate(cli, args: tuple[str, ...], named: str) -> None:
    r = cli("campaign", "plan", *args)
    assert r.code == 2
    assert r.stderr.startswith(f"error: {named}") and len(r.stderr.strip().splitlines()) <= 2
