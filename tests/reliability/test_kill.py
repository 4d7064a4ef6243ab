"""SIGKILL in the middle of a long write, then restart: the store is as it was or as the whole
command leaves it, never in between, and the command run again gives what an uninterrupted
run gives.

Each test copies one simulated store (ingested, with an earlier profile build and an active
recommender, so that "as it was" is not "empty"), runs the command once uninterrupted on a
copy (the reference: its result, its duration T and the row counts it leaves), then on fresh
copies starts the real ``jingzhun`` process and kills it with SIGKILL at several points:

* ``mid``: half way through T (computing, nothing written yet);
* ``commit``: the moment the store's WAL appears (the commit and its checkpoint begin: the one
  place where a kill could leave half a write behind);
* ``commit+15ms``: a little later, inside the checkpoint;
* ``after-commit``: once the WAL is gone again, before the command ends.

After each kill: ``jingzhun status --json`` succeeds and agrees with the store; every table
holds the row count of the store before the command or of the reference after it, all tables
the same one of the two (base tables — events, users, items … — never change); the derived
tables agree with each other (one ``as_of``); the registry has one active model per kind and
its artefact loads. Then the command runs again and its result equals the reference's (floats
to 1e-9: DuckDB sums in parallel, so the last bits may differ from run to run; see
:data:`LOOSE_PROFILE` for what that does to the profile's score).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from jingzhun.predict.propensity import from_arrays
from jingzhun.recommend.models import load as load_recommender
from jingzhun.store import Registry, Store
from jingzhun.synth import SynthConfig, simulate
from jingzhun.workspace import Workspace
from tests.cli.subprocess_cli import Ran, _env, copy_store, one_json, run, snapshot
from tests.cli.test_cli import _as_from_a_terminal

pytestmark = pytest.mark.slow

#: Users in the simulated store: the profile build and the training run a few seconds each.
USERS = 20_000
#: Tables no derived command may change.
BASE_TABLES = ("events", "users", "items", "pii", "identities", "ingest_batches", "quarantine")
#: The model registry and the views over it.
REGISTRY_TABLES = {"models", "recommend_models", "predict_models"}


# -- the store ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed store: a shop ingested, profiles built 30 days before the end, an active
    item-kNN recommender. Tests copy it; nobody writes to it."""
    folder = tmp_path_factory.mktemp("kill_base")
    simulate(SynthConfig(users=USERS, seed=11)).write(folder / "shop")
    db = folder / "base.duckdb"
    with Workspace.open(db, config=None) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [str(folder / "shop" / f"{kind}.parquet")])
        latest = ws.store.scalar("SELECT max(ts) FROM events")
        ws.profiles.build(as_of=latest - timedelta(days=30))
        ws.recs.train("itemknn")
    return db


# -- running and killing the real command --------------------------------------------------------


def _stamp(path: Path) -> tuple[int, int] | None:
    """Size and mtime of a file (None while there is none)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class KillPoint:
    """When to kill: ``fraction`` of the reference duration after the start; ``delay`` seconds
    after the WAL first changes (``on="wal"``: DuckDB makes it at the commit, then checkpoints
    into the store file; a large commit is a checkpoint, made whole by the last write of the
    file's header); or once the WAL is gone again (``on="wal-gone"``: committed and
    checkpointed, the command not yet ended)."""

    name: str
    fraction: float | None = None
    on: str | None = None
    delay: float = 0.0


MID = KillPoint("mid", fraction=0.5)
COMMIT = KillPoint("commit", on="wal")
IN_CHECKPOINT = KillPoint("commit+15ms", on="wal", delay=0.015)
AFTER_COMMIT = KillPoint("after-commit", on="wal-gone")


@dataclass
class Kill:
    point: KillPoint
    after: float  # seconds from the start to the kill (or to the command's own end)
    killed: bool  # the kill found the command running
    returncode: int
    stderr: str


def start(
    db: Path, args: Sequence[str], *, stdout: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """``jingzhun --db DB ARGS`` as a terminal would start it (SIGINT at its default)."""
    return subprocess.Popen(
        [sys.executable, "-m", "jingzhun", "--db", str(db), *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=db.parent,
        env=_env(),
        preexec_fn=_as_from_a_terminal,
    )


def run_and_kill(db: Path, args: Sequence[str], point: KillPoint, duration: float) -> Kill:
    wal = db.with_name(db.name + ".wal")
    before = _stamp(wal)
    started = time.monotonic()
    proc = start(db, args)
    deadline = started + max(4 * duration, 60)
    try:
        if point.fraction is not None:
            target = started + point.fraction * duration
            while proc.poll() is None and time.monotonic() < target:
                time.sleep(0.005)
        else:
            while proc.poll() is None and _stamp(wal) == before:
                assert time.monotonic() < deadline, f"{args} wrote nothing in {deadline - started}s"
                time.sleep(0.0005)
            if point.on == "wal-gone":
                while proc.poll() is None and wal.exists():
                    assert time.monotonic() < deadline, f"{args}: the WAL stayed"
                    time.sleep(0.0005)
            if point.delay:
                time.sleep(point.delay)
        killed = proc.poll() is None
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
        after = time.monotonic() - started
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    stderr = err.decode("utf-8", "replace")
    if not killed:
        # It ended on its own before the kill: it must have succeeded.
        assert proc.returncode == 0, f"{args} failed on its own: {stderr}"
    else:
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, stderr)
    return Kill(point, after, killed, proc.returncode, stderr)


def timed(db: Path, *args: str) -> tuple[dict[str, Any], float]:
    """The command's JSON result and its wall time (uninterrupted), started as the killed
    commands are — a new interpreter (:func:`start`), not the CLI tests' forked runner, whose
    commands skip the imports and so end sooner: the kill points are fractions of this time."""
    t = time.monotonic()
    proc = start(db, args, stdout=subprocess.PIPE)
    out, err = proc.communicate(timeout=600)
    elapsed = time.monotonic() - t
    return one_json(Ran(proc.returncode, out.decode(), err.decode(), db.parent)), elapsed


# -- what the store holds after a kill -------------------------------------------------------------


def status_agrees(db: Path, counts: dict[str, int], old: dict[str, int]) -> None:
    """``jingzhun status --json`` opens the store, succeeds, and tells its row counts; base
    tables are as they were before the command."""
    status = one_json(run(db.parent, "status", "--json", db=db))
    for table, n in status["tables"].items():
        assert n == counts[table], f"status says {table}={n}, the store holds {counts[table]}"
    for table in BASE_TABLES:
        assert status["tables"][table] == old[table], f"{table} changed"
    assert sum(status["events_by_type"].values()) == old["events"]


def old_or_new(counts: dict[str, int], old: dict[str, int], new: dict[str, int]) -> str:
    """Every table's count is the one before the command or the one after it — the same one
    of the two for every table."""
    if counts == old:
        return "old"
    if counts == new:
        return "new"
    diff = {
        t: (old.get(t), counts.get(t), new.get(t))
        for t in sorted(set(old) | set(new) | set(counts))
        if counts.get(t) != old.get(t) or counts.get(t) != new.get(t)
    }
    raise AssertionError(f"half a write survived the kill: table -> (before, now, after) {diff}")


def registry_is_whole(db: Path) -> dict[str, str]:
    """One active model per kind (per name for segment runs), each with an artefact that loads;
    returns the active model id by kind."""
    store = Store.open(db, read_only=True)
    try:
        registry = Registry(store)
        active: dict[str, str] = {}
        for record in registry.list():
            if not record.active:
                continue
            key = record.kind if record.kind != "segment" else f"segment:{record.name}"
            assert key not in active, f"two active {key} models: {active[key]}, {record.model_id}"
            active[key] = record.model_id
            blob = registry.artefact(record.model_id)
            assert record.artefact_bytes == len(blob)
            if record.kind == "recommender":
                model = load_recommender(blob)
                some = list(model.users_.ids[:5])
                assert model.recommend(some, 5).items.shape == (len(some), 5)
            elif record.kind in ("propensity", "churn"):
                from_arrays(registry.arrays(record.model_id))
        return active
    finally:
        store.close()


# -- comparing two stores ------------------------------------------------------------------------


def close(a: Any, b: Any, rel: float = 1e-9) -> bool:
    """Equal, floats to ``rel`` (also inside lists and maps)."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= rel * max(1.0, abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(close(x, y, rel) for x, y in zip(a, b, strict=True))
    return a == b


def table_diff(
    a: Path, b: Path, table: str, keys: Sequence[str], loose: dict[str, float] | None = None
) -> list[str]:
    """Where ``table`` differs between two stores: rows on one side only (by ``keys``), and
    values that are not :func:`close` — or, in a ``loose`` column, values further apart than
    its tolerance, or more than 1% of the rows apart at all (see :data:`LOOSE_PROFILE`)."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
        columns = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_catalog = 'a' AND table_name = ? ORDER BY ordinal_position",
                [table],
            ).fetchall()
        ]
        on = " AND ".join(f'x."{k}" = y."{k}"' for k in keys)
        join = f'a."{table}" x FULL JOIN b."{table}" y ON {on}'
        problems = []
        missing = con.execute(
            f'SELECT count(*) FILTER (x."{keys[0]}" IS NULL), '
            f'count(*) FILTER (y."{keys[0]}" IS NULL) FROM {join}'
        ).fetchone()
        if missing != (0, 0):
            problems.append(f"{table}: rows only in {b.name}/{a.name}: {missing}")
        for column in columns:
            if column in keys:
                continue
            rows = con.execute(
                f'SELECT x."{column}", y."{column}" FROM {join} '
                f'WHERE x."{column}" IS DISTINCT FROM y."{column}"'
            ).fetchall()
            bad = [(x, y) for x, y in rows if not close(x, y)]
            if column in (loose or {}):
                total = con.execute(f'SELECT count(*) FROM a."{table}"').fetchone()[0]
                far = [
                    (x, y) for x, y in bad if x is None or y is None or abs(x - y) > loose[column]
                ]
                if far or len(bad) > 0.01 * total:
                    problems.append(
                        f"{table}.{column}: {len(bad)} of {total} rows differ, "
                        f"{len(far)} by more than {loose[column]}, e.g. {(far or bad)[0]!r}"
                    )
            elif bad:
                problems.append(f"{table}.{column}: {len(bad)} rows differ, e.g. {bad[0]!r}")
        return problems
    finally:
        con.close()


def rows_apart(a: Path, b: Path, query: str) -> int:
    """How many rows ``query`` (``{db}`` standing for a store) gives in one store and not in
    the other, counting repeats (0: the same multiset)."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
        qa, qb = query.format(db="a"), query.format(db="b")
        n = con.execute(
            f"SELECT (SELECT count(*) FROM ({qa} EXCEPT ALL {qb})) + "
            f"(SELECT count(*) FROM ({qb} EXCEPT ALL {qa}))"
        ).fetchone()[0]
        return int(n)
    finally:
        con.close()


def landed(kill: Kill, duration: float) -> None:
    """The kills in the middle and at the commit found the command running (those after the
    commit may come after its end)."""
    if kill.point in (MID, COMMIT):
        assert kill.killed, (
            f"the {kill.point.name} kill came after the command ended ({kill.after:.2f} s; "
            f"the uninterrupted run took {duration:.2f} s)"
        )


# -- (a) profile build -----------------------------------------------------------------------------


#: Two uninterrupted builds of one store differ in the last bits of ``monetary`` (a float sum
#: that DuckDB adds up in parallel, in no fixed order), so users whose sums tie exactly in one
#: run can be a bit apart in the next: ``score`` ranks them, and moves by a rank position or
#: two (1e-5 of 20,000 users; 65 users per run seen). A tag cut at a quantile could move too.
LOOSE_PROFILE = {"score": 1e-3}


def profile_as_ofs(db: Path) -> set[Any]:
    """The as_of of every derived table of the build (one value when they agree)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            "SELECT (SELECT max(as_of) FROM profile_builds), "
            "(SELECT min(as_of) FROM profiles), (SELECT max(as_of) FROM profiles), "
            "(SELECT min(as_of) FROM profile_affinity), (SELECT max(as_of) FROM profile_affinity), "
            "(SELECT max(as_of) FROM activity_funnel), (SELECT max(as_of) FROM activity_kept)"
        ).fetchone()
        return set(row)
    finally:
        con.close()


def test_profile_build_killed_anywhere_leaves_the_old_or_the_new_build_and_reruns_the_same(
    base: Path, tmp_path: Path
) -> None:
    old = snapshot(base)
    old_as_of = profile_as_ofs(base)
    assert len(old_as_of) == 1

    reference = copy_store(base, tmp_path / "reference")
    built, duration = timed(reference, "profile", "build", "--json")
    new = snapshot(reference)
    new_as_of = profile_as_ofs(reference)
    assert len(new_as_of) == 1 and new_as_of != old_as_of
    assert new["profile_builds"] == old["profile_builds"] + 1

    # Not AFTER_COMMIT here (the training tests below keep it): once the WAL is checkpointed
    # away the build is DuckDB's durable state, and its two more builds cost ~20 s of the
    # suite's 25-minute budget.
    for point in (MID, COMMIT, IN_CHECKPOINT):
        db = copy_store(base, tmp_path / point.name)
        kill = run_and_kill(db, ["profile", "build", "--json"], point, duration)
        landed(kill, duration)
        counts = snapshot(db)
        status_agrees(db, counts, old)
        state = old_or_new(counts, old, new)
        assert profile_as_ofs(db) == (old_as_of if state == "old" else new_as_of), (
            f"after the {point.name} kill ({state}) the derived tables disagree"
        )
        if not kill.killed or point is AFTER_COMMIT:
            assert state == "new"
        if point is MID:
            assert state == "old", "a build killed half way left its result"
            # Left as it was (its counts and as_of say so): running again here is the
            # reference run over. The stores killed at the commit are run again below.
            continue
        # Run again: the same profiles, affinity and tags as the uninterrupted build.
        again = one_json(run(db.parent, "profile", "build", "--json", db=db))
        assert again["users"] == built["users"] and again["as_of"] == built["as_of"]
        assert again["traits"] == built["traits"] and again["tags"] == built["tags"]
        problems = table_diff(reference, db, "profiles", ["user_id"], LOOSE_PROFILE)
        problems += table_diff(reference, db, "profile_affinity", ["user_id", "category"])
        assert not problems, f"after the {point.name} kill: " + "; ".join(problems)
        tags = "SELECT user_id, tag, value, source FROM {db}.tags"
        apart = rows_apart(reference, db, tags)
        assert apart <= 0.001 * sum(built["tags"].values()), f"{apart} tag rows differ"
        after = snapshot(db)
        expected = dict(new)
        expected["profile_builds"] += 1 if state == "new" else 0
        assert after == expected


# -- (b) model training --------------------------------------------------------------------------


def models_of(db: Path) -> list[tuple[str, str, bool]]:
    store = Store.open(db, read_only=True)
    try:
        return [(r.model_id, r.kind, r.active) for r in Registry(store).list()]
    finally:
        store.close()


def kill_training(
    base: Path,
    tmp_path: Path,
    args: list[str],
    kind: str,
    points: Sequence[KillPoint],
    same: Callable[[Path, Path, dict[str, Any], dict[str, Any]], None],
) -> None:
    """Kill ``jingzhun ARGS`` (training a model of ``kind``) at ``points``: the registry holds
    the models it held, or those and the new one, active, whose artefact loads; base and
    derived tables are untouched. Run again after each kill, ``same(reference_db, db,
    reference_result, result)`` holds."""
    old = snapshot(base)
    old_models = models_of(base)
    old_active = registry_is_whole(base)

    reference = copy_store(base, tmp_path / "reference")
    trained, duration = timed(reference, *args)
    new = snapshot(reference)
    # The registry and its views (recommend_models, predict_models) only.
    changed = {t for t in new if new[t] != old.get(t)}
    assert changed <= REGISTRY_TABLES and new["models"] == old["models"] + 1, changed
    new_active = registry_is_whole(reference)
    assert new_active == {**old_active, kind: trained["model_id"]}

    for point in points:
        db = copy_store(base, tmp_path / point.name)
        kill = run_and_kill(db, args, point, duration)
        landed(kill, duration)
        counts = snapshot(db)
        status_agrees(db, counts, old)
        state = old_or_new(counts, old, new)
        active = registry_is_whole(db)
        if state == "old":
            assert models_of(db) == old_models
            assert active == old_active
        else:
            # The new model, whole and active; the others as they were, deactivated in kind.
            assert active == new_active
            assert {m for m, _, _ in models_of(db)} == {m for m, _, _ in old_models} | {
                trained["model_id"]
            }
        if point is MID:
            assert state == "old", "a training killed half way registered its model"
        if not kill.killed or point is AFTER_COMMIT:
            assert state == "new"
        again = one_json(run(db.parent, *args, db=db))
        same(reference, db, trained, again)
        assert registry_is_whole(db)[kind] == again["model_id"]
        assert snapshot(db)["models"] == counts["models"] + 1


def same_recommendations(
    reference: Path, db: Path, trained: dict[str, Any], again: dict[str, Any]
) -> None:
    for key in ("model", "params", "users", "items", "interactions", "as_of"):
        assert again[key] == trained[key], key
    recs = []
    for path, model_id in ((reference, trained["model_id"]), (db, again["model_id"])):
        store = Store.open(path, read_only=True)
        try:
            model = load_recommender(Registry(store).artefact(model_id))
        finally:
            store.close()
        recs.append(model.recommend(list(model.users_.ids[::40]), 10))
    a, b = recs
    assert (a.users == b.users).all()
    assert (a.items == b.items).all()
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-9, atol=1e-12)


def test_recommender_training_killed_anywhere_registers_all_or_nothing_and_retrains_the_same(
    base: Path, tmp_path: Path
) -> None:
    kill_training(
        base,
        tmp_path,
        ["recommend", "train", "--model", "ease", "--json"],
        "recommender",
        # Half way and at the commit; the profile build's test kills inside the checkpoint
        # and after the commit too (the same store mechanics; kept out here for time).
        (MID, COMMIT),
        same_recommendations,
    )


def same_comparison(
    reference: Path, db: Path, trained: dict[str, Any], again: dict[str, Any]
) -> None:
    assert again["model"] == trained["model"]
    assert again["cutoffs"] == trained["cutoffs"] and again["rows"] == trained["rows"]
    assert again["features"] == trained["features"]
    assert [c["model"] for c in again["comparison"]] == [c["model"] for c in trained["comparison"]]
    for mine, theirs in zip(again["comparison"], trained["comparison"], strict=True):
        for metric in ("validation_roc_auc", "validation_log_loss", "test_roc_auc"):
            assert mine[metric] == pytest.approx(theirs[metric], rel=1e-6, abs=1e-9), metric


def test_propensity_training_killed_registers_all_or_nothing_and_retrains_the_same(
    base: Path, tmp_path: Path
) -> None:
    kill_training(
        base,
        tmp_path,
        ["predict", "train", "--models", "logistic", "--train-windows", "1", "--json"],
        "propensity",
        # Killed half way, a training leaves nothing (the recommender's test shows it): here
        # only the commit, where the model row and its artefact are written together.
        (COMMIT,),
        same_comparison,
    )
