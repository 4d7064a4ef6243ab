"""What every dashboard page shares: the templates, number formats, the rate limits, the
session check, the admin-form check, rendering with the security headers, and the page that
says what went wrong.

A page calls :func:`signed_in` (or :func:`admin_form` for a form that changes something); with no
valid session it raises :class:`SignIn`, which :func:`install` turns into a redirect to sign-in
that comes back to the page asked for. Before any of that, every dashboard request passes
:func:`within_rate` (and a sign-in :func:`sign_in_within_rate`); over the limit it raises
:class:`Limited`, answered 429 with ``Retry-After`` and a page in the user's language.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from jingzhun.api.deps import get_state
from jingzhun.report.i18n import LANGS, Translator
from jingzhun.store import apikeys
from jingzhun.web.i18n import LANG_COOKIE, pick_lang
from jingzhun.web.session import COOKIE, Session, Sessions

ENV = Environment(
    loader=PackageLoader("jingzhun.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
#: Rows in a page of a long table.
PAGE = 50
#: The security headers of every page: scripts and everything else from this server only.
#: Inline scripts run only with the page's nonce (``{nonce}``), which only the charts' own
#: ``<script>`` tags get (see :func:`render`); styles may be inline (Plotly sets them).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: The opening tag of a chart's inline script as Plotly writes it. Nothing a user typed can
#: produce it: templates escape every value, and Plotly writes ``<`` inside a figure's JSON as
#: ``\u003c`` (tests/web checks a chart label holding ``</script><script>``).
_CHART_SCRIPT = "<script>"


def fmt(value: float | None, kind: str, lang: str) -> str:
    """A number as the language writes it: 1,234,567 / 12.3% in English; 123.5万 in Chinese
    once it passes ten thousand."""
    if value is None or value != value:
        return "–"
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if kind == "ratio":
        return f"{value:.3f}"
    if kind == "change":
        return f"{value * 100:+.1f}%"
    if lang == "zh" and abs(value) >= 100_000_000:
        return f"{value / 100_000_000:,.2f}亿"
    if lang == "zh" and abs(value) >= 10_000:
        return f"{value / 10_000:,.1f}万"
    if kind == "int":
        return f"{value:,.0f}"
    return f"{value:,.2f}" if kind == "money" else f"{value:,.1f}"


def when(value: Any, lang: str) -> str:
    """A timestamp as the language writes it, to the minute."""
    if value is None or value != value:
        return "–"
    return value.strftime("%Y年%m月%d日 %H:%M" if lang == "zh" else "%Y-%m-%d %H:%M")


ENV.globals["fmt"] = fmt
# One path segment of a URL: Jinja's urlencode leaves "/" as it is, so an id like "../x"
# would point at another page.
ENV.filters["pathpart"] = lambda value: quote(str(value), safe="")
ENV.globals["when"] = when


class SignIn(Exception):
    """The request has no valid session: send the browser to sign-in."""


class Limited(Exception):
    """The request is over a dashboard rate limit: answer 429, do nothing else."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


def sessions(request: Request) -> Sessions:
    return get_state(request).sessions


def lang_of(request: Request) -> str:
    return pick_lang(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def local(path: str | None) -> str:
    """``path`` when it is a page of this server, else the overview (no open redirect)."""
    if path and path.startswith("/") and not path.startswith(("//", "/\\")):
        return path
    return "/"


def client_address(request: Request) -> str:
    """The address the request came from (the proxy's, behind a reverse proxy)."""
    return request.client.host if request.client else ""


def _refuse_over(request: Request, wait: float, label: str) -> None:
    """:class:`Limited` when a limiter said to wait (counted in ``/metrics`` by ``label``)."""
    if wait > 0:
        get_state(request).metrics.dashboard_limited.labels(label).inc()
        raise Limited(wait)


async def within_rate(request: Request) -> None:
    """Every dashboard request's first step (a dependency of its router): one request from the
    session's bucket — without a valid session cookie, from the client address's — or
    :class:`Limited`, before the route reads a form or the store.

    Only the cookie's signature and expiry are checked here (no store query); a session whose
    key was revoked keeps its bucket and is then sent to sign-in by :func:`signed_in`.
    """
    limits = get_state(request).dashboard_limits
    session = sessions(request).read(request.cookies.get(COOKIE))
    if session is not None:
        _refuse_over(request, limits.take(f"s:{session.nonce}"), "session")
    else:
        _refuse_over(request, limits.take(f"a:{client_address(request)}"), "address")


async def sign_in_within_rate(request: Request) -> None:
    """A sign-in attempt, also from its client address's tighter bucket (against key
    guessing): over it, the key is not even looked at."""
    limits = get_state(request).login_limits
    _refuse_over(request, limits.take(client_address(request)), "login")


def signed_in(request: Request) -> Session:
    """The request's session; :class:`SignIn` without one (missing, forged, expired, or its key
    revoked since)."""
    s = sessions(request).read(request.cookies.get(COOKIE))
    if s is None:
        raise SignIn
    store = get_state(request).readers.get().store
    if not any(k.key_id == s.key_id and k.active for k in apikeys.list_keys(store)):
        raise SignIn
    return s


async def form(request: Request) -> dict[str, str]:
    """A posted form (urlencoded; the dashboard's forms send nothing else)."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def admin_form(request: Request) -> tuple[Session, dict[str, str]] | Response:
    """The session and fields of a form that changes something: signed in with an admin key
    and carrying the session's CSRF token; otherwise the 403 page to answer with."""
    session = signed_in(request)
    fields = await form(request)
    if not sessions(request).check_csrf(session, fields.get("csrf")):
        return problem(request, session, 403, "forbidden", title="web_refused")
    if not session.admin:
        return problem(request, session, 403, "needs_admin", title="web_refused")
    return session, fields


def asked(request: Request) -> str:
    """The page asked for: path and query."""
    return str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")


def render(request: Request, template: str, session: Session | None, status: int = 200,
           **context: Any) -> HTMLResponse:  # fmt: skip
    lang = lang_of(request)
    body = ENV.get_template(template).render(
        t=Translator(lang),
        lang=lang,
        langs=LANGS,
        session=session,
        csrf=sessions(request).csrf(session) if session else "",
        path=request.url.path,
        here=quote(asked(request)),
        **context,
    )
    # A fresh nonce per page: the charts' scripts carry it, anything else inline is refused.
    nonce = secrets.token_urlsafe(18)
    body = body.replace(_CHART_SCRIPT, f'<script nonce="{nonce}">')
    headers = {k: v.replace("{nonce}", nonce) for k, v in HEADERS.items()}
    return HTMLResponse(body, status_code=status, headers=headers)


def problem(request: Request, session: Session | None, status: int, message: str, *,
            value: Any = None, title: str = "not_found", back: str = "/") -> HTMLResponse:  # fmt: skip
    """The page that says what went wrong, in the user's language, with a way back."""
    return render(request, "problem.html", session, status=status, title=title, message=message,
                  value=value, back=back)  # fmt: skip


def number(value: str | None, default: int, lo: int = 1, hi: int = 1_000_000) -> int:
    """A whole number from a query string, or ``default`` when it is none (a page number typed
    into the address bar should not be an error page)."""
    try:
        return min(max(int(value or ""), lo), hi)
    except ValueError:
        return default


def install(app: FastAPI) -> None:
    """Send a request without a session to sign-in, and back to the page after; answer one over
    a rate limit with 429."""

    @app.exception_handler(SignIn)
    async def _sign_in(request: Request, exc: SignIn) -> Response:
        if request.method != "GET":
            return RedirectResponse("/login", status_code=303)
        return RedirectResponse(f"/login?next={quote(asked(request), safe='')}", status_code=303)

    @app.exception_handler(Limited)
    async def _limited(request: Request, exc: Limited) -> Response:
        # No session shown: the cookie's key may be revoked, and the page is all this request
        # gets (its form, if any, is never read).
        retry = get_state(request).retry_after(exc.wait)
        response = problem(request, None, 429, "web_slow_down", value=retry, title="web_too_many")
        response.headers["Retry-After"] = retry
        return response


async def slow_guess() -> None:
    """A wrong key costs its guesser 0.2 s: five tries a second per connection, not thousands
    (asleep without holding the server's event loop)."""
    await asyncio.sleep(0.2)
