"""Webhook deliveries made durable in groups: one store transaction and one queue write for many.

A delivery that passed its checks waits on `GroupCommitter.accept`. While one group is being
written (in a worker thread), the deliveries arriving meanwhile gather into the next, so under
load many deliveries share a commit and, on the SQLite queue, one WAL sync; alone, a delivery is
written at once. A group is one store transaction that records its delivery ids (learning which
are new) and, inside it, one queue write with the events of the new ones; the transaction commits
only once the queue write has returned. Hence, for every delivery of the group:

- it is answered only after it is durable (`accept` returns after the commit);
- if the queue write or the commit fails, `accept` raises for each of them and no delivery id of
  the group stays recorded, so the vendor's retry is not mistaken for a duplicate;
- a delivery id seen before, or earlier in the same group, is a duplicate (False).

A commit in a thread cannot be interrupted: a delivery whose request goes away while its group is
being written is still made durable, and the vendor's retry is then answered as a duplicate.
Shutting down needs nothing of its own: the server's graceful shutdown waits for the requests in
flight, and every delivery waiting here is one of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from connectors.events import ChangeEvent
from sync.store.database import Store

# Bounds a group's transaction (and its SQLite write lock) when a backlog has built up.
MAX_GROUP = 256

GroupCommit = Callable[[Sequence["Delivery"]], list[bool]]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery: the system it came from, its de-duplication key, its events."""

    system: str
    key: str
    events: tuple[ChangeEvent, ...]


def commit_group(
    store: Store,
    enqueue: Callable[[Sequence[ChangeEvent]], None],
    group: Sequence[Delivery],
) -> list[bool]:
    """Record and enqueue `group` in one store transaction; per delivery, True when it was new.

    `enqueue` must queue all the events it is given durably, or none and raise.
    """
    systems: dict[str, str] = {}
    for delivery in group:
        systems.setdefault(delivery.key, delivery.system)
    with store.session() as tx:
        unclaimed = tx.record_deliveries(systems)
        accepted = []
        for delivery in group:
            accepted.append(delivery.key in unclaimed)
            # A second copy of a new id in the same group is its duplicate.
            unclaimed.discard(delivery.key)
        events = [e for d, new in zip(group, accepted, strict=True) if new for e in d.events]
        if events:
            enqueue(events)
    return accepted


class GroupCommitter:
    """Gathers deliveries on the event loop and writes them a group at a time in a thread."""

    def __init__(self, commit: GroupCommit, *, max_group: int = MAX_GROUP) -> None:
        self._commit = commit
        self._max_group = max_group
        self._waiting: list[tuple[Delivery, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def accept(self, delivery: Delivery) -> bool:
        """Wait until `delivery` is durable; True when new, False for a duplicate.

        Raises what the group's write raised (nothing of the group is then recorded).
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((delivery, answer))
        if self._writer is None:
            self._writer = loop.create_task(self._write_groups())
        return await answer

    async def _write_groups(self) -> None:
        try:
            while self._waiting:
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                await self._write(group)
        finally:
            self._writer = None
            # Left only when cancelled with the event loop: nobody is left to answer.
            for _, answer in self._waiting:
                answer.cancel()
            self._waiting.clear()

    async def _write(self, group: list[tuple[Delivery, asyncio.Future[bool]]]) -> None:
        try:
            accepted = await asyncio.to_thread(self._commit, [d for d, _ in group])
        except Exception as exc:
            for _, answer in group:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except BaseException:
            for _, answer in group:
                answer.cancel()
            raise
        for (_, answer), new in zip(group, accepted, strict=True):
            if not answer.done():
                answer.set_result(new)
