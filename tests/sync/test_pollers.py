"""Tests of changed-since polling: watermarks, enqueueing, and failures that must not be lost."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import InvalidRequest, ServerUnavailable
from mapping.model import System
from sync.intake.pollers import poll_system
from sync.store.database import Store
from sync.systems.base import Changed

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Feed:
    def __init__(self, items: list[Changed]) -> None:
        self.items = items
        self.asked: list[datetime] = []

    def changed_since(self, since: datetime) -> Iterator[Changed]:
        self.asked.append(since)
        yield from self.items


class FakeEngine:
    def __init__(self, store: Store, feed: Feed, fail: dict[str, Exception] | None = None):
        self.store = store
        self.adapters = {System.JIRA: feed}
        self.enqueue: Any = None
        self.clock = lambda: T0 + timedelta(hours=1)
        self.fail = fail or {}
        self.processed: list[str] = []

    def process(self, system: str, ticket_id: str) -> None:
        if ticket_id in self.fail:
            raise self.fail[ticket_id]
        self.processed.append(ticket_id)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def items() -> list[Changed]:
    return [Changed(f"DS-{i}", T0 + timedelta(minutes=i)) for i in range(1, 4)]


def test_enqueues_and_moves_the_watermark(store: Store) -> None:
    """Every changed record is enqueued and the watermark moves to the newest change."""
    feed = Feed(items())
    engine = FakeEngine(store, feed)
    queued: list[tuple[str, str]] = []
    engine.enqueue = lambda s, t: queued.append((s, t))
    assert poll_system(engine, System.JIRA) == 3  # type: ignore[arg-type]
    assert queued == [("jira", "DS-1"), ("jira", "DS-2"), ("jira", "DS-3")]
    assert store.get_watermark("jira") == T0 + timedelta(minutes=3)
    poll_system(engine, System.JIRA)  # type: ignore[arg-type]
    assert feed.asked[-1] == T0 + timedelta(minutes=3)


def test_retryable_failure_holds_the_watermark_back(store: Store) -> None:
    """A record that failed transiently is read again next pass; the others are processed."""
    engine = FakeEngine(store, Feed(items()), {"DS-2": ServerUnavailable("503")})
    poll_system(engine, System.JIRA)  # type: ignore[arg-type]
    assert engine.processed == ["DS-1", "DS-3"]
    mark = store.get_watermark("jira")
    assert mark is not None and mark < T0 + timedelta(minutes=2)


def test_permanent_failure_is_dead_lettered_and_the_pass_goes_on(store: Store) -> None:
    """A 4xx parks that record in the dead letters; the watermark still advances."""
    engine = FakeEngine(store, Feed(items()), {"DS-1": InvalidRequest("400 bad field")})
    poll_system(engine, System.JIRA)  # type: ignore[arg-type]
    assert engine.processed == ["DS-2", "DS-3"]
    (dead,) = store.list_dead_letters()
    assert (dead.system, dead.ticket, dead.error_class) == ("jira", "DS-1", "InvalidRequest")
    assert store.get_watermark("jira") == T0 + timedelta(minutes=3)


def test_record_at_the_synced_version_is_not_enqueued_again(store: Store) -> None:
    """The overlap window re-reads records already in step; only a newer version is queued."""
    store.put_snapshot("jira", "DS-1", {"summary": "x"}, version="v1")
    feed = Feed(
        [
            Changed("DS-1", T0, version="v1"),
            Changed("DS-2", T0, version="v7"),
            Changed("DS-3", T0),
        ]
    )
    engine = FakeEngine(store, feed)
    queued: list[str] = []
    engine.enqueue = lambda s, t: queued.append(t)
    assert poll_system(engine, System.JIRA) == 3  # type: ignore[arg-type]
    assert queued == ["DS-2", "DS-3"]
    feed.items = [Changed("DS-1", T0 + timedelta(minutes=1), version="v2")]
    poll_system(engine, System.JIRA)  # type: ignore[arg-type]
    assert queued[-1] == "DS-1"


def test_an_unmappable_record_is_dead_lettered_like_a_4xx(store: Store) -> None:
    """A value the mapping does not know parks that record; the pass goes on."""
    from sync.pipeline.records import MappingFailed

    failure = MappingFailed("jira: status: no canonical value for vendor value 'Triage'")
    engine = FakeEngine(store, Feed(items()), {"DS-2": failure})
    poll_system(engine, System.JIRA)  # type: ignore[arg-type]
    assert engine.processed == ["DS-1", "DS-3"]
    [parked] = store.list_dead_letters()
    assert (parked.ticket, parked.error_class) == ("DS-2", "MappingFailed")


def test_refused_credentials_end_the_pass_without_moving_the_watermark(store: Store) -> None:
    """A 401 is raised to the caller (which pauses the system); nothing is parked for it."""
    from connectors.errors import AuthFailed

    engine = FakeEngine(store, Feed(items()), {"DS-2": AuthFailed("HTTP 401", system="jira")})
    with pytest.raises(AuthFailed):
        poll_system(engine, System.JIRA)  # type: ignore[arg-type]
    assert engine.processed == ["DS-1"]
    assert store.list_dead_letters() == []
    assert store.get_watermark("jira") is None
