"""Campaign audiences drawn from a lake on Spark (issue 19) equal the store's draw on the same
data: for each spec, every step's count, the arms, segments and variants, and the audience
user for user (excluded with the same reason, the same arm and variant); the rendered samples
of a preview personalised from the lake's profiles and lists equal the store's; the command
line once end to end; bad input refused in one line with exit code 2.

The store and the lake hold the same shop (the lake's profiles and tags built on Spark, equal
to the store's: test_lake), an RFM run on each, and the store's recommendation lists copied
into the lake (a lake scored by ``recommend batch`` holds the same table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pytest

from jingzhun.campaign.audience import AUDIENCE
from jingzhun.campaign.spec import spec_from_json
from jingzhun.segment.runs import run_on_lake
from jingzhun.store.lake import Lake
from jingzhun.workspace import Workspace
from tests.cli.subprocess_cli import copy_store, error_line, one_json, run
from tests.spark.conftest import copy_lake

TEMPLATE = (
    "Hello {{ first_name }}: {{ user.frequency }} orders, {{ user.monetary | round(2) }} spent.\n"
    "{% for r in recommendations %}- {{ r.title }} ({{ r.reason_text }})\n{% endfor %}"
    "{% for i in cart %}cart: {{ i.title }}\n{% endfor %}"
)


def _spec(name: str, audience: dict[str, Any], **parts: Any) -> dict[str, Any]:
    return {
        "name": name,
        "channel": "email",
        "audience": audience,
        "control": parts.pop("control", {"share": 0.2}),
        "variants": [
            {"name": "a", "subject": "{{ first_name }}, for you", "body": TEMPLATE},
            {"name": "b", "subject": "New, {{ first_name }}", "body": TEMPLATE},
        ],
        "recommendations": 3,
        **parts,
    }


#: Specs that between them read every condition a lake answers: a trait expression, tags,
#: a segment and a stratifying run, consent, recent orders, a random top, a trigger.
SPECS = [
    _spec(
        "where-tags",
        {"where": "frequency >= 1 and monetary > 40", "tags": ["rfm_segment"]},
        control={"share": 0.25, "stratify": "rfm"},
        exclude={"bought_within_days": 30},
    ),
    _spec("segment-top", {"segment": "rfm:Champions", "top": {"score": "random", "n": 40}}),
    _spec(
        "cart",
        {"where": "frequency >= 0"},
        trigger={
            "event": "product_added",
            "without": "order_completed",
            "after_minutes": 60,
            "lookback_hours": 24 * 30,
        },
    ),
]


@dataclass
class Pair:
    db: Path
    lake: Path


@pytest.fixture(scope="module")
def pair(shop_pair, spark_built, spark_session, tmp_path_factory) -> Pair:
    folder = tmp_path_factory.mktemp("campaign-lake")
    db = copy_store(shop_pair.db, folder / "store")
    lake = copy_lake(spark_built.lake, folder / "lake")
    with Workspace.open(db) as ws:
        ws.segments.run("rfm", name="rfm")
        ws.recs.train("pop")
        ws.recs.batch(5)
        lists = ws.sql("SELECT * FROM recommendations")
        for spec in SPECS:
            ws.campaigns.create(spec)
    with Lake.open(lake, session=spark_session) as opened:
        run_on_lake(opened, method="rfm", name="rfm")
        opened.write("recommendations", ibis.memtable(lists))
    return Pair(db, lake)


def _audience(ws: Workspace) -> pd.DataFrame:
    return ws.sql(
        f"SELECT user_id, segment, stratum, excluded, arm, variant FROM {AUDIENCE} ORDER BY user_id"
    )


@pytest.mark.parametrize("spec", SPECS, ids=[s["name"] for s in SPECS])
def test_a_draw_from_the_lake_equals_the_store_s(pair: Pair, spec, open_lake) -> None:
    lake = open_lake(pair.lake)
    with Workspace.open(pair.db, read_only=True) as ws:
        duck = ws.campaigns.audience(spec).to_dict()
        duck_rows = _audience(ws)
        spark = ws.campaigns.audience(spec, lake=lake).to_dict()
        spark_rows = _audience(ws)
    assert duck["matched"] > 0 and duck["members"] > 0, duck  # the comparison compares something
    assert spark == duck
    pd.testing.assert_frame_equal(spark_rows, duck_rows)
    if spec["name"] == "where-tags":  # the steps the lake answers removed someone
        removed = {s["step"]: s["removed"] for s in duck["steps"]}
        assert removed["no_consent"] > 0 and removed["bought_within_30_days"] > 0, removed


def test_a_preview_from_the_lake_renders_what_the_store_renders(pair: Pair, open_lake) -> None:
    lake = open_lake(pair.lake)
    with Workspace.open(pair.db, read_only=True) as ws:
        for name in ("where-tags", "cart"):
            duck = ws.campaigns.preview(name, sample=6).to_dict()
            spark = ws.campaigns.preview(name, sample=6, lake=lake).to_dict()
            assert spark == duck
            assert len(duck["samples"]) == 6
            texts = "".join(s["text"] for s in duck["samples"])
            assert "orders," in texts and ("- " in texts or "cart: " in texts)
        cart = ws.campaigns.preview("cart", sample=3, lake=lake, check=False)
        assert all("cart: " in s["text"] for s in cart.samples)  # trigger items from the lake


def test_the_lake_s_own_conditions_are_named(pair: Pair, open_lake) -> None:
    """A segment, tag or score the lake does not hold fails as on the store, naming the
    spec's field."""
    from jingzhun.errors import NotFoundError

    lake = open_lake(pair.lake)
    with Workspace.open(pair.db, read_only=True) as ws:
        for audience, message in [
            ({"segment": "nope:1"}, "[audience] segment: no segment run or name 'nope'"),
            ({"tags": ["no_such_tag"]}, "[audience] tags: no user has the tag 'no_such_tag'"),
            (
                {"top": {"score": "propensity", "n": 5}},
                "[audience] top score: no user has a 'propensity'",
            ),
        ]:
            with pytest.raises(NotFoundError) as raised:
                ws.campaigns.audience(spec_from_json(_spec("x", audience)), lake=lake)
            assert raised.value.message.startswith(message), raised.value.message


def test_the_command_line_previews_from_the_lake(pair: Pair, tmp_path: Path) -> None:
    duck = run(tmp_path, "campaign", "preview", "where-tags", "--json", db=pair.db)
    spark = run(
        tmp_path,
        "--engine",
        "spark",
        "campaign",
        "preview",
        "where-tags",
        "--from-store",
        str(pair.db),
        "--json",
        db=pair.lake,
    )
    assert duck.code == 0 and spark.code == 0, spark.stderr
    assert one_json(spark) == one_json(duck)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--engine", "spark", "campaign", "preview", "x"],
            "campaign preview on --engine spark needs --from-store STORE",
        ),
        (["campaign", "preview", "x", "--from-store", "s.duckdb"], "--from-store goes with"),
        (
            ["--engine", "spark", "campaign", "preview", "x", "--from-store", "missing.duckdb"],
            "--from-store: no store at",
        ),
    ],
)
def test_bad_campaign_options_on_spark_are_refused(
    pair: Pair, tmp_path: Path, args: list[str], message: str
) -> None:
    ran = run(tmp_path, *args, db=pair.lake)
    assert ran.code == 2, ran.stderr
    assert message in error_line(ran)
    assert not (tmp_path / "missing.duckdb").exists()


def test_a_lake_draw_leaves_the_store_as_it_was(pair: Pair, open_lake) -> None:
    """The store a lake draw reads is opened read-only: the file is not touched."""
    before = pair.db.stat().st_mtime_ns, pair.db.stat().st_size
    lake = open_lake(pair.lake)
    with Workspace.open(pair.db, read_only=True) as ws:
        ws.campaigns.audience(SPECS[0], lake=lake)
    assert (pair.db.stat().st_mtime_ns, pair.db.stat().st_size) == before
