"""Changed-since polling: the safety net under webhooks, and the whole feed for `sync --once`.

Each system keeps a watermark in the store (the newest `updated` time read). A pass asks the
system for records changed since then (the connectors re-read an overlap window and drop what
they already returned), hands each one to the queue, or processes it at once when there is no
queue, and moves the watermark forward, never past a record that failed and must be retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Protocol

import structlog

import errors
from mapping.model import System
from sync.store.database import Store
from sync.systems.base import Changed

log = structlog.get_logger("escalation_sync.pollers")

# How far back the very first pass looks; older records are paired by `backfill`.
FIRST_POLL_LOOKBACK = timedelta(days=1)


class ChangeFeed(Protocol):
    """What a poll asks a system (the adapters' `changed_since`)."""

    def changed_since(self, since: datetime, /) -> Iterator[Changed]:
        """Records changed at or after `since`, oldest first."""
        ...


class Polled(Protocol):
    """What a poll works with: the engine, as the poller sees it."""

    @property
    def adapters(self) -> Mapping[System, ChangeFeed]:
        """Each system's adapter (its `changed_since` lists what changed)."""
        ...

    @property
    def store(self) -> Store:
        """Where the watermarks, snapshots and dead letters are."""
        ...

    @property
    def clock(self) -> Callable[[], datetime]:
        """What is now."""
        ...

    @property
    def enqueue(self) -> Callable[[str, str], None] | None:
        """Where a changed record goes; None: `process` it here."""
        ...

    def process(self, system: str, ticket_id: str, /) -> None:
        """Sync one ticket now."""
        ...


def poll_system(
    engine: Polled, system: System, *, lookback: timedelta = FIRST_POLL_LOOKBACK
) -> int:
    """One pass over `system`; returns the number of changed records found.

    With `engine.enqueue` set each record becomes a `sync_ticket` task. Without it the record
    is processed here, and its failure handled as its action says: a dead letter is parked and
    the pass goes on, a retry holds the watermark back so the next pass reads that record again,
    and refused credentials or a bug of ours end the pass with the watermark unmoved.
    """
    now = engine.clock()
    since = engine.store.get_watermark(system.value) or (now - lookback)
    adapter = engine.adapters[system]
    found = 0
    newest: datetime | None = None
    held_back: datetime | None = None
    for changed in adapter.changed_since(since):
        found += 1
        if changed.updated is not None and (newest is None or changed.updated > newest):
            newest = changed.updated
        if _already_synced(engine, system, changed):
            # The overlap window re-reads records we already brought in step: no work.
            continue
        if engine.enqueue is not None:
            engine.enqueue(system.value, changed.ticket_id)
            continue
        try:
            engine.process(system.value, changed.ticket_id)
        except Exception as exc:
            action = errors.action_of(exc)
            if action in (errors.Action.PAUSE_SYSTEM, errors.Action.UNKNOWN):
                # Every other call would be refused alike, or a bug of ours: the pass stops
                # here and the watermark stays where it was.
                raise
            if action is errors.Action.RETRY:
                log.warning(
                    "poll: retry later",
                    system=system.value,
                    ticket=changed.ticket_id,
                    reason=str(exc),
                )
                if changed.updated is not None and (
                    held_back is None or changed.updated < held_back
                ):
                    held_back = changed.updated
                continue
            engine.store.add_dead_letter(
                system.value,
                changed.ticket_id,
                {"system": system.value, "ticket": changed.ticket_id, "event": "poll"},
                str(exc),
                type(exc).__name__,
            )
    mark = newest
    if held_back is not None:
        mark = held_back - timedelta(seconds=1)
    engine.store.set_watermark(system.value, mark, polled_at=now)
    return found


def _already_synced(engine: Polled, system: System, changed: Changed) -> bool:
    """The record is at the version we last synced it at."""
    if changed.version is None:
        return False
    snapshot = engine.store.get_snapshot(system.value, changed.ticket_id)
    return snapshot is not None and snapshot.version == changed.version
