"""``jingzhun apikey create|list|revoke`` as a user runs them: real processes, a real store."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from jingzhun.store import Store, apikeys
from tests.cli.subprocess_cli import error_line, human, one_json, run, sql

KEY = re.compile(r"jz_(ingest|read|admin)_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


def test_create_list_revoke(tmp_path: Path, db_path: Path) -> None:
    # A store is made if none is there yet: keys are set up before the server first runs.
    made = run(tmp_path, "apikey", "create", "--scope", "ingest", "--name", "shop-web", db=db_path)
    stdout = human(made)
    (plaintext,) = [m.group() for m in KEY.finditer(stdout)]  # printed once
    assert plaintext.startswith("jz_ingest_")
    assert "shown only once" in made.stderr
    assert plaintext not in made.stderr

    created = one_json(
        run(tmp_path, "apikey", "create", "--scope", "admin", "--name", "ops", "--json", db=db_path)
    )
    assert set(created) == {"name", "scope", "key", "key_id", "created_at"}
    assert (created["name"], created["scope"]) == ("ops", "admin")
    assert KEY.fullmatch(created["key"]) and created["key"].split("_")[2] == created["key_id"]

    with Store.open(db_path, read_only=True) as store:
        assert apikeys.verify(store, plaintext).name == "shop-web"
        assert apikeys.verify(store, created["key"]).scope == "admin"
    hashes = {h for (h,) in sql(db_path, "SELECT key_hash FROM api_keys")}
    assert hashes == {hashlib.sha256(k.encode()).hexdigest() for k in (plaintext, created["key"])}

    table = human(run(tmp_path, "apikey", "list", db=db_path))
    assert "shop-web" in table and "ops" in table and created["key_id"] in table
    assert "jz_" not in table and not any(h[:12] in table for h in hashes)

    listed = one_json(run(tmp_path, "apikey", "list", "--json", db=db_path))
    assert [k["name"] for k in listed["keys"]] == ["shop-web", "ops"]
    assert all(k["active"] and "key" not in k and "key_hash" not in k for k in listed["keys"])
    assert "jz_" not in str(listed) and not any(h in str(listed) for h in hashes)

    revoked = one_json(run(tmp_path, "apikey", "revoke", "shop-web", "--json", db=db_path))
    assert (revoked["name"], revoked["active"]) == ("shop-web", False)
    assert revoked["revoked_at"] is not None
    with Store.open(db_path, read_only=True) as store:
        assert apikeys.verify(store, plaintext) is None

    again = run(tmp_path, "apikey", "revoke", "shop-web", db=db_path)
    error_line(again, "'shop-web'", "jingzhun apikey list")
    shown = human(run(tmp_path, "apikey", "list", db=db_path))
    assert "revoked" in shown


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--scope", "write", "--name", "ci"), "--scope"),
        (("--scope", "", "--name", "ci"), "--scope"),
        (("--scope", "x" * 100_000, "--name", "ci"), "--scope"),
        (("--scope", "read", "--name", "a b"), "--name"),
        (("--scope", "read", "--name", "x" * 65), "--name"),
        (("--scope", "read", "--name", "hx[/][bold]"), "--name"),
        (("--scope", "read", "--name", "a\x1b[2J\u202eb"), "--name"),
        (("--name", "ci"), "--scope"),
        (("--scope", "read"), "--name"),
    ],
    ids=["unknown-scope", "empty-scope", "long-scope", "space", "long-name", "markup", "control",
         "no-scope", "no-name"],
)  # fmt: skip
def test_bad_create_exits_2_with_one_line_naming_the_option(
    tmp_path: Path, db_path: Path, args: tuple[str, ...], flag: str
) -> None:
    res = run(tmp_path, "apikey", "create", *args, db=db_path)
    line = error_line(res, flag)
    assert len(line) < 300 and "\x1b" not in line and "\u202e" not in line
    if db_path.exists():
        assert sql(db_path, "SELECT count(*) FROM api_keys") == [(0,)]


def test_a_name_in_use_exits_2_naming_name(tmp_path: Path, db_path: Path) -> None:
    one_json(
        run(tmp_path, "apikey", "create", "--scope", "read", "--name", "ci", "--json", db=db_path)
    )
    res = run(tmp_path, "apikey", "create", "--scope", "admin", "--name", "ci", db=db_path)
    error_line(res, "--name", "'ci'", "jingzhun apikey revoke ci")
    assert sql(db_path, "SELECT name, scope FROM api_keys") == [("ci", "read")]


@pytest.mark.parametrize(
    "name",
    ["nobody", "x" * 100_000, "hx[/][bold red]x[/]", "a\x1b[2J\u202eb", "%_*?{0}%s", "",
     "x'\"); DROP TABLE api_keys; --"],
    ids=["unknown", "long", "markup", "control", "pattern", "empty", "sql"],
)  # fmt: skip
def test_revoking_a_hostile_name_is_one_error_line(
    tmp_path: Path, db_path: Path, name: str
) -> None:
    one_json(
        run(tmp_path, "apikey", "create", "--scope", "read", "--name", "ci", "--json", db=db_path)
    )
    res = run(tmp_path, "apikey", "revoke", "--", name, db=db_path)
    line = error_line(res, "jingzhun apikey list")
    assert len(line) < 300 and "\x1b" not in line and "\u202e" not in line
    assert sql(db_path, "SELECT name, revoked_at IS NULL FROM api_keys") == [("ci", True)]


def test_list_and_revoke_need_a_store(tmp_path: Path, db_path: Path) -> None:
    error_line(run(tmp_path, "apikey", "list", db=db_path), "no store")
    error_line(run(tmp_path, "apikey", "revoke", "ci", db=db_path), "no store")
    assert not db_path.exists()


def test_list_of_a_store_without_keys(tmp_path: Path, db_path: Path) -> None:
    Store.open(db_path).close()
    assert "No API keys yet" in human(run(tmp_path, "apikey", "list", db=db_path))
    assert one_json(run(tmp_path, "apikey", "list", "--json", db=db_path)) == {"keys": []}
