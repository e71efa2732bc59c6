"""`escalation-sync run` as a process: SIGTERM finishes work in flight, reloads keep good config."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from connectors import jira_webhook
from sync.runtime.daemon import freeze_startup_heap, webhook_server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"
SECRET = "daemon-test-secret-42"
PROCESSOR = "tests.sync.daemon_processors:slow"
RUN = [sys.executable, str(ROOT / "run_sync.py"), "run"]
CREDENTIALS = {
    "ESCALATION_SYNC_JIRA__API_TOKEN": "unused-token",
    "ESCALATION_SYNC_SERVICENOW__PASSWORD": "unused-password",
}


@dataclass
class Running:
    """A daemon subprocess and where to find its state, log and port."""

    proc: subprocess.Popen[bytes]
    config: Path
    state: Path
    log: Path
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def digest(self) -> str:
        response = requests.get(self.url("/healthz"), timeout=10)
        assert response.status_code == 200
        return str(response.json()["config"])

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def events(self) -> list[dict[str, object]]:
        found = []
        for line in self.log_lines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found


def wait_for(check: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def jira_delivery(key: str) -> tuple[bytes, dict[str, str]]:
    """A signed Jira issue_updated delivery for `key`."""
    body = json.dumps(
        {
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_updated",
            "user": {"accountId": "557058:alice"},
            "issue": {
                "id": "10001",
                "key": key,
                "fields": {"updated": "2026-11-23T10:00:00.000+0000"},
            },
            "changelog": {"id": "1", "items": [{"field": "summary"}]},
        }
    ).encode()
    return body, {
        "Content-Type": "application/json",
        "X-Hub-Signature": jira_webhook.sign(SECRET, body),
        "X-Atlassian-Webhook-Identifier": f"delivery-{key}",
    }


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start `run` on a free port with a temp state dir; killed at teardown if still running."""
    started: list[Running] = []

    def launch(*args: str) -> Running:
        config = tmp_path / "config.toml"
        config.write_text(EXAMPLE.read_text())
        state = tmp_path / "state"
        log = tmp_path / "daemon.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATION_SYNC_")}
        env.update(
            {
                "ESCALATION_SYNC_WEBHOOKS__PORT": "0",
                "ESCALATION_SYNC_WEBHOOKS__HOST": "127.0.0.1",
                "ESCALATION_SYNC_JIRA__WEBHOOK_SECRET": SECRET,
                "ESCALATION_SYNC_STATE__DIR": str(state),
                # The credentials a service has; the stand-in processor never uses them.
                **CREDENTIALS,
            }
        )
        command = [*RUN, "--config", str(config)]
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [*command, "--processor", PROCESSOR, *args],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        runtime = state / "daemon.json"

        def ready() -> dict[str, int] | None:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{log.read_text()}")
            try:
                info = json.loads(runtime.read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("pid") == proc.pid else None

        info = wait_for(ready, "daemon.json")
        assert isinstance(info, dict)
        running = Running(proc, config, state, log, int(info["port"]))
        started.append(running)
        return running

    yield launch
    for running in started:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(10)


def test_a_taken_port_fails_the_start_with_exit_1(
    start: Callable[..., Running], tmp_path: Path
) -> None:
    """A second daemon on the first one's port reports the failure and exits 1."""
    first = start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATION_SYNC_")}
    env.update(
        {
            "ESCALATION_SYNC_WEBHOOKS__PORT": str(first.port),
            "ESCALATION_SYNC_STATE__DIR": str(tmp_path / "other-state"),
            **CREDENTIALS,
        }
    )
    second = subprocess.run(
        [*RUN, "--config", str(first.config), "--processor", PROCESSOR],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert b"daemon failed to start" in second.stderr + second.stdout
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(30) == 0


def test_sigterm_finishes_work_in_flight_and_exits_zero(start: Callable[..., Running]) -> None:
    """A ticket being processed when SIGTERM arrives is finished before the process exits 0."""
    daemon = start()
    wait_for(
        lambda: (
            {e.get("system") for e in daemon.events() if e.get("event") == "poll done"}
            == {"jira", "servicenow"}
        ),
        "the first poll of each system",
    )
    body, headers = jira_delivery("DS-1")
    accepted = requests.post(daemon.url("/webhooks/jira"), data=body, headers=headers, timeout=10)
    assert accepted.status_code == 202, accepted.text
    wait_for(lambda: (daemon.state / "DS-1.started").exists(), "processing to start")
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0, daemon.log.read_text()
    assert (daemon.state / "DS-1.done").exists(), "in-flight ticket was not finished"
    assert not (daemon.state / "daemon.json").exists()
    assert any(e.get("event") == "stopped" for e in daemon.events())


def test_sighup_with_a_broken_mapping_keeps_the_last_good_one(
    start: Callable[..., Running],
) -> None:
    """A reload that fails validation is refused with its errors logged; the daemon carries on."""
    daemon = start()
    good = daemon.digest()
    original = daemon.config.read_text()
    daemon.config.write_text(original.replace('default_owner = "both"', 'default_owner = "nobody"'))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: any("reload refused" in str(e.get("event")) for e in daemon.events()),
        "the refusal to be logged",
    )
    errors = [e for e in daemon.events() if e.get("event") == "configuration error"]
    assert errors and errors[0]["key"] == "mapping.default_owner"
    assert daemon.proc.poll() is None
    assert daemon.digest() == good
    body, headers = jira_delivery("DS-2")
    still = requests.post(daemon.url("/webhooks/jira"), data=body, headers=headers, timeout=10)
    assert still.status_code == 202

    daemon.config.write_text(original + "\n# edited by the admin\n")
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.digest() != good, "the fixed configuration to be loaded")
    assert SECRET not in daemon.log.read_text()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0


def test_watch_reloads_changed_files(start: Callable[..., Running]) -> None:
    """With --watch a changed file is reloaded without a signal; a broken one is refused."""
    daemon = start("--watch")
    good = daemon.digest()
    original = daemon.config.read_text()
    daemon.config.write_text(original.replace('conflict = "newest-wins"', 'conflict = "coin-toss"'))
    wait_for(
        lambda: any("reload refused" in str(e.get("event")) for e in daemon.events()),
        "the broken file to be refused",
    )
    assert daemon.digest() == good
    daemon.config.write_text(original + "\n# watched edit\n")
    wait_for(lambda: daemon.digest() != good, "the watched edit to be loaded")
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.wait(30) == 0


def test_work_interrupted_by_a_kill_is_redone_after_restart(
    start: Callable[..., Running],
) -> None:
    """A daemon killed mid-ticket leaves a lease behind; the next start syncs that ticket again."""
    first = start()
    body, headers = jira_delivery("DS-3")
    accepted = requests.post(first.url("/webhooks/jira"), data=body, headers=headers, timeout=10)
    assert accepted.status_code == 202
    wait_for(lambda: (first.state / "DS-3.started").exists(), "processing to start")
    first.proc.kill()
    first.proc.wait(10)
    assert not (first.state / "DS-3.done").exists()
    (first.state / "DS-3.started").unlink()
    second = start()
    wait_for(lambda: (second.state / "DS-3.done").exists(), "the interrupted ticket to be redone")
    assert any(e.get("event") == "re-enqueuing interrupted ticket" for e in second.events())
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(30) == 0


def test_metrics_export_the_outbox_by_status(start: Callable[..., Running]) -> None:
    """The running daemon's /metrics carries a gauge of outbox messages for every status."""
    daemon = start()
    text = requests.get(daemon.url("/metrics"), timeout=10).text
    for status in ("pending", "sending", "sent", "unknown", "dead"):
        assert f'escalation_sync_outbox_messages{{status="{status}"}} 0.0' in text, text
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0


def test_webhook_server_parses_with_httptools_on_uvloop() -> None:
    """The daemon's HTTP server parses with httptools on uvloop's event loop (dependencies)."""

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not served here")

    config = webhook_server(app, "127.0.0.1", 0).config
    config.load()
    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"
    factory = config.get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_start_up_objects_are_left_out_of_full_collections() -> None:
    """What exists when the daemon is about to serve is frozen, so full passes skip it."""
    built_at_start_up = [["engine", "mapping"]]
    assert any(o is built_at_start_up for o in gc.get_objects())
    try:
        freeze_startup_heap()
        assert not any(o is built_at_start_up for o in gc.get_objects())
        created_later = [["delivery"]]
        assert any(o is created_later for o in gc.get_objects())
    finally:
        gc.unfreeze()
