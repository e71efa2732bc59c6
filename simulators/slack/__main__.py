"""`python -m simulators.slack --port P`: serve the Slack simulator in the foreground."""

from __future__ import annotations

import argparse
import signal
import threading

from simulators.common import FaultConfig
from simulators.slack import SlackSimulator
from simulators.slack.limits import RateLimits


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, start the simulator and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m simulators.slack", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083, help="0 picks a free port")
    parser.add_argument(
        "--no-rate-limits", action="store_true", help="never answer 429 for a spent budget"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--rate-5xx", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    faults = FaultConfig(
        latency_ms=args.latency_ms, rate_429=args.rate_429, rate_5xx=args.rate_5xx, seed=args.seed
    )
    sim = SlackSimulator(
        host=args.host,
        port=args.port,
        faults=faults,
        rate_limits=RateLimits(enabled=not args.no_rate_limits),
    )
    sim.start()
    print(f"Slack simulator on {sim.url} (Web API at {sim.api_url})", flush=True)
    print(f"  bot token: {sim.bot_token}", flush=True)
    print("  channels: #general, #random; stats at /_sim/stats", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    sim.stop()


if __name__ == "__main__":
    main()
