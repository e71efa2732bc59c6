"""Prometheus metrics of the daemon, served at GET /metrics.

The objects live here so the webhook server, the queue and the engine all count into the same
series. They sit on a registry of our own rather than the global one, so importing a library that
registers metrics of its own cannot collide with ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

log = structlog.get_logger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

EVENTS_RECEIVED = Counter(
    "escalation_sync_events_received",
    "Change events accepted for processing, by system and source (webhook, poll, replay).",
    ["system", "source"],
    registry=REGISTRY,
)
EVENTS_PROCESSED = Counter(
    "escalation_sync_events_processed",
    "Ticket syncs that completed, by the system the change came from.",
    ["system"],
    registry=REGISTRY,
)
EVENTS_FAILED = Counter(
    "escalation_sync_events_failed",
    "Ticket syncs that failed, by system and outcome (retry, dead_letter).",
    ["system", "outcome"],
    registry=REGISTRY,
)
WEBHOOKS_REFUSED = Counter(
    "escalation_sync_webhooks_refused",
    "Webhook deliveries refused, by system and reason (signature, stale, malformed, too_large).",
    ["system", "reason"],
    registry=REGISTRY,
)
WEBHOOKS_DUPLICATE = Counter(
    "escalation_sync_webhooks_duplicate",
    "Webhook deliveries acknowledged and dropped because their delivery id was seen before.",
    ["system"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "escalation_sync_queue_depth",
    "Tasks waiting in the queue (pending plus scheduled retries).",
    registry=REGISTRY,
)
WRITES = Counter(
    "escalation_sync_writes",
    "Writes made to a system, by kind (field, comment, attachment, transition, create, link).",
    ["system", "kind"],
    registry=REGISTRY,
)
SYNC_LAG = Histogram(
    "escalation_sync_lag_seconds",
    "Seconds from a change in the source system to its write in the target system.",
    ["system"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
POLLS = Counter(
    "escalation_sync_polls",
    "Polling passes, by system and outcome (ok, failed).",
    ["system", "outcome"],
    registry=REGISTRY,
)


class _OutboxCollector:
    """The email outbox's messages by status, counted in the store at each scrape."""

    name = "escalation_sync_outbox_messages"
    documentation = (
        "Email outbox messages by status: pending (to send), sending, sent, unknown (a send "
        "interrupted by a crash, to settle with `email resolve`) and dead (gave up)."
    )

    def __init__(self) -> None:
        self.counts: Callable[[], Mapping[str, int]] | None = None

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=["status"])

    def collect(self) -> Iterator[Metric]:
        if self.counts is None:
            return
        try:
            counts = self.counts()
        except Exception as exc:
            # A busy or unreachable store leaves this gauge out of one scrape, not the scrape.
            log.warning("outbox counts unavailable", reason=str(exc) or type(exc).__name__)
            return
        family = GaugeMetricFamily(self.name, self.documentation, labels=["status"])
        for status, count in counts.items():
            family.add_metric([status], float(count))
        yield family


_OUTBOX = _OutboxCollector()
REGISTRY.register(_OUTBOX)


def watch_outbox(counts: Callable[[], Mapping[str, int]]) -> None:
    """Read the outbox's count per status from `counts` at every scrape."""
    _OUTBOX.counts = counts


def watch_queue_depth(depth: Callable[[], int]) -> None:
    """Read the queue depth from `depth` at every scrape."""
    QUEUE_DEPTH.set_function(lambda: float(depth()))


class Metrics(Protocol):
    """Where the engine reports what it did (Prometheus in production, see `PrometheusMetrics`)."""

    def processed(self, system: str, writes: int, lag: float | None) -> None:
        """One ticket synced; `lag` is seconds from the source change to the end of the sync."""
        ...

    def failed(self, system: str, outcome: str) -> None:
        """One ticket failed: outcome "retry" or "dead_letter"."""
        ...

    def write(self, system: str, kind: str) -> None:
        """One write made to `system`: field, transition, comment, attachment, create, link."""
        ...


class PrometheusMetrics:
    """The engine's counters in this module's registry."""

    def processed(self, system: str, writes: int, lag: float | None) -> None:
        """Count the sync, and observe the lag when it wrote something."""
        EVENTS_PROCESSED.labels(system).inc()
        if lag is not None and writes:
            SYNC_LAG.labels(system).observe(max(0.0, lag))

    def failed(self, system: str, outcome: str) -> None:
        """Count a failed sync."""
        EVENTS_FAILED.labels(system, outcome).inc()

    def write(self, system: str, kind: str) -> None:
        """Count a write."""
        WRITES.labels(system, kind).inc()


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
