"""The event names and field definitions on the ground floor, and the layers that read them
(issue 13: the event column list was written by hand in ingest and in profile)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import ibis
import pytest

from jingzhun.config import IngestSettings
from jingzhun.contracts.events import (
    EVENT_COLUMNS,
    EVENT_FIELDS,
    EVENT_ID_CONTENT,
    FIELDS,
    KINDS,
    PII_FIELDS,
    field_names,
)
from jingzhun.ingest.validate import IngestOptions, RowValidator
from jingzhun.profile import build, traits
from jingzhun.store import Store

#: Columns the store adds to each table for its own bookkeeping.
#: ``custom`` marks events outside the vocabulary that a Segment source sent (issue 14).
BOOKKEEPING = {"event_key", "received_at", "updated_at", "batch_id", "custom"}


def test_the_event_columns_are_the_event_fields_but_the_free_form_json() -> None:
    assert tuple(f.name for f in EVENT_FIELDS if f.name != "properties") == EVENT_COLUMNS
    assert EVENT_COLUMNS[0] == "event_id" and EVENT_COLUMNS[-1] == "ts"


def test_the_content_an_event_id_is_derived_from_is_pinned() -> None:
    # Changing this changes the id of every event ingested without one: re-ingesting a file
    # would no longer find its duplicates. Adding a field must decide this on purpose.
    assert EVENT_ID_CONTENT == (
        "event",
        "user_id",
        "anonymous_id",
        "order_id",
        "item_id",
        "quantity",
        "price",
        "revenue",
        "currency",
        "channel",
        "campaign_id",
        "ts",
    )


def test_ingest_derives_event_ids_from_the_definition() -> None:
    validator = RowValidator(IngestOptions(kind="events"), IngestSettings(), datetime(2026, 1, 1))
    columns = [("_line", "BIGINT"), ("event", "VARCHAR"), ("user_id", "VARCHAR"), ("ts", "VARCHAR")]
    sql = validator.select("events.csv", columns, "chunk", 0, strict=True)
    content = ", ".join(f"coalesce(CAST(t_{n} AS VARCHAR), '')" for n in EVENT_ID_CONTENT)
    assert f"md5(concat_ws(chr(31), {content}))" in sql


def test_profile_traits_may_name_the_event_columns_and_the_joined_item_attributes() -> None:
    assert (*EVENT_COLUMNS, "category", "brand", "price_percentile") == build.EVENT_COLUMNS


def test_the_profile_reads_every_column_it_lets_a_trait_name(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        base, _ = traits.base_events(store.ibis(), ibis.literal(datetime(2026, 1, 1)))
        assert set(build.EVENT_COLUMNS) <= set(base.columns)


@pytest.mark.parametrize("kind", KINDS)
def test_the_store_holds_exactly_the_fields_of_each_kind(kind: str, tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        stored = [c for c in store.columns(kind) if c not in BOOKKEEPING]
        if kind == "users":
            # The vault's blind-index tokens, and the sealed record of the personal fields
            # (the per-field columns stay for rows written before migration 015: empty).
            index = {"email_index", "phone_index", "sealed"}
            stored += [
                c for c in store.columns("pii") if c not in BOOKKEEPING | {"user_id"} | index
            ]
    assert stored == field_names(kind)  # type: ignore[arg-type]


def test_personal_data_fields_are_the_users_pii_fields() -> None:
    from jingzhun.store.vault import SEALED_FIELDS

    assert PII_FIELDS == ("email", "phone", "name", "address") == SEALED_FIELDS
    assert all(not f.pii for kind in ("events", "items") for f in FIELDS[kind])  # type: ignore[index]
