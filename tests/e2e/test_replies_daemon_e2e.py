"""The daemon reads customers' replies as they arrive (IMAP IDLE on the sink), and again after
a configuration reload; /healthz names the mailbox."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sync.runtime.daemon import Daemon
from tests.e2e.conftest import Harness, make_harness, wait_for
from tests.e2e.test_replies_crash_e2e import _config, customer_writes

pytestmark = pytest.mark.e2e


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """Simulators, the sink with IMAP and the state the daemon runs on."""
    h = make_harness(tmp_path, monkeypatch, replies=True)
    try:
        yield h
    finally:
        h.close()


def test_the_daemon_posts_replies_and_keeps_reading_after_a_reload(
    harness: Harness, tmp_path: Path
) -> None:
    """A reply sent while the daemon runs lands on the incident and reaches Jira without a
    poll; after SIGHUP's reload the new mail thread reads the next one; /healthz lists the
    mailbox as answering."""
    h = harness
    sys_id, key = h.pair(short_description="Export times out")
    daemon = Daemon(_config(h, tmp_path))
    daemon.start()
    serving = threading.Thread(target=daemon.serve, name="test-daemon", daemon=True)
    serving.start()
    try:
        customer_writes(h, sys_id, "First: the export still times out.")
        assert wait_for(lambda: _on(h, sys_id, "First: the export"), timeout=30)
        assert wait_for(lambda: _in_jira(h, key, "First: the export"), timeout=30)
        health = requests.get(f"http://127.0.0.1:{daemon.port}/healthz", timeout=5).json()
        assert "mailbox" in health["systems"]
        daemon.request_reload()
        assert wait_for(lambda: daemon.config.last_reload is not None, timeout=30)
        customer_writes(h, sys_id, "Second: now it works for small exports.")
        assert wait_for(lambda: _on(h, sys_id, "Second: now it works"), timeout=30)
    finally:
        daemon.request_stop()
        serving.join(60)
    assert not serving.is_alive()
    assert sum("First: the export" in r["value"] for r in h.snow_journal(sys_id)) == 1


def _on(h: Harness, sys_id: str, words: str) -> bool:
    return any(words in r["value"] for r in h.snow_journal(sys_id))


def _in_jira(h: Harness, key: str, words: str) -> bool:
    return any(words in str(c.get("body")) for c in h.jira_comments(key))
