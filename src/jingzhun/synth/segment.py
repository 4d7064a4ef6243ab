"""The simulated shop as a Segment archive: what its tracking would have sent.

``jingzhun synth --segment`` writes ``segment.jsonl.gz`` beside the Parquet files: one Segment
message per line, as Segment's and RudderStack's S3 destinations archive them — an ``identify``
per registered user (traits with the personal data, as a sign-up form sends them), ``page`` for
page views, ``track`` with the e-commerce v2 spec names for the rest (product fields in
``properties``), and one ``Order Completed`` per order with its ``products[]``, ``revenue`` the
order's total after discounts.

The archive holds the shop's valid events: the rows the simulator made malformed on purpose
(``truth/dirty_rows.parquet``, expected ``quarantined``) are left out, the exact duplicates are
kept (a retrying client sends a message twice, with one messageId). Ingested, it must give the
events of ``events.parquet`` that ingest keeps: the same users, identities, events by type and
revenue per user (``tests/synth/test_segment_archive.py`` checks it), the order lines under
ids ``messageId:1`` … of their order's message.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from jingzhun.contracts.events import EVENT_TYPES
from jingzhun.outputs import atomic_write

#: Our event names and the spec names Segment sources send for them.
_SPEC = {e.name: e.segment for e in EVENT_TYPES if e.segment}

# The properties a track or page message carries from an event row (null members dropped).
_PROPERTIES = (
    "json_object('product_id', item_id, 'price', price, 'quantity', quantity, "
    "'currency', currency, 'campaign_id', campaign_id, 'discount', discount)"
)


def _iso(column: str) -> str:
    return f"strftime({column} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ')"


def _messages_sql() -> str:
    """One row per message (``ts``, ``m`` its JSON text) from ``ev`` (the valid event rows)
    and ``us`` (the users)."""
    spec = "json_extract_string(" + repr(json.dumps(_SPEC)) + "::JSON, '$.' || event)"
    ids = "'userId', user_id, 'anonymousId', anonymous_id"
    single = f"""
        SELECT ts, json_object(
            'type', CASE WHEN event = 'page_viewed' THEN 'page' ELSE 'track' END,
            'event', CASE WHEN event = 'page_viewed' THEN NULL ELSE coalesce({spec}, event) END,
            'messageId', event_id, {ids}, 'channel', channel,
            'timestamp', {_iso("ts")}, 'properties', {_PROPERTIES}) AS m
        FROM ev WHERE event <> 'order_completed'
    """
    # One message per order (and per user, device and time: the lines of one order share
    # them), its lines in event-id order.
    lines = "SELECT DISTINCT ON (event_id) * FROM ev WHERE event = 'order_completed'"
    orders = f"""
        SELECT ts, json_object(
            'type', 'track', 'event', 'Order Completed', 'messageId', min(event_id),
            {ids}, 'channel', channel, 'timestamp', {_iso("ts")},
            'properties', json_object(
                'order_id', order_id, 'currency', currency, 'campaign_id', campaign_id,
                'revenue', round(sum(revenue), 6), 'discount', round(sum(discount), 6),
                'products', list(json_object('product_id', item_id, 'price', price,
                                             'quantity', quantity) ORDER BY event_id))) AS m
        FROM ({lines})
        GROUP BY order_id, user_id, anonymous_id, ts, currency, channel, campaign_id
    """
    traits = (
        "json_object('email', email, 'phone', phone, 'name', name, 'address', address, "
        "'gender', gender, 'birth_year', birth_year, 'city', city, 'state', region, "
        f"'createdAt', {_iso('created_at')}, 'signupChannel', signup_channel, "
        "'marketing_opt_in', marketing_opt_in)"
    )
    identifies = f"""
        SELECT created_at AS ts, json_object(
            'type', 'identify', 'messageId', 'idf_' || user_id, 'userId', user_id,
            'timestamp', {_iso("created_at")}, 'traits', {traits}) AS m
        FROM us
    """
    # json_object keeps null members; Segment's SDKs leave them out (a merge patch drops them).
    return (
        "SELECT ts, CAST(json_merge_patch('{}', m) AS VARCHAR) AS m "
        f"FROM ({single} UNION ALL {orders} UNION ALL {identifies}) ORDER BY ts, m"
    )


def write_segment_archive(
    events: pa.Table, users: pa.Table, dirty: pa.Table, path: str | Path
) -> int:
    """Write the shop's valid events and its users as Segment messages to ``path`` (gzipped
    JSON Lines), atomically; the number of messages."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        # The malformed rows (by their row number in events.parquet) are left out.
        numbered = events.append_column("_row", pa.array(np.arange(events.num_rows)))
        con.register("events_in", numbered)
        con.register("dirty_in", dirty)
        con.register("us", users)
        con.execute(
            """
            CREATE TEMP TABLE ev AS SELECT * EXCLUDE (_row) FROM events_in
            WHERE _row NOT IN (SELECT "row" FROM dirty_in WHERE expected = 'quarantined')
            """
        )
        reader = con.sql(_messages_sql()).to_arrow_reader(1 << 16)
        count = 0
        with atomic_write(path) as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for batch in reader:
                texts = batch.column(1).to_pylist()
                gz.write(("\n".join(texts) + "\n").encode("utf-8"))
                count += len(texts)
        return count
    finally:
        con.close()
