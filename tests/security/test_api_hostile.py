"""The hostile strings of :mod:`tests.security.hostile` through every user-supplied field of the
server's routes and the campaign stage: ids in paths and queries, names, tags, `where`
expressions, template text, campaign names, consent statements. Each answer is a 2xx or a 4xx
with a problem body — never a 5xx —, no statement runs (the file the SQL payload would write
does not appear), and the store's tables hold what they held, but for the rows the accepted
requests were meant to write (audit entries)."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from jingzhun.workspace import Workspace
from tests.api.conftest import Served, served_store, start
from tests.security.hostile import TEXT, TRAVERSAL

#: Every hostile text, and a path traversal, as a user could type them. NUL and lone
#: surrogates cannot be sent as JSON text by a client (httpx refuses to encode them), so they
#: are sent as the escapes a hostile client would write (\u0000, \udcff).
VALUES = {**TEXT, "traversal": TRAVERSAL, "rtl-emoji": "\u202e🙂\u0645\u0631\u062d\u0628\u0627"}

SPEC = {
    "name": "spring",
    "channel": "email",
    "audience": {"where": "frequency >= 1"},
    "control": {"share": 0.3},
    "variants": [{"name": "a", "subject": "Hi {{ first_name }}", "body": "Hello"}],
}

#: (field path in the spec, how the value goes in) for the campaign builder's dry draw.
SPEC_FIELDS = [
    ("name",),
    ("audience", "where"),
    ("audience", "segment"),
    ("audience", "tags"),
    ("variants", 0, "name"),
    ("variants", 0, "subject"),
    ("variants", 0, "body"),
]


@pytest.fixture(scope="module")
def base(shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return served_store(tmp_path_factory.mktemp("hostile_api") / "base.duckdb", shop.file)


@pytest.fixture(scope="module")
def served(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = tmp_path_factory.mktemp("hostile_server") / "store.duckdb"
    shutil.copyfile(base, db)
    s = start(db)
    yield s
    s.stop()


def _fine(r: httpx.Response, what: str) -> None:
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    # The links in messages (/t/...) answer a bad signature with a bare 404 on purpose.
    if r.status_code >= 400 and " /t/" not in what:
        body = r.json()
        assert isinstance(body, dict) and body.get("detail"), f"{what}: no problem body"


def _send(client: httpx.Client, method: str, url: str, **kw: Any) -> httpx.Response:
    try:
        return client.request(method, url, **kw)
    except httpx.InvalidURL:  # the client itself refuses (a URL past its limits): not sent
        return httpx.Response(414, json={"detail": "not sent"})


def _json_text(value: str) -> str:
    """``value`` as JSON text a client may send (lone surrogates escaped)."""
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _tables(db: Path) -> dict[str, int]:
    with Workspace.open(db, read_only=True) as ws:
        return {
            t: ws.store.count(t)
            for (t,) in ws.store.rows(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
            )
        }


@pytest.mark.parametrize("name", sorted(VALUES))
def test_hostile_ids_and_queries_in_every_route(served: Served, name: str) -> None:
    value = VALUES[name]
    v = quote(value.encode("utf-8", "surrogateescape"), safe="")  # lone surrogates: raw bytes
    admin = served.client("admin")
    reads = [
        f"/v1/users/{v}",
        f"/v1/users/{v}/events",
        f"/v1/users/{v}/recommendations",
        f"/v1/users/{v}/consents",
        f"/v1/users/u00000001/recommendations?context={v}",
        f"/v1/users/u00000001/events?cursor={v}",
        f"/v1/items/{v}/similar",
        f"/v1/segments/{v}",
        f"/v1/segments?run={v}",
        f"/v1/models/{v}",
        f"/v1/campaigns/{v}",
        f"/v1/campaigns/{v}/report",
        f"/v1/campaigns/{v}/preview",
        f"/v1/jobs/{v}",
        f"/v1/quarantine?reason={v}",
        f"/v1/privacy/find?email={v}",
        f"/v1/privacy/find?phone={v}",
        f"/v1/privacy/users/{v}",
        f"/v1/audit?action={v}",
        f"/t/o/{v}?u={v}&s={v}",
        f"/t/c/spring?u={v}&s={v}&to={v}",
    ]
    for url in reads:
        _fine(_send(admin, "GET", url), f"GET {url[:80]}")
    text = _json_text(value)
    writes = [
        ("DELETE", f"/v1/privacy/users/{v}", None),
        ("POST", f"/v1/users/{v}/consents", {"purpose": "marketing", "status": "GRANTED"}),
        ("POST", "/v1/users/u00000001/consents", {"purpose": text, "status": "GRANTED"}),
        ("POST", "/v1/users/u00000001/consents", {"purpose": "marketing", "status": text}),
        ("POST", "/v1/jobs", {"kind": text}),
        ("POST", "/v1/jobs", {"kind": "segment_run", "params": {"method": text}}),
        ("POST", "/v1/keys", {"name": text, "scope": "read"}),
        ("POST", f"/v1/campaigns/{v}/send", None),
        ("POST", f"/t/u/{v}?u={v}&s={v}", None),
    ]
    for method, url, body in writes:
        r = _send(admin, method, url, json=body) if body is not None else _send(admin, method, url)
        _fine(r, f"{method} {url[:80]} {str(body)[:80]}")


@pytest.mark.parametrize("field", SPEC_FIELDS, ids=lambda f: ".".join(map(str, f)))
def test_hostile_campaign_specs_are_refused_or_drawn_never_a_crash(
    served: Served, field: tuple[Any, ...]
) -> None:
    admin = served.client("admin")
    for name, value in sorted(VALUES.items()):
        spec = copy.deepcopy(SPEC)
        node: Any = spec
        for key in field[:-1]:
            node = node[key]
        text = _json_text(value)
        node[field[-1]] = [text] if field[-1] == "tags" else text
        for route in ("/v1/campaigns/audience",):
            _fine(admin.post(route, json=spec), f"{route} {'.'.join(map(str, field))}={name}")


def test_nothing_ran_and_the_store_kept_its_rows(
    served: Served, base: Path, tmp_path: Path
) -> None:
    """After the hostile requests above (this test runs after them in the module)."""
    served.stop()
    before, after = _tables(base), _tables(served.db)
    written = {"audit_log", "jobs", "api_keys", "consents", "schema_version"}
    assert {t: n for t, n in after.items() if t not in written} == {
        t: n for t, n in before.items() if t not in written
    }
    assert not list(Path.cwd().glob("jz-pwned*")) and not list(served.db.parent.glob("jz-pwned*"))
