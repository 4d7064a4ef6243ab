"""Segment runs on the simulated shop: what a run writes, run history, RFM runs, checks before
any write, assigning new users with the stored model, exporting members, and portraits checked
against figures computed here from the profiles table."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from jingzhun.config import Settings
from jingzhun.errors import InputError, NotFoundError
from jingzhun.profile.build import profile_columns
from jingzhun.profile.tags import RFM_SEGMENTS
from jingzhun.segment import features as F
from jingzhun.segment import runs as R
from jingzhun.store import Store
from jingzhun.workspace import Workspace

SEGMENT_TABLES = ("segment_runs", "segment_members", "segment_portraits")
METRICS = {"silhouette", "calinski_harabasz", "davies_bouldin", "noise_share"}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small fits run fastest on one OpenMP/BLAS thread (idle worker threads spin and compete
    for the two cores); the results do not depend on it."""
    with threadpool_limits(limits=1):
        yield


def open_ws(path: Path, *, read_only: bool = False) -> Workspace:
    settings = Settings()
    return Workspace(Store.open(path, settings, read_only=read_only), settings)


def copy_store(src: Path, folder: Path, name: str = "store.duckdb") -> Path:
    assert not src.with_name(src.name + ".wal").exists(), "the source store was left open"
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / name
    shutil.copyfile(src, dst)
    return dst


def counts(ws: Workspace) -> dict[str, int]:
    tables = [
        r[0]
        for r in ws.store.rows(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
        )
    ]
    return {t: ws.store.count(t) for t in tables}


def feature_frame(ws: Workspace, features: list[str]) -> pd.DataFrame:
    return ws.store.sql(F.select_sql(features, profile_columns(ws.store))).df()


@pytest.fixture(scope="module")
def profiled(shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated shop ingested, with profiles and tags built (no segment run yet)."""
    path = tmp_path_factory.mktemp("segment_runs") / "profiled.duckdb"
    with open_ws(path) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [shop.file(kind)])
        ws.profile_build()
    return path


@pytest.fixture(scope="module")
def fitted(profiled: Path) -> tuple[Path, R.RunResult]:
    """The profiled store with one k-means run (k=3) named "value"."""
    path = copy_store(profiled, profiled.parent, "fitted.duckdb")
    with open_ws(path) as ws:
        result = ws.segment_run("kmeans", k=3, name="value", stability_resamples=0)
    return path, result


@pytest.fixture
def fitted_ws(fitted, tmp_path: Path) -> Iterator[Workspace]:
    """A writable copy of the fitted store."""
    with open_ws(copy_store(fitted[0], tmp_path)) as ws:
        yield ws


@pytest.fixture
def profiled_ws(profiled: Path, tmp_path: Path) -> Iterator[Workspace]:
    with open_ws(copy_store(profiled, tmp_path)) as ws:
        yield ws


@pytest.fixture(scope="module")
def fitted_ro(fitted) -> Iterator[Workspace]:
    """The fitted store, read-only (for tests that only look)."""
    with open_ws(fitted[0], read_only=True) as ws:
        yield ws


# -- what a run writes ---------------------------------------------------------------------------


def test_a_kmeans_run_writes_one_active_run_its_members_and_portraits(fitted, fitted_ro) -> None:
    _, result = fitted
    ws = fitted_ro
    users = ws.store.count("profiles")
    assert result.run_id == "value-1"
    assert (result.name, result.method, result.users, result.segments) == (
        "value",
        "kmeans",
        users,
        3,
    )
    assert result.params["k"] == 3 and result.params["random_state"] == 0
    assert result.features == list(F.DEFAULT_FEATURES)
    assert set(result.metrics) >= METRICS
    assert result.metrics["noise_share"] == 0
    assert -1 <= result.metrics["silhouette"] <= 1
    assert "stability_ari" not in result.metrics  # stability_resamples=0
    assert "k_scan" not in result.metrics  # k was given

    runs = ws.store.sql("SELECT * FROM segment_runs").df()
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row.run_id == "value-1" and bool(row.active)
    assert (row["name"], row.method, row.users, row.segments) == ("value", "kmeans", users, 3)
    assert json.loads(row.features) == result.features
    assert json.loads(row.metrics) == result.metrics
    assert row.as_of == ws.store.scalar("SELECT max(as_of) FROM profiles")
    assert isinstance(row.model, bytes | bytearray) and len(row.model) > 0

    members = ws.store.sql("SELECT * FROM segment_members").df()
    assert len(members) == users
    assert members.user_id.is_unique
    assert set(members.user_id) == {r[0] for r in ws.store.rows("SELECT user_id FROM profiles")}
    assert (members.run_id == "value-1").all() and members.fitted.all()
    assert set(members.segment) == {"1", "2", "3"}

    portraits = ws.store.sql("SELECT * FROM segment_portraits ORDER BY segment").df()
    assert portraits.segment.tolist() == ["1", "2", "3"]
    sizes = members.segment.value_counts()
    assert portraits.users.tolist() == [sizes[s] for s in portraits.segment]
    assert portraits.users.sum() == users
    assert portraits.share.sum() == pytest.approx(1.0)
    assert portraits.revenue_share.sum() == pytest.approx(1.0)
    # segments are numbered by size, the largest first
    assert portraits.users.is_monotonic_decreasing
    assert portraits.label.is_unique
    assert all(isinstance(x, str) and x.strip() for x in portraits.label)
    for p in result.portraits:
        assert set(p["traits"]) == set(result.features)
        assert len(p["top_categories"]) <= 3
        for category, share, lift in p["top_categories"]:
            assert isinstance(category, str) and 0 < share <= 1 and lift > 0


def test_reading_a_run_back(fitted, fitted_ro) -> None:
    _, result = fitted
    ws = fitted_ro
    info = ws.segment("value")
    assert info == ws.segment("value-1") == ws.segment()  # by name, by id, the latest
    assert info["run_id"] == "value-1" and info["active"]
    assert info["params"] == json.loads(json.dumps(result.params))
    assert info["features"] == result.features
    assert [p["segment"] for p in info["portraits"]] == ["1", "2", "3"]
    assert [p["label"] for p in info["portraits"]] == [p["label"] for p in result.portraits]
    members = ws.segment_members("value")
    assert list(members.columns) == ["user_id", "segment", "label", "fitted", "assigned_at"]
    assert members.user_id.is_monotonic_increasing
    labels = {p["segment"]: p["label"] for p in info["portraits"]}
    assert (members.label == members.segment.map(labels)).all()
    listed = ws.segment_runs()
    assert listed.run_id.tolist() == ["value-1"]
    assert listed.silhouette.iloc[0] == pytest.approx(result.metrics["silhouette"])
    assert pd.isna(listed.stability.iloc[0])


@pytest.mark.parametrize("ref", ["nope", "value-2", "VALUE"])
def test_an_unknown_run_is_not_found_and_names_the_known_ones(fitted_ro, ref: str) -> None:
    with pytest.raises(NotFoundError, match=f"no segment run or name '{ref}'") as err:
        fitted_ro.segment(ref)
    assert err.value.hint == "known names: value"
    assert err.value.exit_code == 2
    with pytest.raises(NotFoundError):
        fitted_ro.segment_members(ref)


def test_no_runs_yet(profiled_ws: Workspace) -> None:
    with pytest.raises(NotFoundError, match="no segment runs yet"):
        profiled_ws.segment()
    with pytest.raises(NotFoundError, match="no segment runs yet"):
        profiled_ws.segmenter()
    assert profiled_ws.segment_runs().empty


def test_a_run_needs_profiles(ws: Workspace) -> None:
    with pytest.raises(NotFoundError, match="no profiles yet") as err:
        ws.segment_run("kmeans", k=3)
    assert err.value.exit_code == 2
    assert err.value.hint == "run jingzhun profile build"
    assert all(ws.store.count(t) == 0 for t in SEGMENT_TABLES)


# -- history ----------------------------------------------------------------------------------


def test_a_second_run_of_a_name_keeps_the_first_as_history(fitted_ws: Workspace) -> None:
    ws = fitted_ws
    users = ws.store.count("profiles")
    first = ws.segment("value")
    second = ws.segment_run("kmeans", k=4, name="value", stability_resamples=0)
    assert second.run_id == "value-2" != first["run_id"]
    runs = dict(ws.store.rows("SELECT run_id, active FROM segment_runs"))
    assert runs == {"value-1": False, "value-2": True}
    # the first run's members and portraits are kept
    kept = dict(ws.store.rows("SELECT run_id, count(*) FROM segment_members GROUP BY 1"))
    assert kept == {"value-1": users, "value-2": users}
    portraits = dict(ws.store.rows("SELECT run_id, count(*) FROM segment_portraits GROUP BY 1"))
    assert portraits == {"value-1": 3, "value-2": 4}
    # the name means the active run; the old one is still reachable by its id
    assert ws.segment("value")["run_id"] == "value-2"
    old = ws.segment("value-1")
    assert not old["active"] and old["segments"] == 3
    assert old["portraits"] == first["portraits"]
    assert ws.segmenter("value").run_id == "value-2"
    assert ws.segment_runs().run_id.tolist() == ["value-2", "value-1"]
    # another name is another history, and the latest active run is the default
    other = ws.segment_run("kmeans", k=2, name="Two.parts_b", stability_resamples=0)
    assert other.run_id == "Two.parts_b-1"
    assert ws.segment()["run_id"] == "Two.parts_b-1"
    third = ws.segment_run("kmeans", k=3, name="value", stability_resamples=0)
    assert third.run_id == "value-3"
    assert ws.store.rows("SELECT run_id FROM segment_runs WHERE active ORDER BY 1") == [
        ("Two.parts_b-1",),
        ("value-3",),
    ]


# -- rfm --------------------------------------------------------------------------------------


def test_an_rfm_run_uses_the_rfm_tags(profiled_ws: Workspace) -> None:
    ws = profiled_ws
    result = ws.segment_run("rfm")
    assert result.run_id == "rfm-1" and result.method == "rfm"
    assert result.features == [] and result.params == {} and result.metrics == {}
    members = ws.segment_members("rfm")
    assert len(members) == ws.store.count("profiles")
    allowed = {*RFM_SEGMENTS, R.NO_ORDERS}
    assert set(members.segment) <= allowed
    assert R.NO_ORDERS in set(members.segment)
    tags = dict(ws.store.rows("SELECT user_id, value FROM tags WHERE tag = 'rfm_segment'"))
    expected = members.user_id.map(tags).fillna(R.NO_ORDERS)
    assert (members.segment == expected).all()
    # users without orders are exactly those without the tag
    buyers = {r[0] for r in ws.store.rows("SELECT user_id FROM profiles WHERE frequency >= 1")}
    assert set(members.user_id[members.segment != R.NO_ORDERS]) == buyers
    portraits = ws.segment("rfm")["portraits"]
    assert all(p["label"] == p["segment"] for p in portraits)
    assert sum(p["users"] for p in portraits) == len(members)
    assert set(portraits[0]["traits"]) == {"recency_days", "frequency", "monetary", "aov"}
    no_orders = next(p for p in portraits if p["segment"] == R.NO_ORDERS)
    assert no_orders["revenue_share"] == 0.0
    assert no_orders["traits"]["frequency"]["mean"] == 0.0
    # an RFM run places users by their tags, not by a model
    seg = ws.segmenter("rfm")
    with pytest.raises(InputError, match="rfm run assigns from RFM tags"):
        seg.assign({"frequency": 2})
    with pytest.raises(InputError, match="rfm run assigns from RFM tags"):
        seg.assign_matrix(np.zeros((1, 0)))


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"features": ["aov"]}, "--features: rfm segments come from the RFM tags"),
        ({"k": 4}, "--k does not apply to --method rfm"),
    ],
)
def test_rfm_refuses_features_and_k(profiled_ws: Workspace, options, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        profiled_ws.segment_run("rfm", **options)
    assert all(profiled_ws.store.count(t) == 0 for t in SEGMENT_TABLES)


# -- checks before any write --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "options", "needle"),
    [
        (
            "kmeans",
            {"features": ["aov", "monetry"]},
            "--features: unknown or non-numeric trait 'monetry'; did you mean 'monetary'?",
        ),
        (
            "kmeans",
            {"features": ["aov", "preferred_channel"]},
            "--features: unknown or non-numeric trait 'preferred_channel'",
        ),
        ("kmeans", {"features": ["aov", "frequency", "aov"]}, "--features: 'aov' is named twice"),
        (
            "kmeans",
            {"features": ["aov", "n_identify"]},
            "--features: 'n_identify' is constant (every user has 0)",
        ),
        ("kmeans", {"k": 1}, "--k 1: a segmentation needs at least 2 segments"),
        ("kmeans", {"k": "abc"}, "--k 'abc': give a whole number or 'auto'"),
        ("kmeans", {"k": 5000}, "--k 5000: must be between 2 and the number of users minus one"),
        ("dbscan", {"k": 3}, "--k does not apply to --method dbscan"),
        ("spectral", {}, "--method 'spectral' is not a segmentation method"),
        ("kmeans", {"name": "bad name"}, "--name 'bad name'"),
        ("kmeans", {"name": "x" * 65}, "--name"),
        ("kmeans", {"pca": 1.5}, "--pca 1.5"),
        ("kmeans", {"pca": 13}, "--pca 13"),
        ("kmeans", {"k_range": (1, 4)}, "--k-range 1-4"),
        ("kmeans", {"k_range": (5, 3)}, "--k-range 5-3"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    fitted_ws: Workspace, method: str, options: dict[str, Any], needle: str
) -> None:
    before = counts(fitted_ws)
    with pytest.raises(InputError) as err:
        fitted_ws.segment_run(method, stability_resamples=0, **options)
    assert needle in str(err.value)
    assert err.value.exit_code == 2
    assert counts(fitted_ws) == before
    assert fitted_ws.store.rows("SELECT run_id FROM segment_runs WHERE active") == [("value-1",)]


def test_the_n_identify_count_used_above_is_constant(fitted_ro) -> None:
    # (the constant-feature case above relies on this trait of the simulated shop)
    assert (
        fitted_ro.store.scalar("SELECT count(DISTINCT coalesce(n_identify, 0)) FROM profiles") == 1
    )


# -- assigning new users ----------------------------------------------------------------------


def test_assign_new_places_missing_members_like_the_fitted_model(fitted_ws: Workspace) -> None:
    ws = fitted_ws
    users = ws.store.count("profiles")
    before = ws.segment_members("value").set_index("user_id")
    gone = before.index[::15].tolist()
    ws.store.run(
        "DELETE FROM segment_members WHERE run_id = 'value-1' AND user_id IN (SELECT unnest(?))",
        [gone],
    )
    assert ws.store.count("segment_members") == users - len(gone)
    result = ws.segment_assign("value")
    assert result["run_id"] == "value-1"
    assert result["assigned"] == len(gone)
    assert sum(result["segments"].values()) == len(gone)
    after = ws.segment_members("value").set_index("user_id")
    assert len(after) == users and after.index.is_unique
    back = after.loc[gone]
    assert not back.fitted.any()
    assert after.drop(index=gone).fitted.all()
    # k-means assignment by the stored model reproduces the fitted segments exactly
    assert (back.segment == before.loc[gone].segment).all()
    assert (back.label == before.loc[gone].label).all()
    assert back.segment.value_counts().to_dict() == result["segments"]
    # and it is what the Segmenter says for the same feature rows
    seg = ws.segmenter("value")
    rows = feature_frame(ws, seg.features).set_index("user_id").loc[gone]
    codes = seg.assign_matrix(rows[seg.features].to_numpy(np.float64))
    assert codes.tolist() == back.segment.tolist()
    # nothing left to assign
    again = ws.segment_assign("value")
    assert again == {"run_id": "value-1", "assigned": 0, "segments": {}}
    assert ws.store.count("segment_members") == users


def test_assign_new_places_users_profiled_after_the_run(fitted_ws: Workspace) -> None:
    ws = fitted_ws
    users = ws.store.count("profiles")
    # five new users whose traits copy five existing members
    ws.store.run(
        "INSERT INTO profiles SELECT * REPLACE ('new-' || user_id AS user_id) FROM profiles "
        "ORDER BY user_id LIMIT 5 OFFSET 100"
    )
    result = ws.segment_assign()  # the latest active run
    assert result["run_id"] == "value-1" and result["assigned"] == 5
    members = ws.segment_members("value").set_index("user_id")
    assert len(members) == users + 5
    new = members[members.index.str.startswith("new-")]
    assert len(new) == 5 and not new.fitted.any()
    twins = members.loc[[u.removeprefix("new-") for u in new.index]]
    assert new.segment.tolist() == twins.segment.tolist()
    # the run itself is not refitted
    assert ws.store.rows("SELECT run_id, users FROM segment_runs") == [("value-1", users)]
    assert ws.store.count("segment_portraits") == 3


def test_assign_new_for_an_rfm_run_uses_the_tags(profiled_ws: Workspace) -> None:
    ws = profiled_ws
    ws.segment_run("rfm")
    gone = [r[0] for r in ws.store.rows("SELECT user_id FROM segment_members LIMIT 40")]
    before = dict(ws.store.rows("SELECT user_id, segment FROM segment_members"))
    ws.store.run("DELETE FROM segment_members WHERE user_id IN (SELECT unnest(?))", [gone])
    result = ws.segment_assign("rfm")
    assert result["assigned"] == 40
    after = ws.segment_members("rfm").set_index("user_id")
    assert all(after.segment[u] == before[u] for u in gone)
    assert not after.loc[gone].fitted.any()


def test_segmenter_assigns_one_user_from_a_dict(fitted_ro) -> None:
    ws = fitted_ro
    seg = ws.segmenter("value")
    assert seg.run_id == "value-1" and seg.method == "kmeans"
    codes = {p["segment"] for p in ws.segment("value")["portraits"]}
    members = ws.segment_members("value").set_index("user_id")
    rows = feature_frame(ws, seg.features).iloc[::97]
    for row in rows.to_dict("records"):
        traits = {f: row[f] for f in seg.features}
        code = seg.assign(traits)
        assert isinstance(code, str) and code in codes
        assert code == members.segment[row["user_id"]]
    # missing traits count as 0; extra keys are ignored
    assert seg.assign({}) in codes
    assert seg.assign({"aov": 120.0, "not_a_feature": 1}) in codes
    zero = seg.assign_matrix(np.zeros((1, len(seg.features))))[0]
    assert seg.assign({}) == zero


def test_a_pca_run_stores_the_projection_with_its_model(profiled_ws: Workspace) -> None:
    ws = profiled_ws
    result = ws.segment_run("kmeans", k=3, pca=0.9, name="pca", stability_resamples=0)
    described = result.params["features"]
    assert 1 <= described["pca_components"] < len(result.features)
    assert described["pca_explained"] >= 0.9
    seg = ws.segmenter("pca")
    assert seg.pipe.components_.shape == (described["pca_components"], len(result.features))
    frame = feature_frame(ws, seg.features)
    codes = seg.assign_matrix(frame[seg.features].to_numpy(np.float64))
    members = ws.segment_members("pca").set_index("user_id")
    assert codes.tolist() == members.segment.loc[frame.user_id].tolist()


@pytest.mark.parametrize(
    ("method", "k", "exact"),
    [
        ("minibatch-kmeans", 3, True),
        ("gmm", 3, True),
        ("som", 3, True),
        ("hierarchical", 3, False),
        ("dbscan", "auto", False),
        ("hdbscan", "auto", False),
    ],
)
def test_every_method_stores_a_run_its_model_can_replay(
    profiled_ws: Workspace, method: str, k: int | str, exact: bool
) -> None:
    ws = profiled_ws
    result = ws.segment_run(method, k=k, stability_resamples=0)
    users = ws.store.count("profiles")
    members = ws.segment_members(method).set_index("user_id")
    assert len(members) == users == result.users
    codes = set(members.segment)
    numbered = sorted(c for c in codes if c != "noise")
    assert numbered == [str(i) for i in range(1, len(numbered) + 1)]
    assert result.segments in (len(numbered), len(codes))  # noise may count as a segment
    if method in ("dbscan", "hdbscan"):
        assert result.metrics["noise_share"] == pytest.approx(
            (members.segment == "noise").mean(), abs=1e-4
        )
        assert result.metrics["noise_share"] < 0.5
    else:
        assert "noise" not in codes and len(numbered) == 3
    portraits = {p["segment"]: p for p in ws.segment(method)["portraits"]}
    assert set(portraits) == codes
    assert sum(p["users"] for p in portraits.values()) == users
    sizes = [portraits[c]["users"] for c in numbered]
    assert sizes == sorted(sizes, reverse=True)
    if "noise" in portraits:
        assert portraits["noise"]["label"] == "Unclustered (noise)"
    seg = ws.segmenter(method)
    frame = feature_frame(ws, seg.features)
    replay = seg.assign_matrix(frame[seg.features].to_numpy(np.float64))
    agree = (replay == members.segment.loc[frame.user_id].to_numpy()).mean()
    assert agree == 1.0 if exact else agree >= 0.95
    assert set(replay) <= codes


def test_stability_is_stored_and_listed(profiled_ws: Workspace) -> None:
    ws = profiled_ws
    result = ws.segment_run("kmeans", k=3, name="stable", stability_resamples=2)
    ari = result.metrics["stability_ari"]
    assert 0.5 < ari <= 1.0
    listed = ws.segment_runs().set_index("run_id")
    assert listed.stability["stable-1"] == pytest.approx(ari)
    assert ws.segment("stable")["metrics"]["stability_ari"] == ari


# -- export -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_writes_one_row_per_member(fitted_ro, tmp_path: Path, suffix: str) -> None:
    ws = fitted_ro
    out = tmp_path / "deep" / f"members{suffix}"
    rows = ws.segment_export(out, "value")
    users = ws.store.count("profiles")
    assert rows == users
    df = pd.read_csv(out, dtype={"segment": str}) if suffix == ".csv" else pd.read_parquet(out)
    assert list(df.columns) == ["user_id", "segment", "label", "fitted"]
    assert len(df) == users and df.user_id.is_unique
    members = ws.segment_members("value")
    assert df.user_id.tolist() == members.user_id.tolist()
    assert df.segment.astype(str).tolist() == members.segment.tolist()
    assert df.label.tolist() == members.label.tolist()
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("name", ["members.json", "members", "members.xlsx"])
def test_export_to_an_unknown_extension_is_an_input_error(
    fitted_ro, tmp_path: Path, name: str
) -> None:
    out = tmp_path / name
    with pytest.raises(InputError, match=r"--out .*: unknown extension") as err:
        fitted_ro.segment_export(out, "value")
    assert err.value.exit_code == 2
    assert not out.exists()
    with pytest.raises(NotFoundError):
        fitted_ro.segment_export(tmp_path / "m.csv", "nope")
    assert not (tmp_path / "m.csv").exists()


# -- portraits against the profiles ---------------------------------------------------------


def _independent_traits(profiles: pd.DataFrame) -> pd.DataFrame:
    """Some of the default features, computed here with pandas from the profiles table."""
    p = profiles

    def num(col: str) -> pd.Series:
        return p[col].astype("float64")

    tenure = num("tenure_days").fillna(0.0)
    return pd.DataFrame(
        {
            "user_id": p.user_id.astype(str),
            "orders_per_month": num("frequency") * 30.0 / tenure.clip(lower=30),
            "sessions_per_month": num("sessions").fillna(0.0) * 30.0 / tenure.clip(lower=30),
            "recency_share": num("recency_days").fillna(tenure) / tenure.clip(lower=1),
            "tenure_days": tenure,
            "aov": num("aov").fillna(0.0),
            "views_per_session": (
                num("n_product_viewed") / num("sessions").replace(0, np.nan)
            ).fillna(0.0),
            "discount_share": num("discount_share").fillna(0.0),
            "hour_cos": np.cos(2 * np.pi * num("preferred_hour").fillna(12.0) / 24),
        }
    )


def test_portrait_z_scores_match_the_profiles(fitted_ro) -> None:
    ws = fitted_ro
    profiles = ws.store.sql("SELECT * EXCLUDE (category_affinity) FROM profiles").df()
    traits = _independent_traits(profiles)
    members = ws.segment_members("value")[["user_id", "segment"]]
    df = members.merge(traits, on="user_id", validate="one_to_one")
    assert len(df) == len(profiles)
    names = [c for c in traits.columns if c != "user_id"]
    pop_mean = df[names].mean()
    pop_std = df[names].std(ddof=0)  # the population's standard deviation
    revenue = profiles.set_index(profiles.user_id.astype(str)).monetary.astype(float).fillna(0.0)
    for p in ws.segment("value")["portraits"]:
        part = df[df.segment == p["segment"]]
        assert p["users"] == len(part)
        assert p["share"] == pytest.approx(len(part) / len(df))
        assert p["revenue_share"] == pytest.approx(
            revenue[part.user_id].sum() / revenue.sum(), abs=1e-9
        )
        for n in names:
            t = p["traits"][n]
            z = (part[n].mean() - pop_mean[n]) / pop_std[n]
            assert t["z"] == pytest.approx(z, abs=2e-6), (p["segment"], n)
            assert t["mean"] == pytest.approx(part[n].mean(), rel=1e-6, abs=1e-6)
            assert t["median"] == pytest.approx(part[n].median(), rel=1e-6, abs=1e-6)
            assert t["population_mean"] == pytest.approx(pop_mean[n], rel=1e-6, abs=1e-6)


def test_portrait_labels_name_the_traits_that_stand_out(fitted_ro) -> None:
    from jingzhun.segment.portraits import STANDS_OUT, UNNAMED, WORDS

    for p in fitted_ro.segment("value")["portraits"]:
        standing = sorted(
            (
                (abs(v["z"]), n, v["z"])
                for n, v in p["traits"].items()
                if n not in UNNAMED and v["z"] is not None and abs(v["z"]) >= STANDS_OUT
            ),
            reverse=True,
        )
        if standing:
            _, name, z = standing[0]
            word = WORDS[name][0 if z > 0 else 1]
            assert p["label"].lower().startswith(word.lower()), (p["label"], name, z)
        else:
            # nothing stands out: a leaning category or the typical customer
            assert p["label"] in {"Typical customers"} | {
                c.capitalize() for c, _s, lift in p["top_categories"] if lift >= 1.25
            }


@pytest.mark.parametrize("method", ["kmeans", "gmm", "dbscan"])
def test_a_segmenter_from_a_model_without_a_store(fitted_ro, method: str) -> None:
    from jingzhun.segment import methods as M

    features = list(F.DEFAULT_FEATURES)
    frame = feature_frame(fitted_ro, features)
    X = frame[features].to_numpy(np.float64)
    pipe = F.FeaturePipeline(features).fit(X)
    fit = M.fit(method, pipe.transform(X), k=3 if method != "dbscan" else None)
    seg = R.Segmenter.from_model(features, pipe, fit.model)
    want = np.where(fit.labels >= 0, (fit.labels + 1).astype(str), "noise")
    replay = seg.assign_matrix(X)
    assert (replay == want).mean() >= (1.0 if method != "dbscan" else 0.95)
    row = dict(zip(features, X[0], strict=True))
    assert seg.assign(row) == replay[0]


# -- portraits from hand-made frames ------------------------------------------------------------


def _t(**z: float | None) -> dict[str, dict[str, Any]]:
    return {n: {"mean": 0.0, "median": 0.0, "population_mean": 0.0, "z": v} for n, v in z.items()}


@pytest.mark.parametrize(
    ("traits", "top", "expected"),
    [
        (_t(monetary=1.2, frequency=0.8, aov=0.6), [], "High spend · frequent buyers"),
        (_t(monetary=-0.6, recency_days=-2.0), [], "Recent buyers · low spend"),
        # the same words twice are said once; the next trait takes the place
        (_t(orders_per_month=1.5, frequency=1.4, aov=-0.9), [], "Frequent buyers · small baskets"),
        # the hour on a circle never names a segment; a trait without words gets generic ones
        (_t(hour_sin=3.0, hour_cos=-3.0, foo=0.7), [], "High foo"),
        (_t(monetary=0.49, aov=None), [["books", 0.3, 1.25]], "Books"),
        (_t(monetary=0.49), [["books", 0.3, 1.2], ["toys", 0.2, 2.0]], "Toys"),
        (_t(monetary=0.1), [["books", 0.3, 1.1]], "Typical customers"),
        (_t(score=-0.7), [["home", 0.4, 1.5]], "Low score · home"),
    ],
)
def test_a_label_names_what_stands_out(traits, top, expected: str) -> None:
    from jingzhun.segment.portraits import label

    assert label("1", traits, top) == expected


def test_noise_is_labelled_unclustered() -> None:
    from jingzhun.segment.portraits import label

    assert label("noise", _t(monetary=3.0), [["books", 0.5, 3.0]]) == "Unclustered (noise)"


def test_compute_on_hand_made_segments() -> None:
    from jingzhun.segment.portraits import compute

    members = pd.DataFrame(
        {"user_id": ["a", "b", "c", "d", "e", "f"], "segment": ["1", "1", "1", "2", "2", "3"]}
    )
    traits = pd.DataFrame(
        {
            "user_id": ["f", "e", "d", "c", "b", "a"],  # any order
            "monetary": [0.0, 0.0, 0.0, 10.0, 10.0, 10.0],
            "constant": [5.0] * 6,
        }
    )
    affinity = pd.DataFrame(
        {
            "user_id": ["a", "b", "d", "d", "f"],
            "category": ["books", "books", "toys", "books", "toys"],
            "score": [1.0, 1.0, 0.5, 0.5, 1.0],
        }
    )
    revenue = pd.Series([10.0, 10.0, 10.0, 0.0, 0.0, 0.0], index=list("abcdef"))
    out = compute(members, traits, affinity, revenue).set_index("segment")
    assert out.index.tolist() == ["1", "2", "3"]  # the largest first
    assert out.users.tolist() == [3, 2, 1]
    assert out.share.tolist() == pytest.approx([0.5, 1 / 3, 1 / 6])
    assert out.revenue_share.tolist() == pytest.approx([1.0, 0.0, 0.0])
    t1 = json.loads(out.traits["1"])
    assert t1["monetary"] == {"mean": 10.0, "median": 10.0, "population_mean": 5.0, "z": 1.0}
    assert t1["constant"]["z"] is None  # no spread in the population: no z-score
    assert json.loads(out.traits["2"])["monetary"]["z"] == -1.0
    # categories: [category, mean share in the segment, lift over the population]
    top1 = json.loads(out.top_categories["1"])
    assert top1 == [["books", pytest.approx(2 / 3, abs=1e-4), pytest.approx(1.6, abs=1e-3)]]
    top2 = json.loads(out.top_categories["2"])
    assert [c for c, _, _ in top2] == ["books", "toys"]
    assert top2[1][2] == pytest.approx(0.25 / (1.5 / 6), abs=1e-3)
    assert out.label["1"] == "High spend · books"
    assert out.label["3"].startswith("Low spend")
    # no revenue at all: no revenue share
    none = compute(members, traits, None, pd.Series(0.0, index=list("abcdef")))
    assert none.revenue_share.isna().all()
    assert (none.top_categories == "[]").all()


def test_compute_numbers_segments_that_would_share_a_label() -> None:
    from jingzhun.segment.portraits import compute

    members = pd.DataFrame({"user_id": list("abcd"), "segment": ["1", "1", "2", "2"]})
    traits = pd.DataFrame({"user_id": list("abcd"), "aov": [1.0, 2.0, 1.0, 2.0]})
    out = compute(members, traits, None, None)
    assert out.label.tolist() == ["Typical customers (1)", "Typical customers (2)"]
    assert out.revenue_share.isna().all()


# -- numbers that would hang the machine or reach a library as a traceback (issue 12) ---------


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"k_range": (2, 100_000)}, "--k-range"),
        ({"k_range": (9, 3)}, "--k-range"),
        ({"k_range": (1, 5)}, "--k-range"),
        ({"k": 100_000}, "--k"),
        ({"stability_resamples": 100_000}, "--stability"),
        ({"stability_resamples": -1}, "--stability"),
        ({"random_state": -1}, "--seed"),
        ({"random_state": 2**40}, "--seed"),
        ({"method": "dbscan", "options": {"eps": 0.0}}, "--eps"),
        ({"method": "dbscan", "options": {"eps": float("nan")}}, "--eps"),
        ({"method": "dbscan", "options": {"eps": float("inf")}}, "--eps"),
        ({"method": "dbscan", "options": {"min_samples": 0}}, "--min-samples"),
        ({"method": "hdbscan", "options": {"min_cluster_size": 10**12}}, "--min-cluster-size"),
        ({"method": "som", "options": {"grid": 100_000}}, "--grid"),
    ],
)
def test_numbers_out_of_bounds_are_refused_before_any_work(
    profiled_ws: Workspace, options: dict, flag: str
) -> None:
    before = counts(profiled_ws)
    with pytest.raises(InputError, match=f"^{flag} "):
        profiled_ws.segment_run(**{"method": "kmeans", **options})
    assert counts(profiled_ws) == before


def test_a_run_keeps_its_members_on_two_principal_components(fitted_ro, fitted_ws) -> None:
    """The segments page's scatter, written with the run: a sample of members with their
    segment, on the first two principal components of the fitted space (PC1 the wider)."""
    kept = fitted_ro.segments.projection("value")
    members = fitted_ro.segments.members("value").set_index("user_id")["segment"]
    assert len(kept) == min(R.PROJECTED, len(members)) and kept["user_id"].is_unique
    assert (kept.set_index("user_id")["segment"] == members.loc[kept["user_id"]]).all()
    assert kept["x"].var() >= kept["y"].var() > 0
    assert abs(kept["x"].mean()) < 1e-9 and abs(kept["y"].mean()) < 1e-9  # centred by PCA
    rfm = fitted_ws.segment_run("rfm", name="r")
    assert fitted_ws.segments.projection(rfm.run_id).empty, "RFM has no fitted space"


def test_a_run_fitted_before_projections_were_kept_is_drawn_from_the_profiles(fitted_ws) -> None:
    import dataclasses

    from jingzhun.report.i18n import Translator
    from jingzhun.report.segment_sections import run_charts

    info = dataclasses.asdict(fitted_ws.segments.get("value"))
    kept = run_charts(fitted_ws, Translator("en"), info)
    fitted_ws.store.run("DELETE FROM segment_projection")
    again = run_charts(fitted_ws, Translator("en"), info)
    assert len(again) == len(kept) and "scattergl" in again[-1].lower()
