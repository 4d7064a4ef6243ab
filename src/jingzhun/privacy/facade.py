"""``ws.privacy``: the protect stage's facade — find, export and erase a person, the audit
log, the vault's keys.

Examples
--------
>>> ws.privacy.find(email="ann@example.com")                        # doctest: +SKIP
['u1']
>>> ws.privacy.export("u1")["personal_data"]["email"]               # doctest: +SKIP
'ann@example.com'
>>> ws.privacy.erase("u1").rows["events"]                           # doctest: +SKIP
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jingzhun.checks import shown
from jingzhun.contracts.results import Result
from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest import consent
from jingzhun.privacy import audit
from jingzhun.privacy import subject as subj
from jingzhun.store import vault as v
from jingzhun.store.desensitize import user_key

if TYPE_CHECKING:
    import pandas as pd

    from jingzhun.config import Settings
    from jingzhun.store import Store


def _python_actor() -> str:
    try:
        return f"python:{getpass.getuser()}"
    except (KeyError, OSError):
        return "python:?"


@dataclass
class VaultStatus(Result):
    """Whether the store has a vault, where its master key comes from, the data key's id."""

    vault: bool
    key_source: str  # $JINGZHUN_MASTER_KEY | the key file's path | none
    key_id: str | None
    encrypted_rows: int
    reencryption_in_progress: bool


@dataclass
class Rotation(Result):
    """What ``rotate-key`` did."""

    key_now_in: str
    reencrypted_rows: int | None  # None without --reencrypt
    key_id: str


class Privacy:
    """A person's data on request, and the vault's keys. Every call that reads or removes a
    person's data writes an audit entry naming them by keyed token only."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store, self._settings = store, settings

    def status(self) -> VaultStatus:
        vault = v.vault_for(self._store)
        env = bool(os.environ.get(v.KEY_ENV))
        path = v.key_file(self._store.path)
        meta = dict(self._store.rows("SELECT key, value FROM store_meta"))
        return VaultStatus(
            vault=vault is not None,
            key_source=f"${v.KEY_ENV}" if env else (str(path) if path.exists() else "none"),
            key_id=vault.key_id if vault else None,
            encrypted_rows=self._store.count("pii"),
            reencryption_in_progress=v.META_NEXT in meta,
        )

    def find(
        self, *, email: str | None = None, phone: str | None = None, actor: str | None = None
    ) -> list[str]:
        """The users with this email or phone (normalized; through the blind index)."""
        found = subj.find(self._store, email=email, phone=phone)
        audit.record(
            self._store,
            actor or _python_actor(),
            "privacy.find",
            detail={"by": "email" if email is not None else "phone", "found": len(found)},
        )
        return found

    def export(self, user_id: str, *, actor: str | None = None) -> dict[str, Any]:
        """Everything about ``user_id`` as one JSON-ready object (personal data decrypted)."""
        user_id = user_key(self._store, user_id)
        data = subj.export(self._store, user_id)
        audit.record(
            self._store,
            actor or _python_actor(),
            "privacy.export",
            subject=subj.subject_token(self._store, user_id),
            detail={"tables": sorted(data["tables"])},
        )
        return data

    def consents(self, user_id: str | None = None, *, history: bool = False) -> pd.DataFrame:
        """The consents in force (user_id, purpose, channel, status, ts, source) of one user,
        or of every user; with ``history``, every statement, oldest first."""
        if user_id is not None:
            user_id = user_key(self._store, user_id)
        if history:
            return self._store.sql(
                "SELECT * FROM consents WHERE (? IS NULL OR user_id = ?) "
                "ORDER BY user_id, ts, purpose, channel",
                [user_id, user_id],
            ).df()
        return self._store.sql(consent.current_query(), [user_id, user_id]).df()

    def set_consent(
        self,
        user_id: str,
        purpose: str,
        status: str,
        *,
        channel: str = "any",
        ts: datetime | None = None,
        source: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Record one consent statement (purpose and channel names as in
        :mod:`jingzhun.ingest.consent`; the status in any case) at ``ts`` (now when None)."""
        from jingzhun.contracts.time import utcnow

        user_id = user_key(self._store, user_id)
        if not self._store.scalar("SELECT count(*) FROM users WHERE user_id = ?", [user_id]):
            raise NotFoundError(
                f"user {shown(user_id)} is not in the store",
                hint="ingest the user first",
            )
        purpose, channel, status = consent.statement(purpose, channel, status)
        now = utcnow()
        if ts is not None and ts > now + timedelta(days=1):
            # A statement dated ahead would outrank every later one until that day.
            raise InputError(f"ts {ts:%Y-%m-%d %H:%M} is in the future", param="ts")
        who = actor or _python_actor()
        with self._store.transaction():
            consent.record(
                self._store,
                user_id,
                purpose=purpose,
                channel=channel,
                status=status,
                source=source or who,
                ts=ts or now,
            )
            audit.record(
                self._store,
                who,
                "privacy.consent",
                subject=subj.subject_token(self._store, user_id),
                detail={"purpose": purpose, "channel": channel, "status": status},
            )

    def erase(self, user_id: str, *, actor: str | None = None) -> subj.Erasure:
        """Remove ``user_id`` from every table; see :func:`jingzhun.privacy.subject.erase`."""
        user_id = user_key(self._store, user_id)
        return subj.erase(self._store, user_id, actor=actor or _python_actor())

    def purge(self, older_than_days: int, *, actor: str | None = None) -> subj.Purge:
        """Delete events and what is kept of them older than the window (retention)."""
        return subj.purge(self._store, older_than_days, actor=actor or _python_actor())

    def models_holding_erased(self) -> list[str]:
        """Models trained before the latest erasure (retrain them to drop erased users)."""
        return subj.models_holding_erased(self._store)

    def rotate_key(self, *, reencrypt: bool = False, actor: str | None = None) -> Rotation:
        """A new master key for the vault (and, with ``reencrypt``, a new data key under
        which every value is encrypted again, resumably)."""
        where = v.rotate_master(self._store)
        rows = v.reencrypt(self._store) if reencrypt else None
        vault = v.open_vault(self._store)
        audit.record(
            self._store,
            actor or _python_actor(),
            "privacy.rotate_key",
            detail={"reencrypted_rows": rows},
        )
        return Rotation(
            key_now_in=where, reencrypted_rows=rows, key_id=vault.key_id if vault else ""
        )

    def audit(self, *, action: str | None = None, limit: int = 100) -> pd.DataFrame:
        """The audit log, newest first."""
        from jingzhun.checks import MAX_ROWS, bounded_int

        return audit.entries(
            self._store, action=action, limit=bounded_int(limit, "limit", lo=1, hi=MAX_ROWS)
        )
