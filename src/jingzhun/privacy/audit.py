"""The audit log: who did what to whom, without personal data.

An entry names its actor (``cli:<os user>`` or ``api:<key name>``), the action, the user
concerned as a keyed token (:meth:`Vault.subject`) — never their id, address or name — and a
JSON detail of counts and field names.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

import pandas as pd

from jingzhun.contracts.time import utcnow
from jingzhun.store import Store


def cli_actor() -> str:
    """The actor of a command-line action: the operating-system user running it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return "cli:?"


def record(
    store: Store,
    actor: str,
    action: str,
    *,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry (inside the caller's transaction, if any)."""
    store.con.execute(
        "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?)",
        [utcnow(), actor[:200], action, subject, json.dumps(detail or {}, ensure_ascii=False)],
    )


def entries(store: Store, *, action: str | None = None, limit: int = 100) -> pd.DataFrame:
    """The newest entries first (of one action, when given)."""
    frame = store.sql(
        "SELECT ts, actor, action, subject, detail FROM audit_log "
        "WHERE ?::VARCHAR IS NULL OR action = ? ORDER BY ts DESC LIMIT ?",
        [action, action, limit],
    ).df()
    frame["detail"] = frame["detail"].map(lambda d: json.loads(d) if isinstance(d, str) else d)
    return frame
