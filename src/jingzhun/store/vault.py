"""The PII vault's keys and ciphers (issue 18): AES-256-GCM for personal values, an HMAC blind
index to find them without decrypting.

Keys, from the outside in:

- the **master key** (32 random bytes) is never in the store: it comes from the environment
  variable ``JINGZHUN_MASTER_KEY`` (URL-safe base64), else from the key file beside the store
  (``STORE.key``, mode 0600, made by :func:`create_key_file`);
- the **data key** (32 random bytes) encrypts the values; the store keeps it only wrapped —
  AES-GCM under the master key, in ``store_meta`` — so rotating the master key re-wraps one
  value (:meth:`Vault.rewrap`) instead of re-encrypting every row;
- the **index key** is derived from the data key (HKDF-SHA256, its own label), so the blind
  index is keyed: without the vault, a token says nothing about the value, and the same value
  gets the same token in every row (found by ``privacy find``).

Each value is encrypted with a fresh 96-bit nonce and the user id and field as associated
data, so a ciphertext moved to another user's row or another field does not decrypt. A value
is stored as ``jzv1:`` + URL-safe base64 of nonce ‖ ciphertext ‖ tag.

Nothing here falls back to plaintext: a missing or wrong key is a :class:`VaultKeyError`
naming what to set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jingzhun.errors import InputError

if TYPE_CHECKING:
    from jingzhun.store.store import Store

KEY_ENV = "JINGZHUN_MASTER_KEY"
#: The prefix of a stored ciphertext (the format's version).
PREFIX = "jzv1:"
#: ``store_meta`` keys of the wrapped data key and its id.
META_WRAPPED = "vault_data_key"
META_KEY_ID = "vault_key_id"
_WRAP_AD = b"jingzhun vault data key v1"
_NONCE = 12


class VaultKeyError(InputError):
    """The vault's key is missing or does not open this store's vault."""


def key_file(store_path: str | os.PathLike[str]) -> Path:
    """The key file of a store: beside it, never inside it."""
    p = Path(store_path)
    return p.with_name(p.name + ".key")


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (ValueError, TypeError):
        key = b""
    if len(key) != 32:
        raise VaultKeyError(
            f"{where} does not hold a vault master key (32 bytes, URL-safe base64)",
            hint=f"generate one with: jingzhun privacy keygen (or unset {KEY_ENV} to use "
            "the store's key file)",
        )
    return key


def new_master_key() -> str:
    """A new master key as text (URL-safe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")


def create_key_file(store_path: str | os.PathLike[str]) -> Path:
    """Write a new master key to the store's key file, readable by its owner only (0600);
    an existing key file is never replaced."""
    path = key_file(store_path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise VaultKeyError(
            f"{path} exists already: a store's key is made once",
            hint="keep it; to change keys use jingzhun privacy rotate-key",
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(new_master_key() + "\n")
    return path


def master_key(store_path: str | os.PathLike[str]) -> bytes:
    """The master key: ``$JINGZHUN_MASTER_KEY``, else the store's key file."""
    text = os.environ.get(KEY_ENV)
    if text:
        return _decode_key(text, f"${KEY_ENV}")
    path = key_file(store_path)
    try:
        return _decode_key(path.read_text(encoding="ascii"), str(path))
    except FileNotFoundError:
        raise VaultKeyError(
            f"no vault key for {Path(store_path).name}: ${KEY_ENV} is not set and {path} "
            "does not exist",
            hint=f"set {KEY_ENV} to the store's master key, or put its key file back at {path}",
        ) from None
    except UnicodeDecodeError:
        return _decode_key("", str(path))


def normalized(field: str, value: str) -> str:
    """The form a value is indexed in: an email trimmed and lower-cased, a phone number's
    digits (and a leading +), any other text NFKC-folded with single spaces."""
    text = unicodedata.normalize("NFKC", value).strip()
    if field == "email":
        return text.casefold()
    if field == "phone":
        return ("+" if text.startswith("+") else "") + re.sub(r"\D", "", text)
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class Vault:
    """Encrypts, decrypts and blind-indexes personal values under one data key."""

    data_key: bytes
    key_id: str

    @property
    def _index_key(self) -> bytes:
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"jingzhun blind index v1"
        ).derive(self.data_key)

    @staticmethod
    def _ad(user_id: str, field: str) -> bytes:
        return f"{user_id}\x1f{field}".encode()

    def encrypt(
        self, values: Sequence[str | None], user_ids: Sequence[str], field: str
    ) -> list[str | None]:
        """Each value encrypted for its user and ``field`` (None stays None)."""
        aes = AESGCM(self.data_key)
        out: list[str | None] = []
        for value, user in zip(values, user_ids, strict=True):
            if value is None:
                out.append(None)
                continue
            nonce = secrets.token_bytes(_NONCE)
            sealed = aes.encrypt(nonce, value.encode("utf-8"), self._ad(user, field))
            out.append(PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii"))
        return out

    def decrypt(
        self, tokens: Sequence[str | None], user_ids: Sequence[str], field: str
    ) -> list[str | None]:
        """The values back; a token that does not open (another key, user or field, or
        tampered) is a :class:`VaultKeyError`, never a wrong value."""
        aes = AESGCM(self.data_key)
        out: list[str | None] = []
        for token, user in zip(tokens, user_ids, strict=True):
            if token is None:
                out.append(None)
                continue
            if not token.startswith(PREFIX):
                raise VaultKeyError(
                    f"{field} of user {user[:80]!r} is not a vault value",
                    hint="the store holds plaintext personal data: run jingzhun privacy "
                    "rotate-key --reencrypt to encrypt it",
                )
            raw = base64.urlsafe_b64decode(token[len(PREFIX) :])
            try:
                plain = aes.decrypt(raw[:_NONCE], raw[_NONCE:], self._ad(user, field))
            except InvalidTag:
                raise VaultKeyError(
                    f"{field} of user {user[:80]!r} does not decrypt with this vault's key",
                    hint="the value was written under another key, for another user or field, "
                    "or changed since",
                ) from None
            out.append(plain.decode("utf-8"))
        return out

    def blind(self, values: Sequence[str | None], field: str) -> list[str | None]:
        """Each value's blind-index token: HMAC-SHA256 under the index key of the field and
        the normalized value (the same value, the same token; None stays None)."""
        key = self._index_key
        return [
            None
            if v is None
            else hmac.new(
                key, f"{field}\x1f{normalized(field, v)}".encode(), hashlib.sha256
            ).hexdigest()
            for v in values
        ]

    # -- the wrapped data key ----------------------------------------------------------------

    @staticmethod
    def wrap(data_key: bytes, master: bytes) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = AESGCM(master).encrypt(nonce, data_key, _WRAP_AD)
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    @classmethod
    def unwrap(cls, wrapped: str, master: bytes, key_id: str, where: str) -> Vault:
        raw = base64.urlsafe_b64decode(wrapped)
        try:
            data_key = AESGCM(master).decrypt(raw[:_NONCE], raw[_NONCE:], _WRAP_AD)
        except InvalidTag:
            raise VaultKeyError(
                f"the master key does not open the vault of {where}",
                hint=f"set {KEY_ENV} to the key this store was made with (or restore its "
                "key file); a lost key cannot be recovered",
            ) from None
        return cls(data_key, key_id)

    @classmethod
    def new(cls) -> Vault:
        return cls(secrets.token_bytes(32), "k" + secrets.token_hex(4))


def open_vault(store: Store) -> Vault | None:
    """The store's vault (None when it has none yet), its data key unwrapped with the master
    key — a missing or wrong master key is a :class:`VaultKeyError`."""
    rows = dict(
        store.rows(
            "SELECT key, value FROM store_meta WHERE key IN (?, ?)", [META_WRAPPED, META_KEY_ID]
        )
    )
    if META_WRAPPED not in rows:
        return None
    return Vault.unwrap(
        rows[META_WRAPPED], master_key(store.path), rows.get(META_KEY_ID, "k?"), store.path.name
    )


def init_vault(store: Store) -> Vault:
    """The store's vault, made now (a new data key wrapped under the master key) if it has
    none; the master key must be there (``$JINGZHUN_MASTER_KEY`` or the key file)."""
    found = open_vault(store)
    if found is not None:
        return found
    vault = Vault.new()
    wrapped = Vault.wrap(vault.data_key, master_key(store.path))
    with store.transaction() as con:
        con.execute(
            "INSERT INTO store_meta VALUES (?, ?), (?, ?)",
            [META_WRAPPED, wrapped, META_KEY_ID, vault.key_id],
        )
    return vault


def rewrap(store: Store, new_master: bytes) -> Vault:
    """Wrap the store's data key under ``new_master`` (``privacy rotate-key``): the values
    stay as they are; the old master key no longer opens the vault."""
    vault = open_vault(store)
    if vault is None:
        raise VaultKeyError(
            f"{store.path.name} has no vault yet", hint="it is made at the first users ingest"
        )
    with store.transaction() as con:
        con.execute(
            "UPDATE store_meta SET value = ? WHERE key = ?",
            [Vault.wrap(vault.data_key, new_master), META_WRAPPED],
        )
    return vault


__all__ = [
    "KEY_ENV",
    "PREFIX",
    "Vault",
    "VaultKeyError",
    "create_key_file",
    "init_vault",
    "key_file",
    "master_key",
    "new_master_key",
    "normalized",
    "open_vault",
    "rewrap",
]
