"""What a campaign builder asks of the stage: a spec's audience and the expected incremental
profit from the uplift scores (checked against an independent computation), the traits a
condition can name, the field an error is about, previews of every variant, and the list's
descriptions."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from jingzhun.campaign.audience import AUDIENCE
from jingzhun.campaign.spec import problem_field, spec_from_json
from jingzhun.errors import ConflictError, InputError, JingzhunError
from jingzhun.workspace import Workspace

SPEC: dict[str, Any] = {
    "name": "builder",
    "channel": "email",
    "audience": {"where": "frequency >= 1"},
    "control": {"share": 0.25},
    "variants": [
        {"name": "a", "subject": "Hi", "body": "<p>Hello {{ first_name }}</p>", "format": "html"},
        {"name": "b", "subject": "Hey", "body": "Hello {{ first_name }}", "format": "text"},
    ],
    "offer": {"cost_per_message": 0.05, "margin": 0.4},
}


def spec(**parts: Any) -> dict[str, Any]:
    out = copy.deepcopy(SPEC)
    out.update(parts)
    return out


def test_the_estimate_is_the_draw_and_the_uplift_sum_priced_by_the_offer(
    open_ws: Callable[..., Workspace],
) -> None:
    ws = open_ws()
    e = ws.campaigns.estimate(SPEC)
    assert e.audience.to_dict() == ws.campaigns.audience(SPEC).to_dict()
    # Independently: the treatment arm left by the draw, its uplift scores, the average order.
    treated = ws.sql(
        f"SELECT user_id FROM {AUDIENCE} WHERE excluded IS NULL AND arm = 'treatment'"
    )["user_id"]
    uplift = ws.predict.scores("uplift").set_index("user_id")["value"]
    orders = ws.sql(
        "SELECT count(DISTINCT order_id) AS n, sum(revenue) AS revenue FROM events "
        "WHERE event = 'order_completed'"
    ).iloc[0]
    refunds = ws.sql(
        "SELECT coalesce(sum(revenue), 0) AS r FROM events WHERE event = 'order_refunded'"
    )
    aov = (orders["revenue"] - float(refunds["r"].iloc[0])) / orders["n"]
    conversions = float(uplift.reindex(treated).fillna(0).sum())
    x = e.expected
    assert x is not None and x["treated"] == e.audience.treatment == len(treated)
    assert x["scored"] == int(uplift.reindex(treated).notna().sum())
    assert x["incremental_conversions"] == pytest.approx(conversions, abs=0.01)
    assert x["average_order_value"] == pytest.approx(aov, abs=0.01)
    # The independent average order, not the estimate's rounded one: a rounding of 0.005
    # times hundreds of conversions is more than the tolerance.
    profit = conversions * aov * 0.4 - 0.05 * len(treated)
    assert x["incremental_profit"] == pytest.approx(profit, abs=0.05)
    assert x["model_id"] == ws.models.active("uplift").model_id and x["model"]
    assert e.reason is None and e.to_dict()["audience"]["treatment"] == len(treated)


def test_without_uplift_scores_the_estimate_says_so(open_ws: Callable[..., Workspace]) -> None:
    ws = open_ws()
    ws.store.run("DELETE FROM scores WHERE score = 'uplift'")
    e = ws.campaigns.estimate(SPEC)
    assert e.expected is None and "uplift" in (e.reason or "")
    assert e.audience.members > 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"control": {"share": 1.5}}, "control.share"),
        ({"name": "Not A Name"}, "name"),
        ({"audience": {"top": {"score": "uplift", "n": 0}}}, "audience.top.n"),
        ({"audience": {"segment": "rfm:Nobody"}}, "audience.segment"),
        ({"audience": {"segment": "nope:1"}}, "audience.segment"),
        ({"audience": {"tags": ["no_such_tag"]}}, "audience.tags"),
        ({"audience": {"where": "frequncy > 1"}}, "audience.where"),
        ({"audience": {"top": {"score": "clv", "n": 5}}}, "audience.top.score"),
        ({"exclude": {"campaigns": ["nope"]}}, "exclude.campaigns"),
        ({"control": {"stratify": "nope"}}, "control.stratify"),
        ({"variants": [{"name": "a", "body": "x"}]}, "variants.0.subject"),
        (
            {"variants": [SPEC["variants"][0], {"name": "b", "subject": "s", "body": "{{ oops"}]},
            "variants.1.body",
        ),
        (
            {"variants": [SPEC["variants"][0], {"name": "a", "subject": "s", "body": "x"}]},
            "variants.1.name",
        ),
        ({"variants": []}, "variants.0.body"),
        ({"channel": "ads"}, "channel"),
        ({"exclude": {"no_consent": False}}, "exclude.no_consent"),
    ],
)
def test_an_error_names_its_field(
    open_ws: Callable[..., Workspace], change: dict[str, Any], field: str
) -> None:
    ws = open_ws()
    raw = spec(**change)
    with pytest.raises(InputError) as exc:
        ws.campaigns.estimate(raw)
    assert problem_field(exc.value, raw) == field, str(exc.value)


def test_a_name_taken_is_the_name_s_problem(open_ws: Callable[..., Workspace]) -> None:
    ws = open_ws()
    ws.campaigns.create(SPEC)
    with pytest.raises(ConflictError) as exc:
        ws.campaigns.create(SPEC)
    assert problem_field(exc.value, SPEC) == "name"
    assert problem_field(JingzhunError("something else")) == ""


def test_problem_field_reads_pydantic_s_location() -> None:
    with pytest.raises(InputError) as exc:
        spec_from_json(spec(offer={"margin": 2}))
    assert problem_field(exc.value) == "offer.margin"


def test_traits_are_the_profile_columns_a_condition_can_name(
    open_ws: Callable[..., Workspace],
) -> None:
    traits = open_ws().campaigns.traits()
    assert {"recency_days", "frequency", "monetary"} <= set(traits)
    assert not {"user_id", "as_of", "top_categories", "category_affinity"} & set(traits)
    assert traits["monetary"] == "DOUBLE"


def test_previews_show_each_variant_in_turn_and_the_list_its_descriptions(
    open_ws: Callable[..., Workspace],
) -> None:
    ws = open_ws()
    ws.campaigns.create(spec(description="Spring <b>sale</b>; '; DROP TABLE x"))
    samples = ws.campaigns.preview("builder", sample=4).samples
    assert [s["variant"] for s in samples] == ["a", "b", "a", "b"]
    assert samples[0]["html"] and samples[1]["html"] is None and samples[1]["text"]
    listed = ws.campaigns.list()
    assert listed.loc[0, "description"] == "Spring <b>sale</b>; '; DROP TABLE x"
