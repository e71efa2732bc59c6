"""A rate-limit storm from Slack converges: every room made once, every message posted once and in
order, no attempt spent on a 429, and no pass of the outbox held for long."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import sessionmaker

from simulators.common import FaultConfig
from simulators.slack import SlackSimulator
from simulators.slack.limits import RateLimits
from sync.notify import outbox, rooms
from sync.notify.channels.slack import Settings, SlackNotifier
from sync.notify.notifier import ChatContext, Notice, Notifiers, Room
from sync.notify.outbox import OutboxWorker
from sync.store.database import Store

pytestmark = pytest.mark.e2e

ROOMS = 4
MESSAGES = 3


def notice(ticket: str, event: str, context: ChatContext, version: str) -> Notice:
    return Notice(
        audience="stakeholders",
        event=event,
        template=event,
        ticket=ticket,
        version=version,
        context=context,
        recipients=context.members,
    )


def test_a_rate_limit_storm_converges(tmp_path: Path) -> None:
    """Slack's own per-method budgets set tight (one message a second per channel) and three
    calls in ten answered 429 with Retry-After: the outbox hands each limited row back for
    when Slack allows it, so every pass is short, nothing is dead, and in the end each room
    exists once with its messages posted once, in the order they were recorded."""
    limits = RateLimits(post_per_second=1.0, post_burst=1, tier2=120, tier3=240)
    slack = SlackSimulator(rate_limits=limits).start()
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        slack.configure_faults(
            FaultConfig(rate_429=0.3, retry_after_seconds=1, seed=11, path_prefixes=("/api/",))
        )
        slack.add_user("lee", "Lee Support", "lee@example.com")
        notifier = SlackNotifier(
            Settings(token=slack.bot_token, base_url=slack.api_url, wait_at_most_seconds=0.2)
        )
        now = datetime.now(UTC)
        with sessionmaker(store.db, expire_on_commit=False).begin() as tx:
            for n in range(ROOMS):
                ticket = f"INC00200{n}"
                room = Room(
                    key=f"{ticket}|room|20261204T090000Z",
                    ticket=ticket,
                    name="ds-{number}-{summary}",
                    fields={"number": str(100 + n), "summary": "Storm"},
                    topic=f"DS-{100 + n}: Storm",
                    marker=f"[escalation-sync {ticket}]",
                )
                opened = ChatContext(room, members=("lee@example.com",))
                outbox.enqueue_drafts(
                    tx, notifier, notice(ticket, rooms.OPEN, opened, "0"), now=now
                )
                for m in range(MESSAGES):
                    said = ChatContext(room, text=f"{ticket} update {m}")
                    outbox.enqueue_drafts(
                        tx, notifier, notice(ticket, "chat:update", said, str(m)), now=now
                    )
        worker = OutboxWorker(
            sessionmaker(store.db, expire_on_commit=False),
            Notifiers([notifier]),
            base_delay=timedelta(milliseconds=200),
        )
        passes: list[float] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            started = time.monotonic()
            worker.run_once()
            passes.append(time.monotonic() - started)
            with store.session() as tx:
                counts = outbox.status_counts(tx)
            if counts["sent"] == ROOMS * (2 + MESSAGES):
                break
            time.sleep(0.05)
        with store.session() as tx:
            rows = outbox.list_entries(tx)
        faults = slack.stats()["faults"]
        print(
            f"\nstorm: {len(passes)} passes, longest {max(passes):.2f}s, "
            f"{faults.get('429', 0)} injected 429s, {sum(passes):.1f}s sending"
        )
        assert [r for r in rows if r.status != outbox.SENT] == []
        assert {r.attempts for r in rows} == {0}
        assert faults.get("429", 0) > 0
        assert max(passes) < 5.0
        channels = [c for c in slack.channels() if c["name"].startswith("ds-")]
        assert sorted(c["name"] for c in channels) == [f"ds-{100 + n}-storm" for n in range(ROOMS)]
        for channel in channels:
            texts = [m["text"] for m in slack.messages(channel["id"]) if m.get("metadata")]
            ticket = texts[0].split()[0]
            assert texts == [f"{ticket} update {m}" for m in range(MESSAGES)]
        everything = Counter(
            m["text"] for c in channels for m in slack.messages(c["id"]) if m.get("metadata")
        )
        assert set(everything.values()) == {1}
    finally:
        store.close()
        slack.stop()
