"""The recipes of docs/datasets.md run as written, on excerpts in each log's exact format.

Each section's ``sh`` block runs through ``bash`` in an empty folder, with the installed
``jingzhun`` command, after the section's excerpt from ``tests/data/`` is copied in under the
file name the recipe uses. Then the store is read to check what the recipe says the user will
see: the ingest counts, the profiles, and the recommenders beating popularity.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.test_readme_tour import bash

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "datasets.md"
DATA = ROOT / "tests" / "data"

#: Section -> (the file its recipe reads, the excerpt standing for it, the store it writes).
RECIPES = {
    "Taobao UserBehavior": ("UserBehavior.csv", "taobao_userbehavior.csv", "taobao.duckdb"),
    "RetailRocket": ("events.csv", "retailrocket_events.csv", "retailrocket.duckdb"),
    "UCI Online Retail": ("online_retail.csv", "online_retail.csv", "retail.duckdb"),
    "Segment / RudderStack message archives": (
        "segment-archive.jsonl",
        "segment_shop.jsonl",
        "segment.duckdb",
    ),
}
#: What each recipe's ingest answers on its excerpt, as docs/datasets.md quotes it.
INGESTED = {
    "Taobao UserBehavior": {"rows_read": 1280, "inserted": 1280, "quarantined": 0},
    "RetailRocket": {"rows_read": 930, "inserted": 930, "quarantined": 0},
    "UCI Online Retail": {"rows_read": 341, "inserted": 300, "duplicates": 2, "quarantined": 39},
    "Segment / RudderStack message archives": {"rows_read": 422, "inserted": 422},
}
PROFILES = {
    "Taobao UserBehavior": 60,
    "RetailRocket": 70,
    "UCI Online Retail": 40,
    "Segment / RudderStack message archives": 40,
}


def sections(doc: str) -> dict[str, list[str]]:
    """Each ``##`` section's first ``sh`` block as commands (continued lines joined)."""
    found: dict[str, list[str]] = {}
    for match in re.finditer(r"^## (.+?)\n(.*?)(?=^## |\Z)", doc, re.S | re.M):
        block = re.search(r"^```sh\n(.*?)^```", match.group(2), re.S | re.M)
        if block:
            text = block.group(1).replace("\\\n", " ")
            found[match.group(1).strip()] = [c for c in text.splitlines() if c.strip()]
    return found


def test_every_recipe_has_an_excerpt() -> None:
    assert set(sections(DOC.read_text(encoding="utf-8"))) == set(RECIPES)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run every recipe once; the store of each."""
    stores = {}
    for name, commands in sections(DOC.read_text(encoding="utf-8")).items():
        file, excerpt, store = RECIPES[name]
        folder = tmp_path_factory.mktemp(re.sub(r"\W+", "-", name).strip("-").lower())
        shutil.copy(DATA / excerpt, folder / file)
        for command in commands:
            assert file in commands[0]
            done = bash(command, folder)
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        stores[name] = folder / store
    return stores


def _sql(store: Path, query: str) -> list[tuple]:
    with duckdb.connect(str(store), read_only=True) as con:
        return con.execute(query).fetchall()


@pytest.mark.parametrize("name", list(RECIPES))
def test_the_ingest_answers_what_the_recipe_says(ran, name) -> None:
    (row,) = _sql(
        ran[name],
        "SELECT rows_read, inserted, duplicates, quarantined, options FROM ingest_batches "
        "WHERE kind = 'events'",
    )
    got = dict(zip(["rows_read", "inserted", "duplicates", "quarantined"], row[:4], strict=True))
    for key, value in INGESTED[name].items():
        assert got[key] == value, key
    options = json.loads(row[4])
    if name == "Taobao UserBehavior":
        assert options["ts_unit"] == "s"
        assert _sql(ran[name], "SELECT count(*), count(category) FROM items") == [(72, 72)]
        (orders,) = _sql(ran[name], "SELECT count(*) FROM events WHERE order_id IS NOT NULL")[0]
        assert orders == 113
    if name == "RetailRocket":
        assert options["ts_unit"] == "ms"
        assert _sql(ran[name], "SELECT min(ts) >= '2015-06-01' FROM events") == [(True,)]
    if name == "UCI Online Retail":
        refunds = _sql(
            ran[name],
            "SELECT count(*), count(*) FILTER (WHERE properties->>'refund_id' LIKE 'C%') "
            "FROM events WHERE event = 'order_refunded'",
        )
        assert refunds == [(14, 14)]
        reasons = _sql(ran[name], "SELECT DISTINCT reason FROM quarantine")
        assert reasons == [("needs a user_id or an anonymous_id",)]
    if name.startswith("Segment"):
        assert options["format"] == "segment"
        assert _sql(ran[name], "SELECT count(*) FROM users") == [(30,)]
        assert _sql(ran[name], "SELECT count(*) FROM pii WHERE email_index IS NOT NULL") == [(30,)]
        assert _sql(ran[name], "SELECT count(*) FROM identities") == [(40,)]
        custom = _sql(ran[name], "SELECT DISTINCT event FROM events WHERE custom")
        assert custom == [("video_played",)]


@pytest.mark.parametrize("name", list(RECIPES))
def test_profiles_are_built_for_every_customer(ran, name) -> None:
    (n,) = _sql(ran[name], "SELECT count(DISTINCT user_id) FROM profiles")[0]
    assert n == PROFILES[name]
    if name == "UCI Online Retail":
        # Net of refunds: what the customers kept, never what they first paid.
        (net, gross, refunded) = _sql(
            ran[name],
            "SELECT (SELECT sum(monetary) FROM profiles), "
            "(SELECT sum(revenue) FROM events WHERE event = 'order_completed'), "
            "(SELECT sum(refunded) FROM profiles)",
        )[0]
        assert refunded > 0
        assert net == pytest.approx(gross - refunded)


@pytest.mark.parametrize("name", list(RECIPES))
def test_the_recommenders_beat_popularity(ran, name) -> None:
    folder = ran[name].parent
    done = bash(f"jingzhun --db {ran[name].name} recommend evaluate --json", folder)
    assert done.returncode == 0, done.stderr
    models = json.loads(done.stdout)["models"]
    best = max(m["ndcg"] for m in models.values())
    assert best > 1.5 * models["popularity"]["ndcg"]
