"""The daily reconciliation pass: compare every pair and put right what drifted.

Webhooks get lost and writes fail; reconciliation reads both records of every pair fresh and
plans with `repair=True`, so a field that differs although neither side changed it since the
last sync (a write that never landed) is set from its owner, or from the newer record. Missing
comment mirrors and attachments are caught by the same plan. One pair failing does not stop
the pass; a system refusing our credentials does (every other pair would be refused alike), so
the queue can pause it.
"""

from __future__ import annotations

from typing import Protocol

import structlog

import errors
from sync.store.database import Link, Store

log = structlog.get_logger("escalation_sync.reconcile")
PAGE = 200


class Reconciled(Protocol):
    """What reconciliation works with: the engine, as the pass sees it."""

    @property
    def store(self) -> Store:
        """Where the pairs are listed."""
        ...

    def reconcile_pair(self, link: Link, /) -> int:
        """Repair one pair's drift; returns the writes made."""
        ...


def reconcile_all(engine: Reconciled) -> int:
    """Reconcile every pair; returns how many pairs needed at least one write."""
    repaired = 0
    after = 0
    while True:
        links = engine.store.list_links(limit=PAGE, after_id=after)
        if not links:
            return repaired
        for link in links:
            after = link.id
            try:
                if engine.reconcile_pair(link) > 0:
                    repaired += 1
            except errors.EscalationSyncError as exc:
                if exc.action is errors.Action.PAUSE_SYSTEM:
                    raise
                log.warning(
                    "reconcile: pair skipped",
                    pair=" / ".join(f"{side.system} {side.ticket_id}" for side in link.sides),
                    error=type(exc).__name__,
                    reason=str(exc),
                )
