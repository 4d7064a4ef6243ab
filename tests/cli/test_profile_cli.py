"""The profile stage's command line, run as a real subprocess on real DuckDB files.

``profile build|show|export|traits``, ``tags list`` and ``analyze trends|funnel|cohorts|baskets|
frequency`` on the simulated shop. Conventions (DESIGN.md, "CLI conventions"): ``--json``
prints exactly one JSON object on stdout; exit codes 0 ok, 2 bad input; an error is one line
on stderr starting with ``error:`` naming the option or value at fault, and nothing is written.

One store is ingested per module (in process: that is not what is tested here) and built once
through the CLI; every test that runs a command gets its own copy of the DuckDB file, and the
read-only commands run two at a time (the machine has two cores).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from jingzhun.profile.analyze import DEFAULT_FUNNEL
from jingzhun.profile.tags import RFM_SEGMENTS
from jingzhun.workspace import Workspace
from tests.cli.subprocess_cli import (
    Ran,
    copy_store,
    error_line,
    human,
    one_json,
    run,
    snapshot,
    sql,
)

BUILD_KEYS = {"as_of", "users", "traits", "tags", "seconds"}
SHOW_KEYS = {"user_id", "traits", "tags", "anonymous_ids", "last_events", "consents"}
EVENT_KEYS = {"ts", "event", "item_id", "order_id", "revenue", "channel"}
ANALYSES = ("trends", "funnel", "cohorts", "baskets", "frequency")
#: Profile columns that identify the row rather than describe the user.
ID_COLUMNS = {"user_id", "as_of", "created_at"}
AS_OF = "2026-06-30"


# -- running the CLI -------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """Commands run one after another in a folder of their own, on a copy of ``store``."""

    name: str
    store: str | None  # "empty", "ingested", "built" or None (no store at all)
    commands: Sequence[Sequence[str]]
    files: dict[str, str] = field(default_factory=dict)


def run_jobs(
    jobs: Sequence[Job], stores: dict[str, Path], base: Path
) -> dict[str, tuple[list[Ran], Path | None]]:
    """Run the jobs two at a time; each name maps to its results and its store copy."""

    def one(job: Job) -> tuple[list[Ran], Path | None]:
        folder = base / job.name
        folder.mkdir()
        db = copy_store(stores[job.store], folder) if job.store else None
        for name, text in job.files.items():
            (folder / name).write_text(text, encoding="utf-8")
        return [run(folder, *args, db=db) for args in job.commands], db

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([j.name for j in jobs], pool.map(one, jobs), strict=True))


# -- the stores ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(shop, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An empty store, the shop ingested, and the shop with profiles built by the CLI."""
    folder = tmp_path_factory.mktemp("profile_stores")
    empty = folder / "empty.duckdb"
    Workspace.open(empty).close()
    ingested = folder / "ingested.duckdb"
    with Workspace.open(ingested) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [shop.file(kind)])
    built = copy_store(ingested, folder / "built")
    return {"empty": empty, "ingested": ingested, "built": built}


@pytest.fixture(scope="module")
def build(stores: dict[str, Path]) -> dict[str, Any]:
    """``profile build --json`` on the built store's folder (the one CLI build shared here)."""
    db = stores["built"]
    data = one_json(run(db.parent, "profile", "build", "--json", db=db))
    assert not db.with_name(db.name + ".wal").exists()
    return data


@pytest.fixture(scope="module")
def person(stores: dict[str, Path], build: dict[str, Any]) -> tuple[str, str]:
    """A repeat customer with a linked anonymous id: (user_id, anonymous_id)."""
    rows = sql(
        stores["built"],
        """
        SELECT p.user_id, min(i.anonymous_id) FROM profiles p JOIN identities i USING (user_id)
        WHERE p.frequency >= 2 AND p.events >= 8 GROUP BY 1 ORDER BY 1 LIMIT 1
        """,
    )
    assert rows, "the shop should have repeat customers with linked devices"
    return rows[0]


@pytest.fixture(scope="module")
def views(
    stores: dict[str, Path],
    build: dict[str, Any],
    person: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Ran]:
    """Every successful command of this module, run once, two at a time."""
    user, device = person
    jobs = [
        Job("show_json", "built", [("profile", "show", user, "-n", "5", "--json")]),
        Job("show_device", "built", [("profile", "show", device, "--json")]),
        Job("show_human", "built", [("profile", "show", user)]),
        Job("export_parquet", "built", [("profile", "export", "--out", "p.parquet", "--json")]),
        Job("export_csv", "built", [("profile", "export", "--out", "out/p.csv")]),
        Job("traits", None, [("profile", "traits", "--json")]),
        Job("tags_json", "built", [("tags", "list", "--json")]),
        Job(
            "as_of",
            "ingested",
            [
                ("profile", "build", "--as-of", AS_OF, "--json"),
                ("profile", "export", "--out", "p.parquet", "--json"),
            ],
        ),
        Job("frequency_until", "built", [("analyze", "frequency", "--until", AS_OF, "--json")]),
        Job(
            "trends_june",
            "built",
            [("analyze", "trends", "--since", "2026-06-01", "--until", "2026-07-01", "--json")],
        ),
        Job(
            "funnel_within",
            "built",
            [
                (
                    "analyze",
                    "funnel",
                    "--steps",
                    " product_viewed, product_added ,checkout_started,order_completed",
                    "--within-days",
                    "1",
                    "--json",
                )
            ],
        ),
        # baskets --json at the item level; the default (category) level in human output
        Job("baskets_json", "built", [("analyze", "baskets", "--level", "item", "--json")]),
    ]
    for name in ANALYSES:
        if name != "baskets":
            jobs.append(Job(f"{name}_json", "built", [("analyze", name, "--json")]))
        jobs.append(Job(f"{name}_human", "built", [("analyze", name)]))
    ran = run_jobs(jobs, stores, tmp_path_factory.mktemp("views"))
    results: dict[str, Ran] = {}
    for name, (outs, _) in ran.items():
        for i, res in enumerate(outs):
            results[name if i == 0 else f"{name}.{i}"] = res
    return results


# -- profile build ---------------------------------------------------------------------------


def test_build_json_counts_every_user_as_of_just_after_the_latest_event(
    stores: dict[str, Path], build: dict[str, Any]
) -> None:
    db = stores["built"]
    assert set(build) == BUILD_KEYS
    ((latest, profiles, distinct_users),) = sql(
        db,
        "SELECT (SELECT max(ts) FROM events), count(*), count(DISTINCT user_id) FROM profiles",
    )
    assert build["users"] > 0
    assert build["users"] == profiles == distinct_users
    # every known user and every user with an event has a profile
    (known,) = sql(
        db,
        "SELECT count(*) FROM (SELECT user_id FROM users UNION SELECT user_id FROM events WHERE user_id IS NOT NULL)",
    )[0]
    assert build["users"] == known
    as_of = datetime.fromisoformat(build["as_of"])
    assert as_of - latest == timedelta(microseconds=1)
    assert sql(db, "SELECT DISTINCT as_of FROM profiles") == [(as_of,)]
    traits = build["traits"]
    assert traits[:2] == ["user_id", "as_of"]
    assert {"frequency", "monetary", "recency_days", "aov", "score"} <= set(traits)
    assert len(set(traits)) == len(traits)
    columns = [
        r[0]
        for r in sql(
            db,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'profiles' ORDER BY ordinal_position",
        )
    ]
    assert columns == traits
    tags = build["tags"]
    for tag in ("high_value", "churn_risk", "rfm_segment", "spend_band"):
        assert tags[tag] > 0, tag
    (customers,) = sql(db, "SELECT count(*) FROM profiles WHERE frequency >= 1")[0]
    assert tags["rfm_segment"] == customers
    assert isinstance(build["seconds"], int | float) and build["seconds"] >= 0
    assert sql(db, "SELECT count(*), max(users) FROM profile_builds") == [(1, build["users"])]


def test_build_as_of_counts_only_the_orders_before_it(
    views: dict[str, Ran], build: dict[str, Any]
) -> None:
    built = one_json(views["as_of"])
    assert set(built) == BUILD_KEYS
    assert datetime.fromisoformat(built["as_of"]) == datetime(2026, 6, 30)
    assert 0 < built["users"] <= build["users"]
    exported = one_json(views["as_of.1"])
    assert exported["rows"] == built["users"]
    early = pd.read_parquet(views["as_of.1"].folder / "p.parquet")
    full = pd.read_parquet(views["export_parquet"].folder / "p.parquet")
    assert len(early) == built["users"] and len(full) == build["users"]
    assert (early["as_of"] == pd.Timestamp(AS_OF)).all()
    assert (early["last_seen"].dropna() < pd.Timestamp(AS_OF)).all()
    assert (full["last_seen"].dropna() >= pd.Timestamp(AS_OF)).any()
    assert 0 < early["frequency"].sum() < full["frequency"].sum()
    # the same orders the frequency analysis counts up to that time
    freq = one_json(views["frequency_until"])
    per_customer = freq["tables"]["orders_per_customer"]
    assert early["frequency"].sum() == sum(r["orders"] * r["customers"] for r in per_customer)
    assert (early["frequency"] >= 1).sum() == freq["summary"]["customers"]
    # and no user orders more often by then than in the end
    both = early.merge(full, on="user_id", suffixes=("_early", "_full"))
    assert len(both) == len(early)
    assert (both["frequency_early"] <= both["frequency_full"]).all()
    assert (both["monetary_early"] <= both["monetary_full"] + 1e-6).all()


# -- profile show ----------------------------------------------------------------------------


def test_show_json_has_traits_tags_devices_and_latest_events(
    views: dict[str, Ran],
    stores: dict[str, Path],
    build: dict[str, Any],
    person: tuple[str, str],
) -> None:
    db = stores["built"]
    user, device = person
    p = one_json(views["show_json"])
    assert set(p) == SHOW_KEYS
    assert p["user_id"] == user
    traits = p["traits"]
    assert list(traits) == build["traits"]
    assert traits["user_id"] == user
    assert datetime.fromisoformat(traits["as_of"]) == datetime.fromisoformat(build["as_of"])
    ((frequency, monetary, affinity),) = sql(
        db, f"SELECT frequency, monetary, category_affinity FROM profiles WHERE user_id = '{user}'"
    )
    assert traits["frequency"] == frequency >= 2
    assert traits["monetary"] == pytest.approx(monetary)
    assert traits["category_affinity"] == pytest.approx(dict(affinity))
    assert isinstance(traits["top_categories"], list)
    stored_tags = dict(sql(db, f"SELECT tag, value FROM tags WHERE user_id = '{user}'"))
    assert p["tags"] == stored_tags
    assert p["tags"]["rfm_segment"] in RFM_SEGMENTS
    assert device in p["anonymous_ids"]
    assert sorted(p["anonymous_ids"]) == sorted(
        r[0] for r in sql(db, f"SELECT anonymous_id FROM identities WHERE user_id = '{user}'")
    )
    events = p["last_events"]
    assert len(events) == 5  # -n 5, and the user has more
    assert all(set(e) == EVENT_KEYS for e in events)
    times = [datetime.fromisoformat(e["ts"]) for e in events]
    assert times == sorted(times, reverse=True)
    (latest,) = sql(
        db,
        f"""SELECT max(ts) FROM events WHERE user_id = '{user}'
            OR anonymous_id IN (SELECT anonymous_id FROM identities WHERE user_id = '{user}')""",
    )[0]
    assert times[0] == latest


def test_show_a_linked_anonymous_id_resolves_to_its_user(
    views: dict[str, Ran], person: tuple[str, str]
) -> None:
    user, device = person
    assert device != user
    by_user = one_json(views["show_json"])
    by_device = one_json(views["show_device"])
    assert by_device["user_id"] == user
    assert by_device["traits"] == by_user["traits"]
    assert by_device["tags"] == by_user["tags"]
    assert device in by_device["anonymous_ids"]
    assert len(by_device["last_events"]) == 10  # the default --events


def test_show_human_lists_traits_tags_and_devices(
    views: dict[str, Ran], person: tuple[str, str]
) -> None:
    user, device = person
    text = human(views["show_human"])
    assert text.splitlines()[0].startswith(user)
    assert device in text.splitlines()[0]
    for trait in ("frequency", "monetary", "recency_days", "category_affinity", "score"):
        assert trait in text, trait
    tags = one_json(views["show_json"])["tags"]
    assert f"rfm_segment={tags['rfm_segment']}" in text
    assert "Latest events" in text


# -- profile export --------------------------------------------------------------------------


def test_export_parquet_has_one_row_per_profile(
    views: dict[str, Ran], stores: dict[str, Path], build: dict[str, Any]
) -> None:
    res = views["export_parquet"]
    data = one_json(res)
    assert data == {"rows": build["users"], "file": "p.parquet"}
    path = res.folder / "p.parquet"
    table = pq.read_table(path)
    assert table.num_rows == build["users"]
    assert table.column_names == build["traits"]
    ids = table.column("user_id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert sorted(p.name for p in res.folder.iterdir()) == ["p.parquet", "store.duckdb"]
    (orders,) = sql(stores["built"], "SELECT sum(frequency) FROM profiles")[0]
    assert sum(table.column("frequency").to_pylist()) == orders


def test_export_csv_is_readable_by_pandas_with_lists_and_maps_as_json(
    views: dict[str, Ran], build: dict[str, Any]
) -> None:
    res = views["export_csv"]
    path = res.folder / "out" / "p.csv"  # the folder is created
    text = human(res)
    assert f"{build['users']:,}" in text and "p.csv" in text
    assert sorted(p.name for p in path.parent.iterdir()) == ["p.csv"]  # no temp file left
    csv = pd.read_csv(path, dtype={"user_id": str})
    parquet = pd.read_parquet(views["export_parquet"].folder / "p.parquet")
    assert len(csv) == build["users"]
    assert list(csv.columns) == build["traits"]
    assert list(csv["user_id"]) == list(parquet["user_id"])
    assert (csv["frequency"].to_numpy() == parquet["frequency"].to_numpy()).all()
    customers = csv[csv["frequency"] >= 1]
    assert len(customers) > 0
    for _, row in customers.head(50).iterrows():
        original = parquet.loc[parquet["user_id"] == row["user_id"]].iloc[0]
        affinity = json.loads(row["category_affinity"])
        assert isinstance(affinity, dict) and affinity
        assert affinity == pytest.approx(dict(original["category_affinity"]))
        top = json.loads(row["top_categories"])
        assert isinstance(top, list) and top == list(original["top_categories"])
        assert json.loads(row["last_items"]) == list(original["last_items"])


# -- profile traits, tags list ---------------------------------------------------------------


def test_traits_json_gives_every_builtin_trait_a_meaning(
    views: dict[str, Ran], build: dict[str, Any]
) -> None:
    rows = one_json(views["traits"])["traits"]
    assert rows and all(set(r) == {"trait", "meaning"} for r in rows)
    names = [r["trait"] for r in rows]
    assert len(set(names)) == len(names)
    for r in rows:
        assert isinstance(r["meaning"], str) and len(r["meaning"].strip()) > 10, r
    # every catalogued trait is a column the build writes
    assert set(names) <= set(build["traits"])
    assert {"frequency", "monetary", "recency_days", "category_affinity"} <= set(names)


def test_every_built_profile_column_is_explained_by_profile_traits(
    views: dict[str, Ran], build: dict[str, Any]
) -> None:
    names = {r["trait"] for r in one_json(views["traits"])["traits"]}
    assert set(build["traits"]) - ID_COLUMNS <= names


def test_tags_list_json_counts_rfm_segments_and_rule_tags(
    views: dict[str, Ran], build: dict[str, Any]
) -> None:
    rows = one_json(views["tags_json"])["tags"]
    assert rows and all(set(r) == {"tag", "value", "source", "users", "computed_at"} for r in rows)
    by_tag: dict[str, dict[str, int]] = {}
    for r in rows:
        by_tag.setdefault(r["tag"], {})[r["value"]] = r["users"]
    segments = by_tag["rfm_segment"]
    assert set(segments) <= set(RFM_SEGMENTS)
    assert len(segments) >= 5
    assert {r["source"] for r in rows if r["tag"] == "rfm_segment"} == {"rfm"}
    for rule in ("high_value", "churn_risk"):
        assert by_tag[rule] == {"true": build["tags"][rule]}, rule
        assert {r["source"] for r in rows if r["tag"] == rule} == {"rule"}
    # users per tag add up to what the build reported
    for tag, count in build["tags"].items():
        assert sum(by_tag.get(tag, {}).values()) == count, tag


# -- analyze ---------------------------------------------------------------------------------


def analysis(res: Ran, name: str) -> dict[str, Any]:
    data = one_json(res)
    assert set(data) == {"analysis", "summary", "tables"}
    assert data["analysis"] == name
    assert isinstance(data["summary"], dict) and data["summary"]
    assert isinstance(data["tables"], dict) and data["tables"]
    for title, rows in data["tables"].items():
        assert isinstance(rows, list) and rows, title
    return data


def test_analyze_trends_json(views: dict[str, Ran], stores: dict[str, Path]) -> None:
    data = analysis(views["trends_json"], "trends")
    daily = pd.DataFrame(data["tables"]["daily"])
    s = data["summary"]
    assert s["days"] == len(daily) and s["weeks"] == len(data["tables"]["weekly"])
    ((first, last),) = sql(stores["built"], "SELECT min(ts)::DATE, max(ts)::DATE FROM events")
    days = pd.to_datetime(daily["day"]).dt.date
    assert days.min() == first and days.max() == last
    assert s["revenue"]["total"] == pytest.approx(daily["revenue"].sum())
    assert 0 < s["complete_weeks_used"] <= 12
    for metric in ("actives", "orders", "revenue"):
        assert isinstance(s[metric]["trend_per_week"], float), metric


def test_analyze_trends_since_until_keeps_to_the_period(views: dict[str, Ran]) -> None:
    data = analysis(views["trends_june"], "trends")
    days = pd.to_datetime(pd.DataFrame(data["tables"]["daily"])["day"])
    assert len(days) == data["summary"]["days"] == 30
    assert days.min() == pd.Timestamp("2026-06-01") and days.max() == pd.Timestamp("2026-06-30")


def test_analyze_funnel_json(views: dict[str, Ran]) -> None:
    data = analysis(views["funnel_json"], "funnel")
    steps = data["tables"]["steps"]
    assert [r["step"] for r in steps] == list(DEFAULT_FUNNEL) == data["summary"]["steps"]
    visitors = [r["visitors"] for r in steps]
    assert visitors[0] > 0
    assert visitors == sorted(visitors, reverse=True)
    assert data["summary"]["within_days"] is None
    assert data["summary"]["overall_conversion"] == pytest.approx(visitors[-1] / visitors[0])
    for prev, row in itertools.pairwise(steps):
        assert row["from_previous"] == pytest.approx(row["visitors"] / prev["visitors"])


def test_analyze_funnel_steps_and_within_days(views: dict[str, Ran]) -> None:
    free = analysis(views["funnel_json"], "funnel")
    quick = analysis(views["funnel_within"], "funnel")
    assert quick["summary"]["steps"] == list(DEFAULT_FUNNEL)  # the list, spaces trimmed
    assert quick["summary"]["within_days"] == 1.0
    a = [r["visitors"] for r in free["tables"]["steps"]]
    b = [r["visitors"] for r in quick["tables"]["steps"]]
    assert a[0] == b[0] > 0  # the first step has no time limit
    assert all(y <= x for x, y in zip(a, b, strict=True))
    assert 0 < b[-1] < a[-1]  # some buyers take longer than a day after their first view
    assert quick["summary"]["overall_conversion"] == pytest.approx(b[-1] / b[0])


def test_analyze_cohorts_json(views: dict[str, Ran], stores: dict[str, Path]) -> None:
    data = analysis(views["cohorts_json"], "cohorts")
    rows = data["tables"]["retention"]
    (months,) = sql(
        stores["built"],
        "SELECT count(DISTINCT date_trunc('month', ts)) FROM events WHERE event = 'order_completed'",
    )[0]
    assert 1 < months <= 12  # so the default 12 cohorts hold every customer
    assert data["summary"]["cohorts"] == len(rows) == months
    assert all(r["m0"] == 1.0 for r in rows)
    cohorts = [r["cohort"] for r in rows]
    assert cohorts == sorted(cohorts)
    for r in rows:
        for key, value in r.items():
            if key.startswith("m"):
                assert 0.0 <= value <= 1.0, (r["cohort"], key)
    # every customer is in exactly one cohort
    freq = analysis(views["frequency_json"], "frequency")
    assert sum(r["customers"] for r in rows) == freq["summary"]["customers"]
    assert 0 < data["summary"]["mean_month_1_retention"] < 1


def test_analyze_baskets_json_at_the_item_level(
    views: dict[str, Ran], stores: dict[str, Path]
) -> None:
    data = analysis(views["baskets_json"], "baskets")
    s, rules = data["summary"], data["tables"]["rules"]
    assert s["level"] == "item" and s["min_support"] == 0.001
    (orders,) = sql(
        stores["built"],
        "SELECT count(DISTINCT order_id) FROM events WHERE event = 'order_completed' AND item_id IS NOT NULL",
    )[0]
    assert s["orders"] == orders
    assert 0 < s["rules"] == len(rules) <= 50
    items = {r[0] for r in sql(stores["built"], "SELECT item_id FROM items")}
    for r in rules:
        assert r["antecedent"] != r["consequent"]
        assert {r["antecedent"], r["consequent"]} <= items
        assert r["orders"] >= s["min_count"]
        assert r["support"] == pytest.approx(r["orders"] / s["orders"])
        assert r["confidence"] >= 0.05 and r["lift"] > 0
    lifts = [r["lift"] for r in rules]
    assert lifts == sorted(lifts, reverse=True)


def test_analyze_frequency_json(views: dict[str, Ran], build: dict[str, Any]) -> None:
    data = analysis(views["frequency_json"], "frequency")
    s = data["summary"]
    dist = data["tables"]["orders_per_customer"]
    assert s["customers"] == sum(r["customers"] for r in dist)
    assert s["customers"] == build["tags"]["rfm_segment"]  # RFM scores exactly the customers
    assert s["repeat_customers"] == sum(r["customers"] for r in dist if r["orders"] >= 2)
    assert s["repeat_rate"] == pytest.approx(s["repeat_customers"] / s["customers"], abs=1e-4)
    gaps = s["interpurchase_days"]
    assert gaps["p10"] <= gaps["p25"] <= gaps["p50"] <= gaps["p75"] <= gaps["p90"]
    assert sum(r["gaps"] for r in data["tables"]["interpurchase_days"]) == sum(
        (r["orders"] - 1) * r["customers"] for r in dist
    )


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("trends", ("days:", "complete_weeks_used:", "daily (last 40 of", "weekly")),
        ("funnel", ("overall_conversion:", "steps", *DEFAULT_FUNNEL)),
        ("cohorts", ("cohorts:", "mean_month_1_retention:", "retention")),
        ("baskets", ("level: category", "rules", "antecedent", "lift")),
        ("frequency", ("repeat_rate:", "orders_per_customer", "interpurchase_days")),
    ],
)
def test_analyze_human_output(views: dict[str, Ran], name: str, words: tuple[str, ...]) -> None:
    text = human(views[f"{name}_human"])
    for word in words:
        assert word in text, word


# -- bad input -------------------------------------------------------------------------------

BAD_TAG_RULE = '[[tags.rules]]\nname = "x"\nwhen = "monetary >>= 3"\n'
UNKNOWN_TRAIT_COLUMN = '[[profile.traits]]\nname = "foo"\nagg = "sum"\nof = "nosuch"\n'
UNKNOWN_TRAIT_WHERE = '[[profile.traits]]\nname = "bar"\nagg = "count"\nwhere = "nosuch_col = 1"\n'

#: name, store, arguments, what the error line names, files in the working folder
BAD_INPUTS: list[tuple[str, str, tuple[str, ...], tuple[str, ...], dict[str, str]]] = [
    (
        "build-empty-store",
        "empty",
        ("profile", "build", "--json"),
        ("no events",),
        {},
    ),
    (
        "build-as-of-not-a-timestamp",
        "ingested",
        ("profile", "build", "--as-of", "next tuesday", "--json"),
        ("--as-of", "'next tuesday'"),
        {},
    ),
    (
        "build-bad-tag-rule",
        "built",
        ("profile", "build", "--json"),
        ("tag rule 'x'", "column 11", "monetary >>= 3"),
        {"jingzhun.toml": BAD_TAG_RULE},
    ),
    (
        "build-custom-trait-unknown-column",
        "built",
        ("profile", "build"),
        ("profile trait 'foo'", "'nosuch'"),
        {"jingzhun.toml": UNKNOWN_TRAIT_COLUMN},
    ),
    (
        "build-custom-trait-unknown-name-in-where",
        "built",
        ("profile", "build"),
        ("profile trait 'bar'", "'nosuch_col'"),
        {"jingzhun.toml": UNKNOWN_TRAIT_WHERE},
    ),
    (
        "show-before-any-build",
        "ingested",
        ("profile", "show", "u00000001", "--json"),
        ("no profiles yet",),
        {},
    ),
    (
        "show-unknown-user",
        "built",
        ("profile", "show", "nobody_42", "--json"),
        ("'nobody_42'",),
        {},
    ),
    (
        "export-unknown-extension",
        "built",
        ("profile", "export", "--out", "p.xlsx", "--json"),
        ("--out", ".xlsx"),
        {},
    ),
    (
        "export-to-a-folder",
        "built",
        ("profile", "export", "--out", "a_folder.csv"),
        ("--out", "a_folder.csv", "folder"),
        {"a_folder.csv/keep.txt": "x"},
    ),
    (
        "funnel-unknown-event",
        "built",
        ("analyze", "funnel", "--steps", "product_viewed,teleported", "--json"),
        ("--steps", "'teleported'"),
        {},
    ),
    (
        "funnel-one-step",
        "built",
        ("analyze", "funnel", "--steps", "product_viewed", "--json"),
        ("two steps", "--steps"),
        {},
    ),
    (
        "baskets-unknown-level",
        "built",
        ("analyze", "baskets", "--level", "bogus", "--json"),
        ("--level", "'bogus'"),
        {},
    ),
    (
        "baskets-min-support-0",
        "built",
        ("analyze", "baskets", "--min-support", "0", "--json"),
        ("--min-support",),
        {},
    ),
    (
        "baskets-min-support-2",
        "built",
        ("analyze", "baskets", "--min-support", "2", "--json"),
        ("--min-support", "2"),
        {},
    ),
    *(
        (
            f"{name}-since-after-until",
            "built",
            ("analyze", name, "--since", "2026-06-01", "--until", "2026-05-01", "--json"),
            ("--since", "--until", "2026-06-01"),
            {},
        )
        for name in ("trends", "baskets")
    ),
    (
        "trends-since-not-a-timestamp",
        "built",
        ("analyze", "trends", "--since", "last-june", "--json"),
        ("--since", "'last-june'"),
        {},
    ),
]


@pytest.fixture(scope="module")
def bad_runs(
    stores: dict[str, Path], build: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Ran, Path, dict[str, int]]]:
    """Every bad-input case run once, two at a time, each on its own copy of its store."""
    before = {name: snapshot(path) for name, path in stores.items()}
    base = tmp_path_factory.mktemp("bad")

    def one(case: tuple[str, str, tuple[str, ...], tuple[str, ...], dict[str, str]]) -> Any:
        name, store, args, _, files = case
        folder = base / name
        db = copy_store(stores[store], folder)
        for fname, text in files.items():
            path = folder / fname
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return run(folder, *args, db=db), db, before[store]

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([c[0] for c in BAD_INPUTS], pool.map(one, BAD_INPUTS), strict=True))


@pytest.mark.parametrize(
    ("case", "needles", "files"),
    [(c[0], c[3], c[4]) for c in BAD_INPUTS],
    ids=[c[0] for c in BAD_INPUTS],
)
def test_bad_input_fails_with_one_error_line_and_writes_nothing(
    bad_runs: dict[str, tuple[Ran, Path, dict[str, int]]],
    case: str,
    needles: tuple[str, ...],
    files: dict[str, str],
) -> None:
    res, db, before = bad_runs[case]
    error_line(res, *needles)
    assert snapshot(db) == before
    # nothing new in the working folder: no export, no temp file
    made = {p.relative_to(res.folder).as_posix() for p in res.folder.rglob("*")}
    expected = {"store.duckdb", *files, *(str(Path(f).parent) for f in files if "/" in f)}
    assert made == expected


def test_bad_rule_leaves_the_previous_build_in_place(
    bad_runs: dict[str, tuple[Ran, Path, dict[str, int]]], build: dict[str, Any]
) -> None:
    _, db, _ = bad_runs["build-bad-tag-rule"]
    assert sql(db, "SELECT DISTINCT as_of FROM profiles") == [
        (datetime.fromisoformat(build["as_of"]),)
    ]
    assert sql(db, "SELECT count(*) FROM profile_builds") == [(1,)]


def test_custom_trait_and_tag_rule_from_jingzhun_toml(
    stores: dict[str, Path], build: dict[str, Any], tmp_path: Path
) -> None:
    """The settings the bad cases break do work when right: a custom trait, a rule over it."""
    db = copy_store(stores["ingested"], tmp_path)
    (tmp_path / "jingzhun.toml").write_text(
        '[[profile.traits]]\nname = "spent_30d"\nagg = "sum"\nof = "revenue"\n'
        "where = \"event = 'order_completed'\"\nwindow_days = 30\n"
        '[[tags.rules]]\nname = "recent_spender"\nwhen = "spent_30d > 0"\n',
        encoding="utf-8",
    )
    data = one_json(run(tmp_path, "profile", "build", "--json", db=db))
    assert data["users"] == build["users"]
    assert "spent_30d" in data["traits"]
    ((spenders, total),) = sql(
        db, "SELECT count(*) FILTER (WHERE spent_30d > 0), sum(spent_30d) FROM profiles"
    )
    assert spenders > 0
    assert data["tags"]["recent_spender"] == spenders
    (expected,) = sql(
        db,
        f"""SELECT sum(revenue) FROM events WHERE event = 'order_completed' AND user_id IS NOT NULL
            AND ts >= TIMESTAMP '{data["as_of"]}' - INTERVAL 30 DAY""",
    )[0]
    assert total == pytest.approx(expected)


# -- bugs found: a small store that shows each -----------------------------------------------

SMALL_EVENTS_CSV = (
    "event_id,event,ts,user_id,anonymous_id,order_id,item_id,price\n"
    "e1,product_viewed,2025-03-01T23:50:00,u1,,,sku1,\n"
    "e2,order_completed,2025-03-01T23:59:59,u1,,o1,sku1,10\n"
    "e3,order_completed,2025-03-02T00:00:01,u1,,o1,sku2,5\n"
    "e4,product_viewed,2025-03-05T10:00:00,u2,,,sku1,\n"
)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One order whose two lines straddle midnight, and two visitors who each view once."""
    folder = tmp_path_factory.mktemp("small")
    (folder / "events.csv").write_text(SMALL_EVENTS_CSV, encoding="utf-8")
    db = folder / "small.duckdb"
    with Workspace.open(db) as ws:
        assert ws.ingest("events", [str(folder / "events.csv")]).inserted == 4
    return db


def test_trends_total_orders_counts_an_order_once(small_store: Path, tmp_path: Path) -> None:
    db = copy_store(small_store, tmp_path)
    assert sql(db, "SELECT count(DISTINCT order_id) FROM events") == [(1,)]
    data = one_json(run(tmp_path, "analyze", "trends", "--json", db=db))
    assert data["summary"]["orders"]["total"] == 1


def test_funnel_repeated_step_needs_a_second_event(small_store: Path, tmp_path: Path) -> None:
    db = copy_store(small_store, tmp_path)
    res = run(
        tmp_path, "analyze", "funnel", "--steps", "product_viewed,product_viewed", "--json", db=db
    )
    if res.code == 2:  # refusing a repeated step is a fix too
        error_line(res, "--steps", "product_viewed")
        return
    steps = one_json(res)["tables"]["steps"]
    assert [s["visitors"] for s in steps] == [2, 0]  # nobody viewed a product twice


# -- numbers: NaN, infinities, negative and huge values (issue 12) -----------------------------

HUGE = "100000000000000000000"  # 1e20 as a whole number: Typer passes it on as an int
LONG_CHAIN_RULE = (
    '[[tags.rules]]\nname = "sum400"\nwhen = "' + " + ".join(["frequency"] * 400) + ' > 0"\n'
)
MANY_TRAITS = "".join(f'[[profile.traits]]\nname = "t{i}"\nagg = "count"\n' for i in range(2000))

#: name, store, arguments, what the error line names, files in the working folder
BAD_NUMBERS: list[tuple[str, str, tuple[str, ...], tuple[str, ...], dict[str, str]]] = [
    ("show-events-huge", "built", ("profile", "show", "u1", "--events", HUGE), ("--events",), {}),
    ("baskets-top-huge", "built", ("analyze", "baskets", "--top", HUGE), ("--top",), {}),
    *(
        (
            f"funnel-within-{v}",
            "built",
            ("analyze", "funnel", "--within-days", v),
            ("--within-days",),
            {},
        )
        for v in ("inf", "1e300")
    ),
    ("trends-weeks-huge", "built", ("analyze", "trends", "--weeks", HUGE), ("--weeks",), {}),
    ("cohorts-months-huge", "built", ("analyze", "cohorts", "--months", HUGE), ("--months",), {}),
    (
        "funnel-300-steps",
        "built",
        ("analyze", "funnel", "--steps", ",".join(["product_viewed"] * 300)),
        ("--steps", "at most 20"),
        {},
    ),
    *(
        (f"clean-threshold-{v}", "built", ("clean", "--threshold", v), ("--threshold",), {})
        for v in ("inf", "1e9")
    ),
    ("clean-burst-huge", "built", ("clean", "--burst", HUGE), ("--burst",), {}),
    *(
        (
            f"build-{key}-{v}",
            "built",
            ("profile", "build"),
            (f"[{section}] {key}",),
            {"jingzhun.toml": f"[{section}]\n{key} = {v}\n"},
        )
        for section, key, v in (
            ("profile", "half_life_days", "1e-300"),
            ("profile", "half_life_days", "nan"),
            ("store", "threads", "100000000"),
            ("clean", "outlier_threshold", "inf"),
        )
    ),
    (
        "build-window-days-inf",
        "built",
        ("profile", "build"),
        ("[profile] traits #1 (recent) window_days", "finite"),
        {
            "jingzhun.toml": '[[profile.traits]]\nname = "recent"\nagg = "count"\nwindow_days = inf\n'
        },
    ),
    (
        "build-2000-custom-traits",
        "built",
        ("profile", "build"),
        ("[profile] traits", "2,000", "at most 200"),
        {"jingzhun.toml": MANY_TRAITS},
    ),
    (
        "build-5000-deep-toml",
        "built",
        ("profile", "build"),
        ("jingzhun.toml", "nest too deeply"),
        {"jingzhun.toml": "x = " + "[" * 5000 + "]" * 5000 + "\n"},
    ),
    (
        "build-400-term-chain",
        "built",
        ("profile", "build"),
        ("tag rule 'sum400'", "more than 100 levels deep"),
        {"jingzhun.toml": LONG_CHAIN_RULE},
    ),
    *(
        (f"synth-{name}", "empty", ("synth", *args), needles, {})
        for name, args, needles in (
            ("end-year-1", ("--end", "0001-01-01"), ("--end", "0001-01-01")),
            ("users-huge", ("--users", HUGE), ("--users",)),
            ("days-huge", ("--days", "100000000"), ("--days",)),
            ("items-huge", ("--items", "100000000000"), ("--items",)),
        )
    ),
    ("demo-users-huge", "empty", ("demo", "--users", HUGE, "--out", "d"), ("--users",), {}),
]


@pytest.fixture(scope="module")
def bad_number_runs(
    stores: dict[str, Path], build: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Ran, Path, dict[str, int]]]:
    """Every bad-number case run once, two at a time, each on its own copy of its store."""
    before = {name: snapshot(path) for name, path in stores.items()}
    base = tmp_path_factory.mktemp("bad_numbers")

    def one(case: tuple[str, str, tuple[str, ...], tuple[str, ...], dict[str, str]]) -> Any:
        name, store, args, _, files = case
        folder = base / name
        db = copy_store(stores[store], folder)
        for fname, text in files.items():
            (folder / fname).write_text(text, encoding="utf-8")
        return run(folder, *args, db=db), db, before[store]

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([c[0] for c in BAD_NUMBERS], pool.map(one, BAD_NUMBERS), strict=True))


@pytest.mark.parametrize(
    ("case", "needles", "files"),
    [(c[0], c[3], c[4]) for c in BAD_NUMBERS],
    ids=[c[0] for c in BAD_NUMBERS],
)
def test_bad_numbers_fail_with_one_error_line_naming_the_option_and_write_nothing(
    bad_number_runs: dict[str, tuple[Ran, Path, dict[str, int]]],
    case: str,
    needles: tuple[str, ...],
    files: dict[str, str],
) -> None:
    res, db, before = bad_number_runs[case]
    error_line(res, *needles)
    assert snapshot(db) == before
    made = {p.relative_to(res.folder).as_posix() for p in res.folder.rglob("*")}
    assert made == {"store.duckdb", *files}  # no synth folder, no demo folder, no temp file


def test_a_thousand_chained_or_terms_in_a_tag_rule_build(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    """~1,000 chained `or` in a rule ended in a RecursionError traceback."""
    db = copy_store(stores["ingested"], tmp_path)
    when = " or ".join(f"frequency = {i}" for i in range(1, 1001))
    (tmp_path / "jingzhun.toml").write_text(
        f'[[tags.rules]]\nname = "buyer"\nwhen = "{when}"\n', encoding="utf-8"
    )
    data = one_json(run(tmp_path, "profile", "build", "--json", db=db))
    buyers = sql(db, "SELECT count(*) FROM profiles WHERE frequency BETWEEN 1 AND 1000")[0][0]
    assert data["tags"]["buyer"] == buyers > 0
