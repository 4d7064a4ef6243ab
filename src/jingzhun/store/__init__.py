"""The embedded store: one DuckDB file, created and upgraded by numbered migrations."""

from jingzhun.store.registry import KINDS as MODEL_KINDS
from jingzhun.store.registry import ModelRecord, Registry
from jingzhun.store.store import Store, latest_schema_version
from jingzhun.store.tables import ANALYTICS_TABLES, TABLES

__all__ = [
    "ANALYTICS_TABLES",
    "MODEL_KINDS",
    "TABLES",
    "ModelRecord",
    "Registry",
    "Store",
    "latest_schema_version",
]
