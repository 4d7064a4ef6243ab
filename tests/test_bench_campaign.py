"""The campaign benchmark's shop history and its baseline statement, on the small test shop.

The benchmark itself runs only in ``make bench`` (its shop has a million users), so nothing
else would notice when the campaign stage or the vault changes under it: twice it did (a
removed ``delivery.snapshot``, addresses read in plain text after the vault sealed them).
"""

from __future__ import annotations

import sys
from pathlib import Path

from jingzhun.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_campaign  # noqa: E402


def test_the_history_is_made_and_the_baseline_draws_the_same_members(shop, tmp_path) -> None:
    db = tmp_path / "store.duckdb"
    with Workspace.open(db, config=None) as ws:
        made = bench_campaign.fill_shop(ws, {k: shop.file(k) for k in ("items", "users", "events")})
        revoked = ws.store.scalar("SELECT count(*) FROM consents WHERE status = 'REVOKED'")
        indexed = ws.store.scalar("SELECT count(address_index) FROM suppressions")
    assert made["history_sent"] > 0
    assert revoked > 0
    # suppressed as a hard bounce is: by the address's hash and its blind index
    assert made["suppressions"] > 0 and indexed == made["suppressions"]

    ours = bench_campaign.selection(str(db))
    baseline = bench_campaign.selection_baseline(str(db))
    suppressed = {s["step"]: s["removed"] for s in ours["steps"]}["suppressed"]
    assert ours["treatment"] > 0 and suppressed > 0
    assert (baseline["treatment"], baseline["control"]) == (ours["treatment"], ours["control"])
