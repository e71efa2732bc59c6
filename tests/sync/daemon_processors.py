"""Ticket processors the daemon tests start `run --processor` with (no vendor needed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sync.queue.tasks import SyncQueue
from sync.store.database import Store


class SlowProcessor:
    """Takes a while per ticket and leaves marker files: `<ticket>.started`, `<ticket>.done`."""

    def __init__(self, state_dir: Path, seconds: float) -> None:
        self.state_dir = state_dir
        self.seconds = seconds

    def process(self, system: str, ticket_id: str) -> None:
        (self.state_dir / f"{ticket_id}.started").write_text(system)
        time.sleep(self.seconds)
        (self.state_dir / f"{ticket_id}.done").write_text(system)

    def poll(self, system: str) -> int:
        return 0

    def reconcile(self) -> int:
        return 0


def slow(settings: Any, store: Store, queue: SyncQueue) -> SlowProcessor:
    """A processor taking a second per ticket."""
    return SlowProcessor(Path(settings.state.dir), 1.0)
