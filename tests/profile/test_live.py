"""Real-time profiles: a batch folded into the live state agrees with the next full build.

Every test runs on a real DuckDB file holding the simulated shop, with profiles built once as
of T1 (just after its latest event). New events then arrive as ingest batches; their stored
rows go to :meth:`LiveProfiles.apply`, as the server's writer will hand them over, and a full
``ws.profiles.build(as_of=T)`` must give the same traits as ``live.get(user, as_of=T)``:
counts exactly, amounts and shares to 1e-9.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from jingzhun.errors import InputError
from jingzhun.profile.live import LIVE_TRAITS, LiveProfiles
from jingzhun.recommend.interactions import interaction_weights, interactions_frame
from jingzhun.workspace import Workspace

HEADER = "event_id,event,user_id,anonymous_id,order_id,item_id,quantity,price,revenue,channel,ts"


@pytest.fixture(scope="module")
def base(shop, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    """The shop ingested (users, items, events) with profiles built as of T1, its time."""
    path = tmp_path_factory.mktemp("live") / "base.duckdb"
    ws = Workspace.open(path, config=None)
    try:
        for kind in ("users", "items", "events"):
            ws.ingest.files(kind, [shop.file(kind)])
        t1 = ws.store.scalar("SELECT max(ts) FROM events") + timedelta(seconds=1)
        ws.profiles.build(as_of=t1)
    finally:
        ws.close()
    return path, t1


@pytest.fixture
def shopws(base: tuple[Path, datetime], tmp_path: Path) -> Iterator[Workspace]:
    path = tmp_path / "store.duckdb"
    shutil.copy(base[0], path)
    ws = Workspace.open(path, config=None)
    try:
        yield ws
    finally:
        ws.close()


# -- helpers ------------------------------------------------------------------------------------


def col(ws: Workspace, sql: str, params: list | None = None) -> list[Any]:
    return [r[0] for r in ws.store.rows(sql, params)]


def ingest_rows(ws: Workspace, folder: Path, name: str, rows: list[str]) -> str:
    path = folder / f"{name}.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    result = ws.ingest.files("events", [path])
    assert result.quarantined == 0
    return result.batch_id


def batch_rows(ws: Workspace, batch_id: str) -> pa.Table:
    """What the writer hands to apply: the batch's rows as stored."""
    return ws.store.con.sql(
        "SELECT * FROM events WHERE batch_id = ?", params=[batch_id]
    ).to_arrow_table()


def profiles(ws: Workspace, users: list[str]) -> dict[str, dict[str, Any]]:
    cur = ws.store.con.execute(
        "SELECT * FROM profiles WHERE user_id IN (SELECT unnest(?::VARCHAR[]))", [users]
    )
    names = [d[0] for d in cur.description]
    return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(same(a[k], b[k]) for k in a)
        )
    return a == b and type(a) is type(b)


def assert_agree(
    live: LiveProfiles, ws: Workspace, users: list[str], at: datetime, interactions: bool = False
) -> int:
    """Every live trait of ``users`` as of ``at`` equals the built profile's (and, with
    ``interactions``, their interactions equal the recommender's history query); the users
    compared (those the build has a row for)."""
    built = profiles(ws, users)
    assert built, "no built profiles to compare"
    wrong = []
    for user, row in built.items():
        got = live.get(user, as_of=at)
        assert got["as_of"] == at
        wrong += [(user, k, got[k], row[k]) for k in LIVE_TRAITS if not same(got[k], row[k])]
    assert not wrong, wrong[:10]
    if interactions:
        held = 0
        for user in users:
            mine = live.interactions(user, as_of=at)
            held += len(mine) > 0
            query = interactions_frame(ws.store, ws.settings, at, [user])
            assert mine["item_id"].tolist() == query["item_id"].tolist(), user
            assert mine["purchased"].tolist() == query["purchased"].tolist(), user
            np.testing.assert_allclose(mine["weight"], query["weight"], rtol=1e-9, err_msg=user)
        assert held >= len(users) // 2  # most users compared have interactions
    return len(built)


def at(t: datetime, minutes: float) -> str:
    return (t + timedelta(minutes=minutes)).isoformat(sep=" ")


# -- the incremental path equals a rebuild ------------------------------------------------------


def test_a_batch_folded_live_equals_the_next_full_build(
    shopws: Workspace, base: tuple[Path, datetime], tmp_path: Path
) -> None:
    ws, t1 = shopws, base[1]
    t = t1 + timedelta(days=3)
    kept = interaction_weights(ws.settings)
    live = LiveProfiles(ws.store, ws.settings, clock=lambda: t, interactions=kept)

    buyers = col(ws, "SELECT user_id FROM profiles WHERE frequency >= 2 ORDER BY user_id LIMIT 14")
    viewers = col(
        ws,
        "SELECT user_id FROM profiles WHERE frequency = 0 AND n_product_viewed >= 3 "
        "ORDER BY user_id LIMIT 4",
    )
    single = col(
        ws, "SELECT user_id FROM profiles WHERE frequency = 1 ORDER BY monetary, user_id LIMIT 1"
    )[0]
    anon, anon_user = ws.store.rows(
        "SELECT i.anonymous_id, i.user_id FROM identities i JOIN profiles p USING (user_id) "
        "WHERE p.frequency = 0 ORDER BY 1 LIMIT 1"
    )[0]
    # A device with anonymous history and no link yet: batch 2 links it to `linker`.
    lone = col(
        ws,
        "SELECT anonymous_id FROM events WHERE user_id IS NULL "
        "AND anonymous_id NOT IN (SELECT anonymous_id FROM identities) "
        "GROUP BY 1 HAVING count(*) >= 2 ORDER BY 1 LIMIT 1",
    )[0]
    lone_events = ws.store.scalar("SELECT count(*) FROM events WHERE anonymous_id = ?", [lone])
    linker = viewers[-1]
    refunder, splitter, future, unheld = buyers[0], buyers[1], buyers[2], buyers[-1]
    # A user whose only new event is older than their latest weighted one (it arrived late).
    late = buyers[11]
    late_item, late_ts = ws.store.rows(
        "SELECT item_id, ts - INTERVAL 5 DAY FROM events WHERE user_id = ? "
        "AND event = 'product_viewed' ORDER BY ts DESC, item_id LIMIT 1",
        [late],
    )[0]
    newcomer = "u_live_newcomer"
    old_order = col(
        ws,
        "SELECT order_id FROM events WHERE user_id = ? AND event = 'order_completed' "
        "ORDER BY ts, order_id LIMIT 1",
        [splitter],
    )[0]
    items = ws.store.rows(
        "SELECT item_id, price FROM (SELECT item_id, price, category, row_number() OVER "
        "(PARTITION BY category ORDER BY item_id) AS r FROM items WHERE price IS NOT NULL) "
        "WHERE r = 1 ORDER BY category LIMIT 6"
    )
    old_id = col(ws, "SELECT event_id FROM events ORDER BY event_id LIMIT 1")[0]

    rows: list[str] = []
    k = 0

    def add(
        event: str,
        user: str = "",
        anon_id: str = "",
        order: str = "",
        item: int | str = -1,
        qty: float | None = None,
        revenue: float | None = None,
        minutes: float | None = None,
        event_id: str | None = None,
        ts: datetime | None = None,
    ) -> None:
        nonlocal k
        k += 1
        if isinstance(item, str):  # an item by id, without a price
            item_id, price = item, None
        else:
            item_id, price = items[item] if item >= 0 else ("", None)
        when = ts.isoformat(sep=" ") if ts is not None else at(t1, minutes if minutes else k)
        fields = [
            event_id or f"live-{k:04d}",
            event,
            user,
            anon_id,
            order,
            item_id,
            "" if qty is None else str(qty),
            "" if price is None else str(price),
            "" if revenue is None else f"{revenue:.2f}",
            "web",
            when,
        ]
        rows.append(",".join(fields))

    for i, user in enumerate([*buyers[:10], *viewers]):
        add("page_viewed", user)
        add("product_viewed", user, item=i % 6)
        add("product_viewed", user, item=(i + 1) % 6)
        add("product_added", user, item=(i + 2) % 6)
        add("checkout_started", user)
        order = f"o-live-{i}"
        for line, qty in enumerate((1, 2, 1)):  # an order of three lines, one discounted
            price = items[(i + line) % 6][1]
            add(
                "order_completed",
                user,
                order=order,
                item=(i + line) % 6,
                qty=qty,
                revenue=qty * price * (0.9 if line == 1 else 1.0),
            )
        if i % 3 == 0:
            add("email_delivered", user)
            add("email_opened", user)
    gross = ws.store.scalar(
        "SELECT sum(revenue) FROM events WHERE user_id = ? AND event = 'order_completed'", [single]
    )
    add("order_refunded", refunder, order=old_order, item=0, qty=1, revenue=12.5)
    add("order_refunded", single, order="o-refund-big", item=1, qty=1, revenue=gross + 50)
    add("order_completed", splitter, order=old_order, item=3, qty=1, revenue=7.25)
    add("product_viewed", anon_id=anon, item=4)  # an anonymous event of a stitched user
    add("identify", linker, anon_id=lone)  # links `lone`, whose history then joins `linker`
    add("product_viewed", anon_id=lone, item=5)
    add("product_viewed", unheld, item=2)  # a user not held: seeded after the batch
    add("product_viewed", late, item=late_item, ts=late_ts)  # the latest item, seen before
    add("page_viewed", newcomer)
    add("product_added", newcomer, item=1)
    add("product_viewed", future, item=5, ts=t + timedelta(days=1))  # not yet due at T
    add("page_viewed", buyers[3], event_id=old_id)  # a duplicate of a stored event
    add("page_viewed", buyers[4], event_id="live-dup")
    add("page_viewed", buyers[4], event_id="live-dup")  # a duplicate within the batch

    touched = sorted({*buyers[:10], *viewers, single, anon_user, unheld, newcomer, late})
    untouched = [
        u
        for u in col(ws, "SELECT user_id FROM profiles ORDER BY user_id")
        if u not in touched and u not in buyers
    ]
    sample = random.Random(7).sample(untouched, 150)
    held = [u for u in touched if u not in (unheld, newcomer)] + sample[:100]
    assert live.load(held) == len(held)
    before = {u: live.get(u, as_of=t) for u in touched if u in live}

    batch = ingest_rows(ws, tmp_path, "batch2", rows)
    stored = batch_rows(ws, batch)
    assert stored.num_rows == len(rows) - 2  # the two duplicates were not stored
    result = live.apply(stored)
    assert result.dropped_users == 1 and linker not in live  # the new link: seeded again
    assert result.pending == 1  # the future event waits
    assert unheld not in live and newcomer not in live
    assert result.users == len(held) - len(sample[:100]) - 1
    # Applied twice (a retried hand-over), a batch counts once.
    assert live.apply(stored).folded == 0

    ws.profiles.build(as_of=t)
    compared = assert_agree(live, ws, [*touched, *sample, *buyers], t, interactions=True)
    assert compared == len({*touched, *sample, *buyers})  # the newcomer too (events make a row)
    assert live.get(newcomer, as_of=t)["n_product_added"] == 1
    # Seeded from the store alone, the same users agree too (the future event waits there).
    again = LiveProfiles(ws.store, ws.settings, clock=lambda: t, interactions=kept)
    assert_agree(again, ws, [future, linker, newcomer, late, single], t, interactions=True)
    # The values did move, by the batch and not by a reseed (the held users were folded).
    after = {u: live.get(u, as_of=t) for u in before}
    assert all(after[u]["events"] > before[u]["events"] for u in buyers[:10])
    assert after[splitter]["frequency"] == before[splitter]["frequency"] + 1  # o-live-1
    assert after[single]["monetary"] == 0.0 and after[single]["refunded"] > 0
    assert after[anon_user]["events"] == before[anon_user]["events"] + 1
    linked = live.get(linker, as_of=t)
    assert linked["events"] >= before[linker]["events"] + lone_events + 1

    # The future event counts once as_of passes it, here and in a build as of then.
    t2 = t + timedelta(days=2)
    ws.profiles.build(as_of=t2)
    assert_agree(live, ws, [future, *touched[:5], *sample[:20]], t2, interactions=True)
    with pytest.raises(InputError) as err:
        live.get(future, as_of=t)
    assert err.value.param == "as_of"

    # By default, as the recommender's history query: just after the latest stored event
    # (the future one included), whatever the clock says.
    latest = ws.store.scalar("SELECT max(ts) FROM events") + timedelta(microseconds=1)
    for user in [future, refunder, splitter, anon_user]:
        mine = live.interactions(user)
        query = interactions_frame(ws.store, ws.settings, latest, [user])
        assert mine["item_id"].tolist() == query["item_id"].tolist()
        np.testing.assert_allclose(mine["weight"], query["weight"], rtol=1e-9)


def test_a_user_seeded_between_commit_and_apply_counts_the_batch_once(
    shopws: Workspace, base: tuple[Path, datetime], tmp_path: Path
) -> None:
    ws, t1 = shopws, base[1]
    t = t1 + timedelta(days=1)
    live = LiveProfiles(ws.store, ws.settings, clock=lambda: t)
    held, late = col(ws, "SELECT user_id FROM profiles WHERE frequency >= 1 ORDER BY 1 LIMIT 2")
    live.load([held])
    batch = ingest_rows(
        ws,
        tmp_path,
        "b3",
        [
            f"r1,order_completed,{late},,o-r-1,sku000001,2,10,19.5,app,{at(t1, 5)}",
            f"r2,product_viewed,{late},,,sku000002,,,,app,{at(t1, 6)}",
            f"r3,product_viewed,{held},,,sku000003,,,,app,{at(t1, 7)}",
        ],
    )
    seeded = live.get(late, as_of=t)  # the batch has committed but is not applied yet
    result = live.apply_batch(batch)
    assert result.folded == 1 and result.ignored == 2
    assert live.get(late, as_of=t) == seeded
    ws.profiles.build(as_of=t)
    assert assert_agree(live, ws, [held, late], t) == 2


def test_custom_events_are_ignored_like_analytics_ignore_them(
    shopws: Workspace, base: tuple[Path, datetime]
) -> None:
    ws, t1 = shopws, base[1]
    t = t1 + timedelta(days=1)
    live = LiveProfiles(ws.store, ws.settings, clock=lambda: t)
    user = col(ws, "SELECT user_id FROM profiles WHERE events > 0 ORDER BY 1 LIMIT 1")[0]
    live.load([user])
    stamp = (t1 + timedelta(minutes=3)).isoformat() + "Z"
    messages = [
        {
            "type": "track",
            "event": "Loyalty Points Earned",
            "userId": user,
            "messageId": "m1",
            "timestamp": stamp,
            "properties": {"points": 5},
        },
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": user,
            "messageId": "m2",
            "timestamp": stamp,
            "properties": {"product_id": "sku000004", "price": 9.5},
        },
    ]
    batch, _ = ws.ingest.messages("\n".join(json.dumps(m) for m in messages).encode())
    rows = batch_rows(ws, batch.batch_id)
    assert rows["custom"].to_pylist().count(True) == 1
    assert live.apply(rows).folded == 1
    ws.profiles.build(as_of=t)
    assert_agree(live, ws, [user], t)


def test_the_least_recently_touched_users_go_first_and_come_back_seeded(
    shopws: Workspace, base: tuple[Path, datetime]
) -> None:
    ws, t1 = shopws, base[1]
    live = LiveProfiles(ws.store, ws.settings, capacity=3, clock=lambda: t1)
    users = col(ws, "SELECT user_id FROM profiles WHERE events > 0 ORDER BY 1 LIMIT 5")
    live.load(users)
    assert len(live) == 3 and users[0] not in live and users[-1] in live
    assert assert_agree(live, ws, users, t1) == 5  # the stored build as of T1
    assert len(live) == 3
    with pytest.raises(InputError, match="ts"):
        live.apply(pa.table({"event": ["page_viewed"]}))
    with pytest.raises(InputError):
        LiveProfiles(ws.store, ws.settings, capacity=0)


def test_5000_rows_apply_and_1000_gets_timed(
    shopws: Workspace, base: tuple[Path, datetime], tmp_path: Path
) -> None:
    """Not a timed assertion: the figures are printed (run with -s) for the docs."""
    ws, t1 = shopws, base[1]
    t = t1 + timedelta(days=2)
    live = LiveProfiles(ws.store, ws.settings, clock=lambda: t)
    users = col(ws, "SELECT user_id FROM profiles WHERE events > 0 ORDER BY 1 LIMIT 1000")
    started = time.perf_counter()
    live.load(users)
    seed_s = time.perf_counter() - started
    kinds = ("page_viewed", "product_viewed", "product_added", "order_completed", "email_opened")
    rows = []
    for i, user in enumerate(users):
        for j, kind in enumerate(kinds):
            n = i * 5 + j
            item = f"sku{(n * 7) % 300 + 1:06d}" if kind != "page_viewed" else ""
            order, qty, rev = (f"o-bulk-{i}", "1", "20") if kind == "order_completed" else ("",) * 3
            rows.append(
                f"bulk-{n},{kind},{user},,{order},{item},{qty},,{rev},web,{at(t1, n / 100)}"
            )
    batch = ingest_rows(ws, tmp_path, "bulk", rows)
    stored = batch_rows(ws, batch)
    assert stored.num_rows == 5000

    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:  # gets from request threads while the writer applies
        try:
            while not stop.is_set():
                for user in users[:50]:
                    live.get(user)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for th in threads:
        th.start()
    started = time.perf_counter()
    result = live.apply(stored)
    apply_s = time.perf_counter() - started
    stop.set()
    for th in threads:
        th.join()
    assert not errors, errors
    assert result.folded == 5000 and result.users == 1000

    started = time.perf_counter()
    for user in users:
        live.get(user, as_of=t)
    get_s = time.perf_counter() - started
    print(
        f"\nlive: seed 1000 users {seed_s * 1000:.0f} ms; apply 5000 rows {apply_s * 1000:.1f} ms;"
        f" 1000 gets {get_s * 1000:.1f} ms ({get_s * 1e6 / 1000:.0f} µs each)"
    )
    ws.profiles.build(as_of=t)
    assert assert_agree(live, ws, users, t) == 1000


def test_a_device_linked_after_as_of_is_not_stitched_before_it(
    shopws: Workspace, base: tuple[Path, datetime], tmp_path: Path
) -> None:
    """As in the build: an anonymous event counts once both it and its device's link are
    before as_of; until then it waits, through a seed and through a batch alike."""
    ws, t1 = shopws, base[1]
    t = t1 + timedelta(days=1)
    live = LiveProfiles(ws.store, ws.settings, clock=lambda: t)
    user = col(ws, "SELECT user_id FROM profiles WHERE frequency >= 1 ORDER BY 1 LIMIT 1")[0]
    live.load([user])
    linked_at = t + timedelta(hours=6)  # a device's first known event, after T
    first = ingest_rows(
        ws,
        tmp_path,
        "f1",
        [
            f"f1,page_viewed,,dev-later,,,,,,web,{at(t1, 1)}",
            f"f2,product_viewed,,dev-later,,sku000010,,,,web,{at(t1, 2)}",
            f"f3,identify,{user},dev-later,,,,,,web,{linked_at.isoformat(sep=' ')}",
        ],
    )
    assert live.apply(batch_rows(ws, first)).dropped_users == 1  # the new link
    live.get(user, as_of=t)  # seeded again: the device's events wait for the link
    second = ingest_rows(
        ws, tmp_path, "f2", [f"f4,product_added,,dev-later,,sku000011,,,,web,{at(t1, 3)}"]
    )
    assert live.apply(batch_rows(ws, second)).pending == 1
    ws.profiles.build(as_of=t)
    assert_agree(live, ws, [user], t)
    later = linked_at + timedelta(seconds=1)
    ws.profiles.build(as_of=later)
    assert_agree(live, ws, [user], later)
    assert live.get(user, as_of=later)["n_product_added"] >= 1
