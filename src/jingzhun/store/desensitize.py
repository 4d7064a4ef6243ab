"""Desensitized exports (脱敏): pseudonyms for ids, quasi-identifiers generalized, groups
smaller than k suppressed, Laplace noise on counts — the SQL and arithmetic every stage's
export uses, one definition.

Pseudonyms
    ``'p' || left(sha256(K_out || sha256(K_in || id)), 24)``: a keyed hash (the nested
    construction of HMAC, over text, with two 256-bit keys derived from the vault's index key)
    computed by DuckDB over a whole column. The same id gets the same pseudonym in every export
    of a store, so exports join with each other; without the key nobody can tell whose it is or
    test a guessed id. DuckDB has SHA-256 but no HMAC, hence the construction by hand.
Generalization
    birth year -> age band at the profile's ``as_of`` (under 18, 18-24, 25-34, 35-44, 45-54,
    55-64, 65+); city -> dropped, region kept; times -> their month.
k-anonymity
    Every combination of the quasi-identifiers appears at least k times in a row-level export:
    rows of rarer combinations get the quasi-identifiers masked (NULL), and if the masked rows
    are fewer than k they are left out (:func:`k_anonymous_sql`).
Laplace noise
    A count's sensitivity is 1 (a person is in one group of a partition), so adding
    Laplace(0, 1/ε) noise to each released count makes the counts ε-differentially private
    (parallel composition over disjoint groups). Noisy counts are rounded and clipped at 0.
    Groups are suppressed on their true size before the noise, so the k guarantee is exact;
    that decision is not covered by ε (said in docs/security.md).
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from jingzhun.errors import InputError
from jingzhun.store import Store
from jingzhun.store.sql import Sql
from jingzhun.store.vault import vault_for

#: Age bands: (label, lowest age, highest age).
AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("<18", 0, 17),
    ("18-24", 18, 24),
    ("25-34", 25, 34),
    ("35-44", 35, 44),
    ("45-54", 45, 54),
    ("55-64", 55, 64),
    ("65+", 65, 200),
)


def pseudonym_params(store: Store) -> list[str]:
    """The two keys :func:`pseudonym_sql` takes as parameters (the vault is made if the store
    has none: a pseudonym needs a key kept apart from the data)."""
    vault = vault_for(store, create=True)
    assert vault is not None  # create=True makes one or raises
    inner, outer = vault.pseudonym_keys()
    return [outer, inner]


def pseudonym_sql(column: Sql) -> Sql:
    """SQL of the pseudonym of ``column`` (NULL stays NULL); two ``?``: :func:`pseudonym_params`."""
    return Sql(
        f"CASE WHEN {column} IS NOT NULL THEN 'p' || left(sha256(? || sha256(? || CAST({column} AS VARCHAR))), 24) END"
    )


#: What a pseudonym looks like (a store with pseudonymized ids holds only these).
PSEUDONYM = re.compile(r"p[0-9a-f]{24}")
#: The store_meta key that says a store's ids are pseudonyms.
META_PSEUDONYMS = "pseudonymized_ids"


def pseudonyms(store: Store, ids: list[str]) -> list[str]:
    """:func:`pseudonym_sql` in Python, for a few ids typed by a person (equal to DuckDB's)."""
    outer, inner = pseudonym_params(store)
    return [
        "p"
        + hashlib.sha256(
            (outer + hashlib.sha256((inner + i).encode("utf-8")).hexdigest()).encode("ascii")
        ).hexdigest()[:24]
        for i in ids
    ]


def pseudonymized(store: Store) -> bool:
    """Whether the store keeps its ids as pseudonyms (``[privacy] pseudonymize_ids``)."""
    return bool(store.scalar("SELECT count(*) FROM store_meta WHERE key = ?", [META_PSEUDONYMS]))


def user_key(store: Store, user_id: str) -> str:
    """The id the store keeps for ``user_id``: its pseudonym in a pseudonymized store (an id
    that is a pseudonym already stays as it is), else the id itself."""
    if not isinstance(user_id, str) or PSEUDONYM.fullmatch(user_id):
        return user_id
    # On a connection of its own: the server's shared facades answer many threads at once,
    # and a DuckDB connection serves one call at a time.
    with store.cursor() as own:
        return pseudonyms(own, [user_id])[0] if pseudonymized(own) else user_id


def age_band_sql(birth_year: Sql, as_of: Sql) -> Sql:
    """SQL of the age band of a birth year at ``as_of`` (NULL when unknown)."""
    age = f"(year({as_of}) - {birth_year})"
    cases = " ".join(
        f"WHEN {age} BETWEEN {lo} AND {hi} THEN '{label}'" for label, lo, hi in AGE_BANDS
    )
    return Sql(f"CASE {cases} END")


def month_sql(ts: Sql) -> Sql:
    """A time generalized to its month (a DATE, the first of the month)."""
    return Sql(f"CAST(date_trunc('month', {ts}) AS DATE)")


def check_k(k: int | None) -> int | None:
    """``--k-anonymity``: 2 or more (1 hides nothing)."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= 1_000_000:
        raise InputError(
            f"--k-anonymity {k!r} must be a whole number from 2 to 1,000,000",
            hint="k = 1 hides nothing; 5 or 10 are usual",
            param="k_anonymity",
        )
    return k


def check_epsilon(epsilon: float | None) -> float | None:
    """``--epsilon``: a positive, finite privacy budget."""
    if epsilon is None:
        return None
    if (
        not isinstance(epsilon, int | float)
        or isinstance(epsilon, bool)
        or not (0 < float(epsilon) < float("inf"))
        or float(epsilon) > 1e6
    ):
        raise InputError(
            f"--epsilon {epsilon!r} must be a positive number (at most 1e6)",
            hint="smaller is more private: noise of scale 1/epsilon; 0.1 to 1 are usual",
            param="epsilon",
        )
    return float(epsilon)


def k_anonymous_sql(rows: Sql, key: Sql, quasi: list[str], k: int) -> Sql:
    """``rows`` with the quasi-identifier columns ``quasi`` masked where their combination
    appears fewer than ``k`` times, and the masked rows left out if they are fewer than ``k``.
    ``key`` orders the result. Column names come from the stage, never from a user."""
    cols = ", ".join(quasi)
    masked = ", ".join(f"CASE WHEN _n >= {int(k)} THEN {c} END AS {c}" for c in quasi)
    return Sql(
        f"""WITH counted AS (SELECT *, count(*) OVER (PARTITION BY {cols}) AS _n FROM ({rows})),
        masked AS (SELECT * EXCLUDE ({cols}, _n), {masked} FROM counted)
        SELECT * FROM masked
        QUALIFY count(*) OVER (PARTITION BY {cols}) >= {int(k)}
        ORDER BY {key}"""
    )


def laplace(
    counts: np.ndarray, epsilon: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """``counts`` + Laplace(0, 1/ε) noise, rounded, never below 0."""
    rng = rng or np.random.default_rng()
    noisy = counts + rng.laplace(0.0, 1.0 / epsilon, size=len(counts))
    return np.maximum(np.rint(noisy), 0).astype(np.int64)


__all__ = [
    "AGE_BANDS",
    "META_PSEUDONYMS",
    "PSEUDONYM",
    "age_band_sql",
    "check_epsilon",
    "check_k",
    "k_anonymous_sql",
    "laplace",
    "month_sql",
    "pseudonym_params",
    "pseudonym_sql",
    "pseudonymized",
    "pseudonyms",
    "user_key",
]
