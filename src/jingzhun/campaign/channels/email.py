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

import contextlib
import hashlib
import queue
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, parseaddr

from jingzhun.campaign.channels.pace import Pacer
from jingzhun.campaign.content import Rendered
from jingzhun.config import EmailSettings
from jingzhun.errors import InputError, JingzhunError

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


@dataclass
class Outcome:
    """What happened to one message."""

    user_id: str
    state: str  # sent | failed | queued (not attempted: the sender stopped)
    reason: str | None
    answer: str | None
    tries: int
    sent_at: datetime | None
    hard_bounce: bool = False
    to: str | None = None


class Unreachable(JingzhunError):
    """The SMTP server cannot be reached or refuses the login: nothing more can be sent."""

    http_status = 502


def message_id(campaign: str, user_id: str, channel: str, domain: str) -> str:
    """The Message-ID of a delivery: the same for the same key, on every run."""
    digest = hashlib.sha256(f"{campaign}\x1f{user_id}\x1f{channel}".encode()).hexdigest()[:32]
    return f"<{campaign}.{digest}@{domain}>"


def sender_domain(settings: EmailSettings) -> str:
    _, addr = parseaddr(settings.from_)
    return addr.rpartition("@")[2] or "localhost"


class SmtpSender:
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
        self._pool: queue.SimpleQueue[smtplib.SMTP] = queue.SimpleQueue()

    # -- connections -------------------------------------------------------------------------

    def _idle(self) -> smtplib.SMTP | None:
        """A session left open by an earlier chunk, if any."""
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        """Say goodbye on every session kept open between chunks."""
        while (conn := self._idle()) is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                conn.quit()

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
        """The message as sent (CRLF line ends), DKIM-signed when configured."""
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
        msg["List-Unsubscribe"] = (
            f"<{m.unsubscribe_url}>, <mailto:{self._mailto}?subject=unsubscribe>"
        )
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(m.rendered.text)
        if m.rendered.html is not None:
            msg.add_alternative(m.rendered.html, subtype="html")
        data = msg.as_bytes()
        if self._dkim_key is not None:
            import dkim

            sig = dkim.sign(
                data,
                s.dkim_selector.encode(),  # type: ignore[union-attr]
                s.dkim_domain.encode(),  # type: ignore[union-attr]
                self._dkim_key,
                include_headers=list(DKIM_HEADERS),
            )
            data = sig + data
        return data

    def send(self, messages: Sequence[Outgoing]) -> list[Outcome]:
        """Send ``messages`` over the pool; one outcome each, in no particular order.

        Raises
        ------
        Unreachable
            After the outcomes of what was sent are returned through ``partial``: see
            :meth:`send_partial`.
        """
        outcomes, error = self.send_partial(messages)
        if error is not None:
            raise error
        return outcomes

    def send_partial(
        self, messages: Sequence[Outgoing]
    ) -> tuple[list[Outcome], Unreachable | None]:
        """Like :meth:`send`, but return the error instead of raising it, with every
        message's outcome (``queued`` for those not attempted once the server was gone)."""
        work: queue.SimpleQueue[Outgoing] = queue.SimpleQueue()
        for m in messages:
            work.put(m)
        outcomes: list[Outcome] = []
        errors: list[Unreachable] = []
        stop = threading.Event()

        def worker() -> None:
            conn: smtplib.SMTP | None = self._idle()
            try:
                while not stop.is_set():
                    try:
                        m = work.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        outcome, conn = self._deliver(m, conn)
                    except Unreachable as exc:
                        errors.append(exc)
                        stop.set()
                        outcomes.append(Outcome(m.user_id, "queued", str(exc), None, 0, None))
                        return
                    outcomes.append(outcome)
            finally:
                if conn is not None:  # kept open for the next chunk (see close())
                    self._pool.put(conn)

        threads = [
            threading.Thread(target=worker, name=f"smtp-{i}", daemon=True)
            for i in range(min(self.settings.connections, max(1, len(messages))))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        while True:  # what no worker took once the server was gone
            try:
                m = work.get_nowait()
            except queue.Empty:
                break
            outcomes.append(
                Outcome(
                    m.user_id,
                    "queued",
                    "not attempted: the SMTP server was unreachable",
                    None,
                    0,
                    None,
                )
            )
        return outcomes, (errors[0] if errors else None)

    def _deliver(
        self, m: Outgoing, conn: smtplib.SMTP | None
    ) -> tuple[Outcome, smtplib.SMTP | None]:
        """One message with its retries; returns the outcome and the session to reuse."""
        s = self.settings
        data = self.build(m)
        sender = parseaddr(s.from_)[1]
        last = ""
        tries = 0
        for attempt in range(s.retries + 1):
            if attempt:
                self.sleep(s.retry_base_seconds * 2 ** (attempt - 1))
            tries = attempt + 1
            if conn is None:
                try:
                    conn = self.connect()
                except Unreachable:
                    if attempt < s.retries:
                        last = f"cannot reach {s.host}:{s.port}"
                        continue
                    raise
            self._pacer.wait()
            try:
                refused = conn.sendmail(sender, [m.to], data)
                code, text = refused.get(m.to, (250, b"OK"))
                if code < 400:
                    return Outcome(
                        m.user_id,
                        "sent",
                        None,
                        f"{code}",
                        tries,
                        datetime.now(UTC).replace(tzinfo=None),
                        to=m.to,
                    ), conn
                last = f"{code} {_text(text)}"
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = exc.recipients.get(m.to, (550, b"refused"))
                last = f"{code} {_text(text)}"
                if code >= 500:
                    return Outcome(
                        m.user_id,
                        "failed",
                        f"hard bounce: {last}",
                        last,
                        tries,
                        None,
                        hard_bounce=True,
                        to=m.to,
                    ), conn
            except smtplib.SMTPResponseException as exc:
                last = f"{exc.smtp_code} {_text(exc.smtp_error)}"
                if exc.smtp_code >= 500:  # the sender or the content refused: not the address
                    _reset(conn)
                    return Outcome(
                        m.user_id, "failed", f"rejected: {last}", last, tries, None, to=m.to
                    ), conn
                _reset(conn)
            except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
                last = f"connection lost: {exc}"
                _close(conn)
                conn = None
        return Outcome(
            m.user_id,
            "failed",
            f"temporary failure after {tries} tries: {last}",
            last,
            tries,
            None,
            to=m.to,
        ), conn


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:200]


def _reset(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError, smtplib.SMTPException):
        conn.rset()


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()


__all__ = ["Outcome", "Outgoing", "SmtpSender", "Unreachable", "message_id", "sender_domain"]
