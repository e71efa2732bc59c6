"""The scheduler queues the tickets whose time-driven rules fall due, at its clock's now."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from escalation.decide import decide
from escalation.policy import load_policy
from mapping.model import Ref, System, Ticket
from sync.procedure.ledger import ledger_view, record_decision
from sync.procedure.scheduler import Scheduler
from sync.runtime.daemon import Daemon
from sync.store.database import Store

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
POLICY = load_policy(
    {
        "levels": [{"name": "L1"}, {"name": "L2", "approvers": {"users": ["a"]}}],
        "triggers": [
            {"kind": "sla", "name": "sla", "field": "custom_fields.sla_due", "within_hours": 4}
        ],
    },
    source="test.toml",
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.for_state(tmp_path, None)
    yield s
    s.close()


def decided(store: Store, ticket: Ticket, at: datetime) -> None:
    with store.session() as tx:
        d = decide(ticket, ledger_view(tx, ticket, at, POLICY), at, POLICY)
        record_decision(tx, ticket, d, at)


def test_an_untouched_ticket_is_queued_when_its_sla_window_opens(store: Store) -> None:
    """A ticket whose SLA is 6 h away is queued by the scheduler 2 h later, not before, and
    once decided at that moment it is not queued again."""
    due = NOW + timedelta(hours=6)
    t = Ticket(
        ref=Ref(system=System.SERVICENOW, id="sys1", key="INC1"),
        summary="Report export times out",
        custom_fields={"sla_due": due.isoformat()},
    )
    decided(store, t, NOW)
    clock = [NOW + timedelta(hours=1)]
    queued: list[tuple[str, str]] = []
    scheduler = Scheduler(store, lambda s, i: queued.append((s, i)), lambda: clock[0])
    assert scheduler.tick() == 0 and queued == []
    clock[0] = NOW + timedelta(hours=2)
    assert scheduler.tick() == 1 and queued == [("servicenow", "sys1")]
    decided(store, t, clock[0])
    assert scheduler.tick() == 0


def test_open_escalations_are_swept_now_and_then(store: Store) -> None:
    """A waiting request is queued on the first tick and again after the sweep interval."""
    t = Ticket(
        ref=Ref(system=System.SERVICENOW, id="sys2", key="INC2"),
        summary="x",
        custom_fields={"sla_due": (NOW + timedelta(hours=1)).isoformat()},
    )
    decided(store, t, NOW)  # the SLA trigger asks: pending approval, nothing due after it
    clock = [NOW]
    queued: list[tuple[str, str]] = []
    scheduler = Scheduler(store, lambda s, i: queued.append((s, i)), lambda: clock[0])
    assert scheduler.tick() == 1
    clock[0] = NOW + timedelta(minutes=10)
    assert scheduler.tick() == 0
    clock[0] = NOW + timedelta(minutes=31)
    assert scheduler.tick() == 1 and len(queued) == 2


def test_the_daemon_reads_the_engines_clock(store: Store) -> None:
    """The daemon's now is its engine's clock: moved by a test, the scheduler it runs finds due
    what the engine will then decide is due."""
    due = NOW + timedelta(hours=6)
    t = Ticket(
        ref=Ref(system=System.SERVICENOW, id="sys3", key="INC3"),
        summary="Report export times out",
        custom_fields={"sla_due": due.isoformat()},
    )
    decided(store, t, NOW)
    engine = SimpleNamespace(clock=lambda: NOW)
    queued: list[tuple[str, str]] = []
    daemon = Daemon(None, settings=None)  # type: ignore[arg-type]
    daemon.queue = SimpleNamespace(processor=engine)  # type: ignore[assignment]
    daemon.scheduler = Scheduler(store, lambda s, i: queued.append((s, i)), daemon.clock, None)
    assert daemon.clock() == NOW and daemon.run_scheduler() == 0
    engine.clock = lambda: NOW + timedelta(hours=2)
    assert daemon.run_scheduler() == 1 and queued == [("servicenow", "sys3")]
