"""A real daemon process killed between writing a mirrored comment and recording it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Harness, make_harness, wait_for
from tests.e2e.kill_processors import KILLED_MARK

RUN = [sys.executable, str(ROOT / "run_sync.py"), "run"]
PROCESSOR = "tests.e2e.kill_processors:kill_after_first_comment"


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """Simulators, the store and a webhook server feeding the queue the daemon consumes."""
    h = make_harness(tmp_path, monkeypatch)
    try:
        yield h
    finally:
        h.close()


def _start(harness: Harness, log: Path) -> subprocess.Popen[bytes]:
    """`run` on the harness's state dir and simulators (the environment the harness set)."""
    env = dict(os.environ)
    env["ESCALATION_SYNC_LOG_LEVEL"] = "INFO"
    with log.open("ab") as sink:
        return subprocess.Popen(
            [*RUN, "--processor", PROCESSOR],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def _copies(harness: Harness, sys_id: str, text: str) -> int:
    return sum(text in row.get("value", "") for row in harness.snow_journal(sys_id))


def test_killed_worker_leaves_one_copy_after_restart(harness: Harness, tmp_path: Path) -> None:
    """SIGKILL right after the comment write: the restarted daemon records it and writes no copy."""
    sys_id, key = harness.pair(short_description="Kill check")
    state = Path(harness.settings.state.dir)
    log = tmp_path / "daemon.log"
    first = _start(harness, log)
    try:
        wait_for(lambda: (state / "daemon.json").exists(), timeout=60)
        harness.jira.comment(key, "Exactly once, please", public=True)
        harness.wait_webhooks()
        assert first.wait(60) == -signal.SIGKILL, log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
    assert (state / KILLED_MARK).exists()
    assert _copies(harness, sys_id, "Exactly once, please") == 1

    second = _start(harness, log)
    try:
        [entry] = [r for r in harness.snow_journal(sys_id) if "Exactly once" in r["value"]]

        def recorded() -> bool:
            return harness.store.find_comment_link("servicenow", entry["sys_id"]) is not None

        assert wait_for(recorded, timeout=60, step=0.2), log.read_text()
        events = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        assert any(e.get("event") == "re-enqueuing interrupted ticket" for e in events)
        assert _copies(harness, sys_id, "Exactly once, please") == 1
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    finally:
        if second.poll() is None:
            second.kill()
    assert harness.store.list_dead_letters() == []
