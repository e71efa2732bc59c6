"""`demo` plays its whole story; `simulators` serves until interrupted and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from cli.demo_story import run_demo

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_demo_story_passes_every_check() -> None:
    """The demo exits 0 with every check of its story passed, well under a minute."""
    lines: list[str] = []
    started = time.monotonic()
    code = run_demo(echo=lines.append)
    took = time.monotonic() - started
    output = "\n".join(lines)
    assert code == 0, output
    assert "FAIL" not in output
    assert took < 60, f"demo took {took:.1f}s"
    for fragment in (
        "Escalation refused: limit reached: max_per_day",
        "Your request has been escalated",
        "Resolved, please confirm",
        "DS-1 created",
    ):
        assert fragment in output, fragment


def test_simulators_command_serves_and_stops_on_interrupt() -> None:
    """The simulators answer on the printed URLs and Ctrl-C stops them with exit 0."""
    env = {**os.environ, "ESCALATION_SYNC_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run_sync.py"),
            "simulators",
            "--jira-port",
            "0",
            "--servicenow-port",
            "0",
            "--smtp-port",
            "0",
            "--mail-api-port",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        urls: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while len(urls) < 4 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            name, _, url = line.strip().partition(" ")
            if name in {"jira", "servicenow", "smtp", "mail_api"}:
                urls[name] = url.strip()
        assert set(urls) == {"jira", "servicenow", "smtp", "mail_api"}, urls
        info = requests.get(f"{urls['jira']}/rest/api/2/serverInfo", timeout=5)
        assert info.status_code == 200 and "version" in info.json()
        incidents = requests.get(
            f"{urls['servicenow']}/api/now/table/incident",
            auth=("escalation.sync", "sim-sn-password"),
            timeout=5,
        )
        assert incidents.status_code == 200 and incidents.json() == {"result": []}
        assert requests.get(urls["mail_api"], timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Stopped." in err
