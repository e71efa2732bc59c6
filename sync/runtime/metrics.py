"""Prometheus metrics of the daemon, served at GET /metrics.

The objects live here so the webhook server, the queue and the engine all count into the same
series. They sit on a registry of our own rather than the global one, so importing a library that
registers metrics of its own cannot collide with ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any, Protocol

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


def _version() -> str:
    try:
        return metadata.version("escalation-sync")
    except metadata.PackageNotFoundError:
        return "unknown"


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
PAUSES = Counter(
    "escalation_sync_pauses",
    "Times a system was paused because it refused our credentials, by system.",
    ["system"],
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "escalation_sync_build_info",
    "Always 1; the labels say which version of the product is running.",
    ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(version=_version()).set(1)


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


class _SystemsCollector:
    """Each system's health (`sync.runtime.health`), read at each scrape."""

    def __init__(self) -> None:
        self.states: Callable[[], Mapping[str, Any]] | None = None

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "escalation_sync_up",
            "1 when the system answers (not paused, its last call did not fail), else 0.",
            labels=["system"],
        )
        last = GaugeMetricFamily(
            "escalation_sync_last_success_timestamp_seconds",
            "When the system last answered, by kind: a call (a sync, a probe) or a poll.",
            labels=["system", "kind"],
        )
        return up, last

    def collect(self) -> Iterator[Metric]:
        if self.states is None:
            return
        try:
            states = self.states()
        except Exception as exc:
            log.warning("system health unavailable", reason=str(exc) or type(exc).__name__)
            return
        up, last = self._families()
        for system, state in sorted(states.items()):
            up.add_metric([system], 1.0 if state.up else 0.0)
            for kind, moment in (
                ("call", state.last_success_at),
                ("poll", state.last_poll_success_at),
            ):
                if moment is not None:
                    last.add_metric([system, kind], moment.timestamp())
        yield up
        yield last


class _DeadLettersCollector:
    """Dead letters waiting for a replay, counted in the store at each scrape."""

    name = "escalation_sync_dead_letters"
    documentation = "Events dead-lettered and not replayed yet (`deadletters list`)."

    def __init__(self) -> None:
        self.count: Callable[[], int] | None = None

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        if self.count is None:
            return
        try:
            value = self.count()
        except Exception as exc:
            log.warning("dead letters count unavailable", reason=str(exc) or type(exc).__name__)
            return
        yield GaugeMetricFamily(self.name, self.documentation, value=float(value))


_SYSTEMS = _SystemsCollector()
REGISTRY.register(_SYSTEMS)
_DEAD_LETTERS = _DeadLettersCollector()
REGISTRY.register(_DEAD_LETTERS)


def watch_systems(states: Callable[[], Mapping[str, Any]]) -> None:
    """Read each system's health (name -> a state with `up`, `last_success_at`,
    `last_poll_success_at`) from `states` at every scrape."""
    _SYSTEMS.states = states


def watch_dead_letters(count: Callable[[], int]) -> None:
    """Read the number of dead letters waiting for a replay from `count` at every scrape."""
    _DEAD_LETTERS.count = count


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
