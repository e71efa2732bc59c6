"""The work queue: Huey tasks that sync one ticket, poll one system, and reconcile every pair.

Storage is SQLite in the state directory by default (one machine, nothing to run) or Redis when
`queue_url` is `redis://...`. The task bodies do no sync work themselves: they hand it to the
`TicketProcessor` registered at startup (the engine), and do what a failure's action says
(the root `errors` module; nothing here looks at a failure's class beyond its action):

- `Retry` (429, 5xx, timeouts): the ticket is scheduled again with exponential backoff and
  jitter (or the vendor's Retry-After); the worker moves on, so other tickets never wait. After
  `RetrySchedule.attempts` tries the event is dead-lettered. A retry that `counts_as_attempt`
  False (a lease another worker holds) spends no attempt.
- `DeadLetter` (a 4xx on a write, an unmapped value), and `Refuse` / `Reject` should one reach
  a task: dead-lettered at once with the reason, replayable with `deadletters replay`.
- `PauseSystem` (credentials refused): that system is paused for every process (see
  `sync.runtime.health`), logged once, and the event is held, as is every event that needs the
  system, without spending an attempt; nothing is dead-lettered for it. A probe (one cheap
  authenticated call, `Prober`) runs every `probe_interval` and resumes the system when it
  answers, queueing the held events again at once; a configuration reload resumes it too.
- Any other exception is a bug of ours: retried like a transient one, then dead-lettered with
  its type and message.

Each outcome is also told to the health board: the systems a sync touched answered, or the
system an error names failed, so /healthz and `status` say how every system is doing.

One ticket is never processed twice at once: each sync holds a lease on the ticket in the store
(`ticket_locks`), and on its paired record (taken together, in one transaction). A sync that finds
a lease taken by a worker of this process leaves the ticket to that worker, which syncs it again
when it is done; one that finds it taken elsewhere is re-scheduled shortly; never dropped. A lease
left behind by a killed worker marks interrupted work; `recover_interrupted()` re-enqueues it.

Run the workers inside the current process::

    queue = SyncQueue(make_huey(settings.state.queue_url, settings.state.dir), store, processor)
    consumer = queue.consumer(workers=4)
    consumer.start()           # threads; returns at once
    ...
    consumer.stop(graceful=True)   # waits for in-flight tasks
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import structlog
from huey import Huey, crontab
from huey.api import TaskWrapper
from huey.consumer import Consumer

import errors
from connectors.events import ChangeEvent
from sync.config.settings import Settings
from sync.queue.storage import GroupEnqueue, GroupRedisHuey, GroupSqliteHuey
from sync.runtime import metrics
from sync.runtime.health import CALL, POLL, HealthBoard, Held, reason_of
from sync.store.database import Store, lease_owner

log = structlog.get_logger(__name__)

QUEUE_FILE = "queue.db"
HUEY_NAME = "escalation-sync"
# Pseudo-systems for the leases that keep polls, probes and reconciliation from overlapping.
POLL_LEASE = "poll"
RECONCILE_LEASE = "reconcile"
PROBE_LEASE = "probe"
# How often a paused system is probed, and its events looked at again, unless told otherwise.
PROBE_INTERVAL = 60.0


@runtime_checkable
class TicketProcessor(Protocol):
    """What the queue's tasks call; the sync engine implements it."""

    def process(self, system: str, ticket_id: str, /) -> object:
        """Bring one ticket (and its pair) in step; raise errors typed by their action.

        The processor counts its own successes and failures in sync.runtime.metrics
        (EVENTS_PROCESSED, EVENTS_FAILED); the queue only adds the dead letters of exhausted
        retries.
        """

    def poll(self, system: str, /) -> int:
        """Read changes since the watermark and enqueue them; returns how many."""

    def reconcile(self) -> int:
        """Compare every pair and repair drift; returns how many tickets were repaired."""


@runtime_checkable
class Prober(Protocol):
    """A processor that can check a paused system's credentials without touching a ticket."""

    def probe(self, system: str, /) -> None:
        """One cheap authenticated call to `system`; raise as a sync would when it fails."""


@runtime_checkable
class PairedProcessor(Protocol):
    """A processor whose sync of one ticket also needs other tickets' leases (its pair's)."""

    def partners(self, system: str, ticket_id: str, /) -> list[tuple[str, str]]:
        """The (system, ticket) leases a sync of this ticket needs besides its own."""


class _Running:
    """The tickets this process's workers are syncing, and whether an event for one came in
    meanwhile: its worker then syncs it again at once, rather than the event waiting out a
    rescheduling delay for the lease (and several such events make one more sync, not many)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._again: dict[tuple[str, str], bool] = {}

    def start(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._again[key] = False

    def ask_again(self, keys: Sequence[tuple[str, str]]) -> bool:
        """Mark the first of `keys` being synced here for another pass; False if none is."""
        with self._lock:
            for key in keys:
                if key in self._again:
                    self._again[key] = True
                    return True
        return False

    def finish(self, key: tuple[str, str], *, stay: bool) -> bool:
        """Whether another pass was asked for; with `stay` the ticket stays registered for it."""
        with self._lock:
            again = self._again.get(key, False)
            if again and stay:
                self._again[key] = False
            else:
                self._again.pop(key, None)
            return again


@runtime_checkable
class Reloadable(Protocol):
    """A processor that takes new settings (mapping, policy) without a restart."""

    def reload(self, settings: Settings) -> None:
        """Switch to `settings` for every ticket processed from now on."""


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """How transient failures are retried, and how long a ticket lease lasts."""

    attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 600.0
    lock_wait: float = 1.0
    lock_ttl: float = 900.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds before the next try after `failures` failures (Retry-After wins)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(failures - 1, 0))
        # Full jitter: retries of a burst of tickets spread out instead of arriving together.
        return random.uniform(ceiling / 2, ceiling)


def make_huey(queue_url: str | None, state_dir: Path, *, name: str = HUEY_NAME) -> Huey:
    """The Huey instance: SQLite in `state_dir` by default, Redis for a `redis://` URL.

    Either storage also takes a group of tasks in one write (`sync.queue.storage`).
    """
    if queue_url and queue_url.startswith(("redis://", "rediss://", "unix://")):
        return GroupRedisHuey(name, url=queue_url, results=False, utc=True)
    if queue_url and not queue_url.startswith("sqlite"):
        raise ValueError(f"unsupported queue URL scheme: {queue_url.split(':', 1)[0]}")
    if queue_url:
        filename = queue_url.split("///", 1)[-1] if "///" in queue_url else queue_url.split(":")[-1]
        path = Path(filename)
    else:
        path = Path(state_dir).expanduser() / QUEUE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # fsync: an enqueued task survives a power cut, not only a crash; webhooks rely on it.
    return GroupSqliteHuey(
        name, filename=str(path), results=False, utc=True, fsync=True, timeout=30
    )


def event_payload(event: ChangeEvent) -> dict[str, Any]:
    """A change event as the JSON the queue carries and dead letters keep."""
    data = event.to_json()
    data["delivery_id"] = event.delivery_id
    data["dedupe_key"] = event.dedupe_key
    return data


def poll_crontab(interval_seconds: float) -> Any:
    """A crontab for polling every `interval_seconds`, in whole minutes (Huey's resolution)."""
    minutes = max(1, round(interval_seconds / 60))
    if minutes >= 60:
        return crontab(minute="0", hour=f"*/{min(minutes // 60, 23)}")
    return crontab(minute=f"*/{minutes}")


def daily_crontab(at: str) -> Any:
    """A crontab for once a day at "HH:MM" (UTC)."""
    hour, _, minute = at.partition(":")
    return crontab(minute=str(int(minute or 0)), hour=str(int(hour)))


class InProcessConsumer(Consumer):  # type: ignore[misc]
    """Huey's consumer with thread workers that leaves signal handling to the daemon."""

    def _set_signal_handlers(self) -> None:
        """The daemon owns SIGTERM/SIGINT/SIGHUP; Huey's own handlers would re-exec on SIGHUP."""


class SyncQueue:
    """The tasks on one Huey instance, bound to the store and the processor."""

    def __init__(
        self,
        huey: Huey,
        store: Store,
        processor: TicketProcessor | None = None,
        *,
        retry: RetrySchedule | None = None,
        poll_intervals: Mapping[str, float] | None = None,
        reconcile_at: str | None = None,
        health: HealthBoard | None = None,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        """Register the tasks; periodic polls for each system with an interval > 0.

        `health` is where the systems' health and pauses are kept (by default on `store`);
        `probe_interval` is how often a paused system is probed and its events looked at.
        """
        self.huey = huey
        self.store = store
        self.retry = retry or RetrySchedule()
        self.health = health or HealthBoard(store.db, clock=store.clock)
        self.probe_interval = max(float(probe_interval), 0.01)
        self._processor = processor
        self._running = _Running()
        self.sync_ticket: TaskWrapper = huey.task(name="sync_ticket")(self._sync_ticket)
        self.poll_system: TaskWrapper = huey.task(name="poll_system")(self._poll)
        self.reconcile: TaskWrapper = huey.task(name="reconcile")(self._reconcile)
        self.probe_system: TaskWrapper = huey.task(name="probe_system")(self._probe)
        self.periodic: list[TaskWrapper] = []
        for system, interval in (poll_intervals or {}).items():
            if interval and interval > 0:
                self.periodic.append(
                    huey.periodic_task(poll_crontab(interval), name=f"poll_{system}")(
                        _bound_poll(self, system)
                    )
                )
        if reconcile_at:
            self.periodic.append(
                huey.periodic_task(daily_crontab(reconcile_at), name="daily_reconcile")(
                    self._reconcile
                )
            )

    # -- wiring

    def set_processor(self, processor: TicketProcessor) -> None:
        """Register (or replace) the processor the tasks hand their work to."""
        self._processor = processor

    @property
    def processor(self) -> TicketProcessor:
        """The registered processor; a task without one is a startup bug."""
        if self._processor is None:
            raise RuntimeError("no TicketProcessor registered with the queue")
        return self._processor

    def consumer(self, workers: int = 1, *, periodic: bool = True) -> InProcessConsumer:
        """An in-process consumer with `workers` threads (call start(), later stop(graceful))."""
        return InProcessConsumer(
            self.huey,
            workers=max(1, workers),
            periodic=periodic,
            worker_type="thread",
            initial_delay=0.05,
            max_delay=1.0,
            scheduler_interval=1,
            check_worker_health=True,
        )

    # -- enqueueing

    def enqueue_ticket(
        self,
        system: str,
        ticket_id: str,
        *,
        event: Mapping[str, Any] | None = None,
        source: str = "event",
        delay: float | None = None,
    ) -> None:
        """Durably enqueue a sync of one ticket (returns once storage has it)."""
        kwargs = {
            "event": dict(event) if event else None,
            "attempt": 1,
            "ready_at": time.time() + (delay or 0.0),
        }
        if delay:
            self.sync_ticket.schedule(args=(system, ticket_id), kwargs=kwargs, delay=delay)
        else:
            self.sync_ticket(system, ticket_id, **kwargs)
        metrics.EVENTS_RECEIVED.labels(system=system, source=source).inc()

    def enqueuer(self, source: str = "poll") -> Callable[[str, str], None]:
        """`enqueue(system, ticket_id)` for the engine's pollers."""

        def enqueue(system: str, ticket_id: str) -> None:
            self.enqueue_ticket(system, ticket_id, source=source)

        return enqueue

    def enqueue_event(self, event: ChangeEvent, *, source: str = "webhook") -> None:
        """Durably enqueue the sync a change event asks for."""
        self.enqueue_ticket(event.system, event.ticket, event=event_payload(event), source=source)

    def enqueue_events(self, events: Sequence[ChangeEvent], *, source: str = "webhook") -> None:
        """Durably enqueue the syncs many events ask for, in one write: all of them or none.

        A storage without group writes (not made by `make_huey`) takes them one by one.
        """
        now = time.time()
        tasks = [
            self.sync_ticket.s(e.system, e.ticket, event=event_payload(e), attempt=1, ready_at=now)
            for e in events
        ]
        storage = self.huey.storage
        if isinstance(storage, GroupEnqueue):
            storage.enqueue_many([self.huey.serialize_task(task) for task in tasks])
        else:
            for task in tasks:
                self.huey.enqueue(task)
        for event in events:
            metrics.EVENTS_RECEIVED.labels(system=event.system, source=source).inc()

    def enqueue_poll(self, system: str) -> None:
        """Ask for a polling pass of one system now."""
        self.poll_system(system)

    def enqueue_reconcile(self) -> None:
        """Ask for a reconciliation pass now."""
        self.reconcile()

    def depth(self) -> int:
        """Tasks waiting: pending plus scheduled (retries, lease waits)."""
        return int(self.huey.pending_count()) + int(self.huey.scheduled_count())

    def oldest_ready_age(self, *, look_at: int = 20) -> float | None:
        """Seconds the next ready sync has waited to be taken (None: nothing ready, or the head
        of the queue is not a sync). A queue whose workers take nothing shows it growing."""
        for data in self.huey.storage.enqueued_items(look_at):
            try:
                task = self.huey.deserialize_task(data)
            except Exception:
                # A task this version cannot read is the consumer's to report, not health's.
                continue
            ready_at = (task.kwargs or {}).get("ready_at")
            if isinstance(ready_at, int | float):
                return max(time.time() - float(ready_at), 0.0)
        return None

    def recover_pauses(self) -> list[str]:
        """At start-up: probe every system paused in the store (the probes a previous process
        scheduled may be gone with its queue), and release what waits for one that is not
        paused any more (a process stopped between resuming and releasing). Which are paused."""
        states = self.health.states(fresh=True)
        paused = [s for s, state in states.items() if state.paused]
        for system in paused:
            self._schedule_probe(system)
        for system in self.health.held_counts():
            if system not in paused:
                self.release(system)
        return paused

    def resume(self, system: str, why: str) -> bool:
        """Call `system` again and queue what waited for it; True when it was paused."""
        resumed = self.health.resume(system)
        if resumed:
            log.warning(f"system resumed: {why}", system=system)
        self.release(system)
        return resumed

    def resume_all(self) -> list[str]:
        """Call every paused system again (a reload may bring new credentials); which were."""
        paused = [s for s, state in self.health.states(fresh=True).items() if state.paused]
        return [system for system in paused if self.resume(system, "configuration reloaded")]

    def run_pending(self, *, limit: int = 1000, now: datetime | None = None) -> int:
        """Execute waiting tasks in this thread until none is left; returns how many ran.

        For `sync --once` style runs and tests. Scheduled tasks due by `now` (default: the
        current time) are moved to the queue first.
        """
        if now is not None and now.tzinfo is not None:
            # Huey keeps schedule times as naive UTC.
            now = now.astimezone(UTC).replace(tzinfo=None)
        ran = 0
        while ran < limit:
            for task in self.huey.read_schedule(now):
                self.huey.enqueue(task)
            # Checking first keeps a blocking (Redis) dequeue from waiting on an empty queue.
            task = self.huey.dequeue() if self.huey.pending_count() else None
            if task is None:
                break
            self.huey.execute(task, now)
            ran += 1
        return ran

    def recover_interrupted(self) -> int:
        """Re-enqueue tickets whose lease was left by a worker that is gone; returns how many.

        A lease is abandoned when it expired, or when its owner is a process of this host that
        no longer runs.
        """
        now = self.store.clock()
        host = socket.gethostname()
        recovered = 0
        for lock in self.store.list_locks():
            owner_host, _, rest = lock.owner.partition("|")
            pid = int(rest.split("|", 1)[0]) if rest.split("|", 1)[0].isdigit() else 0
            abandoned = lock.expires_at < now or (
                owner_host == host and pid != os.getpid() and not _alive(pid)
            )
            if not abandoned:
                continue
            if not self.store.release_lock(lock.system, lock.ticket_id, lock.owner):
                continue
            if lock.system not in (POLL_LEASE, RECONCILE_LEASE, PROBE_LEASE):
                log.warning(
                    "re-enqueuing interrupted ticket", system=lock.system, ticket=lock.ticket_id
                )
                self.enqueue_ticket(lock.system, lock.ticket_id, source="recovered")
                recovered += 1
        return recovered

    # -- task bodies

    def _owner(self) -> str:
        return lease_owner()

    def _sync_ticket(
        self,
        system: str,
        ticket_id: str,
        event: dict[str, Any] | None = None,
        attempt: int = 1,
        ready_at: float | None = None,
    ) -> None:
        processor = self.processor
        owner = self._owner()
        bound = log.bind(system=system, ticket=ticket_id, attempt=attempt)
        key = (system, ticket_id)
        # The ticket's lease and its pair's, in one transaction.
        partners = (
            processor.partners(system, ticket_id) if isinstance(processor, PairedProcessor) else []
        )
        needs = [system, *(other for other, _ in partners)]
        paused = next((s for s in needs if self.health.paused(s)), None)
        if paused is not None:
            # Not a call to a paused system, and not an attempt: the event waits for it.
            bound.debug("held for a paused system", paused=paused)
            self._defer(system, ticket_id, event, attempt, paused)
            return
        leases = [key, *partners]
        if not self.store.acquire_locks(leases, owner, self.retry.lock_ttl):
            if self._running.ask_again(leases):
                bound.debug("ticket busy here: its worker syncs it again")
                return
            bound.debug("ticket busy, trying again shortly")
            self._reschedule(system, ticket_id, event, attempt, self.retry.lock_wait)
            return
        self._running.start(key)
        try:
            while True:
                systems = [system, *(other for other, _ in partners)]
                synced = self._run(processor, systems, ticket_id, event, attempt, bound)
                if not self._running.finish(key, stay=synced):
                    break
                if not synced:
                    # The failed pass's retry read the record before the later event came.
                    self._reschedule(system, ticket_id, event, 1, self.retry.lock_wait)
                    break
                bound.debug("ticket changed again meanwhile: syncing it again")
        finally:
            self.store.release_locks(leases, owner)

    def _run(
        self,
        processor: TicketProcessor,
        systems: Sequence[str],
        ticket_id: str,
        event: dict[str, Any] | None,
        attempt: int,
        bound: Any,
    ) -> bool:
        """One sync of the ticket (of `systems[0]`, paired with the rest); a failure is handled
        here as its action says. True when the sync went through."""
        system = systems[0]
        try:
            processor.process(system, ticket_id)
        except Exception as exc:
            self._failed(system, ticket_id, event, attempt, exc, bound)
            return False
        for touched in dict.fromkeys(systems):
            self.health.succeeded(touched, CALL)
        bound.debug("ticket synced")
        return True

    def _failed(
        self,
        system: str,
        ticket_id: str,
        event: dict[str, Any] | None,
        attempt: int,
        exc: Exception,
        bound: Any,
    ) -> None:
        """Do what the failure's action says; tell the health board about the system it names."""
        action = errors.action_of(exc)
        named = errors.system_of(exc)
        if action is errors.Action.RETRY and not getattr(exc, "counts_as_attempt", True):
            # Contention (the pair's other record is in another worker's hands), not failure.
            bound.debug("pair busy, trying again shortly", reason=str(exc))
            retry_after = getattr(exc, "retry_after", None)
            self._reschedule(system, ticket_id, event, attempt, retry_after or self.retry.lock_wait)
            return
        if named:
            self.health.failed(named, exc, counts=action is not errors.Action.DEAD_LETTER)
        if action is errors.Action.PAUSE_SYSTEM:
            target = named or system
            self.pause(target, exc)
            self._defer(system, ticket_id, event, attempt, target)
        elif action is errors.Action.RETRY:
            self._retry_or_park(system, ticket_id, event, attempt, exc, exc_retry_after(exc))
        elif action is errors.Action.UNKNOWN:
            bound.exception("ticket sync failed unexpectedly")
            self._retry_or_park(system, ticket_id, event, attempt, exc, None)
        else:
            self._park(system, ticket_id, event, attempt, exc)

    def pause(self, system: str, exc: BaseException) -> bool:
        """Stop calling `system` (credentials refused) and start probing it; True when this
        call paused it (then, and only then, it is logged)."""
        reason = reason_of(exc)
        if not self.health.pause(system, reason):
            return False
        log.error(
            "system paused: authentication refused; its events wait until it answers",
            system=system,
            reason=reason,
            probe_every=self.probe_interval,
        )
        metrics.PAUSES.labels(system=system).inc()
        self._schedule_probe(system)
        return True

    def _defer(
        self,
        system: str,
        ticket_id: str,
        event: dict[str, Any] | None,
        attempt: int,
        waiting_for: str,
    ) -> None:
        """Hold the event until `waiting_for` answers again, with the same attempt count."""
        held = Held(system, ticket_id, event, attempt)
        if not self.health.hold(waiting_for, held):
            # Resumed meanwhile: nobody would release it, so it goes on now.
            self._reschedule(system, ticket_id, event, attempt, self.retry.lock_wait)

    def release(self, system: str) -> int:
        """Queue again every event held for `system` (it answers again); returns how many."""
        held = self.health.release(system)
        now = time.time()
        for item in held:
            self.sync_ticket.schedule(
                args=(item.system, item.ticket_id),
                kwargs={"event": item.event, "attempt": item.attempt, "ready_at": now},
                delay=0,
            )
        self.health.forget(held)
        if held:
            log.info("events released", system=system, events=len(held))
        return len(held)

    def _reschedule(
        self,
        system: str,
        ticket_id: str,
        event: dict[str, Any] | None,
        attempt: int,
        delay: float,
    ) -> None:
        jittered = delay * random.uniform(1.0, 1.5)
        self.sync_ticket.schedule(
            args=(system, ticket_id),
            kwargs={"event": event, "attempt": attempt, "ready_at": time.time() + jittered},
            delay=jittered,
        )

    def _retry_or_park(
        self,
        system: str,
        ticket_id: str,
        event: dict[str, Any] | None,
        attempt: int,
        exc: BaseException,
        retry_after: float | None,
    ) -> None:
        if attempt >= self.retry.attempts:
            self._park(system, ticket_id, event, attempt, exc, exhausted=True)
            return
        delay = self.retry.delay(attempt, retry_after)
        log.warning(
            "ticket sync failed, will retry",
            system=system,
            ticket=ticket_id,
            attempt=attempt,
            error=type(exc).__name__,
            reason=str(exc),
            retry_in=round(delay, 2),
        )
        self.sync_ticket.schedule(
            args=(system, ticket_id),
            kwargs={"event": event, "attempt": attempt + 1, "ready_at": time.time() + delay},
            delay=delay,
        )

    def _park(
        self,
        system: str,
        ticket_id: str,
        event: dict[str, Any] | None,
        attempt: int,
        exc: BaseException,
        *,
        exhausted: bool = False,
    ) -> None:
        reason = str(exc) or type(exc).__name__
        if errors.action_of(exc) is errors.Action.UNKNOWN:
            # A bug of ours: the type says more than a message written for no reader.
            reason = f"{type(exc).__name__}: {reason}"
        if exhausted:
            reason = f"gave up after {attempt} attempts: {reason}"
        payload = dict(event) if event else {"system": system, "ticket": ticket_id}
        dead_letter_id = self.store.add_dead_letter(
            system, ticket_id, payload, reason, type(exc).__name__, attempts=attempt
        )
        if exhausted:
            # The processor counted each try as a retry; the final outcome is counted here.
            metrics.EVENTS_FAILED.labels(system=system, outcome="dead_letter").inc()
        log.error(
            "ticket sync dead-lettered",
            system=system,
            ticket=ticket_id,
            dead_letter=dead_letter_id,
            error=type(exc).__name__,
            reason=reason,
        )

    def _poll(self, system: str) -> int:
        paused = self.health.paused(system)
        if paused is not None:
            log.debug("poll skipped: system paused", system=system)
            return 0
        owner = self._owner()
        if not self.store.acquire_lock(POLL_LEASE, system, owner, self.retry.lock_ttl):
            log.info("poll already running, skipped", system=system)
            return 0
        try:
            found = self.processor.poll(system)
        except Exception as exc:
            # The next period polls again from the same watermark; nothing is lost.
            metrics.POLLS.labels(system=system, outcome="failed").inc()
            named = errors.system_of(exc) or system
            if errors.action_of(exc) is not errors.Action.UNKNOWN:
                self.health.failed(named, exc)
            if errors.action_of(exc) is errors.Action.PAUSE_SYSTEM:
                self.pause(named, exc)
            log.error("poll failed", system=system, error=type(exc).__name__, reason=str(exc))
            return 0
        finally:
            self.store.release_lock(POLL_LEASE, system, owner)
        metrics.POLLS.labels(system=system, outcome="ok").inc()
        self.health.succeeded(system, POLL)
        log.info("poll done", system=system, changes=found)
        return found

    def _reconcile(self) -> int:
        paused = [s for s, state in self.health.states().items() if state.paused]
        if paused:
            # Every pair is read on both sides; the next run, or a later one, does it.
            log.info("reconciliation skipped: systems paused", paused=paused)
            return 0
        owner = self._owner()
        if not self.store.acquire_lock(RECONCILE_LEASE, "all", owner, self.retry.lock_ttl * 8):
            log.info("reconciliation already running, skipped")
            return 0
        try:
            repaired = self.processor.reconcile()
        except Exception as exc:
            if errors.action_of(exc) is errors.Action.PAUSE_SYSTEM and errors.system_of(exc):
                self.pause(errors.system_of(exc), exc)
            log.error("reconciliation failed", error=type(exc).__name__, reason=str(exc))
            return 0
        finally:
            self.store.release_lock(RECONCILE_LEASE, "all", owner)
        log.info("reconciliation done", repaired=repaired)
        return repaired

    # -- pauses

    def _schedule_probe(self, system: str) -> None:
        self.probe_system.schedule(args=(system,), delay=self.probe_interval)

    def _probe(self, system: str) -> bool:
        """Ask a paused system one cheap question; resume it when it answers. True if resumed.

        Without a `Prober` the pause simply ends after the interval: the next event is the
        question, and pauses the system again if the credentials are still refused.
        """
        if self.health.paused(system) is None:
            return False
        owner = self._owner()
        if not self.store.acquire_lock(PROBE_LEASE, system, owner, self.retry.lock_ttl):
            # Another worker probes it now and schedules the next probe itself.
            return False
        try:
            processor = self.processor
            if isinstance(processor, Prober):
                processor.probe(system)
        except Exception as exc:
            if errors.action_of(exc) is not errors.Action.UNKNOWN:
                self.health.failed(errors.system_of(exc) or system, exc)
            if errors.action_of(exc) is errors.Action.PAUSE_SYSTEM:
                log.debug("probe: still refused", system=system, reason=reason_of(exc))
            else:
                log.warning("probe failed", system=system, reason=reason_of(exc))
            self._schedule_probe(system)
            return False
        finally:
            self.store.release_lock(PROBE_LEASE, system, owner)
        self.health.succeeded(system, CALL)
        self.resume(system, "it answers again")
        return True


def exc_retry_after(exc: BaseException) -> float | None:
    """The wait a transient error asked for, if it said."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


def _bound_poll(queue: SyncQueue, system: str) -> Any:
    """A zero-argument periodic task body polling `system` (named for Huey's registry)."""

    def poll() -> int:
        return queue._poll(system)

    poll.__name__ = f"poll_{system}"
    return poll


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
