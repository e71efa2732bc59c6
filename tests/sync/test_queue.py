"""The Huey queue: ticket syncs, retries with backoff, dead letters, per-ticket leases, polls."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from huey import RedisHuey, SqliteHuey
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import InvalidRequest, NotFound, RateLimited, ServerUnavailable
from connectors.events import ChangeEvent
from sync.queue.storage import GroupEnqueue
from sync.queue.tasks import (
    RetrySchedule,
    SyncQueue,
    TicketProcessor,
    daily_crontab,
    make_huey,
    poll_crontab,
)
from sync.store.database import LeaseBusy, Store
from tests.sync.store_backends import redis_url

FAST = RetrySchedule(attempts=3, base_delay=0.01, max_delay=0.05, lock_wait=0.01)


class RecordingProcessor:
    """Records calls; raises what `failures[ticket]` lists, one per call, then succeeds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.failures: dict[str, list[Exception]] = {}
        self.polls: list[str] = []
        self.reconciles = 0
        self.poll_error: Exception | None = None

    def process(self, system: str, ticket_id: str) -> None:
        self.calls.append((system, ticket_id))
        pending = self.failures.get(ticket_id)
        if pending:
            raise pending.pop(0)

    def poll(self, system: str) -> int:
        self.polls.append(system)
        if self.poll_error:
            raise self.poll_error
        return 2

    def reconcile(self) -> int:
        self.reconciles += 1
        return 1


@pytest.fixture(params=["sqlite", "redis"])
def huey(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteHuey | RedisHuey]:
    """A Huey on SQLite in the temp state dir, and on Redis when a test server is configured."""
    if request.param == "sqlite":
        yield make_huey(None, tmp_path / "state")
        return
    url = redis_url()
    instance = make_huey(url, tmp_path, name=f"test-{uuid.uuid4().hex[:10]}")
    try:
        yield instance
    finally:
        instance.flush()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store in the temp state dir."""
    opened = Store.for_state(tmp_path / "state")
    yield opened
    opened.close()


def drain(queue: SyncQueue, rounds: int = 40) -> None:
    """Run tasks, including scheduled retries, until nothing is left."""
    for _ in range(rounds):
        queue.run_pending(now=datetime.now(UTC) + timedelta(hours=1))
        if queue.depth() == 0:
            return
    raise AssertionError(f"queue did not drain: {queue.depth()} tasks left")


def test_make_huey_picks_storage_from_the_url(tmp_path: Path) -> None:
    """No URL: SQLite file in the state dir; redis://: RedisHuey; anything else is refused."""
    local = make_huey(None, tmp_path / "state")
    assert isinstance(local, SqliteHuey)
    assert (tmp_path / "state" / "queue.db").exists()
    assert isinstance(make_huey("redis://127.0.0.1:6379/15", tmp_path), RedisHuey)
    explicit = make_huey(f"sqlite:///{tmp_path / 'other' / 'q.db'}", tmp_path)
    assert isinstance(explicit, SqliteHuey)
    with pytest.raises(ValueError, match="unsupported queue URL"):
        make_huey("amqp://host/", tmp_path)


def test_recording_processor_satisfies_the_protocol() -> None:
    """The fake used here has the shape the queue expects of the engine."""
    assert isinstance(RecordingProcessor(), TicketProcessor)


def test_enqueued_tickets_are_processed_once_each(huey: SqliteHuey, store: Store) -> None:
    """Each enqueued ticket reaches the processor once, events included."""
    proc = RecordingProcessor()
    queue = SyncQueue(huey, store, proc, retry=FAST)
    queue.enqueue_ticket("jira", "DS-1")
    queue.enqueue_event(
        ChangeEvent(system="servicenow", event="update", ticket="s1", author="abel.tuter")
    )
    assert queue.depth() == 2
    drain(queue)
    assert sorted(proc.calls) == [("jira", "DS-1"), ("servicenow", "s1")]

    assert store.list_locks() == []


def test_a_group_of_events_is_queued_in_one_write_in_order(huey: SqliteHuey, store: Store) -> None:
    """enqueue_events queues one sync per event, in order, each processed once with its event."""
    proc = RecordingProcessor()
    queue = SyncQueue(huey, store, proc, retry=FAST)
    assert isinstance(huey.storage, GroupEnqueue)
    events = [
        ChangeEvent(system="jira", event="jira:issue_updated", ticket=f"DS-{i}", delivery_id="g1")
        for i in range(5)
    ]
    queue.enqueue_events([*events, ChangeEvent(system="servicenow", event="update", ticket="s1")])
    queue.enqueue_events([])
    assert queue.depth() == 6
    queue.run_pending()
    assert proc.calls == [*(("jira", f"DS-{i}") for i in range(5)), ("servicenow", "s1")]
    assert queue.depth() == 0


def test_a_failed_group_write_queues_none_of_it(tmp_path: Path, store: Store) -> None:
    """On SQLite a group whose write fails part-way leaves no task of it in the queue."""
    huey = make_huey(None, tmp_path / "state")
    queue = SyncQueue(huey, store, RecordingProcessor(), retry=FAST)
    queue.enqueue_ticket("jira", "DS-0")
    with sqlite3.connect(tmp_path / "state" / "queue.db") as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON task WHEN NEW.data = x'6261' "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    with pytest.raises(sqlite3.Error, match="disk full"):
        huey.storage.enqueue_many([b"first", b"ba", b"third"])
    assert queue.depth() == 1


def test_permanent_error_dead_letters_and_continues(huey: SqliteHuey, store: Store) -> None:
    """A 4xx on a write parks that ticket's event with its reason; other tickets still sync."""
    proc = RecordingProcessor()
    proc.failures["DS-1"] = [InvalidRequest("400: Field 'customfield_1' is required")]
    queue = SyncQueue(huey, store, proc, retry=FAST)
    event = ChangeEvent(system="jira", event="jira:issue_updated", ticket="DS-1", delivery_id="d1")
    queue.enqueue_event(event)
    queue.enqueue_ticket("jira", "DS-2")
    drain(queue)
    assert proc.calls.count(("jira", "DS-1")) == 1
    assert ("jira", "DS-2") in proc.calls
    [dead] = store.list_dead_letters()
    assert (dead.system, dead.ticket, dead.error_class) == ("jira", "DS-1", "InvalidRequest")
    assert "customfield_1" in dead.reason
    assert dead.event["delivery_id"] == "d1"
    assert dead.event["event"] == "jira:issue_updated"


def test_retryable_error_is_retried_without_blocking_others(huey: SqliteHuey, store: Store) -> None:
    """A 429 schedules the ticket again later; the worker moves on to the next ticket at once."""
    proc = RecordingProcessor()
    proc.failures["DS-1"] = [RateLimited("429", retry_after=30)]
    queue = SyncQueue(huey, store, proc, retry=RetrySchedule(attempts=5, max_delay=60))
    queue.enqueue_ticket("jira", "DS-1")
    queue.enqueue_ticket("jira", "DS-2")
    queue.run_pending()
    assert proc.calls == [("jira", "DS-1"), ("jira", "DS-2")]
    assert huey.scheduled_count() == 1
    [retry] = huey.scheduled()
    assert retry.eta is not None
    # Retry-After: 30 is honoured.
    eta = retry.eta.replace(tzinfo=UTC) if retry.eta.tzinfo is None else retry.eta
    assert eta - datetime.now(UTC) > timedelta(seconds=20)
    drain(queue)
    assert proc.calls.count(("jira", "DS-1")) == 2
    assert store.list_dead_letters() == []


def test_retries_run_out_into_a_dead_letter(huey: SqliteHuey, store: Store) -> None:
    """After the configured attempts a persistently failing ticket is dead-lettered, not lost."""
    proc = RecordingProcessor()
    proc.failures["s1"] = [ServerUnavailable("503")] * 5
    queue = SyncQueue(huey, store, proc, retry=FAST)
    queue.enqueue_ticket("servicenow", "s1")
    drain(queue)
    assert proc.calls.count(("servicenow", "s1")) == FAST.attempts
    [dead] = store.list_dead_letters()
    assert dead.attempts == FAST.attempts
    assert dead.reason.startswith(f"gave up after {FAST.attempts} attempts")
    assert dead.error_class == "ServerUnavailable"


def test_a_busy_pair_spends_no_retry_attempt(huey: SqliteHuey, store: Store) -> None:
    """Waiting for another worker to release the pair is rescheduled, never dead-lettered."""
    proc = RecordingProcessor()
    proc.failures["DS-3"] = [LeaseBusy("servicenow s1 is being synced", retry_after=0.01)] * (
        FAST.attempts + 2
    )
    queue = SyncQueue(huey, store, proc, retry=FAST)
    queue.enqueue_ticket("jira", "DS-3")
    drain(queue)
    assert proc.calls.count(("jira", "DS-3")) == FAST.attempts + 3
    assert store.list_dead_letters() == []


def test_unexpected_errors_are_retried_then_parked(huey: SqliteHuey, store: Store) -> None:
    """A bug (any other exception) neither kills the worker nor loops forever."""
    proc = RecordingProcessor()
    proc.failures["DS-9"] = [KeyError("fields")] * 10
    queue = SyncQueue(huey, store, proc, retry=FAST)
    queue.enqueue_ticket("jira", "DS-9")
    queue.enqueue_ticket("jira", "DS-10")
    drain(queue)
    assert ("jira", "DS-10") in proc.calls
    [dead] = store.list_dead_letters()
    assert dead.error_class == "KeyError"


def test_a_leased_ticket_waits_and_is_not_dropped(huey: SqliteHuey, store: Store) -> None:
    """A sync finding the ticket's lease taken is re-scheduled and runs once the lease is free."""
    proc = RecordingProcessor()
    queue = SyncQueue(huey, store, proc, retry=FAST)
    assert store.acquire_lock("jira", "DS-1", "someone-else", ttl=60)
    queue.enqueue_ticket("jira", "DS-1")
    queue.run_pending()
    assert proc.calls == []
    assert huey.scheduled_count() == 1
    store.release_lock("jira", "DS-1", "someone-else")
    drain(queue)
    assert proc.calls == [("jira", "DS-1")]


def test_one_ticket_is_never_processed_twice_at_once(huey: SqliteHuey, store: Store) -> None:
    """With four worker threads and repeated events, no ticket has two syncs overlapping."""
    active: Counter[str] = Counter()
    overlaps: list[str] = []
    done: list[str] = []
    guard = threading.Lock()

    class Slow(RecordingProcessor):
        def process(self, system: str, ticket_id: str) -> None:
            with guard:
                active[ticket_id] += 1
                if active[ticket_id] > 1:
                    overlaps.append(ticket_id)
            time.sleep(0.03)
            with guard:
                active[ticket_id] -= 1
                done.append(ticket_id)

    queue = SyncQueue(huey, store, Slow(), retry=FAST)
    for _ in range(4):
        for ticket in ("DS-1", "DS-2", "DS-3"):
            queue.enqueue_ticket("jira", ticket)
    consumer = queue.consumer(workers=4, periodic=False)
    consumer.start()
    try:
        deadline = time.monotonic() + 20
        while len(done) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        consumer.stop(graceful=True)
    assert overlaps == []
    # Events that come in while their ticket is being synced make one more sync, not one each.
    assert set(done) == {"DS-1", "DS-2", "DS-3"}


class PairedProcessor(RecordingProcessor):
    """Pairs jira DS-1 with servicenow s1; a sync can be held until `release` is set."""

    PAIRS = {("jira", "DS-1"): ("servicenow", "s1"), ("servicenow", "s1"): ("jira", "DS-1")}

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.leases: list[list[tuple[str, str]]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def partners(self, system: str, ticket_id: str) -> list[tuple[str, str]]:
        pair = self.PAIRS.get((system, ticket_id))
        return [pair] if pair else []

    def process(self, system: str, ticket_id: str) -> None:
        super().process(system, ticket_id)
        self.leases.append(
            sorted((lock.system, lock.ticket_id) for lock in self.store.list_locks())
        )
        self.started.set()
        assert self.release.wait(10)


def test_a_sync_holds_its_pair_lease_too(huey: SqliteHuey, store: Store) -> None:
    """The ticket's lease and its pair's are taken together; a pair leased elsewhere waits."""
    proc = PairedProcessor(store)
    queue = SyncQueue(huey, store, proc, retry=FAST)
    assert store.acquire_lock("servicenow", "s1", "someone-else", ttl=60)
    queue.enqueue_ticket("jira", "DS-1")
    queue.run_pending()
    assert proc.calls == [] and huey.scheduled_count() == 1
    assert [lock.owner for lock in store.list_locks()] == ["someone-else"]
    store.release_lock("servicenow", "s1", "someone-else")
    drain(queue)
    assert proc.leases == [[("jira", "DS-1"), ("servicenow", "s1")]]
    assert store.list_locks() == []


def test_events_during_a_sync_here_make_one_more_sync_at_once(
    huey: SqliteHuey, store: Store
) -> None:
    """Events for a ticket (or its pair) in sync in this process are left to its worker, which
    syncs once more when done, with nothing re-scheduled."""
    proc = PairedProcessor(store)
    proc.release.clear()
    queue = SyncQueue(huey, store, proc, retry=FAST)
    first = threading.Thread(target=queue.sync_ticket.call_local, args=("jira", "DS-1"))
    first.start()
    try:
        assert proc.started.wait(10)
        queue.sync_ticket.call_local("jira", "DS-1")
        queue.sync_ticket.call_local("servicenow", "s1")
        assert proc.calls == [("jira", "DS-1")]
        assert huey.scheduled_count() == 0 and huey.pending_count() == 0
    finally:
        proc.release.set()
        first.join(10)
    assert proc.calls == [("jira", "DS-1"), ("jira", "DS-1")]
    assert store.list_locks() == []


def test_graceful_stop_finishes_the_task_in_flight(huey: SqliteHuey, store: Store) -> None:
    """Stopping the consumer gracefully waits for a running sync to complete."""
    started = threading.Event()
    finished: list[str] = []

    class Busy(RecordingProcessor):
        def process(self, system: str, ticket_id: str) -> None:
            started.set()
            time.sleep(0.5)
            finished.append(ticket_id)

    queue = SyncQueue(huey, store, Busy(), retry=FAST)
    queue.enqueue_ticket("jira", "DS-1")
    consumer = queue.consumer(workers=1, periodic=False)
    consumer.start()
    assert started.wait(10)
    consumer.stop(graceful=True)
    assert finished == ["DS-1"]
    assert store.list_locks() == []


def test_interrupted_work_is_recovered(huey: SqliteHuey, store: Store) -> None:
    """A lease left by a process that died is released and its ticket enqueued again."""
    import socket

    proc = RecordingProcessor()
    queue = SyncQueue(huey, store, proc, retry=FAST)
    host = socket.gethostname()
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    store.acquire_lock("jira", "DS-5", f"{host}|{dead_pid}|1", ttl=3600)
    store.acquire_lock("jira", "DS-6", f"{host}|{os.getpid()}|1", ttl=3600)  # alive: kept
    store.acquire_lock("poll", "jira", f"{host}|{dead_pid}|1", ttl=3600)
    assert queue.recover_interrupted() == 1
    drain(queue)
    assert proc.calls == [("jira", "DS-5")]
    assert [(lk.system, lk.ticket_id) for lk in store.list_locks()] == [("jira", "DS-6")]


def test_poll_and_reconcile_tasks_call_the_processor(huey: SqliteHuey, store: Store) -> None:
    """poll_system and reconcile hand over to the processor; a failed poll is logged, not raised."""
    proc = RecordingProcessor()
    queue = SyncQueue(huey, store, proc, retry=FAST)
    queue.enqueue_poll("jira")
    queue.enqueue_reconcile()
    drain(queue)
    assert proc.polls == ["jira"] and proc.reconciles == 1
    proc.poll_error = ServerUnavailable("502")
    queue.enqueue_poll("servicenow")
    drain(queue)
    assert proc.polls == ["jira", "servicenow"]
    assert store.list_locks() == []


def test_engine_style_enqueue_reaches_the_queue(huey: SqliteHuey, store: Store) -> None:
    """The enqueuer handed to the pollers turns each found record into a ticket sync."""
    proc = RecordingProcessor()
    queue = SyncQueue(huey, store, proc, retry=FAST)
    enqueue = queue.enqueuer()
    enqueue("servicenow", "s1")
    enqueue("servicenow", "s2")
    drain(queue)
    assert proc.calls == [("servicenow", "s1"), ("servicenow", "s2")]


def test_periodic_tasks_follow_the_settings(huey: SqliteHuey, store: Store) -> None:
    """A poll per system with an interval, and the daily reconciliation at its hour."""
    queue = SyncQueue(
        huey,
        store,
        RecordingProcessor(),
        poll_intervals={"jira": 120, "servicenow": 0},
        reconcile_at="03:16",
    )
    names = {task.name for task in queue.periodic}
    assert names == {"poll_jira", "daily_reconcile"}
    due = datetime(2026, 11, 23, 3, 16)
    assert {t.name for t in huey.read_periodic(due)} == {"poll_jira", "daily_reconcile"}
    assert {t.name for t in huey.read_periodic(due + timedelta(minutes=1))} == set()


def test_crontabs() -> None:
    """Intervals round to whole minutes (at least one); the daily time is HH:MM."""
    at = datetime(2026, 11, 23, 10, 4)
    assert poll_crontab(30)(at) and poll_crontab(60)(at)
    assert poll_crontab(120)(at) and not poll_crontab(120)(at + timedelta(minutes=1))
    assert poll_crontab(7200)(datetime(2026, 11, 23, 10, 0))
    assert not poll_crontab(7200)(datetime(2026, 11, 23, 11, 0))
    assert daily_crontab("03:00")(datetime(2026, 11, 23, 3, 0))
    assert not daily_crontab("03:00")(datetime(2026, 11, 23, 4, 0))


def test_not_found_is_permanent(huey: SqliteHuey, store: Store) -> None:
    """A record that no longer exists is parked, not retried."""
    proc = RecordingProcessor()
    proc.failures["gone"] = [NotFound("404")]
    queue = SyncQueue(huey, store, proc, retry=FAST)
    queue.enqueue_ticket("servicenow", "gone")
    drain(queue)
    assert len(proc.calls) == 1
    assert store.list_dead_letters()[0].error_class == "NotFound"


@settings(deadline=None)
@given(
    failures=st.integers(min_value=1, max_value=40),
    retry_after=st.none() | st.floats(min_value=0, max_value=10_000, allow_nan=False),
)
def test_backoff_stays_within_bounds(failures: int, retry_after: float | None) -> None:
    """Delays grow exponentially with jitter, never exceed max_delay, and honour Retry-After."""
    schedule = RetrySchedule(base_delay=2.0, max_delay=300.0)
    delay = schedule.delay(failures, retry_after)
    assert 0 <= delay <= 300.0
    if retry_after is not None:
        assert delay == min(retry_after, 300.0)
    else:
        ceiling = min(300.0, 2.0 * 2 ** (failures - 1))
        assert ceiling / 2 <= delay <= ceiling
