"""`demo` plays its whole story; `simulators` serves until interrupted and stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import requests

from cli.demo_story import run_demo
from connectors.mailbox.settings import InboundSettings
from simulators.estate import SimulatedEstate
from sync.config.settings import EXAMPLE_CONFIG

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
    flowing = " ".join(output.split())
    for fragment in (
        "Escalation refused: limit reached: max_per_day (1 escalation today, limit 1).",
        "Your request has been escalated",
        "Resolved, please confirm",
        "DS-1 created",
    ):
        assert fragment in flowing, fragment


def test_demo_timeline_shows_whole_notes_and_servicenow_labels() -> None:
    """Notes are printed in full (every missing item of the gate), without origin markers, and
    ServiceNow states and priorities by their labels, not their codes."""
    lines: list[str] = []
    assert run_demo(echo=lines.append) == 0, "\n".join(lines)
    output = "\n".join(lines)
    for item in ("steps to reproduce", "logs or screenshots", "troubleshooting done"):
        assert f"- {item}" in output, item
    assert "escalation-sync origin=" not in output
    assert "…" not in output
    flowing = " ".join(output.split())
    assert "(priority 1 - Critical)" in flowing
    assert "state New -> In Progress" in flowing
    assert "state In Progress -> Resolved" in flowing
    assert "(copy of jira DS-1) Found it: a cache key collision" in flowing


def test_demo_keep_running_repeats_the_urls_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    """After the story the URLs are printed again; SIGTERM stops everything, exit 0, and the
    temporary state folder is gone."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_sync.py"), "demo", "--keep-running"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = "\n".join(read_until(proc, "Ctrl-C (or SIGTERM) stops", timeout=90))
        assert "Everything stays up:" in out, out
        tail = out.split("Everything stays up:", 1)[1]
        for name in ("jira", "servicenow", "smtp", "mail_api", "slack", "daemon"):
            assert re.search(rf"^  {name}\s+\S+://127\.0\.0\.1:\d+", tail, re.M), name
        assert list(tmp_path.glob("escalation-sync-demo-*")), "the state folder exists while up"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert list(tmp_path.glob("escalation-sync-demo-*")) == []


def read_until(proc: subprocess.Popen[str], prefix: str, *, timeout: float) -> list[str]:
    """The process's stdout lines up to and including the first starting with `prefix`."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith(prefix):
            break
    return lines


def start_simulators(*extra: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """`escalation-sync simulators` on free ports, as a subprocess."""
    ports = ("--jira-port", "--servicenow-port", "--smtp-port", "--mail-api-port", "--slack-port")
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run_sync.py"),
            "simulators",
            *(arg for port in ports for arg in (port, "0")),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_simulators_command_serves_and_stops_on_interrupt() -> None:
    """The simulators answer on the printed URLs (Slack with the printed bot token) and Ctrl-C
    stops them with exit 0."""
    env = {**os.environ, "ESCALATION_SYNC_LOG_LEVEL": "WARNING"}
    proc = start_simulators(env=env)
    try:
        assert proc.stdout is not None
        urls: dict[str, str] = {}
        lines = read_until(proc, "# Slack Web API at", timeout=30)
        for line in lines:
            name, _, url = line.strip().partition(" ")
            if name in {"jira", "servicenow", "smtp", "mail_api", "slack"}:
                urls[name] = url.strip()
        assert set(urls) == {"jira", "servicenow", "smtp", "mail_api", "slack"}, urls
        slack_line = lines[-1].split()
        assert slack_line[5].rstrip(",") == urls["slack"], lines[-1]
        who = requests.post(
            f"{urls['slack']}auth.test",
            headers={"Authorization": f"Bearer {slack_line[-1]}"},
            timeout=5,
        ).json()
        assert who["ok"] is True and who["user"] == "escalation-sync", who
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


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _loopback_ports(value: Any) -> set[int]:
    if isinstance(value, dict):
        return set().union(*(_loopback_ports(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_loopback_ports(v) for v in value))
    if isinstance(value, str):
        return {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", value)}
    return set()


def test_simulators_snippet_points_everything_at_the_ports_in_use() -> None:
    """On other ports, the printed snippet merged into the example leaves no address on the
    default ports (links included), sets the webhook port, names people one can act as, and
    no SMTP sink chatter is printed."""
    proc = start_simulators(
        "--webhooks-to",
        "http://127.0.0.1:18999",
        env={k: v for k, v in os.environ.items() if k != "ESCALATION_SYNC_LOG_LEVEL"},
    )
    try:
        lines = read_until(proc, "# e.g. curl", timeout=30)
        out = "\n".join(lines)
        assert lines[0].startswith("jira "), out
        printed = lines[: next(i for i, line in enumerate(lines) if line.startswith("webhooks"))]
        urls = dict(line.split(None, 1) for line in printed)
        snippet = out.split("(merge into a copy of config.example.toml):\n", 1)[1]
        snippet = snippet.split("\n# Secrets", 1)[0]
        merged = _merge(
            tomllib.loads((ROOT / "config.example.toml").read_text()), tomllib.loads(snippet)
        )
        in_use = {urllib.parse.urlsplit(u).port for u in urls.values()} | {18999}
        assert _loopback_ports(merged) <= in_use, out
        assert merged["webhooks"]["port"] == 18999
        jira_ref = merged["mapping"]["systems"]["jira"]["ref"]
        assert jira_ref["url_template"] == f"{urls['jira']}/browse/{{key}}"
        login = re.search(r"#   ServiceNow  (lee\.l1):(\S+)\s+L1 support engineer", out)
        assert login is not None, out
        created = requests.post(
            f"{urls['servicenow']}/api/now/table/incident",
            json={"short_description": "Printer jammed"},
            auth=(login.group(1), login.group(2)),
            timeout=5,
        )
        assert created.status_code == 201, created.text
        assert created.json()["result"]["sys_created_by"] == "lee.l1"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "mail.log" not in err and "handling connection" not in err, err


def test_the_printed_configuration_reads_replies_from_the_sink() -> None:
    """What `simulators` prints points [email.inbound] at the sink's IMAP, logging in as the
    example's support address (where customers' replies arrive), and validates."""
    with SimulatedEstate() as estate:
        printed = tomllib.loads(estate.config_overrides())
        imap_port = estate.mail.imap_port
    inbound = InboundSettings.model_validate(printed["email"]["inbound"])
    assert inbound.imap is not None
    assert (inbound.imap.host, inbound.imap.port) == ("127.0.0.1", imap_port)
    assert (
        inbound.imap.username == tomllib.loads(EXAMPLE_CONFIG.read_text())["email"]["from_address"]
    )
