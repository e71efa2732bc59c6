"""Backfill: pair existing ServiceNow incidents into Jira with the product, against the baseline.

Seeds `--count` incidents carrying the ESCALATION label in simulators running in a child process
(so this process's peak RSS is the backfill's own), runs `sync.pipeline.backfill.backfill` as
`escalation-sync backfill --system servicenow` does (bulk create, 50 issues a request), then runs
the hand-written script of bench/baseline.py over a fresh copy of the same data and reports the
ratio of the two wall times.

    python -m bench.backfill [--count 10000] [--latency-ms 0] [--quick] [--no-baseline]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Calls, SimsProcess, delta_both, header, peak_rss_mib, quiet_logs


def product(count: int, latency_ms: float, work: Path) -> dict[str, Any]:
    """Seed, backfill with the product, verify every incident got its pair; return figures."""
    from mapping.model import System
    from sync.config.settings import load_settings
    from sync.pipeline.backfill import backfill
    from sync.runtime.wiring import build_engine
    from sync.store.database import Store

    with SimsProcess(work / "product", incidents=count, latency_ms=latency_ms) as sims:
        os.environ.update(sims.environment(work / "product" / "state"))
        settings = load_settings(None)
        store = Store.for_state(settings.state.dir, settings.state.database_url)
        try:
            engine = build_engine(settings, store)
            rss_before = peak_rss_mib()
            before = sims.stats()
            start = time.perf_counter()
            result = backfill(engine, System.SERVICENOW)
            wall = time.perf_counter() - start
            calls = delta_both(before, sims.stats())
            links = store.status_counts().links
        finally:
            store.close()
    return {
        "paired": result.paired,
        "scanned": result.scanned,
        "failures": len(result.failures),
        "first_failure": result.failures[0].reason if result.failures else "",
        "links": links,
        "wall": wall,
        "calls": calls,
        "rss": peak_rss_mib(),
        "rss_before": rss_before,
    }


def print_calls(calls: dict[str, Calls], per: int) -> None:
    for name, c in calls.items():
        print(f"  {name}: {c.total} ({c.writes} writes)")
        for line in c.lines(per=float(per)):
            print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description="Backfill benchmark with its baseline.")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="injected on both APIs")
    parser.add_argument("--quick", action="store_true", help="1,000 incidents")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.count = 1_000
    header("backfill")
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        work = Path(tmp)
        mine = product(args.count, args.latency_ms, work)
        total = sum(c.total for c in mine["calls"].values())
        print(f"incidents:    {args.count} seeded, injected latency {args.latency_ms:g} ms")
        why = f": {mine['first_failure']}" if mine["failures"] else ""
        print(
            f"product:      {mine['paired']} paired ({mine['links']} links, "
            f"{mine['failures']} failures{why})"
        )
        print(f"  wall time:  {mine['wall']:.1f} s ({mine['paired'] / mine['wall']:.0f}/s)")
        print(f"  API calls:  {total} ({total / max(1, args.count):.2f} per incident)")
        print(f"  peak RSS:   {mine['rss']:.0f} MiB (before: {mine['rss_before']:.0f} MiB)")
        print_calls(mine["calls"], args.count)
        if args.no_baseline:
            return 0
        from bench.baseline import measure

        base = measure(args.count, args.latency_ms, work)
        btotal = sum(c.total for c in base["calls"].values())
        print(f"baseline:     {base['copied']} copied by the hand-written script")
        print(f"  wall time:  {base['wall']:.1f} s ({base['copied'] / base['wall']:.0f}/s)")
        print(f"  API calls:  {btotal} ({btotal / max(1, args.count):.2f} per incident)")
        print_calls(base["calls"], args.count)
        speedup = base["wall"] / mine["wall"]
        print(
            f"speedup {speedup:.2f}x "
            f"(baseline {base['wall']:.1f} s / product {mine['wall']:.1f} s); "
            f"API calls: product {total}, baseline {btotal}; "
            f"target >= 10x -> {'met' if speedup >= 10 else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
