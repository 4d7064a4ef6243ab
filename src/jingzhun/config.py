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


class CustomTrait(_Section):
    """A computed trait declared in jingzhun.toml, Segment "computed traits" style."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Column name in profiles.")
    agg: Literal["count", "sum", "mean", "min", "max", "distinct", "mode", "first", "last"] = Field(
        description="count, sum, mean, min, max, distinct (count of distinct values), mode, first, last."
    )
    of: str | None = Field(
        None, description="The event column (or item category/brand) to aggregate."
    )
    where: str | None = Field(
        None, description="Filter over events, e.g. \"event = 'order_completed'\"."
    )
    window_days: float | None = Field(
        None, gt=0, description="Only events in the last N days before as_of."
    )


class ProfileSettings(_Section):
    half_life_days: float = Field(
        30.0, gt=0, description="Half-life of the category affinity decay."
    )
    last_items: int = Field(10, ge=1, le=100, description="How many recent items last_items keeps.")
    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "product_viewed": 1.0,
            "product_added": 3.0,
            "checkout_started": 3.0,
            "order_completed": 5.0,
        },
        description="Interaction weight per event, for affinity and top brands.",
    )
    score: dict[str, float] = Field(
        default_factory=lambda: {
            "recency_days": -0.3,
            "frequency": 0.3,
            "monetary": 0.3,
            "active_days": 0.1,
        },
        description="P(u) = Σ w_i F(u_i): weights over traits (negative: lower is better).",
    )
    traits: list[CustomTrait] = Field(default_factory=list)

    @field_validator("weights")
    @classmethod
    def _weights_name_events(cls, value: dict[str, float]) -> dict[str, float]:
        from jingzhun.ingest.schema import EVENT_NAMES

        for name, w in value.items():
            if name not in EVENT_NAMES:
                raise ValueError(f"weights names unknown event {name!r}")
            if w < 0:
                raise ValueError(f"weight of {name!r} must be >= 0")
        return value


class TagRule(_Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    when: str = Field(
        description="An expression over profile traits, e.g. 'monetary >= p90(monetary)'."
    )


class TagBins(_Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    trait: str
    where: str | None = Field(
        None, description="Only users for whom this holds, e.g. 'frequency >= 1'."
    )
    quantiles: list[float] = Field(default_factory=lambda: [0.25, 0.5, 0.75], min_length=1)
    labels: list[str] | None = None

    @field_validator("quantiles")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(not 0 < q < 1 for q in value) or value != sorted(set(value)):
            raise ValueError("quantiles must be increasing numbers between 0 and 1")
        return value


class TagSettings(_Section):
    rfm: bool = Field(True, description="RFM scores 1-5 and the standard RFM segment names.")
    rules: list[TagRule] = Field(
        default_factory=lambda: [
            TagRule(name="high_value", when="monetary > 0 and monetary >= p90(monetary)"),
            TagRule(name="churn_risk", when="recency_days > 90 and frequency >= 3"),
        ]
    )
    bins: list[TagBins] = Field(
        default_factory=lambda: [
            TagBins(
                name="spend_band",
                trait="monetary",
                where="frequency >= 1",
                quantiles=[0.5, 0.8, 0.95],
                labels=["low", "mid", "high", "top"],
            )
        ]
    )


class RecommendSettings(_Section):
    model: str = Field("hybrid", description="The model `recommend train` fits by default.")
    k: int = Field(10, ge=1, le=1000, description="Items per user in `recommend batch`.")
    weights: dict[str, float] | None = Field(
        None,
        description="Interaction weight per event type; default: [profile] weights (view 1, cart 3, purchase 5).",
    )
    half_life_days: float | None = Field(
        None,
        gt=0,
        description="Interaction weights halve every N days; default: [profile] half_life_days.",
    )
    segment_run: str | None = Field(
        None,
        description="Segment run (id or name) for segment popularity; default the latest active.",
    )
    params: dict[str, dict[str, float | int | str]] = Field(
        default_factory=dict, description="Per-model hyperparameters, e.g. [recommend.params.als]."
    )
    exclude_purchased: bool = Field(True, description="Leave out items the user already bought.")
    rebuy_categories: list[str] = Field(
        default_factory=list, description="Categories bought again and again (not excluded)."
    )
    only_available: bool = Field(
        True, description="Only active items with stock (or unknown stock)."
    )
    include_categories: list[str] = Field(
        default_factory=list, description="Only these categories."
    )
    exclude_categories: list[str] = Field(default_factory=list)
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)
    max_per_category: int | None = Field(
        3, ge=1, description="Diversity: at most N items of one category per list; none: no cap."
    )
    boost: dict[str, float] = Field(
        default_factory=dict, description="item_id -> factor (> 1 lifts an item among candidates)."
    )

    @field_validator("weights")
    @classmethod
    def _weights_name_events(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        from jingzhun.recommend.data import weights_from_mapping

        if value is None:
            return None
        try:
            return weights_from_mapping(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None


class PredictSettings(_Section):
    horizon_days: float = Field(
        30.0, gt=0, description="Label window: buys (or churns) within N days of a cutoff."
    )
    active_days: float = Field(
        90.0, gt=0, description="Churn's population: customers with an order in the last N days."
    )
    train_windows: int = Field(
        2, ge=1, le=24, description="Training cutoffs (one horizon apart) stacked for training."
    )
    models: list[str] = Field(
        default_factory=lambda: ["logistic", "tree", "forest", "lightgbm", "mlp"],
        description="Classifiers `predict train` compares.",
    )
    select: Literal["roc_auc", "pr_auc", "log_loss", "brier"] = Field(
        "roc_auc", description="Validation metric that chooses the best model."
    )
    calibration: Literal["auto", "isotonic", "sigmoid", "none"] = "auto"
    compare_rows: int = Field(
        200_000, ge=1000, description="Training rows each model is compared on (a sample)."
    )
    params: dict[str, dict[str, float | int | str | bool]] = Field(
        default_factory=dict,
        description="Per-classifier parameters, e.g. [predict.params.lightgbm].",
    )
    reasons_share: float = Field(
        0.3, ge=0, le=1, description="Share of scored users (the top) given reasons; 0: none."
    )
    tag_high: float = Field(
        0.1, gt=0, lt=1, description="Share of scored users tagged 'high' (the top)."
    )
    tag_medium: float = Field(0.2, gt=0, lt=1, description="Share tagged 'medium' (the next).")
    margin: float = Field(
        0.3, gt=0, le=1, description="Gross margin on revenue, for CLV and uplift targeting."
    )
    message_cost: float = Field(
        0.05, ge=0, description="Cost of one message, for uplift targeting."
    )
    discount_rate: float = Field(0.10, ge=0, lt=1, description="Annual discount rate for CLV.")
    clv_months: int = Field(12, ge=1, le=120, description="CLV horizon in months.")

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        from jingzhun.predict.propensity import CLASSIFIERS

        bad = [m for m in value if m not in CLASSIFIERS]
        if bad or not value:
            raise ValueError(
                f"unknown classifier {bad[0] if bad else None!r}; use {', '.join(CLASSIFIERS)}"
            )
        return value


class Settings(_Section):
    store: StoreSettings = StoreSettings()
    ingest: IngestSettings = IngestSettings()
    clean: CleanSettings = CleanSettings()
    profile: ProfileSettings = ProfileSettings()
    tags: TagSettings = TagSettings()
    recommend: RecommendSettings = RecommendSettings()
    predict: PredictSettings = PredictSettings()
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
