"""`python -m simulators.jira --port P`: serve the Jira simulator in the foreground."""

from __future__ import annotations

import argparse
import signal
import threading

from simulators.common import FaultConfig
from simulators.jira import JiraSimulator


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, start the simulator and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m simulators.jira", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument("--time-zone", default="UTC", help="the integration user's time zone")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--rate-429-no-retry-after", type=float, default=0.0)
    parser.add_argument("--rate-5xx", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    faults = FaultConfig(
        latency_ms=args.latency_ms,
        rate_429=args.rate_429,
        rate_429_no_retry_after=args.rate_429_no_retry_after,
        rate_5xx=args.rate_5xx,
        seed=args.seed,
    )
    sim = JiraSimulator(host=args.host, port=args.port, time_zone=args.time_zone, faults=faults)
    sim.start()
    done = threading.Event()
    # Before the address is printed: whoever reads it may ask it to stop at once.
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    who = sim.integration
    print(f"Jira simulator on {sim.url}", flush=True)
    print(f"  cloud auth: {who.email} / {who.api_token}   PAT: {who.pat}", flush=True)
    print(f"  engineer:   {sim.engineer.email} / {sim.engineer.api_token}", flush=True)
    print(
        "  projects: ENG (software), SUP (service desk), each with the roles Administrators, "
        "Developers and Users; stats at /_sim/stats",
        flush=True,
    )
    done.wait()
    sim.stop()


if __name__ == "__main__":
    main()
