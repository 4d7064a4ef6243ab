"""``ws.campaigns``: create, list, show, preview and send campaigns.

Examples
--------
>>> with jingzhun.open("shop.duckdb") as ws:                            # doctest: +SKIP
...     ws.campaigns.create("spring.toml").name
...     ws.campaigns.preview("spring-beauty", sample=3).steps
...     ws.campaigns.send("spring-beauty").counts
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from jingzhun.campaign import delivery
from jingzhun.campaign.audience import AUDIENCE, Conditions, Draw, draw
from jingzhun.campaign.channels.ads import ExportResult, export_audience
from jingzhun.campaign.channels.email import SmtpSender
from jingzhun.campaign.content import Renderer
from jingzhun.campaign.spec import CampaignSpec, load_spec, spec_from_json, stored_spec
from jingzhun.checks import bounded_int
from jingzhun.config import Settings
from jingzhun.contracts.results import Result
from jingzhun.errors import ConflictError, InputError, NotFoundError
from jingzhun.ingest import consent
from jingzhun.ingest.read import contacts, order_totals
from jingzhun.outputs import check_output_path
from jingzhun.predict.read import scored
from jingzhun.profile.build import profile_columns
from jingzhun.store import Registry, Store

if TYPE_CHECKING:
    from jingzhun.store.lake import Lake


@dataclasses.dataclass
class CampaignInfo(Result):
    """A stored campaign: its spec, state and deliveries by state."""

    name: str
    channel: str
    state: str
    created_at: datetime
    snapshot_at: datetime | None
    sent_at: datetime | None
    spec: dict[str, Any]
    counts: dict[str, int]


@dataclasses.dataclass
class Preview(Result):
    """What a send would do, computed without writing anything."""

    campaign: str
    audience: dict[str, Any]
    expected: dict[str, Any] | None
    samples: list[dict[str, Any]]


@dataclasses.dataclass
class Estimate(Result):
    """A spec's audience drawn now, and what messaging its treatment arm is expected to earn
    by the uplift model's scores (``expected`` None, and ``reason`` saying why, when no user
    has an uplift score)."""

    audience: Draw
    expected: dict[str, Any] | None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "audience": self.audience.to_dict(),
            "expected": self.expected,
            "reason": self.reason,
        }


#: The languages content and reasons are rendered in.
LANGS = ("en", "zh")


def _check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise InputError(
            f"lang {str(lang)[:40]!r} is not a language jingzhun writes",
            hint="use en or zh",
            param="lang",
        )
    return lang


class Campaigns:
    """The campaign stage over one store (see the module docstring)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        #: Marketing consent of users who stated none.
        self._consent = settings.privacy.default_marketing_consent

    # -- definitions --------------------------------------------------------------------------

    def create(
        self,
        spec: str | os.PathLike[str] | CampaignSpec | dict[str, Any],
        *,
        replace: bool = False,
        lake: Lake | None = None,
    ) -> CampaignInfo:
        """Store a campaign from a TOML file, a parsed JSON object or a spec.

        Its audience conditions are checked against the store now (an unknown segment, tag,
        trait or score fails here, naming the field) — against ``lake`` when its audience is
        drawn from one on Spark — and its templates compiled.

        Raises
        ------
        ConflictError
            A campaign of that name exists (``replace`` replaces it only while it is a draft).
        """
        if isinstance(spec, CampaignSpec):
            parsed = spec
        elif isinstance(spec, dict):
            parsed = spec_from_json(spec)
        else:
            parsed = load_spec(Path(spec))
        Renderer(parsed)
        self.audience(parsed, lake=lake)  # the references resolve (the draw is thrown away)
        state = self.store.scalar("SELECT state FROM campaigns WHERE name = ?", [parsed.name])
        if state is not None and not (replace and state == "draft"):
            raise ConflictError(
                f"campaign {parsed.name!r} exists ({state})",
                hint="give the new one another name"
                + ("" if state != "draft" else ", or replace the draft (--replace)"),
            )
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.store.transaction():
            self.store.run("DELETE FROM campaigns WHERE name = ?", [parsed.name])
            self.store.run(
                "INSERT INTO campaigns VALUES (?, ?, ?, 'draft', ?, NULL, NULL)",
                [parsed.name, parsed.channel, parsed.to_json(), now],
            )
        return self.get(parsed.name)

    def spec(self, name: str) -> CampaignSpec:
        text = self.store.scalar("SELECT spec FROM campaigns WHERE name = ?", [name])
        if text is None:
            known = [
                r[0]
                for r in self.store.rows(
                    "SELECT name FROM campaigns ORDER BY created_at DESC LIMIT 10"
                )
            ]
            raise NotFoundError(
                f"no campaign {name[:80]!r}",
                hint=("campaigns: " + ", ".join(known))
                if known
                else "create one: jingzhun campaign create SPEC",
            )
        return stored_spec(text)

    def get(self, name: str) -> CampaignInfo:
        spec = self.spec(name)
        row = self.store.rows(
            "SELECT channel, state, created_at, snapshot_at, sent_at FROM campaigns WHERE name = ?",
            [name],
        )[0]
        return CampaignInfo(
            name=name,
            channel=row[0],
            state=row[1],
            created_at=row[2],
            snapshot_at=row[3],
            sent_at=row[4],
            spec=json.loads(spec.to_json()),
            counts=delivery.counts(self.store, name),
        )

    def list(self) -> pd.DataFrame:
        """Every campaign, newest first, with its deliveries sent, held out (control) and
        failed, and its spec's ``description`` (None when it has none)."""
        return self.store.sql(
            """SELECT c.name, c.channel, c.state, c.created_at, c.sent_at,
                      count(d.user_id) FILTER (d.state = 'sent') AS sent,
                      count(d.user_id) FILTER (d.state = 'control') AS control,
                      count(d.user_id) FILTER (d.state = 'failed') AS failed,
                      json_extract_string(c.spec, '$.description') AS description
               FROM campaigns c LEFT JOIN deliveries d ON d.campaign = c.name
               GROUP BY ALL ORDER BY c.created_at DESC, c.name"""
        ).df()

    # -- before sending ------------------------------------------------------------------------

    def audience(
        self,
        spec: CampaignSpec | dict[str, Any],
        *,
        now: datetime | None = None,
        lake: Lake | None = None,
    ) -> Draw:
        """Draw a spec's audience without storing anything: its size after each step and its
        arms (what a campaign builder shows as conditions change). ``lake``: draw it from a
        lake's profiles, segments, tags, consents and orders on Spark (docs/scaling.md)."""
        parsed = spec if isinstance(spec, CampaignSpec) else spec_from_json(spec)
        with Conditions(self.store, lake) as where:
            return draw(self.store, parsed, now=now, consent_default=self._consent, where=where)

    def estimate(
        self, spec: CampaignSpec | dict[str, Any], *, now: datetime | None = None
    ) -> Estimate:
        """What a campaign builder shows as conditions change: the spec checked as
        :meth:`create` checks it (fields, templates compiled, references resolved), its
        audience drawn now without storing anything, and the expected incremental profit of
        messaging the treatment arm (see :meth:`expected_profit`).

        Raises
        ------
        InputError / NotFoundError
            The spec's first problem, naming the field
            (:func:`~jingzhun.campaign.spec.problem_field` finds it).

        Examples
        --------
        >>> e = ws.campaigns.estimate({"name": "x", "channel": "ads",
        ...                            "audience": {"where": "frequency >= 1"}})  # doctest: +SKIP
        >>> e.audience.treatment, e.expected["incremental_profit"]             # doctest: +SKIP
        (412, 37.5)
        """
        parsed = spec if isinstance(spec, CampaignSpec) else spec_from_json(spec)
        Renderer(parsed)  # a template that does not compile is named now, not at the send
        d = draw(self.store, parsed, now=now, consent_default=self._consent)
        expected = self._expected(parsed, d)
        reason = None
        if expected is None:
            reason = "no user has an uplift score yet; run jingzhun predict score uplift"
        return Estimate(d, expected, reason)

    def traits(self) -> dict[str, str]:
        """The profile traits an audience's ``where`` condition can name, with their DuckDB
        types (numbers, flags, text; not ids, times or lists).

        Raises
        ------
        NotFoundError
            No profiles have been built.
        """
        usable = ("BIGINT", "INTEGER", "DOUBLE", "FLOAT", "BOOLEAN", "VARCHAR", "DECIMAL")
        return {
            name: kind
            for name, kind in profile_columns(self.store).items()
            if name != "user_id" and kind.startswith(usable) and "[" not in kind
        }

    def preview(
        self,
        name: str,
        *,
        sample: int = 5,
        lang: str = "en",
        now: datetime | None = None,
        check: bool = True,
        lake: Lake | None = None,
    ) -> Preview:
        """Audience size after each step, composition, expected incremental conversions and
        profit from the uplift scores (when there are any), and ``sample`` rendered messages
        (one of each variant in turn). ``check``: first run the templates for every treatment
        member (the CLI's pre-flight; a second for 2,000 members); without it only the samples
        are rendered (the dashboard's page, which a million-member draft must not stall).
        ``lake``: the audience is drawn from a lake on Spark and the messages personalised
        from its profiles and lists (the campaign, addresses, suppressions and deliveries are
        the store's).

        Raises
        ------
        InputError
            When a template fails for any treatment member (naming variant, line and user),
            or, without ``check``, for a sampled one.
        """
        _check_lang(lang)
        sample = bounded_int(sample, "sample", lo=0, hi=1000)
        spec = self.spec(name)
        with Conditions(self.store, lake) as where:
            d = draw(self.store, spec, now=now, consent_default=self._consent, where=where)
            samples = self._samples(spec, d, where, sample=sample, lang=lang, check=check)
            expected = self._expected(spec, d, where)
        return Preview(spec.name, d.to_dict(), expected, samples)

    def _samples(
        self, spec: CampaignSpec, d: Draw, where: Conditions, *, sample: int, lang: str, check: bool
    ) -> list[dict[str, Any]]:
        """``sample`` rendered messages of the draw in ``_jz_audience`` (one of each variant in
        turn); with ``check``, every treatment member's templates run first."""
        renderer = Renderer(spec) if spec.variants else None
        samples: list[dict[str, Any]] = []
        if renderer is not None:
            if check:
                sources = where.sources(
                    lambda: [
                        u
                        for (u,) in self.store.rows(
                            f"SELECT user_id FROM {AUDIENCE} "
                            "WHERE excluded IS NULL AND arm = 'treatment'"
                        )
                    ],
                    spec,
                    d.now,
                )
                delivery._render_drawn(self.store, spec, renderer, lang=lang, sources=sources)
            # One of each variant in turn (A/B/n shows every version), then the next of each.
            members = self.store.sql(
                f"""SELECT user_id, variant, NULL AS recommendations FROM (
                        SELECT user_id, variant, u_variant, row_number() OVER (
                            PARTITION BY variant ORDER BY u_variant, user_id) AS turn
                        FROM {AUDIENCE} WHERE excluded IS NULL AND arm = 'treatment')
                    ORDER BY turn, variant LIMIT ?""",
                [sample],
            ).df()
            if not check:
                sources = where.sources(lambda: members["user_id"].tolist(), spec, d.now)
            for c, variant in zip(
                delivery.contexts(self.store, spec, members, lang=lang, sources=sources),
                members["variant"],
                strict=True,
            ):
                r = renderer.render(variant, c)
                samples.append(
                    {
                        "user_id": c["user_id"],
                        "variant": variant,
                        "subject": r.subject,
                        "text": r.text,
                        "html": r.html,
                    }
                )
        return samples

    def _expected(
        self, spec: CampaignSpec, d: Draw, where: Conditions | None = None
    ) -> dict[str, Any] | None:
        """Incremental conversions and profit if the treatment arm of the draw ``d`` left in
        ``_jz_audience`` is messaged (None when nothing was uplift-scored).

        Each treatment member's uplift score is the change in their chance to order in the
        window that the message causes (:mod:`jingzhun.predict.uplift_learners`), so their
        sum is the expected incremental conversions; each is worth an average order (the
        store's revenue over its orders) times ``[offer] margin``, and every message costs
        ``[offer] cost_per_message``::

            profit = sum(uplift) * average_order_value * margin - cost_per_message * treated

        Members without a score count as zero uplift (``scored`` says how many had one). The
        model named is the active uplift model of the registry (``predict score uplift``
        scores with it)."""
        where = where or Conditions(self.store)
        try:
            sql = where.sql(scored(where.backend, "uplift"))
        except NotFoundError:
            return None
        uplift, n_scored = self.store.rows(
            f"SELECT sum(s.value), count(s.value) FROM {AUDIENCE} a JOIN ({sql}) s USING (user_id) "
            "WHERE a.excluded IS NULL AND a.arm = 'treatment'"
        )[0]
        totals = order_totals(self.store, where.backend)
        aov = totals.net / totals.orders if totals.orders else 0.0
        conversions = float(uplift or 0.0)
        cost = spec.offer.cost_per_message * d.treatment
        profit = conversions * aov * spec.offer.margin - cost
        model = Registry(self.store).active("uplift")
        return {
            "treated": d.treatment,
            "scored": int(n_scored),
            "incremental_conversions": round(conversions, 2),
            "average_order_value": round(aov, 2),
            "margin": spec.offer.margin,
            "cost_per_message": spec.offer.cost_per_message,
            "cost": round(cost, 2),
            "incremental_profit": round(profit, 2),
            "model_id": None if model is None else model.model_id,
            "model": None if model is None else model.method,
        }

    # -- sending --------------------------------------------------------------------------------

    def send(
        self,
        name: str,
        *,
        dry_run: bool = False,
        lang: str = "en",
        now: datetime | None = None,
        sender: SmtpSender | None = None,
        progress: delivery.Progress | None = None,
    ) -> delivery.SendResult:
        """Send the campaign's queue (its first send draws and stores the audience)."""
        _check_lang(lang)
        return delivery.send(
            self.store,
            self.spec(name),
            self.settings,
            dry_run=dry_run,
            lang=lang,
            now=now,
            sender=sender,
            progress=progress,
        )

    def export(self, name: str, *, platform: str, out: str | os.PathLike[str]) -> ExportResult:
        """Export an ads campaign's treatment arm as a hashed customer list for ``platform``
        (the control group is held out: it is what the ads are measured against).

        The first export draws the audience and stores its members, like a first send; every
        treatment member's delivery then says ``sent`` (exported) or why not.

        Raises
        ------
        InputError
            The campaign is not an ads campaign, the platform is unknown, ``out`` cannot be
            written (nothing is then marked).
        """
        spec = self.spec(name)
        if spec.channel != "ads":
            raise InputError(
                f"campaign {name!r} is an {spec.channel} campaign; only ads campaigns are exported",
                hint=f"jingzhun campaign send {name}",
            )
        if platform not in ("google", "meta"):
            raise InputError(
                f"platform {str(platform)[:40]!r} is not one jingzhun exports to",
                hint="use google or meta",
                param="platform",
            )
        # The file is checked before the first export draws and stores the audience.
        check_output_path(out, flag="out", store_path=self.store.path, what="the audience")
        fresh = self.store.scalar(
            "SELECT snapshot_at IS NULL FROM campaigns WHERE name = ?", [name]
        )
        if fresh:
            d = draw(self.store, spec, consent_default=self._consent)
            delivery.write_snapshot(self.store, spec, d, domain="localhost")
        members = self.store.sql(
            """SELECT user_id FROM deliveries
               WHERE campaign = ? AND state IN ('queued', 'sending', 'sent') ORDER BY user_id""",
            [name],
        ).df()
        if spec.exclude.no_consent:
            # Consent is asked again at each export: who withdrew it since the snapshot is
            # left out of the file, and their delivery says why.
            ids = members["user_id"].tolist()
            allowed = consent.allowed(self.store, ids, "marketing", "ads", self._consent)
            keep = members["user_id"].isin(allowed)
            withdrawn = members.loc[~keep, "user_id"].tolist()
            if withdrawn:
                self.store.run(
                    "UPDATE deliveries SET state = 'suppressed', reason = 'no_consent', "
                    "updated_at = ? WHERE campaign = ? AND user_id IN (SELECT unnest(?::VARCHAR[]))",
                    [datetime.now(UTC).replace(tzinfo=None), name, withdrawn],
                )
                members = members[keep]
        rows = members.merge(
            contacts(self.store, members["user_id"].tolist(), ["email", "phone"]),
            on="user_id",
            how="left",
        )
        result = export_audience(
            rows,
            platform=platform,  # type: ignore[arg-type]
            default_region=self.settings.privacy.default_region,
            out=Path(out),
            store_path=self.store.path,
        )
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.store.transaction():
            self.store.run(
                "UPDATE deliveries SET state = 'sent', tries = tries + 1, answer = ?, "
                "sent_at = coalesce(sent_at, ?), updated_at = ? "
                "WHERE campaign = ? AND state IN ('queued', 'sending', 'sent')",
                [f"exported for {platform}", now, now, name],
            )
            self.store.run(
                "UPDATE campaigns SET state = 'sent', sent_at = ? WHERE name = ?", [now, name]
            )
        return result

    def assignments(self, name: str) -> pd.DataFrame:
        """The campaign as a randomized experiment for an uplift model: ``campaign_id``,
        ``user_id``, ``group`` (treatment/control) and ``sent_at`` (the snapshot), one row per
        member (what ``predict uplift --campaign NAME`` trains on).

        Raises
        ------
        InputError
            The campaign was never sent: it has no members.
        """
        self.spec(name)
        frame = self.store.sql(
            """SELECT m.campaign AS campaign_id, m.user_id, m.arm AS "group", c.snapshot_at AS sent_at
               FROM campaign_members m JOIN campaigns c ON c.name = m.campaign
               WHERE m.campaign = ? ORDER BY m.user_id""",
            [name],
        ).df()
        if frame.empty:
            raise InputError(
                f"campaign {name!r} has not been sent: it has no members to learn from",
                hint=f"jingzhun campaign send {name}",
            )
        return frame

    def trigger(
        self,
        names: list[str] | None = None,
        *,
        lang: str = "en",
        now: datetime | None = None,
        sender: SmtpSender | None = None,
    ) -> list[delivery.SendResult]:
        """Run triggered campaigns now (default: every one stored): each takes in the users
        its trigger holds for since the last run and sends them their message."""
        if names is None:
            names = [
                n
                for (n, spec) in self.store.rows("SELECT name, spec FROM campaigns ORDER BY name")
                if stored_spec(spec).trigger is not None
            ]
        out = []
        for name in names:
            spec = self.spec(name)
            if spec.trigger is None:
                raise InputError(
                    f"campaign {name!r} has no [trigger]",
                    hint=f"send it: jingzhun campaign send {name}",
                )
            out.append(self.send(name, lang=lang, now=now, sender=sender))
        return out

    def members(self, name: str) -> pd.DataFrame:
        """The stored members with their arm, variant and delivery state."""
        self.spec(name)
        return self.store.sql(
            """SELECT m.user_id, m.arm, m.variant, m.segment, m.score, d.state, d.reason, d.sent_at
               FROM campaign_members m LEFT JOIN deliveries d
                 ON d.campaign = m.campaign AND d.user_id = m.user_id
               WHERE m.campaign = ? ORDER BY m.user_id""",
            [name],
        ).df()


__all__ = ["CampaignInfo", "Campaigns", "Estimate", "Preview"]
