"""What the benchmark scripts share: the machine, percentiles, request counters, the daemon.

The daemon under test runs in its own process (`python -m bench.daemon_process`), as it does in
production, so the load generator and the simulators never share its interpreter lock.
"""

from __future__ import annotations

import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = REPO / "config.example.toml"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def command_line() -> str:
    """The command that is running, as it would be typed from the repository root."""
    python = (
        os.path.relpath(sys.executable, REPO) if sys.executable.startswith(str(REPO)) else "python"
    )
    module = sys.modules["__main__"].__spec__
    target = ["-m", module.name] if module is not None else [sys.argv[0]]
    return shlex.join([python, *target, *sys.argv[1:]])


def machine() -> list[str]:
    """Lines describing this machine: cores, memory, Python, kernel."""
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"nproc: {os.cpu_count()}" + (f" ({cpu})" if cpu else ""),
        f"memory: {mem_kib / 1024 / 1024:.1f} GiB",
        f"python: {platform.python_version()} ({platform.python_implementation()})",
        f"uname: {' '.join(platform.uname())}",
    ]


def header(title: str) -> None:
    """Print the benchmark's title, the command line and the machine."""
    print(f"== {title}")
    print(f"command: {command_line()}")
    for line in machine():
        print(f"  {line}")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def quiet_logs() -> None:
    """Warnings and errors only: a log line per request would measure the terminal."""
    from sync.runtime.logs import configure_logging

    configure_logging(level="WARNING", json=True)


# --- simulator request counters ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Calls:
    """API requests served by a simulator between two `/_sim/stats` snapshots.

    A batch request counts once in `total`; the sub-requests it carried are in `batched`, and
    a batch's writes are its write sub-requests (a batch of reads is no write).
    """

    by_route: Mapping[str, int]
    batched: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_route.values())

    @property
    def writes(self) -> int:
        sent = {r: n for r, n in self.by_route.items() if not _is_batch(r)}
        return _writes(sent) + _writes(self.batched)

    def __add__(self, other: Calls) -> Calls:
        return Calls(_merged(self.by_route, other.by_route), _merged(self.batched, other.batched))

    def lines(self, per: float = 1.0) -> Iterable[str]:
        """Routes by count, most called first (divided by `per` when given); under a batch
        route, what the batches carried."""
        for route, n in sorted(self.by_route.items(), key=lambda kv: (-kv[1], kv[0])):
            yield f"    {route:<60} {n:>8}" + (f"  ({n / per:.2f} each)" if per != 1.0 else "")
            if _is_batch(route):
                for sub, m in sorted(self.batched.items(), key=lambda kv: (-kv[1], kv[0])):
                    yield f"      carried {sub:<52} {m:>8}"


def _is_batch(route: str) -> bool:
    return route.endswith("/batch")


def _writes(by_route: Mapping[str, int]) -> int:
    return sum(n for route, n in by_route.items() if route.split(" ", 1)[0] in WRITE_METHODS)


def _merged(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    merged = dict(a)
    for route, n in b.items():
        merged[route] = merged.get(route, 0) + n
    return merged


def stats_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> Calls:
    """The requests counted in `after` but not in `before` (two `/_sim/stats` bodies)."""

    def delta(key: str) -> dict[str, int]:
        old: Mapping[str, int] = before.get(key, {})
        new: Mapping[str, int] = after.get(key, {})
        return {k: v - old.get(k, 0) for k, v in new.items() if v - old.get(k, 0)}

    sent = {
        k: v for k, v in delta("requests").items() if not k.split(" ", 1)[-1].startswith("/_sim/")
    }
    return Calls(sent, delta("batched"))


# --- the estate and the daemon ------------------------------------------------------------------


def daemon_environment(estate: Any, state_dir: Path) -> dict[str, str]:
    """Environment for a daemon pointed at a SimulatedEstate, with its state in `state_dir`."""
    env = {
        "ESCALATION_SYNC_CONFIG": str(EXAMPLE_CONFIG),
        "ESCALATION_SYNC_JIRA__BASE_URL": estate.jira.url,
        "ESCALATION_SYNC_JIRA__EMAIL": estate.jira.integration.email,
        "ESCALATION_SYNC_JIRA__INTEGRATION_USER": estate.jira.integration.account_id,
        "ESCALATION_SYNC_SERVICENOW__INSTANCE_URL": estate.servicenow.url,
        "ESCALATION_SYNC_STATE__DIR": str(state_dir),
        "ESCALATION_SYNC_WEBHOOKS__PORT": "0",
    }
    env.update(estate.environment())
    return env


def static_environment(state_dir: Path) -> dict[str, str]:
    """Environment for a daemon that only receives webhooks (no simulators behind it)."""
    from simulators import estate

    return {
        "ESCALATION_SYNC_CONFIG": str(EXAMPLE_CONFIG),
        "ESCALATION_SYNC_STATE__DIR": str(state_dir),
        "ESCALATION_SYNC_WEBHOOKS__PORT": "0",
        "ESCALATION_SYNC_JIRA__WEBHOOK_SECRET": estate.JIRA_WEBHOOK_SECRET,
        "ESCALATION_SYNC_SERVICENOW__WEBHOOK_SECRET": estate.SN_WEBHOOK_SECRET,
        "ESCALATION_SYNC_JIRA__API_TOKEN": estate.JIRA_API_TOKEN,
        "ESCALATION_SYNC_SERVICENOW__PASSWORD": estate.SN_INTEGRATION_PASSWORD,
    }


class DaemonProcess:
    """`python -m bench.daemon_process` in a child process: webhook server, queue, workers."""

    def __init__(
        self,
        env: Mapping[str, str],
        state_dir: Path,
        *,
        workers: int = 0,
        profile: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.state_dir = state_dir
        self.port_file = state_dir / "daemon.port"
        args = [sys.executable, "-m", "bench.daemon_process", "--port-file", str(self.port_file)]
        args += ["--workers", str(workers)]
        if profile is not None:
            args += ["--profile", str(profile)]
        args += list(extra_args)
        self.args = args
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 60.0) -> DaemonProcess:
        """Start the child and wait until it listens."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=REPO)
        deadline = time.monotonic() + timeout
        while not self.port_file.exists() or not self.port_file.read_text().strip():
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode} before listening")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("daemon did not start listening in time")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text().strip())
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for a graceful stop (SIGKILL after `timeout`); returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    """Poll `predicate()` until true or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def peak_rss_mib() -> float:
    """This process's peak resident set size (ru_maxrss is KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SimsProcess:
    """`python -m bench.sims_process` in a child process; its URLs, seeded data and counters."""

    def __init__(self, work_dir: Path, *, incidents: int = 0, latency_ms: float = 0.0) -> None:
        self.info_file = work_dir / "sims.json"
        self.args = [
            sys.executable,
            "-m",
            "bench.sims_process",
            "--info-file",
            str(self.info_file),
            "--incidents",
            str(incidents),
            "--latency-ms",
            str(latency_ms),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def start(self, timeout: float = 600.0) -> SimsProcess:
        import json

        self.info_file.parent.mkdir(parents=True, exist_ok=True)
        self.info_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.args, cwd=REPO)
        if not wait_until(lambda: self.info_file.exists() or self.proc.poll() is not None, timeout):
            raise RuntimeError("simulators did not start in time")
        if not self.info_file.exists():
            raise RuntimeError(f"simulators exited with {self.proc.returncode}")
        self.info = json.loads(self.info_file.read_text())
        return self

    def stats(self) -> dict[str, dict[str, Any]]:
        """`/_sim/stats` of both simulators."""
        import requests

        return {
            name: requests.get(f"{self.info[name]}/_sim/stats", timeout=10).json()
            for name in ("jira", "servicenow")
        }

    def environment(self, state_dir: Path) -> dict[str, str]:
        """Environment for the product pointed at these simulators, state in `state_dir`."""
        env = {
            "ESCALATION_SYNC_CONFIG": str(EXAMPLE_CONFIG),
            "ESCALATION_SYNC_JIRA__BASE_URL": self.info["jira"],
            "ESCALATION_SYNC_JIRA__EMAIL": self.info["jira_email"],
            "ESCALATION_SYNC_JIRA__INTEGRATION_USER": self.info["jira_account"],
            "ESCALATION_SYNC_SERVICENOW__INSTANCE_URL": self.info["servicenow"],
            "ESCALATION_SYNC_STATE__DIR": str(state_dir),
        }
        env.update(self.info["environment"])
        return env

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> SimsProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def delta_both(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Calls]:
    """Per-simulator request deltas between two `SimsProcess.stats()` results."""
    return {name: stats_delta(before[name], after[name]) for name in ("jira", "servicenow")}
