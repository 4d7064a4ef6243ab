"""Tags on hand-made customers: exact RFM scores and segments, rule tags, quantile bins,
rebuilds that keep model tags, and rule errors raised before anything is written."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jingzhun.config import Settings, TagBins, TagRule, TagSettings
from jingzhun.errors import InputError
from jingzhun.profile.tags import RFM_SEGMENTS, rfm_segment
from jingzhun.workspace import Workspace

Write = Callable[..., Path]

AS_OF = datetime(2024, 7, 1)

#: id -> (recency_days, orders, monetary, channel, item bought). Eleven customers, so
#: percent_rank takes the values k/10 and 1 + floor(5·k/10) is easy to check by hand.
CUSTOMERS: dict[str, tuple[int, int, float, str, str]] = {
    "c01": (1, 5, 1000.0, "app", "i_beauty"),
    "c02": (2, 3, 500.0, "app", "i_beauty"),
    "c03": (5, 2, 300.0, "app", "i_beauty"),
    "c04": (10, 2, 300.0, "app", "i_home"),
    "c05": (20, 1, 200.0, "app", "i_home"),
    "c06": (20, 1, 150.0, "web", "i_home"),
    "c07": (40, 1, 100.0, "web", "i_home"),
    "c08": (60, 1, 80.0, "web", "i_home"),
    "c09": (90, 1, 60.0, "web", "i_home"),
    "c10": (120, 3, 45.0, "web", "i_toys"),
    "c11": (200, 1, 20.0, "web", "i_home"),
}
NON_CUSTOMERS = ("n01", "n02")  # n01 only viewed an item; n02 signed up and did nothing

# R ranks recency descending (200 days -> rank 1); F and M rank ascending. Ties share the
# lowest rank: c05/c06 (20 days) both have percent_rank 0.5 -> R = 1 + floor(2.5) = 3; the six
# one-order customers all have percent_rank 0 -> F = 1; c03/c04 (300.0) share M = 1 + floor(3.5).
EXPECTED_RFM: dict[str, tuple[int, int, int, str]] = {
    "c01": (5, 5, 5, "Champions"),
    "c02": (5, 5, 5, "Champions"),
    "c03": (5, 4, 4, "Champions"),
    "c04": (4, 4, 4, "Loyal"),
    "c05": (3, 1, 4, "About to sleep"),
    "c06": (3, 1, 3, "About to sleep"),
    "c07": (3, 1, 3, "About to sleep"),
    "c08": (2, 1, 2, "Hibernating"),
    "c09": (2, 1, 2, "Hibernating"),
    "c10": (1, 5, 1, "Can't lose them"),
    "c11": (1, 1, 1, "Lost"),
}

HEADER = "event_id,event,user_id,anonymous_id,order_id,item_id,quantity,price,revenue,channel,ts"


def _events_csv() -> str:
    lines = [HEADER]
    for uid, (recency, orders, monetary, channel, item) in CUSTOMERS.items():
        last = AS_OF - timedelta(days=recency, hours=2)
        share = round(monetary / orders, 10)
        for k in range(orders):
            ts = last - timedelta(days=3 * k)
            revenue = share if k else monetary - share * (orders - 1)
            lines.append(
                f"{uid}-o{k},order_completed,{uid},,{uid}-o{k},{item},1,{revenue},{revenue},{channel},{ts}"
            )
        lines.append(
            f"{uid}-v,product_viewed,{uid},,,{item},,,,{channel},{last - timedelta(hours=1)}"
        )
    lines.append("n01-v,product_viewed,n01,,,i_home,,,,web,2024-06-15 10:00:00")
    return "\n".join(lines) + "\n"


ITEMS_CSV = (
    "item_id,category,brand,price\ni_beauty,beauty,b1,10\ni_home,home,b2,10\ni_toys,toys,b3,10\n"
)
USERS_CSV = "user_id,created_at\nn02,2024-01-01\nc01,2023-01-01\n"


def load_store(ws: Workspace, write: Write) -> None:
    for kind, content in (("items", ITEMS_CSV), ("users", USERS_CSV), ("events", _events_csv())):
        result = ws.ingest(kind, [write(f"{kind}.csv", content)])
        assert result.quarantined == 0, kind


def tag_rows(ws: Workspace, *, with_time: bool = False) -> list[tuple]:
    cols = "user_id, tag, value, source" + (", computed_at" if with_time else "")
    return ws.store.rows(f"SELECT {cols} FROM tags ORDER BY ALL")


def tagged(ws: Workspace, tag: str) -> dict[str, str]:
    return dict(ws.store.rows("SELECT user_id, value FROM tags WHERE tag = ?", [tag]))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The hand-made store, built once with the default tag settings (treat as read-only)."""
    folder = tmp_path_factory.mktemp("tags")
    ws = Workspace.open(folder / "store.duckdb", config=None)

    def write(name: str, content: str) -> Path:
        path = folder / name
        path.write_text(content, encoding="utf-8")
        return path

    load_store(ws, write)
    ws.profile_build(AS_OF)
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture
def store(ws: Workspace, write: Write) -> Workspace:
    """A fresh workspace with the hand-made data loaded but not built."""
    load_store(ws, write)
    return ws


def build_with(ws: Workspace, tags: TagSettings) -> Any:
    ws.settings = Settings(tags=tags)
    return ws.profile_build(AS_OF)


# -- the data is what the tests think it is ----------------------------------------------------


def test_hand_made_traits(built: Workspace) -> None:
    p = built.profiles(["user_id", "recency_days", "frequency", "monetary"]).set_index("user_id")
    assert sorted(p.index) == sorted([*CUSTOMERS, *NON_CUSTOMERS])
    for uid, (recency, orders, monetary, _, _) in CUSTOMERS.items():
        assert p.loc[uid, "recency_days"] == recency, uid
        assert p.loc[uid, "frequency"] == orders, uid
        assert p.loc[uid, "monetary"] == pytest.approx(monetary), uid
    for uid in NON_CUSTOMERS:
        assert p.loc[uid, "frequency"] == 0 and pd.isna(p.loc[uid, "recency_days"])


# -- RFM -----------------------------------------------------------------------------------------


def test_rfm_segments_map_covers_every_pair_once() -> None:
    cells = [cell for cells in RFM_SEGMENTS.values() for cell in cells]
    assert sorted(cells) == [(r, f) for r in range(1, 6) for f in range(1, 6)]
    assert len(cells) == len(set(cells)) == 25


@pytest.mark.parametrize(
    ("r", "f", "name"),
    [
        (5, 5, "Champions"),
        (5, 4, "Champions"),
        (4, 4, "Loyal"),
        (3, 5, "Loyal"),
        (5, 1, "New customers"),
        (4, 1, "Promising"),
        (4, 3, "Potential loyalist"),
        (3, 3, "Need attention"),
        (3, 2, "About to sleep"),
        (2, 4, "At risk"),
        (1, 5, "Can't lose them"),
        (2, 2, "Hibernating"),
        (1, 1, "Lost"),
    ],
)
def test_rfm_segment(r: int, f: int, name: str) -> None:
    assert rfm_segment(r, f) == name


@pytest.mark.parametrize(("r", "f"), [(0, 3), (6, 1), (3, 6), (1, 0)])
def test_rfm_segment_out_of_range(r: int, f: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        rfm_segment(r, f)


def _formula(values: dict[str, float], descending: bool = False) -> dict[str, int]:
    """1 + floor(5 · percent_rank), capped at 5; ties share the lowest rank."""
    n = len(values)
    out = {}
    for uid, v in values.items():
        below = sum((w > v) if descending else (w < v) for w in values.values())
        out[uid] = min(5, 1 + math.floor(5 * (below / (n - 1))))
    return out


def test_expected_rfm_table_follows_the_formula() -> None:
    # the hand-written table above agrees with the documented formula
    r = _formula({u: c[0] for u, c in CUSTOMERS.items()}, descending=True)
    f = _formula({u: c[1] for u, c in CUSTOMERS.items()})
    m = _formula({u: c[2] for u, c in CUSTOMERS.items()})
    assert {u: (r[u], f[u], m[u], rfm_segment(r[u], f[u])) for u in CUSTOMERS} == EXPECTED_RFM


def test_rfm_scores_exact(built: Workspace) -> None:
    for tag, index in (("rfm_r", 0), ("rfm_f", 1), ("rfm_m", 2)):
        assert tagged(built, tag) == {u: str(e[index]) for u, e in EXPECTED_RFM.items()}, tag
    assert tagged(built, "rfm_score") == {
        u: f"{r}{f}{m}" for u, (r, f, m, _) in EXPECTED_RFM.items()
    }
    assert tagged(built, "rfm_segment") == {u: e[3] for u, e in EXPECTED_RFM.items()}
    # every one-order customer has F = 1
    one_order = [u for u, c in CUSTOMERS.items() if c[1] == 1]
    assert len(one_order) > len(CUSTOMERS) / 2
    assert {tagged(built, "rfm_f")[u] for u in one_order} == {"1"}


def test_non_customers_get_no_rfm_tags(built: Workspace) -> None:
    rows = built.store.rows(
        "SELECT DISTINCT user_id FROM tags WHERE source = 'rfm' ORDER BY user_id"
    )
    assert [r[0] for r in rows] == sorted(CUSTOMERS)
    assert all(
        not built.store.rows("SELECT tag FROM tags WHERE user_id = ? AND source = 'rfm'", [u])
        for u in NON_CUSTOMERS
    )


# -- default rules and bins --------------------------------------------------------------------


def test_default_rule_tags(built: Workspace) -> None:
    p = built.profiles(["user_id", "monetary", "recency_days", "frequency"])
    p90 = float(np.quantile(p["monetary"], 0.9))  # over every profile, non-customers too
    assert p90 == pytest.approx(460.0)  # 300 + 0.8 · (500 - 300)
    assert tagged(built, "high_value") == {"c01": "true", "c02": "true"}
    assert set(tagged(built, "high_value")) == set(
        p.loc[(p.monetary > 0) & (p.monetary >= p90), "user_id"]
    )
    # recency_days > 90 and frequency >= 3: c10 (120 days, 3 orders); c09 is at 90 days
    assert tagged(built, "churn_risk") == {"c10": "true"}


def test_default_spend_band(built: Workspace) -> None:
    # customers' monetary: 20 45 60 80 100 150 200 300 300 500 1000; cuts at the 0.5, 0.8 and
    # 0.95 quantiles (quantile_cont): 150, 300, 750
    expected = {u: "low" for u in ("c06", "c07", "c08", "c09", "c10", "c11")}
    expected |= {"c03": "mid", "c04": "mid", "c05": "mid", "c02": "high", "c01": "top"}
    assert tagged(built, "spend_band") == expected


def test_build_result_and_build_record_count_the_tags(built: Workspace) -> None:
    (tags_json,) = built.store.rows("SELECT tags FROM profile_builds")[0]
    counts = json.loads(tags_json)
    assert counts == {
        "high_value": 2,
        "churn_risk": 1,
        "rfm_r": 11,
        "rfm_f": 11,
        "rfm_m": 11,
        "rfm_score": 11,
        "rfm_segment": 11,
        "spend_band": 11,
    }
    actual = dict(built.store.rows("SELECT tag, count(*) FROM tags GROUP BY tag"))
    assert actual == counts


def test_tags_summary(built: Workspace) -> None:
    summary = built.tags()
    assert list(summary.columns) == ["tag", "value", "source", "users", "computed_at"]
    seg = summary[summary.tag == "rfm_segment"]
    assert dict(zip(seg.value, seg.users, strict=True)) == {
        "Champions": 3,
        "About to sleep": 3,
        "Hibernating": 2,
        "Loyal": 1,
        "Can't lose them": 1,
        "Lost": 1,
    }
    assert list(seg.users) == sorted(seg.users, reverse=True)
    assert list(summary.source.unique()) == ["bin", "rfm", "rule"]  # ordered by source
    rows = {(t, v): n for t, v, n in zip(summary.tag, summary.value, summary.users, strict=True)}
    assert rows[("high_value", "true")] == 2
    assert rows[("churn_risk", "true")] == 1
    assert rows[("spend_band", "low")] == 6
    assert int(summary.users.sum()) == len(tag_rows(built))
    built_at = built.store.scalar("SELECT built_at FROM profile_builds")
    assert set(summary.computed_at) == {pd.Timestamp(built_at)}


# -- custom rules ------------------------------------------------------------------------------

CUSTOM_RULES: list[tuple[str, str, set[str]]] = [
    ("repeat_app", "frequency >= 2 and preferred_channel = 'app'", {"c01", "c02", "c03", "c04"}),
    ("mid_recency", "recency_days between 10 and 60", {"c04", "c05", "c06", "c07", "c08"}),
    ("beauty_fan", "top_categories contains 'beauty'", {"c01", "c02", "c03"}),
    ("no_orders", "recency_days IS NULL", {"n01", "n02"}),
    ("above_median", "monetary > median(monetary)", {"c01", "c02", "c03", "c04", "c05", "c06"}),
    ("big_aov", "aov >= 1.5 * mean(aov)", {"c01", "c05"}),
    ("not_web", "preferred_channel not in ('web')", {"c01", "c02", "c03", "c04", "c05"}),
    ("one_off", "not (frequency >= 2) and monetary >= 100", {"c05", "c06", "c07"}),
    (
        "lapsed_or_big",
        "recency_days > 100 or monetary >= p90(monetary)",
        {"c01", "c02", "c10", "c11"},
    ),
]


def _python_rules(p: pd.DataFrame) -> dict[str, set[str]]:
    """The same rules evaluated with pandas on the stored profiles (nulls never match)."""
    rec, freq, mon, aov = p.recency_days, p.frequency, p.monetary, p.aov
    chan = p.preferred_channel
    cats = p.top_categories.apply(
        lambda v: isinstance(v, list | np.ndarray) and "beauty" in list(v)
    )
    masks = {
        "repeat_app": (freq >= 2) & (chan == "app"),
        "mid_recency": rec.between(10, 60),
        "beauty_fan": cats,
        "no_orders": rec.isna(),
        "above_median": mon > mon.median(),
        "big_aov": aov >= 1.5 * aov.mean(),
        "not_web": chan.notna() & (chan != "web"),
        "one_off": ~(freq >= 2) & (mon >= 100),
        "lapsed_or_big": (rec > 100).fillna(False) | (mon >= np.quantile(mon, 0.9)),
    }
    return {
        name: set(p.loc[mask.fillna(False).astype(bool), "user_id"]) for name, mask in masks.items()
    }


def test_custom_rules_tag_exactly_the_users_they_hold_for(store: Workspace) -> None:
    result = build_with(
        store,
        TagSettings(
            rfm=False, bins=[], rules=[TagRule(name=n, when=w) for n, w, _ in CUSTOM_RULES]
        ),
    )
    python = _python_rules(store.profiles())
    for name, _, expected in CUSTOM_RULES:
        got = tagged(store, name)
        assert set(got) == expected, name
        assert set(got) == python[name], name
        assert set(got.values()) <= {"true"}
        assert result.tags[name] == len(expected)
    # rfm off and no bins: only rule tags
    assert {r[3] for r in tag_rows(store)} == {"rule"}


# -- bins -------------------------------------------------------------------------------------


def test_bins_with_labels_and_where(store: Workspace) -> None:
    bins = [
        TagBins(
            name="spend4",
            trait="monetary",
            where="frequency >= 1",
            quantiles=[0.25, 0.5, 0.75],
            labels=["a", "b", "c", "d"],
        ),
        # no where: everyone with a value (non-customers' frequency is 0); default labels
        TagBins(name="freq2", trait="frequency", quantiles=[0.5]),
        # nobody matches: no tags
        TagBins(name="nobody", trait="monetary", where="frequency > 100"),
        # recency is null for non-customers: they are left out
        TagBins(name="rec", trait="recency_days", quantiles=[0.5], labels=["recent", "older"]),
        # labels are SQL-quoted safely
        TagBins(
            name="quoted",
            trait="monetary",
            where="frequency >= 1",
            quantiles=[0.5],
            labels=["it's low", 'say "hi"'],
        ),
    ]
    result = build_with(store, TagSettings(rfm=False, rules=[], bins=bins))
    # cuts over 20 45 60 80 100 150 200 300 300 500 1000: 70, 150, 300
    assert tagged(store, "spend4") == {
        **dict.fromkeys(("c09", "c10", "c11"), "a"),
        **dict.fromkeys(("c06", "c07", "c08"), "b"),
        **dict.fromkeys(("c03", "c04", "c05"), "c"),
        **dict.fromkeys(("c01", "c02"), "d"),
    }
    # frequencies 0 0 1 1 1 1 1 1 2 2 3 3 5: median 1; x <= 1 is the first bin
    assert tagged(store, "freq2") == {
        **dict.fromkeys(("n01", "n02", "c05", "c06", "c07", "c08", "c09", "c11"), "q1"),
        **dict.fromkeys(("c01", "c02", "c03", "c04", "c10"), "q2"),
    }
    assert tagged(store, "nobody") == {}
    # recency 1 2 5 10 20 20 40 60 90 120 200: median 20
    assert tagged(store, "rec") == {
        **dict.fromkeys(("c01", "c02", "c03", "c04", "c05", "c06"), "recent"),
        **dict.fromkeys(("c07", "c08", "c09", "c10", "c11"), "older"),
    }
    quoted = tagged(store, "quoted")
    assert quoted["c11"] == "it's low" and quoted["c01"] == 'say "hi"'
    assert result.tags == {"spend4": 11, "freq2": 13, "nobody": 0, "rec": 11, "quoted": 11}
    # the cuts are DuckDB's quantile_cont over the selected rows
    cuts = store.store.scalar(
        "SELECT quantile_cont(monetary, [0.25, 0.5, 0.75]) FROM profiles WHERE frequency >= 1"
    )
    assert [float(c) for c in cuts] == [70.0, 150.0, 300.0]


# -- rebuilds ------------------------------------------------------------------------------------


def test_rebuild_replaces_built_in_tags_and_keeps_model_tags(store: Workspace) -> None:
    first = build_with(store, TagSettings())
    before = tag_rows(store)
    store.store.run(
        "INSERT INTO tags VALUES ('c01', 'propensity', '0.93', 'model', TIMESTAMP '2024-07-02'),"
        " ('n02', 'propensity', '0.10', 'model', TIMESTAMP '2024-07-02')"
    )
    second = build_with(store, TagSettings())
    after = tag_rows(store)
    model = [r for r in after if r[3] == "model"]
    assert model == [("c01", "propensity", "0.93", "model"), ("n02", "propensity", "0.10", "model")]
    assert [r for r in after if r[3] != "model"] == before  # replaced, not duplicated
    assert first.tags == second.tags
    assert store.store.scalar("SELECT count(*) FROM profile_builds") == 2
    # the model tags keep their own time; the rebuilt ones carry the new build's
    times = dict(store.store.rows("SELECT source, max(computed_at) FROM tags GROUP BY source"))
    assert times["model"] == datetime(2024, 7, 2)
    assert times["rule"] == store.store.scalar("SELECT max(built_at) FROM profile_builds")

    # a rule that is no longer configured loses its tags; a new one gets its own
    build_with(
        store, TagSettings(rfm=False, bins=[], rules=[TagRule(name="buyer", when="frequency >= 1")])
    )
    sources = store.store.rows("SELECT source, tag, count(*) FROM tags GROUP BY ALL ORDER BY ALL")
    assert sources == [("model", "propensity", 2), ("rule", "buyer", 11)]


# -- errors: raised before anything is written --------------------------------------------------


def _snapshot(ws: Workspace) -> tuple:
    return (
        tag_rows(ws, with_time=True),
        ws.store.rows("SELECT * FROM profile_builds"),
        ws.store.rows("SELECT user_id, as_of, monetary FROM profiles ORDER BY user_id"),
    )


def _failing_build(ws: Workspace, tags: TagSettings) -> str:
    before = _snapshot(ws)
    saved = ws.settings
    try:
        with pytest.raises(InputError) as info:
            build_with(ws, tags)
    finally:
        ws.settings = saved
    assert _snapshot(ws) == before
    return str(info.value)


def _rule(when: str, name: str = "bad_rule") -> TagSettings:
    return TagSettings(
        rules=[TagRule(name="ok_rule", when="frequency >= 1"), TagRule(name=name, when=when)]
    )


def test_unknown_trait(built: Workspace) -> None:
    message = _failing_build(built, _rule("frequency >= 1 and monetery > 10"))
    assert message.startswith(
        "tag rule 'bad_rule': unknown name 'monetery'; did you mean 'monetary'?"
    )
    assert "at column 20 of 'frequency >= 1 and monetery > 10'" in message


def test_syntax_error(built: Workspace) -> None:
    message = _failing_build(built, _rule("frequency >= 2 and monetary >"))
    assert message.startswith("tag rule 'bad_rule': expected a value, found the end")
    assert "at column 30 of" in message
    message = _failing_build(built, _rule("frequency >= 2 monetary"))
    assert message.startswith("tag rule 'bad_rule': unexpected 'monetary' at column 16")


@pytest.mark.parametrize(
    "when",
    ["preferred_channel > 5", "monetary = 'high'", "frequency >= 1 and lower(monetary) = 'x'"],
)
def test_mismatched_types_fail_with_the_rule_name(built: Workspace, when: str) -> None:
    message = _failing_build(built, _rule(when))
    assert message.startswith("tag rule 'bad_rule': cannot apply "), message
    assert message.endswith(f"of {when!r}"), message


def test_mismatched_types_name_the_column(built: Workspace) -> None:
    when = "frequency >= 1 and preferred_channel > 5"
    message = _failing_build(built, _rule(when))
    assert "at column 20" in message, message


def test_text_trait_in_a_list_of_numbers_fails_before_writing(built: Workspace) -> None:
    message = _failing_build(built, _rule("preferred_channel in (1, 2)"))
    assert "bad_rule" in message


@pytest.mark.parametrize(
    ("when", "gives"),
    [("monetary + 1", "float64"), ("frequency", "int64"), ("preferred_channel", "string")],
)
def test_rule_that_is_not_a_condition(built: Workspace, when: str, gives: str) -> None:
    message = _failing_build(built, _rule(when))
    assert message.startswith(
        f"tag rule 'bad_rule': {when!r} is not a condition (it gives {gives})"
    )
    assert "compare it" in message


def test_duplicate_rule_names(built: Workspace) -> None:
    tags = TagSettings(
        rules=[
            TagRule(name="twice", when="frequency >= 1"),
            TagRule(name="twice", when="monetary > 0"),
        ]
    )
    message = _failing_build(built, tags)
    assert message.startswith("tag rule 'twice' is declared twice")


def test_rule_named_like_a_bin(built: Workspace) -> None:
    tags = TagSettings(rules=[TagRule(name="spend_band", when="frequency >= 1")])  # default bins
    message = _failing_build(built, tags)
    assert message.startswith("tag bins 'spend_band': the name is already a tag rule")


def test_rule_named_like_an_rfm_tag(store: Workspace) -> None:
    tags = TagSettings(rules=[TagRule(name="rfm_segment", when="frequency >= 1")])
    with pytest.raises(InputError, match="rfm_segment"):
        build_with(store, tags)


@pytest.mark.parametrize(
    ("bins", "fragment"),
    [
        (TagBins(name="b", trait="nope"), "tag bins 'b': unknown trait 'nope'"),
        (
            TagBins(name="b", trait="preferred_channel"),
            "tag bins 'b': trait 'preferred_channel' is not numeric",
        ),
        (
            TagBins(name="b", trait="top_categories"),
            "tag bins 'b': trait 'top_categories' is not numeric",
        ),
        (
            TagBins(name="b", trait="monetary", quantiles=[0.5], labels=["a", "b", "c"]),
            "tag bins 'b': 1 quantiles make 2 bins, but 3 labels are given",
        ),
        (
            TagBins(name="b", trait="monetary", labels=["a"]),
            "tag bins 'b': 3 quantiles make 4 bins, but 1 labels are given",
        ),
        (
            TagBins(name="b", trait="monetary", where="frequency >"),
            "tag bins 'b' where: expected a value, found the end at column 12",
        ),
        (
            TagBins(name="b", trait="monetary", where="freqency > 1"),
            "tag bins 'b' where: unknown name 'freqency'; did you mean 'frequency'?",
        ),
        (
            TagBins(name="b", trait="monetary", where="monetary"),
            "tag bins 'b' where: 'monetary' is not a condition",
        ),
        (
            TagBins(name="ok_rule", trait="monetary"),
            "tag bins 'ok_rule': the name is already a tag rule",
        ),
    ],
)
def test_bin_errors(built: Workspace, bins: TagBins, fragment: str) -> None:
    tags = TagSettings(rules=[TagRule(name="ok_rule", when="frequency >= 1")], bins=[bins])
    message = _failing_build(built, tags)
    assert message.startswith(fragment), message
