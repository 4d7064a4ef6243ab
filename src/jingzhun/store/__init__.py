"""The embedded store: one DuckDB file, created and upgraded by numbered migrations."""

from jingzhun.store.store import Store, latest_schema_version
from jingzhun.store.tables import ANALYTICS_TABLES, TABLES

__all__ = ["ANALYTICS_TABLES", "TABLES", "Store", "latest_schema_version"]
