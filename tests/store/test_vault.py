"""The vault's keys and ciphers: values round-trip only for their user and field, under their
key; a missing or wrong key is refused, never read as plaintext; the blind index is keyed and
normalized; the key file is the owner's alone; rotation re-wraps the data key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

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
    rewrap,
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
