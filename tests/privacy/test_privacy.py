"""The protect stage on a real store: personal data encrypted at rest and found through the
blind index; a person's data exported and erased from every table; keys rotated; a store from
before the vault encrypted when the vault opens; the same through the CLI and the API."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from jingzhun.errors import NotFoundError
from jingzhun.ingest.read import contacts
from jingzhun.privacy.subject import user_tables
from jingzhun.store import Store
from jingzhun.store.vault import KEY_ENV, PREFIX, VaultKeyError, key_file, vault_for
from jingzhun.workspace import Workspace
from tests.api.conftest import start
from tests.cli import subprocess_cli as sp
from tests.conftest import TEST_MASTER_KEY, plain_pii


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The master key from the key file beside the store, as a shop without a secrets
    manager runs it."""
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shop) -> Path:
    """A store with every stage's rows: profiles, tags, segments, recommendations, scores."""
    db = tmp_path_factory.mktemp("privacy") / "shop.duckdb"
    with Workspace.open(db) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest.files(kind, [shop.file(kind)])
        ws.profiles.build()
        ws.segments.run("kmeans", k=3, name="value", stability_resamples=0)
        ws.recs.train("itemknn")
        ws.recs.batch(5)
        ws.predict.train("propensity", models=["logistic"])
        ws.predict.score("propensity")
    return db


@pytest.fixture
def store_copy(trained: Path, tmp_path: Path) -> Path:
    db = tmp_path / "shop.duckdb"
    shutil.copyfile(trained, db)
    return db


@pytest.fixture
def copied(store_copy: Path) -> Iterator[Workspace]:
    with Workspace.open(store_copy) as ws:
        yield ws


def _busy_user(ws: Workspace) -> str:
    """A known user with anonymous history, personal data, recommendations and a score."""
    return ws.store.scalar(
        """
        SELECT i.user_id FROM identities i
        JOIN pii p USING (user_id) JOIN recommendations r USING (user_id)
        JOIN scores s USING (user_id) JOIN segment_members m USING (user_id)
        WHERE p.email_index IS NOT NULL AND p.phone_index IS NOT NULL
        GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1
        """
    )


# -- at rest ------------------------------------------------------------------------------


def test_no_personal_value_is_in_the_store_file(trained: Path, shop) -> None:
    users = pd.read_parquet(shop.file("users"))
    with Workspace.open(trained, read_only=True) as ws:
        people = plain_pii(ws.store, ["email", "phone", "name"])
        # One sealed record a person; the per-field columns of older stores stay empty.
        (records, unsealed, fields) = ws.store.rows(
            "SELECT count(sealed), count(*) FILTER (sealed IS NULL), "
            "count(email) + count(phone) + count(name) + count(address) FROM pii"
        )[0]
    assert len(people) > 2000
    # The vault gives back what the file held (the users the validator took).
    given = users.set_index("user_id")
    for user, email, phone, name in people[:200]:
        assert (email, phone, name) == tuple(
            None if pd.isna(given.at[user, c]) else given.at[user, c]
            for c in ("email", "phone", "name")
        )
    assert records > 2000 and unsealed == 0 and fields == 0
    data = trained.read_bytes()
    wal = trained.with_name(trained.name + ".wal")
    data += wal.read_bytes() if wal.exists() else b""
    values = {v for row in people for v in row[1:] if v and len(v) >= 6}
    leaked = [v for v in values if v.encode() in data]
    assert len(values) > 3000 and leaked == []


def test_quarantined_rows_of_personal_data_are_encrypted_and_replay(ws: Workspace, write) -> None:
    bad = write(
        "users.csv", "user_id,email,birth_year\nu1,ann@example.com,1990\nu2,bob@example.com,19x0\n"
    )
    batch = ws.ingest.files("users", [str(bad)])
    assert (batch.inserted, batch.quarantined) == (1, 1)
    (raw,) = ws.store.rows("SELECT raw FROM quarantine")[0]
    assert raw.startswith(PREFIX) and "bob" not in raw
    shown = ws.ingest.quarantine.rows()
    assert json.loads(shown["raw"][0])["email"] == "bob@example.com"
    # Fixed and replayed: bob arrives, encrypted like everyone.
    fixed = write(
        "fix.jsonl",
        json.dumps({"quarantine_id": int(shown["quarantine_id"][0]),
                    "row": {"user_id": "u2", "email": "bob@example.com", "birth_year": "1980"}})
        + "\n",
    )  # fmt: skip
    (replayed,) = ws.ingest.quarantine.replay(file=str(fixed))
    assert replayed.resolved == 1
    assert plain_pii(ws.store) == [("u1", "ann@example.com"), ("u2", "bob@example.com")]


def test_a_missing_or_wrong_key_is_refused_never_plaintext(
    ws: Workspace, write, no_env_key: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write("users.csv", "user_id,email\nu1,ann@example.com\n")
    ws.ingest.files("users", [str(path)])
    kf = key_file(ws.path)
    assert kf.exists() and oct(kf.stat().st_mode & 0o777) == "0o600"
    moved = kf.with_name("elsewhere.key")
    kf.rename(moved)
    with pytest.raises(VaultKeyError, match=f"{KEY_ENV} is not set and .*shop|store"):
        ws.ingest.files("users", [str(write("more.csv", "user_id,email\nu2,b@x.cn\n"))])
    with pytest.raises(VaultKeyError):
        contacts(ws.store, ["u1"])
    assert ws.store.count("pii") == 1, "nothing written without the key"
    monkeypatch.setenv(KEY_ENV, "dGhpcy1pcy1hLWRpZmZlcmVudC1rZXktMzItYnl0ZXM")
    with pytest.raises(VaultKeyError, match="master key does not open the vault"):
        contacts(ws.store, ["u1"])
    monkeypatch.delenv(KEY_ENV)
    moved.rename(kf)
    assert contacts(ws.store, ["u1"])["email"].tolist() == ["ann@example.com"]


def test_a_store_from_before_the_vault_is_encrypted_when_the_vault_opens(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    with Store.open(db) as store:  # rows as an older jingzhun wrote them: plaintext
        store.con.execute(
            "INSERT INTO pii (user_id, email, phone, updated_at, batch_id) VALUES "
            "('u1', 'Ann@Example.com', '138 0013 8000', now(), 'b'), ('u2', NULL, NULL, now(), 'b')"
        )
        store.con.execute(
            "INSERT INTO suppressions (channel, address_hash, user_id, reason, source, created_at) "
            "VALUES ('email', sha256('ann@example.com'), NULL, 'hard_bounce', 't', now())"
        )
    with Workspace.open(db) as ws:
        assert contacts(ws.store, ["u1"], ["email", "phone"]).iloc[0].tolist() == [
            "u1", "Ann@Example.com", "138 0013 8000"
        ]  # fmt: skip
        # Sealed into one record a person, the plaintext columns emptied.
        assert ws.store.rows(
            "SELECT user_id, sealed IS NOT NULL, email, phone FROM pii ORDER BY 1"
        ) == [("u1", True, None, None), ("u2", True, None, None)]
        assert ws.privacy.find(email="ann@EXAMPLE.com ") == ["u1"]
        assert ws.privacy.find(phone="13800138000") == ["u1"]
        # The suppression list learnt the index audiences match on.
        index = ws.store.scalar("SELECT email_index FROM pii WHERE user_id = 'u1'")
        assert ws.store.scalar("SELECT address_index FROM suppressions") == index


# -- find, export, erase --------------------------------------------------------------------


def test_find_by_email_or_phone_through_the_blind_index(copied: Workspace) -> None:
    user = _busy_user(copied)
    person = contacts(copied.store, [user], ["email", "phone"]).iloc[0]
    assert copied.privacy.find(email=f"  {person['email'].upper()} ") == [user]
    assert user in copied.privacy.find(phone=person["phone"])
    assert copied.privacy.find(email="nobody@example.invalid") == []
    entries = copied.privacy.audit(action="privacy.find")
    assert len(entries) == 3 and "@" not in json.dumps(entries["detail"].tolist())


def test_export_holds_everything_about_the_user(copied: Workspace) -> None:
    user = _busy_user(copied)
    data = copied.privacy.export(user)
    assert data["personal_data"]["email"] == contacts(copied.store, [user])["email"][0]
    tables = data["tables"]
    for table in (
        "users",
        "identities",
        "events",
        "recommendations",
        "scores",
        "segment_members",
        "tags",
        "profiles",
    ):
        assert tables.get(table), table
    anon = set(data["anonymous_ids"])
    assert anon and {e["anonymous_id"] for e in tables["events"]} >= anon
    stored = copied.store.scalar(
        "SELECT count(*) FROM events WHERE user_id = ? OR anonymous_id IN (SELECT unnest(?::VARCHAR[]))",
        [user, list(anon)],
    )
    assert len(tables["events"]) == stored
    json.dumps(data)  # JSON-ready as it is
    (entry,) = copied.privacy.audit(action="privacy.export").to_dict("records")
    assert user not in json.dumps(entry, default=str) and entry["subject"]


def test_erase_removes_the_user_from_every_table(copied: Workspace) -> None:
    ws = copied
    user = _busy_user(ws)
    anon = [
        a for (a,) in ws.store.rows("SELECT anonymous_id FROM identities WHERE user_id = ?", [user])
    ]
    models = [r.model_id for r in ws.models.list()]
    done = ws.privacy.erase(user)
    assert done.rows["events"] > 0 and done.rows["pii"] == 1 and done.anonymous_ids == len(anon)
    for table in user_tables(ws.store):
        left = ws.store.scalar(f"SELECT count(*) FROM {table} WHERE user_id = ?", [user])
        assert left == 0, table
    assert (
        ws.store.scalar(
            "SELECT count(*) FROM events WHERE anonymous_id IN (SELECT unnest(?::VARCHAR[]))",
            [anon],
        )
        == 0
    )
    assert ws.privacy.find(email="x@y.z") == []
    # Models trained before the erasure are listed until retrained.
    assert sorted(done.models_holding_erased) == sorted(models)
    (entry,) = ws.privacy.audit(action="privacy.erase").to_dict("records")
    assert entry["subject"] == done.subject and user not in json.dumps(entry, default=str)
    assert ws.store.rows("SELECT subject FROM erasures") == [(done.subject,)]
    with pytest.raises(NotFoundError, match="no user"):
        ws.privacy.erase(user)
    ws.recs.train("itemknn")
    assert set(ws.privacy.models_holding_erased()) == set(models)  # the new one is clean
    # The store still works for the others.
    ws.profiles.build()
    assert ws.store.scalar("SELECT count(*) FROM profiles WHERE user_id = ?", [user]) == 0


def test_rotate_key_then_reencrypt_resumably(
    store_copy: Path, no_env_key: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The shared test key to a key file: the store's own key from now on.
    key_file(store_copy).write_text(TEST_MASTER_KEY + "\n")
    key_file(store_copy).chmod(0o600)
    with Workspace.open(store_copy) as ws:
        before = dict(ws.store.rows("SELECT user_id, sealed FROM pii"))
        people = plain_pii(ws.store, ["email", "phone", "name", "address"])
        old_key = key_file(store_copy).read_text()
        done = ws.privacy.rotate_key()
        assert done.key_now_in == str(key_file(store_copy)) and done.reencrypted_rows is None
        assert key_file(store_copy).read_text() != old_key
        assert oct(key_file(store_copy).stat().st_mode & 0o777) == "0o600"
        assert plain_pii(ws.store, ["email", "phone", "name", "address"]) == people
        monkeypatch.setenv(KEY_ENV, old_key.strip())
        with pytest.raises(VaultKeyError, match="does not open"):
            vault_for(ws.store)
        monkeypatch.delenv(KEY_ENV)
        # Re-encryption stopped after its first chunk, then run again: every value anew.
        from jingzhun.store import vault as v

        calls = {"n": 0}
        original = ws.store.transaction

        def failing():
            calls["n"] += 1
            if calls["n"] == 3:  # the new key, one chunk, then the second chunk fails
                raise KeyboardInterrupt
            return original()

        with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
            m.setattr(ws.store, "transaction", failing)
            v.reencrypt(ws.store, chunk=500)
        assert ws.privacy.status().reencryption_in_progress
        assert (
            plain_pii(ws.store, ["email", "phone", "name", "address"]) == people
        )  # both keys open
        assert v.reencrypt(ws.store, chunk=500) < len(people)  # went on from where it stopped
        after = dict(ws.store.rows("SELECT user_id, sealed FROM pii"))
        assert not ws.privacy.status().reencryption_in_progress
        assert all(after[u] != before[u] for u in before)
        assert plain_pii(ws.store, ["email", "phone", "name", "address"]) == people


# -- the command line and the API ---------------------------------------------------------


def test_the_command_line(store_copy: Path, tmp_path: Path) -> None:
    with Workspace.open(store_copy, read_only=True) as ws:
        user = _busy_user(ws)
        email = contacts(ws.store, [user])["email"][0]
    found = sp.one_json(
        sp.run(tmp_path, "privacy", "find", "--email", email, "--json", db=store_copy)
    )
    assert found == {"users": [user]}
    out = tmp_path / "export.json"
    ran = sp.run(tmp_path, "privacy", "export", user, "--out", str(out), db=store_copy)
    assert ran.code == 0, ran.stderr
    assert json.loads(out.read_text())["personal_data"]["email"] == email
    erased = sp.one_json(sp.run(tmp_path, "privacy", "erase", user, "--json", db=store_copy))
    assert erased["rows"]["pii"] == 1
    sp.error_line(sp.run(tmp_path, "privacy", "erase", user, db=store_copy), "no user", code=2)
    sp.error_line(sp.run(tmp_path, "privacy", "find", db=store_copy), "--email", code=2)
    log = sp.one_json(sp.run(tmp_path, "audit", "list", "--json", db=store_copy))["entries"]
    assert [e["action"] for e in log] == ["privacy.erase", "privacy.export", "privacy.find"]
    assert all(e["actor"].startswith("cli:") for e in log)
    assert email not in json.dumps(log) and user not in json.dumps(log)


def test_the_api_for_admin_keys_only(store_copy: Path) -> None:
    with Workspace.open(store_copy, read_only=True) as ws:
        user = _busy_user(ws)
        email = contacts(ws.store, [user])["email"][0]
    served = start(store_copy)
    try:
        admin, read = served.client("admin"), served.client("read")
        assert read.get("/v1/privacy/find", params={"email": email}).status_code == 403
        assert read.delete(f"/v1/privacy/users/{user}").status_code == 403
        assert admin.get("/v1/privacy/find", params={"email": email}).json() == {"users": [user]}
        exported = admin.get(f"/v1/privacy/users/{user}")
        assert exported.status_code == 200 and exported.json()["personal_data"]["email"] == email
        gone = admin.delete(f"/v1/privacy/users/{user}")
        assert gone.status_code == 200 and gone.json()["rows"]["pii"] == 1
        again = admin.delete(f"/v1/privacy/users/{user}")
        assert again.status_code == 404 and "no user" in again.text
        assert admin.get(f"/v1/users/{user}").status_code == 404
        log = admin.get("/v1/audit").json()["items"]
        assert [e["action"] for e in log][:3] == ["privacy.erase", "privacy.export", "privacy.find"]
        assert {e["actor"] for e in log} == {"api:test-admin"}
    finally:
        served.stop()


def test_purge_deletes_what_is_older_than_the_window(ws: Workspace, write, tmp_path: Path) -> None:
    from datetime import datetime

    from jingzhun.privacy.subject import purge

    rows = "\n".join(
        f"product_viewed,2025-{m:02d}-15T10:00:00,u{m},p1" for m in range(1, 13)
    )  # one event a month
    ws.ingest.files(
        "events", [str(write("e.csv", "event,ts,user_id,item_id\n" + rows + "\nbad,x,,\n"))]
    )
    ws.profiles.build()
    assert ws.store.count("events") == 12 and ws.store.count("quarantine") == 1
    done = purge(ws.store, 100, actor="test", now=datetime(2025, 12, 31))
    assert done.cutoff == datetime(2025, 9, 22)
    kept = [m for (m,) in ws.store.rows("SELECT month(ts) FROM events ORDER BY 1")]
    assert kept == [10, 11, 12] and done.rows["events"] == 9
    assert ws.store.scalar("SELECT min(day) FROM activity_daily") >= datetime(2025, 9, 22).date()
    assert ws.store.count("quarantine") == 1, "received today: inside the window"
    (entry,) = ws.privacy.audit(action="privacy.purge").to_dict("records")
    assert entry["detail"]["rows"]["events"] == 9
    db = ws.path
    ws.close()
    sp.error_line(sp.run(tmp_path, "privacy", "purge", "--older-than", "0", db=db), "--older-than")


def test_a_persons_quarantined_rows_are_found_by_token_exported_and_erased(
    ws: Workspace, write
) -> None:
    ws.ingest.files(
        "events", [str(write("e.csv", "event,ts,user_id\npage_viewed,2025-03-01T10:00:00,u9\n"))]
    )
    bad = "user_id,email,birth_year\nu9,nine@example.com,19x0\nu8,eight@example.com,19y0\n"
    ws.ingest.files("users", [str(write("u.csv", bad))])
    rows = ws.store.rows("SELECT raw, subjects FROM quarantine ORDER BY quarantine_id")
    assert len(rows) == 2 and all(r.startswith(PREFIX) for r, _ in rows)
    assert [len(s) for _, s in rows] == [1, 1] and "nine@" not in str(rows)
    assert rows[0][1] != ["u9"] and len(rows[0][1][0]) == 32  # a keyed token, not the id
    data = ws.privacy.export("u9")
    assert [q["raw"]["email"] for q in data["quarantine"]] == ["nine@example.com"]
    assert ws.privacy.erase("u9").rows["quarantine"] == 1
    (left,) = ws.store.rows("SELECT raw FROM quarantine")
    assert json.loads(ws.ingest.quarantine.rows()["raw"][0])["user_id"] == "u8" and left


# -- desensitized exports ----------------------------------------------------------------------


def test_desensitized_exports_are_pseudonymous_generalized_and_k_anonymous(
    copied: Workspace, tmp_path: Path
) -> None:
    from jingzhun.profile.desensitized import QUASI
    from jingzhun.store.desensitize import pseudonym_params

    done = copied.profiles.export_desensitized(tmp_path / "p.parquet", k=10)
    rows = pd.read_parquet(tmp_path / "p.parquet")
    real = set(copied.sql("SELECT user_id FROM profiles")["user_id"])
    assert done.rows == len(rows) == len(real) - done.left_out and done.masked > 0
    assert not set(rows["user_id"]) & real and rows["user_id"].str.match(r"^p[0-9a-f]{24}$").all()
    assert rows["user_id"].is_unique
    assert not {"birth_year", "city"} & set(rows.columns) and set(QUASI) <= set(rows.columns)
    sizes = rows.groupby(QUASI, dropna=False).size()
    assert sizes.min() >= 10, sizes[sizes < 10]
    for column in ("first_seen", "last_seen", "created_at"):
        days = pd.to_datetime(rows[column].dropna()).dt.day
        assert (days == 1).all(), column
    # The age band is the birth year's at the profile's as_of (the users table's truth); rows
    # whose band was masked for k have none.
    users = copied.sql("SELECT user_id, birth_year FROM users")
    users["p"] = (
        copied.store.sql(
            "SELECT 'p' || left(sha256(? || sha256(? || user_id)), 24) FROM users",
            pseudonym_params(copied.store),
        )
        .df()
        .iloc[:, 0]
    )
    year = pd.to_datetime(rows["as_of"]).dt.year.iloc[0]
    merged = rows.merge(users, left_on="user_id", right_on="p")
    age = year - merged["birth_year"]
    banded = merged["age_band"].notna()
    assert banded.sum() > 1000
    low = merged.loc[banded, "age_band"].str.extract(r"(\d+)")[0].astype(int)
    assert ((age[banded] >= low) | (merged.loc[banded, "age_band"] == "<18")).all()
    # The same person, the same pseudonym, in a segment export.
    copied.segments.export(tmp_path / "s.csv", desensitize=True)
    members = pd.read_csv(tmp_path / "s.csv")
    assert set(members["user_id"]) <= set(rows["user_id"]) | set(merged["p"])
    assert not set(members["user_id"]) & real
    copied.profiles.export_desensitized(tmp_path / "p.csv")
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(real)


def test_aggregates_suppress_small_groups_and_noise_has_its_stated_scale(
    copied: Workspace, tmp_path: Path
) -> None:
    import numpy as np

    from jingzhun.errors import InputError
    from jingzhun.store.desensitize import laplace

    exact, info = copied.profiles.aggregate(["age_band", "gender", "region"])
    total = copied.store.count("profiles")
    assert exact["users"].sum() == total and info.suppressed_groups == 0
    kept, info = copied.profiles.aggregate(
        ["age_band", "gender", "region"], tmp_path / "a.csv", k=25
    )
    assert kept["users"].min() >= 25 and info.suppressed_groups > 0
    assert kept["users"].sum() + info.suppressed_users == total
    assert pd.read_csv(tmp_path / "a.csv")["users"].min() >= 25
    noisy, info = copied.profiles.aggregate(["gender"], k=25, epsilon=0.5)
    assert info.noise_scale == 2.0 and (noisy["users"] >= 0).all()
    # The noise is Laplace(0, 1/ε): mean 0, mean absolute deviation 1/ε.
    counts = np.full(40_000, 1000)
    drawn = laplace(counts, 0.5, np.random.default_rng(7)) - counts
    assert abs(drawn.mean()) < 0.05 and abs(np.abs(drawn).mean() - 2.0) < 0.06
    assert (laplace(np.zeros(1000, dtype=int), 0.1) >= 0).all()
    for bad in ({"k": 1}, {"k": 0}, {"epsilon": 0.0}, {"epsilon": -1.0}, {"epsilon": float("nan")}):
        with pytest.raises(InputError):
            copied.profiles.aggregate(["gender"], **bad)
    with pytest.raises(InputError, match="not a column to group by"):
        copied.profiles.aggregate(["monetary"])


def test_desensitize_options_on_the_command_line(store_copy: Path, tmp_path: Path) -> None:
    run = lambda *a: sp.run(tmp_path, *a, db=store_copy)  # noqa: E731
    sp.error_line(
        run("profile", "aggregate", "--by", "gender", "--k-anonymity", "1"), "--k-anonymity"
    )
    sp.error_line(run("profile", "aggregate", "--by", "gender", "--epsilon", "0"), "--epsilon")
    sp.error_line(run("profile", "aggregate", "--by", "gender", "--epsilon", "-2"), "--epsilon")
    sp.error_line(run("profile", "aggregate", "--by", "birth_year"), "--by")
    sp.error_line(run("profile", "export", "-o", "x.csv", "--k-anonymity", "5"), "--desensitize")
    done = sp.one_json(
        run(
            "profile",
            "aggregate",
            "--by",
            "age_band,gender",
            "--k-anonymity",
            "10",
            "--epsilon",
            "1",
            "--json",
        )
    )
    assert done["noise_scale"] == 1.0 and all(g["users"] >= 0 for g in done["groups"])
    made = sp.one_json(
        run(
            "profile",
            "export",
            "-o",
            str(tmp_path / "d.parquet"),
            "--desensitize",
            "--k-anonymity",
            "5",
            "--json",
        )
    )
    assert made["rows"] > 2000 and made["k"] == 5


def test_compact_leaves_no_byte_of_an_erased_person_in_the_file(
    ws: Workspace, write, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from jingzhun.errors import ConflictError
    from jingzhun.store.compact import compact

    ids = [f"zz_erased_{i:04d}" for i in range(30)]
    users = "user_id,email\n" + "".join(f"{u},{u}@example.com\n" for u in ids)
    users += "".join(f"zz_kept_{i:04d},k{i}@example.com\n" for i in range(300))
    events = "event,user_id,ts\n" + "".join(
        f"page_viewed,{u},2024-01-0{1 + d}T00:00:00Z\n" for u in ids for d in range(5)
    )
    ws.ingest.files("users", [str(write("users.csv", users))])
    ws.ingest.files("events", [str(write("events.csv", events))])
    for u in ids:
        ws.privacy.erase(u)
    counts = {t: ws.store.count(t) for t in ("users", "pii", "events", "audit_log", "erasures")}
    db = ws.path
    ws.close()
    left = [u for u in ids if u.encode() in db.read_bytes()]
    assert left, "DuckDB keeps deleted rows' bytes: the reason compaction exists"
    # Held open by another process: refused, the store untouched.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(db)!r}); time.sleep(60)",
        ]
    )
    try:
        time.sleep(2)
        size = db.stat().st_size
        with pytest.raises(ConflictError, match="open in another process"):
            compact(db)
        assert db.stat().st_size == size and not db.with_name(db.name + ".compact").exists()
    finally:
        holder.kill()
        holder.wait()
    done = compact(db)
    assert done["bytes_after"] < done["bytes_before"]
    data = db.read_bytes()
    assert [u for u in ids if u.encode() in data] == []
    assert b"zz_kept_0007" in data
    with Workspace.open(db) as again:
        assert {t: again.store.count(t) for t in counts} == counts
        assert again.privacy.find(email="k7@example.com") == ["zz_kept_0007"]  # the vault opens
