"""Sending a campaign exactly once: the audience snapshot, the delivery queue, the send loop.

The first send of a campaign draws its audience and writes, in one transaction, one
``campaign_members`` row per member and one ``deliveries`` row per matched user — ``queued``
for the treatment arm, ``control`` for the hold-out, ``excluded`` with the reason for the
rest. Every later run of ``send`` only works the queue: it renders a chunk of messages, marks
them ``sending`` (committed) before the first byte goes out, sends them and commits each
outcome. A run killed at any point leaves every row either finished (never touched again) or
``queued``/``sending`` (sent by the next run). A ``sending`` row may have reached the provider
just before the kill; it is sent again with the same Message-ID (the delivery key's hash),
which mail systems deduplicate on, so at most two chunks of messages (the one going out and
the next, marked and handed over meanwhile) can arrive twice at a receiver that does not —
never a member the store says was sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from jingzhun.campaign.audience import AUDIENCE, STORE_SOURCES, Draw, Sources, campaign_now, draw
from jingzhun.campaign.channels.email import Outgoing, SmtpSender, sender_domain
from jingzhun.campaign.channels.outcome import Outcome
from jingzhun.campaign.channels.pool import Batch
from jingzhun.campaign.channels.webhook import WebhookOutgoing, WebhookSender
from jingzhun.campaign.consent import suppress
from jingzhun.campaign.content import Renderer
from jingzhun.campaign.links import Links, track_html, tracking_key
from jingzhun.campaign.spec import CampaignSpec
from jingzhun.config import Settings
from jingzhun.contracts.results import Result
from jingzhun.errors import ConflictError, InputError
from jingzhun.ingest import consent
from jingzhun.ingest.read import contacts, event_items_query, items_query
from jingzhun.profile.read import profile_rows
from jingzhun.recommend import read as recommend_read
from jingzhun.recommend.rules import reason_text
from jingzhun.store import Store

#: Messages marked and sent together: a crash can leave two chunks in doubt.
CHUNK = 64
#: Members whose messages are rendered together (one set of queries per batch).
RENDER = 512
#: Delivery states, in the order counts are listed.
STATES = ("queued", "sending", "sent", "failed", "suppressed", "excluded", "control")

Progress = Callable[[int, int], None]


@dataclasses.dataclass
class SendResult(Result):
    """A send run: what it did, and every delivery's state after it."""

    campaign: str
    dry_run: bool
    snapshot: bool  # this run drew the audience
    attempted: int
    counts: dict[str, int]
    excluded: dict[str, int]
    error: str | None = None


def write_snapshot(store: Store, spec: CampaignSpec, d: Draw, *, domain: str) -> None:
    """Write the draw left in ``_jz_audience`` as the campaign's members and deliveries (a
    triggered campaign's run adds the users who qualified since the last)."""
    if d.members == 0 and spec.trigger is None:
        raise InputError(
            f"campaign {spec.name!r}: the audience is empty after exclusions "
            f"({d.matched:,} matched the conditions)",
            hint="loosen [audience] or [exclude]; jingzhun campaign preview shows each step",
        )
    top_sql, top_params = recommend_read.top_items_query(max(spec.recommendations, 1))
    # Members join at the campaign's clock (the store's, on simulated or replayed data);
    # deliveries are stamped with the wall clock, when the rows were written.
    joined = d.now
    now_ts = datetime.now(UTC).replace(tzinfo=None)
    with store.transaction():
        store.run(
            f"""INSERT INTO campaign_members
            SELECT ?, a.user_id, a.arm, a.variant, a.stratum, a.segment, a.score,
                   CASE WHEN ? > 0 THEN to_json(coalesce(r.items, []::VARCHAR[])) END, ?
            FROM {AUDIENCE} a LEFT JOIN ({top_sql}) r USING (user_id)
            WHERE a.excluded IS NULL
            ON CONFLICT DO NOTHING""",
            [spec.name, spec.recommendations, joined, *top_params],
        )
        store.run(
            f"""INSERT INTO deliveries
            SELECT ?, user_id, ?,
                   CASE WHEN excluded IS NOT NULL
                        THEN CASE WHEN excluded = 'suppressed' THEN 'suppressed' ELSE 'excluded' END
                        WHEN arm = 'control' THEN 'control' ELSE 'queued' END,
                   CASE WHEN excluded = 'suppressed' THEN NULL ELSE excluded END,
                   0, NULL, NULL, NULL, ?
            FROM {AUDIENCE}
            -- a triggered campaign draws again and again: a member keeps their row; a user
            -- excluded before is looked at anew
            ON CONFLICT (campaign, user_id, channel) DO UPDATE
                SET state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at
                WHERE deliveries.state = 'excluded'""",
            [spec.name, spec.channel, now_ts],
        )
        store.run(
            "UPDATE deliveries SET message_id = '<' || campaign || '.' || "
            "substr(sha256(campaign || chr(31) || user_id || chr(31) || channel), 1, 32) || '@' || ? || '>' "
            "WHERE campaign = ? AND state = 'queued' AND message_id IS NULL",
            [domain, spec.name],
        )
        store.run(
            "UPDATE campaigns SET snapshot_at = coalesce(snapshot_at, ?), state = 'sending' "
            "WHERE name = ?",
            [d.now, spec.name],
        )


def counts(store: Store, campaign: str) -> dict[str, int]:
    """Deliveries by state (every state listed, zeros included)."""
    found = dict(
        store.rows(
            "SELECT state, count(*) FROM deliveries WHERE campaign = ? GROUP BY state", [campaign]
        )
    )
    return {s: int(found.get(s, 0)) for s in STATES}


def excluded_reasons(store: Store, campaign: str) -> dict[str, int]:
    return {
        r: int(n)
        for r, n in store.rows(
            "SELECT reason, count(*) FROM deliveries WHERE campaign = ? AND state = 'excluded' "
            "GROUP BY reason ORDER BY 2 DESC",
            [campaign],
        )
    }


def contexts(
    store: Store,
    spec: CampaignSpec,
    members: pd.DataFrame,
    *,
    lang: str = "en",
    links: Links | None = None,
    sources: Sources = STORE_SOURCES,
) -> list[dict[str, Any]]:
    """The template context of each member (``members``: ``user_id`` and ``recommendations``,
    a JSON list of item ids or None), in ``members``' order."""
    ids = members["user_id"].tolist()
    prof_by = {r["user_id"]: r for r in profile_rows(store, ids, table=sources.profiles)}
    people = contacts(store, ids, ["name"])
    names = dict(zip(people["user_id"], people["name"].fillna(""), strict=True))
    recs = recommend_read.list_rows(
        store,
        ids,
        max_rank=max(spec.recommendations, 1),
        table=sources.recommendations,
        items=sources.items,
    )
    because = {
        r["reason"].partition(":")[2]
        for r in recs
        if r["reason"].startswith(("bought:", "viewed:"))
    }
    titles = recommend_read.titles(store, because, items=sources.items) if because else {}
    by_user: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        by_user.setdefault(r["user_id"], []).append(
            {
                "item_id": r["item_id"],
                "title": r.get("title") or r["item_id"],
                "category": r.get("category") or "",
                "price": r.get("price"),
                "reason": r["reason"],
                "reason_text": reason_text(r["reason"], lang, titles),
            }
        )
    carts = _trigger_items(store, spec, ids, sources)
    out = []
    for user_id, stored in zip(ids, members.get("recommendations", [None] * len(ids)), strict=True):
        items = by_user.get(user_id, [])
        if stored:
            keep = json.loads(stored)
            items = sorted(
                (i for i in items if i["item_id"] in keep), key=lambda i: keep.index(i["item_id"])
            )
        name = names.get(user_id, "")
        out.append(
            {
                "user_id": user_id,
                "name": name,
                "first_name": name.split()[0] if name.split() else "",
                "user": prof_by.get(user_id, {}),
                "recommendations": items[: spec.recommendations],
                "campaign": {
                    "name": spec.name,
                    "discount": spec.offer.discount,
                    "category": spec.offer.category,
                },
                "unsubscribe_url": links.unsubscribe(user_id) if links else "",
                "cart": carts.get(user_id, []),
            }
        )
    return out


def _trigger_items(
    store: Store, spec: CampaignSpec, ids: list[str], sources: Sources
) -> dict[str, list[dict[str, Any]]]:
    """For a triggered campaign, each user's items of the trigger event in its look-back
    window (a cart's items), newest first, with title, category and price."""
    if spec.trigger is None or not ids:
        return {}
    now = campaign_now(store, sources.now)
    start = now - timedelta(hours=spec.trigger.lookback_hours)
    rows = store.rows(event_items_query(sources.events), [spec.trigger.event, start, now, ids])
    wanted = sorted({i for _, items in rows for i in items})
    catalog = {
        r["item_id"]: r
        for r in _records(
            store.sql(
                f"SELECT * FROM ({items_query(sources.items)}) "
                "WHERE item_id IN (SELECT unnest(?::VARCHAR[]))",
                [wanted],
            ).df()
        )
    }
    return {
        user: [
            {
                "item_id": i,
                "title": (catalog.get(i) or {}).get("title") or i,
                "category": (catalog.get(i) or {}).get("category") or "",
                "price": (catalog.get(i) or {}).get("price"),
            }
            for i in items
        ]
        for user, items in rows
    }


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return df.astype(object).where(df.notna(), None).to_dict("records")


def sender_for(settings: Settings, channel: str = "email") -> Any:
    """The sender of ``channel`` configured by ``settings`` (``[email]`` or ``[webhook]``)."""
    if channel == "webhook":
        return _webhook_sender(settings)
    email = settings.email
    password = os.environ.get(email.password_env) if email.password_env else None
    if email.password_env and password is None:
        raise InputError(
            f"[email] password_env names ${email.password_env}, which is not set",
            hint="export it, or remove password_env",
        )
    return SmtpSender(email, password=password)


def _webhook_sender(settings: Settings) -> WebhookSender:
    w = settings.webhook
    if not w.url:
        raise InputError(
            "[webhook] url is not set: a webhook campaign needs the gateway's URL",
            hint="set [webhook] url in jingzhun.toml",
        )
    secret = os.environ.get(w.secret_env)
    if not secret:
        raise InputError(
            f"[webhook] secret_env names ${w.secret_env}, which is not set",
            hint="export a long random secret the gateway shares (it signs every message)",
        )
    return WebhookSender(
        w.url,
        secret.encode("utf-8"),
        timeout_seconds=w.timeout_seconds,
        retries=w.retries,
        retry_base_seconds=w.retry_base_seconds,
        connections=w.connections,
        rate_per_second=w.rate_per_second,
    )


def send(
    store: Store,
    spec: CampaignSpec,
    settings: Settings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    lang: str = "en",
    sender: SmtpSender | WebhookSender | None = None,
    progress: Progress | None = None,
) -> SendResult:
    """Send ``spec`` (stored as a campaign) to its queue; see the module docstring.

    Raises
    ------
    InputError
        The audience is empty, a template fails for a member (before anything is sent),
        ``[tracking] base_url`` is not set, the channel is not sent this way.
    Unreachable
        The SMTP server cannot be reached (nothing was marked as sending).
    """
    if spec.channel == "ads":
        raise InputError(
            f"campaign {spec.name!r} is an ads campaign: it is exported, not sent",
            hint=f"jingzhun campaign export {spec.name} --platform google|meta --out FILE",
        )
    renderer = Renderer(spec)
    state = store.scalar("SELECT state FROM campaigns WHERE name = ?", [spec.name])
    if state is None:
        raise ConflictError(f"campaign {spec.name!r} is not in the store", hint="create it first")
    fresh = store.scalar("SELECT snapshot_at IS NULL FROM campaigns WHERE name = ?", [spec.name])
    default = settings.privacy.default_marketing_consent
    if dry_run:
        return _dry_run(
            store, spec, renderer, now=now, lang=lang, fresh=bool(fresh), consent_default=default
        )
    base = settings.tracking.base_url
    if not base and spec.channel == "email":
        raise InputError(
            "[tracking] base_url is not set: every campaign email needs a one-click unsubscribe link",
            hint="set it to the URL where jingzhun serve is reached (e.g. https://t.example.com)",
        )
    sender = sender or sender_for(settings, spec.channel)
    links = Links(base, tracking_key(store, settings.tracking), spec.name) if base else None
    if fresh or spec.trigger is not None:
        # A template that fails for any member, or an SMTP server that cannot be reached,
        # fails here, before anything is written. A triggered campaign draws on every run.
        d = draw(store, spec, now=now, consent_default=default)
        _render_drawn(store, spec, renderer, lang=lang)
        sender.check()
        write_snapshot(store, spec, d, domain=sender_domain(settings.email))
    else:
        sender.check()
    pending = store.sql(
        """SELECT d.user_id, d.message_id, m.variant, m.recommendations
        FROM deliveries d JOIN campaign_members m ON m.campaign = d.campaign AND m.user_id = d.user_id
        WHERE d.campaign = ? AND d.channel = ? AND d.state IN ('queued', 'sending')
        ORDER BY d.user_id""",
        [spec.name, spec.channel],
    ).df()
    total = len(pending)
    ledger = _Ledger(store, spec, sender)
    ledger.start()
    try:
        for start in range(0, total, RENDER):
            # Rendered a batch at a time (the queries per batch cost what they cost for 64
            # or 512 members) on this thread, while the ledger's thread marks, hands over and
            # records the chunks rendered before.
            outgoing, missing = _outgoing(
                store,
                spec,
                renderer,
                pending.iloc[start : start + RENDER],
                lang=lang,
                links=links,
                consent_default=default,
            )
            chunks = [outgoing[p : p + CHUNK] for p in range(0, len(outgoing), CHUNK)]
            if not all(
                ledger.put(c, missing if i == 0 else []) for i, c in enumerate(chunks or [[]])
            ):
                break  # the ledger stopped: the server is gone
            if progress:
                progress(ledger.recorded, total)
    finally:
        try:
            ledger.finish()
        finally:
            sender.close()
    if progress:
        progress(ledger.recorded, total)
    attempted, error = ledger.attempted, ledger.error
    remaining = counts(store, spec.name)
    if remaining["queued"] + remaining["sending"] == 0:
        store.run(
            "UPDATE campaigns SET state = 'sent', sent_at = ? WHERE name = ?", [_now(), spec.name]
        )
    return SendResult(
        campaign=spec.name,
        dry_run=False,
        snapshot=bool(fresh),
        attempted=attempted,
        counts=remaining,
        excluded=excluded_reasons(store, spec.name),
        error=error,
    )


class _Ledger(threading.Thread):
    """The send loop's bookkeeping, on its own thread and connection: for each chunk it is
    given, mark it ``sending`` (committed), hand it to the sender, then commit the outcomes of
    the chunk handed over before. DuckDB runs these updates without holding the GIL, so they
    overlap the rendering of the next batch on the caller's thread and the sending on the
    sender's; nothing else writes ``deliveries`` meanwhile."""

    def __init__(self, store: Store, spec: CampaignSpec, sender: Any) -> None:
        super().__init__(name=f"campaign-ledger-{spec.name}", daemon=True)
        self._store = store.cursor()
        self._spec = spec
        self._sender = sender
        self._chunks: queue.Queue[tuple[list[Any], list[Outcome]] | None] = queue.Queue(4)
        self._stopped = threading.Event()
        self.attempted = 0
        self.recorded = 0
        self.error: str | None = None  # the server went away
        self._crash: BaseException | None = None

    def put(self, chunk: list[Any], missing: list[Outcome]) -> bool:
        """Queue a chunk (and outcomes known without sending); False once the ledger stopped."""
        while not self._stopped.is_set():
            try:
                self._chunks.put((chunk, missing), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def finish(self) -> None:
        """Wait for what is queued to be sent and recorded; raise what broke the ledger."""
        while self.is_alive():
            if not self._stopped.is_set():
                with contextlib.suppress(queue.Full):
                    self._chunks.put(None, timeout=0.1)
            self.join(0.1)
        if self._crash is not None:
            raise self._crash

    def run(self) -> None:
        inflight: Batch | None = None
        try:
            while (item := self._chunks.get()) is not None:
                chunk, missing = item
                if missing:
                    self._record(missing)
                if not chunk:
                    continue
                with self._store.transaction():
                    self._store.run(
                        "UPDATE deliveries SET state = 'sending', tries = tries + 1, updated_at = ? "
                        "WHERE campaign = ? AND channel = ? "
                        "AND user_id IN (SELECT unnest(?::VARCHAR[]))",
                        [_now(), self._spec.name, self._spec.channel, [m.user_id for m in chunk]],
                    )
                handed = self._sender.submit(chunk)
                if inflight is not None:
                    self._settle(inflight)
                inflight = handed
                if self.error is not None:
                    break
        except BaseException as exc:  # raised on the caller's thread by finish()
            self._crash = exc
        finally:
            try:
                if inflight is not None:  # the last chunk, or the one handed over before a stop
                    self._settle(inflight)
            except BaseException as exc:
                self._crash = self._crash or exc
            self._stopped.set()
            self._store.close()

    def _settle(self, batch: Batch) -> None:
        """Wait for a chunk's outcomes and commit them."""
        results, exc = batch.result()
        self._record(results)
        self.attempted += sum(r.state != "queued" for r in results)
        if exc is not None and self.error is None:
            self.error = str(exc)

    def _record(self, results: list[Outcome]) -> None:
        _record(self._store, self._spec, results)
        self.recorded += len(results)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _outgoing(
    store: Store,
    spec: CampaignSpec,
    renderer: Renderer,
    chunk: pd.DataFrame,
    *,
    lang: str,
    links: Links | None,
    consent_default: str,
) -> tuple[list[Any], list[Outcome]]:
    """The chunk's messages; members without an address now (erased since the snapshot)
    come back as failed outcomes, and members whose marketing consent was withdrawn since
    the snapshot (asked again now, just before sending) as suppressed ones."""
    if spec.exclude.no_consent:
        allowed = consent.allowed(
            store, chunk["user_id"].tolist(), "marketing", spec.channel, consent_default
        )
        keep = chunk["user_id"].isin(allowed).to_numpy()
        withdrawn = [
            Outcome(u, "suppressed", "no_consent", None, 0, None)
            for u in chunk.loc[~keep, "user_id"]
        ]
        chunk = chunk.loc[keep]
    else:
        withdrawn = []
    ctx = contexts(store, spec, chunk, lang=lang, links=links)
    if spec.channel == "webhook":
        return [
            WebhookOutgoing(c["user_id"], spec.name, mid, renderer.render(variant, c))
            for c, variant, mid in zip(ctx, chunk["variant"], chunk["message_id"], strict=True)
        ], withdrawn
    ids = chunk["user_id"].tolist()
    people = contacts(store, ids, ["email"])
    emails = {u: e.strip() for u, e in zip(people["user_id"], people["email"], strict=True) if e}
    out, missing = [], withdrawn
    for c, variant, mid in zip(ctx, chunk["variant"], chunk["message_id"], strict=True):
        to = emails.get(c["user_id"])
        if not to:
            missing.append(Outcome(c["user_id"], "failed", "no email address", None, 0, None))
            continue
        rendered = renderer.render(variant, c)
        if rendered.html is not None and links is not None:
            rendered = dataclasses.replace(
                rendered, html=track_html(rendered.html, links, c["user_id"])
            )
        out.append(Outgoing(c["user_id"], to, mid, rendered, c["unsubscribe_url"]))
    return out, missing


def _record(store: Store, spec: CampaignSpec, results: Sequence[Outcome]) -> None:
    """Commit the outcomes of one chunk; hard bounces join the suppression list."""
    if not results:
        return
    now = _now()
    with store.transaction():
        store.run(
            """UPDATE deliveries SET state = o.state, reason = o.reason, answer = o.answer,
                   sent_at = o.sent_at, updated_at = ?,
                   -- marking the chunk counted one try; the sender knows how many it made
                   tries = deliveries.tries - 1 + o.tries
            FROM (SELECT unnest(?::VARCHAR[]) AS user_id, unnest(?::VARCHAR[]) AS state,
                         unnest(?::VARCHAR[]) AS reason, unnest(?::VARCHAR[]) AS answer,
                         unnest(?::INTEGER[]) AS tries, unnest(?::TIMESTAMP[]) AS sent_at) o
            WHERE deliveries.campaign = ? AND deliveries.channel = ?
              AND deliveries.user_id = o.user_id""",
            [
                now,
                [r.user_id for r in results],
                [r.state for r in results],
                [r.reason for r in results],
                [r.answer for r in results],
                [r.tries for r in results],
                [r.sent_at for r in results],
                spec.name,
                spec.channel,
            ],
        )
        bounced = [(r.to, r.user_id) for r in results if r.hard_bounce and r.to]
        if bounced:
            suppress(
                store, bounced, channel="email", reason="hard_bounce", source=spec.name, now=now
            )


def _render_all(
    store: Store, spec: CampaignSpec, renderer: Renderer, *, lang: str, links: Links | None
) -> int:
    """Render every queued member's message (and throw it away): a template that fails for
    any member fails here, before the first message goes out."""
    pending = store.sql(
        """SELECT d.user_id, m.variant, m.recommendations
        FROM deliveries d JOIN campaign_members m ON m.campaign = d.campaign AND m.user_id = d.user_id
        WHERE d.campaign = ? AND d.state IN ('queued', 'sending') ORDER BY d.user_id""",
        [spec.name],
    ).df()
    _check_templates(store, spec, renderer, pending, lang=lang, links=links)
    return len(pending)


def _render_drawn(
    store: Store,
    spec: CampaignSpec,
    renderer: Renderer,
    *,
    lang: str,
    sources: Sources = STORE_SOURCES,
) -> None:
    """Render the message of every treatment member of the draw in ``_jz_audience``."""
    members = store.sql(
        f"SELECT user_id, variant, NULL AS recommendations FROM {AUDIENCE} "
        "WHERE excluded IS NULL AND arm = 'treatment' ORDER BY user_id"
    ).df()
    _check_templates(store, spec, renderer, members, lang=lang, links=None, sources=sources)


def _check_templates(
    store: Store,
    spec: CampaignSpec,
    renderer: Renderer,
    members: pd.DataFrame,
    *,
    lang: str,
    links: Links | None,
    sources: Sources = STORE_SOURCES,
) -> None:
    """Run each member's templates, 1,000 members' contexts at a time."""
    for start in range(0, len(members), 1000):
        chunk = members.iloc[start : start + 1000]
        for c, variant in zip(
            contexts(store, spec, chunk, lang=lang, links=links, sources=sources),
            chunk["variant"],
            strict=True,
        ):
            renderer.check(variant, c)


def _dry_run(
    store: Store,
    spec: CampaignSpec,
    renderer: Renderer,
    *,
    now: datetime | None,
    lang: str,
    fresh: bool,
    consent_default: str,
) -> SendResult:
    """What a send would do, writing nothing: the draw (if none was stored) and every
    message rendered."""
    if fresh:
        d = draw(store, spec, now=now, consent_default=consent_default)
        _render_drawn(store, spec, renderer, lang=lang)
        excluded = dict(
            store.rows(
                f"SELECT excluded, count(*) FROM {AUDIENCE} WHERE excluded IS NOT NULL GROUP BY 1"
            )
        )
        c = {s: 0 for s in STATES}
        c["queued"] = d.treatment
        c["control"] = d.control
        c["suppressed"] = int(excluded.pop("suppressed", 0))
        c["excluded"] = sum(int(v) for v in excluded.values())
        return SendResult(spec.name, True, False, 0, c, {k: int(v) for k, v in excluded.items()})
    n = _render_all(store, spec, renderer, lang=lang, links=None)
    del n
    return SendResult(
        spec.name, True, False, 0, counts(store, spec.name), excluded_reasons(store, spec.name)
    )


__all__ = ["CHUNK", "STATES", "SendResult", "contexts", "counts", "send", "write_snapshot"]
