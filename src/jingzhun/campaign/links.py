"""Signed tracking links: unsubscribe, open pixel, click redirect.

Every link carries the campaign, the user and an HMAC-SHA256 over them (and, for a click, the
target URL) under the tracking key, so nobody can unsubscribe another user, forge opens, or
turn the server into an open redirect: a click goes only to a URL that was signed, and the
campaign's content is the only thing signed. The key comes from the environment variable
``[tracking] secret_env`` names, else a random key the store keeps (``store_meta``), made on
first use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import os
import re
import secrets
from urllib.parse import quote, urlencode

from jingzhun.config import TrackingSettings
from jingzhun.errors import InputError
from jingzhun.store import Store

_META_KEY = "tracking_key"
#: Bytes of the HMAC kept in a link (128 bits: forging one is out of reach).
_MAC_BYTES = 16


def tracking_key(store: Store, settings: TrackingSettings) -> bytes:
    """The key that signs links (see the module docstring)."""
    env = os.environ.get(settings.secret_env)
    if env:
        if len(env) < 16:
            raise InputError(
                f"${settings.secret_env} is shorter than 16 characters",
                hint="use a long random value, e.g. python -c 'import secrets; print(secrets.token_hex(32))'",
            )
        return env.encode("utf-8")
    found = store.scalar("SELECT value FROM store_meta WHERE key = ?", [_META_KEY])
    if found:
        return bytes.fromhex(found)
    key = secrets.token_hex(32)
    store.run("INSERT INTO store_meta VALUES (?, ?)", [_META_KEY, key])
    return bytes.fromhex(key)


def sign(key: bytes, *parts: str) -> str:
    """The URL-safe MAC of ``parts`` (joined unambiguously)."""
    msg = "\x1f".join(parts).encode("utf-8")
    mac = hmac.new(key, msg, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def verify(key: bytes, token: str, *parts: str) -> bool:
    """Whether ``token`` signs ``parts`` (constant time). Compared as bytes: compare_digest
    refuses text that is not ASCII, and a link's ``s`` is whatever a client sent."""
    given = (token or "").encode("utf-8", "surrogatepass")
    return hmac.compare_digest(sign(key, *parts).encode("ascii"), given)


class Links:
    """The tracking links of one campaign."""

    def __init__(self, base_url: str, key: bytes, campaign: str) -> None:
        self.base = base_url.rstrip("/")
        self.key = key
        self.campaign = campaign

    def _url(self, path: str, query: dict[str, str]) -> str:
        return f"{self.base}/t/{path}/{quote(self.campaign, safe='')}?{urlencode(query)}"

    def unsubscribe(self, user_id: str) -> str:
        return self._url("u", {"u": user_id, "s": sign(self.key, "u", self.campaign, user_id)})

    def open_pixel(self, user_id: str) -> str:
        return self._url("o", {"u": user_id, "s": sign(self.key, "o", self.campaign, user_id)})

    def click(self, user_id: str, target: str) -> str:
        return self._url(
            "c",
            {"u": user_id, "to": target, "s": sign(self.key, "c", self.campaign, user_id, target)},
        )


_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"'\s<>]+)\2""", re.IGNORECASE)


def track_html(markup: str, links: Links, user_id: str) -> str:
    """``markup`` with each http(s) link through the signed click redirect and an open pixel
    at the end of the body. Only these signed targets redirect: no open redirect."""

    def swap(m: re.Match[str]) -> str:
        target = html.unescape(m.group(3))
        if target.startswith(links.base + "/t/"):  # our own links (unsubscribe) stay as they are
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{html.escape(links.click(user_id, target))}{m.group(2)}"

    tracked = _HREF.sub(swap, markup)
    pixel = f'<img src="{html.escape(links.open_pixel(user_id))}" width="1" height="1" alt="" style="display:none">'
    close = re.search(r"</body\s*>", tracked, re.IGNORECASE)
    if close:
        return tracked[: close.start()] + pixel + tracked[close.start() :]
    return tracked + pixel


__all__ = ["Links", "sign", "track_html", "tracking_key", "verify"]
