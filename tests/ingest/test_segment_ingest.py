"""Segment / RudderStack message archives ingested end to end (issue 14).

Files in Segment's format are found from their content, mapped by :mod:`jingzhun.ingest.segment`
inside the ingest batch, validated and quarantined as any file's rows; identify messages fill
users and pii; a replay maps the stored message again. Every test runs a real batch on a
DuckDB file. ``tests/data/segment_messages.jsonl`` is the 40-message archive whose mapping
``test_segment_mapping.py`` checks field by field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from jingzhun.errors import InputError
from jingzhun.ingest.quarantine import Selection
from jingzhun.workspace import Workspace
from tests.conftest import plain_pii

DATA = Path(__file__).parent.parent / "data" / "segment_messages.jsonl"
Write = Callable[..., Path]


def rows(ws: Workspace, query: str, params: list | None = None) -> list[tuple]:
    return ws.store.sql(query, params).fetchall()


def jsonl(*messages: dict) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


def identify(mid: str, user: str, traits: dict, ts: str = "2024-03-01T10:00:00Z") -> dict:
    return {"type": "identify", "messageId": mid, "userId": user, "traits": traits, "timestamp": ts}


def track(mid: str, event: str, properties: dict, **ids: str) -> dict:
    message = {"type": "track", "event": event, "messageId": mid, "properties": properties}
    message.setdefault("timestamp", "2024-03-01T10:00:00Z")
    return {**message, **(ids or {"userId": "u1"})}


# -- the archive ------------------------------------------------------------------------------


def test_an_archive_is_found_from_its_content_and_every_message_is_accounted_for(ws) -> None:
    result = ws.ingest.files("events", [DATA])
    # 40 lines; the order of line 8 has 3 products (2 rows more).
    assert result.rows_read == 42
    assert (result.inserted, result.duplicates, result.quarantined) == (34, 0, 8)
    assert rows(ws, "SELECT options::JSON->>'format' FROM ingest_batches") == [("segment",)]
    reasons = {r for (r,) in rows(ws, "SELECT reason FROM quarantine")}
    assert "type: missing" in reasons  # line 22
    assert "not valid JSON" in reasons  # line 13
    assert "messageId: must be a string or a number, not an object" in reasons  # line 32
    # The quarantine keeps each bad message whole, so that it can be fixed and replayed.
    # Raw rows are kept encrypted (a Segment message may carry traits): read them decrypted.
    quarantined = ws.ingest.quarantine.rows(limit=None)
    (raw,) = quarantined.loc[quarantined["line_no"] == 12, "raw"]
    assert json.loads(raw)["messageId"] == "x-012"


def test_an_order_becomes_one_line_per_product_with_the_message_id_numbered(ws) -> None:
    ws.ingest.files("events", [DATA])
    lines = rows(
        ws,
        "SELECT event_id, order_id, item_id, quantity, price, revenue FROM events "
        "WHERE event_id LIKE 'ajs-oc-008:%' ORDER BY event_id",
    )
    assert [r[0] for r in lines] == ["ajs-oc-008:1", "ajs-oc-008:2", "ajs-oc-008:3"]
    assert {r[1] for r in lines} == {"O-1001"}
    for _, _, _, quantity, price, revenue in lines:
        assert revenue == pytest.approx(quantity * price)
    # A refund with products gives refund lines of the same order.
    (refund,) = rows(ws, "SELECT order_id, event FROM events WHERE event_id = 'ajs-or-018:1'")
    assert refund == ("O-1001", "order_refunded")


def test_unknown_track_events_are_kept_as_custom_events_that_analytics_ignore(ws) -> None:
    ws.ingest.files("events", [DATA])
    assert ws.ingest.custom_events() == {"video_played": 1}
    stitched = rows(ws, "SELECT count(*) FROM stitched_events WHERE event = 'video_played'")
    assert stitched == [(0,)]
    assert ws.ingest.remap({"Video Played": "page_viewed"}) == {"video_played": 1}
    assert ws.ingest.custom_events() == {}


def test_identify_traits_fill_users_and_personal_data_goes_to_pii_only(ws) -> None:
    result = ws.ingest.files("events", [DATA])
    assert result.related["users"] == {
        "rows": 3,
        "inserted": 3,
        "updated": 0,
        "duplicates": 0,
        "quarantined": 0,
        "anonymous_identifies": 1,  # line 16: an identify without a userId
    }
    users = dict(rows(ws, "SELECT user_id, attributes::VARCHAR FROM users"))
    assert set(users) == {"u-1001", "u-2002", "67890"}
    assert json.loads(users["u-2002"]) == {"plan": "free"}
    assert rows(ws, "SELECT signup_channel FROM users WHERE user_id = 'u-2002'") == [("app",)]
    emails = dict(plain_pii(ws.store))
    assert emails == {"u-1001": "wei.zhang@example.com", "67890": "li.lei@example.cn"}
    # No email address is left in any analytics table.
    for table in ("events", "users", "identities"):
        text = rows(
            ws, f"SELECT count(*) FROM {table} t WHERE CAST(t AS VARCHAR) LIKE '%@example.%'"
        )
        assert text == [(0,)], table


def test_alias_and_identify_link_anonymous_ids(ws) -> None:
    ws.ingest.files("events", [DATA])
    links = dict(rows(ws, "SELECT anonymous_id, user_id FROM identities"))
    assert links["anon-7f3a"] == "u-1001"
    assert links["rs-anon-17"] == "67890"


def test_ingesting_the_archive_again_changes_nothing(ws) -> None:
    ws.ingest.files("events", [DATA])
    counts = "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM quarantine)"
    before = rows(ws, counts)
    again = ws.ingest.files("events", [DATA])
    assert (again.inserted, again.quarantined, again.duplicates) == (0, 0, 42)
    assert again.related["users"]["inserted"] == 0
    assert again.related["users"]["duplicates"] == 3
    assert rows(ws, counts) == before


# -- users from identify calls ---------------------------------------------------------------


def test_an_identify_changes_the_traits_it_sends_and_keeps_the_others(ws, write) -> None:
    first = write(
        "a.jsonl",
        jsonl(
            identify("m1", "u1", {"email": "a@example.com", "gender": "female", "plan": "free"}),
            identify("m2", "u1", {"plan": "pro", "logins": 3}, ts="2024-03-02T10:00:00Z"),
        ),
    )
    result = ws.ingest.files("events", [first])
    assert result.related["users"]["inserted"] == 1
    assert result.related["users"]["duplicates"] == 1  # two messages, one user
    user = rows(ws, "SELECT gender, attributes::VARCHAR FROM users")[0]
    assert user[0] == "female"
    assert json.loads(user[1]) == {"plan": "pro", "logins": 3}
    later = write("b.jsonl", jsonl(identify("m3", "u1", {"city": "Hangzhou"})))
    result = ws.ingest.files("events", [later])
    assert (result.related["users"]["inserted"], result.related["users"]["updated"]) == (1, 1)
    gender, city, attributes = rows(ws, "SELECT gender, city, attributes::VARCHAR FROM users")[0]
    assert (gender, city) == ("female", "Hangzhou")
    assert json.loads(attributes) == {"plan": "pro", "logins": 3}
    assert [e for _, e in plain_pii(ws.store)] == ["a@example.com"]


def test_a_bad_trait_quarantines_the_user_not_the_event_and_a_fixed_one_replays(ws, write) -> None:
    path = write("c.jsonl", jsonl(identify("m1", "u1", {"birthday": "1890-01-01", "gender": "f"})))
    result = ws.ingest.files("events", [path])
    assert result.inserted == 1  # the identify event
    assert result.related["users"]["quarantined"] == 1
    ((kind, reason, raw),) = ws.ingest.quarantine.rows(limit=None)[
        ["kind", "reason", "raw"]
    ].itertuples(index=False)
    assert kind == "users"
    assert "birth_year" in reason
    assert json.loads(raw)["messageId"] == "m1"
    fixed = write(
        "fixed.jsonl",
        json.dumps({"quarantine_id": 1, "row": identify("m1", "u1", {"birthday": "1990-01-01"})})
        + "\n",
    )
    (replayed,) = ws.ingest.quarantine.replay(Selection(), file=fixed)
    assert (replayed.kind, replayed.resolved) == ("users", 1)
    assert rows(ws, "SELECT birth_year FROM users") == [(1990,)]


# -- replay and event names ------------------------------------------------------------------


def test_a_fixed_message_replays_through_the_mapping(ws, tmp_path) -> None:
    ws.ingest.files("events", [DATA])
    out = tmp_path / "q.jsonl"
    ws.ingest.quarantine.export(out)
    edits = []
    for line in out.read_text().splitlines():
        entry = json.loads(line)
        if entry["row"].get("messageId") == "x-012":  # type "foo"
            entry["row"]["type"] = "track"
            entry["row"]["event"] = "Product Viewed"
            entry["row"].setdefault("properties", {})["product_id"] = "P-100"
            edits.append(json.dumps(entry))
    assert len(edits) == 1
    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text("\n".join(edits) + "\n")
    (result,) = ws.ingest.quarantine.replay(Selection(), file=fixed)
    assert (result.inserted, result.resolved) == (1, 1)
    assert rows(ws, "SELECT event FROM events WHERE event_id = 'x-012'") == [("product_viewed",)]
    # The rest stay quarantined, with their reasons, when replayed as they are.
    again = ws.ingest.quarantine.replay()
    assert sum(r.resolved for r in again) == 0
    assert rows(ws, "SELECT count(*) FROM quarantine WHERE resolved_at IS NULL") == [(7,)]


def test_an_event_map_to_an_order_splits_its_products_into_lines(ws, write) -> None:
    purchase = track(
        "p1",
        "Purchase Made",
        {"order_id": "O-9", "products": [{"product_id": "A", "price": 2}, {"sku": "B"}]},
    )
    path = write("p.jsonl", jsonl(purchase))
    ws.ingest.files("events", [path], event_map={"Purchase Made": "order_completed"})
    got = rows(ws, "SELECT event_id, event, item_id FROM events ORDER BY 1")
    assert got == [("p1:1", "order_completed", "A"), ("p1:2", "order_completed", "B")]


def test_remapping_a_stored_custom_order_is_refused_with_the_ingest_way(ws, write) -> None:
    purchase = track("p1", "Purchase Made", {"order_id": "O-9", "products": [{"product_id": "A"}]})
    ws.ingest.files("events", [write("p.jsonl", jsonl(purchase))])
    assert ws.ingest.custom_events() == {"purchase_made": 1}
    with pytest.raises(InputError, match="lack order_id or item_id") as err:
        ws.ingest.remap({"purchase_made": "order_completed"})
    assert "--event-map" in (err.value.hint or "")
    assert ws.ingest.custom_events() == {"purchase_made": 1}


def test_only_events_takes_segment_names_and_custom_ones(ws) -> None:
    result = ws.ingest.files("events", [DATA], format="segment", only_events=["video_played"])
    assert result.inserted == 1
    assert rows(ws, "SELECT event FROM events") == [("video_played",)]


# -- refusals --------------------------------------------------------------------------------


def test_segment_and_other_formats_are_not_mixed_in_a_batch(ws, write) -> None:
    csv = write("e.csv", "event_id,user_id,event,ts\ne1,u1,product_viewed,2024-03-01\n")
    with pytest.raises(InputError, match=r"holds Segment messages and .*e\.csv is CSV"):
        ws.ingest.files("events", [DATA, csv])
    assert rows(ws, "SELECT count(*) FROM ingest_batches") == [(0,)]


def test_segment_messages_are_events_not_users(ws) -> None:
    with pytest.raises(InputError, match="Segment messages, which are events") as err:
        ws.ingest.files("users", [DATA])
    assert "ingest events" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"mapping": {"userId": "user_id"}}, "--map"),
        ({"order_id": "row"}, "--order-id"),
        ({"ts_unit": "ms"}, "--ts-unit"),
    ],
)
def test_options_that_name_columns_do_not_apply_to_messages(ws, kwargs, flag) -> None:
    with pytest.raises(InputError, match=f"{flag} does not apply to Segment messages"):
        ws.ingest.files("events", [DATA], **kwargs)


def test_plain_json_lines_with_a_type_column_are_not_taken_for_messages(ws, write) -> None:
    path = write(
        "rows.jsonl",
        jsonl(
            {
                "type": "track",
                "event": "product_viewed",
                "user_id": "u1",
                "item_id": "i1",
                "ts": "2024-03-01",
            }
        ),
    )
    result = ws.ingest.files("events", [path])
    assert result.inserted == 1
    assert rows(ws, "SELECT options::JSON->>'format' FROM ingest_batches") == [(None,)]


def test_format_jsonl_reads_messages_as_plain_rows(ws) -> None:
    result = ws.ingest.files("events", [DATA], format="jsonl")
    assert result.inserted < 34  # camelCase ids are not read without the Segment mapping


def test_a_gzipped_archive_is_found_from_its_content_too(ws, tmp_path) -> None:
    import gzip

    path = tmp_path / "part-0000.gz"  # S3 destination objects carry no .jsonl in their name
    path.write_bytes(gzip.compress(DATA.read_bytes()))
    result = ws.ingest.files("events", [path])
    assert (result.rows_read, result.inserted) == (42, 34)
