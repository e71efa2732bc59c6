"""Deliveries made durable in groups: dedupe inside and across groups, rollback, gathering."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from connectors.events import ChangeEvent
from sync.intake.delivery_groups import Delivery, GroupCommitter, commit_group
from sync.store.database import Store
from tests.sync.store_backends import opened_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store on SQLite, and on PostgreSQL when a server is configured."""
    with opened_store(str(request.param), tmp_path / "state") as opened:
        yield opened


def delivery(key: str, *tickets: str) -> Delivery:
    """A Jira delivery with one event per ticket."""
    events = tuple(ChangeEvent(system="jira", event="updated", ticket=t) for t in tickets)
    return Delivery("jira", f"jira:{key}", events)


class RecordingQueue:
    """Keeps every group of events it is given; raises instead while `error` is set."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.error: Exception | None = None

    def __call__(self, events: Sequence[ChangeEvent]) -> None:
        if self.error is not None:
            raise self.error
        assert events, "an empty group must not reach the queue"
        self.groups.append([e.ticket for e in events])


def test_a_group_is_one_queue_write_of_its_new_deliveries(store: Store) -> None:
    """Every new delivery's events go to the queue in one write, in the group's order."""
    queue = RecordingQueue()
    group = [delivery("a", "DS-1", "DS-2"), delivery("b", "DS-3")]
    assert commit_group(store, queue, group) == [True, True]
    assert queue.groups == [["DS-1", "DS-2", "DS-3"]]
    assert store.status_counts().deliveries == 2


def test_duplicates_inside_a_group_and_across_groups(store: Store) -> None:
    """A repeated id is new only at its first place; one seen in an earlier group is a duplicate."""
    queue = RecordingQueue()
    first = [delivery("a", "DS-1"), delivery("b", "DS-2"), delivery("a", "DS-1")]
    assert commit_group(store, queue, first) == [True, True, False]
    assert commit_group(store, queue, [delivery("b", "DS-2"), delivery("c", "DS-3")]) == [
        False,
        True,
    ]
    assert commit_group(store, queue, [delivery("a", "DS-1")]) == [False]
    assert queue.groups == [["DS-1", "DS-2"], ["DS-3"]]


def test_a_failed_queue_write_rolls_back_the_groups_ids(store: Store) -> None:
    """When the queue refuses the group, none of its ids stays recorded and a retry is new."""
    queue = RecordingQueue()
    queue.error = OSError("disk full")
    group = [delivery("a", "DS-1"), delivery("b", "DS-2")]
    with pytest.raises(OSError, match="disk full"):
        commit_group(store, queue, group)
    assert store.status_counts().deliveries == 0
    queue.error = None
    assert commit_group(store, queue, group) == [True, True]
    assert queue.groups == [["DS-1", "DS-2"]]


class HeldCommit:
    """A group commit that waits for `release` and records the keys of each group."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.groups: list[list[str]] = []
        self.error: Exception | None = None

    def __call__(self, group: Sequence[Delivery]) -> list[bool]:
        self.groups.append([d.key for d in group])
        if not self.release.wait(10):
            raise AssertionError("the test never released the commit")
        if self.error is not None:
            raise self.error
        return [True] * len(group)


async def until(check: object, what: str) -> None:
    """Yield to the event loop until `check()` is true."""
    assert callable(check)
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def test_deliveries_arriving_during_a_write_form_the_next_group() -> None:
    """The first delivery is written alone; those arriving meanwhile share the next write."""
    commit = HeldCommit()
    committer = GroupCommitter(commit)

    async def scenario() -> list[bool]:
        first = asyncio.ensure_future(committer.accept(delivery("a", "DS-1")))
        await until(lambda: commit.groups, "the first group to be written")
        rest = [asyncio.ensure_future(committer.accept(delivery(k, "DS-2"))) for k in "bcd"]
        await asyncio.sleep(0.05)
        assert not first.done() and not any(r.done() for r in rest)
        commit.release.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(scenario()) == [True] * 4
    assert commit.groups == [["jira:a"], ["jira:b", "jira:c", "jira:d"]]


def test_groups_are_bounded_in_size() -> None:
    """A backlog larger than the bound is written in several groups, in arrival order."""
    commit = HeldCommit()
    commit.release.set()
    committer = GroupCommitter(commit, max_group=2)

    async def scenario() -> list[bool]:
        return await asyncio.gather(*(committer.accept(delivery(k, "DS-1")) for k in "abcde"))

    assert asyncio.run(scenario()) == [True] * 5
    assert [len(g) for g in commit.groups] == [2, 2, 1]
    assert [k for g in commit.groups for k in g] == [f"jira:{k}" for k in "abcde"]


def test_a_failed_write_fails_every_delivery_of_its_group_only() -> None:
    """Each delivery of a group whose write fails gets the error; the next group is written."""
    commit = HeldCommit()
    commit.error = OSError("disk full")
    committer = GroupCommitter(commit)

    async def scenario() -> list[object]:
        doomed = asyncio.ensure_future(committer.accept(delivery("a", "DS-1")))
        await until(lambda: commit.groups, "the first group to be written")
        commit.release.set()
        outcome: list[object] = list(await asyncio.gather(doomed, return_exceptions=True))
        commit.error = None
        outcome.append(await committer.accept(delivery("b", "DS-2")))
        return outcome

    first, second = asyncio.run(scenario())
    assert isinstance(first, OSError) and second is True


def test_a_request_that_goes_away_leaves_the_rest_of_its_group_answered() -> None:
    """A cancelled waiter is still written with its group; the others get their answers."""
    commit = HeldCommit()
    committer = GroupCommitter(commit)

    async def scenario() -> list[bool]:
        gone = asyncio.ensure_future(committer.accept(delivery("a", "DS-1")))
        kept = asyncio.ensure_future(committer.accept(delivery("b", "DS-2")))
        await until(lambda: commit.groups, "the group to be written")
        gone.cancel()
        commit.release.set()
        return [await kept]

    assert asyncio.run(scenario()) == [True]
    assert commit.groups == [["jira:a", "jira:b"]]
