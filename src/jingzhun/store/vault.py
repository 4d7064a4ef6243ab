"""The PII vault's keys and ciphers (issue 18): AES-256-GCM for personal values, an HMAC blind
index to find them without decrypting.

Keys, from the outside in:

- the **master key** (32 random bytes) is never in the store: it comes from the environment
  variable ``JINGZHUN_MASTER_KEY`` (URL-safe base64), else from the key file beside the store
  (``STORE.key``, mode 0600, made by :func:`create_key_file`);
- the **data key** (32 random bytes) encrypts the values; the store keeps it only wrapped —
  AES-GCM under the master key, in ``store_meta`` — so rotating the master key re-wraps one
  value (:meth:`Vault.rewrap`) instead of re-encrypting every row;
- the **index key** (32 random bytes, kept wrapped beside the data key) keys the blind index:
  without the vault, a token says nothing about the value, and the same value gets the same
  token in every row (found by ``privacy find``). It also makes the subject tokens that audit
  entries and erasures name users by. Re-encryption (``privacy rotate-key --reencrypt``)
  replaces the data key, not the index key, so tokens stay valid.

Each value is encrypted with a fresh 96-bit nonce and the user id and field as associated
data, so a ciphertext moved to another user's row or another field does not decrypt. A value
is stored as ``jzv1:`` + URL-safe base64 of nonce ‖ ciphertext ‖ tag.

Nothing here falls back to plaintext: a missing or wrong key is a :class:`VaultKeyError`
naming what to set.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import os
import queue
import re
import secrets
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jingzhun.errors import InputError
from jingzhun.store.sql import Sql

if TYPE_CHECKING:
    from jingzhun.store.store import Store

KEY_ENV = "JINGZHUN_MASTER_KEY"
#: The prefix of a stored ciphertext (the format's version).
PREFIX = "jzv1:"
#: ``store_meta`` keys of the wrapped data key and its id.
META_WRAPPED = "vault_data_key"
META_KEY_ID = "vault_key_id"
META_INDEX = "vault_index_key"
#: During ``rotate-key --reencrypt``: the new data key (wrapped) and the last user done.
META_NEXT = "vault_data_key_next"
META_NEXT_ID = "vault_key_id_next"
META_PROGRESS = "vault_reencrypt_after"
#: Set once every pii row is one sealed record a person (see :func:`seal_legacy`).
META_RECORDS = "vault_pii_records"
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
        pending = path.with_name(path.name + ".new")
        if pending.exists():  # a rotation stopped between re-wrapping and renaming
            return _decode_key(pending.read_text(encoding="ascii"), str(pending))
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


def _pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC-SHA256's keyed pads (RFC 2104): the key, as one 64-byte block, XOR ipad and opad.
    Python's index (:func:`_hmac_sha256`) and SQL's (:meth:`Vault.index_keys`) both start here."""
    block = key if len(key) <= 64 else hashlib.sha256(key).digest()
    block = block.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def _hmac_sha256(key: bytes) -> Callable[[bytes], bytes]:
    """HMAC-SHA256 under ``key`` (RFC 2104; equal to ``hmac.digest(key, m, "sha256")``) with
    the keyed inner and outer states hashed once: ``hmac.digest`` sets the key up again on
    every call, which under OpenSSL 3 costs more than hashing a short value (8.5 against 5 µs
    a value, measured; a million users' email and phone are two million calls)."""
    ipad, opad = _pads(key)
    inner = hashlib.sha256(ipad)
    outer = hashlib.sha256(opad)

    def mac(message: bytes) -> bytes:
        i = inner.copy()
        i.update(message)
        o = outer.copy()
        o.update(i.digest())
        return o.digest()

    return mac


@dataclass(frozen=True)
class Vault:
    """Encrypts, decrypts and blind-indexes personal values.

    ``data_key`` encrypts; ``older`` are data keys that may still have written some values
    (a re-encryption under way) and are tried when ``data_key`` does not open a value.
    """

    data_key: bytes = field(repr=False)
    key_id: str
    index_key: bytes = field(repr=False)
    older: tuple[bytes, ...] = field(default=(), repr=False)

    @staticmethod
    def _ad(user_id: str, field: str) -> bytes:
        return f"{user_id}\x1f{field}".encode()

    def encrypt(
        self, values: Sequence[str | None], user_ids: Sequence[str], field: str
    ) -> list[str | None]:
        """Each value encrypted for its user and ``field`` (None stays None).

        One AES-GCM call per value is the floor (each value has its own nonce and associated
        data; nothing vectorizes that), so the loop does nothing else: nonces drawn at once.
        """
        seal = AESGCM(self.data_key).encrypt
        nonces = os.urandom(_NONCE * len(values))
        b64 = base64.urlsafe_b64encode
        out: list[str | None] = []
        for i, (value, user) in enumerate(zip(values, user_ids, strict=True)):
            if value is None:
                out.append(None)
                continue
            nonce = nonces[i * _NONCE : (i + 1) * _NONCE]
            sealed = seal(nonce, value.encode("utf-8"), f"{user}\x1f{field}".encode())
            out.append(PREFIX + b64(nonce + sealed).decode("ascii"))
        return out

    def decrypt(
        self, tokens: Sequence[str | None], user_ids: Sequence[str], field: str
    ) -> list[str | None]:
        """The values back; a token that does not open (another key, user or field, or
        tampered) is a :class:`VaultKeyError`, never a wrong value."""
        ciphers = [AESGCM(k) for k in (self.data_key, *self.older)]
        out: list[str | None] = []
        for token, user in zip(tokens, user_ids, strict=True):
            if token is None:
                out.append(None)
                continue
            out.append(
                self._open(ciphers, token, self._ad(user, field), f"{field} of user {user[:80]!r}")
            )
        return out

    @staticmethod
    def _open(ciphers: list[AESGCM], token: str, ad: bytes, what: str) -> str:
        if not token.startswith(PREFIX):
            raise VaultKeyError(
                f"{what} is not a vault value",
                hint="the store holds plaintext personal data: run jingzhun privacy "
                "rotate-key --reencrypt to encrypt it",
            )
        try:
            raw = base64.urlsafe_b64decode(token[len(PREFIX) :])
        except ValueError:
            raw = b""
        for aes in ciphers:
            try:
                return aes.decrypt(raw[:_NONCE], raw[_NONCE:], ad).decode("utf-8")
            except (InvalidTag, ValueError):
                continue
        raise VaultKeyError(
            f"{what} does not decrypt with this vault's key",
            hint="the value was written under another key, for another user or field, "
            "or changed since",
        )

    def blind(self, values: Sequence[str | None], field: str) -> list[str | None]:
        """Each value's blind-index token: HMAC-SHA256 under the index key of the field and
        the normalized value (the same value, the same token; None, and a value that
        normalizes to nothing, give None)."""
        mac = self._mac
        out: list[str | None] = []
        for v in values:
            n = None if v is None else normalized(field, v)
            out.append(None if not n else mac(f"{field}\x1f{n}".encode()).hex())
        return out

    def seal_people(self, plain: Sequence[bytes], ads: Sequence[bytes]) -> list[bytes]:
        """Each person's record (:func:`person_sql`) sealed for its associated data
        (:func:`person_ad_sql`): nonce ‖ ciphertext ‖ tag.

        One AES-GCM call per person is the floor (each record has its own nonce and associated
        data; no library vectorizes that), so the loop does nothing else: the records and
        their associated data come from SQL as bytes, the nonces are drawn at once, and the
        text around them (JSON, base64) is SQL's. One record a person rather than one value
        a field: 4M calls from Python were most of the vault's cost at ingest.
        """
        seal = AESGCM(self.data_key).encrypt
        drawn = os.urandom(_NONCE * len(plain))
        nonces = [drawn[i : i + _NONCE] for i in range(0, len(drawn), _NONCE)]
        return [n + seal(n, p, a) for n, p, a in zip(nonces, plain, ads, strict=True)]

    def open_people(
        self, sealed: Sequence[bytes], ads: Sequence[bytes], user_ids: Sequence[str]
    ) -> list[bytes]:
        """The records back; one that does not open (another key or user, or tampered) is a
        :class:`VaultKeyError` naming the user, never a wrong value."""
        ciphers = [AESGCM(k).decrypt for k in (self.data_key, *self.older)]
        first, rest = ciphers[0], ciphers[1:]
        out: list[bytes] = []
        for s, a, user in zip(sealed, ads, user_ids, strict=True):
            try:
                out.append(first(s[:_NONCE], s[_NONCE:], a))
                continue
            except (InvalidTag, ValueError):
                pass
            for aes in rest:  # a re-encryption under way: the old key wrote some rows
                try:
                    out.append(aes(s[:_NONCE], s[_NONCE:], a))
                    break
                except (InvalidTag, ValueError):
                    continue
            else:
                raise VaultKeyError(
                    f"the personal data of user {user[:80]!r} does not decrypt with this "
                    "vault's key",
                    hint="it was written under another key or for another user, or changed since",
                )
        return out

    def index_keys(self) -> dict[str, str]:
        """The blind index's HMAC pads (:func:`_pads`) in hex, as the parameters of
        :func:`_token_sql`: SQL computes the same HMAC-SHA256 as :meth:`blind`."""
        ipad, opad = _pads(self.index_key)
        return {"jz_ipad": ipad.hex(), "jz_opad": opad.hex()}

    def subject(self, user_id: str) -> str:
        """The keyed token that audit entries and erasures name a user by: the same user, the
        same token; without the vault it says nothing about who."""
        return self._mac(f"subject\x1f{user_id}".encode()).hex()[:32]

    @functools.cached_property
    def _mac(self) -> Callable[[bytes], bytes]:
        return _hmac_sha256(self.index_key)

    def pseudonym_keys(self) -> tuple[str, str]:
        """Two keys (hex) for the pseudonyms of user ids that desensitized exports (and
        ``[privacy] pseudonymize_ids``) compute in SQL: see
        :func:`jingzhun.store.desensitize.pseudonym_sql`. Derived from the index key, so the
        same id gets the same pseudonym in every export of the store, and none without it."""
        inner = hmac.digest(self.index_key, b"pseudonym\x1finner", "sha256").hex()
        outer = hmac.digest(self.index_key, b"pseudonym\x1fouter", "sha256").hex()
        return inner, outer

    # -- the wrapped keys --------------------------------------------------------------------

    @staticmethod
    def wrap(key: bytes, master: bytes) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = AESGCM(master).encrypt(nonce, key, _WRAP_AD)
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    @staticmethod
    def unwrap(wrapped: str, master: bytes, where: str) -> bytes:
        raw = base64.urlsafe_b64decode(wrapped)
        try:
            return AESGCM(master).decrypt(raw[:_NONCE], raw[_NONCE:], _WRAP_AD)
        except InvalidTag:
            raise VaultKeyError(
                f"the master key does not open the vault of {where}",
                hint=f"set {KEY_ENV} to the key this store was made with (or restore its "
                "key file); a lost key cannot be recovered",
            ) from None

    @classmethod
    def new(cls) -> Vault:
        return cls(secrets.token_bytes(32), "k" + secrets.token_hex(4), secrets.token_bytes(32))


#: The ``store_meta`` rows that are the vault: its wrapped keys and the state of a rotation.
META_KEYS = (
    META_WRAPPED,
    META_KEY_ID,
    META_INDEX,
    META_NEXT,
    META_NEXT_ID,
    META_PROGRESS,
    META_RECORDS,
)


def vault_meta(store: Store) -> dict[str, str]:
    """The store's vault rows of ``store_meta`` (none when it has no vault)."""
    marks = ", ".join("?" * len(META_KEYS))
    return dict(
        store.rows(f"SELECT key, value FROM store_meta WHERE key IN ({marks})", list(META_KEYS))
    )


def open_vault(store: Store) -> Vault | None:
    """The store's vault (None when it has none yet), its keys unwrapped with the master key —
    a missing or wrong master key is a :class:`VaultKeyError`. While a re-encryption is under
    way the vault encrypts with the new data key and still opens values of the old one."""
    meta = vault_meta(store)
    if META_WRAPPED not in meta:
        return None
    master = master_key(store.path)
    where = store.path.name
    try:
        current = Vault.unwrap(meta[META_WRAPPED], master, where)
    except VaultKeyError:
        # A rotation stopped after re-wrapping, before the new key file took the old one's
        # place: the new key is beside it; finish the rotation.
        pending = key_file(store.path).with_name(key_file(store.path).name + ".new")
        if os.environ.get(KEY_ENV) or not pending.exists():
            raise
        master = _decode_key(pending.read_text(encoding="ascii"), str(pending))
        current = Vault.unwrap(meta[META_WRAPPED], master, where)
        os.replace(pending, key_file(store.path))
    index = Vault.unwrap(meta[META_INDEX], master, where)
    if META_NEXT in meta:
        return Vault(
            Vault.unwrap(meta[META_NEXT], master, where),
            meta.get(META_NEXT_ID, "k?"),
            index,
            (current,),
        )
    return Vault(current, meta.get(META_KEY_ID, "k?"), index)


def init_vault(store: Store) -> Vault:
    """The store's vault, made now (new data and index keys wrapped under the master key) if
    it has none; the master key must be there (``$JINGZHUN_MASTER_KEY`` or the key file)."""
    found = open_vault(store)
    if found is not None:
        return found
    vault = Vault.new()
    master = master_key(store.path)
    with store.transaction() as con:
        con.execute(
            "INSERT INTO store_meta VALUES (?, ?), (?, ?), (?, ?)",
            [
                META_WRAPPED,
                Vault.wrap(vault.data_key, master),
                META_KEY_ID,
                vault.key_id,
                META_INDEX,
                Vault.wrap(vault.index_key, master),
            ],
        )
    return vault


def vault_for(store: Store, *, create: bool = False) -> Vault | None:
    """The store's vault; with ``create``, one is made if the store has none — and a key
    file beside the store if no master key is set. Personal data stored before (in plain
    text by a jingzhun without the vault, or a ciphertext a field before migration 015) is
    sealed into one record a person now, once."""
    vault = open_vault(store)
    if vault is None:
        if not create:
            return None
        if not os.environ.get(KEY_ENV) and not key_file(store.path).exists():
            create_key_file(store.path)
        vault = init_vault(store)
        with store.transaction():
            seal_quarantine(store, vault)
    if vault_meta(store).get(META_RECORDS) != "1":
        seal_legacy(store, vault)
        with store.transaction() as con:
            con.execute("DELETE FROM store_meta WHERE key = ?", [META_RECORDS])
            con.execute("INSERT INTO store_meta VALUES (?, '1')", [META_RECORDS])
    return vault


#: The personal fields the vault encrypts, and those it blind-indexes.
SEALED_FIELDS = ("email", "phone", "name", "address")
INDEXED_FIELDS = ("email", "phone")


# -- a person's record: the personal fields sealed together, indexed in SQL ------------------
#
# pii holds one ciphertext a person (``sealed``: nonce ‖ AES-GCM of the fields as one JSON
# object, for the user id), not one a value, and DuckDB computes the blind index: the
# per-value calls from Python cost three times the ingest they encrypted (issue 18's
# benchmark). Text handling stays in SQL (JSON in and out); Python calls the cipher only.


def person_ad_sql(user_id: Sql) -> Sql:
    """The associated data a person's record is sealed for: their id (a record moved to
    another user's row does not open)."""
    return f"encode({user_id} || chr(31) || 'pii')"


def person_sql(alias: Sql) -> Sql:
    """A person's record as the vault seals it: the personal fields of row ``alias`` as one
    JSON object (null for a field not given), UTF-8 bytes."""
    fields = ", ".join(f"{f} := {alias}.{f}" for f in SEALED_FIELDS)
    return f"encode(CAST(to_json(struct_pack({fields})) AS VARCHAR))"


#: What ``str.strip()`` removes from ASCII text: the index normalizes as :func:`normalized`.
_ASCII_SPACE: Sql = "' ' || " + " || ".join(
    f"chr({c})" for c in (9, 10, 11, 12, 13, 28, 29, 30, 31)
)


def _ascii_normalized_sql(field: str, value: Sql) -> Sql:
    """:func:`normalized` for ASCII text, in SQL (NFKC leaves ASCII as it is, and case
    folding is lower-casing there)."""
    text = f"trim({value}, {_ASCII_SPACE})"
    if field == "email":
        return f"lower({text})"
    if field == "phone":
        return (
            f"(CASE WHEN starts_with({text}, '+') THEN '+' ELSE '' END "
            f"|| regexp_replace({text}, '[^0-9]', '', 'g'))"
        )
    raise ValueError(f"not an indexed field: {field}")


def _token_sql(field: str, value: Sql, odd: Sql) -> Sql:
    """:meth:`Vault.blind` of ``value`` in SQL: HMAC-SHA256 (RFC 2104, the key's pads given
    as the parameters ``$jz_ipad`` / ``$jz_opad`` of :meth:`Vault.index_keys`) of the field
    and the normalized value — ``odd`` when the value is not ASCII (normalized in Python);
    NULL for none."""
    norm = f"(CASE WHEN {odd} IS NULL THEN {_ascii_normalized_sql(field, value)} ELSE {odd} END)"
    message = f"encode('{field}' || chr(31) || {norm})"
    return (
        f"CASE WHEN coalesce({norm}, '') = '' THEN NULL ELSE "
        f"sha256(unhex($jz_opad) || unhex(sha256(unhex($jz_ipad) || {message}))) END"
    )


@contextlib.contextmanager
def _indexing(con: duckdb.DuckDBPyConnection, source: Sql, alias: Sql) -> Iterator[tuple[Sql, Sql]]:
    """The select list (``email_index``, ``phone_index``) and joins that blind-index rows
    ``alias`` of the query ``source`` in SQL, while the normalized forms of its values that
    are not ASCII are registered (:func:`normalized` in Python: NFKC and full case folding
    have no SQL form; such values are rare in emails and phone numbers, and found without a
    regex: a text is ASCII when its bytes are as many as its characters)."""
    odd: Sql = " UNION ALL ".join(
        f"SELECT DISTINCT '{f}' AS field, {f} AS value FROM ({source}) "
        f"WHERE strlen({f}) <> length({f})"
        for f in INDEXED_FIELDS
    )
    rows = con.execute(odd).fetchall()
    norms = pa.table(
        {
            "field": pa.array([r[0] for r in rows], pa.string()),
            "value": pa.array([r[1] for r in rows], pa.string()),
            "norm": pa.array([normalized(r[0], r[1]) for r in rows], pa.string()),
        }
    )
    tokens = ", ".join(
        _token_sql(f, f"{alias}.{f}", f"n_{f}.norm") + f" AS {f}_index" for f in INDEXED_FIELDS
    )
    joins = " ".join(
        f"LEFT JOIN _jz_norms n_{f} ON n_{f}.field = '{f}' AND n_{f}.value = {alias}.{f}"
        for f in INDEXED_FIELDS
    )
    con.register("_jz_norms", norms)
    try:
        yield tokens, joins
    finally:
        con.unregister("_jz_norms")


def sealed_people(con: duckdb.DuckDBPyConnection, vault: Vault, source: Sql, target: Sql) -> None:
    """Temporary table ``target`` (``user_id``, ``email_index``, ``phone_index``,
    ``sealed``): each row of the query ``source`` (``user_id`` and the personal fields in
    plain text, one row a user) blind-indexed and sealed as one record.

    One query gives each row's record, associated data and index; Python only calls the
    cipher. The query streams in batches pulled by a second thread, so DuckDB computes the
    next batch's JSON and HMACs (releasing the GIL) while this thread seals the last one:
    the two costs overlap instead of adding up.
    """
    tokens: Sql
    joins: Sql
    with _indexing(con, source, "s") as (tokens, joins):
        reader = con.sql(
            f"SELECT s.user_id, {tokens}, {person_sql('s')} AS plain, "
            f"{person_ad_sql('s.user_id')} AS ad FROM ({source}) s {joins}",
            params=vault.index_keys(),
        ).to_arrow_reader(_SEAL_BATCH)
        batches: queue.Queue[pa.RecordBatch | BaseException | None] = queue.Queue(maxsize=2)

        def pull() -> None:
            try:
                for batch in reader:
                    batches.put(batch)
                batches.put(None)
            except BaseException as exc:  # handed to the sealing thread, raised there
                batches.put(exc)

        puller = threading.Thread(target=pull, name="jingzhun-seal-reader", daemon=True)
        puller.start()
        done: list[pa.RecordBatch] = []
        try:
            while (batch := batches.get()) is not None:
                if isinstance(batch, BaseException):
                    raise batch
                sealed = vault.seal_people(
                    batch.column("plain").to_pylist(), batch.column("ad").to_pylist()
                )
                kept = batch.select(["user_id", *(f"{f}_index" for f in INDEXED_FIELDS)])
                done.append(
                    pa.RecordBatch.from_arrays(
                        [*kept.columns, pa.array(sealed, pa.binary())],
                        names=[*kept.schema.names, "sealed"],
                    )
                )
        finally:
            while puller.is_alive():  # an error here: let the reader finish, then close
                with contextlib.suppress(queue.Empty):
                    batches.get(timeout=0.1)
            puller.join()
    indexes = [(f"{f}_index", pa.string()) for f in INDEXED_FIELDS]
    schema = pa.schema([("user_id", pa.string()), *indexes, ("sealed", pa.binary())])
    table = pa.Table.from_batches(done, schema=schema) if done else schema.empty_table()
    con.register("_jz_sealing", table)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT * FROM _jz_sealing")
    finally:
        con.unregister("_jz_sealing")


#: Rows a batch while sealing (see :func:`sealed_people`).
_SEAL_BATCH = 65_536


def opened_people(
    con: duckdb.DuckDBPyConnection,
    vault: Vault,
    source: Sql,
    target: Sql,
    params: Sequence[object] | None = None,
) -> None:
    """Temporary table ``target`` (``user_id`` and the personal fields in plain text): the
    records of the query ``source`` (``user_id``, ``sealed``; ``params`` its parameters)
    opened. A record that does not open is a :class:`VaultKeyError`."""
    rows = con.sql(
        f"SELECT s.user_id, s.sealed, {person_ad_sql('s.user_id')} AS ad "
        f"FROM ({source}) s WHERE s.sealed IS NOT NULL",
        params=list(params or []),
    ).to_arrow_table()
    users = rows.column("user_id")
    plain = vault.open_people(
        rows.column("sealed").to_pylist(), rows.column("ad").to_pylist(), users.to_pylist()
    )
    fields = ", ".join(
        f"json_extract_string(CAST(decode(plain) AS JSON), '$.{f}') AS {f}" for f in SEALED_FIELDS
    )
    con.register("_jz_opening", pa.table({"user_id": users, "plain": pa.array(plain, pa.binary())}))
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT user_id, {fields} FROM _jz_opening"
        )
    finally:
        con.unregister("_jz_opening")


def texts(values: Iterable[object]) -> list[str | None]:
    """Cells as text or None (pandas gives NaN or None for SQL NULL): what the cipher takes."""
    return [None if v is None or v != v else str(v) for v in values]


def raw_contexts(quarantine_ids: Iterable[object]) -> list[str]:
    """What a quarantined row's raw form is encrypted for: its quarantine id."""
    return [f"quarantine:{i}" for i in quarantine_ids]


def _no_vault(store: Store) -> VaultKeyError:
    return VaultKeyError(
        f"{store.path.name} has no vault yet", hint="it is made at the first users ingest"
    )


#: pii rows encrypted per transaction when sealing or re-encrypting (the ciphertexts of a
#: million users at once overran the store's 1 GB memory limit in the UPDATE).
CHUNK = 50_000


def seal_legacy(store: Store, vault: Vault, *, chunk: int = CHUNK) -> int:
    """Seal into one record a person the pii rows written before it (``sealed`` NULL): values
    in plain text (a store from before the vault) or one ``jzv1:`` ciphertext a field (a
    vault from before migration 015), ``chunk`` users per transaction (an interruption leaves
    the rest for the next time; what is done stays done); their per-field columns emptied and
    their blind index filled. How many rows."""
    fields: Sql = ", ".join(SEALED_FIELDS)
    done = 0
    while True:
        frame = store.sql(
            f"SELECT user_id, {fields} FROM pii WHERE sealed IS NULL ORDER BY user_id LIMIT ?",
            [chunk],
        ).df()
        if frame.empty:
            return done
        users = frame["user_id"].tolist()
        plain = type(frame)(
            {"user_id": users}
            | {f: _opened_or_plain(vault, texts(frame[f]), users, f) for f in SEALED_FIELDS}
        )
        with store.transaction() as con:
            con.register("_jz_legacy", plain)
            try:
                sealed_people(con, vault, "SELECT * FROM _jz_legacy", "_jz_sealed")
                empty = ", ".join(f"{f} = NULL" for f in SEALED_FIELDS)
                con.execute(
                    f"UPDATE pii SET sealed = s.sealed, email_index = s.email_index, "
                    f"phone_index = s.phone_index, {empty} "
                    "FROM _jz_sealed s WHERE pii.user_id = s.user_id"
                )
                # Suppressed addresses get the index audiences match on, while the plaintext
                # is at hand (the list keeps the unkeyed hash of each address).
                con.execute(
                    "UPDATE suppressions SET address_index = s.email_index "
                    "FROM _jz_sealed s JOIN _jz_legacy p USING (user_id) "
                    "WHERE suppressions.address_index IS NULL AND suppressions.channel = 'email' "
                    "AND p.email IS NOT NULL "
                    "AND suppressions.address_hash = sha256(lower(trim(p.email)))"
                )
            finally:
                con.unregister("_jz_legacy")
                con.execute("DROP TABLE IF EXISTS _jz_sealed")
        done += len(frame)


#: Keys of a raw row that hold a person's id: a file's own column names (user_id, visitorid,
#: customer_id …) and a Segment message's (userId, anonymousId, previousId).
_ID_KEY = re.compile(
    r"^(user|anonymous|previous|visitor|customer|member|client|device)[ _-]?id$", re.I
)


def row_ids(raw: str) -> list[str] | None:
    """The ids a quarantined row's raw form names (the text values of its id-like keys, at
    any depth); None when it has no id-like key at all (or is not JSON): then only reading it
    whole says whose it is."""
    import json

    try:
        row = json.loads(raw)
    except (TypeError, ValueError):
        return None
    found: list[str] = []
    keyed = False

    def walk(value: object) -> None:
        nonlocal keyed
        if isinstance(value, dict):
            for k, v in value.items():
                if _ID_KEY.match(str(k)) and not isinstance(v, dict | list):
                    keyed = True
                    if isinstance(v, str | int) and not isinstance(v, bool) and str(v).strip():
                        found.append(str(v))
                else:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(row)
    return sorted(set(found)) if keyed else None


def seal_quarantine(store: Store, vault: Vault) -> int:
    """Encrypt the quarantined raw rows still in plain text, each for its quarantine id (the
    raw form of a users row or a Segment message holds personal data); how many. The caller's
    transaction, if any, holds the update."""
    frame = store.sql(
        "SELECT quarantine_id, raw FROM quarantine "
        "WHERE raw IS NOT NULL AND NOT starts_with(raw, 'jzv1:')"
    ).df()
    if frame.empty:
        return 0
    contexts = raw_contexts(frame["quarantine_id"])
    # A row without an id-like key keeps no tokens (NULL): export and erasure decrypt and
    # search it whole, so an id under an odd column name is not missed. A row whose id keys
    # are empty names nobody ([]).
    frame["subjects"] = [
        None if (ids := row_ids(raw)) is None else [vault.subject(i) for i in ids]
        for raw in frame["raw"]
    ]
    frame["raw"] = vault.encrypt(frame["raw"].tolist(), contexts, "raw")
    store.con.register("_jz_sealed_raw", frame)
    try:
        store.con.execute(
            "UPDATE quarantine SET raw = s.raw, subjects = s.subjects FROM _jz_sealed_raw s "
            "WHERE quarantine.quarantine_id = s.quarantine_id"
        )
    finally:
        store.con.unregister("_jz_sealed_raw")
    return len(frame)


def rewrap(store: Store, new_master: bytes) -> Vault:
    """Wrap the store's keys under ``new_master`` (``privacy rotate-key``): the values stay as
    they are; the old master key no longer opens the vault."""
    vault = open_vault(store)
    if vault is None:
        raise _no_vault(store)
    meta = vault_meta(store)
    master = master_key(store.path)
    with store.transaction() as con:
        for key in (META_WRAPPED, META_INDEX, META_NEXT):
            if key in meta:
                plain = Vault.unwrap(meta[key], master, store.path.name)
                con.execute(
                    "UPDATE store_meta SET value = ? WHERE key = ?",
                    [Vault.wrap(plain, new_master), key],
                )
    return vault


NEW_KEY_ENV = "JINGZHUN_NEW_MASTER_KEY"


def rotate_master(store: Store) -> str:
    """Put the store's keys under a new master key (``privacy rotate-key``); where the new key
    is. With ``$JINGZHUN_MASTER_KEY`` in use the new key comes from
    ``$JINGZHUN_NEW_MASTER_KEY`` (set it first: a key printed once is a key lost); with the
    key file, a new one is made. The file is replaced only after the store is re-wrapped, and
    the new key is written first beside it (``STORE.key.new``), so an interruption leaves a
    key that opens the vault."""
    if open_vault(store) is None:
        raise _no_vault(store)
    if os.environ.get(KEY_ENV):
        text = os.environ.get(NEW_KEY_ENV, "")
        if not text:
            raise VaultKeyError(
                f"the master key comes from ${KEY_ENV}: set ${NEW_KEY_ENV} to the new key first",
                hint=f"make one with: jingzhun privacy keygen; then set {KEY_ENV} to it after",
            )
        rewrap(store, _decode_key(text, f"${NEW_KEY_ENV}"))
        return f"${NEW_KEY_ENV}"
    path = key_file(store.path)
    pending = path.with_name(path.name + ".new")
    pending.unlink(missing_ok=True)
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    text = new_master_key()
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    rewrap(store, _decode_key(text, str(pending)))
    os.replace(pending, path)
    return str(path)


def reencrypt(store: Store, *, chunk: int = CHUNK) -> int:
    """Encrypt every personal value under a new data key (``rotate-key --reencrypt``); how
    many pii rows. Resumable: the new key is recorded first and each chunk of users commits
    with the last id done, so running it again after an interruption goes on from there
    (values of both keys open meanwhile). The index key stays, so blind-index and subject
    tokens keep their meaning."""
    if vault_for(store) is None:  # and rows from before the one-record format sealed first
        raise _no_vault(store)
    meta = vault_meta(store)
    master = master_key(store.path)
    if META_NEXT not in meta:
        fresh = Vault.new()
        with store.transaction() as con:
            con.execute(
                "INSERT INTO store_meta VALUES (?, ?), (?, ?), (?, '')",
                [
                    META_NEXT,
                    Vault.wrap(fresh.data_key, master),
                    META_NEXT_ID,
                    fresh.key_id,
                    META_PROGRESS,
                ],
            )
    vault = open_vault(store)
    assert vault is not None
    done = 0
    after = vault_meta(store).get(META_PROGRESS, "")
    while True:
        last = store.scalar(
            "SELECT max(user_id) FROM (SELECT user_id FROM pii WHERE user_id > ? "
            "ORDER BY user_id LIMIT ?)",
            [after, chunk],
        )
        if last is None:
            break
        chunk_sql: Sql = "SELECT * FROM pii WHERE user_id > ? AND user_id <= ?"
        with store.transaction() as con:
            opened_people(con, vault, chunk_sql, "_jz_reenc_plain", [after, last])
            sealed_people(con, vault, "SELECT * FROM _jz_reenc_plain", "_jz_reenc")
            con.execute(
                "UPDATE pii SET sealed = r.sealed FROM _jz_reenc r WHERE pii.user_id = r.user_id"
            )
            done += con.execute("SELECT count(*) FROM _jz_reenc").fetchone()[0]
            con.execute("UPDATE store_meta SET value = ? WHERE key = ?", [last, META_PROGRESS])
            con.execute("DROP TABLE _jz_reenc_plain")
            con.execute("DROP TABLE _jz_reenc")
        after = last
    raw = store.sql(
        "SELECT quarantine_id, raw FROM quarantine WHERE starts_with(raw, ?)", [PREFIX]
    ).df()
    contexts = raw_contexts(raw["quarantine_id"])
    raw["raw"] = vault.encrypt(vault.decrypt(raw["raw"].tolist(), contexts, "raw"), contexts, "raw")
    with store.transaction() as con:
        if not raw.empty:
            con.register("_jz_reenc", raw)
            try:
                con.execute(
                    "UPDATE quarantine SET raw = r.raw FROM _jz_reenc r "
                    "WHERE quarantine.quarantine_id = r.quarantine_id"
                )
            finally:
                con.unregister("_jz_reenc")
        latest = vault_meta(store)
        con.execute(
            "UPDATE store_meta SET value = ? WHERE key = ?", [latest[META_NEXT], META_WRAPPED]
        )
        con.execute(
            "UPDATE store_meta SET value = ? WHERE key = ?", [latest[META_NEXT_ID], META_KEY_ID]
        )
        con.execute(
            "DELETE FROM store_meta WHERE key IN (?, ?, ?)",
            [META_NEXT, META_NEXT_ID, META_PROGRESS],
        )
    store.con.execute("CHECKPOINT")
    return done


def _opened_or_plain(
    vault: Vault, tokens: list[str | None], users: list[str], field: str
) -> list[str | None]:
    """Values decrypted; a plaintext value (stored before the vault) as it is."""
    sealed = [t if t is not None and t.startswith(PREFIX) else None for t in tokens]
    opened = vault.decrypt(sealed, users, field)
    return [o if s is not None else t for o, s, t in zip(opened, sealed, tokens, strict=True)]


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
    "opened_people",
    "raw_contexts",
    "reencrypt",
    "rewrap",
    "rotate_master",
    "seal_legacy",
    "seal_quarantine",
    "sealed_people",
    "texts",
    "vault_for",
]
