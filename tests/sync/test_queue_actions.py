"""The queue does what a failure's action says: retry, park, pause the system, or bound a bug."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from connectors.email_render import TemplateMissing
from connectors.errors import AuthFailed, InvalidRequest, ServerUnavailable
from sync.procedure.email_context import InternalContentRefused
from sync.queue.tasks import RetrySchedule, SyncQueue, make_huey
from sync.runtime.health import Held
from sync.store.database import LinkConflict, Store

FAST = RetrySchedule(attempts=3, base_delay=0.01, max_delay=0.05, lock_wait=0.01)
PROBE = 0.05


class Processor:
    """Fails each ticket with what `failures[ticket]` lists (one per call), then succeeds;
    `refused` systems answer every call and probe with AuthFailed; `pairs` gives partners."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.failures: dict[str, list[Exception]] = {}
        self.refused: set[str] = set()
        self.pairs: dict[tuple[str, str], tuple[str, str]] = {}
        self.probes: list[str] = []
        self.polls: list[str] = []

    def process(self, system: str, ticket_id: str) -> None:
        self.calls.append((system, ticket_id))
        partner = self.pairs.get((system, ticket_id))
        for touched in (system, partner[0] if partner else None):
            if touched in self.refused:
                raise AuthFailed("HTTP 401: Client must be authenticated", system=touched)
        pending = self.failures.get(ticket_id)
        if pending:
            raise pending.pop(0)

    def partners(self, system: str, ticket_id: str) -> list[tuple[str, str]]:
        partner = self.pairs.get((system, ticket_id))
        return [partner] if partner else []

    def probe(self, system: str) -> None:
        self.probes.append(system)
        if system in self.refused:
            raise AuthFailed("HTTP 401: Client must be authenticated", system=system)

    def poll(self, system: str) -> int:
        self.polls.append(system)
        if system in self.refused:
            raise AuthFailed("HTTP 401", system=system)
        return 0

    def reconcile(self) -> int:
        return 0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store in the temp state dir."""
    opened = Store.for_state(tmp_path / "state")
    yield opened
    opened.close()


@pytest.fixture
def proc() -> Processor:
    """A processor whose failures each test sets."""
    return Processor()


@pytest.fixture
def queue(tmp_path: Path, store: Store, proc: Processor) -> SyncQueue:
    """A SQLite queue over that store, probing paused systems every 50 ms."""
    return SyncQueue(
        make_huey(None, tmp_path / "state"), store, proc, retry=FAST, probe_interval=PROBE
    )


def run_due(queue: SyncQueue, *, rounds: int = 1) -> int:
    """Run what is due now, `rounds` times a probe interval apart; returns the tasks run."""
    ran = 0
    for index in range(rounds):
        if index:
            time.sleep(PROBE * 1.5)
        ran += queue.run_pending(now=datetime.now(UTC))
    return ran


def drain(queue: SyncQueue) -> None:
    """Run tasks, scheduled retries included, until nothing is left."""
    for _ in range(40):
        queue.run_pending(now=datetime.now(UTC) + timedelta(hours=1))
        if queue.depth() == 0:
            return
    raise AssertionError(f"queue did not drain: {queue.depth()} tasks left")


def test_refused_credentials_pause_the_system_and_dead_letter_nothing(
    queue: SyncQueue, proc: Processor, store: Store
) -> None:
    """An AuthFailed pauses Jira: its events (and its pairs') wait, the others
    go on, and not one event is dead-lettered."""
    proc.refused.add("jira")
    proc.pairs[("servicenow", "s1")] = ("jira", "DS-1")
    queue.enqueue_ticket("jira", "DS-1")
    run_due(queue)
    assert queue.health.paused("jira") is not None
    for ticket in ("DS-2", "DS-3"):
        queue.enqueue_ticket("jira", ticket)
    queue.enqueue_ticket("servicenow", "s1")
    queue.enqueue_ticket("servicenow", "s2")
    run_due(queue, rounds=4)
    assert ("jira", "DS-2") not in proc.calls and ("servicenow", "s1") not in proc.calls
    assert ("servicenow", "s2") in proc.calls
    assert proc.calls.count(("jira", "DS-1")) == 1
    assert store.list_dead_letters() == []
    assert queue.health.held_counts() == {"jira": 4}  # DS-1, DS-2, DS-3 and s1, kept
    assert queue.depth() == 1  # only the next probe


def test_a_pause_is_logged_once_and_the_probe_resumes_the_system(
    queue: SyncQueue, proc: Processor, store: Store
) -> None:
    """Many refused events log one pause; probes ask until the credentials work, then every
    held event is processed."""
    proc.refused.add("jira")
    with capture_logs() as logs:
        for ticket in ("DS-1", "DS-2", "DS-3"):
            queue.enqueue_ticket("jira", ticket)
        run_due(queue, rounds=3)
    paused = [e for e in logs if e["event"].startswith("system paused")]
    assert len(paused) == 1 and paused[0]["system"] == "jira"
    assert "jira" in proc.probes
    assert proc.calls == [("jira", "DS-1")]
    proc.refused.clear()
    with capture_logs() as logs:
        for _ in range(40):
            run_due(queue, rounds=2)
            if queue.depth() == 0:
                break
    assert queue.health.paused("jira") is None
    assert [e for e in logs if e["event"].startswith("system resumed")]
    assert sorted(set(proc.calls)) == [("jira", "DS-1"), ("jira", "DS-2"), ("jira", "DS-3")]
    assert store.list_dead_letters() == []


def test_a_reload_resumes_a_paused_system(queue: SyncQueue, proc: Processor) -> None:
    """resume_all (called on SIGHUP) lets the held events go without waiting for a probe."""
    queue.pause("jira", AuthFailed("HTTP 401", system="jira"))
    assert queue.resume_all() == ["jira"]
    assert queue.health.paused("jira") is None
    queue.enqueue_ticket("jira", "DS-1")
    run_due(queue)
    assert proc.calls == [("jira", "DS-1")]


def test_a_paused_system_is_not_polled(queue: SyncQueue, proc: Processor) -> None:
    """A poll that meets refused credentials pauses the system; the next poll is skipped."""
    proc.refused.add("servicenow")
    queue.enqueue_poll("servicenow")
    run_due(queue)
    assert queue.health.paused("servicenow") is not None
    queue.enqueue_poll("servicenow")
    run_due(queue)
    assert proc.polls == ["servicenow"]


@pytest.mark.parametrize(
    "error",
    [
        LinkConflict("jira DS-1 is paired with s9"),
        TemplateMissing("email template 'escalated.txt.j2' not found"),
        InternalContentRefused("comment 'c1' is internal and cannot be sent to the customer"),
        InvalidRequest("PATCH: HTTP 400", system="servicenow"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_that_repeat_alike_are_dead_lettered_at_once(
    queue: SyncQueue, proc: Processor, store: Store, error: Exception
) -> None:
    """A conflict, a missing template, an internal comment for a customer and a 400 are parked
    after one try, with the reason, never retried."""
    proc.failures["DS-1"] = [error]
    queue.enqueue_ticket("jira", "DS-1")
    drain(queue)
    assert proc.calls == [("jira", "DS-1")]
    [parked] = store.list_dead_letters()
    assert parked.reason == str(error)
    assert parked.error_class == type(error).__name__


def test_a_bug_is_retried_a_bounded_number_of_times_then_parked_with_its_type(
    queue: SyncQueue, proc: Processor, store: Store
) -> None:
    """An exception nobody raised on purpose is tried `attempts` times, then dead-lettered with
    its type and message."""
    proc.failures["DS-1"] = [KeyError("fields") for _ in range(FAST.attempts)]
    queue.enqueue_ticket("jira", "DS-1")
    drain(queue)
    assert len(proc.calls) == FAST.attempts
    [parked] = store.list_dead_letters()
    assert parked.reason == f"gave up after {FAST.attempts} attempts: KeyError: 'fields'"


def test_health_follows_the_syncs(queue: SyncQueue, proc: Processor) -> None:
    """A transient failure counts against the system it names; a sync that goes through marks
    the ticket's system and its pair's as answering."""
    proc.pairs[("servicenow", "s1")] = ("jira", "DS-1")
    proc.failures["s1"] = [ServerUnavailable("GET: HTTP 503", system="jira")]
    queue.enqueue_ticket("servicenow", "s1")
    run_due(queue)
    jira = queue.health.states(fresh=True)["jira"]
    assert jira.consecutive_failures == 1 and jira.last_error == "ServerUnavailable: GET: HTTP 503"
    drain(queue)
    states = queue.health.states(fresh=True)
    assert states["jira"].up and states["servicenow"].up
    assert states["jira"].last_success_at is not None


def test_the_age_of_the_oldest_ready_task_is_measured(queue: SyncQueue) -> None:
    """Nothing queued: no age; a task waiting: how long it has been ready."""
    assert queue.oldest_ready_age() is None
    queue.enqueue_ticket("jira", "DS-1")
    time.sleep(0.05)
    age = queue.oldest_ready_age()
    assert age is not None and 0.04 <= age < 5


def test_events_held_for_a_system_that_was_resumed_go_on_at_start_up(
    queue: SyncQueue, proc: Processor
) -> None:
    """A process stopped between resuming a system and releasing its events: the next start
    releases them; an event held just after a resume is not kept (its caller queues it)."""
    queue.health.pause("jira", "AuthFailed: HTTP 401")
    assert queue.health.hold("jira", Held("jira", "DS-9"))
    queue.health.resume("jira")
    assert queue.recover_pauses() == []
    assert queue.health.held_counts() == {}
    assert not queue.health.hold("jira", Held("jira", "DS-10"))
    assert queue.health.held_counts() == {}
    drain(queue)
    assert proc.calls == [("jira", "DS-9")]
