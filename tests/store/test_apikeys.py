"""API keys: made, listed, revoked, verified; stored as a hash only (issue 15).

Every test works on a real DuckDB file in a temp folder.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jingzhun.errors import ConflictError, InputError, NotFoundError
from jingzhun.store import Store, apikeys
from jingzhun.store.store import migrations

KEY_FORMAT = re.compile(r"jz_(ingest|read|admin)_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store.open(db_path) as s:
        yield s


def _secret(key: str) -> str:
    return key.split("_", 3)[3]


# -- schema ----------------------------------------------------------------------------------------


def test_migration_008_makes_the_api_keys_table(store: Store) -> None:
    assert migrations()[7].version == 8 and migrations()[7].name == "api_keys"
    assert store.columns("api_keys") == {
        "key_id": "VARCHAR",
        "name": "VARCHAR",
        "scope": "VARCHAR",
        "key_hash": "VARCHAR",
        "created_at": "TIMESTAMP",
        "revoked_at": "TIMESTAMP",
        "last_used_at": "TIMESTAMP",
    }
    assert (8, "api_keys") in store.rows("SELECT version, name FROM schema_version")


# -- create, list, revoke, verify ------------------------------------------------------------------


def test_round_trip(store: Store) -> None:
    key, plaintext = apikeys.create(store, "shop-web", "ingest")
    assert KEY_FORMAT.fullmatch(plaintext), plaintext
    assert plaintext.startswith(f"jz_ingest_{key.key_id}_")
    assert (key.name, key.scope, key.active, key.last_used_at) == ("shop-web", "ingest", True, None)

    assert apikeys.list_keys(store) == [key]
    assert apikeys.verify(store, plaintext) == key

    revoked = apikeys.revoke(store, "shop-web")
    assert revoked.key_id == key.key_id and not revoked.active
    assert revoked.revoked_at is not None and revoked.revoked_at >= key.created_at
    assert apikeys.verify(store, plaintext) is None
    assert apikeys.list_keys(store) == [revoked]
    assert apikeys.list_keys(store, include_revoked=False) == []


def test_to_dict_holds_no_secret_and_no_hash(store: Store) -> None:
    key, plaintext = apikeys.create(store, "ci", "read")
    d = key.to_dict()
    assert set(d) == {
        "key_id",
        "name",
        "scope",
        "active",
        "created_at",
        "revoked_at",
        "last_used_at",
    }
    assert _secret(plaintext) not in str(d)
    assert hashlib.sha256(plaintext.encode()).hexdigest() not in str(d)


def test_only_the_hash_is_stored(db_path: Path) -> None:
    with Store.open(db_path) as store:
        made = [apikeys.create(store, f"k{i}", scope) for i, scope in enumerate(apikeys.SCOPES)]
        apikeys.revoke(store, "k0")
    # The file's bytes after close (checkpointed, no WAL left): no secret, no whole key.
    assert not db_path.with_name(db_path.name + ".wal").exists()
    raw = db_path.read_bytes()
    for _, plaintext in made:
        assert _secret(plaintext).encode() not in raw
        assert plaintext.encode() not in raw
    # What the table does hold: the hex SHA-256 of each whole key, by its id.
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        rows = dict(con.execute("SELECT key_id, key_hash FROM api_keys").fetchall())
        text = " ".join(str(v) for r in con.execute("SELECT * FROM api_keys").fetchall() for v in r)
    finally:
        con.close()
    for key, plaintext in made:
        assert rows[key.key_id] == hashlib.sha256(plaintext.encode()).hexdigest()
        assert _secret(plaintext) not in text
    # And the keys still verify from the hash alone, on a read-only connection.
    with Store.open(db_path, read_only=True) as store:
        assert apikeys.verify(store, made[0][1]) is None  # revoked
        assert [apikeys.verify(store, p).name for _, p in made[1:]] == ["k1", "k2"]


def test_verify_only_reads(db_path: Path) -> None:
    """The server's readers are read-only connections: verify must work on one."""
    with Store.open(db_path) as store:
        _, plaintext = apikeys.create(store, "ci", "admin")
    with Store.open(db_path, read_only=True) as store:
        assert apikeys.verify(store, plaintext).name == "ci"
        assert apikeys.list_keys(store)[0].last_used_at is None


def test_each_key_gets_its_own_id_and_secret(store: Store) -> None:
    made = [apikeys.create(store, f"k{i}", "read") for i in range(30)]
    assert len({k.key_id for k, _ in made}) == 30
    assert len({_secret(p) for _, p in made}) == 30
    assert [k.name for k in apikeys.list_keys(store)] == [f"k{i}" for i in range(30)]


# -- what verify refuses ---------------------------------------------------------------------------


@pytest.fixture
def two_keys(store: Store) -> tuple[Store, str, str]:
    _, a = apikeys.create(store, "a", "read")
    _, b = apikeys.create(store, "b", "ingest")
    return store, a, b


def _with(
    key: str, *, scope: str | None = None, key_id: str | None = None, secret: str = ""
) -> str:
    jz, old_scope, old_id, old_secret = key.split("_", 3)
    return f"{jz}_{scope or old_scope}_{key_id or old_id}_{secret or old_secret}"


def test_verify_refuses_what_is_not_a_key_in_use(two_keys: tuple[Store, str, str]) -> None:
    store, a, b = two_keys
    a_id, b_id = a.split("_")[2], b.split("_")[2]
    flipped = _secret(a)[:-1] + ("A" if _secret(a)[-1] != "A" else "B")
    refused = {
        "wrong secret": _with(a, secret=flipped),
        "other key's secret": _with(a, secret=_secret(b)),
        "other key's id": _with(a, key_id=b_id),
        "other scope in the key": _with(a, scope="admin"),
        "unknown id": _with(a, key_id="00000000" if a_id != "00000000" else "11111111"),
        "id in capitals": _with(a, key_id=a_id.upper()) if a_id.upper() != a_id else "x",
        "empty": "",
        "prefix only": "jz_read_",
        "no secret": f"jz_read_{a_id}_",
        "secret cut": a[:-1],
        "secret longer": a + "x",
        "trailing newline": a + "\n",
        "leading space": " " + a,
        "bearer": "Bearer " + a,
        "garbage 10 KB": "x" * 10_000,
        "key repeated to 10 KB": (a * 200)[:10_000],
        "non-ASCII": a[:-1] + "é",
        "CJK": "密钥" * 20,
        "NUL": a[:-1] + "\x00",
        "NUL inside": a.replace("_", "\x00", 1),
        "lone surrogate": a[:-1] + "\udcff",
        "fullwidth digits": a.replace(a_id, "".join(chr(ord(c) + 0xFEE0) for c in a_id)),
    }
    for what, value in refused.items():
        assert apikeys.verify(store, value) is None, what
    for value in (None, 42, b"jz", a.encode(), [a]):
        assert apikeys.verify(store, value) is None, repr(value)
    # Neither key was harmed by the attempts.
    assert apikeys.verify(store, a).name == "a" and apikeys.verify(store, b).name == "b"


@pytest.fixture(scope="module")
def keyed_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, str]]:
    with Store.open(tmp_path_factory.mktemp("apikeys") / "store.duckdb") as store:
        yield store, apikeys.create(store, "ci", "read")[1]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="jz_readmingst0123456789abcdef-", max_size=80)))
def test_verify_never_raises(keyed_store: tuple[Store, str], value: str) -> None:
    store, plaintext = keyed_store
    assert (apikeys.verify(store, value) is not None) == (value == plaintext)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 61), st.characters())
def test_verify_refuses_any_one_changed_character(
    keyed_store: tuple[Store, str], at: int, char: str
) -> None:
    store, plaintext = keyed_store
    at %= len(plaintext)
    changed = plaintext[:at] + char + plaintext[at + 1 :]
    assert (apikeys.verify(store, changed) is not None) == (changed == plaintext)


# -- names and scopes ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "x" * 64, "shop-web_1.2", "A.B-C_d", "0"])
def test_good_names(store: Store, name: str) -> None:
    assert apikeys.create(store, name, "read")[0].name == name


@pytest.mark.parametrize(
    "name",
    ["", "a b", "x" * 65, "名字", "a/b", "a\x00b", "a\nb", "a'b", "%", "é", None, 5],
    ids=repr,
)
def test_bad_names_are_refused_naming_name(store: Store, name: object) -> None:
    with pytest.raises(InputError) as caught:
        apikeys.create(store, name, "read")  # type: ignore[arg-type]
    err = caught.value
    assert err.param == "name" and str(err).startswith("name ")
    assert "1 to 64" in str(err) and "\n" not in str(err) and len(str(err)) < 200
    assert store.count("api_keys") == 0


@pytest.mark.parametrize("scope", ["", "Admin", "write", "ingest,read", "read ", None])
def test_bad_scopes_are_refused_naming_scope(store: Store, scope: object) -> None:
    with pytest.raises(InputError) as caught:
        apikeys.create(store, "ci", scope)  # type: ignore[arg-type]
    err = caught.value
    assert err.param == "scope" and str(err).startswith("scope ")
    assert all(s in str(err) for s in apikeys.SCOPES)
    assert store.count("api_keys") == 0


def test_a_name_in_use_is_a_conflict_until_revoked(store: Store) -> None:
    first, _ = apikeys.create(store, "ci", "read")
    with pytest.raises(ConflictError) as caught:
        apikeys.create(store, "ci", "admin")
    assert caught.value.param == "name" and "jingzhun apikey revoke ci" in str(caught.value)
    assert store.count("api_keys") == 1
    apikeys.revoke(store, "ci")
    second, plaintext = apikeys.create(store, "ci", "admin")
    assert second.key_id != first.key_id
    assert apikeys.verify(store, plaintext) == second
    assert [k.active for k in apikeys.list_keys(store)] == [False, True]
    # Revoke finds the one in use; the old one stays as it was.
    assert apikeys.revoke(store, "ci").key_id == second.key_id
    with pytest.raises(NotFoundError):
        apikeys.revoke(store, "ci")


@pytest.mark.parametrize("name", ["nobody", "", "x" * 10_000, "a'; DROP TABLE api_keys; --"])
def test_revoking_a_name_not_in_use_names_it_and_the_list_command(store: Store, name: str) -> None:
    apikeys.create(store, "ci", "read")
    with pytest.raises(NotFoundError) as caught:
        apikeys.revoke(store, name)
    message = str(caught.value)
    assert repr(name)[:15] in message and "jingzhun apikey list" in message
    assert len(message) < 200
    assert [k.active for k in apikeys.list_keys(store)] == [True]


# -- scopes ----------------------------------------------------------------------------------------


def test_scopes_are_not_a_ladder_but_admin_may_do_everything() -> None:
    table = {(k, n): apikeys.allows(k, n) for k in apikeys.SCOPES for n in apikeys.SCOPES}
    assert table == {
        ("ingest", "ingest"): True,
        ("ingest", "read"): False,
        ("ingest", "admin"): False,
        ("read", "ingest"): False,
        ("read", "read"): True,
        ("read", "admin"): False,
        ("admin", "ingest"): True,
        ("admin", "read"): True,
        ("admin", "admin"): True,
    }
    with pytest.raises(ValueError, match="needed scope"):
        apikeys.allows("admin", "write")


# -- touch -----------------------------------------------------------------------------------------


def test_touch_writes_each_key_at_most_once_a_minute(store: Store) -> None:
    a, _ = apikeys.create(store, "a", "read")
    b, _ = apikeys.create(store, "b", "read")
    t0 = a.created_at + timedelta(seconds=5)
    assert apikeys.touch(store, [a.key_id, a.key_id, "nope"], at=t0) == 1
    assert apikeys.touch(store, [a.key_id, b.key_id], at=t0 + timedelta(seconds=30)) == 1
    used = {k.name: k.last_used_at for k in apikeys.list_keys(store)}
    assert used == {"a": t0, "b": t0 + timedelta(seconds=30)}
    assert apikeys.touch(store, [a.key_id], at=t0 + timedelta(seconds=59)) == 0
    assert apikeys.touch(store, [a.key_id], at=t0 + timedelta(seconds=60)) == 1
    assert apikeys.touch(store, []) == 0
    assert apikeys.list_keys(store)[0].last_used_at == t0 + timedelta(seconds=60)
    assert apikeys.list_keys(store)[0].to_dict()["last_used_at"] == str(t0 + timedelta(seconds=60))
