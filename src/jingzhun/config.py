"""Settings and ``jingzhun.toml`` loading.

Settings are built by :func:`load_settings`, never at import time. Unknown keys are errors that
name the key, so a typo in the config file cannot silently fall back to a default.

Example ``jingzhun.toml``::

    [store]
    memory_limit = "2GB"

    [ingest]
    max_future_hours = 24
    [ingest.event_map]
    purchase = "order_completed"
    view = "product_viewed"

    [clean]
    outlier_method = "mad"
    burst_events_per_minute = 30
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from jingzhun.errors import InputError

DEFAULT_DB = "jingzhun.duckdb"
DEFAULT_CONFIG = "jingzhun.toml"
DB_ENV = "JINGZHUN_DB"
CONFIG_ENV = "JINGZHUN_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(_Section):
    memory_limit: str = Field(
        "1GB", description="DuckDB memory limit; larger work spills to the store's temp folder."
    )
    threads: int | None = Field(None, ge=1, description="DuckDB threads; default: all cores.")


class IngestSettings(_Section):
    event_map: dict[str, str] = Field(
        default_factory=dict, description="Foreign event names mapped to jingzhun's names."
    )
    max_future_hours: float = Field(24.0, ge=0, description="Reject events later than now + this.")
    min_timestamp: str = Field("1990-01-01", description="Reject events earlier than this.")
    max_id_length: int = Field(256, ge=1, le=4096)
    max_line_bytes: int = Field(16 << 20, ge=1 << 10, description="Longest accepted row in bytes.")
    batch_rows: int = Field(1 << 19, ge=1, description="Rows per chunk when streaming a file.")

    @field_validator("event_map")
    @classmethod
    def _targets_are_known(cls, value: dict[str, str]) -> dict[str, str]:
        from jingzhun.ingest.schema import EVENT_NAMES

        for src, dst in value.items():
            if dst not in EVENT_NAMES:
                raise ValueError(
                    f"event_map maps {src!r} to unknown event {dst!r}; "
                    f"use one of: {', '.join(sorted(EVENT_NAMES))}"
                )
        return value


class CleanSettings(_Section):
    outlier_method: Literal["mad", "iqr"] = "mad"
    outlier_threshold: float | None = Field(
        None,
        gt=0,
        description="Modified z-score (mad, default 3.5) or IQR multiple (iqr, default 3) beyond which an order is an outlier.",
    )
    burst_events_per_minute: int = Field(
        30, ge=1, description="More events than this in one minute from one visitor flags a burst."
    )


class Settings(_Section):
    store: StoreSettings = StoreSettings()
    ingest: IngestSettings = IngestSettings()
    clean: CleanSettings = CleanSettings()
    _source: Path | None = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        """The file these settings came from, or None for defaults."""
        return self._source


def resolve_db_path(db: str | os.PathLike[str] | None) -> Path:
    """The store path: ``db`` if given, else ``$JINGZHUN_DB``, else ``./jingzhun.duckdb``."""
    if db is not None and str(db) != "":
        return Path(db)
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load settings from ``path``, ``$JINGZHUN_CONFIG`` or ``./jingzhun.toml``; defaults if none.

    An explicitly named file must exist; the implicit ``./jingzhun.toml`` is optional.
    """
    explicit = path if path is not None else os.environ.get(CONFIG_ENV)
    candidate = Path(explicit) if explicit else Path(DEFAULT_CONFIG)
    if not candidate.exists():
        if explicit:
            raise InputError(f"config file {candidate} does not exist", hint="check --config")
        return Settings()
    try:
        raw = tomllib.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read config file {candidate}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{candidate}: {exc}", hint="fix the TOML syntax") from exc
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{candidate}: [{where}] {err['msg']}") from exc
    settings._source = candidate
    return settings
