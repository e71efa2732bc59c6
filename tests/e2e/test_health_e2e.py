"""A real daemon against a Jira whose token is refused: paused, 503, nothing lost, then back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ROOT, Harness, make_harness, wait_for

pytestmark = pytest.mark.e2e

RUN = [sys.executable, str(ROOT / "run_sync.py"), "run"]
STATUS = [sys.executable, str(ROOT / "run_sync.py"), "status", "--json"]
GOOD_TOKEN = "sim-api-token"


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """Simulators, the store and a webhook server feeding the queue the daemon consumes."""
    h = make_harness(tmp_path, monkeypatch)
    try:
        yield h
    finally:
        h.close()


class Daemon:
    """`escalation-sync run` over the harness's state directory and simulators."""

    def __init__(self, harness: Harness, log: Path, probe_every: int) -> None:
        env = dict(os.environ)
        env["ESCALATION_SYNC_LOG_LEVEL"] = "INFO"
        env["ESCALATION_SYNC_HEALTH__PROBE_INTERVAL_SECONDS"] = str(probe_every)
        self.state = Path(harness.settings.state.dir)
        self.log = log
        with log.open("ab") as sink:
            self.proc = subprocess.Popen(
                RUN, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        self.env = env
        assert wait_for(self._started, timeout=60, step=0.1), log.read_text()
        self.port = int(json.loads((self.state / "daemon.json").read_text())["port"])

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited early:\n{self.log.read_text()}")
        try:
            info = json.loads((self.state / "daemon.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(info.get("pid") == self.proc.pid)

    def healthz(self) -> tuple[int, dict[str, Any]]:
        answer = requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=10)
        return answer.status_code, answer.json()

    def up(self, system: str) -> float:
        text = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "escalation_sync_up" and sample.labels["system"] == system:
                    return float(sample.value)
        raise AssertionError(f"no escalation_sync_up for {system}")

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == name:
                    found.append(entry)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(60) == 0, self.log.read_text()


def until(check: Callable[[], bool], what: str, daemon: Daemon, timeout: float = 60) -> None:
    assert wait_for(check, timeout=timeout, step=0.2), f"{what}:\n{daemon.log.read_text()}"


def status_of(daemon: Daemon) -> dict[str, Any]:
    """`status --json` from another process, as an operator runs it."""
    done = subprocess.run(STATUS, cwd=ROOT, env=daemon.env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return dict(json.loads(done.stdout))


def test_a_refused_token_pauses_jira_answers_503_and_recovers_when_fixed(
    harness: Harness, tmp_path: Path
) -> None:
    """Jira refuses the token: the daemon pauses Jira (logged once), /healthz says 503 with the
    reason, status shows the vendor's error, the comment's event waits; the token fixed, the
    probe resumes Jira, /healthz is 200 again and the comment arrives, nothing dead-lettered."""
    sys_id, key = harness.pair(short_description="Token rotation")
    harness.jira.integration.api_token = "rotated-elsewhere"
    daemon = Daemon(harness, tmp_path / "daemon.log", probe_every=1)
    try:

        def unhealthy() -> bool:
            code, body = daemon.healthz()
            return code == 503 and any("jira paused" in p for p in body.get("problems", []))

        until(unhealthy, "/healthz never went 503", daemon)
        harness.jira.comment(key, "Fixed in build 42, please retest", public=True)
        harness.wait_webhooks()
        code, body = daemon.healthz()
        assert code == 503 and body["status"] == "unhealthy"
        assert body["systems"]["jira"]["paused"] is True
        assert "HTTP 401" in body["systems"]["jira"]["paused_reason"]
        assert daemon.up("jira") == 0.0
        jira = status_of(daemon)["systems"]["jira"]
        assert jira["paused"] and jira["consecutive_failures"] >= 1
        assert jira["last_error"].startswith("AuthFailed: ") and "401" in jira["last_error"]
        assert GOOD_TOKEN not in json.dumps(jira) and "rotated-elsewhere" not in json.dumps(jira)
        assert "Fixed in build 42" not in harness.snow_journal_text(sys_id)
        assert harness.store.list_dead_letters() == []

        harness.jira.integration.api_token = GOOD_TOKEN

        def healthy() -> bool:
            return daemon.healthz()[0] == 200

        until(healthy, "/healthz never came back to 200", daemon)
        until(
            lambda: "Fixed in build 42" in harness.snow_journal_text(sys_id),
            "the held comment never reached ServiceNow",
            daemon,
        )
        assert daemon.up("jira") == 1.0
        assert (
            len(
                daemon.events(
                    "system paused: authentication refused; its events wait until it answers"
                )
            )
            == 1
        )
        assert daemon.events("system resumed: it answers again")
        assert harness.store.list_dead_letters() == []
        assert status_of(daemon)["systems"]["jira"]["paused"] is False
    finally:
        daemon.stop()


def test_a_reload_resumes_a_paused_system_without_waiting_for_the_probe(
    harness: Harness, tmp_path: Path
) -> None:
    """With probes an hour apart, SIGHUP after the token is fixed resumes Jira at once."""
    harness.jira.integration.api_token = "rotated-elsewhere"
    daemon = Daemon(harness, tmp_path / "daemon.log", probe_every=3600)
    try:
        until(lambda: daemon.healthz()[0] == 503, "/healthz never went 503", daemon)
        harness.jira.integration.api_token = GOOD_TOKEN
        daemon.proc.send_signal(signal.SIGHUP)
        until(lambda: daemon.healthz()[0] == 200, "SIGHUP did not resume Jira", daemon)
        assert daemon.events("system resumed: configuration reloaded")
        assert harness.store.list_dead_letters() == []
    finally:
        daemon.stop()
