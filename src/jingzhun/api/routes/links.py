"""``/t/…``: the links inside campaign messages — open pixel, click redirect, unsubscribe.

No API key: a recipient's mail client calls these. Each link is signed (see
:mod:`jingzhun.campaign.links`): a link whose signature does not match is a 404 that says
nothing of why, the click redirect goes only to the URL that was signed (no open redirect),
and unsubscribing needs the link of that user.

- ``GET /t/o/{campaign}?u&s``: a 1×1 GIF; an ``email_opened`` event for the campaign.
- ``GET /t/c/{campaign}?u&to&s``: 302 to ``to``; an ``email_clicked`` event with the URL.
- ``GET /t/u/{campaign}?u&s``: a page in the reader's language asking to confirm (a GET never
  unsubscribes: mail scanners fetch links).
- ``POST /t/u/{campaign}?u&s`` with ``List-Unsubscribe=One-Click`` (RFC 8058: what Gmail and
  Yahoo post from their unsubscribe button) or from the confirmation page: unsubscribes at
  once — a REVOKED email-marketing consent every later audience respects.

Opens and clicks go through the one writer as Segment track messages (``Email Opened``,
``Email Link Clicked`` with ``properties.campaign_id``), the same path as the tracking API.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import threading
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jingzhun.api.deps import State
from jingzhun.api.state import ServerState
from jingzhun.campaign.links import tracking_key, verify
from jingzhun.ingest.consent import record

router = APIRouter(prefix="/t", tags=["campaign links"], include_in_schema=True)

_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
Campaign = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
User = Annotated[str, Query(alias="u", min_length=1, max_length=256)]
Sig = Annotated[str, Query(alias="s", min_length=1, max_length=64)]

_key_lock = threading.Lock()


async def _key(state: ServerState) -> bytes:
    """The tracking key, made (in the writer thread, the store's one writer) on first use."""
    found = getattr(state, "_tracking_key", None)
    if found is None:
        found = await asyncio.wrap_future(
            state.run_write(lambda ws: tracking_key(ws.store, ws.settings.tracking))
        )
        with _key_lock:
            state._tracking_key = found  # type: ignore[attr-defined]
    return found


def _not_found() -> Response:
    return HTMLResponse(
        "<!doctype html><title>404</title><p>This link is not valid.</p>", 404, headers=_NO_STORE
    )


async def _event(state: ServerState, event: str, campaign: str, user: str, **props: str) -> None:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    message = {
        "type": "track",
        "event": event,
        "userId": user,
        "timestamp": now,
        "receivedAt": now,
        "properties": {"campaign_id": campaign, **props},
        "context": {"channel": "email"},
    }
    line = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    await asyncio.wrap_future(state.writer.submit([line]))


@router.get("/o/{campaign}", summary="Open pixel", response_class=Response)
async def opened(campaign: Campaign, state: State, u: User, s: Sig) -> Response:
    if verify(await _key(state), s, "o", campaign, u):
        await _event(state, "Email Opened", campaign, u)
    # The pixel either way: a mail client shows no broken image.
    return Response(_GIF, media_type="image/gif", headers=_NO_STORE)


@router.get(
    "/c/{campaign}", summary="Click redirect (signed targets only)", response_class=Response
)
async def clicked(
    campaign: Campaign,
    state: State,
    u: User,
    s: Sig,
    to: Annotated[str, Query(min_length=1, max_length=4096)],
) -> Response:
    if not to.startswith(("https://", "http://")) or not verify(
        await _key(state), s, "c", campaign, u, to
    ):
        return _not_found()
    await _event(state, "Email Link Clicked", campaign, u, url=to)
    return RedirectResponse(to, status_code=302, headers=_NO_STORE)


_PAGES = {
    "en": {
        "title": "Unsubscribe",
        "ask": "Stop receiving marketing email from us?",
        "button": "Unsubscribe",
        "done": "You are unsubscribed. You will not receive marketing email from us again.",
    },
    "zh": {
        "title": "退订",
        "ask": "不再接收我们的营销邮件？",
        "button": "退订",
        "done": "您已退订，今后不会再收到我们的营销邮件。",
    },
}


def _lang(request: Request) -> str:
    """zh when the reader's browser prefers Chinese (Accept-Language), else en."""
    header = request.headers.get("accept-language", "")
    first = header.split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def _page(lang: str, body: str) -> str:
    t = _PAGES[lang]
    return (
        f'<!doctype html><html lang="{lang}"><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{t['title']}</title>"
        '<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; '
        'padding: 0 1rem; line-height: 1.5">'
        f"<h1>{t['title']}</h1>{body}</body></html>"
    )


@router.get(
    "/u/{campaign}", summary="Unsubscribe: the confirmation page", response_class=HTMLResponse
)
async def unsubscribe_page(
    campaign: Campaign, request: Request, state: State, u: User, s: Sig
) -> Response:
    if not verify(await _key(state), s, "u", campaign, u):
        return _not_found()
    lang = _lang(request)
    t = _PAGES[lang]
    action = html.escape(str(request.url.include_query_params()), quote=True)
    form = (
        f'<p>{t["ask"]}</p><form method="post" action="{action}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit" style="font-size: 1rem; padding: .5rem 1.25rem">{t["button"]}</button>'
        "</form>"
    )
    return HTMLResponse(_page(lang, form), headers=_NO_STORE)


@router.post(
    "/u/{campaign}", summary="Unsubscribe at once (RFC 8058 one-click)", response_class=HTMLResponse
)
async def unsubscribe(
    campaign: Campaign, request: Request, state: State, u: User, s: Sig
) -> Response:
    if not verify(await _key(state), s, "u", campaign, u):
        return _not_found()
    now = datetime.now(UTC).replace(tzinfo=None)
    await asyncio.wrap_future(
        state.run_write(
            lambda ws: record(
                ws.store,
                u,
                purpose="marketing",
                channel="email",
                status="REVOKED",
                source=f"unsubscribe:{campaign}",
                ts=now,
            )
        )
    )
    lang = _lang(request)
    return HTMLResponse(_page(lang, f"<p>{_PAGES[lang]['done']}</p>"), headers=_NO_STORE)
