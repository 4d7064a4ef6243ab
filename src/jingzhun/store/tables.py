"""The store's table names: the data-model contract (see docs/data-model.md).

SQL text names tables literally; Python code that lists, counts or exports tables uses these.
"""

from __future__ import annotations

EVENTS = "events"
USERS = "users"
ITEMS = "items"
PII = "pii"
IDENTITIES = "identities"
INGEST_BATCHES = "ingest_batches"
QUARANTINE = "quarantine"
EVENT_FLAGS = "event_flags"
REMOVED_EVENTS = "removed_events"  # events clean --remove moved out: a re-ingest keeps them out
STITCHED_EVENTS = "stitched_events"  # view: events with anonymous history under the known user
SCHEMA_VERSION = "schema_version"
STORE_META = "store_meta"
API_KEYS = "api_keys"  # the server's keys, hashed (jingzhun.store.apikeys)
CAMPAIGNS = "campaigns"  # the campaign stage (jingzhun.campaign)
CAMPAIGN_MEMBERS = "campaign_members"
DELIVERIES = "deliveries"
SUPPRESSIONS = "suppressions"
CONSENTS = "consents"
AUDIT_LOG = "audit_log"  # admin actions and data-subject requests, without personal data
ERASURES = "erasures"  # users erased (by keyed token): models trained before still hold them

#: Tables that analytics stages may read; PII is deliberately absent.
ANALYTICS_TABLES: tuple[str, ...] = (EVENTS, USERS, ITEMS, IDENTITIES)

#: Every table the collect stage owns, in the order a summary lists them.
TABLES: tuple[str, ...] = (
    EVENTS,
    USERS,
    ITEMS,
    PII,
    IDENTITIES,
    INGEST_BATCHES,
    QUARANTINE,
    EVENT_FLAGS,
    REMOVED_EVENTS,
)
