"""The suppression list: addresses (hashed, see :func:`address_hash_sql`) that no campaign
may message — hard bounces, complaints, unsubscribes.

Who consented to what is the consent model's (:mod:`jingzhun.ingest.consent`): audiences and
delivery ask it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from jingzhun.store import Store
from jingzhun.store.sql import Sql
from jingzhun.store.vault import vault_for


def normalized_email(value: str) -> str:
    """An email address as suppressions and ad audiences compare it: trimmed, lower case."""
    return value.strip().lower()


def address_hash(value: str) -> str:
    """The hex SHA-256 of a normalized email address (what ``suppressions`` keeps)."""
    return hashlib.sha256(normalized_email(value).encode("utf-8")).hexdigest()


def address_hash_sql(column: Sql) -> Sql:
    """:func:`address_hash` as DuckDB SQL over ``column`` (NULL stays NULL)."""
    return Sql(f"sha256(lower(trim({column})))")


def suppress(
    store: Store,
    rows: Iterable[tuple[str, str | None]],
    *,
    channel: str,
    reason: str,
    source: str | None,
    now: datetime,
) -> int:
    """Add (address, user_id) pairs to the suppression list; an address already there keeps
    its first reason. Returns how many were added."""
    pairs = [(a, u) for a, u in rows if a]
    if not pairs:
        return 0
    # The blind index is what audiences match on (the addresses in pii are encrypted); the
    # addresses came decrypted from the vault, so the store has one.
    vault = vault_for(store)
    field = "email" if channel == "email" else "phone"
    index = vault.blind([a for a, _ in pairs], field) if vault else [None] * len(pairs)
    values = [
        (channel, address_hash(a), u, reason, source, now, i)
        for (a, u), i in zip(pairs, index, strict=True)
    ]
    before = store.count("suppressions")
    store.con.executemany(
        "INSERT INTO suppressions (channel, address_hash, user_id, reason, source, created_at, "
        "address_index) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        values,
    )
    return store.count("suppressions") - before


__all__ = [
    "address_hash",
    "address_hash_sql",
    "normalized_email",
    "suppress",
]
