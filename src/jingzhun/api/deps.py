"""Dependencies the routes declare: the server state, a reader workspace, an authorized key.

A key arrives the three ways Segment's SDKs send a write key: as the HTTP Basic user name with
an empty password, as ``Authorization: Bearer KEY``, or as ``writeKey`` in a tracking body.
Scopes are not a ladder: ``ingest`` may only send events, ``read`` may only read, ``admin``
may do everything.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request

from jingzhun.api.problems import Problem
from jingzhun.api.state import ServerState
from jingzhun.store import apikeys

# A route gets its reader with ``state.readers.get()`` in its own body, not as a dependency:
# FastAPI runs a sync dependency in a thread-pool call of its own, so a reader fetched there
# could belong to another thread than the route's and be used by two requests at once.

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="jingzhun", Bearer realm="jingzhun"'}


def get_state(request: Request) -> ServerState:
    return request.app.state.jingzhun


State = Annotated[ServerState, Depends(get_state)]


def header_key(request: Request) -> str | None:
    """The key in the Authorization header (Basic user name, or Bearer token), if any."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Problem(
                401,
                "the Authorization header's Basic credentials are not base64 of 'KEY:'",
                headers=_CHALLENGE,
            ) from None
        return decoded.partition(":")[0] or None
    raise Problem(
        401,
        f"Authorization scheme {scheme[:20]!r} is not supported; send 'Bearer KEY' or Basic "
        "with the key as user name",
        headers=_CHALLENGE,
    )


def authorize(
    state: ServerState, request: Request, needed: str, body_key: str | None = None
) -> apikeys.ApiKey:
    """The key that may make this request; a 401, 403 or 429 problem otherwise."""
    presented = header_key(request) or body_key
    if not presented:
        raise Problem(
            401,
            "this route needs an API key; send 'Authorization: Bearer KEY' "
            "(create one with: jingzhun apikey create --scope "
            f"{needed} --name NAME)",
            headers=_CHALLENGE,
        )
    key = state.keys.verify(state.readers.get().store, presented)
    if key is None:
        raise Problem(
            401,
            "the API key is not valid (unknown, mistyped or revoked); see jingzhun apikey list",
            headers=_CHALLENGE,
        )
    if not apikeys.allows(key.scope, needed):
        raise Problem(
            403,
            f"key {key.name!r} has scope {key.scope!r}; this route needs {needed!r} (or admin)",
        )
    wait = state.limits.take(key.key_id)
    if wait > 0:
        state.metrics.rate_limited.labels(key.name).inc()
        raise Problem(
            429,
            f"key {key.name!r} made more than {state.limits.rate:g} requests a second; "
            "wait as Retry-After says",
            headers={"Retry-After": state.retry_after(wait)},
        )
    request.state.key_name = key.name
    state.used(key.key_id)
    return key


def require(scope: str):
    """A dependency that authorizes the request for ``scope``."""

    def dependency(request: Request) -> apikeys.ApiKey:
        return authorize(get_state(request), request, scope)

    return Depends(dependency)
