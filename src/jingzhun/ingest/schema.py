"""What ingest adds to the data model's field definitions: the fields each event requires, the
column names that speak of personal data, and where unknown columns go.

The fields themselves (names, types, bounds) are the ground floor's
(:mod:`jingzhun.contracts.events`). A source column whose name (after ``--map``) is a field is
validated and typed; any other column is kept as JSON in the row's ``properties`` (events) or
``attributes`` (users, items) column, so nothing is lost. For users, the personal-data fields
(email, phone, name, address) go to the separate ``pii`` table.
"""

from __future__ import annotations

import re
import unicodedata

from jingzhun.contracts.events import EVENT_REQUIRES, PII_FIELDS, Kind

__all__ = ["EVENT_REQUIRES", "EXTRAS_COLUMN", "pii_in_name"]

#: The JSON column that collects a kind's unknown columns.
EXTRAS_COLUMN: dict[Kind, str] = {
    "events": "properties",
    "users": "attributes",
    "items": "attributes",
}


def pii_in_name(name: str) -> str | None:
    """The personal-data field a column name speaks of, if any, whatever its case, width
    and separators: ``E-Mail``, ``email_address``, ``Mobile Phone``, ``first_name``."""
    compact = re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", name).casefold())
    return next((f for f in PII_FIELDS if f in compact), None)
