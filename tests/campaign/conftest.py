"""A store ready for campaigns, a real SMTP server on 127.0.0.1, and spec files.

``campaign_template`` runs every stage a campaign reads once per session on the shared
simulated shop (profiles and tags, RFM segments, a recommendation batch, uplift scores from
the shop's past campaign); each test copies the file. ``smtp`` is aiosmtpd on a free loopback
port that keeps every message it accepts and can be told to refuse some recipients (5xx),
defer them a number of times (4xx) or drop the connection.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiosmtpd.controller import Controller

from jingzhun.config import Settings
from jingzhun.store import Store
from jingzhun.workspace import Workspace
from tests.api.conftest import server  # noqa: F401 - the real server, for test_server.py
from tests.conftest import Shop

BASE_URL = "https://t.shop.example"


@pytest.fixture(scope="session")
def campaign_template(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("campaign_template")
    db = folder / "store.duckdb"
    with Workspace.open(db, config=None) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest.files(kind, [shop.file(kind)])
        ws.profiles.build()
        ws.segments.run("rfm", name="rfm")
        ws.recs.train("pop")
        ws.recs.batch(5)
        ws.predict.uplift(pd.read_parquet(shop.file("campaigns")), seed=0)
        ws.predict.score("uplift")
    return db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sink:
    """What the SMTP server received, and how it answers."""

    messages: list[tuple[list[str], bytes]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # 550 at RCPT
    defer: dict[str, int] = field(default_factory=dict)  # address -> 451s left
    delay: float = 0.0  # seconds before answering DATA
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, smtpd, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such user"
        with self.lock:
            left = self.defer.get(address, 0)
            if left:
                self.defer[address] = left - 1
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtpd, session, envelope):
        if self.delay:
            time.sleep(self.delay)  # blocks the server's loop: a slow server, on purpose
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK queued"

    def parsed(self) -> list[EmailMessage]:
        with self.lock:
            return [message_from_bytes(m, policy=policy.default) for _, m in self.messages]  # type: ignore[misc]

    def by_recipient(self) -> dict[str, list[EmailMessage]]:
        out: dict[str, list[EmailMessage]] = {}
        for (rcpts, _), msg in zip(self.messages, self.parsed(), strict=True):
            for r in rcpts:
                out.setdefault(r, []).append(msg)
        return out


@dataclass
class Smtp:
    port: int
    sink: Sink
    controller: Controller


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    served = Smtp(port, sink, controller)
    try:
        yield served
    finally:
        served.controller.stop()  # a test may have restarted it


def settings_for(port: int, **email: Any) -> Settings:
    return Settings.model_validate(
        {
            "email": {
                "port": port,
                "from": "Shop News <news@shop.example>",
                "rate_per_second": 100000,
                "retry_base_seconds": 0.01,
                **email,
            },
            "tracking": {"base_url": BASE_URL},
        }
    )


@pytest.fixture
def open_ws(campaign_template: Path, tmp_path: Path) -> Iterator[Callable[..., Workspace]]:
    """``open_ws(settings=None)``: a workspace over a fresh copy of the campaign template."""
    opened: list[Workspace] = []
    db = tmp_path / "store.duckdb"
    shutil.copyfile(campaign_template, db)

    def _open(settings: Settings | None = None) -> Workspace:
        s = settings or Settings()
        ws = Workspace(Store.open(db, s), s)
        opened.append(ws)
        return ws

    yield _open
    for ws in opened:
        ws.close()


SPEC = """
name = "@NAME@"
channel = "email"
[audience]
@AUDIENCE@
[control]
@CONTROL@
[[variants]]
name = "a"
subject = "{{ first_name }}, picks for you"
template = "a.html"
[[variants]]
name = "b"
subject = "New for you, {{ first_name }}"
template = "b.txt"
[offer]
cost_per_message = 0.01
margin = 0.3
discount = 0.1
"""

HTML = """<html><body><h1>Hello {{ first_name }}</h1>
<ul>{% for r in recommendations %}<li><a href="https://shop.example/p/{{ r.item_id }}">{{ r.title }}</a> - {{ r.reason_text }}</li>{% endfor %}</ul>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>
"""
TEXT = """Hello {{ name }},
{% for r in recommendations %}- {{ r.title }}
{% endfor %}Unsubscribe: {{ unsubscribe_url }}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Callable[..., Path]:
    """``spec_file(name, extra, audience, control)``: a spec (SPEC with those parts) and its
    two templates, in tmp_path."""

    def _make(
        name: str = "spring",
        extra: str = "",
        audience: str = 'where = "frequency >= 1"',
        control: str = "share = 0.25",
    ) -> Path:
        (tmp_path / "a.html").write_text(HTML, encoding="utf-8")
        (tmp_path / "b.txt").write_text(TEXT, encoding="utf-8")
        path = tmp_path / f"{name}.toml"
        text = SPEC.replace("@NAME@", name).replace("@AUDIENCE@", audience)
        path.write_text(text.replace("@CONTROL@", control) + extra, encoding="utf-8")
        return path

    return _make
