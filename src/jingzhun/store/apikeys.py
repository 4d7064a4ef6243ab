"""API keys for the server: made, listed, revoked and verified here, stored hashed.

A key reads ``jz_<scope>_<key_id>_<secret>``: ``key_id`` is 8 hex characters, public, and
finds the key's row; ``secret`` is 32 random bytes, URL-safe base64 (43 characters). The
store keeps only the hex SHA-256 of the whole key (``api_keys.key_hash``), so the plaintext is
shown once, when the key is made, and never again. A fast hash is enough because the secret
is random, not chosen by a person (see ``migrations/008_api_keys.sql``).

Scopes are not a ladder: an ``ingest`` key may only send events, a ``read`` key may only
read, and an ``admin`` key may do everything (:func:`allows`).

:func:`verify` only reads, so the server's read-only connections can check keys; the
server's writer records use with :func:`touch`, at most once a minute per key.

Examples
--------
>>> key, plaintext = create(store, "shop-web", "ingest")               # doctest: +SKIP
>>> plaintext                                                          # doctest: +SKIP
'jz_ingest_3f9a0c1e_Vb1…'
>>> verify(store, plaintext).name                                      # doctest: +SKIP
'shop-web'
>>> allows(key.scope, "read")                                          # doctest: +SKIP
False
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jingzhun.checks import shown
from jingzhun.contracts.time import utcnow
from jingzhun.errors import ConflictError, InputError, NotFoundError
from jingzhun.store.tables import API_KEYS

if TYPE_CHECKING:
    from jingzhun.store.store import Store

__all__ = [
    "SCOPES",
    "ApiKey",
    "allows",
    "create",
    "list_keys",
    "revoke",
    "touch",
    "verify",
]

#: What a key may do: ``ingest`` send events, ``read`` read, ``admin`` everything.
SCOPES: tuple[str, ...] = ("ingest", "read", "admin")

_SCOPE_WORDS = "ingest (send events only), read (read only) or admin (everything)"

#: A key's name: ASCII only, so it prints, logs and labels metrics as written.
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NAME_RULE = "use 1 to 64 characters: letters a-z A-Z, digits, '-', '_' or '.'"

#: ``secrets.token_urlsafe(32)``: 32 bytes in unpadded URL-safe base64 are 43 characters.
_SECRET_BYTES = 32
_KEY = re.compile(r"jz_(ingest|read|admin)_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
#: No well-formed key is longer; anything longer is refused before the pattern sees it.
_KEY_MAX_CHARS = len("jz_ingest_") + 8 + 1 + 43

#: How stale ``last_used_at`` may get: :func:`touch` writes a key at most this often.
TOUCH_INTERVAL = timedelta(minutes=1)

_COLUMNS = "key_id, name, scope, created_at, revoked_at, last_used_at"


@dataclass(frozen=True)
class ApiKey:
    """One API key as the store records it (never its secret, never its hash).

    Attributes
    ----------
    key_id : str
        8 hex characters; part of the key, and safe to show.
    name : str
        Unique among keys not revoked.
    scope : str
        ``ingest``, ``read`` or ``admin``.
    created_at, revoked_at, last_used_at : datetime or None
        Naive UTC. ``revoked_at`` is None while the key is in use; ``last_used_at`` is None
        until the server first records a use, and lags real use by up to a minute.
    """

    key_id: str
    name: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the key is still accepted (not revoked)."""
        return self.revoked_at is None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ApiKey:
        key_id, name, scope, created_at, revoked_at, last_used_at = row[:6]
        return cls(key_id, name, scope, created_at, revoked_at, last_used_at)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the key's record, without secret or hash.

        Examples
        --------
        >>> ApiKey("3f9a0c1e", "ci", "read", datetime(2026, 5, 1, 9, 30)).to_dict()["created_at"]
        '2026-05-01 09:30:00'
        """
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scope": self.scope,
            "active": self.active,
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at),
            "last_used_at": _iso(self.last_used_at),
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(sep=" ")


def _hash(key: str) -> str:
    """Hex SHA-256 of a key (ASCII: callers check that first)."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InputError(
            f"name {shown(name)} is not a valid API key name", hint=_NAME_RULE, param="name"
        )
    return name


def _check_scope(scope: object) -> str:
    if not isinstance(scope, str) or scope not in SCOPES:
        raise InputError(
            f"scope {shown(scope)} is not an API key scope",
            hint=f"use {_SCOPE_WORDS}",
            param="scope",
        )
    return scope


# -- making and revoking -------------------------------------------------------------------------


def create(store: Store, name: str, scope: str) -> tuple[ApiKey, str]:
    """Make a key; return its record and its plaintext, which is shown this once only.

    Parameters
    ----------
    store : Store
        The open store (written to).
    name : str
        1 to 64 characters of letters, digits, ``-``, ``_`` and ``.``; no other key in use may
        have it (a revoked key's name may be used again).
    scope : str
        ``ingest`` (may only send events), ``read`` (may only read) or ``admin`` (everything).

    Returns
    -------
    tuple of (ApiKey, str)
        The record, and the key ``jz_<scope>_<key_id>_<secret>``. Only its hash is stored.

    Raises
    ------
    InputError
        ``name`` or ``scope`` is not valid (``param`` says which).
    ConflictError
        A key in use already has ``name``.

    Examples
    --------
    >>> key, plaintext = create(store, "shop-web", "ingest")           # doctest: +SKIP
    >>> plaintext.startswith(f"jz_ingest_{key.key_id}_")               # doctest: +SKIP
    True
    """
    name = _check_name(name)
    scope = _check_scope(scope)
    with store.transaction() as con:
        taken = con.execute(
            f"SELECT count(*) FROM {API_KEYS} WHERE name = ? AND revoked_at IS NULL", [name]
        ).fetchall()[0][0]
        if taken:
            raise ConflictError(
                f"name {shown(name)} is already used by an API key in use",
                hint=f"choose another name, or revoke that key first (jingzhun apikey revoke {name})",
                param="name",
            )
        # 8 hex characters are 2^32 ids: a clash is rare but possible over many keys, and a
        # revoked key keeps its id, so draw again until the id is new to the table.
        while True:
            key_id = secrets.token_hex(4)
            if not con.execute(
                f"SELECT count(*) FROM {API_KEYS} WHERE key_id = ?", [key_id]
            ).fetchall()[0][0]:
                break
        plaintext = f"jz_{scope}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        key = ApiKey(key_id, name, scope, utcnow())
        con.execute(
            f"INSERT INTO {API_KEYS} (key_id, name, scope, key_hash, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [key.key_id, key.name, key.scope, _hash(plaintext), key.created_at],
        )
    return key, plaintext


def revoke(store: Store, name: str) -> ApiKey:
    """Revoke the key in use named ``name``: the server refuses it from now on.

    The row stays (with ``revoked_at`` set), so its id is never reused and ``list_keys``
    still shows it. A server caches verified keys for a few seconds.

    Parameters
    ----------
    store : Store
        The open store (written to).
    name : str
        The key's name, as ``jingzhun apikey list`` shows it.

    Returns
    -------
    ApiKey
        The revoked key.

    Raises
    ------
    NotFoundError
        No key in use has that name.

    Examples
    --------
    >>> revoke(store, "shop-web").active                                # doctest: +SKIP
    False
    """
    with store.transaction() as con:
        row = con.execute(
            f"SELECT {_COLUMNS} FROM {API_KEYS} WHERE name = ? AND revoked_at IS NULL",
            [name if isinstance(name, str) else None],
        ).fetchall()
        row = row[0] if row else None
        if row is None:
            raise NotFoundError(
                f"no API key in use is named {shown(name)}",
                hint="see the keys and their names with: jingzhun apikey list",
            )
        key = ApiKey.from_row(row)
        now = utcnow()
        con.execute(f"UPDATE {API_KEYS} SET revoked_at = ? WHERE key_id = ?", [now, key.key_id])
    return ApiKey(key.key_id, key.name, key.scope, key.created_at, now, key.last_used_at)


# -- reading ---------------------------------------------------------------------------------------


def list_keys(store: Store, include_revoked: bool = True) -> list[ApiKey]:
    """Every key (or only those in use), oldest first; never a secret or a hash.

    Examples
    --------
    >>> [k.name for k in list_keys(store, include_revoked=False)]      # doctest: +SKIP
    ['shop-web', 'dashboard']
    """
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    rows = store.rows(f"SELECT {_COLUMNS} FROM {API_KEYS} {where} ORDER BY created_at, key_id")
    return [ApiKey.from_row(r) for r in rows]


def verify(store: Store, key: object) -> ApiKey | None:
    """The key in use that ``key`` is, or None; any input at all gives one or the other.

    Reads only (a read-only connection will do). What is presented is checked against the
    key format first (length, characters, scope), so garbage of any size or content is None
    without touching the store; the row is then found by the key's id and its hash compared
    in constant time. A revoked key is None.

    Parameters
    ----------
    store : Store
        The open store.
    key : str
        The key as presented (a header value, a form field).

    Returns
    -------
    ApiKey or None

    Examples
    --------
    >>> verify(store, "jz_read_00000000_" + "x" * 43) is None            # doctest: +SKIP
    True
    """
    # Length first: the pattern then runs on at most 62 characters. isascii() before the
    # pattern is not needed for it (its classes are ASCII) but guards the encode in _hash.
    if not isinstance(key, str) or len(key) > _KEY_MAX_CHARS or not key.isascii():
        return None
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    row = store.rows(f"SELECT {_COLUMNS}, key_hash FROM {API_KEYS} WHERE key_id = ?", [match[2]])
    if not row:
        return None
    found = ApiKey.from_row(row[0])
    # compare_digest: the time taken says nothing about how much of the hash matched.
    if not hmac.compare_digest(_hash(key), str(row[0][6])):
        return None
    return found if found.active else None


def allows(scope_of_key: str, needed: str) -> bool:
    """Whether a key of ``scope_of_key`` may do what needs ``needed``.

    ``admin`` may do everything; ``ingest`` and ``read`` only what needs exactly them.

    Raises
    ------
    ValueError
        ``needed`` is not a scope (a mistake in the calling code, not the user's).

    Examples
    --------
    >>> allows("admin", "ingest"), allows("read", "read"), allows("read", "ingest")
    (True, True, False)
    >>> allows("ingest", "admin")
    False
    """
    if needed not in SCOPES:
        raise ValueError(f"needed scope {needed!r} is not one of {SCOPES}")
    return scope_of_key == "admin" or scope_of_key == needed


# -- recording use ---------------------------------------------------------------------------------


def touch(store: Store, key_ids: Iterable[str], *, at: datetime | None = None) -> int:
    """Record that keys were used at ``at`` (default now); return how many rows changed.

    A key's ``last_used_at`` is written only when it is empty or older than
    :data:`TOUCH_INTERVAL`, so a server calling this with every batch of requests writes each
    key about once a minute, not once a request. For the server's writer: :func:`verify`
    itself never writes.

    Parameters
    ----------
    store : Store
        The open store (written to).
    key_ids : iterable of str
        Ids of keys that were used (repeats and unknown ids are fine).
    at : datetime, optional
        When, naive UTC.

    Examples
    --------
    >>> touch(store, ["3f9a0c1e", "3f9a0c1e"])                          # doctest: +SKIP
    1
    >>> touch(store, ["3f9a0c1e"])            # again within the minute  # doctest: +SKIP
    0
    """
    ids = sorted({k for k in key_ids if isinstance(k, str)})
    if not ids:
        return 0
    when = at or utcnow()
    changed = store.run(
        f"UPDATE {API_KEYS} SET last_used_at = ? "
        "WHERE list_contains(?::VARCHAR[], key_id) "
        "AND (last_used_at IS NULL OR last_used_at <= ?)",
        [when, ids, when - TOUCH_INTERVAL],
    )
    return int(changed or 0)
