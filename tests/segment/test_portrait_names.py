"""Segment names are unique within a run, in words where a trait tells the segments apart.

HDBSCAN on the simulated shop finds several dense groups of shoppers who never ordered, alike
in everything but tenure and time of day; all of them were named "Broad taste · quick visits",
told apart by a number only. Now the trait they differ in most names them ("… · long-standing",
"… · new"); a number is left only where no named trait separates two segments.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from jingzhun.segment.portraits import STANDS_OUT, UNNAMED, WORDS, compute, distinguish
from jingzhun.workspace import Workspace

NUMBERED = re.compile(r" \((\d+)\)$")


def _z(**z: float | None) -> dict[str, dict[str, float | None]]:
    return {n: {"z": v} for n, v in z.items()}


def test_the_trait_that_separates_them_names_them() -> None:
    # the case from the 20,000-user shop: three groups alike but for tenure
    alike = {"affinity_concentration": -1.80, "views_per_session": -1.74, "hour_sin": 1.4}
    traits = [
        _z(**alike, tenure_days=0.40),  # does not stand out: keeps the common name
        _z(**alike, tenure_days=1.12),
        _z(**alike, tenure_days=-1.49),
    ]
    labels = ["Broad taste · quick visits"] * 3
    assert distinguish(labels, traits, ["2", "3", "4"]) == [
        "Broad taste · quick visits",
        "Broad taste · quick visits · long-standing",
        "Broad taste · quick visits · new",
    ]


def test_labels_that_differ_already_are_left_alone() -> None:
    traits = [_z(aov=1.0, tenure_days=2.0), _z(aov=-1.0, tenure_days=-2.0)]
    assert distinguish(["Big baskets", "Small baskets"], traits, ["1", "2"]) == [
        "Big baskets",
        "Small baskets",
    ]


def test_traits_are_tried_until_the_names_differ() -> None:
    # tenure lies furthest apart but both are long-standing; the price level separates them
    traits = [
        _z(tenure_days=3.0, price_percentile=0.9, hour_cos=5.0),
        _z(tenure_days=1.0, price_percentile=-0.8, hour_cos=-5.0),
    ]
    assert distinguish(["Lapsing", "Lapsing"], traits, ["1", "2"]) == [
        "Lapsing · long-standing · premium",
        "Lapsing · long-standing · budget",
    ]


def test_the_hour_on_a_circle_and_words_already_said_never_name_a_segment() -> None:
    traits = [
        _z(hour_sin=2.0, hour_cos=1.0, orders_per_month=1.0),
        _z(hour_sin=-2.0, hour_cos=-1.0, orders_per_month=1.0),
    ]
    # only the hour separates them, and "frequent buyers" is said already: left to the caller
    out = distinguish(["Frequent buyers", "Frequent buyers"], traits, ["1", "2"])
    assert out == ["Frequent buyers", "Frequent buyers"]


def test_compute_gives_unique_names_in_words() -> None:
    # segment 1: ten big spenders who browse a lot; 2, 3 and 4: two small-basket quick
    # visitors each, of average, longer and shorter tenure (|z| 0.71: below basket and views)
    segment = ["1"] * 10 + ["2", "2", "3", "3", "4", "4"]
    members = pd.DataFrame({"user_id": [f"u{i}" for i in range(16)], "segment": segment})
    traits = members[["user_id"]].assign(
        aov=[10.0] * 10 + [1.0] * 6,
        views_per_session=[10.0] * 10 + [1.0] * 6,
        tenure_days=[50.0, 150.0] * 5 + [100.0, 100.0, 130.0, 130.0, 70.0, 70.0],
    )
    out = compute(members, traits, None, None).set_index("segment").label
    assert out.to_dict() == {
        "1": "Heavy browsers · big baskets",
        "2": "Quick visits · small baskets",
        "3": "Quick visits · small baskets · long-standing",
        "4": "Quick visits · small baskets · new",
    }


def test_segments_no_trait_tells_apart_are_still_numbered() -> None:
    members = pd.DataFrame({"user_id": list("abcd"), "segment": ["1", "1", "2", "2"]})
    traits = pd.DataFrame({"user_id": list("abcd"), "aov": [1.0, 2.0, 1.0, 2.0]})
    assert compute(members, traits, None, None).label.tolist() == [
        "Typical customers (1)",
        "Typical customers (2)",
    ]


# -- on the simulated shop ----------------------------------------------------------------------


def _standing_words(traits: dict[str, dict]) -> set[str]:
    """The words of every named trait that stands out in a segment."""
    words = set()
    for name, t in traits.items():
        z = t["z"]
        if name in UNNAMED or z is None or abs(z) < STANDS_OUT:
            continue
        high, low = WORDS.get(name, (f"high {name}", f"low {name}"))
        words.add(high if z > 0 else low)
    return words


@pytest.fixture(scope="module")
def hdbscan_run(shop, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    path: Path = tmp_path_factory.mktemp("portrait_names") / "store.duckdb"
    with Workspace.open(path) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [shop.file(kind)])
        ws.profile_build()
        return ws.segment_run("hdbscan", name="dense", stability_resamples=0).portraits


def test_hdbscan_names_are_unique_and_numbered_only_when_no_trait_differs(hdbscan_run) -> None:
    labels = [p["label"] for p in hdbscan_run]
    assert len(set(labels)) == len(labels)
    by_words: dict[str, list[dict]] = {}
    for p in hdbscan_run:
        by_words.setdefault(NUMBERED.sub("", p["label"]), []).append(p)
    # the shop has several dense groups of non-buyers, all "Broad taste · quick visits" once;
    # tenure now names some of them apart
    alike = [NUMBERED.sub("", label) for label in labels if label.startswith("Broad taste")]
    assert len(alike) >= 2 and len(set(alike)) >= 2, labels
    for words, group in by_words.items():
        if len(group) > 1:  # numbered: no named trait that stands out tells them apart
            standing = {frozenset(_standing_words(p["traits"])) for p in group}
            assert len(standing) == 1, (words, standing)
