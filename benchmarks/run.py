"""``make bench``: run every benchmark; results land in benchmarks/results/*.json."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_campaign
import bench_dashboard
import bench_ingest
import bench_ingest_logs
import bench_predict
import bench_privacy
import bench_profile
import bench_recommend
import bench_recommend_public
import bench_scale
import bench_segment
import bench_server
import bench_synth
import summary

BENCHMARKS = {
    "synth": bench_synth.main,
    "ingest": bench_ingest.main,
    "ingest_logs": bench_ingest_logs.main,
    "profile": bench_profile.main,
    "segment": bench_segment.main,
    "recommend": bench_recommend.main,
    "recommend_public": bench_recommend_public.main,
    "predict": bench_predict.main,
    "server": bench_server.main,
    "campaign": bench_campaign.main,  # builds the 1M-user store privacy and dashboard read
    "privacy": bench_privacy.main,
    "dashboard": bench_dashboard.main,
    # Sizes S, mid and M (its own defaults; run.py's arguments are benchmark names).
    "scale": lambda: bench_scale.main([]),
}


def main(names: list[str]) -> None:
    for name in names or list(BENCHMARKS):
        if name not in BENCHMARKS:
            raise SystemExit(
                f"error: unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}"
            )
        t = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)
        BENCHMARKS[name]()
        print(f"== {name} done in {time.perf_counter() - t:.0f}s", file=sys.stderr, flush=True)
    summary.write(names=list(BENCHMARKS))  # docs/benchmarks.md: each one's last run


if __name__ == "__main__":
    main(sys.argv[1:])
