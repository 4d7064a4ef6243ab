"""The consent model: statements from events, users files, the API and the CLI; what is in
force; bad statements quarantined or refused with the part named."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest.consent import allowed, allowed_expr, record
from jingzhun.workspace import Workspace
from tests.api.conftest import start
from tests.cli import subprocess_cli as sp

EVENTS = """event,user_id,ts,purpose,status,consent_channel
consent_updated,u1,2024-01-01T00:00:00Z,marketing,granted,
consent_updated,u1,2024-02-01T00:00:00Z,marketing,REVOKED,email
consent_updated,u2,2024-01-01T00:00:00Z,Marketing,GRANTED,sms
consent_updated,u2,2024-01-02T00:00:00Z,analytics,DENIED,
consent_updated,u3,2024-01-02T00:00:00Z,marketingg,GRANTED,
consent_updated,u3,2024-01-02T00:00:00Z,analytics,YES,
consent_updated,u3,2024-01-02T00:00:00Z,analytics,GRANTED,fax
consent_updated,,2024-01-02T00:00:00Z,analytics,GRANTED,
consent_updated,u3,2024-01-02T00:00:00Z,,GRANTED,
consent_updated,u3,2024-01-02T00:00:00Z,analytics,,
"""

USERS = """user_id,email,marketing_opt_in,consent_personalization,consent_marketing_email
u1,a@example.com,true,GRANTED,
u2,b@example.com,false,,granted
u3,c@example.com,,,
u4,d@example.com,yes,,maybe
"""


def in_force(ws: Workspace, user: str) -> dict[tuple[str, str], str]:
    return {
        (r["purpose"], r["channel"]): r["status"]
        for r in ws.privacy.consents(user).to_dict("records")
    }


def test_consent_events_become_history_and_bad_ones_are_quarantined(
    ws: Workspace, write: Callable[..., Path]
) -> None:
    batch = ws.ingest.files("events", [str(write("events.csv", EVENTS))])
    assert (batch.rows_read, batch.inserted, batch.quarantined) == (10, 4, 6)
    assert batch.rows_read == batch.inserted + batch.duplicates + batch.quarantined
    reasons = sorted(r for (r,) in ws.store.rows("SELECT reason FROM quarantine"))
    assert reasons == [
        "channel: 'fax' is not one of email, sms, push, webhook, ads, any",
        "consent_updated needs properties.purpose (marketing, analytics, personalization)",
        "consent_updated needs properties.status (GRANTED, DENIED, REVOKED)",
        "needs a user_id or an anonymous_id; consent_updated needs user_id",
        "purpose: 'marketingg' is not one of marketing, analytics, personalization",
        "status: 'YES' is not one of GRANTED, DENIED, REVOKED",
    ]
    history = ws.privacy.consents(history=True)
    assert history[["user_id", "purpose", "channel", "status"]].values.tolist() == [
        ["u1", "marketing", "any", "GRANTED"],
        ["u1", "marketing", "email", "REVOKED"],
        ["u2", "marketing", "sms", "GRANTED"],
        ["u2", "analytics", "any", "DENIED"],
    ]
    assert set(history["source"]) == {f"events:{batch.batch_id}"}
    # The same file again: its events are duplicates, so no statement is repeated.
    again = ws.ingest.files("events", [str(write("events.csv", EVENTS))])
    assert again.inserted == 0 and ws.store.count("consents") == 4
    # In force per channel: u1 revoked email after granting any; sms still granted.
    assert allowed(ws.store, ["u1", "u2", "u9"], "marketing", "email", "DENIED") == set()
    assert allowed(ws.store, ["u1", "u2", "u9"], "marketing", "sms", "DENIED") == {"u1", "u2"}
    # No statement about push: the default, unless a statement on any channel says otherwise.
    assert allowed(ws.store, ["u1", "u2", "u9"], "marketing", "push", "GRANTED") == {
        "u1",
        "u2",
        "u9",
    }
    assert allowed(ws.store, ["u1", "u2", "u9"], "marketing", "push", "DENIED") == {"u1"}
    # A later grant on any channel wins over the earlier email revocation.
    record(
        ws.store,
        "u1",
        purpose="marketing",
        channel="any",
        status="GRANTED",
        source="t",
        ts=datetime(2024, 3, 1),
    )
    assert allowed(ws.store, ["u1"], "marketing", "email", "DENIED") == {"u1"}


def test_users_files_state_consent_once_and_never_undo_an_unsubscribe(
    ws: Workspace, write: Callable[..., Path]
) -> None:
    users = write("users.csv", USERS)
    batch = ws.ingest.files("users", [str(users)])
    assert (batch.inserted, batch.quarantined) == (3, 1)
    (reason,) = ws.store.rows("SELECT reason FROM quarantine")[0]
    assert reason == (
        "consent_marketing_email: 'maybe' is not GRANTED, DENIED or REVOKED (or true/false)"
    )
    assert in_force(ws, "u1") == {
        ("marketing", "any"): "GRANTED",
        ("personalization", "any"): "GRANTED",
    }
    assert in_force(ws, "u2") == {("marketing", "any"): "DENIED", ("marketing", "email"): "GRANTED"}
    assert in_force(ws, "u3") == {}
    # The column named for a channel is not taken for personal data.
    assert ws.store.scalar("SELECT count(*) FROM users WHERE attributes::VARCHAR LIKE '%@%'") == 0
    n = ws.store.count("consents")
    ws.privacy.set_consent("u1", "marketing", "revoked", channel="email", source="unsubscribe:x")
    ws.ingest.files("users", [str(users)])
    assert ws.store.count("consents") == n + 1  # re-ingesting stated nothing new
    assert allowed(ws.store, ["u1"], "marketing", "email", "DENIED") == set()
    # A changed file is a new statement.
    ws.ingest.files("users", [str(write("u.csv", "user_id,marketing_opt_in\nu2,true\n"))])
    assert in_force(ws, "u2")[("marketing", "any")] == "GRANTED"
    assert ws.store.count("consents") == n + 2
    sources = {s.split(":")[0] for (s,) in ws.store.rows("SELECT source FROM consents")}
    assert sources == {"users", "unsubscribe"}
    # The audit log names the statement made by hand, by token.
    entry = ws.privacy.audit(action="privacy.consent")
    assert len(entry) == 1 and "u1" not in json.dumps(entry.astype(str).to_dict("records"))


def test_a_statement_by_hand_names_the_wrong_part(
    ws: Workspace, write: Callable[..., Path]
) -> None:
    ws.ingest.files("users", [str(write("users.csv", "user_id\nu1\n"))])
    with pytest.raises(InputError, match="purpose 'spam' is not one of") as e:
        ws.privacy.set_consent("u1", "spam", "GRANTED")
    assert e.value.param == "purpose"
    with pytest.raises(InputError, match="channel 'fax'"):
        ws.privacy.set_consent("u1", "marketing", "GRANTED", channel="fax")
    with pytest.raises(InputError, match="status 'MAYBE'"):
        ws.privacy.set_consent("u1", "marketing", "maybe")
    with pytest.raises(NotFoundError, match="not in the store"):
        ws.privacy.set_consent("nobody", "marketing", "GRANTED")
    assert ws.store.count("consents") == 0


def test_allowed_query_follows_the_default_for_the_silent(
    ws: Workspace, write: Callable[..., Path]
) -> None:
    ws.ingest.files("users", [str(write("users.csv", USERS))])
    assert set(
        allowed_expr(ws.store.ibis(), "marketing", "email", "DENIED").to_pandas().user_id
    ) == {"u1", "u2"}
    assert set(
        allowed_expr(ws.store.ibis(), "marketing", "email", "GRANTED").to_pandas().user_id
    ) == {"u1", "u2", "u3"}


def test_cli_shows_and_sets_consent(tmp_path: Path, write: Callable[..., Path]) -> None:
    db = tmp_path / "s.duckdb"

    def run(*args: str) -> sp.Ran:
        return sp.run(tmp_path, *args, db=db)

    assert run("ingest", "users", str(write("users.csv", USERS))).code == 0
    shown = sp.one_json(run("privacy", "consent", "u2", "--json"))
    assert {(c["channel"], c["status"]) for c in shown["consents"]} == {
        ("any", "DENIED"),
        ("email", "GRANTED"),
    }
    assert shown["default"] == "DENIED"
    done = run(
        "privacy",
        "consent",
        "u2",
        "--set",
        "marketing:email=revoked",
        "--set",
        "analytics=GRANTED",
        "--json",
    )
    now = {(c["purpose"], c["channel"]): c["status"] for c in sp.one_json(done)["consents"]}
    assert now[("marketing", "email")] == "REVOKED" and now[("analytics", "any")] == "GRANTED"
    before = sp.sql(db, "SELECT count(*) FROM consents")
    # Two statements, the second wrong: neither is recorded.
    for bad, named in (
        (["--set", "marketing=GRANTED", "--set", "marketing:fax=GRANTED"], "channel part 'fax'"),
        (["--set", "marketing"], "expected PURPOSE[:CHANNEL]=STATUS"),
        (["--set", "spam=GRANTED"], "purpose part 'spam'"),
    ):
        sp.error_line(run("privacy", "consent", "u2", *bad), named)
    assert sp.sql(db, "SELECT count(*) FROM consents") == before
    sp.error_line(
        run("privacy", "consent", "nobody", "--set", "marketing=GRANTED"), "not in the store"
    )
    profile = run("profile", "show", "u2")  # no profile built: a clear refusal, not the consent
    assert profile.code == 2


def test_api_reads_and_records_consent_and_tracking_states_it(
    tmp_path: Path, write: Callable[..., Path]
) -> None:
    db = tmp_path / "s.duckdb"
    with Workspace.open(db) as ws:
        ws.ingest.files("users", [str(write("users.csv", USERS))])
    served = start(db)
    try:
        admin, reader = served.client("admin"), served.client("read")
        got = reader.get("/v1/users/u2/consents")
        assert got.status_code == 200, got.text
        assert {(c["channel"], c["status"]) for c in got.json()["consents"]} == {
            ("any", "DENIED"),
            ("email", "GRANTED"),
        }
        body = {"purpose": "marketing", "channel": "email", "status": "REVOKED"}
        assert reader.post("/v1/users/u2/consents", json=body).status_code == 403
        made = admin.post("/v1/users/u2/consents", json=body)
        assert made.status_code == 201, made.text
        email = next(c for c in made.json()["consents"] if c["channel"] == "email")
        assert email["status"] == "REVOKED" and email["source"].startswith("api:")
        # A time with an offset is stored in UTC; an older statement is history, not in force.
        dated = {"purpose": "analytics", "status": "DENIED", "ts": "2025-01-01T08:00:00+08:00"}
        made = admin.post("/v1/users/u2/consents", json=dated)
        analytics = next(c for c in made.json()["consents"] if c["purpose"] == "analytics")
        assert analytics["ts"].startswith("2025-01-01T00:00")
        ahead = admin.post("/v1/users/u2/consents", json={**dated, "ts": "2999-01-01T00:00:00Z"})
        assert ahead.status_code in (400, 422) and "future" in ahead.text
        for bad in (
            {**body, "purpose": "spam"},
            {**body, "status": "maybe"},
            {**body, "channel": "fax"},
            {**body, "extra": 1},
            {"purpose": "marketing"},
        ):
            assert admin.post("/v1/users/u2/consents", json=bad).status_code == 422, bad
        missing = admin.post("/v1/users/nobody/consents", json=body)
        assert missing.status_code == 404 and "not in the store" in missing.text
        # A website's Segment call states it too.
        track = admin.post(
            "/v1/track",
            json={
                "userId": "u3",
                "event": "Consent Updated",
                "timestamp": "2025-01-02T00:00:00Z",
                "properties": {"purpose": "marketing", "status": "GRANTED", "channel": "push"},
            },
        )
        assert track.status_code == 200, track.text
        bad = admin.post(
            "/v1/track",
            json={
                "userId": "u3",
                "event": "Consent Updated",
                "timestamp": "2025-01-02T00:00:00Z",
                "properties": {"purpose": "ads", "status": "GRANTED"},
            },
        )
        assert bad.status_code == 200
    finally:
        served.stop()
    with Workspace.open(db, read_only=True) as ws:
        assert in_force(ws, "u3") == {("marketing", "push"): "GRANTED"}
        assert ws.store.scalar(
            "SELECT source FROM consents WHERE user_id = 'u2' "
            "AND channel = 'email' ORDER BY ts DESC LIMIT 1"
        ).startswith("api:")
        assert ws.store.rows("SELECT reason FROM quarantine WHERE kind = 'events'") == [
            ("purpose: 'ads' is not one of marketing, analytics, personalization",)
        ]


def test_attribute_keys_that_are_no_json_path_sit_beside_consents(
    ws: Workspace, write: Callable[..., Path]
) -> None:
    """An empty key, a dot or a quote in a key is no JSON path: the consent columns are still
    read, the other keys kept, and a bad consent beside them is quarantined (the check used
    to build a path from every key, and the batch failed)."""
    users = write(
        "users.jsonl",
        '{"user_id": "u5", "attributes": '
        '{"": 1, "a.b": 2, "q\\"x": 3, "consent_analytics": "granted"}}\n'
        '{"user_id": "u6", "attributes": {"": 1, "consent_marketing": "maybe"}}\n',
    )
    batch = ws.ingest.files("users", [str(users)])
    assert (batch.inserted, batch.quarantined) == (1, 1)
    assert in_force(ws, "u5") == {("analytics", "any"): "GRANTED"}
    (reason,) = ws.store.rows("SELECT reason FROM quarantine")[0]
    assert reason == "consent_marketing: not GRANTED, DENIED or REVOKED (or true/false)"
    (attributes,) = ws.store.rows("SELECT attributes FROM users WHERE user_id = 'u5'")[0]
    assert {"a.b": 2, 'q"x': 3}.items() <= json.loads(attributes).items()
