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
import re
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from jingzhun.checks import MAX_DAYS, MIN_DAYS, shown
from jingzhun.contracts.events import EVENT_NAMES, INTEREST_WEIGHTS
from jingzhun.contracts.models import CLASSIFIERS
from jingzhun.errors import InputError

_M = TypeVar("_M", bound=BaseModel)

DEFAULT_DB = "jingzhun.duckdb"
DEFAULT_CONFIG = "jingzhun.toml"
DB_ENV = "JINGZHUN_DB"
CONFIG_ENV = "JINGZHUN_CONFIG"


# -- bounds every number in the settings is held to -------------------------------------------
# Every float field refuses NaN and the infinities (``allow_inf_nan=False`` on _Section, so a
# field added later cannot forget it; TOML writes them ``nan`` and ``inf``). The annotated types
# below bound what a day count, a weight and a count may be.

# MIN_DAYS (one hour: 1e-300 days would empty every affinity) and MAX_DAYS (a hundred years)
# come from jingzhun.checks, which the stages' own checks use too.
#: The largest weight or factor: weights are relative, so 1e6 already dwarfs every other.
MAX_WEIGHT = 1e6
#: The most DuckDB threads (each is an OS thread with its own buffers; 10⁸ hangs).
MAX_THREADS = 256
#: The most custom traits, tag rules or quantile bins one file may declare (each adds columns
#: or passes over the store; 2,000 traits ran out of memory).
MAX_DEFINITIONS = 200
#: The longest expression (a tag rule, a trait's filter) in characters.
MAX_EXPRESSION = 50_000
#: The largest outlier threshold (a modified z-score or an IQR multiple; 3.5 and 3 are usual).
MAX_OUTLIER_THRESHOLD = 1000.0
#: The largest burst threshold, in events per minute from one visitor.
MAX_BURST = 1_000_000

#: A window, half-life or horizon in days.
Days = Annotated[float, Field(ge=MIN_DAYS, le=MAX_DAYS)]
#: An interaction or score weight, or a boost factor: finite, at most MAX_WEIGHT in size.
Weight = Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT)]
Expression = Annotated[str, Field(min_length=1, max_length=MAX_EXPRESSION)]
#: A trait, tag or bin name: a column or tag name, lower case, at most 64 characters.
_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
Name = Annotated[str, Field(pattern=_NAME_PATTERN, max_length=64)]

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
MIN_MEMORY = 64 * 10**6
MAX_MEMORY = 10**15


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StoreSettings(_Section):
    memory_limit: str = Field(
        "1GB", description="DuckDB memory limit; larger work spills to the store's temp folder."
    )
    threads: int | None = Field(
        None, ge=1, le=MAX_THREADS, description="DuckDB threads; default: all cores."
    )

    @field_validator("memory_limit")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        m = _MEMORY.match(value)
        if not m:
            raise ValueError(
                f"{value[:40]!r} is not a size; write e.g. '2GB' or '512MB' "
                "(units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            )
        size = float(m.group(1)) * _UNITS[m.group(2).lower()]
        if not MIN_MEMORY <= size <= MAX_MEMORY:
            raise ValueError(f"{value!r} is out of range; give between 64MB and 1000TB")
        return value.strip()


class IngestSettings(_Section):
    event_map: dict[str, str] = Field(
        default_factory=dict, description="Foreign event names mapped to jingzhun's names."
    )
    max_future_hours: float = Field(
        24.0, ge=0, le=MAX_DAYS * 24, description="Reject events later than now + this."
    )
    min_timestamp: str = Field("1990-01-01", description="Reject events earlier than this.")
    max_id_length: int = Field(256, ge=1, le=4096)
    max_line_bytes: int = Field(
        16 << 20, ge=1 << 10, le=1 << 30, description="Longest accepted row in bytes."
    )
    batch_rows: int = Field(
        1 << 19, ge=1, le=1 << 24, description="Rows per chunk when streaming a file."
    )

    @field_validator("event_map")
    @classmethod
    def _targets_are_known(cls, value: dict[str, str]) -> dict[str, str]:
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
        le=MAX_OUTLIER_THRESHOLD,
        description="Modified z-score (mad, default 3.5) or IQR multiple (iqr, default 3) beyond which an order is an outlier.",
    )
    burst_events_per_minute: int = Field(
        30,
        ge=1,
        le=MAX_BURST,
        description="More events than this in one minute from one visitor flags a burst.",
    )


class CustomTrait(_Section):
    """A computed trait declared in jingzhun.toml, Segment "computed traits" style."""

    name: Name = Field(description="Column name in profiles.")
    agg: Literal["count", "sum", "mean", "min", "max", "distinct", "mode", "first", "last"] = Field(
        description="count, sum, mean, min, max, distinct (count of distinct values), mode, first, last."
    )
    of: str | None = Field(
        None, description="The event column (or item category/brand) to aggregate."
    )
    where: Expression | None = Field(
        None, description="Filter over events, e.g. \"event = 'order_completed'\"."
    )
    window_days: Days | None = Field(
        None, description="Only events in the last N days before as_of (one hour or more)."
    )


class ProfileSettings(_Section):
    half_life_days: Days = Field(
        30.0, description="Half-life of the category affinity decay (one hour to 36,500 days)."
    )
    last_items: int = Field(10, ge=1, le=100, description="How many recent items last_items keeps.")
    weights: dict[str, Weight] = Field(
        default_factory=lambda: dict(INTEREST_WEIGHTS),
        description="Interaction weight per event, for affinity and top brands (default: view 1, "
        "wishlist 2, cart 3, purchase 5; see docs/data-model.md).",
    )
    score: dict[str, Weight] = Field(
        default_factory=lambda: {
            "recency_days": -0.3,
            "frequency": 0.3,
            "monetary": 0.3,
            "active_days": 0.1,
        },
        description="P(u) = Σ w_i F(u_i): weights over traits (negative: lower is better).",
    )
    traits: list[CustomTrait] = Field(default_factory=list, max_length=MAX_DEFINITIONS)

    @field_validator("weights")
    @classmethod
    def _weights_name_events(cls, value: dict[str, float]) -> dict[str, float]:
        for name, w in value.items():
            if name not in EVENT_NAMES:
                raise ValueError(f"weights names unknown event {name!r}")
            if w < 0:
                raise ValueError(f"weight of {name!r} must be >= 0")
        return value


class TagRule(_Section):
    name: Name
    when: Expression = Field(
        description="An expression over profile traits, e.g. 'monetary >= p90(monetary)'."
    )


class TagBins(_Section):
    name: Name
    trait: str
    where: Expression | None = Field(
        None, description="Only users for whom this holds, e.g. 'frequency >= 1'."
    )
    quantiles: list[float] = Field(
        default_factory=lambda: [0.25, 0.5, 0.75], min_length=1, max_length=99
    )
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
        max_length=MAX_DEFINITIONS,
        default_factory=lambda: [
            TagRule(name="high_value", when="monetary > 0 and monetary >= p90(monetary)"),
            TagRule(name="churn_risk", when="recency_days > 90 and frequency >= 3"),
        ],
    )
    bins: list[TagBins] = Field(
        max_length=MAX_DEFINITIONS,
        default_factory=lambda: [
            TagBins(
                name="spend_band",
                trait="monetary",
                where="frequency >= 1",
                quantiles=[0.5, 0.8, 0.95],
                labels=["low", "mid", "high", "top"],
            )
        ],
    )


class RecommendSettings(_Section):
    model: str = Field("hybrid", description="The model `recommend train` fits by default.")
    k: int = Field(10, ge=1, le=1000, description="Items per user in `recommend batch`.")
    weights: dict[str, Weight] | None = Field(
        None,
        description="Interaction weight per event type; default: [profile] weights (view 1, cart 3, purchase 5).",
    )
    half_life_days: Days | None = Field(
        None,
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
    price_min: float | None = Field(None, ge=0, le=1e15)
    price_max: float | None = Field(None, ge=0, le=1e15)
    max_per_category: int | None = Field(
        3,
        ge=1,
        le=1000,
        description="Diversity: at most N items of one category per list; none: no cap.",
    )
    boost: dict[str, Annotated[Weight, Field(ge=0)]] = Field(
        default_factory=dict, description="item_id -> factor (> 1 lifts an item among candidates)."
    )

    @field_validator("weights")
    @classmethod
    def _weights_name_events(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        for name, w in value.items():
            if name not in EVENT_NAMES:
                raise ValueError(
                    f"recommend weights: unknown event {name!r}; "
                    f"use event names: {', '.join(sorted(EVENT_NAMES))}"
                )
            if w < 0:  # finite and bounded already (Weight)
                raise ValueError(f"recommend weights: {name} = {w}; use a weight >= 0")
        return value


class PredictSettings(_Section):
    horizon_days: float = Field(
        30.0,
        gt=0,
        le=MAX_DAYS,
        description="Label window: buys (or churns) within N days of a cutoff.",
    )
    active_days: float = Field(
        90.0,
        gt=0,
        le=MAX_DAYS,
        description="Churn's population: customers with an order in the last N days.",
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
        200_000,
        ge=1000,
        le=1_000_000_000,
        description="Training rows each model is compared on (a sample).",
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
        0.05, ge=0, le=MAX_WEIGHT, description="Cost of one message, for uplift targeting."
    )
    discount_rate: float = Field(0.10, ge=0, lt=1, description="Annual discount rate for CLV.")
    clv_months: int = Field(12, ge=1, le=120, description="CLV horizon in months.")

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        bad = [m for m in value if m not in CLASSIFIERS]
        if bad or not value:
            raise ValueError(
                f"unknown classifier {bad[0] if bad else None!r}; use {', '.join(CLASSIFIERS)}"
            )
        seen: set[str] = set()
        for m in value:  # 10,000 times 'logistic' would train it 10,000 times
            if m in seen:
                raise ValueError(f"{m!r} is named twice; name each classifier once")
            seen.add(m)
        return value


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Address `jingzhun serve` listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port (0: any free one).")
    threads: int = Field(
        8, ge=1, le=64, description="Threads that answer requests (each with its own reader)."
    )
    max_event_bytes: int = Field(
        32 * 1024, ge=1024, le=1 << 20, description="Largest tracking message (Segment: 32 KB)."
    )
    max_batch_bytes: int = Field(
        500 * 1024, ge=1024, le=16 << 20, description="Largest tracking body (Segment: 500 KB)."
    )
    max_body_bytes: int = Field(
        4 << 20, ge=1024, le=64 << 20, description="Largest body of any other request."
    )
    rate_per_second: float = Field(
        2000, gt=0, le=1e6, description="Requests a key may make per second, sustained."
    )
    rate_burst: int = Field(4000, ge=1, le=10**7, description="Requests a key may make at once.")
    dashboard_rate_per_second: float = Field(
        10,
        gt=0,
        le=1e6,
        description="Dashboard requests a signed-in session (without one: a client address) may "
        "make per second, sustained; more are answered 429 with Retry-After.",
    )
    dashboard_rate_burst: int = Field(
        200,
        ge=1,
        le=10**7,
        description="Dashboard requests a session (or address) may make at once.",
    )
    login_rate_per_second: float = Field(
        0.1,
        gt=0,
        le=1e6,
        description="Dashboard sign-in attempts a client address may make per second, sustained "
        "(0.1: six a minute), against key guessing.",
    )
    login_rate_burst: int = Field(
        10,
        ge=1,
        le=10**6,
        description="Dashboard sign-in attempts a client address may make at once.",
    )
    queue_messages: int = Field(
        200_000, ge=100, le=10**7, description="Messages waiting to be written before 503."
    )
    batch_messages: int = Field(
        20_000, ge=1, le=10**6, description="Most messages the writer puts in one batch."
    )
    linger_ms: float = Field(
        20, ge=0, le=5000, description="How long the writer waits for more messages to batch."
    )
    keep_alive_seconds: int = Field(
        75,
        ge=1,
        le=3600,
        description="How long an idle connection stays open. Longer than clients keep idle "
        "connections (httpx 5 s, browsers ~60 s), so the client closes first: when the server "
        "closes as a client reuses it, the request fails.",
    )
    live_users: int = Field(
        100_000,
        ge=1,
        le=10**7,
        description="Users whose live traits and interactions the server holds in memory "
        "(2-4 kB each; the least recently touched go first).",
    )
    trigger_seconds: float = Field(
        60,
        ge=0,
        le=86_400,
        description="How often the server runs triggered campaigns (0: never; then run "
        "jingzhun campaign trigger yourself).",
    )
    warm_up: bool = Field(
        True,
        description="At start, load the most recently active live_users in the background "
        "(else each is read from the store on first touch).",
    )


class EmailSettings(_Section):
    """How campaigns send email: an SMTP server (your provider's relay, or a local MTA)."""

    host: str = Field("127.0.0.1", min_length=1, max_length=253, description="SMTP host.")
    port: int = Field(25, ge=1, le=65535, description="SMTP port (587 for STARTTLS, 465 for TLS).")
    security: Literal["none", "starttls", "tls"] = Field(
        "none", description="Plain (a local relay), STARTTLS, or TLS from the first byte."
    )
    username: str | None = Field(None, max_length=320, description="SMTP login, if any.")
    password_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="The environment variable holding the SMTP password (never the password).",
    )
    from_: str = Field(
        "jingzhun <no-reply@localhost>", alias="from", max_length=320, description="From header."
    )
    reply_to: str | None = Field(None, max_length=320, description="Reply-To header.")
    rate_per_second: float = Field(
        50, gt=0, le=100_000, description="Messages sent per second, at most."
    )
    connections: int = Field(4, ge=1, le=64, description="SMTP connections kept open in parallel.")
    timeout_seconds: float = Field(30, gt=0, le=600, description="Socket timeout per SMTP command.")
    retries: int = Field(
        4, ge=0, le=20, description="Retries of a temporary failure (4xx, dropped connection)."
    )
    retry_base_seconds: float = Field(
        1.0, ge=0, le=3600, description="First retry's wait; each next one waits twice as long."
    )
    unsubscribe_mailto: str | None = Field(
        None,
        max_length=320,
        description="Address for List-Unsubscribe mailto: (default: the From address).",
    )
    dkim_key_file: str | None = Field(
        None, max_length=4096, description="PEM private key: sign with DKIM."
    )
    dkim_selector: str | None = Field(None, max_length=63)
    dkim_domain: str | None = Field(None, max_length=253)

    model_config = ConfigDict(populate_by_name=True)

    @model_validator(mode="after")
    def _dkim_whole(self) -> EmailSettings:
        given = [self.dkim_key_file, self.dkim_selector, self.dkim_domain]
        if any(given) and not all(given):
            raise ValueError("DKIM needs dkim_key_file, dkim_selector and dkim_domain together")
        return self


class TrackingSettings(_Section):
    """Where `jingzhun serve` is reached from recipients' mail clients: links, pixel, unsubscribe."""

    base_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        max_length=500,
        description="The server's public URL, e.g. https://t.example.com (no query).",
    )
    secret_env: str = Field(
        "JINGZHUN_TRACKING_SECRET",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="Environment variable with the key that signs links (else one kept in the store).",
    )
    attribution: Literal["last_touch", "first_touch"] = Field(
        "last_touch", description="Which campaign an order is credited to when several touched it."
    )


class WebhookSettings(_Section):
    """Where webhook campaigns POST their messages (an SMS, app-push or WeChat gateway)."""

    url: str | None = Field(
        None, max_length=2000, description="The gateway's http(s) URL that receives each message."
    )
    secret_env: str = Field(
        "JINGZHUN_WEBHOOK_SECRET",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="Environment variable holding the key of the X-Jingzhun-Signature HMAC.",
    )
    timeout_seconds: float = Field(10, gt=0, le=600, description="Seconds to wait for an answer.")
    retries: int = Field(4, ge=0, le=20, description="Retries of a 5xx, 429, 408 or timeout.")
    retry_base_seconds: float = Field(
        1.0, ge=0, le=3600, description="First retry's wait; each next one waits twice as long."
    )
    connections: int = Field(4, ge=1, le=64, description="Requests in flight at once.")
    rate_per_second: float = Field(
        50, gt=0, le=100_000, description="Messages per second, at most."
    )


class PrivacySettings(_Section):
    """Personal data (the privacy stage grows this section)."""

    default_region: str = Field(
        "CN",
        pattern=r"^[A-Za-z]{2}$",
        description="ISO 3166 region of phone numbers written without a country code "
        "(ad-audience exports parse them with it).",
    )
    pseudonymize_ids: bool = Field(
        False,
        description="Store user ids and anonymous ids as keyed pseudonyms (p + 24 hex), the "
        "same for the same id in every file and API call; look-ups by the original id keep "
        "working. Only for a new store: its ids cannot be changed later.",
    )
    default_marketing_consent: Literal["GRANTED", "DENIED"] = Field(
        "DENIED",
        description="Marketing consent of a user who never stated one (no consent_updated "
        "event, consent column, marketing_opt_in or API call): DENIED asks for opt-in.",
    )


class SparkSettings(_Section):
    """The Spark engine (``--engine spark``, issue 19)."""

    master: str = Field(
        "local[2]",
        max_length=2000,
        description="Where Spark runs: local[N], local[*], spark://HOST:PORT, yarn or "
        "k8s://URL (--spark-master overrides it).",
    )
    driver_memory: str = Field(
        "3g",
        pattern=r"^[1-9][0-9]{0,5}[kmgt]$",
        description="The Spark driver's heap, as Spark writes it (512m, 3g): on local[N] the "
        "driver does all the work, and Spark's own 1g runs out building 1M users' profiles.",
    )


class Settings(_Section):
    store: StoreSettings = StoreSettings()
    ingest: IngestSettings = IngestSettings()
    clean: CleanSettings = CleanSettings()
    profile: ProfileSettings = ProfileSettings()
    tags: TagSettings = TagSettings()
    recommend: RecommendSettings = RecommendSettings()
    predict: PredictSettings = PredictSettings()
    server: ServerSettings = ServerSettings()
    email: EmailSettings = EmailSettings()
    tracking: TrackingSettings = TrackingSettings()
    webhook: WebhookSettings = WebhookSettings()
    privacy: PrivacySettings = PrivacySettings()
    spark: SparkSettings = SparkSettings()
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
    where = _path_text(candidate)
    text = _read_config(candidate, where, explicit=bool(explicit))
    if text is None:
        return Settings()
    settings = validated(Settings, parse_toml(text, where), where)
    settings._source = candidate
    return settings


def read_toml(path: str | os.PathLike[str], what: str = "config file") -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; every failure an :class:`InputError` naming it.

    ``what`` names the file's role in messages (``"campaign spec"``). Only a regular file of
    at most MAX_CONFIG_BYTES is read.
    """
    path = Path(path)
    where = _path_text(path)
    text = _read_config(path, where, explicit=True, what=what)
    assert text is not None  # explicit: a missing file raised
    return parse_toml(text, where)


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """``text`` parsed as TOML; a syntax error, an absurd number or deep nesting is an
    :class:`InputError` naming ``where``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: {exc}", hint="fix the TOML syntax") from exc
    except ValueError as exc:  # an integer of thousands of digits
        raise InputError(
            f"{where}: a number is too long to read ({str(exc).split(':')[0]})",
            hint="fix the file",
        ) from exc
    except RecursionError:  # tomllib recurses once per nested table or array
        raise InputError(
            f"{where}: tables or arrays nest too deeply to read",
            hint="jingzhun's files nest at most a few levels; fix the file",
        ) from None


def validated(model: type[_M], raw: Any, where: str) -> _M:
    """``raw`` (parsed TOML or JSON) validated as ``model``; the first problem is an
    :class:`InputError` that names the key as the file spells it (``[control] share``)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"{where}: {_key(err['loc'], raw)} {_problem(err)}") from exc
    except RecursionError:  # a deep value under a key that takes any mapping
        raise InputError(f"{where}: a value nests too deeply", hint="fix the file") from None


#: The largest settings file read (a generous one is a few hundred KB).
MAX_CONFIG_BYTES = 16 << 20


def _path_text(path: Path) -> str:
    """The path as an error names it: control characters and undecodable bytes escaped,
    a 5,000-character name cut."""
    text = str(path)
    if not text.isprintable() or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        text = repr(text)[1:-1]
    return text if len(text) <= 120 else text[:119] + "…"


def _read_config(
    path: Path, where: str, *, explicit: bool, what: str = "config file"
) -> str | None:
    """The file's text; None if the implicit ./jingzhun.toml is absent. Only a regular file
    of at most MAX_CONFIG_BYTES is read (``--config /dev/zero`` would never end, a FIFO
    would block)."""
    check = "check --config" if what == "config file" else "check the path"
    try:
        info = path.stat()
    except FileNotFoundError:
        if explicit:
            raise InputError(f"{what} {where} does not exist", hint=check) from None
        return None
    except (OSError, ValueError) as exc:  # a name too long, a NUL, no permission …
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"cannot read {what} {where}: {reason}", hint=check) from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(
            f"{what} {where} is not a regular file",
            hint="give --config a .toml file" if what == "config file" else "give a .toml file",
        )
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {what} {where}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise InputError(
            f"{what} {where} is larger than {MAX_CONFIG_BYTES >> 20} MiB",
            hint=f"a settings file is a few KB; {check}",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {what} {where}: {exc}", hint="save it as UTF-8") from None


def _key(loc: tuple[int | str, ...], raw: Any) -> str:
    """``('profile', 'half_life_days')`` as ``[profile] half_life_days``; a list entry by its
    number and name (``[profile] traits #3 (recent_views) window_days``). Parts of the location
    that are not in the file (pydantic's union members) are left out."""
    parts: list[str] = []
    node = raw
    for i, part in enumerate(loc):
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            node = node[part]
            name = node.get("name") if isinstance(node, dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''} #{part + 1}"]
            if isinstance(name, str):
                parts[-1] += f" ({name[:40]})"
        elif isinstance(node, dict) and part in node:
            node = node[part]
            # A table of the first level is written [table]; a key of the first level as is.
            parts.append(f"[{part}]" if i == 0 and isinstance(node, dict) else str(part))
        elif i == 0 or isinstance(node, dict):  # a missing required key
            parts.append(str(part))
            node = None
    return " ".join(parts)


def _problem(err: Any) -> str:
    """Pydantic's message, with the bound spelled plainly and the value given."""
    ctx, kind = err.get("ctx") or {}, err["type"]
    value = err.get("input")
    given = shown(value)
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("above", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("below", "lt"),
    }
    if kind == "extra_forbidden":
        return "is not a known setting; check its spelling and section"
    if kind == "finite_number":
        return f"must be a finite number, not {given}"
    if kind in bounds:
        words, k = bounds[kind]
        bound = "1/24 (one hour)" if ctx[k] == MIN_DAYS else shown(ctx[k])
        return f"must be {words} {bound}, not {given}"
    if kind in ("too_long", "string_too_long"):
        what = "characters" if isinstance(value, str) else "entries"
        return (
            f"has {ctx.get('actual_length') or len(value):,} {what}; "
            f"at most {ctx['max_length']:,} are allowed"
        )
    if kind == "missing":
        return "is missing"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == _NAME_PATTERN:
        return f"{given} must be lower-case letters, digits and _, starting with a letter"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg']} (got {given})" if "input" in err else err["msg"]
