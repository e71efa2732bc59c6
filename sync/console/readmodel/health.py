"""Sync health: each system as the daemon finds it, the queue, dead letters and the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from sync.config.settings import Settings
from sync.console.readmodel.lag import Sample, poll_outcomes
from sync.console.readmodel.shared import FailedEvent, failed_events, in_order, title
from sync.notify.outbox import DEAD, PENDING, SENDING, UNKNOWN, OutboxEntry
from sync.notify.outbox import list_entries as outbox_entries
from sync.notify.outbox import status_counts as outbox_status_counts
from sync.runtime.health import HeldEventRow, SystemHealthRow
from sync.store.database import DeadLetter, Store, StoreSession, Watermark

REPLAYED_SHOWN = timedelta(hours=1)
OUTBOX_SHOWN = 200


@dataclass(frozen=True, slots=True)
class SystemHealth:
    """One system as the daemon finds it."""

    system: str
    up: bool | None
    summary: str
    polled_at: datetime | None
    watermark: datetime | None
    poll_interval: int | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    failures_in_a_row: int
    paused: bool

    @property
    def name(self) -> str:
        """The system in words."""
        return title(self.system)


@dataclass(frozen=True, slots=True)
class Health:
    """The sync health page."""

    at: datetime
    systems: tuple[SystemHealth, ...]
    queue_depth: int | None
    locks_held: int
    samples: tuple[Sample, ...]
    sampling_since: datetime | None
    sampling_every: float | None
    dead_letters: tuple[FailedEvent, ...]
    replayed_recently: tuple[FailedEvent, ...]
    outbox: tuple[OutboxEntry, ...]
    outbox_counts: dict[str, int]
    pairs: int


@dataclass(frozen=True, slots=True)
class Sampling:
    """What the daemon's own sampler has seen (none in a process without one)."""

    samples: tuple[Sample, ...] = ()
    since: datetime | None = None
    every: float | None = None


def read_health(
    store: Store, settings: Settings, now: datetime, queue_depth: int | None, sampling: Sampling
) -> Health:
    """Per-system state, queue, lag over the last hour, dead letters and the outbox."""
    with store.reading() as tx:
        counts = tx.status_counts()
        locks = len(tx.list_locks())
        letters = tx.list_dead_letters()
        dead = failed_events(tx, letters)
        replayed = failed_events(
            tx,
            (
                d
                for d in tx.list_dead_letters(include_replayed=True)
                if d.replayed_at is not None and d.replayed_at >= now - REPLAYED_SHOWN
            ),
        )
        outbox = _outbox_attention(tx)
        outbox_counts = outbox_status_counts(tx)
        boards = {r.system: r for r in tx.orm.scalars(sa.select(SystemHealthRow))}
        held = _held(tx)
    configured = in_order(settings)
    names = [*configured, *sorted(set(boards) - set(configured))]
    systems = tuple(
        _system_health(
            settings,
            system,
            counts.watermarks.get(system),
            boards.get(system),
            held.get(system, 0),
            letters,
            sampling.samples,
            now,
        )
        for system in names
    )
    return Health(
        at=now,
        systems=systems,
        queue_depth=queue_depth,
        locks_held=locks,
        samples=sampling.samples,
        sampling_since=sampling.since,
        sampling_every=sampling.every,
        dead_letters=dead,
        replayed_recently=replayed,
        outbox=tuple(outbox),
        outbox_counts=outbox_counts,
        pairs=counts.links,
    )


def _held(tx: StoreSession) -> dict[str, int]:
    """Events waiting for a paused system, counted by the system they wait for."""
    stmt = sa.select(HeldEventRow.waiting_for, sa.func.count()).group_by(HeldEventRow.waiting_for)
    return {str(system): int(n) for system, n in tx.orm.execute(stmt)}


def _outbox_attention(tx: StoreSession) -> list[OutboxEntry]:
    """Messages someone may need to act on: dead, unknown after a crash, or still to send."""
    found: list[OutboxEntry] = []
    for status in (DEAD, UNKNOWN, SENDING, PENDING):
        entries = outbox_entries(tx, status=status, limit=OUTBOX_SHOWN)
        found.extend(sorted(entries, key=lambda e: -e.id))
    return found


def _system_health(
    settings: Settings,
    system: str,
    mark: Watermark | None,
    board: SystemHealthRow | None,
    held: int,
    dead: Sequence[DeadLetter],
    samples: Sequence[Sample],
    now: datetime,
) -> SystemHealth:
    """A system's state from the health board the daemon shares (last success, last error,
    failures in a row, pause), its poller's watermark, and this process's poll samples."""
    section = settings.systems.get(system)
    interval = section.poll_interval_seconds if section is not None else None
    polled = mark.polled_at if mark else None
    last_ok, last_failed = poll_outcomes(system, samples)
    failures = int(board.consecutive_failures or 0) if board else 0
    up, summary = _state(board, failures, polled, interval, last_ok, last_failed, now)
    if held:
        summary += f"; {held} event{'s' if held != 1 else ''} waiting for it"
    last_error, last_error_at = (board.last_error, board.last_error_at) if board else (None, None)
    if last_error is None:
        # Before the board knew of a failure, the newest dead letter says what went wrong.
        errors = [d for d in dead if d.system == system]
        if errors:
            last_error = f"{errors[-1].error_class}: {errors[-1].reason}"
            last_error_at = errors[-1].created_at
    return SystemHealth(
        system=system,
        up=up,
        summary=summary,
        polled_at=polled,
        watermark=mark.value if mark else None,
        poll_interval=interval,
        last_success_at=(board.last_success_at if board else None) or last_ok or polled,
        last_error=last_error,
        last_error_at=last_error_at,
        failures_in_a_row=failures,
        paused=board is not None and board.paused_at is not None,
    )


def _state(
    board: SystemHealthRow | None,
    failures: int,
    polled: datetime | None,
    interval: int | None,
    last_ok: datetime | None,
    last_failed: datetime | None,
    now: datetime,
) -> tuple[bool | None, str]:
    """Up, down or not known yet, and the words for it."""
    if board is not None and board.paused_at is not None:
        return False, f"paused: {board.paused_reason or ''}"
    if failures and board is not None:
        return False, f"failing since {_short(board.failing_since)}"
    if last_failed is not None and (last_ok is None or last_failed > last_ok):
        return False, "polls failing"
    if interval is not None and polled is None and board is None:
        return None, "not polled yet"
    if (
        polled is not None
        and interval is not None
        and now - polled > timedelta(seconds=max(3 * interval, 120))
    ):
        return False, "polls late"
    return True, "answering" if interval is None else "polling"


def _short(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%H:%M UTC") if value else "-"
