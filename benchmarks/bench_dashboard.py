"""Dashboard: time to first render and to charts drawn, page by page, in headless Chromium.

Targets (issue 17): every page in < 1 s on the demo store; Overview and Segments in ≤ 2 s on a
store of a million users.

Each page is opened in Debian's chromium (Playwright) against ``jingzhun serve`` on 127.0.0.1,
signed in with an admin key, ``--runs`` times after one warm-up visit (the server's first
visit loads models and Plotly's templates); per page the median of:

- ``server_s``: the HTML's response time (navigation ``responseEnd - requestStart``);
- ``first_paint_s``: first contentful paint from the start of the navigation;
- ``charts_s``: until every Plotly chart on the page holds its SVG (pages without charts: the
  load event).

Baseline in the same run: the sign-in page, which reads nothing (the server's and the
browser's floor), and the same figures for the API route that reads the same data where one
exists (``/v1/segments/{name}``, ``/v1/users/{id}``).

Stores, built once and cached under ``benchmarks/data/``:

- demo: ``jingzhun demo`` at its default 20,000 users;
- 1M: the campaign benchmark's 1M-user shop (23.1M events; ``bench_campaign.py`` builds it),
  copied, profiles built (which keeps the overview's activity), RFM and k-means (k = 6)
  segment runs.

Reproduce: ``cd benchmarks && ../.venv/bin/python bench_dashboard.py`` (``--no-1m`` for the
demo store only).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, copy_store, remove_store, save

CHROMIUM = "/usr/bin/chromium"
TARGET = {"demo_page_s": 1.0, "one_million_page_s": 2.0}
JINGZHUN = [sys.executable, "-m", "jingzhun"]


def demo_store() -> Path:
    folder = DATA / "dashboard-demo"
    db = folder / "jingzhun.duckdb"
    if not (folder / "done").exists():
        from jingzhun.demo import run_demo

        run_demo(folder, users=20_000, seed=0)
        (folder / "done").write_text("ok")
    return db


def million_store() -> Path:
    folder = DATA / "dashboard-1m"
    db = folder / "store.duckdb"
    if not (folder / "done").exists():
        source = DATA / "campaign-shop-1000000" / "store.duckdb"
        if not source.exists():
            raise SystemExit(f"{source} is missing: run bench_campaign.py first (it builds it)")
        folder.mkdir(parents=True, exist_ok=True)
        copy_store(source, db)
        import jingzhun

        with jingzhun.open(db) as ws:
            t = time.perf_counter()
            ws.profiles.build()
            print(f"profiles built in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            ws.segments.run("rfm", name="rfm")
            ws.segments.run("kmeans", name="behaviour", k=6)
        (folder / "done").write_text("ok")
    return db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_key(db: Path) -> str:
    out = subprocess.run(
        [*JINGZHUN, "--db", str(db), "apikey", "create", "--scope", "admin",
         "--name", f"bench-{os.getpid()}-{time.time_ns()}", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    import json

    return json.loads(out.stdout)["key"]


_MEASURE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  return {server: (nav.responseEnd - nav.requestStart) / 1000,
          paint: paint ? paint.startTime / 1000 : null,
          charts: document.querySelectorAll('.js-plotly-plot').length};
}"""
_DRAWN = """() => [...document.querySelectorAll('.js-plotly-plot')].every(
    d => d.querySelector('svg.main-svg'))"""


def measure(page: Any, url: str, runs: int) -> dict[str, Any]:
    samples = []
    for i in range(runs + 1):
        started = time.perf_counter()
        response = page.goto(url, wait_until="load")
        status = response.status if response else None
        page.wait_for_function(_DRAWN, timeout=60_000)
        drawn = time.perf_counter() - started
        got = page.evaluate(_MEASURE)
        if i:  # the first visit warms the server's caches
            samples.append({**got, "charts_s": drawn, "status": status})
    paints = [s["paint"] for s in samples if s["paint"]]
    return {
        "status": samples[-1]["status"],
        "charts": samples[-1]["charts"],
        "server_s": round(statistics.median(s["server"] for s in samples), 3),
        # None when chromium recorded no contentful paint for the navigation
        "first_paint_s": round(statistics.median(paints), 3) if paints else None,
        "charts_s": round(statistics.median(s["charts_s"] for s in samples), 3),
    }


def pages_of(db: Path) -> list[tuple[str, str]]:
    import jingzhun

    with jingzhun.open(db, read_only=True) as ws:
        user = ws.profiles.search("", limit=1, by="monetary")["user_id"].iloc[0]
        items = ws.recs.popular(2)["item_id"].tolist()
        models = {r.kind: r.model_id for r in ws.models.list() if r.active}
        campaigns = ws.campaigns.list()["name"].tolist()
    pages = [
        ("overview 30 days", "/"),
        ("overview 90 days", "/?days=90"),
        ("segments rfm", "/segments?run=rfm"),
        ("segments k-means", "/segments?run=behaviour"),
        ("segments k-means page 20", "/segments?run=behaviour&page=20"),
        ("user 360 search", "/users"),
        ("user 360", f"/users/{user}"),
        ("explore user", f"/explore?user={user}"),
        ("explore session", "/explore?items=" + ",".join(items)),
        ("campaigns", "/campaigns"),
        ("campaign builder", "/campaigns/new"),
        ("models", "/models"),
        ("jobs", "/jobs"),
        ("quarantine", "/quarantine"),
    ]
    pages += [(f"campaign {c}", f"/campaigns/{c}") for c in campaigns[:2]]
    pages += [(f"model {k}", f"/models/{m}") for k, m in sorted(models.items())
              if k in ("propensity", "uplift", "recommender", "clv")]  # fmt: skip
    baseline = [("baseline: sign-in page", "/login"), ("baseline: API user", f"/v1/users/{user}")]
    return pages + baseline


def run_store(name: str, db: Path, pages: list[tuple[str, str]], runs: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    copy = db.with_name(f"bench-{os.getpid()}.duckdb")
    copy_store(db, copy)
    key = admin_key(copy)
    port = free_port()
    server = subprocess.Popen(
        [*JINGZHUN, "--db", str(copy), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"the server did not start: {server.stderr.read()[-2000:]!r}")
            time.sleep(0.3)
        results = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            context = browser.new_context(
                viewport={"width": 1280, "height": 900},
                extra_http_headers={"Authorization": f"Bearer {key}"},  # for the API baseline
            )
            page = context.new_page()
            page.goto(base + "/login")
            page.fill("#key", key)
            page.click("button.primary")
            page.wait_for_load_state("networkidle")
            for label, path in pages:
                results[label] = {"path": path, **measure(page, base + path, runs)}
                print(f"{name} {label}: {results[label]}", file=sys.stderr, flush=True)
            browser.close()
        return results
    finally:
        server.terminate()
        server.wait(60)
        remove_store(copy)


def main(argv: list[str] | None = None) -> None:
    """Run it; ``argv`` the options (none from ``make bench``: the full run)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-1m", action="store_true", help="the demo store only")
    args = parser.parse_args(argv or [])
    os.chdir(ROOT)
    demo = run_store("demo", demo_store(), pages_of(demo_store()), args.runs)
    worst_demo = max(v["charts_s"] for k, v in demo.items() if not k.startswith("baseline"))
    payload: dict[str, Any] = {
        "target": TARGET,
        "demo": {"store": "jingzhun demo, 20,000 users", "pages": demo,
                 "slowest_page_s": worst_demo, "met": worst_demo < TARGET["demo_page_s"]},
    }  # fmt: skip
    if not args.no_1m:
        db = million_store()
        wanted = {"overview 30 days", "overview 90 days", "segments rfm", "segments k-means",
                  "segments k-means page 20", "baseline: sign-in page"}  # fmt: skip
        million = run_store("1M", db, [p for p in pages_of(db) if p[0] in wanted], args.runs)
        worst = max(v["charts_s"] for k, v in million.items() if not k.startswith("baseline"))
        payload["one_million"] = {
            "store": "1M users, 23.1M events (bench_campaign's shop)",
            "pages": million,
            "slowest_page_s": worst,
            "met": worst <= TARGET["one_million_page_s"],
        }
    save("dashboard", payload)


if __name__ == "__main__":
    main(sys.argv[1:])
