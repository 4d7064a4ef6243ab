"""The dashboard: sign-in and sign-out, the language switch, its static files, and its pages
(:mod:`jingzhun.web.pages`).

Every page but sign-in needs a session (:mod:`jingzhun.web.session`); without one, the browser
goes to sign-in and then back to the page it asked for. Every form that changes something
carries the session's CSRF token; one without it (or with another's) is refused with 403.
Every route here (static files and sign-in included) is rate limited per session, else per
client address, and sign-in attempts per address more tightly (:func:`within_rate`).
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jingzhun.api.deps import get_state
from jingzhun.report.i18n import LANGS
from jingzhun.store import apikeys
from jingzhun.web.common import (
    form,
    local,
    problem,
    render,
    sessions,
    sign_in_within_rate,
    signed_in,
    slow_guess,
    within_rate,
)
from jingzhun.web.i18n import LANG_COOKIE
from jingzhun.web.pages import PAGES
from jingzhun.web.session import COOKIE

# The rate limit is the first thing every dashboard route (the pages included below) does.
router = APIRouter(include_in_schema=False, dependencies=[Depends(within_rate)])
#: The files under /static: (package, resource, media type).
_STATIC = {
    "plotly.min.js": ("plotly", "package_data/plotly.min.js", "text/javascript"),
    "dashboard.css": ("jingzhun.web", "static/dashboard.css", "text/css"),
    "dashboard.js": ("jingzhun.web", "static/dashboard.js", "text/javascript"),
}


# -- sign-in ----------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", None, next=local(next), error=None)


@router.post("/login", dependencies=[Depends(sign_in_within_rate)])
async def login(request: Request) -> Response:
    # A sign-in form posted from another site would sign the browser in with that site's
    # key (login CSRF): browsers say where a form comes from.
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        return problem(request, None, 403, "forbidden", title="web_refused")
    fields = await form(request)
    target = local(fields.get("next"))
    state = get_state(request)
    key = state.keys.verify(state.readers.get().store, fields.get("key", "").strip())
    error = None
    if key is None:
        error = "bad_key"
    elif not apikeys.allows(key.scope, "read"):
        error = "scope_too_small"
    if error is not None or key is None:
        await slow_guess()
        return render(request, "login.html", None, status=401, next=target, error=error)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        sessions(request).issue(key.key_id, key.name, key.scope),
        max_age=int(sessions(request).lifetime),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = signed_in(request)
    if not sessions(request).check_csrf(session, (await form(request)).get("csrf")):
        return problem(request, session, 403, "forbidden", title="web_refused")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
def switch_language(request: Request, lang: str, next: str = "/") -> Response:
    response = RedirectResponse(local(next), status_code=303)
    if lang in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict", path="/")
    return response


@router.get("/static/{name}")
def static(name: str) -> Response:
    found = _STATIC.get(name)
    if found is None:
        return Response(status_code=404)
    package, path, media = found
    data = resources.files(package).joinpath(path).read_bytes()
    return Response(data, media_type=media, headers={"Cache-Control": "public, max-age=86400"})


# -- pages ------------------------------------------------------------------------------------


for _page in PAGES:
    router.include_router(_page)

__all__ = ["router"]
