"""The scheduler: tickets decided again when time alone changes their decision.

Nobody touches a ticket whose SLA comes near, whose approval waits too long, whose engineering
record nobody takes, or whose customer does not confirm; yet each of those is a rule the
policy must act on. Every decision says when it next falls due (`Decision.wake_at`, kept in
the ledger); the scheduler reads the tickets due at its clock's now and hands them to the
queue, which decides them like any change. Open escalations are also swept now and then, a
backstop for a ticket whose wake time was never recorded (a store restored from a backup).

The clock is the one the engine decides with, so a test (or a replay) that moves the engine's
clock moves the scheduler too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from sync.procedure.ledger import due_for_decision, open_escalations
from sync.store.database import Store

log = structlog.get_logger("escalation_sync.scheduler")

# How often every open escalation is decided again, whatever its wake time says.
SWEEP_EVERY = timedelta(minutes=30)


@dataclass
class Scheduler:
    """Queues the tickets a time-driven rule is due for; `tick` is called by the run loop."""

    store: Store
    enqueue: Callable[[str, str], None]
    clock: Callable[[], datetime]
    # None: only the tickets whose wake time has come (no backstop sweep).
    sweep_every: timedelta | None = SWEEP_EVERY
    _last_sweep: datetime | None = field(default=None, init=False)

    def due(self) -> list[tuple[str, str]]:
        """(system, ticket id) of the tickets to decide again now, each once."""
        now = self.clock()
        with self.store.reading() as tx:
            found = due_for_decision(tx, now)
            every = self.sweep_every
            sweep = every is not None and (
                self._last_sweep is None or now - self._last_sweep >= every
            )
            if sweep:
                found += open_escalations(tx)
        if sweep:
            self._last_sweep = now
        return list(dict.fromkeys(found))

    def tick(self) -> int:
        """Queue what is due; returns how many tickets. Errors are logged, never raised: the
        next tick tries again."""
        try:
            tickets = self.due()
            for system, ident in tickets:
                self.enqueue(system, ident)
        except Exception as exc:
            log.warning("scheduler pass failed", error=type(exc).__name__, reason=str(exc))
            return 0
        if tickets:
            log.info("time-driven rules due", tickets=len(tickets))
        return len(tickets)
