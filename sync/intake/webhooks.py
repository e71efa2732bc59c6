"""The daemon's HTTP side: webhook receivers, health and metrics.

A delivery is answered 202 only once it is durable: its delivery id is recorded in the store and
its events are in the queue, in one store transaction (if enqueueing fails the delivery id is
rolled back, so the vendor's retry is not mistaken for a duplicate). Concurrent deliveries share
that transaction and one queue write (`sync.intake.delivery_groups`); each is still answered
only after its group is durable. Everything else is refused with the status the vendor should see:

- 401 bad or missing signature, or a timestamp outside the replay window,
- 413 a body over `max_body_bytes` (Content-Length is checked first, then bytes are counted),
- 400 a body that is not a webhook of that vendor, with the reason,
- 200 "duplicate" for a delivery id seen before (acknowledged so the vendor stops retrying),
- 503 when the store or queue cannot take it (the vendor retries later).

Every refusal is logged with its reason; headers and secrets never are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from connectors.errors import BadSignature, MalformedWebhook, StaleWebhook, WebhookRejected
from connectors.events import ChangeEvent
from errors import Reject
from sync.config.settings import Settings
from sync.intake.delivery_groups import Delivery, GroupCommitter, commit_group
from sync.runtime import metrics
from sync.store.database import DELIVERY_ID_LENGTH, Store
from sync.systems import registry as systems
from sync.systems.base import SystemSettings, TicketSystem

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What the receivers need from the settings: each system's section (its webhook secret and
    whatever else its parser checks) and the body size limit."""

    sections: Mapping[str, SystemSettings] = field(default_factory=dict)
    max_body_bytes: int = 1_048_576

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        """Every configured system's section, and `[webhooks].max_body_bytes`."""
        return cls(dict(settings.systems), max_body_bytes=int(settings.webhooks.max_body_bytes))

    def secret_for(self, system: str) -> str | None:
        """The shared secret deliveries from `system` are signed with."""
        section = self.sections.get(system)
        return section.webhook_secret_value() if section is not None else None


class WebhookParser(Protocol):
    """Verify and normalise one delivery (a ticket system's `parse_webhook`, adapted)."""

    def __call__(
        self, headers: Mapping[str, str], body: bytes, config: WebhookConfig, now: datetime
    ) -> list[ChangeEvent]:
        """Return the delivery's events; raise BadSignature/StaleWebhook/MalformedWebhook."""
        ...


def system_parser(system: TicketSystem[Any]) -> WebhookParser:
    """`system.parse_webhook` with its configured section (the receiver refuses a delivery
    from a system with no secret configured before it parses anything)."""

    def parse(
        headers: Mapping[str, str], body: bytes, config: WebhookConfig, now: datetime
    ) -> list[ChangeEvent]:
        return system.parse_webhook(headers, body, system.section(config.sections), now)

    return parse


def webhook_paths(names: Iterable[str]) -> dict[str, str]:
    """`/webhooks/<name>` of each system, by path."""
    return {f"/webhooks/{name}": name for name in names}


class BodyTooLarge(Reject):
    """The delivery is larger than the configured limit."""

    http_status = 413


def delivery_key(system: str, events: list[ChangeEvent], body: bytes) -> str:
    """The id a delivery is de-duplicated by: the vendor's delivery id, else the body's hash.

    A vendor id the store might not hold (longer than its column; a NUL, a lone surrogate or
    another unprintable character) is replaced by its hash: deliveries are recorded in groups,
    and one id the database refused would fail every delivery of its group, again on each of
    the vendor's retries.
    """
    vendor_id = next((e.delivery_id for e in events if e.delivery_id), None)
    if not vendor_id:
        return f"{system}:sha256:{hashlib.sha256(body).hexdigest()}"
    key = f"{system}:{vendor_id}"
    if len(key) <= DELIVERY_ID_LENGTH and key.isprintable():
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{system}:sha256-id:{digest}"


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise MalformedWebhook("Content-Length is not a number") from None
        if size > limit:
            raise BodyTooLarge(f"body of {size} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _refusal_reason(exc: Exception) -> str:
    if isinstance(exc, BodyTooLarge):
        return "too_large"
    if isinstance(exc, StaleWebhook):
        return "stale"
    if isinstance(exc, BadSignature):
        return "signature"
    return "malformed"


def create_app(
    *,
    store: Store,
    enqueue: Callable[[Sequence[ChangeEvent]], None],
    config: WebhookConfig | Callable[[], WebhookConfig],
    parsers: Mapping[str, WebhookParser] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    queue_depth: Callable[[], int] | None = None,
    health: Callable[[], Mapping[str, Any]] | None = None,
) -> WebhookRoutes:
    """The ASGI app: POST /webhooks/<system> for every installed system, GET /healthz,
    GET /metrics.

    `enqueue` must return only once all the events it is given are durably queued, or queue none
    and raise (`SyncQueue.enqueue_events`). `config` may be a callable so
    a configuration reload takes effect without rebuilding the app. `parsers` replaces the
    systems' parsers (tests); `health` adds fields to /healthz, and a non-empty `problems`
    list among them makes it answer 503 with them.
    """
    chosen: dict[str, WebhookParser] = {s.name: system_parser(s) for s in systems.registry()}
    chosen.update(parsers or {})
    current: Callable[[], WebhookConfig] = config if callable(config) else (lambda: config)
    if queue_depth is not None:
        metrics.watch_queue_depth(queue_depth)

    app = FastAPI(title="escalation-sync", docs_url=None, redoc_url=None, openapi_url=None)

    def refuse(system: str, status: int, exc: Exception, request: Request) -> JSONResponse:
        reason = _refusal_reason(exc)
        detail = str(exc) or type(exc).__name__
        metrics.WEBHOOKS_REFUSED.labels(system=system, reason=reason).inc()
        log.warning(
            "webhook refused",
            system=system,
            status=status,
            reason=reason,
            detail=detail,
            client=request.client.host if request.client else None,
        )
        return JSONResponse({"status": "refused", "reason": reason, "detail": detail}, status)

    committer = GroupCommitter(lambda group: commit_group(store, enqueue, group))

    async def receive(system: str, request: Request) -> Response:
        cfg = current()
        try:
            body = await read_limited(request, cfg.max_body_bytes)
        except BodyTooLarge as exc:
            return refuse(system, exc.http_status, exc, request)
        except MalformedWebhook as exc:
            return refuse(system, 400, exc, request)
        if cfg.secret_for(system) is None:
            # Without a shared secret anyone could inject changes; refuse rather than trust.
            return refuse(system, 401, BadSignature("no webhook secret configured"), request)
        try:
            events = chosen[system](dict(request.headers), body, cfg, clock())
        except WebhookRejected as exc:
            return refuse(system, exc.http_status, exc, request)
        if not events:
            log.info("webhook ignored: no ticket change in it", system=system)
            return JSONResponse({"status": "ignored", "events": 0}, 200)
        key = delivery_key(system, events, body)
        try:
            fresh = await committer.accept(Delivery(system, key, tuple(events)))
        except Exception as exc:
            log.error(
                "webhook not accepted: store or queue unavailable",
                system=system,
                error=type(exc).__name__,
                detail=str(exc),
            )
            return JSONResponse({"status": "unavailable", "reason": "try again later"}, 503)
        if not fresh:
            metrics.WEBHOOKS_DUPLICATE.labels(system=system).inc()
            log.info("duplicate webhook dropped", system=system, delivery=key)
            return JSONResponse({"status": "duplicate", "events": 0}, 200)
        log.info(
            "webhook accepted",
            system=system,
            delivery=key,
            tickets=sorted({e.ticket for e in events}),
        )
        return JSONResponse({"status": "accepted", "events": len(events)}, 202)

    @app.get("/healthz")
    async def healthz() -> Response:
        """200 while the store answers and the daemon names no problem; 503 with the reasons."""

        def probe() -> dict[str, Any]:
            with store.db.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            body: dict[str, Any] = {"status": "ok"}
            if queue_depth is not None:
                body["queue_depth"] = queue_depth()
            if health is not None:
                body.update(health())
            return body

        try:
            body = await run_in_threadpool(probe)
        except Exception as exc:
            log.error("health check failed", error=type(exc).__name__, detail=str(exc))
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, 503)
        if body.get("problems"):
            body["status"] = "unhealthy"
            return JSONResponse(body, 503)
        return JSONResponse(body, 200)

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus exposition of sync.runtime.metrics."""
        payload, content_type = await run_in_threadpool(metrics.render)
        return Response(payload, media_type=content_type)

    return WebhookRoutes(receive, app, webhook_paths(chosen))


class WebhookRoutes:
    """POST /webhooks/<system> straight to the receiver; every other request to FastAPI.

    The webhook endpoints use none of FastAPI's routing, dependency solving or middleware, and
    under concurrent deliveries those cost the event loop more than the deliveries' own checks.
    """

    def __init__(
        self,
        receiver: Callable[[str, Request], Awaitable[Response]],
        rest: FastAPI,
        paths: Mapping[str, str],
    ) -> None:
        self.receiver = receiver
        self.rest = rest
        # `/webhooks/<system>` -> system, for every system with a parser.
        self.paths = dict(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        system = self.paths.get(scope["path"]) if scope["type"] == "http" else None
        if system is None:
            await self.rest(scope, receive, send)
            return
        if scope["method"] == "POST":
            response = await self.receiver(system, Request(scope, receive))
        else:
            response = JSONResponse(
                {"detail": "Method Not Allowed"}, 405, headers={"Allow": "POST"}
            )
        await response(scope, receive, send)
