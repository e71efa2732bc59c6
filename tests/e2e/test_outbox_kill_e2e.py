"""A real `email send` SIGKILLed in the middle of a batch of twenty: at most one in doubt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.email_render import RenderedEmail
from simulators.mail import MailSink
from sync.notify import outbox
from sync.store.database import Store
from tests.e2e.conftest import EXAMPLE_CONFIG, ROOT, wait_for

pytestmark = pytest.mark.e2e

SEND = [sys.executable, str(ROOT / "run_sync.py"), "email", "send"]
BATCH = 20


@pytest.fixture
def sink() -> Iterator[MailSink]:
    """An SMTP sink that keeps each message, then takes 0.2 s to say so (a slow relay)."""
    with MailSink(reply_delay=0.2) as running:
        yield running


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATION_SYNC_")}
    env["ESCALATION_SYNC_STATE__DIR"] = str(state)
    return env


def test_a_kill_mid_batch_leaves_at_most_one_in_doubt(sink: MailSink, tmp_path: Path) -> None:
    """Twenty mails due; `email send` is killed with SIGKILL once five reached the relay. After
    a restart at most one is in doubt (listed by `status` for an operator) and every other one
    went out exactly once, as the sink counts."""
    config = tmp_path / "config.toml"
    config.write_text(EXAMPLE_CONFIG.read_text().replace("port = 8025", f"port = {sink.smtp_port}"))
    state = tmp_path / "state"
    store = Store.for_state(state)
    try:
        with store.session() as tx:
            for index in range(BATCH):
                outbox.enqueue(
                    tx,
                    outbox.OutboxKey(f"INC{index:04d}", "escalated", "1"),
                    to=(f"customer{index}@example.org",),
                    rendered=RenderedEmail(f"[INC{index:04d}] Escalated", "text\n", "<p>x</p>"),
                    id_domain="example.com",
                    now=datetime.now(UTC),
                )
    finally:
        store.close()
    log = tmp_path / "send.log"
    with log.open("wb") as out:
        first = subprocess.Popen(
            [*SEND, "--config", str(config)],
            cwd=ROOT,
            env=_env(state),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        reached = wait_for(lambda: len(sink.messages()) >= 5, timeout=60, step=0.01)
        assert reached, log.read_text()
        first.send_signal(signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    store = Store.for_state(state)
    try:
        counts = outbox.store_counts(store)
        assert counts["sending"] <= 1 and counts["unknown"] == 0
        assert counts["pending"] >= BATCH - 6

        again = subprocess.run(
            [*SEND, "--config", str(config)],
            cwd=ROOT,
            env=_env(state),
            capture_output=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr.decode()
        with store.session() as tx:
            rows = outbox.list_entries(tx)
    finally:
        store.close()
    in_doubt = [r for r in rows if r.status == outbox.UNKNOWN]
    sent = [r for r in rows if r.status == outbox.SENT]
    print(f"\nmails in doubt after a kill mid-batch: {len(in_doubt)} of {BATCH}")
    assert len(in_doubt) <= 1
    assert len(sent) == BATCH - len(in_doubt)
    received = Counter(m.message_id for m in sink.messages())
    assert all(received[r.message_id] == 1 for r in sent)
    assert all(received[r.message_id] <= 1 for r in in_doubt)
    assert sum(received.values()) == len(received)
    shown = subprocess.run(
        [sys.executable, str(ROOT / "run_sync.py"), "status", "--json", "--config", str(config)],
        cwd=ROOT,
        env=_env(state),
        capture_output=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr.decode()
    listed = json.loads(shown.stdout)["in_doubt"]
    assert [row["id"] for row in listed] == [r.id for r in in_doubt]
