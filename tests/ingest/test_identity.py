"""Identity stitching: anonymous visitors linked to users, and the stitched_events view."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from jingzhun.errors import InputError
from jingzhun.workspace import Workspace

Write = Callable[..., Path]

HEADER = "event_id,event,user_id,anonymous_id,item_id,ts"


def ingest(ws: Workspace, write: Write, name: str, rows: str):
    return ws.ingest("events", [write(name, HEADER + "\n" + rows)])


def identities(ws: Workspace) -> list[tuple]:
    return ws.store.sql(
        "SELECT anonymous_id, user_id, linked_at FROM identities ORDER BY anonymous_id"
    ).fetchall()


def stitched(ws: Workspace) -> list[tuple]:
    return ws.store.sql(
        "SELECT event_id, user_id, anonymous_id FROM stitched_events ORDER BY event_id"
    ).fetchall()


def test_identify_links_anonymous_history_to_the_user(ws: Workspace, write: Write) -> None:
    result = ingest(
        ws,
        write,
        "a.csv",
        "e1,page_viewed,,a1,,2024-01-01 10:00:00\n"
        "e2,product_viewed,,a1,i1,2024-01-01 10:01:00\n"
        "e3,identify,u1,a1,,2024-01-01 10:05:00\n"
        "e4,page_viewed,,a2,,2024-01-01 11:00:00\n",
    )

    assert (result.identities_linked, result.identity_conflicts) == (1, 0)
    assert identities(ws) == [("a1", "u1", datetime(2024, 1, 1, 10, 5))]
    assert ws.store.sql("SELECT batch_id FROM identities").fetchone() == (result.batch_id,)
    assert stitched(ws) == [
        ("e1", "u1", "a1"),
        ("e2", "u1", "a1"),
        ("e3", "u1", "a1"),
        ("e4", None, "a2"),  # never identified
    ]
    # The events themselves are not rewritten.
    assert ws.store.sql("SELECT count(*) FROM events WHERE user_id IS NULL").fetchone() == (3,)
    summary = ws.summary()
    assert (summary["anonymous_events"], summary["anonymous_events_stitched"]) == (3, 2)
    assert summary["known_users_with_anonymous_history"] == 1


def test_link_in_a_later_batch_stitches_earlier_events(ws: Workspace, write: Write) -> None:
    ingest(ws, write, "a.csv", "e1,page_viewed,,a1,,2024-01-01 10:00:00\n")
    assert stitched(ws) == [("e1", None, "a1")]

    later = ingest(
        ws,
        write,
        "b.csv",
        "e2,signed_up,u1,a1,,2024-01-02 09:00:00\ne3,page_viewed,,a1,,2024-01-03\n",
    )

    assert later.identities_linked == 1
    assert stitched(ws) == [("e1", "u1", "a1"), ("e2", "u1", "a1"), ("e3", "u1", "a1")]


def test_any_event_with_both_ids_links(ws: Workspace, write: Write) -> None:
    result = ingest(ws, write, "a.csv", "e1,product_viewed,u7,a7,i1,2024-01-01\n")

    assert result.identities_linked == 1
    assert identities(ws) == [("a7", "u7", datetime(2024, 1, 1))]


def test_later_conflicting_link_keeps_the_first(ws: Workspace, write: Write) -> None:
    ingest(
        ws,
        write,
        "a.csv",
        "e1,identify,u1,a1,,2024-01-01 10:05:00\ne2,page_viewed,,a1,,2024-01-01 10:00:00\n",
    )

    later = ingest(
        ws,
        write,
        "b.csv",
        "f1,identify,u2,a1,,2024-01-02 10:00:00\nf2,page_viewed,,a1,,2024-01-02 11:00:00\n",
    )

    assert (later.identities_linked, later.identity_conflicts) == (0, 1)
    assert identities(ws) == [("a1", "u1", datetime(2024, 1, 1, 10, 5))]
    assert stitched(ws) == [
        ("e1", "u1", "a1"),
        ("e2", "u1", "a1"),
        ("f1", "u2", "a1"),  # an event's own user_id is never overridden
        ("f2", "u1", "a1"),
    ]


def test_conflict_within_one_batch_links_the_earliest(ws: Workspace, write: Write) -> None:
    result = ingest(
        ws,
        write,
        "a.csv",
        "g1,identify,u4,a3,,2024-01-03 10:00:00\n"  # later in time, earlier in the file
        "g0,identify,u3,a3,,2024-01-03 09:00:00\n",
    )

    assert (result.identities_linked, result.identity_conflicts) == (1, 1)
    assert identities(ws) == [("a3", "u3", datetime(2024, 1, 3, 9))]


def test_relinking_the_same_pair_is_not_a_conflict(ws: Workspace, write: Write) -> None:
    ingest(ws, write, "a.csv", "e1,identify,u1,a1,,2024-01-01\n")
    again = ingest(ws, write, "b.csv", "e2,identify,u1,a1,,2024-01-05\n")

    assert (again.identities_linked, again.identity_conflicts) == (0, 0)
    assert identities(ws) == [("a1", "u1", datetime(2024, 1, 1))]


def test_quarantined_rows_do_not_link(ws: Workspace, write: Write) -> None:
    result = ingest(
        ws, write, "a.csv", "e1,identify,u1,a1,,not-a-time\ne2,bogus,u2,a2,,2024-01-01\n"
    )

    assert (result.quarantined, result.identities_linked) == (2, 0)
    assert identities(ws) == []


def test_a_failed_batch_links_nothing(ws: Workspace, write: Write) -> None:
    good = write("good.csv", HEADER + "\ne1,identify,u1,a1,,2024-01-01\n")
    with pytest.raises(InputError, match="is empty"):
        ws.ingest("events", [good, write("empty.csv", b"")])
    assert identities(ws) == []
    assert ws.store.count("events") == 0


def test_replayed_rows_link(ws: Workspace, write: Write) -> None:
    ingest(ws, write, "a.csv", "e1,log_in,u1,a1,,2024-01-01\ne0,page_viewed,,a1,,2023-12-31\n")
    assert identities(ws) == []

    results = ws.quarantine_replay(event_map={"log_in": "identify"})

    assert [(r.inserted, r.identities_linked) for r in results] == [(1, 1)]
    assert stitched(ws) == [("e0", "u1", "a1"), ("e1", "u1", "a1")]


def test_shop_identities_match_the_events(ws: Workspace, shop) -> None:
    result = ws.ingest("events", [shop.file("events")])

    expected = ws.store.sql(
        "SELECT count(DISTINCT anonymous_id) FROM events WHERE user_id IS NOT NULL AND anonymous_id IS NOT NULL"
    ).fetchone()[0]
    assert expected > 0
    assert ws.store.count("identities") == expected == result.identities_linked
    # Each visitor is linked to the user of its earliest row that carries both ids.
    mismatched = ws.store.sql(
        """
        SELECT count(*) FROM identities i JOIN (
            SELECT anonymous_id, arg_min(user_id, ts) AS user_id, min(ts) AS linked_at FROM events
            WHERE user_id IS NOT NULL AND anonymous_id IS NOT NULL GROUP BY anonymous_id
        ) f USING (anonymous_id)
        WHERE f.user_id <> i.user_id OR f.linked_at <> i.linked_at
        """
    ).fetchone()[0]
    assert mismatched == 0
    # Stitching only fills in missing user ids: no event loses or changes its own.
    assert ws.store.sql(
        "SELECT count(*) FROM stitched_events s JOIN events e USING (event_id) "
        "WHERE e.user_id IS NOT NULL AND s.user_id <> e.user_id"
    ).fetchone() == (0,)
    assert ws.store.count("stitched_events") == ws.store.count("events")
