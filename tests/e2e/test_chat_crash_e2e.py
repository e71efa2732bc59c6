"""A real `email send` SIGKILLed after Slack made the escalation's channel and before the outbox
recorded it: the next run finds that channel and makes no second one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from simulators.slack import SlackSimulator
from simulators.slack.limits import RateLimits
from simulators.slack.state import Workspace
from sync.notify import outbox, rooms
from sync.notify.channels.slack import Settings, SlackNotifier
from sync.notify.notifier import ChatContext, Notice, Room
from sync.store.database import Store
from tests.e2e.conftest import EXAMPLE_CONFIG, ROOT

pytestmark = pytest.mark.e2e

SEND = [sys.executable, str(ROOT / "run_sync.py"), "email", "send"]


def room() -> Room:
    return Room(
        key="INC0010042|room|20261204T090000Z",
        ticket="INC0010042",
        name="ds-{number}-{summary}",
        fields={"number": "42", "summary": "Checkout fails for EU"},
        topic="DS-42: Checkout fails for EU",
        marker="[escalation-sync INC0010042]",
        record="servicenow:abc",
    )


def notice(event: str, context: ChatContext) -> Notice:
    return Notice(
        audience="stakeholders",
        event=event,
        template=event,
        ticket="INC0010042",
        version="2026-12-04T09:00:00+00:00",
        context=context,
        recipients=context.members,
    )


def test_a_kill_between_making_the_channel_and_recording_it_makes_no_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack makes the channel and the process dies before the answer is recorded (SIGKILL of
    a real `email send`); the next run asks Slack again, is told the name is taken by a channel
    of ours, uses it, and posts the message once, there."""
    made = threading.Event()
    release = threading.Event()
    original = Workspace.conversations_create
    calls: list[str] = []

    def make_then_hang(self: Workspace, token: Any, args: Any) -> dict[str, Any]:
        calls.append(str(args.get("name")))
        answer = original(self, token, args)
        if len(calls) == 1:
            made.set()
            release.wait(30)  # the answer is lost: its caller is killed meanwhile
        return answer

    monkeypatch.setattr(Workspace, "conversations_create", make_then_hang)
    slack = SlackSimulator(rate_limits=RateLimits(enabled=False)).start()
    try:
        slack.add_user("lee", "Lee Support", "lee@example.com")
        state = tmp_path / "state"
        composer = SlackNotifier(Settings(token=slack.bot_token))
        store = Store.for_state(state)
        try:
            with store.session() as tx:
                now = datetime.now(UTC)
                for event, context in (
                    (rooms.OPEN, ChatContext(room(), members=("lee@example.com",))),
                    ("chat:approved", ChatContext(room(), text="Escalation approved.")),
                ):
                    outbox.enqueue_drafts(tx, composer, notice(event, context), now=now)
        finally:
            store.close()
        config = tmp_path / "config.toml"
        config.write_text(
            EXAMPLE_CONFIG.read_text() + f'\n[notify.slack]\nbase_url = "{slack.api_url}"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATION_SYNC_")}
        env["ESCALATION_SYNC_STATE__DIR"] = str(state)
        env["ESCALATION_SYNC_NOTIFY__SLACK__TOKEN"] = slack.bot_token
        first = subprocess.Popen(
            [*SEND, "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert made.wait(60), "the channel was never asked for"
            first.send_signal(signal.SIGKILL)
            assert first.wait(30) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
            release.set()
        assert [c["name"] for c in slack.channels() if c["name"].startswith("ds-")] == [
            "ds-42-checkout-fails-for-eu"
        ]
        store = Store.for_state(state)
        try:
            with store.session() as tx:
                resource = outbox.list_entries(tx, channel="slack")[0]
            assert (resource.kind, resource.status) == ("resource", "sending")
            again = subprocess.run(
                [*SEND, "--config", str(config)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                timeout=120,
            )
            assert again.returncode == 0, again.stderr.decode()
            with store.session() as tx:
                rows = outbox.list_entries(tx, channel="slack")
        finally:
            store.close()
        [channel] = [c for c in slack.channels() if c["name"].startswith("ds-")]
        assert calls == ["ds-42-checkout-fails-for-eu", "ds-42-checkout-fails-for-eu"]
        assert [(r.kind, r.status) for r in rows] == [
            ("resource", "sent"),
            ("message", "sent"),
            ("message", "sent"),
        ]
        assert rows[0].result_ref == channel["id"]
        assert "[escalation-sync INC0010042]" in channel["purpose"]["value"]
        assert [m["text"] for m in slack.messages(channel["id"]) if m.get("metadata")] == [
            "Escalation approved."
        ]
        lee = slack.user_by_email("lee@example.com")
        assert lee is not None and lee.id in slack.members(channel["id"])
    finally:
        release.set()
        slack.stop()
