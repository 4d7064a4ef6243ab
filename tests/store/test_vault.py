"""The vault's keys and ciphers: values round-trip only for their user and field, under their
key; a missing or wrong key is refused, never read as plaintext; the blind index is keyed and
normalized; the key file is the owner's alone; rotation re-wraps the data key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jingzhun.store import Store
from jingzhun.store.vault import (
    KEY_ENV,
    PREFIX,
    Vault,
    VaultKeyError,
    create_key_file,
    init_vault,
    key_file,
    master_key,
    new_master_key,
    normalized,
    open_vault,
    opened_people,
    rewrap,
    sealed_people,
)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.delenv(KEY_ENV, raising=False)
    s = Store.open(tmp_path / "s.duckdb")
    yield s
    s.close()


def test_values_round_trip_for_their_user_and_field_only() -> None:
    v = Vault.new()
    values = ["alice@example.com", None, "张三", "x" * 10_000, "'; DROP TABLE pii; --"]
    users = ["u1", "u2", "u3", "u4", "u5"]
    sealed = v.encrypt(values, users, "email")
    assert sealed[1] is None and all(s.startswith(PREFIX) for s in sealed if s)
    assert not any(val in (s or "") for val, s in zip(values, sealed, strict=True) if val)
    assert v.decrypt(sealed, users, "email") == values
    again = v.encrypt(values, users, "email")
    assert all(a != b for a, b in zip(sealed, again, strict=True) if a), "a fresh nonce every time"
    with pytest.raises(VaultKeyError, match="of user 'u9' does not decrypt"):
        v.decrypt([sealed[0]], ["u9"], "email")  # moved to another user's row
    with pytest.raises(VaultKeyError, match="phone of user 'u1' does not decrypt"):
        v.decrypt([sealed[0]], ["u1"], "phone")  # or another field
    with pytest.raises(VaultKeyError, match="does not decrypt"):
        Vault.new().decrypt([sealed[0]], ["u1"], "email")  # another key
    tampered = sealed[0][:-4] + ("AAAA" if not sealed[0].endswith("AAAA") else "BBBB")
    with pytest.raises(VaultKeyError):
        v.decrypt([tampered], ["u1"], "email")
    with pytest.raises(VaultKeyError, match="not a vault value"):
        v.decrypt(["alice@example.com"], ["u1"], "email")


def test_the_blind_index_is_keyed_and_normalized() -> None:
    v = Vault.new()
    a, b, c, d = v.blind([" Alice@Example.COM ", "alice@example.com", "bob@example.com", None],
                         "email")  # fmt: skip
    assert a == b != c and d is None and len(a) == 64
    assert Vault.new().blind(["alice@example.com"], "email")[0] != a, "keyed: another vault"
    assert v.blind(["alice@example.com"], "phone")[0] != a, "per field"
    p1, p2 = v.blind(["+86 138-0013-8000", "+8613800138000"], "phone")
    assert p1 == p2
    assert normalized("name", "  Ｚhang   San ") == "zhang san"  # NFKC, case, spaces


def test_a_store_s_vault_opens_only_with_its_master_key(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(VaultKeyError, match=f"{KEY_ENV} is not set and .*s.duckdb.key"):
        init_vault(store)
    path = create_key_file(store.path)
    assert path == key_file(store.path) and path.parent == store.path.parent
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(VaultKeyError, match="exists already"):
        create_key_file(store.path)
    assert open_vault(store) is None, "no vault until one is made"
    vault = init_vault(store)
    sealed = vault.encrypt(["alice@example.com"], ["u1"], "email")
    assert init_vault(store).data_key == vault.data_key, "made once"
    meta = dict(store.rows("SELECT key, value FROM store_meta"))
    assert vault.data_key.hex() not in str(meta), "the data key is kept wrapped only"

    # $JINGZHUN_MASTER_KEY wins over the file: another key does not open the vault.
    monkeypatch.setenv(KEY_ENV, new_master_key())
    with pytest.raises(VaultKeyError, match=r"master key does not open the vault of s\.duckdb"):
        open_vault(store)
    monkeypatch.setenv(KEY_ENV, "not base64 at all!")
    with pytest.raises(VaultKeyError, match=f"\\${KEY_ENV} does not hold a vault master key"):
        open_vault(store)
    monkeypatch.delenv(KEY_ENV)

    # Rotation: the data key is re-wrapped; the values stay readable with the new key only.
    old = master_key(store.path)
    new = new_master_key()
    monkeypatch.setenv(KEY_ENV, new)
    with pytest.raises(VaultKeyError):
        open_vault(store)
    monkeypatch.delenv(KEY_ENV)
    rewrap(store, _decode(new))
    with pytest.raises(VaultKeyError):
        open_vault(store)  # the key file holds the old key
    monkeypatch.setenv(KEY_ENV, new)
    assert open_vault(store).decrypt(sealed, ["u1"], "email") == ["alice@example.com"]
    assert old != _decode(new)


def _decode(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_blind_index_is_rfc_2104_hmac_sha256() -> None:
    """blind() keys its HMAC once per call: the tokens are exactly hmac.digest's."""
    import hashlib
    import hmac
    import os

    from jingzhun.store.vault import _hmac_sha256

    for key in (os.urandom(32), os.urandom(64), os.urandom(100), b""):
        mac = _hmac_sha256(key)
        for message in (b"", b"email\x1fann@example.com", os.urandom(1000)):
            assert mac(message) == hmac.digest(key, message, hashlib.sha256)


# -- one sealed record a person, indexed in SQL ----------------------------------------------

_HOSTILE = [
    " Alice@Example.COM ",
    "\t\x0bBob@x.cn\x1f",
    "Ｚhang@例子.中国",
    "ß@straße.de",
    "İstanbul@x.tr",
    "\u00a0nbsp@x.com\u2003",
    "",
    "  ",
    "+",
    "+86 138-0013-8000",
    "١٢٣ ٤٥٦",
    "'; DROP TABLE pii; --",
    'a\\b"c\n{"email": "forged"}',
    "ctl\x01\x7f@x",
    "x" * 10_000,
    None,
]


def _people(con: duckdb.DuckDBPyConnection, emails: list, phones: list) -> None:
    n = len(emails)
    con.register(
        "people",
        pa.table(
            {
                "user_id": [f"u{i}" for i in range(n)],
                "email": pa.array(emails, pa.string()),
                "phone": pa.array(phones, pa.string()),
                "name": pa.array(list(reversed(emails)), pa.string()),
                "address": pa.array([f"地址 {i}" if i % 3 else None for i in range(n)]),
            }
        ),
    )


def test_a_person_s_record_round_trips_for_that_person_only() -> None:
    v, con = Vault.new(), duckdb.connect()
    _people(con, _HOSTILE, list(reversed(_HOSTILE)))
    sealed_people(con, v, "SELECT * FROM people", "sealed")
    blobs = con.execute("SELECT sealed FROM sealed").fetchall()
    assert not any(b"Alice" in b or b"DROP" in b for (b,) in blobs), "ciphertext, not text"
    opened_people(con, v, "SELECT user_id, sealed FROM sealed", "opened")
    fields = "user_id, email, phone, name, address"
    assert sorted(con.execute(f"SELECT {fields} FROM opened").fetchall()) == sorted(
        con.execute(f"SELECT {fields} FROM people").fetchall()
    )
    # Sealed again: fresh nonces, other bytes; moved to another user's row: refused.
    sealed_people(con, v, "SELECT * FROM people", "again")
    assert con.execute(
        "SELECT count(*) FROM sealed s JOIN again a USING (user_id) WHERE s.sealed = a.sealed"
    ).fetchall() == [(0,)]
    with pytest.raises(VaultKeyError, match="of user 'u1' does not decrypt"):
        opened_people(
            con, v, "SELECT 'u1' AS user_id, sealed FROM sealed WHERE user_id = 'u0'", "x"
        )
    with pytest.raises(VaultKeyError, match="does not decrypt"):
        opened_people(con, Vault.new(), "SELECT user_id, sealed FROM sealed", "x")


def test_sql_computes_the_same_blind_index_as_the_vault() -> None:
    v, con = Vault.new(), duckdb.connect()
    _people(con, _HOSTILE, list(reversed(_HOSTILE)))
    sealed_people(con, v, "SELECT * FROM people", "ix")
    got = {
        u: (e, p)
        for u, e, p in con.execute("SELECT user_id, email_index, phone_index FROM ix").fetchall()
    }
    emails, phones = v.blind(_HOSTILE, "email"), v.blind(list(reversed(_HOSTILE)), "phone")
    assert got == {f"u{i}": (emails[i], phones[i]) for i in range(len(_HOSTILE))}
    assert got["u0"][0] == v.blind(["alice@example.com"], "email")[0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=30)), min_size=1, max_size=20))
def test_sql_and_vault_blind_index_agree_on_any_text(values: list[str | None]) -> None:
    values = [None if v is None else v.replace("\x00", "") for v in values]
    v, con = Vault.new(), duckdb.connect()
    _people(con, values, values)
    sealed_people(con, v, "SELECT * FROM people", "ix")
    rows = con.execute("SELECT email_index, phone_index FROM ix ORDER BY user_id").fetchall()
    order = sorted(range(len(values)), key=lambda i: f"u{i}")
    assert rows == [
        (v.blind([values[i]], "email")[0], v.blind([values[i]], "phone")[0]) for i in order
    ]
