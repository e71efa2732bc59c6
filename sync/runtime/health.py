"""How each system is doing, told truthfully: last success, last error, failures in a row, pause.

```
HealthBoard(engine)                      one row per system in `system_health` (jira, servicenow,
                                         email, a chat channel...), shared by every process
    .succeeded(system, "call" | "poll")  the system answered
    .failed(system, exc)                 a call failed: the vendor's reason, one more in a row
    .pause(system, reason) -> bool       authentication refused: True only for the first pause
    .resume(system, why) -> bool         it answers again (a probe, a reload): True if it was
    .paused(system) -> reason | None     asked before every call; cached for `REFRESH` seconds
    .states() -> {system: SystemState}   for /healthz, `status` and /metrics
    .hold(waiting_for, Held) -> bool     park an event that needs a paused system
    .release(system) -> [Held]           the events held for it (then `forget` them)
verdict(states, now, policy, queue_age=..., in_doubt=...) -> Verdict
    problems (answer 503 while any is there) and notes (shown, 200)
```

A paused system is not called: the events that need it are held in `held_events` (one row per
ticket, none dead-lettered, no attempt spent) until a probe (one cheap authenticated call) finds
it answering or a configuration reload resumes it; then they go back to the queue at once. The
pause lives in the store, so every process of a deployment stops calling that system, and
`status` shows it with the number of events waiting. Held rows are released after they are
queued again, so a crash in between queues a ticket twice (a sync is idempotent), never zero
times; an event held just as its system resumes is released by whoever holds it.

Failures are written as they happen (they are few, and each one matters); successes at most
every `SUCCESS_WRITE_EVERY` seconds per system, plus the first after a failure, so a busy
daemon does not write a row per call. The last error is kept after a success, with its time,
so an operator can still read what went wrong. Reasons are the typed errors' messages, which
are built from status codes and vendor text and never carry a secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from sync.config.settings import Settings
from sync.store.database import UTCDateTime, utcnow
from sync.store.db import Base

log = structlog.get_logger("escalation_sync.health")

CALL = "call"
POLL = "poll"
# How long a process trusts its copy of the pauses before reading them again.
REFRESH = 1.0
SUCCESS_WRITE_EVERY = 5.0
REASON_LENGTH = 500


class SystemHealthRow(Base):
    """One system as the daemon last found it."""

    __tablename__ = "system_health"

    system: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_poll_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    consecutive_failures: Mapped[int] = mapped_column(sa.Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paused_reason: Mapped[str | None] = mapped_column(sa.Text)


@dataclass(frozen=True, slots=True)
class SystemState:
    """A system's health as last recorded."""

    system: str
    last_success_at: datetime | None = None
    last_poll_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    paused_at: datetime | None = None
    paused_reason: str | None = None

    @property
    def paused(self) -> bool:
        """Authentication was refused and the system is not being called."""
        return self.paused_at is not None

    @property
    def up(self) -> bool:
        """Not paused, and its last call did not fail."""
        return not self.paused and self.consecutive_failures == 0

    def to_json(self) -> dict[str, Any]:
        """The state as `status --json` and /healthz print it."""

        def when(value: datetime | None) -> str | None:
            return value.isoformat(timespec="seconds") if value else None

        return {
            "up": self.up,
            "paused": self.paused,
            "paused_reason": self.paused_reason,
            "paused_at": when(self.paused_at),
            "last_success_at": when(self.last_success_at),
            "last_poll_success_at": when(self.last_poll_success_at),
            "last_error": self.last_error,
            "last_error_at": when(self.last_error_at),
            "consecutive_failures": self.consecutive_failures,
            "failing_since": when(self.failing_since),
        }


class HeldEventRow(Base):
    """An event waiting for a paused system (one per ticket and system waited for)."""

    __tablename__ = "held_events"
    __table_args__ = (sa.UniqueConstraint("waiting_for", "system", "ticket_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    waiting_for: Mapped[str] = mapped_column(sa.String(64))
    system: Mapped[str] = mapped_column(sa.String(64))
    ticket_id: Mapped[str] = mapped_column(sa.String(200))
    event: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    attempt: Mapped[int] = mapped_column(sa.Integer, default=1)
    held_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class Held:
    """An event of `system`'s ticket that waits; `attempt` is the try it will resume with."""

    system: str
    ticket_id: str
    event: dict[str, Any] | None = None
    attempt: int = 1
    id: int = 0


def _state(row: SystemHealthRow) -> SystemState:
    return SystemState(
        system=row.system,
        last_success_at=row.last_success_at,
        last_poll_success_at=row.last_poll_success_at,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        consecutive_failures=int(row.consecutive_failures or 0),
        failing_since=row.failing_since,
        paused_at=row.paused_at,
        paused_reason=row.paused_reason,
    )


def reason_of(exc: BaseException) -> str:
    """`TypeName: message`, bounded: what `last_error` and a pause keep of an exception."""
    text = str(exc).strip()
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return reason[:REASON_LENGTH]


_TABLE: sa.Table = SystemHealthRow.__table__  # type: ignore[assignment]


class HealthBoard:
    """Per-system health in the store, with this process's cached view of it (thread-safe)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._engine = engine
        self._clock = clock
        self._lock = threading.Lock()
        self._view: dict[str, SystemState] = {}
        self._read_at: float | None = None
        # When this process last wrote a success for (system, kind), in clock seconds.
        self._written: dict[tuple[str, str], float] = {}

    # -- reading

    def states(self, *, fresh: bool = False) -> dict[str, SystemState]:
        """Every system's state, read from the store when the cached copy is old (or `fresh`)."""
        # The cache ages in real time, whatever clock the recorded moments are taken from.
        now = time.monotonic()
        with self._lock:
            stale = self._read_at is None or now - self._read_at >= REFRESH
        if fresh or stale:
            self._reload(now)
        with self._lock:
            return dict(self._view)

    def state(self, system: str) -> SystemState:
        """One system's state (an empty one when nothing was recorded yet)."""
        return self.states().get(system) or SystemState(system)

    def paused(self, system: str) -> str | None:
        """Why `system` is paused, or None when it may be called."""
        state = self.states().get(system)
        if state is None or not state.paused:
            return None
        return state.paused_reason or "authentication refused"

    def _reload(self, now: float) -> None:
        try:
            with Session(self._engine) as session:
                view = {r.system: _state(r) for r in session.scalars(select(SystemHealthRow))}
        except sa.exc.SQLAlchemyError as exc:
            # The cached view stays in force; a store that does not answer is reported by
            # /healthz on its own.
            log.warning("system health not readable", reason=reason_of(exc))
            return
        with self._lock:
            self._view = view
            self._read_at = now

    # -- recording

    def succeeded(self, system: str, kind: str = CALL) -> None:
        """`system` answered a call (or a polling pass went through)."""
        now = self._clock()
        seconds = now.timestamp()
        with self._lock:
            known = self._view.get(system)
            recent = self._written.get((system, kind))
            had_failures = known is not None and known.consecutive_failures > 0
            if not had_failures and recent is not None and seconds - recent < SUCCESS_WRITE_EVERY:
                return
            self._written[(system, kind)] = seconds
        column = "last_poll_success_at" if kind == POLL else "last_success_at"
        values: dict[str, Any] = {column: now, "consecutive_failures": 0, "failing_since": None}
        self._write(system, values)
        self._local(system, **values)

    def failed(self, system: str, exc: BaseException, *, counts: bool = True) -> None:
        """A call to `system` failed; `counts` False records the reason only (the system
        answered, it refused this one request)."""
        now = self._clock()
        reason = reason_of(exc)
        values: dict[str, Any] = {"last_error": reason, "last_error_at": now}
        if counts:
            values["consecutive_failures"] = _TABLE.c.consecutive_failures + 1
            values["failing_since"] = sa.func.coalesce(_TABLE.c.failing_since, now)
        self._write(system, values)
        with self._lock:
            known = self._view.get(system) or SystemState(system)
            self._written.pop((system, CALL), None)
            self._view[system] = replace(
                known,
                last_error=reason,
                last_error_at=now,
                consecutive_failures=known.consecutive_failures + (1 if counts else 0),
                failing_since=(known.failing_since or now) if counts else known.failing_since,
            )

    def pause(self, system: str, reason: str) -> bool:
        """Stop calling `system`; True when this call paused it (log it then, once)."""
        now = self._clock()
        self._ensure(system)
        with self._engine.begin() as conn:
            result = conn.execute(
                update(_TABLE)
                .where(_TABLE.c.system == system, _TABLE.c.paused_at.is_(None))
                .values(paused_at=now, paused_reason=reason[:REASON_LENGTH])
            )
        first = bool(result.rowcount)
        if first:
            self._local(system, paused_at=now, paused_reason=reason[:REASON_LENGTH])
        else:
            self.states(fresh=True)
        return first

    def resume(self, system: str) -> bool:
        """Call `system` again; True when it was paused."""
        with self._engine.begin() as conn:
            result = conn.execute(
                update(_TABLE)
                .where(_TABLE.c.system == system, _TABLE.c.paused_at.is_not(None))
                .values(paused_at=None, paused_reason=None)
            )
        self._local(system, paused_at=None, paused_reason=None)
        return bool(result.rowcount)

    def resume_all(self) -> list[str]:
        """Resume every paused system (a configuration reload may carry new credentials)."""
        paused = [s for s, state in self.states(fresh=True).items() if state.paused]
        return [system for system in paused if self.resume(system)]

    # -- events held for a paused system

    def hold(self, waiting_for: str, item: Held) -> bool:
        """Park `item` until `waiting_for` answers; True when it is parked (False: the system
        is not paused any more, so the caller queues it again itself)."""
        values = {
            "waiting_for": waiting_for,
            "system": item.system,
            "ticket_id": item.ticket_id,
            "event": item.event,
            "attempt": item.attempt,
            "held_at": self._clock(),
        }
        insert: Any = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        with self._engine.begin() as conn:
            # A ticket already waiting keeps its row: one sync brings it in step.
            conn.execute(insert(HeldEventRow).values(**values).on_conflict_do_nothing())
        if self.states(fresh=True).get(waiting_for, SystemState(waiting_for)).paused:
            return True
        # Resumed meanwhile (by a probe or a reload in another process): no one would release
        # it, so the caller queues it again itself.
        with self._engine.begin() as conn:
            conn.execute(
                sa.delete(HeldEventRow).where(
                    HeldEventRow.waiting_for == waiting_for,
                    HeldEventRow.system == item.system,
                    HeldEventRow.ticket_id == item.ticket_id,
                )
            )
        return False

    def release(self, system: str) -> list[Held]:
        """The events held for `system`, oldest first; `forget` them once queued again."""
        with Session(self._engine) as session:
            rows = session.scalars(
                select(HeldEventRow)
                .where(HeldEventRow.waiting_for == system)
                .order_by(HeldEventRow.id)
            ).all()
            return [
                Held(r.system, r.ticket_id, dict(r.event) if r.event else None, r.attempt, r.id)
                for r in rows
            ]

    def forget(self, items: Iterable[Held]) -> None:
        """Drop held rows that are in the queue again."""
        ids = [item.id for item in items if item.id]
        if not ids:
            return
        with self._engine.begin() as conn:
            conn.execute(sa.delete(HeldEventRow).where(HeldEventRow.id.in_(ids)))

    def held_counts(self) -> dict[str, int]:
        """How many events wait for each system."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(HeldEventRow.waiting_for, sa.func.count()).group_by(HeldEventRow.waiting_for)
            ).all()
        return {str(system): int(count) for system, count in rows}

    def _local(self, system: str, **values: Any) -> None:
        with self._lock:
            known = self._view.get(system) or SystemState(system)
            plain = {k: v for k, v in values.items() if not isinstance(v, sa.ColumnElement)}
            self._view[system] = replace(known, **plain)

    def _ensure(self, system: str) -> None:
        statement: Any
        if self._engine.dialect.name == "postgresql":
            statement = pg_insert(_TABLE).values(system=system, consecutive_failures=0)
        else:
            statement = sqlite_insert(_TABLE).values(system=system, consecutive_failures=0)
        with self._engine.begin() as conn:
            conn.execute(statement.on_conflict_do_nothing())

    def _write(self, system: str, values: Mapping[str, Any]) -> None:
        try:
            self._ensure(system)
            with self._engine.begin() as conn:
                conn.execute(update(_TABLE).where(_TABLE.c.system == system).values(**values))
        except sa.exc.SQLAlchemyError as exc:
            # Health is told, not load-bearing: a busy store must not fail the sync it reports.
            log.warning("system health not recorded", system=system, reason=reason_of(exc))


def read_held(engine: Engine) -> dict[str, int]:
    """How many events wait for each paused system (for `status` in another process)."""
    return HealthBoard(engine).held_counts()


def read_states(engine: Engine) -> dict[str, SystemState]:
    """Every recorded system state, read once (for `status` in another process)."""
    return HealthBoard(engine).states(fresh=True)


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """When health turns bad: a system failing every call this long, a queue this stuck."""

    failing_after: timedelta = timedelta(minutes=15)
    queue_stuck_after: timedelta = timedelta(minutes=10)
    probe_interval: timedelta = timedelta(minutes=1)

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthPolicy:
        """The `[health]` section."""
        section = settings.health
        return cls(
            failing_after=timedelta(seconds=float(section.failing_after_seconds)),
            queue_stuck_after=timedelta(seconds=float(section.queue_stuck_after_seconds)),
            probe_interval=timedelta(seconds=float(section.probe_interval_seconds)),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What /healthz answers: 503 while there are problems; notes never change the status."""

    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def healthy(self) -> bool:
        """No problem: answer 200."""
        return not self.problems


def _seconds(delta: timedelta) -> str:
    return f"{int(delta.total_seconds())} s"


def verdict(
    states: Iterable[SystemState],
    now: datetime,
    policy: HealthPolicy,
    *,
    queue_age: float | None = None,
    in_doubt: Mapping[str, int] | None = None,
    held: Mapping[str, int] | None = None,
) -> Verdict:
    """The problems and notes health reports, in words an operator can act on.

    A problem: a system paused for authentication, a system that failed every call for
    `policy.failing_after`, a ready task older than `policy.queue_stuck_after`. A note: messages
    in doubt after an interrupted send, which wait for an operator (`email resolve`).
    """
    problems: list[str] = []
    for state in sorted(states, key=lambda s: s.system):
        if state.paused:
            waiting = (held or {}).get(state.system, 0)
            problems.append(
                f"{state.system} paused: authentication refused "
                f"({state.paused_reason or 'no reason given'}); "
                f"{waiting} event{'s' if waiting != 1 else ''} wait for it"
            )
            continue
        since = state.failing_since
        if state.consecutive_failures and since is not None and now - since >= policy.failing_after:
            problems.append(
                f"{state.system} failing: every call for {_seconds(now - since)} "
                f"({state.consecutive_failures} in a row), last: {state.last_error}"
            )
    if queue_age is not None and queue_age >= policy.queue_stuck_after.total_seconds():
        problems.append(
            f"queue stuck: the oldest ready task has waited {int(queue_age)} s "
            f"(limit {_seconds(policy.queue_stuck_after)})"
        )
    notes = [
        f"{count} {channel} message{'s' if count != 1 else ''} in doubt after an interrupted "
        f"send: check the transport's log, then `escalation-sync email resolve ID "
        f"--sent|--not-sent`"
        for channel, count in sorted((in_doubt or {}).items())
        if count
    ]
    return Verdict(tuple(problems), tuple(notes))
