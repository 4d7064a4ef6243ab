"""Email over SMTP: a pool of connections, a rate limit, retries, bounces, RFC 8058 headers.

Each message carries ``Message-ID`` (derived from the delivery key: a message sent again after
a crash has the same id, which receivers deduplicate on), ``Date``, ``List-Unsubscribe`` with
the signed HTTPS link and a ``mailto:``, and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
(RFC 8058, which Gmail and Yahoo require of bulk senders); with DKIM configured, it is signed
with both unsubscribe headers in the signed set.

Outcomes: 2xx → ``sent``; a 5xx answer → ``failed`` for good (a 5xx to the recipient is a hard
bounce: the address is suppressed); a 4xx answer, a timeout or a dropped connection → retried
with exponential backoff (``retry_base_seconds`` × 2^try), ``failed`` after ``retries``. When
the server cannot be reached at all, the sender stops and the rest stays queued for the next
run.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.errors
import functools
import hashlib
import re
import secrets
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, parseaddr

from jingzhun.campaign.channels.outcome import Outcome, Unreachable
from jingzhun.campaign.channels.pace import Pacer
from jingzhun.campaign.channels.pool import PooledSender, Workers
from jingzhun.campaign.content import Rendered
from jingzhun.config import EmailSettings
from jingzhun.errors import InputError

#: Headers DKIM signs: the usual set plus the two unsubscribe headers (RFC 8058 section 4).
DKIM_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)


@dataclass(frozen=True)
class Outgoing:
    """One message to send."""

    user_id: str
    to: str
    message_id: str
    rendered: Rendered
    unsubscribe_url: str


def message_id(campaign: str, user_id: str, channel: str, domain: str) -> str:
    """The Message-ID of a delivery: the same for the same key, on every run."""
    digest = hashlib.sha256(f"{campaign}\x1f{user_id}\x1f{channel}".encode()).hexdigest()[:32]
    return f"<{campaign}.{digest}@{domain}>"


def sender_domain(settings: EmailSettings) -> str:
    _, addr = parseaddr(settings.from_)
    return addr.rpartition("@")[2] or "localhost"


class SmtpSender(PooledSender["_Session", Outgoing]):
    """Sends messages through ``[email]``'s server with ``connections`` parallel sessions.

    Parameters
    ----------
    settings : EmailSettings
    password : str, optional
        Read by the caller from the variable ``password_env`` names.
    sleep : callable
        For tests of backoff.
    """

    def __init__(
        self,
        settings: EmailSettings,
        *,
        password: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.password = password
        self.sleep = sleep
        self._pacer = Pacer(settings.rate_per_second, sleep)
        self._dkim_key: bytes | None = None
        if settings.dkim_key_file:
            try:
                with open(settings.dkim_key_file, "rb") as fh:
                    self._dkim_key = fh.read(1 << 16)
            except OSError as exc:
                raise InputError(
                    f"[email] dkim_key_file {settings.dkim_key_file}: {exc.strerror or exc}",
                    hint="give the path of the PEM private key",
                ) from None
        self._mailto = settings.unsubscribe_mailto or parseaddr(settings.from_)[1]
        self._lean = _LeanMime.of(self)
        self._envelope_from = parseaddr(settings.from_)[1]

    # -- connections -------------------------------------------------------------------------

    def _start(self) -> Workers[_Session, Outgoing]:
        return Workers(
            self.settings.connections,
            "smtp",
            open_session=_Session,
            close_session=_Session.quit,
            deliver=self._deliver,
            not_attempted="not attempted: the SMTP server was unreachable",
        )

    def connect(self) -> smtplib.SMTP:
        """One logged-in session; :class:`Unreachable` naming ``[email]`` on failure."""
        s = self.settings
        try:
            if s.security == "tls":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout_seconds, context=ssl.create_default_context()
                )
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
                if s.security == "starttls":
                    conn.starttls(context=ssl.create_default_context())
            if s.username:
                conn.login(s.username, self.password or "")
            return conn
        except smtplib.SMTPAuthenticationError as exc:
            raise Unreachable(
                f"[email] the SMTP server refused the login of {s.username!r}: {exc.smtp_code}",
                hint="check [email] username and the variable password_env names",
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise Unreachable(
                f"[email] cannot reach the SMTP server {s.host}:{s.port}: {exc}",
                hint="check [email] host, port and security, and that the server runs",
            ) from None

    def check(self) -> None:
        """Connect once and say goodbye: fail before anything is marked as sending."""
        conn = self.connect()
        with contextlib.suppress(OSError, smtplib.SMTPException):
            conn.quit()

    # -- messages ----------------------------------------------------------------------------

    def build(self, m: Outgoing) -> bytes:
        """The message as sent (CRLF line ends), DKIM-signed when configured.

        Raises
        ------
        ValueError
            The address or a header cannot be written (e.g. a line break in it).
        """
        data = self._lean.build(m) if self._lean is not None else None
        if data is None:
            data = self.build_standard(m)
        if self._dkim_key is not None:
            import dkim

            s = self.settings
            sig = dkim.sign(
                data,
                s.dkim_selector.encode(),  # type: ignore[union-attr]
                s.dkim_domain.encode(),  # type: ignore[union-attr]
                self._dkim_key,
                include_headers=list(DKIM_HEADERS),
            )
            data = sig + data
        return data

    def build_standard(self, m: Outgoing) -> bytes:
        """The message built by the standard library's ``email`` package: the reference
        the lean builder is tested against, and the path for what it does not take."""
        s = self.settings
        msg = EmailMessage(policy=SMTP)
        msg["From"] = s.from_
        msg["To"] = Address(addr_spec=m.to) if "@" in m.to else m.to
        if m.rendered.subject is not None:
            msg["Subject"] = m.rendered.subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = m.message_id
        if s.reply_to:
            msg["Reply-To"] = s.reply_to
        msg["List-Unsubscribe"] = self._unsubscribe_header(m)
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(m.rendered.text)
        if m.rendered.html is not None:
            msg.add_alternative(m.rendered.html, subtype="html")
        return msg.as_bytes()

    def _unsubscribe_header(self, m: Outgoing) -> str:
        return f"<{m.unsubscribe_url}>, <mailto:{self._mailto}?subject=unsubscribe>"

    def _deliver(self, session: _Session, m: Outgoing) -> Outcome:
        """One message with its retries, over ``session`` (connected on first use, again
        after a dropped connection)."""
        s = self.settings
        try:
            data = self.build(m)
        except (ValueError, TypeError, email.errors.MessageError) as exc:
            # e.g. an address with a line break in the PII table: never sent, never retried
            reason = f"cannot write the message to {m.to!r}: {exc}"
            return Outcome(m.user_id, "failed", reason, None, 0, None, to=m.to)
        last = ""
        tries = 0
        for attempt in range(s.retries + 1):
            if attempt:
                self.sleep(s.retry_base_seconds * 2 ** (attempt - 1))
            tries = attempt + 1
            if session.conn is None:
                try:
                    session.conn = self.connect()
                except Unreachable:
                    if attempt < s.retries:
                        last = f"cannot reach {s.host}:{s.port}"
                        continue
                    raise
            conn = session.conn
            self._pacer.wait()
            try:
                refused = conn.sendmail(self._envelope_from, [m.to], data)
                code, text = refused.get(m.to, (250, b"OK"))
                if code < 400:
                    now = datetime.now(UTC).replace(tzinfo=None)
                    return Outcome(m.user_id, "sent", None, f"{code}", tries, now, to=m.to)
                last = f"{code} {_text(text)}"
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = exc.recipients.get(m.to, (550, b"refused"))
                last = f"{code} {_text(text)}"
                if code >= 500:
                    return Outcome(
                        m.user_id, "failed", f"hard bounce: {last}", last, tries, None,
                        hard_bounce=True, to=m.to,
                    )  # fmt: skip
            except smtplib.SMTPResponseException as exc:
                last = f"{exc.smtp_code} {_text(exc.smtp_error)}"
                _reset(conn)
                if exc.smtp_code >= 500:  # the sender or the content refused: not the address
                    return Outcome(
                        m.user_id, "failed", f"rejected: {last}", last, tries, None, to=m.to
                    )
            except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
                last = f"connection lost: {exc}"
                session.drop()
        reason = f"temporary failure after {tries} tries: {last}"
        return Outcome(m.user_id, "failed", reason, last, tries, None, to=m.to)


class _Session:
    """One worker's SMTP connection: opened on first use, again after it dropped."""

    def __init__(self) -> None:
        self.conn: smtplib.SMTP | None = None

    def drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
        self.conn = None

    def quit(self) -> None:
        """Say goodbye (the end of a send)."""
        if self.conn is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self.conn.quit()
        self.conn = None


#: An address the lean builder writes as is: an ASCII dot-atom local part and a domain of
#: letters, digits and hyphens. Anything else (quoted local parts, IDNs, UTF-8) goes to the
#: standard builder, which knows every rule.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+\Z"
)
_CRLF = b"\r\n"


def _plain_token(value: str, forbidden: str = " <>") -> bool:
    """Printable ASCII without spaces (or angle brackets): a URL or id written as is."""
    return value.isascii() and value.isprintable() and not any(c in value for c in forbidden)


def _fold(name: str, value: str) -> bytes:
    """One header as the standard library folds it (for the headers every message shares)."""
    return SMTP.fold_binary(*SMTP.header_store_parse(name, value))


def _subject_line(subject: str) -> bytes:
    if subject.isascii() and subject.isprintable() and "=?" not in subject and len(subject) <= 69:
        return b"Subject: " + subject.encode("ascii") + _CRLF
    # RFC 2047 encoded words: no byte of the subject reaches the header unencoded, so no
    # character in it can break the header.
    encoded = Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")
    return b"Subject: " + encoded.encode("ascii") + _CRLF


def _body(kind: str, text: str) -> tuple[bytes, bytes]:
    """A text part's headers and encoded body (CRLF line ends, ending with one): 7bit when
    it is ASCII in short lines, else quoted-printable or base64, whichever is shorter (the
    standard library's choice, without its 8bit, which needs the server's 8BITMIME)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    raw = text.encode("utf-8")
    if raw.isascii() and max(map(len, raw.split(b"\n"))) <= 78:
        cte, body = b"7bit", raw
    else:
        qp = binascii.b2a_qp(raw, istext=True)
        # base64 carries text in its canonical form, CRLF line ends (RFC 2045 section 6.8)
        b64 = base64.encodebytes(raw.replace(b"\n", _CRLF))
        cte, body = (b"quoted-printable", qp) if len(qp) <= len(b64) else (b"base64", b64)
    head = (
        b"Content-Type: text/" + kind.encode() + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: " + cte + _CRLF
    )
    return head, body.replace(b"\n", _CRLF)


class _LeanMime:
    """Writes a campaign message's bytes directly.

    Written here because the standard library's builder (``EmailMessage`` under the SMTP
    policy) parses and refolds every header through its header registry: 1.25 ms of CPU
    per message, holding the GIL, twice the whole SMTP exchange — the ceiling of a send. The
    structure is fixed (the campaign headers; a text part, or text and HTML alternatives), so
    it is written here in a few microseconds. It takes only what it can write exactly — a
    plain address, ids and URLs of printable ASCII — and leaves the rest to the standard
    builder; tests parse both builders' output and compare every header and part.
    """

    def __init__(self, sender: SmtpSender) -> None:
        s = sender.settings
        if not _plain_token(sender._mailto):
            raise ValueError("the unsubscribe mailto is not plain ASCII")
        self._from = _fold("From", s.from_)
        self._reply = _fold("Reply-To", s.reply_to) if s.reply_to else b""
        self._mailto = f"<mailto:{sender._mailto}?subject=unsubscribe>".encode("ascii")
        self._subject = functools.lru_cache(maxsize=4096)(_subject_line)

    @classmethod
    def of(cls, sender: SmtpSender) -> _LeanMime | None:
        """The lean builder, or None when the shared headers need the standard one."""
        try:
            return cls(sender)
        except (ValueError, TypeError, IndexError, email.errors.MessageError):
            return None

    def build(self, m: Outgoing) -> bytes | None:
        """The message, or None when it needs the standard builder."""
        if not (
            _PLAIN_ADDRESS.match(m.to)
            and _plain_token(m.message_id, " ")
            and _plain_token(m.unsubscribe_url)
        ):
            return None
        r = m.rendered
        head = [self._from, b"To: ", m.to.encode("ascii"), _CRLF]
        if r.subject is not None:
            head.append(self._subject(r.subject))
        head += [
            b"Date: ", formatdate(usegmt=True).encode("ascii"), _CRLF,
            b"Message-ID: ", m.message_id.encode("ascii"), _CRLF,
            self._reply,
            b"List-Unsubscribe: <", m.unsubscribe_url.encode("ascii"), b">,\r\n ",
            self._mailto, _CRLF,
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            b"MIME-Version: 1.0\r\n",
        ]  # fmt: skip
        text_head, text = _body("plain", r.text)
        if r.html is None:
            return b"".join([*head, text_head, _CRLF, text])
        html_head, html = _body("html", r.html)
        # "=_" cannot occur in a quoted-printable or base64 body; a 7bit one is checked.
        while True:
            boundary = b"=_jz_" + secrets.token_hex(12).encode("ascii")
            if boundary not in text and boundary not in html:
                break
        dash = b"--" + boundary
        return b"".join(
            [
                *head,
                b'Content-Type: multipart/alternative;\r\n boundary="', boundary, b'"\r\n',
                _CRLF,
                dash, _CRLF, text_head, _CRLF, text,
                _CRLF, dash, _CRLF, html_head, _CRLF, html,
                _CRLF, dash, b"--", _CRLF,
            ]
        )  # fmt: skip


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:200]


def _reset(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError, smtplib.SMTPException):
        conn.rset()


__all__ = ["Outcome", "Outgoing", "SmtpSender", "Unreachable", "message_id", "sender_domain"]
