"""Huey storages that also take a group of tasks in one write.

Huey's own storages write every enqueued task on its own; on SQLite with fsync that is a
transaction and a WAL sync per task. Webhook deliveries accepted together are enqueued together
through `enqueue_many` instead: one transaction (SQLite) or one LPUSH (Redis) for the whole
group, so all of its tasks are queued or none is. Everything else about the storages, including
how consumers read them, is Huey's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from huey import RedisHuey, SqliteHuey
from huey.storage import RedisStorage, SqliteStorage


@runtime_checkable
class GroupEnqueue(Protocol):
    """A storage that queues many serialized tasks (without priority) in one atomic write."""

    def enqueue_many(self, items: Sequence[bytes]) -> None:
        """Queue every item, in order, or none of them (raising)."""


class GroupSqliteStorage(SqliteStorage):  # type: ignore[misc]
    """Huey's SQLite storage with `enqueue_many` in one transaction."""

    def enqueue_many(self, items: Sequence[bytes]) -> None:
        """Queue every item, in order, in one transaction (one sync when fsync is on)."""
        rows = [(self.name, self.to_blob(data), 0) for data in items]
        with self.db(commit=True) as cursor:
            cursor.executemany("insert into task (queue, data, priority) values (?, ?, ?)", rows)


class GroupRedisStorage(RedisStorage):  # type: ignore[misc]
    """Huey's Redis storage with `enqueue_many` as one LPUSH."""

    def enqueue_many(self, items: Sequence[bytes]) -> None:
        """Queue every item with one LPUSH: one atomic command, and BRPOP hands the items out
        in the order given, as one LPUSH each would."""
        if items:
            self.conn.lpush(self.queue_key, *items)


class GroupSqliteHuey(SqliteHuey):  # type: ignore[misc]
    """SqliteHuey on `GroupSqliteStorage`."""

    storage_class = GroupSqliteStorage


class GroupRedisHuey(RedisHuey):  # type: ignore[misc]
    """RedisHuey on `GroupRedisStorage`."""

    storage_class = GroupRedisStorage
