"""Every timestamp the API answers is RFC 3339 in UTC (``2026-12-06T10:17:13.222933Z``), written
by the one serializer of :class:`jingzhun.api.schemas.ResponseModel`; what request bodies accept
is unchanged (a naive time is UTC, an offset is converted to UTC).

The schema fuzzing (``tests/reliability/test_schema_fuzz.py``) checks every answer against its
``format: date-time``; these tests pin the exact text, the free-form objects the schema cannot
check, and that no response model escapes the serializer.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

from jingzhun.api.routes import ROUTERS
from jingzhun.api.schemas import EventOut, Page, ResponseModel, rfc3339
from jingzhun.workspace import Workspace
from tests.api.conftest import Served, wait_job

#: RFC 3339 as the API writes it: UTC, always six fraction digits, Z.
STAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"


# -- the serializer -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 12, 6, 10, 17, 13, 222933), "2026-12-06T10:17:13.222933Z"),
        (datetime(2026, 12, 6, 10, 17, 13), "2026-12-06T10:17:13.000000Z"),
        (datetime(2026, 12, 6, 10, 17, 13, 5, tzinfo=UTC), "2026-12-06T10:17:13.000005Z"),
        (
            datetime(2026, 12, 7, 2, 17, 13, tzinfo=timezone(timedelta(hours=8))),
            "2026-12-06T18:17:13.000000Z",
        ),
        (
            datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
            "2027-01-01T04:30:00.000000Z",
        ),
        (pd.Timestamp("2026-12-06 10:17:13.222933"), "2026-12-06T10:17:13.222933Z"),
        (datetime(1, 1, 1), "0001-01-01T00:00:00.000000Z"),
        # UTC is before the calendar's start: the time keeps its own offset (still RFC 3339).
        (
            datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
            "0001-01-01T00:30:00.000000+01:00",
        ),
    ],
)
def test_rfc3339_writes_utc_with_z(value: datetime, text: str) -> None:
    assert rfc3339(value) == text


def test_fixed_width_text_sorts_as_the_times_do() -> None:
    times = [datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 10, 0, 0, 500_000)]
    assert sorted(rfc3339(t) for t in times) == [rfc3339(t) for t in times]


class _Inner(ResponseModel):
    at: datetime


class _Outer(ResponseModel):
    at: datetime
    maybe: datetime | None
    never: datetime | None = None
    free: dict[str, Any]
    rows: list[dict[str, Any]]
    inner: list[_Inner]
    day: date
    text: str


def _outer() -> _Outer:
    return _Outer(
        at="2026-12-06 10:17:13.222933",  # as the facades' to_dict() gives it
        maybe=datetime(2026, 12, 6, 18, 0, tzinfo=timezone(timedelta(hours=8))),
        free={
            "seen": datetime(2026, 1, 2, 3, 4, 5),
            "nested": [{"ts": pd.Timestamp("2026-01-02")}],
        },
        rows=[{"created_at": pd.Timestamp("2026-03-04 05:06:07.5"), "n": 1}],
        inner=[_Inner(at=datetime(2026, 5, 6))],
        day=date(2026, 7, 8),
        text="2026-12-06 10:17:13",  # text is data: never rewritten
    )


def test_every_datetime_of_a_response_is_rfc3339_utc() -> None:
    expected = {
        "at": "2026-12-06T10:17:13.222933Z",
        "maybe": "2026-12-06T10:00:00.000000Z",
        "never": None,
        "free": {
            "seen": "2026-01-02T03:04:05.000000Z",
            "nested": [{"ts": "2026-01-02T00:00:00.000000Z"}],
        },
        "rows": [{"created_at": "2026-03-04T05:06:07.500000Z", "n": 1}],
        "inner": [{"at": "2026-05-06T00:00:00.000000Z"}],
        "day": "2026-07-08",
        "text": "2026-12-06 10:17:13",
    }
    assert _outer().model_dump(mode="json") == expected
    assert json.loads(_outer().model_dump_json()) == expected  # FastAPI's way, the same


def test_python_dumps_keep_their_datetimes() -> None:
    dumped = _outer().model_dump()
    assert dumped["at"] == datetime(2026, 12, 6, 10, 17, 13, 222933)
    assert dumped["free"]["seen"] == datetime(2026, 1, 2, 3, 4, 5)


def test_the_schema_still_says_date_time() -> None:
    for mode in ("serialization", "validation"):
        schema = _Outer.model_json_schema(mode=mode)
        assert schema["properties"]["at"] == {
            "format": "date-time",
            "title": "At",
            "type": "string",
        }
        assert {"format": "date-time", "type": "string"} in schema["properties"]["maybe"]["anyOf"]
        assert schema["properties"]["free"]["type"] == "object"
    page = Page[EventOut].model_json_schema(mode="serialization")
    assert page["$defs"]["EventOut"]["properties"]["ts"]["format"] == "date-time"


# -- every response model goes through it -------------------------------------------------------


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The pydantic models an annotation names, at any depth (lists, unions, dicts …)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        for field in annotation.model_fields.values():
            yield from _models(field.annotation)
        return
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def test_every_response_model_is_a_response_model() -> None:
    """A model that is not would send its datetimes naive (and its nested ones too)."""
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    answered = {m for r in routes if r.response_model for m in _models(r.response_model)}
    assert len(answered) > 30  # the walk found them
    assert [m.__name__ for m in answered if not issubclass(m, ResponseModel)] == []


def test_no_route_answers_a_bare_datetime() -> None:
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                kind = route.response_model
                assert kind not in (datetime, datetime | None), route.path
                assert not isinstance(kind, types.UnionType) or datetime not in kind.__args__


# -- through the server -------------------------------------------------------------------------


@pytest.fixture
def small(server, tmp_path: Path) -> Served:
    users = tmp_path / "users.csv"
    users.write_text("user_id,created_at\nu1,2025-06-01 12:00:00\nu2,2025-06-02 12:00:00\n")
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,event,user_id,ts\n"
        "e1,page_viewed,u1,2025-07-01T09:00:00Z\n"
        "e2,page_viewed,u1,2025-07-01T17:30:00.25+08:00\n"
    )
    db = tmp_path / "store.duckdb"
    with Workspace.open(db) as ws:
        ws.ingest.files("users", [str(users)])
        ws.ingest.files("events", [str(events)])
        ws.profiles.build("2025-08-01")
    return server(db)


def test_consent_times_in_and_out(small: Served) -> None:
    """Request bodies take what they took (naive = UTC, offsets converted); the answer says
    the stored UTC time in RFC 3339."""
    admin = small.client("admin")
    cases = [
        ("2025-01-01T08:00:00+08:00", "2025-01-01T00:00:00.000000Z"),  # converted to UTC
        ("2025-01-02T08:00:00", "2025-01-02T08:00:00.000000Z"),  # naive: UTC
        ("2025-01-03 08:00:00.5", "2025-01-03T08:00:00.500000Z"),
        ("2025-01-04T08:00:00Z", "2025-01-04T08:00:00.000000Z"),
    ]
    for sent, answered in cases:
        r = admin.post(
            "/v1/users/u2/consents", json={"purpose": "analytics", "status": "DENIED", "ts": sent}
        )
        assert r.status_code == 201, r.text
        analytics = next(c for c in r.json()["consents"] if c["purpose"] == "analytics")
        assert analytics["ts"] == answered, sent
    got = small.client("read").get("/v1/users/u2/consents").json()["consents"]
    assert [c["ts"] for c in got if c["purpose"] == "analytics"] == [cases[-1][1]]


def test_job_as_of_takes_naive_and_offset_times(small: Served) -> None:
    admin = small.client("admin")
    for as_of in ("2025-08-01T00:00:00", "2025-08-01T08:00:00+08:00", "2025-08-01T00:00:00Z"):
        r = admin.post("/v1/jobs", json={"kind": "profile_build", "params": {"as_of": as_of}})
        assert r.status_code == 202, r.text
        assert r.json()["params"] == {"as_of": "2025-08-01T00:00:00.000000Z"}  # UTC, said so
        job = wait_job(admin, r.json()["job_id"], timeout=60)
        assert job["state"] == "succeeded", job  # an offset once reached the core: it failed
        assert all(re.match(STAMP, job[k]) for k in ("created_at", "started_at", "finished_at"))
    # A time with no UTC equivalent is a 422 naming the field, not a 500.
    r = admin.post(
        "/v1/jobs",
        json={"kind": "profile_build", "params": {"as_of": "0001-01-01T00:30:00+01:00"}},
    )
    assert r.status_code == 422 and "params.as_of" in r.json()["detail"], r.text
    r = admin.post(
        "/v1/users/u1/consents",
        json={"purpose": "marketing", "status": "GRANTED", "ts": "0001-01-01T00:30:00+01:00"},
    )
    assert r.status_code == 422 and "ts" in r.json()["detail"], r.text


def test_answers_say_the_stored_times(small: Served) -> None:
    reader, admin = small.client("read"), small.client("admin")
    events = reader.get("/v1/users/u1/events").json()["items"]
    assert [e["ts"] for e in events] == [
        "2025-07-01T09:30:00.250000Z",
        "2025-07-01T09:00:00.000000Z",
    ]
    user = reader.get("/v1/users/u1").json()
    assert user["traits"]["as_of"] == "2025-08-01T00:00:00.000000Z"
    assert user["traits"]["created_at"] == "2025-06-01T12:00:00.000000Z"
    assert user["traits"]["last_seen"] == "2025-07-01T09:30:00.250000Z"
    assert user["live"]["last_seen"] == "2025-07-01T09:30:00.250000Z"  # live traits agree
    store = small.app.state.jingzhun.readers.get().store  # type: ignore[attr-defined]
    created = store.scalar("SELECT created_at FROM api_keys WHERE name = 'test-admin'")
    keys = {k["name"]: k for k in admin.get("/v1/keys").json()["items"]}
    assert keys["test-admin"]["created_at"] == rfc3339(created)
    assert keys["test-admin"]["revoked_at"] is None
    made = admin.post("/v1/keys", json={"name": "fresh", "scope": "read"}).json()
    revoked = admin.delete("/v1/keys/fresh").json()
    assert re.match(STAMP, made["created_at"]) and re.match(STAMP, revoked["revoked_at"])
    assert revoked["created_at"] == made["created_at"]
    consent = {"purpose": "marketing", "status": "GRANTED"}
    assert admin.post("/v1/users/u1/consents", json=consent).status_code == 201
    audit = admin.get("/v1/audit").json()["items"]
    assert audit and all(re.match(STAMP, a["ts"]) for a in audit)
