"""Signed-in sessions: an HttpOnly, SameSite=Strict cookie holding the key's id, scope and an
expiry under an HMAC, and the CSRF token each form carries.

The cookie never holds the API key itself. Each request checks the signature, the expiry and
that the key is still active (a revoked key signs its sessions out). The signing secret is made
when the server starts, so a restart signs everyone out — nothing about a session is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "jz_session"
#: How long a session lasts without signing in again.
LIFETIME_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Session:
    key_id: str
    name: str
    scope: str
    expires: float
    nonce: str

    @property
    def admin(self) -> bool:
        return self.scope == "admin"


class Sessions:
    """Makes and reads session cookies and their CSRF tokens."""

    def __init__(self, secret: bytes | None = None, lifetime: float = LIFETIME_SECONDS) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self.lifetime = lifetime

    def _mac(self, *parts: str) -> str:
        mac = hmac.new(self._secret, "\x1f".join(parts).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def issue(self, key_id: str, name: str, scope: str) -> str:
        """The cookie value of a new session."""
        doc = {"k": key_id, "n": name, "s": scope, "e": time.time() + self.lifetime,
               "r": secrets.token_urlsafe(12)}  # fmt: skip
        payload = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
        return f"{payload}.{self._mac('session', payload)}"

    def read(self, value: str | None) -> Session | None:
        """The session a cookie holds, or None (missing, forged, expired)."""
        if not value or value.count(".") != 1 or len(value) > 2048:
            return None
        payload, mac = value.split(".")
        if not hmac.compare_digest(self._mac("session", payload), mac):
            return None
        try:
            doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            s = Session(str(doc["k"]), str(doc["n"]), str(doc["s"]), float(doc["e"]), str(doc["r"]))
        except (ValueError, KeyError, TypeError):
            return None
        return s if s.expires > time.time() else None

    def csrf(self, session: Session) -> str:
        """The token every form of this session carries."""
        return self._mac("csrf", session.key_id, session.nonce)

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return hmac.compare_digest(self.csrf(session), token or "")


__all__ = ["COOKIE", "Session", "Sessions"]
