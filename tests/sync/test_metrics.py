"""The outbox gauge: counted at each scrape, and a failing count never fails the scrape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sync.runtime import metrics


@pytest.fixture(autouse=True)
def no_outbox_source() -> Iterator[None]:
    """Each test installs its own source; none is left behind for other tests."""
    yield
    metrics.watch_outbox(lambda: {})


def test_outbox_counts_are_read_at_each_scrape() -> None:
    """The gauge shows the counts the source gives at the time of the scrape."""
    counts = {"pending": 2, "sent": 5, "dead": 1}
    metrics.watch_outbox(lambda: dict(counts))
    text = metrics.render()[0].decode()
    assert 'escalation_sync_outbox_messages{status="pending"} 2.0' in text
    assert 'escalation_sync_outbox_messages{status="dead"} 1.0' in text
    counts["pending"] = 0
    text = metrics.render()[0].decode()
    assert 'escalation_sync_outbox_messages{status="pending"} 0.0' in text


def test_a_failing_count_leaves_out_the_gauge_not_the_scrape() -> None:
    """A store that cannot be read drops the outbox gauge from that scrape only."""

    def broken() -> dict[str, int]:
        raise RuntimeError("database is locked")

    metrics.watch_outbox(broken)
    text = metrics.render()[0].decode()
    assert "escalation_sync_queue_depth" in text
    assert 'escalation_sync_outbox_messages{status="' not in text
