"""Webhooks: campaign messages POSTed as signed JSON to an SMS, app-push or WeChat gateway.

Each message is one ``POST`` to ``[webhook] url`` with a UTF-8 JSON body::

    {"campaign": "spring", "user_id": "u1", "message_id": "<spring.3f…@shop.example>",
     "variant": "a", "content": "Hello Li, …"}

``content`` is the rendered text, or, when that text parses as a JSON object (a template that
writes the gateway's own payload), that object.

Headers: ``Content-Type: application/json``, ``User-Agent: jingzhun/<version>``,
``X-Jingzhun-Timestamp`` (Unix seconds, set on every try), ``X-Jingzhun-Signature`` and
``Idempotency-Key`` (the delivery's message id: the same on every try and every run, so a
gateway deduplicates a message sent again after a crash).

Signatures follow Stripe's webhook scheme: ``X-Jingzhun-Signature: sha256=<hex>``, the
HMAC-SHA256 under the shared secret of ``"<timestamp>.<body bytes>"``. A receiver verifies
with :func:`verify` (or the same steps in its own language): recompute the HMAC over the
timestamp header, a dot and the raw body as received (before any JSON parsing), compare it
with the header in constant time, and reject a timestamp more than 5 minutes from its own
clock (a replayed request is refused once it is old).

Outcomes: 2xx → ``sent``; 5xx, 408, 429, a timeout or a dropped connection → retried with
exponential backoff (``retry_base_seconds`` × 2^(try - 1)), ``failed`` after ``retries``;
any other answer (4xx, or a redirect, which is not followed) → ``failed`` at once. When the
endpoint cannot be connected to on any try of a message, the sender stops with
:class:`~jingzhun.campaign.channels.outcome.Unreachable` and the rest stays queued for the next
run. Only the standard library is used (``http.client``): one keep-alive connection per
worker thread, opened again after an error.

Examples
--------
>>> body = b'{"user_id":"u1"}'
>>> signature = sign(b"s3cret", "1700000000", body)
>>> signature[:7]
'sha256='
>>> verify(b"s3cret", "1700000000", body, signature, now=1700000060)
True
>>> verify(b"s3cret", "1700000000", body + b" ", signature, now=1700000060)
False
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit

from jingzhun.campaign.channels.outcome import Outcome, Unreachable
from jingzhun.campaign.channels.pace import Pacer
from jingzhun.campaign.channels.pool import PooledSender, Workers
from jingzhun.campaign.content import Rendered
from jingzhun.errors import InputError

#: How far (seconds) a signed timestamp may be from the receiver's clock.
TOLERANCE_SECONDS = 300
#: Client errors worth another try: the gateway timed out reading (408) or throttles (429).
RETRYABLE = frozenset({408, 429})
#: Bytes of an answer kept; a longer answer is cut and its connection closed.
ANSWER_LIMIT = 65536


@dataclass(frozen=True)
class WebhookOutgoing:
    """One message to POST.

    Parameters
    ----------
    user_id : str
    campaign : str
        The campaign's name.
    message_id : str
        The delivery's stable id, sent as ``Idempotency-Key``: printable ASCII.
    rendered : Rendered
        The member's message; its ``text`` is the content (``subject`` and ``html`` are not sent).
    """

    user_id: str
    campaign: str
    message_id: str
    rendered: Rendered


# -- signatures -------------------------------------------------------------------------------


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Jingzhun-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 under ``secret``
    of ``"<timestamp>.<body>"``.

    Parameters
    ----------
    secret : bytes
        The secret shared with the receiver.
    timestamp : str
        The ``X-Jingzhun-Timestamp`` value (Unix seconds).
    body : bytes
        The request body exactly as sent.
    """
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_SECONDS,
) -> bool:
    """Whether a request is genuine and fresh: what a receiver checks before acting on it.

    Parameters
    ----------
    secret : bytes
    timestamp, signature : str
        The ``X-Jingzhun-Timestamp`` and ``X-Jingzhun-Signature`` headers as received.
    body : bytes
        The raw body as received.
    now : float, optional
        The receiver's clock (Unix seconds); default ``time.time()``.
    tolerance : float
        Seconds the timestamp may be off, either way (default 5 minutes).

    Returns
    -------
    bool
        True when ``signature`` matches (compared in constant time) and ``timestamp`` is
        within ``tolerance`` of ``now``.
    """
    if not (timestamp.isascii() and timestamp.isdigit() and signature.isascii()):
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


# -- the body ---------------------------------------------------------------------------------


def content(text: str) -> str | dict[str, Any]:
    """The ``content`` field: ``text`` parsed when it is a JSON object, else ``text`` itself.

    ``NaN`` and ``Infinity`` are not JSON: a text holding them stays text.
    """
    if not text.lstrip().startswith("{"):
        return text
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return text
    return value if isinstance(value, dict) else text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _version() -> str:
    # importlib.metadata rather than jingzhun.__version__: importing the root package from a
    # stage would put the stage on an import cycle (jingzhun.open imports the workspace).
    try:
        return version("jingzhun")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "0.0.0+unknown"


# -- the sender -------------------------------------------------------------------------------


class _NoConnection(Exception):
    """Connecting (TCP, TLS) failed: nothing reached the endpoint on this try."""


class WebhookSender(PooledSender["_Session", tuple[WebhookOutgoing, bytes]]):
    """POSTs messages to ``url`` over ``connections`` keep-alive connections.

    Parameters
    ----------
    url : str
        The gateway's endpoint, ``http://`` or ``https://`` (certificates are verified).
    secret : bytes
        The HMAC key shared with the gateway (read by the caller from the environment).
    timeout_seconds : float
        Socket timeout for connecting and for each read of the answer.
    retries : int
        Further tries of a temporary failure (5xx, 408, 429, timeout, dropped connection).
    retry_base_seconds : float
        The first retry's wait; each next one waits twice as long.
    connections : int
        Worker threads, each with its own connection.
    rate_per_second : float
        Requests per second at most, over all connections (retries included).
    sleep : callable
        For tests of backoff.

    Raises
    ------
    InputError
        ``url`` is not an http(s) URL with a host, or ``secret`` is empty, or a number is out
        of range: naming ``[webhook]`` and the field.
    """

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout_seconds: float = 10,
        retries: int = 4,
        retry_base_seconds: float = 1.0,
        connections: int = 4,
        rate_per_second: float = 50,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.retry_base_seconds = retry_base_seconds
        self.connections = connections
        self.rate_per_second = rate_per_second
        self.sleep = sleep
        self._scheme, self._host, self._port, self._target = _parse_url(url)
        if not secret:
            raise InputError(
                "[webhook] secret is empty",
                hint="set the signing secret shared with the gateway (32 random bytes or more)",
            )
        _check_numbers(
            timeout_seconds=timeout_seconds > 0,
            retries=retries >= 0,
            retry_base_seconds=retry_base_seconds >= 0,
            connections=connections >= 1,
            rate_per_second=rate_per_second > 0,
        )
        self._user_agent = f"jingzhun/{_version()}"
        self._pacer = Pacer(rate_per_second, sleep)

    @property
    def origin(self) -> str:
        """``scheme://host:port`` of ``url``: what error messages show (the path may hold a
        token)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{self._scheme}://{host}:{self._port}"

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        """A new, not yet connected, connection to the endpoint."""
        if self._scheme == "https":
            return http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self.timeout_seconds,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_seconds)

    def _unreachable(self, detail: str) -> Unreachable:
        return Unreachable(
            f"[webhook] url: cannot reach the gateway at {self.origin}: {detail}",
            hint="check [webhook] url and that the gateway runs and accepts connections",
        )

    def check(self) -> None:
        """Connect once (TCP, and TLS for https) and close: fail before anything is marked as
        sending.

        Raises
        ------
        Unreachable
            Naming ``[webhook] url``.
        """
        conn = self._connection()
        try:
            conn.connect()
        except OSError as exc:
            raise self._unreachable(str(exc)) from None
        finally:
            conn.close()

    # -- messages ----------------------------------------------------------------------------

    def build(self, m: WebhookOutgoing) -> bytes:
        """The request body (UTF-8 JSON) of ``m``, the same on every try.

        Raises
        ------
        InputError
            ``m.message_id`` cannot be a header value (empty, control characters, non-ASCII).
        """
        if not (m.message_id and m.message_id.isascii() and m.message_id.isprintable()):
            raise InputError(
                f"message_id {m.message_id!r} of user {m.user_id!r} cannot be an Idempotency-Key",
                hint="give each delivery a printable ASCII id",
            )
        doc = {
            "campaign": m.campaign,
            "user_id": m.user_id,
            "message_id": m.message_id,
            "variant": m.rendered.variant,
            "content": content(m.rendered.text),
        }
        return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()

    def headers(
        self, m: WebhookOutgoing, body: bytes, *, now: float | None = None
    ) -> dict[str, str]:
        """The headers of one try of ``m``: signed at ``now`` (default: the current time)."""
        timestamp = str(int(time.time() if now is None else now))
        return {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            "X-Jingzhun-Timestamp": timestamp,
            "X-Jingzhun-Signature": sign(self.secret, timestamp, body),
            "Idempotency-Key": m.message_id,
        }

    def _prepare(
        self, messages: Sequence[WebhookOutgoing]
    ) -> list[tuple[str, tuple[WebhookOutgoing, bytes]]]:
        # every body before the first POST: a message id that cannot be a header fails first
        return [(m.user_id, (m, self.build(m))) for m in messages]

    def _start(self) -> Workers[_Session, tuple[WebhookOutgoing, bytes]]:
        return Workers(
            self.connections,
            "webhook",
            open_session=lambda: _Session(self),
            close_session=_Session.close,
            deliver=lambda session, mb: self._deliver(session, *mb),
            not_attempted="not attempted: the webhook endpoint was unreachable",
        )

    def _deliver(self, session: _Session, m: WebhookOutgoing, body: bytes) -> Outcome:
        """One message with its retries.

        Raises
        ------
        Unreachable
            No try could connect.
        """
        last = ""
        tries = 0
        reached = False
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.retry_base_seconds * 2 ** (attempt - 1))
            tries = attempt + 1
            self._pacer.wait()
            try:
                status, text = session.post(body, self.headers(m, body))
            except _NoConnection as exc:
                last = f"cannot connect: {exc}"
                continue
            except TimeoutError:
                reached, last = True, f"no answer within {self.timeout_seconds:g}s"
                continue
            except (OSError, http.client.HTTPException) as exc:
                reached, last = True, f"connection lost: {type(exc).__name__}: {exc}".rstrip(": ")
                continue
            reached = True
            last = f"{status} {text}".strip()
            if 200 <= status < 300:
                now = datetime.now(UTC).replace(tzinfo=None)
                return Outcome(m.user_id, "sent", None, last, tries, now)
            if status < 500 and status not in RETRYABLE:
                return Outcome(m.user_id, "failed", f"rejected: {last}", last, tries, None)
        if not reached:
            raise self._unreachable(last)
        reason = f"temporary failure after {tries} tries: {last}"
        return Outcome(m.user_id, "failed", reason, last, tries, None)


class _Session:
    """One worker's keep-alive connection: opened on first use, opened again after an error.

    Hand-written over ``http.client`` rather than ``urllib.request``, which opens a connection
    per request, or a client library, which would be a new dependency.
    """

    def __init__(self, sender: WebhookSender) -> None:
        self._sender = sender
        self._conn: http.client.HTTPConnection | None = None
        self._served = 0  # answers read on the current connection

    def _open(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = self._sender._connection()
        if self._conn.sock is None:  # new, or closed by an answer with "Connection: close"
            try:
                self._conn.connect()
            except OSError as exc:
                self.close()
                raise _NoConnection(str(exc) or type(exc).__name__) from None
            self._served = 0
        return self._conn

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """POST ``body``; the status and the start of the answer's text.

        A connection the gateway closed while idle (it served an answer before, and now is
        reset or closed before answering) is opened again once, within the same try: the
        ``Idempotency-Key`` makes a duplicate harmless.

        Raises
        ------
        _NoConnection
            Connecting failed.
        OSError, http.client.HTTPException
            The exchange failed (``TimeoutError`` for no answer in time).
        """
        while True:
            conn = self._open()
            reused = self._served > 0
            try:
                conn.request("POST", self._sender._target, body=body, headers=headers)
                with conn.getresponse() as resp:
                    data = resp.read(ANSWER_LIMIT)
                    complete = resp.isclosed()
                    status = resp.status
            except ConnectionError:
                self.close()
                if reused:
                    continue
                raise
            except (OSError, http.client.HTTPException):
                self.close()
                raise
            self._served += 1
            if not complete:  # unread bytes would be taken for the next answer
                self.close()
            return status, _text(data)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._conn = None
        self._served = 0


def _parse_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path?query)`` of an http(s) URL; InputError naming ``[webhook] url``."""
    hint = "give the gateway's endpoint as http://host[:port]/path or https://…"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"[webhook] url is not a URL: {exc}", hint=hint) from None
    if parts.scheme not in ("http", "https"):
        raise InputError(
            f"[webhook] url must be http or https, not {parts.scheme or 'a bare path'!r}",
            hint=hint,
        )
    if not parts.hostname:
        raise InputError("[webhook] url has no host", hint=hint)
    if parts.username is not None or parts.password is not None:
        raise InputError(
            "[webhook] url must not hold credentials (user:password@)",
            hint="drop them: the signature authenticates jingzhun to the gateway",
        )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, port or default, target


def _check_numbers(**valid: bool) -> None:
    for name, ok in valid.items():
        if not ok:
            raise InputError(
                f"[webhook] {name} is out of range",
                hint="timeout_seconds and rate_per_second must be > 0, retries and "
                "retry_base_seconds >= 0, connections >= 1",
            )


def _text(value: bytes) -> str:
    return " ".join(value.decode("utf-8", "replace").split())[:200]


__all__ = [
    "TOLERANCE_SECONDS",
    "WebhookOutgoing",
    "WebhookSender",
    "content",
    "sign",
    "verify",
]
