"""Everything the console's pages show, read in one package: store, ledger, outbox, audit log,
dead letters, watermarks, the health board, the queue and the daemon's own metrics.

```
shared         configuration in force, names of systems and channels, ticket JSON, dead letters
records        records with no snapshot, read from their systems and kept a while
board          the escalations board and the limits in use
ticket         a pair's page and the decision trace
health         systems, queue, dead letters, outbox
lag            the last hour of lag, queue depth and polls, sampled from the metrics
configuration  the loaded configuration, the last reload, what-if
redaction      secrets left out of settings and files
```

Pages get frozen dataclasses, never rows or sessions; each page is a handful of queries in one
read-only transaction (SQLite readers never wait for the writer). When the store's tables
change, this package is the one to adapt. Systems are named by the registry and listed in the
order the mapping gives them, so a system another package installs shows up on every page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from escalation.policy import Policy
from sync.config.settings import Settings
from sync.console.readmodel.board import Board, BoardFilter, BoardRow, LimitUse, read_board
from sync.console.readmodel.configuration import (
    ConfigView,
    Section,
    WhatIf,
    read_configuration,
    what_if,
)
from sync.console.readmodel.health import Health, Sampling, SystemHealth, read_health
from sync.console.readmodel.lag import LagHistory, Sample
from sync.console.readmodel.records import ReadTicket, RecordReader
from sync.console.readmodel.redaction import redact, redact_toml, to_toml
from sync.console.readmodel.shared import (
    FailedEvent,
    Loaded,
    RecordRef,
    ReloadResult,
    in_order,
    mapped,
    title,
)
from sync.console.readmodel.ticket import (
    Side,
    TicketView,
    TimelineEntry,
    Trace,
    TraceRule,
    read_ticket,
    read_trace,
)
from sync.store.database import Store

__all__ = [
    "Board",
    "BoardFilter",
    "BoardRow",
    "ConfigView",
    "FailedEvent",
    "Health",
    "LagHistory",
    "LimitUse",
    "Loaded",
    "ReadModel",
    "ReadTicket",
    "ReloadResult",
    "Sample",
    "Section",
    "Side",
    "SystemHealth",
    "TicketView",
    "TimelineEntry",
    "Trace",
    "TraceRule",
    "WhatIf",
    "redact",
    "redact_toml",
    "title",
    "to_toml",
]


class ReadModel:
    """The console's window on the daemon's state: one method per page."""

    def __init__(
        self,
        store: Store,
        loaded: Callable[[], Loaded],
        *,
        queue_depth: Callable[[], int] | None = None,
        last_reload: Callable[[], ReloadResult | None] | None = None,
        history: LagHistory | None = None,
        read_ticket: ReadTicket | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self._loaded = loaded
        self._queue_depth = queue_depth
        self._last_reload = last_reload
        self.history = history
        self._reader = RecordReader(read_ticket)
        self.clock = clock

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self._loaded().settings

    @property
    def policy(self) -> Policy | None:
        """The escalation policy in force."""
        return self.settings.compiled_policy

    def systems(self) -> tuple[str, ...]:
        """The systems the pages list, in the order they list them."""
        return in_order(self.settings)

    def mapped(self) -> tuple[str, ...]:
        """The systems the mapping syncs, where escalations are decided first."""
        return mapped(self.settings)

    def records(self, refs: Sequence[RecordRef]) -> dict[RecordRef, dict[str, Any]]:
        """Records the store has no snapshot of, read from their systems (see RecordReader)."""
        return self._reader(self.settings, refs)

    def board(self, chosen: BoardFilter = BoardFilter()) -> Board:
        """Active escalations, approvals waiting, recent outcomes, and the limits in use."""
        return read_board(self.store, self.settings, self.records, self.clock(), chosen)

    def ticket(self, system: str, ident: str) -> TicketView | None:
        """A pair's page, found by either record (id, key or number); None when unknown."""
        return read_ticket(self.store, self.settings, self.records, system, ident)

    def trace(self, ref: str) -> Trace:
        """The decision trace of the ITSM record `ref` ("system:id"), as `explain` gives it."""
        return read_trace(self.store, self.settings, self._reader.read, self.clock(), ref)

    def health(self) -> Health:
        """Per-system state, queue, lag over the last hour, dead letters and the outbox."""
        history = self.history
        sampling = (
            Sampling(history.samples(), history.since, history.every) if history else Sampling()
        )
        return read_health(self.store, self.settings, self.clock(), self._depth(), sampling)

    def configuration(self) -> ConfigView:
        """The loaded configuration, secrets left out, and the last reload's outcome."""
        last = self._last_reload() if self._last_reload else None
        return read_configuration(self._loaded(), last)

    def what_if(
        self, policy_name: str, tickets: str, overrides: Mapping[str, int | None]
    ) -> WhatIf:
        """`policy simulate` over pasted ticket snapshots (JSON Lines)."""
        return what_if(self.policy, policy_name, tickets, overrides)

    def _depth(self) -> int | None:
        if self._queue_depth is None:
            return None
        try:
            return int(self._queue_depth())
        except Exception:  # a queue that cannot answer is shown as unknown
            return None
