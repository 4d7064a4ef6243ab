"""``[privacy] pseudonymize_ids``: ids stored as keyed pseudonyms, the same across files and
kinds, found again by the id as given; a store keeps its ids one way."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from jingzhun.config import Settings
from jingzhun.errors import InputError
from jingzhun.store.desensitize import PSEUDONYM, pseudonyms, user_key
from jingzhun.workspace import Workspace

USERS = "user_id,email,marketing_opt_in,birth_year\nu1,a@example.com,true,1990\nu2,b@example.com,false,1985\nu3,c@example.com,true,19x5\n"
EVENTS = """event,user_id,anonymous_id,item_id,order_id,price,ts
page_viewed,,a1,,,,2024-01-01T00:00:00Z
product_viewed,,a1,i1,,,2024-01-01T00:01:00Z
signed_up,u1,a1,,,,2024-01-01T00:02:00Z
order_completed,u1,,i1,o1,9.5,2024-01-01T00:03:00Z
order_completed,u2,,i2,o2,5,2024-01-02T00:00:00Z
consent_updated,u2,,,,,2024-01-03T00:00:00Z
"""


def _settings(on: bool) -> Settings:
    return Settings.model_validate({"privacy": {"pseudonymize_ids": on}})


def _open(db: Path, on: bool) -> Workspace:
    ws = Workspace.open(db)
    ws.settings = _settings(on)
    return ws


def test_ids_are_stored_as_pseudonyms_and_found_by_the_id_as_given(
    tmp_path: Path, write: Callable[..., Path]
) -> None:
    db = tmp_path / "p.duckdb"
    with _open(db, True) as ws:
        batch = ws.ingest.files("users", [str(write("users.csv", USERS))])
        assert (batch.inserted, batch.quarantined) == (2, 1)
        ws.ingest.files("events", [str(write("events.csv", EVENTS))])
        p1, p2, pa1 = pseudonyms(ws.store, ["u1", "u2", "a1"])
        stored = {
            f"{t}.{c}": {
                r[0] for r in ws.store.rows(f"SELECT DISTINCT {c} FROM {t} WHERE {c} IS NOT NULL")
            }
            for t, c in (
                ("users", "user_id"),
                ("pii", "user_id"),
                ("events", "user_id"),
                ("events", "anonymous_id"),
                ("identities", "user_id"),
                ("consents", "user_id"),
            )
        }
        assert stored["users.user_id"] == stored["pii.user_id"] == {p1, p2}
        assert stored["events.user_id"] == {p1, p2} and stored["events.anonymous_id"] == {pa1}
        assert stored["identities.user_id"] == {p1} and stored["consents.user_id"] == {p1, p2}
        assert ws.store.rows("SELECT anonymous_id, user_id FROM identities") == [(pa1, p1)]
        assert all(PSEUDONYM.fullmatch(v) for vs in stored.values() for v in vs)
        # The same id gives the same pseudonym in DuckDB and in Python, in every file.
        # Nothing of the ids as given is left in the analytics tables.
        for table in ("users", "events", "identities", "consents", "pii"):
            text = str(ws.store.rows(f"SELECT * FROM {table}"))
            assert not re.search(r"'(u1|u2|a1)'", text), table
        # The quarantined row keeps what the file said (encrypted), for a replay.
        raw = " ".join(ws.ingest.quarantine.rows()["raw"])  # the users row, the consent event
        assert '"user_id":"u3"' in raw and '"user_id":"u2"' in raw
        # Look-ups by the id as given.
        ws.profiles.build()
        assert ws.profiles.user("u1").user_id == p1 == user_key(ws.store, p1)
        assert ws.profiles.user("a1").user_id == p1  # the device's owner
        assert len(ws.ingest.timeline("u1")) == 4  # the device's events too
        assert ws.privacy.export("u1")["user_id"] in ("u1", p1)
        assert ws.privacy.consents("u1")["status"].tolist() == ["GRANTED"]
        erased = ws.privacy.erase("u2")
        assert sum(erased.rows.values()) > 0
        assert ws.store.scalar("SELECT count(*) FROM users WHERE user_id = ?", [p2]) == 0


def test_a_store_keeps_its_ids_one_way(tmp_path: Path, write: Callable[..., Path]) -> None:
    plain, pseudo = tmp_path / "plain.duckdb", tmp_path / "pseudo.duckdb"
    users = write("users.csv", USERS)
    with _open(plain, False) as ws:
        ws.ingest.files("users", [str(users)])
    with _open(plain, True) as ws, pytest.raises(InputError, match="already holds ids as given"):
        ws.ingest.files("events", [str(write("events.csv", EVENTS))])
    with _open(pseudo, True) as ws:
        ws.ingest.files("users", [str(users)])
    with _open(pseudo, False) as ws:
        before = ws.store.count("users")
        with pytest.raises(InputError, match="pseudonymize_ids = true"):
            ws.ingest.files("users", [str(users)])
        assert ws.store.count("users") == before
