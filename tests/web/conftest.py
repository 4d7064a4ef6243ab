"""The demo's store behind the real server, and headless Chromium (Debian's package, driven
by Playwright) that may talk to 127.0.0.1 only."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jingzhun.workspace import Workspace
from tests.api.conftest import Served, start
from tests.conftest import DemoRun

CHROMIUM = "/usr/bin/chromium"
#: Where screenshots go (CI keeps $JINGZHUN_ARTIFACTS).
ARTIFACTS = Path(os.environ.get("JINGZHUN_ARTIFACTS", "test-artifacts")) / "dashboard"


@pytest.fixture(scope="session")
def dashboard_store(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's store at 1,500 users: profiles, RFM and k-means segments, a hybrid
    recommender, propensity/churn/CLV/uplift models, two campaigns sent and measured; plus a
    popularity recommender trained beside the hybrid (which stays the active one)."""
    db = tmp_path_factory.mktemp("dashboard") / "jingzhun.duckdb"
    shutil.copyfile(demo_run.out / "jingzhun.duckdb", db)
    with Workspace.open(db, config=None) as ws:
        active = ws.models.active("recommender")
        ws.recs.train("popularity")
        assert active is not None
        ws.models.activate(active.model_id)
    return db


@pytest.fixture
def served(dashboard_store: Path, tmp_path: Path) -> Iterator[Served]:
    db = tmp_path / "store.duckdb"
    shutil.copyfile(dashboard_store, db)
    s = start(db)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page whose console errors and requests to other hosts are kept."""

    def __init__(self, context: Any, base: str) -> None:
        self.page = context.new_page()
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def route(r: Any) -> None:
            if r.request.url.startswith(base):
                r.continue_()
            else:
                self.foreign.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)


@pytest.fixture
def context(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    lang = getattr(request, "param", "en-US")
    c = browser.new_context(viewport={"width": 1280, "height": 900}, locale=lang)
    try:
        yield c
    finally:
        c.close()


def sign_in(w: Watched, served: Served, scope: str = "read", then: str = "/") -> None:
    w.page.goto(served.url + then)
    assert "/login" in w.page.url
    w.page.fill("#key", served.keys[scope])
    # The form posts and the server redirects: wait for that navigation, not only for the
    # network to be idle (which could be seen on the sign-in page before it left).
    with w.page.expect_navigation():
        w.page.click("button.primary")
    w.page.wait_for_load_state("networkidle")


def charts_drawn(page: Any) -> int:
    """How many Plotly charts on the page drew something (an SVG with marks in it)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.js-plotly-plot')].filter(
               d => d.querySelector('svg.main-svg') &&
                    d.querySelectorAll('.trace, .hm, .funnel, .bars, path.point').length > 0
           ).length"""
    )


def charts_overflowing(page: Any) -> list[str]:
    """The titles of charts that stick out of their card (cut off on screen)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.card')].flatMap(card => {
               const box = card.getBoundingClientRect();
               return [...card.querySelectorAll('svg.main-svg')].filter(
                   svg => svg.getBoundingClientRect().right > box.right + 1
               ).map(svg => card.innerText.split('\\n')[0]);
           })"""
    )
