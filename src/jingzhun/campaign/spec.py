"""The campaign spec: what a campaign sends, to whom, with which control group, and what a
conversion is worth.

A spec is a TOML file (the CLI) or the same structure as JSON (the server). Every problem is
an :class:`~jingzhun.errors.InputError` naming the key as the file spells it.

Example ``spring.toml``::

    name = "spring-beauty"
    channel = "email"

    [audience]
    segment = "behaviour:2"            # RUN_NAME:SEGMENT
    tags = ["likely_to_buy"]           # every tag (or "tag=value") must hold
    where = "recency_days < 60 and monetary > 100"
    top = { score = "uplift", n = 5000 }

    [exclude]
    bought_within_days = 7
    frequency_cap = { messages = 2, days = 7 }

    [control]
    share = 0.2
    stratify = "behaviour"             # or true: by the audience's segment run

    [[variants]]
    name = "a"
    subject = "{{ first_name }}, new in beauty"
    template = "templates/spring_a.html"   # relative to this file

    [offer]
    cost_per_message = 0.002
    margin = 0.35
    conversion_window_days = 7
    discount = 0.1
    category = "beauty"

The server takes the same structure as JSON, with each variant's template text in ``body``
(a request names no file on the server's disk).
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from jingzhun.checks import MAX_ROWS
from jingzhun.config import MAX_EXPRESSION, Days, read_toml, validated
from jingzhun.contracts.events import EVENT_NAMES
from jingzhun.errors import InputError

#: A campaign's name: it appears in URLs, Message-IDs and file names.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
#: Names the dashboard's campaign pages use (/campaigns/new, /campaigns/audience).
RESERVED_NAMES = frozenset({"new", "audience"})
CHANNELS = ("email", "webhook", "ads")
#: The scores an audience can be ranked by (the predict stage's ``scores.score``, or random).
TOP_SCORES = ("uplift", "propensity", "clv", "random")
#: The largest template file or body read (a rich HTML email is tens of KB).
MAX_TEMPLATE_BYTES = 1 << 20
MAX_VARIANTS = 26
#: Variant names: short, for reports and URLs.
_VARIANT = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
#: A tag condition: ``tag`` or ``tag=value``.
_TAG = r"^[a-z][a-z0-9_]{0,63}(=[^\x00-\x1f]{1,200})?$"


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Top(_Part):
    """The ``n`` audience members with the highest ``score`` (``random``: ``n`` drawn at
    random, for a campaign to compare a targeted one with)."""

    score: Literal["uplift", "propensity", "clv", "random"]
    n: int = Field(ge=1, le=MAX_ROWS)


class Audience(_Part):
    """Who the campaign is for: every condition given must hold (none: every profiled user)."""

    segment: str | None = Field(None, min_length=3, max_length=200)
    tags: list[Annotated[str, Field(pattern=_TAG)]] = Field(default_factory=list, max_length=50)
    where: str | None = Field(None, min_length=1, max_length=MAX_EXPRESSION)
    top: Top | None = None
    share: float | None = Field(None, gt=0, le=1)

    @field_validator("segment")
    @classmethod
    def _run_and_segment(cls, value: str | None) -> str | None:
        if value is not None:
            run, _, seg = value.partition(":")
            if not run or not seg:
                raise ValueError(
                    f"{value[:60]!r} must be RUN_NAME:SEGMENT, e.g. 'rfm:champions' or 'behaviour:2'"
                )
        return value

    @model_validator(mode="after")
    def _top_or_share(self) -> Audience:
        if self.top is not None and self.share is not None:
            raise ValueError(
                "give either top (the best-scored N) or share (a random part), not both"
            )
        return self

    @property
    def run(self) -> str | None:
        return self.segment.partition(":")[0] if self.segment else None

    @property
    def segment_code(self) -> str | None:
        return self.segment.partition(":")[2] if self.segment else None


class Trigger(_Part):
    """A triggered campaign: it takes in each user whose latest ``event`` is at least
    ``after_minutes`` old (and at most ``lookback_hours``) with no ``without`` event since —
    a cart abandoned for an hour: ``event = "product_added"``, ``without = "order_completed"``.
    Each run (``jingzhun campaign trigger``, or the server's minute clock) draws the users who
    qualify now; a user is a member once (the delivery key), arms drawn per user by hash."""

    event: str = Field(min_length=1, max_length=64)
    without: str | None = Field(None, min_length=1, max_length=64)
    after_minutes: float = Field(60, ge=0, le=60 * 24 * 30)
    lookback_hours: float = Field(24, gt=0, le=24 * 90)

    @field_validator("event", "without")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in EVENT_NAMES:
            raise ValueError(
                f"{value[:40]!r} is not an event name; use one of: {', '.join(EVENT_NAMES)}"
            )
        return value

    @model_validator(mode="after")
    def _window(self) -> Trigger:
        if self.after_minutes >= self.lookback_hours * 60:
            raise ValueError("after_minutes must be shorter than lookback_hours")
        return self


class FrequencyCap(_Part):
    """At most ``messages`` sent to a user, over every campaign, in ``days``."""

    messages: int = Field(ge=1, le=1000)
    days: Days


class Exclude(_Part):
    no_consent: bool = True
    suppressed: bool = True
    bought_within_days: Days | None = None
    frequency_cap: FrequencyCap | None = None
    campaigns: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default_factory=list,
        max_length=100,
        description="Leave out the members (either arm) of these campaigns.",
    )

    @field_validator("suppressed")
    @classmethod
    def _always(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "cannot be turned off: suppressed addresses (bounces, unsubscribes) are never messaged"
            )
        return value


class Control(_Part):
    """The randomized hold-out: ``share`` of the audience gets nothing and is measured."""

    share: float = Field(0.2, gt=0, lt=1)
    stratify: bool | Annotated[str, Field(min_length=1, max_length=100)] = False


class Variant(_Part):
    """One version of the message (A/B/n): drawn for each member in proportion to ``weight``."""

    name: str = Field(pattern=_VARIANT)
    weight: float = Field(1.0, gt=0, le=1e6)
    subject: str | None = Field(None, min_length=1, max_length=998)
    template: str | None = Field(None, min_length=1, max_length=4096)
    body: str | None = Field(None, min_length=1, max_length=MAX_TEMPLATE_BYTES)
    format: Literal["text", "html"] | None = None

    @property
    def html(self) -> bool:
        if self.format is not None:
            return self.format == "html"
        return bool(self.template and self.template.lower().endswith((".html", ".htm")))


class Offer(_Part):
    """What a message costs and a conversion earns, and the message's content for the report
    (and for the simulator's customers, who respond to a category and a discount)."""

    cost_per_message: float = Field(0.0, ge=0, le=1e6)
    margin: float = Field(0.3, ge=0, le=1)
    conversion_window_days: Days = 7.0
    discount: float = Field(0.0, ge=0, lt=1)
    category: str | None = Field(None, min_length=1, max_length=200)


class CampaignSpec(_Part):
    """A validated campaign spec (see the module docstring)."""

    name: str = Field(pattern=NAME_PATTERN)
    channel: Literal["email", "webhook", "ads"]
    description: str | None = Field(None, max_length=2000)
    audience: Audience = Audience()
    exclude: Exclude = Exclude()
    control: Control = Control()
    variants: list[Variant] = Field(default_factory=list, max_length=MAX_VARIANTS)
    offer: Offer = Offer()
    trigger: Trigger | None = None
    recommendations: int = Field(
        3, ge=0, le=50, description="Recommendations per member the content may show."
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_NAMES:
            raise ValueError(
                f"{name!r} names a page of the dashboard (/campaigns/{name}); pick another name"
            )
        return name

    @model_validator(mode="after")
    def _fits_channel(self) -> CampaignSpec:
        if self.trigger is not None:
            if self.audience.top is not None or self.audience.share is not None:
                raise ValueError(
                    "a triggered campaign takes users as they qualify: [audience] top and "
                    "share do not apply"
                )
            if self.control.stratify:
                raise ValueError(
                    "a triggered campaign draws each user's arm alone: [control] stratify "
                    "does not apply"
                )
        if self.channel == "email" and not self.exclude.no_consent:
            raise ValueError(
                "[exclude] no_consent cannot be turned off for email: "
                "marketing email needs the recipient's consent"
            )
        if self.channel == "ads":
            if self.variants:
                raise ValueError(
                    "an ads campaign exports an audience and sends no message; remove [[variants]]"
                )
            return self
        if not self.variants:
            raise ValueError(
                f"a {self.channel} campaign needs at least one [[variants]] entry with a template"
            )
        names = [v.name for v in self.variants]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"variant name {dup!r} is used twice; give each variant its own name")
        for v in self.variants:
            if self.channel == "email" and v.subject is None:
                raise ValueError(f"variant {v.name!r} needs a subject for email")
            if v.template is None and v.body is None:
                raise ValueError(f"variant {v.name!r} needs a template (a file) or a body")
        return self

    def weights(self) -> list[float]:
        """Each variant's share of the members, in order."""
        total = sum(v.weight for v in self.variants)
        return [v.weight / total for v in self.variants]

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate the TOML spec at ``path``, with each variant's template read (paths
    relative to the spec) into its ``body``.

    Raises
    ------
    InputError
        Naming the file and key: a syntax error, an unknown key, a value out of range, a
        template that cannot be read.
    """
    path = Path(path)
    raw = read_toml(path, "campaign spec")
    spec = validated(CampaignSpec, raw, str(path))
    return _with_bodies(spec, path.parent, str(path))


def spec_from_json(raw: Any, where: str = "campaign") -> CampaignSpec:
    """Validate a spec given as parsed JSON (the server). Templates come inline in ``body``;
    a ``template`` path is refused (a request names no file on the server)."""
    spec = validated(CampaignSpec, raw, where)
    for i, v in enumerate(spec.variants):
        if v.template is not None and v.body is None:
            raise InputError(
                f"{where}: variants #{i + 1} ({v.name}) template names a file; "
                "send the template's text in body instead"
            )
    return spec


def stored_spec(text: str) -> CampaignSpec:
    """The spec as the store keeps it (written by :meth:`CampaignSpec.to_json`)."""
    return CampaignSpec.model_validate(json.loads(text))


#: Where a spec's own problems point when pydantic gives no location (a check across fields),
#: and where a draw's errors point (they start with the key as the file spells it).
_WHOLE_SPEC = (
    (r"variant '([^']*)' needs a subject", "variants.{i}.subject"),
    (r"variant '([^']*)' needs a template", "variants.{i}.body"),
    (r"variant name '([^']*)' is used twice", "variants.{last}.name"),
    (r"^variant '([^']*)' subject\b", "variants.{i}.subject"),
    (r"^variant '([^']*)' template\b", "variants.{i}.body"),
    (r"needs at least one \[\[variants\]\]", "variants.0.body"),
    (r"sends no message; remove \[\[variants\]\]", "channel"),
    (r"no_consent cannot be turned off", "exclude.no_consent"),
    (r"\[audience\] top and share do not apply", "audience.top"),
    (r"\[control\] stratify does not apply", "control.stratify"),
    (r"^\[audience\] segment\b", "audience.segment"),
    (r"^\[audience\] tags\b", "audience.tags"),
    (r"^\[audience\] where\b", "audience.where"),
    (r"^\[audience\] top score\b", "audience.top.score"),
    (r"^\[exclude\] campaigns\b", "exclude.campaigns"),
    (r"^\[control\] stratify\b", "control.stratify"),
    (r"^campaign .* exists \(", "name"),
)


def problem_field(err: Exception, raw: Any = None) -> str:
    """The field of a spec an error from :func:`spec_from_json`, a draw or
    :meth:`~jingzhun.campaign.facade.Campaigns.create` is about, as a dotted path into the
    spec's structure (``"audience.top.n"``, ``"variants.1.subject"``; list entries counted
    from 0), or ``""`` when it is about the spec as a whole — so a form can show the message
    beside its field.

    ``raw`` is the spec as given (the variants' names find a variant named in a message).

    Examples
    --------
    >>> try:
    ...     spec_from_json({"name": "x", "channel": "email", "control": {"share": 2}})
    ... except InputError as err:
    ...     problem_field(err)
    'control.share'
    """
    cause = err.__cause__
    if isinstance(cause, ValidationError) and cause.errors():
        loc = [str(part) for part in cause.errors()[0]["loc"]]
        if loc:
            return ".".join(loc)
    text = getattr(err, "message", str(err))
    if text.startswith("campaign: "):  # spec_from_json's prefix
        text = text.removeprefix("campaign: ").strip()
    names = []
    if isinstance(raw, dict) and isinstance(raw.get("variants"), list):
        names = [v.get("name") if isinstance(v, dict) else None for v in raw["variants"]]
    for pattern, field in _WHOLE_SPEC:
        found = re.search(pattern, text)
        if found is None:
            continue
        if "{i}" in field or "{last}" in field:  # the variant named (a duplicate: its 2nd)
            name = found.group(1)
            first = names.index(name) if name in names else 0
            last = len(names) - 1 - names[::-1].index(name) if name in names else 0
            field = field.format(i=first, last=last)
        return field
    return ""


def _with_bodies(spec: CampaignSpec, folder: Path, where: str) -> CampaignSpec:
    variants = []
    for i, v in enumerate(spec.variants):
        if v.body is None and v.template is not None:
            key = f"{where}: variants #{i + 1} ({v.name}) template"
            v = v.model_copy(update={"body": _read_template(folder / v.template, key)})
        variants.append(v)
    return spec.model_copy(update={"variants": variants})


def _read_template(path: Path, key: str) -> str:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{key} {path} is not a regular file", hint="name a template file")
        if info.st_size > MAX_TEMPLATE_BYTES:
            raise InputError(
                f"{key} {path} is larger than {MAX_TEMPLATE_BYTES >> 20} MiB",
                hint="an email template is a few KB",
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            f"{key} {path} does not exist", hint="template paths are relative to the spec file"
        ) from None
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{key}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{key} {path} is not UTF-8 ({exc.reason})", hint="save it as UTF-8"
        ) from None
    if not text.strip():
        raise InputError(f"{key} {path} is empty", hint="write the message in it")
    return text


__all__ = [
    "CHANNELS",
    "TOP_SCORES",
    "Audience",
    "CampaignSpec",
    "Control",
    "Exclude",
    "FrequencyCap",
    "Offer",
    "Top",
    "Trigger",
    "Variant",
    "load_spec",
    "problem_field",
    "spec_from_json",
    "stored_spec",
]
