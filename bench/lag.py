"""End-to-end lag and no-op replay: Jira change -> webhook -> daemon -> ServiceNow.

The simulators run in this process (changes are made in Jira's state as an engineer would, and
the mirrored value is read straight from ServiceNow's store); the daemon is the real one,
`escalation-sync run`, in a child process with its SQLite state in a temporary directory.

1. Setup: `--pairs` incidents are paired into Jira with the engine's create_pair, the daemon is
   started (its first polling pass is allowed to finish), the simulators' webhooks are pointed at
   it, and `--latency-ms` of latency is injected on both APIs.
2. Lag: `--count` priority changes in Jira at `--rate` per second, round-robin over the pairs,
   cycling High/Medium/Low (P1 would start the escalation procedure). For each, the time from the
   edit to the incident's priority showing the mirrored value; API calls per change are the
   requests both simulators served during the phase, divided by the number of changes.
3. No-op: every delivery the simulators made is posted again, first verbatim (same delivery
   ids: de-duplicated), then Jira's with fresh delivery ids (so each reaches the engine, which
   re-reads both records and must find nothing to write). Write requests (POST/PUT/PATCH/DELETE)
   on both simulators during the replay must be 0.

    python -m bench.lag [--count 1000] [--rate 25] [--pairs 100] [--latency-ms 20] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    Calls,
    daemon_environment,
    header,
    percentile,
    quiet_logs,
    stats_delta,
    wait_until,
)

# Jira priority -> the ServiceNow priority the example mapping makes of it (P1 left out).
CYCLE = [("High", "2"), ("Medium", "3"), ("Low", "4")]


@dataclass
class Change:
    sys_id: str
    expected: str
    started: float
    seen: float | None = None
    superseded: bool = False


@dataclass
class Recorder:
    """Every Jira webhook body the simulator sent, to replay later."""

    jira: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def record_jira_deliveries(jira: Any, recorder: Recorder) -> None:
    """Keep each first attempt's body and headers as the dispatcher sends them."""
    original = jira.dispatcher._attempt

    def attempt(item: Any) -> None:
        if item.attempt == 1:
            headers = {"Content-Type": "application/json; charset=utf-8"}
            headers["X-Atlassian-Webhook-Identifier"] = item.identifier
            if item.webhook.secret:
                mac = hmac.new(item.webhook.secret.encode(), item.body, hashlib.sha256)
                headers["X-Hub-Signature"] = f"sha256={mac.hexdigest()}"
            with recorder.lock:
                recorder.jira.append((item.body, headers))
        original(item)

    jira.dispatcher._attempt = attempt


class Daemon:
    """`escalation-sync run` in a child process, found through its daemon.json."""

    def __init__(self, env: dict[str, str], state_dir: Path) -> None:
        self.state_dir = state_dir
        self.env = {**os.environ, **env}
        self.log = state_dir.parent / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> Daemon:
        runtime = self.state_dir / "daemon.json"
        runtime.unlink(missing_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "run_sync", "run"], env=self.env, stdout=out, stderr=out
            )
        if not wait_until(lambda: runtime.exists() or self.proc.poll() is not None, 60):
            raise RuntimeError("daemon did not start")
        if not runtime.exists():
            raise RuntimeError(f"daemon exited: see {self.log}")
        info = json.loads(runtime.read_text())
        self.url = f"http://127.0.0.1:{info['port']}"
        return self

    def queue_depth(self) -> int:
        return int(requests.get(f"{self.url}/healthz", timeout=5).json().get("queue_depth", 0))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def settle(estate: Any, daemon: Daemon, quiet: float = 1.0, timeout: float = 300.0) -> None:
    """Wait until webhooks are delivered, the queue is empty and no API call came for `quiet` s."""
    deadline = time.monotonic() + timeout
    last = -1
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        estate.jira.drain_webhooks(5)
        estate.servicenow.wait_for_webhooks(5)
        total = estate.jira.stats()["total"] + estate.servicenow.stats()["total"]
        if total != last or daemon.queue_depth() != 0:
            last = total
            still_since = time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            return
        time.sleep(0.1)
    raise RuntimeError("the pipeline did not settle")


def calls_since(estate: Any, before: dict[str, Any]) -> dict[str, Calls]:
    return {
        "jira": stats_delta(before["jira"], estate.jira.stats()),
        "servicenow": stats_delta(before["servicenow"], estate.servicenow.stats()),
    }


def snapshot(estate: Any) -> dict[str, Any]:
    return {"jira": estate.jira.stats(), "servicenow": estate.servicenow.stats()}


def make_pairs(estate: Any, env: dict[str, str], count: int) -> list[tuple[str, str]]:
    """`count` incidents and their Jira issues, linked in the daemon's state directory."""
    from bench.sims_process import incident_fields
    from simulators.estate import CUSTOMER, L1_ENGINEER
    from sync.config.settings import load_settings
    from sync.runtime.wiring import build_engine
    from sync.store.database import Store

    os.environ.update(env)
    settings = load_settings(None)
    store = Store.for_state(settings.state.dir, settings.state.database_url)
    try:
        engine = build_engine(settings, store)
        pairs = []
        caller = estate.sn_users[CUSTOMER.user_name]
        for i in range(count):
            fields = incident_fields(i, caller)
            fields.update(u_labels="", impact="2", urgency="2", state="2")
            sys_id = estate.servicenow.create_incident(fields, as_user=L1_ENGINEER.user_name)[
                "sys_id"
            ]
            pairs.append((sys_id, engine.create_pair("servicenow", sys_id)))
    finally:
        store.close()
    return pairs


def replay(url: str, deliveries: list[tuple[str, bytes, dict[str, str]]]) -> dict[int, int]:
    """Post each (path, body, headers); returns the count of each status."""
    statuses: dict[int, int] = {}
    with requests.Session() as http:
        for path, body, headers in deliveries:
            status = http.post(f"{url}{path}", data=body, headers=headers, timeout=30).status_code
            statuses[status] = statuses.get(status, 0) + 1
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(description="End-to-end lag and no-op replay benchmark.")
    parser.add_argument("--count", type=int, default=1000, help="changes made in Jira")
    parser.add_argument("--rate", type=float, default=25.0, help="changes per second")
    parser.add_argument("--pairs", type=int, default=100, help="linked pairs changed in turn")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="injected on both APIs")
    parser.add_argument("--workers", type=int, default=4, help="daemon queue workers")
    parser.add_argument("--quick", action="store_true", help="200 changes over 40 pairs")
    args = parser.parse_args()
    if args.quick:
        args.count, args.pairs = 200, 40

    from bench.sims_process import add_labels_column
    from simulators.common import FaultConfig
    from simulators.estate import SimulatedEstate

    header("end-to-end lag and no-op replay")
    quiet_logs()
    add_labels_column()
    with tempfile.TemporaryDirectory(prefix="bench-lag-") as tmp, SimulatedEstate() as estate:
        state = Path(tmp) / "state"
        env = daemon_environment(estate, state)
        env["ESCALATION_SYNC_STATE__WORKERS"] = str(args.workers)
        # Only webhooks drive work during the measurement: no periodic poll in the window.
        env["ESCALATION_SYNC_JIRA__POLL_INTERVAL_SECONDS"] = "86400"
        env["ESCALATION_SYNC_SERVICENOW__POLL_INTERVAL_SECONDS"] = "86400"
        pairs = make_pairs(estate, env, args.pairs)
        daemon = Daemon(env, state).start()
        try:
            recorder = Recorder()
            record_jira_deliveries(estate.jira, recorder)
            estate.point_webhooks_at(daemon.url)
            settle(estate, daemon)
            faults = FaultConfig(latency_ms=args.latency_ms)
            estate.jira.set_faults(faults)
            estate.servicenow.configure_faults(faults)

            # -- lag
            changes: list[Change] = []
            pending: list[Change] = []
            lock = threading.Lock()
            done = threading.Event()

            def watch() -> None:
                store = estate.servicenow.store
                while not done.is_set() or pending:
                    now = time.perf_counter()
                    with lock:
                        for c in list(pending):
                            if store.get("incident", c.sys_id).get("priority") == c.expected:
                                c.seen = now
                                pending.remove(c)
                    if done.is_set() and time.perf_counter() - finished > 30:
                        return
                    time.sleep(0.002)

            finished = float("inf")
            watcher = threading.Thread(target=watch, daemon=True)
            before = snapshot(estate)
            start = time.perf_counter()
            watcher.start()
            for i in range(args.count):
                slot = start + i / args.rate
                delay = slot - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sys_id, key = pairs[i % len(pairs)]
                name, expected = CYCLE[(i // len(pairs)) % len(CYCLE)]
                change = Change(sys_id, expected, time.perf_counter())
                with lock:
                    # A newer change to the same pair supersedes an unseen older one.
                    for c in pending:
                        if c.sys_id == sys_id:
                            c.superseded = True
                            pending.remove(c)
                            break
                    pending.append(change)
                    changes.append(change)
                estate.jira.edit(key, {"priority": {"name": name}})
            finished = time.perf_counter()
            done.set()
            watcher.join(40)
            elapsed = finished - start
            settle(estate, daemon)
            lag_calls = calls_since(estate, before)

            lags = [c.seen - c.started for c in changes if c.seen is not None]
            superseded = sum(1 for c in changes if c.superseded)
            missing = len(changes) - len(lags) - superseded
            last = {c.sys_id: c.expected for c in changes}
            drift = sum(
                1
                for sys_id, want in last.items()
                if estate.servicenow.incident(sys_id).get("priority") != want
            )
            total = sum(x.total for x in lag_calls.values())
            writes = sum(x.writes for x in lag_calls.values())
            n = len(changes)
            print(
                f"changes:      {n} in {elapsed:.1f} s ({n / elapsed:.1f}/s) over {len(pairs)} "
                f"pairs, {args.latency_ms:g} ms injected latency, {args.workers} workers"
            )
            print(
                f"lag:          p50 {percentile(lags, 50) * 1000:.0f} ms, "
                f"p99 {percentile(lags, 99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms; "
                f"{missing} never seen, {superseded} overtaken by the pair's next change "
                f"before visible; {drift} pairs differing at the end"
            )
            print(
                f"API calls:    {total / n:.2f} per change ({writes / n:.2f} writes), "
                f"{total} in all"
            )
            for system, calls in lag_calls.items():
                print(f"  {system}: {calls.total} ({calls.writes} writes)")
                for line in calls.lines(per=float(n)):
                    print(line)
            met_lag = percentile(lags, 99) < 1.0 and missing == 0 and superseded == 0
            print(
                f"target:       lag p99 < 1 s -> {'met' if met_lag else 'NOT met'}; "
                f"<= 1.2 API calls per change -> {'met' if total / n <= 1.2 else 'NOT met'}"
            )

            # -- no-op replay
            estate.jira.set_faults(FaultConfig())
            estate.servicenow.configure_faults(FaultConfig())
            with recorder.lock:
                jira = list(recorder.jira)
            snow = [(d.body, dict(d.headers)) for d in estate.servicenow.deliveries()]
            verbatim = [("/webhooks/jira", b, h) for b, h in jira]
            verbatim += [("/webhooks/servicenow", b, h) for b, h in snow]
            fresh = [
                ("/webhooks/jira", b, {**h, "X-Atlassian-Webhook-Identifier": str(uuid.uuid4())})
                for b, h in jira
            ]
            before = snapshot(estate)
            same = replay(daemon.url, verbatim)
            settle(estate, daemon)
            again = replay(daemon.url, fresh)
            settle(estate, daemon)
            noop = calls_since(estate, before)
            noop_writes = sum(x.writes for x in noop.values())
            print(
                f"no-op replay: {len(verbatim)} deliveries verbatim {same}, "
                f"{len(fresh)} Jira ones with fresh ids {again}"
            )
            print(
                f"  API calls:  {sum(x.total for x in noop.values())} reads and writes, "
                f"writes {noop_writes}"
            )
            for system, calls in noop.items():
                print(f"  {system}: {calls.total} ({calls.writes} writes)")
                for line in calls.lines():
                    print(line)
            print(f"target:       0 no-op writes -> {'met' if noop_writes == 0 else 'NOT met'}")
        finally:
            daemon.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
