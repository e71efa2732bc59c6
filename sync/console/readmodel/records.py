"""Records the store keeps no snapshot of (an ITSM ticket not paired yet), read from their
systems for the pages, a few at a time and kept for a while."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from mapping.model import Ticket
from sync.config.settings import Settings
from sync.console.readmodel.shared import RecordRef

# Reads the record a reference names ("system:id") and maps it (`explain` does the same).
ReadTicket = Callable[[Settings, str], Ticket]
# Records by reference, as a page asks for them (what a RecordReader gives for the settings).
ReadRecords = Callable[[Sequence[RecordRef]], dict[RecordRef, dict[str, Any]]]

# Kept this long; retried after a failure after RETRY; at most BATCH per page and WAIT seconds.
TTL = 600.0
RETRY = 60.0
BATCH = 50
WAIT = 3.0
MAX_KEPT = 5000


class RecordReader:
    """Canonical records read from their systems, cached by reference."""

    def __init__(self, read: ReadTicket | None) -> None:
        self.read = read
        # (monotonic time read, canonical JSON or None when the read failed)
        self._kept: dict[RecordRef, tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    def __call__(
        self, settings: Settings, refs: Sequence[RecordRef]
    ) -> dict[RecordRef, dict[str, Any]]:
        """The records of `refs` that could be read (within `WAIT` seconds in all); those that
        cannot be read now are left out, and the page shows their id."""
        if self.read is None or not refs:
            return {}
        now = time.monotonic()
        found: dict[RecordRef, dict[str, Any]] = {}
        wanted: list[RecordRef] = []
        with self._lock:
            for ref in dict.fromkeys(refs):
                cached = self._kept.get(ref)
                ttl = TTL if cached and cached[1] is not None else RETRY
                if cached is not None and now - cached[0] < ttl:
                    if cached[1] is not None:
                        found[ref] = cached[1]
                else:
                    wanted.append(ref)
        if not wanted:
            return found
        read = self.read

        def fetch(ref: RecordRef) -> dict[str, Any] | None:
            try:
                return read(settings, f"{ref[0]}:{ref[1]}").model_dump(mode="json")
            except Exception:  # a record that cannot be read is shown by its id
                return None

        pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="console-read")
        futures = {ref: pool.submit(fetch, ref) for ref in wanted[:BATCH]}
        done, _ = wait(futures.values(), timeout=WAIT)
        pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for ref, future in futures.items():
                if future in done:
                    data = future.result()
                    self._kept[ref] = (now, data)
                    if data is not None:
                        found[ref] = data
            if len(self._kept) > MAX_KEPT:
                self._kept.clear()
        return found
