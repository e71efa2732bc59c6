"""Which pair a record belongs to (kept in memory once found), and the leases on a pair.

A pair once made is never undone (a record cannot be paired again), so a pair found in the store
is remembered and only misses ask the store. A sync holds the queue's lease on its ticket; the
pair's other record must not be synced by another worker meanwhile (both would mirror the same
new comment), so the sync takes that record's lease too.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sync.store.database import LeaseBusy, Link, Store, lease_owner

# As long as the queue's own ticket leases: a lease left by a killed worker expires alike.
LEASE_SECONDS = 900.0
# Pairs kept in memory; the memory is emptied when it holds this many.
LINKS_KEPT = 50_000


class PairBusy(LeaseBusy):
    """The paired record is being synced by another worker right now: try again shortly."""


class Pairs:
    """The pairs found so far, and the leases a sync takes on a pair's records."""

    def __init__(self, store: Store, *, kept: int = LINKS_KEPT) -> None:
        self.store = store
        self._kept = kept
        self._links: dict[tuple[str, str], Link] = {}
        self._lock = threading.Lock()

    def link_of(self, system: str, ticket: str) -> Link | None:
        """The pair a ticket belongs to, from memory or else from the store."""
        key = (system, ticket)
        with self._lock:
            known = self._links.get(key)
        if known is not None:
            return known
        with self.store.reading() as tx:
            link = tx.get_link(system, ticket)
        if link is not None:
            with self._lock:
                if len(self._links) >= self._kept:
                    self._links.clear()
                self._links[key] = link
        return link

    @contextmanager
    def leases(self, tickets: Sequence[tuple[str, str]]) -> Iterator[None]:
        """Hold the queue's per-ticket leases on `tickets`; busy -> PairBusy (retried soon).

        Leases this thread holds already (the queue takes a ticket's and its pair's together,
        see `Engine.partners`) are used as they are and left to their taker to release.
        """
        owner = lease_owner()
        wanted = [t for t in tickets if t not in self.store.leases_held(owner, tickets)]
        if wanted and not self.store.acquire_locks(wanted, owner, LEASE_SECONDS):
            names = ", ".join(f"{system} {ident}" for system, ident in wanted)
            raise PairBusy(
                f"{names}: being synced by another worker",
                system=wanted[0][0],
                retry_after=random.uniform(0.05, 0.5),
            )
        try:
            yield
        finally:
            if wanted:
                self.store.release_locks(wanted, owner)
