"""Point in time: a profile built as of T sees nothing that happened at or after T.

Rebuilding as of T after later events, identity links and users arrived gives the same
profiles; a link made after T does not stitch; the default as_of is just after the latest
event; and (Hypothesis) a store holding every event built as of t equals a store holding only
the events before t.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from jingzhun.config import Settings, TagSettings
from jingzhun.store import Store
from jingzhun.workspace import Workspace

Write = Callable[..., Path]

T = datetime(2024, 3, 10)
HEADER = "event_id,event,user_id,anonymous_id,order_id,item_id,quantity,price,revenue,channel,ts\n"

ITEMS = "item_id,category,brand,price\ni1,beauty,Lumi,10\ni2,home,Casa,20\ni3,beauty,Aura,30\n"
USERS = "user_id,created_at\nu1,2024-01-01\nu2,2024-02-01\nu3,2024-03-01\n"

BEFORE = HEADER + (
    "a01,page_viewed,,dA,,,,,,web,2024-03-01 09:00:00\n"
    "a02,identify,u1,dA,,,,,,web,2024-03-02 09:00:00\n"
    "a03,product_viewed,u1,,,i1,,,,web,2024-03-02 09:05:00\n"
    "a04,order_completed,u1,,o1,i1,1,10,,web,2024-03-02 09:10:00\n"
    "a05,page_viewed,,dB,,,,,,app,2024-03-03 10:00:00\n"
    "a06,product_viewed,,dB,,i2,,,,app,2024-03-03 10:01:00\n"
    "a07,order_completed,u2,,o2,i2,2,20,35,app,2024-03-04 11:00:00\n"
    "a08,email_delivered,u2,,,,,,,email,2024-03-05 08:00:00\n"
    "a09,email_opened,u2,,,,,,,email,2024-03-05 09:00:00\n"
    "a10,product_added,u2,,,i3,,,,app,2024-03-09 23:59:59.999999\n"
    "a11,page_viewed,u1,,,,,,,web,2024-03-10 00:00:00\n"  # exactly T: not before it
)
# After T: new orders, a link of device dB (whose anonymous events came before T) to u2,
# a new device and a new user, more email.
AFTER = HEADER + (
    "b01,order_completed,u1,,o3,i3,1,30,30,app,2024-03-11 10:00:00\n"
    "b02,order_completed,u2,,o4,i1,3,10,25,app,2024-03-11 12:00:00\n"
    "b03,identify,u2,dB,,,,,,app,2024-03-12 08:00:00\n"
    "b04,page_viewed,,dC,,,,,,web,2024-03-13 10:00:00\n"
    "b05,signed_up,u9,dC,,,,,,web,2024-03-13 10:05:00\n"
    "b06,product_viewed,u2,,,i1,,,,app,2024-03-15 10:00:00\n"
    "b07,email_opened,u1,,,,,,,email,2024-03-15 11:00:00\n"
    "b08,product_viewed,u3,,,i3,,,,web,2024-03-16 10:00:00\n"
)
LATER_USERS = "user_id,created_at\nu9,2024-03-13 10:05:00\n"


def plain(value: Any) -> Any:
    """A cell that compares by value: arrays as tuples, maps as sorted rounded tuples."""
    if isinstance(value, dict):
        return tuple(sorted((k, round(v, 12)) for k, v in value.items()))
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, list):
        return tuple(value)
    return value


def frame(ws: Workspace) -> pd.DataFrame:
    df = ws.profiles()
    for col in ("category_affinity", "top_categories", "top_brands", "last_items"):
        df[col] = df[col].map(plain)
    return df


def setup(ws: Workspace, write: Write) -> None:
    ws.ingest("items", [write("items.csv", ITEMS)])
    ws.ingest("users", [write("users.csv", USERS)])
    ws.ingest("events", [write("before.csv", BEFORE)])


def test_later_events_links_and_users_change_nothing_as_of_t(ws: Workspace, write: Write) -> None:
    setup(ws, write)
    # T given in another time zone: as_of is T in UTC.
    assert ws.profile_build("2024-03-10T08:00:00+08:00").as_of == T
    before = frame(ws)
    affinity = ws.sql("SELECT * FROM profile_affinity ORDER BY user_id, category")
    tags = ws.sql("SELECT user_id, tag, value, source FROM tags ORDER BY ALL")

    # The fixture's own expectations as of T: the event at exactly T is left out.
    assert before["user_id"].tolist() == ["u1", "u2", "u3"]
    assert set(before["as_of"]) == {pd.Timestamp(T)}
    p = before.set_index("user_id")
    assert p.loc["u1", "events"] == 4  # a01 (dA, linked before T), a02, a03, a04; not a11
    assert p.loc["u1", "last_seen"] == pd.Timestamp("2024-03-02 09:10:00")
    assert p.loc["u1", "n_page_viewed"] == 1
    assert p.loc["u2", "events"] == 4  # dB is not linked (yet)
    assert p.loc["u2", "last_seen"] == pd.Timestamp("2024-03-09 23:59:59.999999")
    assert p.loc["u2", "days_since_seen"] == 0
    assert p.loc["u2", "frequency"] == 1

    # A fresh Workspace for the later ingest: in the one that built, ingesting a CSV fails
    # (see test_build.py::test_ingest_after_a_build_in_the_same_workspace).
    ws.close()
    with Workspace.open(ws.path, config=None) as again:
        later = again.ingest("events", [write("after.csv", AFTER)])
        assert later.identities_linked == 2  # dB -> u2 and dC -> u9, both after T
        again.ingest("users", [write("later_users.csv", LATER_USERS)])
        again.profile_build(T)
        check_unchanged(again, before, affinity, tags)


def check_unchanged(
    ws: Workspace, before: pd.DataFrame, affinity: pd.DataFrame, tags: pd.DataFrame
) -> None:
    after = frame(ws)
    pd.testing.assert_frame_equal(after, before)
    pd.testing.assert_frame_equal(
        ws.sql("SELECT * FROM profile_affinity ORDER BY user_id, category"), affinity
    )
    pd.testing.assert_frame_equal(
        ws.sql("SELECT user_id, tag, value, source FROM tags ORDER BY ALL"), tags
    )
    # And the later data is really there (test_a_link_made_after_as_of_does_not_stitch
    # builds after it).
    assert ws.store.count("events") == 11 + 8
    assert ws.store.rows("SELECT anonymous_id, user_id FROM identities ORDER BY 1") == [
        ("dA", "u1"),
        ("dB", "u2"),
        ("dC", "u9"),
    ]
    assert ws.store.scalar("SELECT created_at FROM users WHERE user_id = 'u9'") == datetime(
        2024, 3, 13, 10, 5
    )


def test_a_link_made_after_as_of_does_not_stitch(ws: Workspace, write: Write) -> None:
    setup(ws, write)
    ws.ingest("events", [write("after.csv", AFTER)])  # dB -> u2 on 2024-03-12

    ws.profile_build(T)
    early = ws.profiles().set_index("user_id")
    # u2's own events only: a07, a08, a09, a10; dB's view of i2 and page view are not theirs yet.
    assert early.loc["u2", "events"] == 4
    assert early.loc["u2", "n_page_viewed"] == 0
    assert early.loc["u2", "n_product_viewed"] == 0
    assert early.loc["u2", "first_seen"] == pd.Timestamp("2024-03-04 11:00:00")
    # The device's anonymous events are nobody's as of T: u9 (dC) does not exist yet either.
    assert "u9" not in early.index

    ws.profile_build("2024-03-12 08:00:01")
    late = ws.profiles().set_index("user_id")
    # Now dB's a05, a06 and the identify b03 are u2's, as is the later order b02.
    assert late.loc["u2", "events"] == 4 + 2 + 1 + 1
    assert late.loc["u2", "n_page_viewed"] == 1
    assert late.loc["u2", "n_product_viewed"] == 1
    assert late.loc["u2", "first_seen"] == pd.Timestamp("2024-03-03 10:00:00")

    # A link at exactly as_of is not yet made: linked_at must be strictly before as_of.
    ws.profile_build("2024-03-12 08:00:00")
    assert ws.profiles().set_index("user_id").loc["u2", "n_page_viewed"] == 0


def test_default_as_of_is_just_after_the_latest_event(ws: Workspace, write: Write) -> None:
    setup(ws, write)
    latest = datetime(2024, 3, 10, 0, 0, 0)  # a11
    result = ws.profile_build()

    assert result.as_of == latest + timedelta(microseconds=1)
    assert ws.store.rows("SELECT as_of FROM profile_builds") == [(result.as_of,)]
    p = ws.profiles().set_index("user_id")
    assert set(p["as_of"]) == {pd.Timestamp(result.as_of)}
    # The latest event (a11, u1's page view) is included.
    assert p.loc["u1", "last_seen"] == pd.Timestamp(latest)
    assert p.loc["u1", "events"] == 5
    assert p.loc["u1", "days_since_seen"] == 0


# -- Hypothesis: every event vs. only the events before t ------------------------------------

BASE = datetime(2024, 3, 1)
USERS_H = "user_id,created_at\nu0,2024-03-05 04:00:00\nu1,2024-03-13 12:00:00\n"  # u2: no row
NO_ITEM = ("page_viewed", "email_delivered", "email_opened", "message_sent")
WITH_ITEM = ("product_viewed", "product_added", "checkout_started")
KINDS = (*NO_ITEM, *WITH_ITEM, "order_completed", "identify")

event_rows = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.integers(0, 4),  # who: u0-u2 known, d3-d4 anonymous devices
        st.integers(0, 2),  # user an identify links the device to
        st.integers(0, 20 * 24),  # hour offset from BASE
        st.sampled_from(["i1", "i2", "i3", "i9"]),  # i9 is not in the catalogue
        st.integers(0, 4),  # order number
        st.integers(1, 3),  # quantity
        st.one_of(st.none(), st.floats(0, 100, allow_nan=False).map(lambda x: round(x, 2))),
    ),
    min_size=1,
    max_size=25,
)


def to_csv(rows: list[tuple]) -> list[tuple[datetime, str]]:
    out = []
    for i, (kind, who, link, hour, item, order, qty, revenue) in enumerate(rows):
        at = BASE + timedelta(hours=hour)
        device = f"d{who}" if who >= 3 else f"d{3 + who % 2}"
        user, anon, order_id, item_id, q, price, rev = "", "", "", "", "", "", ""
        if kind == "identify":
            user, anon = f"u{link}", device
        elif who < 3:
            user = f"u{who}"
        else:
            anon = device
        if kind in WITH_ITEM:
            item_id = item
        if kind == "order_completed":
            order_id, item_id, q, price = f"o{order}", item, str(qty), "10"
            rev = "" if revenue is None else str(revenue)
        out.append(
            (
                at,
                f"h{i},{kind},{user},{anon},{order_id},{item_id},{q},{price},{rev},web,"
                f"{at:%Y-%m-%d %H:%M:%S}",
            )
        )
    return out


QUIET = Settings(tags=TagSettings(rfm=False, rules=[], bins=[]))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the items and users (copied for each example)."""
    tmp = tmp_path_factory.mktemp("asof_template")
    (tmp / "items.csv").write_text(ITEMS, encoding="utf-8")
    (tmp / "users.csv").write_text(USERS_H, encoding="utf-8")
    with Workspace(Store.open(tmp / "template.duckdb", QUIET), QUIET) as ws:
        ws.ingest("items", [tmp / "items.csv"])
        ws.ingest("users", [tmp / "users.csv"])
    return tmp / "template.duckdb"


def built(template: Path, folder: Path, name: str, lines: list[str], as_of: datetime):
    path = folder / f"{name}.duckdb"
    shutil.copy(template, path)
    csv = folder / f"{name}.csv"
    csv.write_text(HEADER + "".join(line + "\n" for line in lines), encoding="utf-8")
    with Workspace(Store.open(path, QUIET), QUIET) as ws:
        assert ws.ingest("events", [csv]).quarantined == 0
        ws.profile_build(as_of)
        return frame(ws)


# Device d3 views a page at hour 10 and is linked to u0 only at hour 50; u1 orders at exactly
# hour 40, the cut: neither may show in the profiles as of hour 40.
LINK_AND_EDGE = [
    ("page_viewed", 3, 0, 10, "i1", 0, 1, None),
    ("page_viewed", 0, 0, 12, "i1", 0, 1, None),
    ("identify", 3, 0, 50, "i1", 0, 1, None),
    ("order_completed", 1, 0, 40, "i2", 1, 2, 15.0),
    ("product_viewed", 1, 0, 39, "i2", 0, 1, None),
]


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=event_rows, cut=st.integers(0, 20 * 24 + 1))
@example(rows=LINK_AND_EDGE, cut=40)
def test_as_of_t_equals_a_store_of_only_the_events_before_t(
    template: Path, rows: list[tuple], cut: int
) -> None:
    as_of = BASE + timedelta(hours=cut)
    events = to_csv(rows)
    early = [line for at, line in events if at < as_of]
    assume(early)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        everything = built(template, folder, "all", [line for _, line in events], as_of)
        only_before = built(template, folder, "before", early, as_of)
    pd.testing.assert_frame_equal(everything, only_before)
