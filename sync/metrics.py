"""Prometheus metrics of the daemon, served at GET /metrics.

The objects live here so the webhook server, the queue and the engine all count into the same
series. They sit on a registry of our own rather than the global one, so importing a library that
registers metrics of its own cannot collide with ours.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector

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


def watch_queue_depth(depth: Callable[[], int]) -> None:
    """Read the queue depth from `depth` at every scrape."""
    QUEUE_DEPTH.set_function(lambda: float(depth()))


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
