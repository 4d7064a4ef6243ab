"""Tags, segment runs and the profile export on Spark (issue 19) equal DuckDB's on the test
shop: the tags table row for row, segment memberships user for user, the export file column
for column (counts and text exactly, floats to 1e-9 relative); each command once through the
real command line; and what cannot run refused in one line with exit code 2.

Spark's start is the slow part: the lake's profiles and tags are built once for the module on
the shared session (test_lake builds them through the command line), then segmented and
exported through the command line (two Spark starts); the rest runs in-process.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jingzhun.errors import InputError
from jingzhun.profile.read import export_profiles_on_lake
from jingzhun.segment.runs import run_on_lake
from jingzhun.workspace import Workspace
from tests.cli.subprocess_cli import copy_store, error_line, one_json, run
from tests.spark.compare import same
from tests.spark.conftest import copy_lake

TAG_KEY = ["user_id", "tag", "value", "source"]


@dataclass
class Stages:
    db: Path  # a copy of the shop's store: profiles and tags built by DuckDB, segment runs
    lake: Path  # the shop's lake: profiles and tags, one RFM run by the command line
    build: dict[str, Any]  # the build on Spark (as profile build --json prints it)
    rfm: dict[str, Any]  # segment run --method rfm --json on Spark
    duck_rfm: str  # the store's RFM run id
    csv_out: Path  # profile export --out X.csv on Spark
    duck_csv: Path  # the same from the store


@pytest.fixture(scope="module")
def stages(shop_pair, spark_built, tmp_path_factory: pytest.TempPathFactory) -> Stages:
    """The shop's lake with profiles and tags built on the shared session (conftest's
    spark_built; the command line's build is test_ingest_on_lake's), then an RFM run and a
    CSV export by the command line."""
    folder = tmp_path_factory.mktemp("stages")
    lake = copy_lake(spark_built.lake, folder / "lake")
    db = copy_store(shop_pair.db, folder / "store")
    build = spark_built.build
    rfm = run(folder, "--engine", "spark", "segment", "run", "--method", "rfm", "--json", db=lake)
    spark_csv = folder / "spark.csv"
    exported = run(
        folder, "--engine", "spark", "profile", "export", "--out", str(spark_csv), db=lake
    )
    assert exported.code == 0, exported.stderr
    assert exported.stdout.startswith(f"Wrote {build['users']:,} profiles")
    duck_csv = folder / "duck.csv"
    with Workspace.open(db) as ws:
        duck_rfm = ws.segments.run("rfm").run_id
        ws.profiles.export(duck_csv)
    return Stages(db, lake, build, one_json(rfm), duck_rfm, spark_csv, duck_csv)


def _store(db: Path, query: str) -> pd.DataFrame:
    with Workspace.open(db, read_only=True) as ws:
        return ws.sql(query)


def _differs(duck: pd.DataFrame, spark: pd.DataFrame) -> dict[str, Any]:
    """Columns whose values differ (count and the first two), row by row."""
    assert list(duck.columns) == list(spark.columns) and len(duck) == len(spark)
    out = {}
    for column in duck.columns:
        bad = [
            (i, duck.at[i, column], spark.at[i, column])
            for i in range(len(duck))
            if not same(duck.at[i, column], spark.at[i, column])
        ]
        if bad:
            out[column] = (len(bad), bad[:2])
    return out


# -- tags ----------------------------------------------------------------------------------------


def test_profile_build_on_spark_writes_the_tags_duckdb_writes(stages: Stages) -> None:
    duck = _store(stages.db, "SELECT * FROM tags")
    spark = pd.read_parquet(stages.lake / "tags")
    assert list(spark.columns) == list(duck.columns)  # user_id, tag, value, source, computed_at
    duck_rows = duck[TAG_KEY].sort_values(TAG_KEY).reset_index(drop=True)
    spark_rows = spark[TAG_KEY].sort_values(TAG_KEY).reset_index(drop=True)
    assert len(spark_rows) == len(duck_rows) > 5_000
    assert spark_rows.equals(duck_rows)  # text: exactly, every row
    # rule tags, the five RFM tags and the bins, each counted as the store counts them
    counts = duck.groupby("tag").size().to_dict()
    assert stages.build["tags"] == counts
    assert {"high_value", "churn_risk", "rfm_segment", "rfm_score", "spend_band"} <= set(counts)
    assert spark.computed_at.nunique() == 1 and spark.computed_at.notna().all()
    assert pd.api.types.is_datetime64_dtype(spark.computed_at)


def test_a_rule_spark_refuses_is_named(stages: Stages, open_lake, tmp_path: Path) -> None:
    from jingzhun.config import Settings, TagRule, TagSettings
    from jingzhun.contracts.time import utcnow
    from jingzhun.profile.build import plan
    from jingzhun.profile.tags import write_tags_on_lake

    lake = open_lake(copy_lake(stages.lake, tmp_path / "lake"))
    rules = [
        TagRule(name="buyer", when="frequency >= 1"),
        TagRule(name="spend_rate", when="monetary / frequency > 100"),  # 0 / 0 for non-buyers
    ]
    settings = Settings(tags=TagSettings(rules=rules, rfm=False, bins=[]))
    before = sorted(p.name for p in (tmp_path / "lake" / "tags").iterdir())
    the_plan = plan(lake, settings, pd.Timestamp(stages.build["as_of"]).to_pydatetime()).tags
    with pytest.raises(InputError, match=r"tag rule 'spend_rate': Spark refused it when it ran"):
        write_tags_on_lake(lake, the_plan, utcnow())
    assert sorted(p.name for p in (tmp_path / "lake" / "tags").iterdir()) == before  # kept


# -- segments ------------------------------------------------------------------------------------


def _members(db: Path, run_id: str, lake: Path, lake_run: str) -> tuple[pd.DataFrame, ...]:
    duck = _store(
        db,
        f"SELECT user_id, segment, fitted FROM segment_members WHERE run_id = '{run_id}' "
        "ORDER BY user_id",
    )
    spark = pd.read_parquet(lake / "segment_members")
    spark = spark[spark.run_id == lake_run][["user_id", "segment", "fitted"]]
    return duck, spark.sort_values("user_id").reset_index(drop=True)


def _portraits(db: Path, run_id: str, lake: Path, lake_run: str) -> tuple[pd.DataFrame, ...]:
    cols = ["segment", "label", "users", "share", "revenue_share", "traits", "top_categories"]
    duck = _store(
        db,
        f"SELECT {', '.join(cols)} FROM segment_portraits WHERE run_id = '{run_id}' ORDER BY segment",
    )
    spark = pd.read_parquet(lake / "segment_portraits")
    spark = spark[spark.run_id == lake_run].sort_values("segment").reset_index(drop=True)[cols]
    for frame in (duck, spark):  # JSON text: compared as values (floats to REL)
        for c in ("traits", "top_categories"):
            frame[c] = [json.loads(v) for v in frame[c]]
    return duck, spark


def test_an_rfm_run_on_spark_has_duckdbs_members(stages: Stages) -> None:
    assert stages.rfm["run_id"] == "rfm-1" and stages.rfm["method"] == "rfm"
    duck, spark = _members(stages.db, stages.duck_rfm, stages.lake, "rfm-1")
    assert len(spark) == len(duck) == stages.build["users"] > 1_000
    assert spark.equals(duck)  # every user in the same segment
    assert stages.rfm["segments"] == duck.segment.nunique() > 5
    assert _differs(*_portraits(stages.db, stages.duck_rfm, stages.lake, "rfm-1")) == {}
    runs = pd.read_parquet(stages.lake / "segment_runs")
    record = runs.set_index("run_id").loc["rfm-1"]
    assert (record["name"], record["method"], record["users"], bool(record["active"])) == (
        "rfm",
        "rfm",
        len(duck),
        True,
    )
    assert json.loads(record["params"]) == {} and record["model"] is None


def test_kmeans_on_spark_fits_the_same_segments(stages: Stages, open_lake, tmp_path: Path) -> None:
    """A method that fits in NumPy runs on the features Spark computed: the same members.
    Named like the RFM run, it becomes that name's active run and the RFM run history."""
    options = {"method": "kmeans", "k": 4, "stability_resamples": 0, "name": "rfm"}
    db = copy_store(stages.db, tmp_path / "store")
    with Workspace.open(db) as ws:
        duck_run = ws.segments.run(**options).run_id
    lake_dir = copy_lake(stages.lake, tmp_path / "lake")
    spark_run = run_on_lake(open_lake(lake_dir), **options)
    assert spark_run.run_id == "rfm-2" and spark_run.segments == 4
    duck, spark = _members(db, duck_run, lake_dir, "rfm-2")
    assert spark.equals(duck)
    assert _differs(*_portraits(db, duck_run, lake_dir, "rfm-2")) == {}
    runs = pd.read_parquet(lake_dir / "segment_runs").set_index("run_id")
    assert dict(runs.active) == {"rfm-1": False, "rfm-2": True}
    assert runs.method.to_dict() == {"rfm-1": "rfm", "rfm-2": "kmeans"}
    assert runs.loc["rfm-2", "model"] is not None  # the fitted model, for assignment later
    members = pd.read_parquet(lake_dir / "segment_members")
    assert members.groupby("run_id").size().to_dict() == dict.fromkeys(
        ("rfm-1", "rfm-2"), len(duck)
    )

    # segment assign: users profiled since a run (here: every fifth member, removed from
    # both runs on both engines) are placed by the kmeans model (through the command line)
    # and by their RFM tags (in process), as on the store; the members kept are untouched.
    gone = sorted(duck.user_id[::5])
    _forget(lake_dir, gone)
    with Workspace.open(db) as ws:
        ws.store.run(
            "DELETE FROM segment_members WHERE user_id IN (SELECT unnest(?::VARCHAR[]))", [gone]
        )
        duck_assigned = [ws.segment_assign("rfm"), ws.segment_assign(stages.duck_rfm)]
    placed = run(tmp_path, "--engine", "spark", "segment", "assign", "rfm", "--json", db=lake_dir)
    spark_assigned = [one_json(placed)]
    spark_assigned.append(_assign_in_process(open_lake(lake_dir), lake_dir, "rfm-1"))
    for d, s in zip(duck_assigned, spark_assigned, strict=True):
        assert d["assigned"] == s["assigned"] == len(gone) > 100
        assert d["segments"] == s["segments"]
    assert spark_assigned[0]["run_id"] == "rfm-2" and spark_assigned[1]["run_id"] == "rfm-1"
    for duck_run_id, lake_run in ((duck_run, "rfm-2"), (stages.duck_rfm, "rfm-1")):
        duck, spark = _members(db, duck_run_id, lake_dir, lake_run)
        assert spark.equals(duck) and len(duck) == stages.build["users"]
        assert set(duck.user_id[~duck.fitted]) == set(gone)
    again = run(tmp_path, "--engine", "spark", "segment", "assign", "--json", db=lake_dir)
    assert one_json(again) == {"run_id": "rfm-2", "assigned": 0, "segments": {}}


def _forget(lake: Path, users: list[str]) -> None:
    """Remove ``users`` from every run's members in the lake (as if profiled since)."""
    import pyarrow.compute as pc

    folder = lake / "segment_members"
    rows = pq.read_table(folder)
    rows = rows.filter(pc.invert(pc.is_in(rows["user_id"], pa.array(users))))
    at = rows.schema.get_field_index("assigned_at")  # Spark's INT96, read back as UTC
    rows = rows.set_column(at, "assigned_at", rows["assigned_at"].cast(pa.timestamp("us", "UTC")))
    shutil.rmtree(folder)
    folder.mkdir()
    pq.write_table(rows, folder / "part-0.parquet")


def _assign_in_process(lake: Any, lake_dir: Path, ref: str) -> dict[str, Any]:
    """``segment assign REF`` on an open lake, as the command line runs it."""
    from jingzhun.segment.lake_runs import load_members, load_runs
    from jingzhun.segment.runs import assign_new_on_lake

    with Workspace.open(lake_dir.parent / f"runs-{ref}.duckdb") as ws:
        load_runs(lake_dir, ws.store)
        load_members(lake_dir, ws.store, ref)
        return assign_new_on_lake(lake, ws.store, ref)


def test_rfm_without_tags_is_refused(stages: Stages, open_lake, tmp_path: Path) -> None:
    lake_dir = copy_lake(stages.lake, tmp_path / "lake")
    shutil.rmtree(lake_dir / "tags")  # a lake built before tags ran on Spark
    with pytest.raises(InputError, match="--method rfm: no RFM tags in the lake") as err:
        run_on_lake(open_lake(lake_dir), method="rfm")
    assert "--engine spark" in str(err.value.hint)


# -- export --------------------------------------------------------------------------------------


def test_export_to_parquet_from_a_lake_is_the_stores_file(
    stages: Stages, open_lake, tmp_path: Path
) -> None:
    with Workspace.open(stages.db, read_only=True) as ws:
        n = ws.profiles.export(tmp_path / "duck.parquet")
    m = export_profiles_on_lake(open_lake(stages.lake), tmp_path / "spark.parquet")
    assert n == m == stages.build["users"]
    duck, spark = (
        pq.read_table(tmp_path / "duck.parquet"),
        pq.read_table(tmp_path / "spark.parquet"),
    )
    assert spark.schema.equals(duck.schema)  # the same columns, of the same types
    assert spark.column("user_id").equals(duck.column("user_id"))  # the same order
    assert _differs(duck.to_pandas(), spark.to_pandas()) == {}
    assert not [p for p in stages.lake.iterdir() if p.name.startswith(".export")]  # cleaned


def _csv_cell(text: str) -> Any:
    if text.startswith(("{", "[")):
        return json.loads(text)
    try:
        return float(text) if any(c in text for c in ".eE") or text == "nan" else int(text)
    except ValueError:
        return text


def test_export_to_csv_from_a_lake_is_the_stores_file(stages: Stages) -> None:
    with stages.duck_csv.open(newline="") as a, stages.csv_out.open(newline="") as b:
        duck, spark = list(csv.reader(a)), list(csv.reader(b))
    assert spark[0] == duck[0] and len(spark) == len(duck) == stages.build["users"] + 1
    differs = [
        (row[0], duck[0][j], x, y)
        for row, other in zip(duck[1:], spark[1:], strict=True)
        for j, (x, y) in enumerate(zip(row, other, strict=True))
        if not same(_csv_cell(x), _csv_cell(y))
    ]
    assert differs == []


# -- refusals ------------------------------------------------------------------------------------


def test_what_cannot_run_is_refused_before_spark_starts(
    stages: Stages, shop_pair, cli: Callable, tmp_path: Path
) -> None:
    from jingzhun.profile.read import check_lake_export
    from jingzhun.segment.runs import check_run

    bare = str(shop_pair.lake)  # a lake without profiles
    spark = ("--engine", "spark", "--db")
    error_line(cli(*spark, bare, "segment", "run", "--method", "rfm"), "no profiles in the lake")
    error_line(
        cli(*spark, bare, "profile", "export", "--out", str(tmp_path / "p.csv")),
        "no profiles in the lake",
    )
    lake = str(stages.lake)
    error_line(
        cli(*spark, lake, "profile", "export", "--out", str(stages.lake / "p.csv")),
        "is inside the lake",
    )
    error_line(
        cli(*spark, lake, "profile", "export", "--desensitize", "--out", str(tmp_path / "p.csv")),
        "--desensitize does not run on --engine spark",
    )
    assert not (tmp_path / "p.csv").exists()
    # what the command line checks before it starts Spark, in-process
    with pytest.raises(InputError, match=r"unknown extension \.txt"):
        check_lake_export(lake, tmp_path / "p.txt")
    with pytest.raises(InputError, match="--method 'nope' is not a segmentation method"):
        check_run("nope")
    with pytest.raises(InputError, match="rfm segments come from the RFM tags"):
        check_run("rfm", features=["aov"])


def test_segment_list_show_and_export_read_a_lakes_runs_as_a_stores(
    stages: Stages, tmp_path: Path
) -> None:
    """segment list, show and export on a lake (its Parquet read on this machine, no Spark
    started) print what they print for the store's equal run; --desensitize is refused."""
    lake, db = stages.lake, stages.db
    spark = ("--engine", "spark")
    listed = [one_json(run(tmp_path, *spark, "segment", "list", "--json", db=lake))]
    listed.append(one_json(run(tmp_path, "segment", "list", "--json", db=db)))
    for runs in listed:
        for r in runs["runs"]:
            r.pop("created_at")
    assert listed[0] == listed[1] and listed[0]["runs"][0]["run_id"] == "rfm-1"
    shown = [one_json(run(tmp_path, *spark, "segment", "show", "rfm", "--json", db=lake))]
    shown.append(one_json(run(tmp_path, "segment", "show", "rfm", "--json", db=db)))
    for info in shown:
        info.pop("created_at")
        for p in info["portraits"]:  # the engines sum revenue in another order: 1e-16 apart
            if p["revenue_share"] is not None:
                p["revenue_share"] = round(p["revenue_share"], 12)
    assert shown[0] == shown[1] and len(shown[0]["portraits"]) > 5
    human = run(tmp_path, *spark, "segment", "show", db=lake)
    assert human.code == 0 and human.stdout.startswith("rfm-1 (rfm, active)"), human.stderr
    for where, out in ((lake, "lake.csv"), (db, "store.csv")):
        args = ("segment", "export", "--out", str(tmp_path / out))
        done = run(tmp_path, *(spark if where == lake else ()), *args, db=where)
        assert done.code == 0 and done.stdout.startswith("Wrote "), done.stderr
    assert (tmp_path / "lake.csv").read_bytes() == (tmp_path / "store.csv").read_bytes()
    refused = run(
        tmp_path,
        *spark,
        "segment",
        "export",
        "--desensitize",
        "--out",
        str(tmp_path / "d.csv"),
        db=lake,
    )
    error_line(refused, "--desensitize does not run on --engine spark")
    assert not (tmp_path / "d.csv").exists()
    missing = run(tmp_path, *spark, "segment", "show", "nope", db=lake)
    error_line(missing, "no segment run or name 'nope'")
    # assign resolves the run from the lake's Parquet, before Spark starts
    missing = run(tmp_path, *spark, "segment", "assign", "nope", db=lake)
    error_line(missing, "no segment run or name 'nope'")


def _linked_user(db: Path) -> tuple[str, str]:
    """A profiled user with a linked device, events on both and a consent: (user, device)."""
    found = _store(
        db,
        """SELECT i.user_id, i.anonymous_id FROM identities i
           JOIN profiles p USING (user_id) JOIN consents c USING (user_id)
           WHERE EXISTS (SELECT 1 FROM events e WHERE e.anonymous_id = i.anonymous_id
                         AND e.user_id IS NULL)
           ORDER BY p.events DESC, i.user_id LIMIT 1""",
    )
    assert len(found) == 1
    return str(found.user_id[0]), str(found.anonymous_id[0])


def test_profile_show_and_tags_list_read_a_lakes_rows_as_a_stores(
    stages: Stages, shop_pair, tmp_path: Path
) -> None:
    """profile show (by the user's id and by a linked device's) and tags list on a lake (the
    rows they need read on this machine, no Spark started) print what they print for the
    store: traits to 1e-9 relative, the rest exactly; a missing user and a lake without
    profiles are refused in one line."""
    lake, db = stages.lake, stages.db
    spark = ("--engine", "spark")
    user, device = _linked_user(db)
    for who in (user, device):
        args = ("profile", "show", who, "--events", "25", "--json")
        on_lake = one_json(run(tmp_path, *spark, *args, db=lake))
        on_store = one_json(run(tmp_path, *args, db=db))
        traits = (on_lake.pop("traits"), on_store.pop("traits"))
        assert on_lake == on_store and on_lake["user_id"] == user
        assert device in on_lake["anonymous_ids"] and len(on_lake["last_events"]) == 25
        assert on_lake["tags"] and on_lake["consents"]
        assert list(traits[0]) == list(traits[1])
        assert [k for k in traits[1] if not same(traits[0][k], traits[1][k])] == []
    human = run(tmp_path, *spark, "profile", "show", user, db=lake)
    assert human.code == 0 and human.stdout.startswith(user), human.stderr
    assert "Latest events" in human.stdout and "Consents: " in human.stdout

    listed = [one_json(run(tmp_path, *spark, "tags", "list", "--json", db=lake))]
    listed.append(one_json(run(tmp_path, "tags", "list", "--json", db=db)))
    for tags in listed:
        assert len({t.pop("computed_at") for t in tags["tags"]}) == 1
    for tags in listed:  # equal counts are listed in no set order
        tags["tags"].sort(key=lambda t: (t["source"], t["tag"], -t["users"], t["value"]))
    assert listed[0] == listed[1] and len(listed[0]["tags"]) > 10
    human = run(tmp_path, *spark, "tags", "list", db=lake)
    assert human.code == 0 and "rfm_segment" in human.stdout, human.stderr

    error_line(
        run(tmp_path, *spark, "profile", "show", "nobody-here", db=lake),
        "no profile for user 'nobody-here'",
    )
    bare = shop_pair.lake  # a lake without profiles
    for args in (("profile", "show", user), ("tags", "list")):
        error_line(run(tmp_path, *spark, *args, db=bare), "no profiles in the lake")


#: Columns of a person's export that differ between the engines' builds: when each ran.
_WHEN = ("computed_at", "assigned_at", "exported_at")


def _rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).drop(columns=list(_WHEN), errors="ignore")
    order = frame.astype(str).sort_values(list(frame.columns)).index
    return frame.loc[order].reset_index(drop=True)


def test_privacy_export_reads_a_lakes_person_as_a_stores(stages: Stages, tmp_path: Path) -> None:
    """privacy export on a lake (its Parquet read into its personal store inside a transaction
    rolled back, no Spark started) gives the store's object for the same person: their
    personal data decrypted, every table's rows (floats to 1e-9 relative), the quarantine;
    and an audit entry in the personal store, which keeps no row of theirs."""
    from jingzhun.store.lake import PERSONAL
    from jingzhun.store.store import Store

    lake = copy_lake(stages.lake, tmp_path / "lake")
    user, device = _linked_user(stages.db)
    spark = ("--engine", "spark")
    out = tmp_path / "person.json"
    done = run(tmp_path, *spark, "privacy", "export", user, "--out", str(out), db=lake)
    assert done.code == 0, done.stderr
    on_lake = json.loads(out.read_text(encoding="utf-8"))
    on_store = one_json(run(tmp_path, "privacy", "export", user, db=stages.db))
    for data in (on_lake, on_store):
        data.pop("exported_at")
    assert on_lake["user_id"] == user and device in on_lake["anonymous_ids"]
    assert on_lake["anonymous_ids"] == on_store["anonymous_ids"]
    assert on_lake["personal_data"] == on_store["personal_data"]
    assert on_lake["personal_data"] and on_lake["personal_data"]["email"]
    assert on_lake["quarantine"] == on_store["quarantine"]
    assert sorted(on_lake["tables"]) == sorted(on_store["tables"])
    assert {"events", "identities", "users", "consents", "profiles", "tags"} <= set(
        on_lake["tables"]
    )
    for table, rows in on_store["tables"].items():
        assert _differs(_rows(rows), _rows(on_lake["tables"][table])) == {}, table

    personal = Store.open(lake / PERSONAL, read_only=True)
    try:
        logged = personal.rows("SELECT action, detail FROM audit_log")
        assert [a for a, _ in logged] == ["privacy.export"]
        assert json.loads(logged[0][1])["tables"] == sorted(on_lake["tables"])
        for table in ("events", "users", "consents", "identities", "quarantine", "tags"):
            assert personal.count(table) == 0, table
        assert not personal.columns("profiles")
    finally:
        personal.close()

    error_line(
        run(tmp_path, *spark, "privacy", "export", "nobody-here", db=lake),
        "no user 'nobody-here' in the lake",
    )
    inside = run(
        tmp_path, *spark, "privacy", "export", user, "--out", str(lake / "p.json"), db=lake
    )
    error_line(inside, "is inside the lake")
    assert not (lake / "p.json").exists()


def test_privacy_erase_removes_a_person_from_a_lake_as_from_a_store(
    stages: Stages, tmp_path: Path
) -> None:
    """privacy erase on a lake removes the rows the store's erase removes — events of the
    person and of their devices, identities, users, consents, profile, tags, segment members,
    personal data — and their events' cleaning flags, counting the same; the other rows stay;
    the personal store records the erasure by keyed token; a second erase finds no one."""
    import pyarrow.compute as pc

    from jingzhun.store.lake import PERSONAL
    from jingzhun.store.store import Store

    lake = copy_lake(stages.lake, tmp_path / "lake")
    db = copy_store(stages.db, tmp_path / "store")
    user, device = _linked_user(db)
    events = pq.read_table(lake / "events")
    links = pq.read_table(lake / "identities")
    devices = links.filter(pc.equal(links["user_id"], user))["anonymous_id"]
    assert device in devices.to_pylist()
    mine = pc.fill_null(
        pc.or_kleene(pc.equal(events["user_id"], user), pc.is_in(events["anonymous_id"], devices)),
        False,
    )
    theirs = events.filter(mine)["event_id"].to_pylist()
    other = events.filter(pc.invert(mine))["event_id"].to_pylist()[:3]
    flagged = theirs[:2] + other
    (lake / "event_flags").mkdir()
    pq.write_table(
        pa.table(
            {
                "event_id": flagged,
                "flag": ["outlier"] * len(flagged),
                "detail": ["{}"] * len(flagged),
                "flagged_at": pa.array(
                    [datetime(2026, 1, 1, tzinfo=UTC)] * len(flagged), pa.timestamp("us", "UTC")
                ),
            }
        ),
        lake / "event_flags" / "part-0.parquet",
    )
    tables = [p.name for p in lake.iterdir() if p.is_dir() and not p.name.startswith(".")]
    before = {t: pq.read_table(lake / t).num_rows for t in tables}

    erased = run(tmp_path, "--engine", "spark", "privacy", "erase", user, "--json", db=lake)
    on_lake = one_json(erased)
    with Workspace.open(db) as ws:
        on_store = ws.privacy.erase(user, actor="test").to_dict()
    assert on_lake["rows"].pop("event_flags") == 2
    assert on_lake["rows"] == on_store["rows"]
    assert on_lake["rows"]["events"] == len(theirs) and on_lake["rows"]["pii"] == 1
    assert {"identities", "users", "consents", "profiles", "tags", "segment_members"} <= set(
        on_lake["rows"]
    )
    assert on_lake["anonymous_ids"] == on_store["anonymous_ids"] == len(devices) > 0
    after = {t: pq.read_table(lake / t).num_rows for t in tables}
    gone = {**on_lake["rows"], "event_flags": 2}
    gone.pop("pii")
    assert after == {t: n - gone.get(t, 0) for t, n in before.items()}
    assert pq.read_table(lake / "event_flags")["event_id"].to_pylist() == other
    for t in tables:
        rows = pq.read_table(lake / t)
        if "user_id" in rows.column_names:
            assert user not in rows["user_id"].to_pylist(), t

    personal = Store.open(lake / PERSONAL, read_only=True)
    try:
        assert personal.scalar("SELECT count(*) FROM pii WHERE user_id = ?", [user]) == 0
        assert personal.rows("SELECT subject FROM erasures") == [(on_lake["subject"],)]
        logged = personal.rows("SELECT action, subject FROM audit_log")
        assert logged == [("privacy.erase", on_lake["subject"])]
    finally:
        personal.close()
    error_line(
        run(tmp_path, "--engine", "spark", "privacy", "erase", user, db=lake),
        f"no user '{user}' in the lake",
    )


def test_a_lake_file_changed_outside_jingzhun_is_named_in_one_line(
    stages: Stages, tmp_path: Path
) -> None:
    """An items file added by another tool, its item_id written as numbers: Spark cannot read
    the table (the build's first step reads it), and the command says so in one line (the
    file and the column, exit 2) — no Java stack trace — and leaves the lake's profiles as
    they were."""
    lake = copy_lake(stages.lake, tmp_path / "lake")
    profiles_before = sorted(p.name for p in (lake / "profiles").iterdir())
    items = pq.read_table(lake / "items").slice(0, 5)
    numbers = items.set_column(
        items.schema.get_field_index("item_id"), "item_id", pa.array(range(5), pa.int64())
    )
    pq.write_table(numbers, lake / "items" / "zz-by-hand.parquet")
    res = run(tmp_path, "--engine", "spark", "profile", "build", db=lake)
    assert res.code == 2 and res.stdout == "", res.stderr
    # The JVM's own start-up notices may precede it; one error line, no stack trace.
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert "Spark could not read the lake" in errors[0] and "zz-by-hand.parquet" in errors[0]
    assert "[item_id]" in errors[0] and "jingzhun lake init" in errors[0]
    assert "\tat " not in res.stderr and "Traceback" not in res.stderr
    assert "ERROR Executor" not in res.stderr, res.stderr
    assert sorted(p.name for p in (lake / "profiles").iterdir()) == profiles_before
