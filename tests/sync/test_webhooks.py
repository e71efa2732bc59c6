"""The webhook server: signatures, size limit, malformed bodies, durable acceptance, duplicates."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import uvicorn
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from connectors import jira_webhook, servicenow_webhook
from connectors.errors import BadSignature, MalformedWebhook, StaleWebhook
from connectors.events import ChangeEvent
from sync.queue import SyncQueue, make_huey
from sync.store import Store
from sync.webhooks import WebhookConfig, create_app

JIRA_SECRET = "jira-shared-secret-1234"
SNOW_SECRET = "snow-shared-secret-5678"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CONFIG = WebhookConfig(
    jira_secret=JIRA_SECRET,
    servicenow_secret=SNOW_SECRET,
    max_body_bytes=2048,
    replay_window=timedelta(seconds=300),
)


class Idle:
    """A processor the queue never reaches in these tests (nothing is consumed)."""

    def process(self, system: str, ticket_id: str) -> None:
        raise AssertionError("not consumed here")

    def poll(self, system: str) -> int:
        return 0

    def reconcile(self) -> int:
        return 0


def fake_parser(
    headers: Mapping[str, str], body: bytes, config: WebhookConfig, now: datetime
) -> list[ChangeEvent]:
    """Signature "ok" passes, "stale" is out of window; the body lists the tickets."""
    sig = headers.get("x-test-signature")
    if sig == "stale":
        raise StaleWebhook("timestamp 900 s old, window 300 s")
    if sig != "ok":
        raise BadSignature("signature does not match the body")
    try:
        data = json.loads(body)
        tickets = data["tickets"]
    except (ValueError, KeyError, TypeError):
        raise MalformedWebhook("not a test delivery: 'tickets' missing") from None
    return [
        ChangeEvent(system="jira", event="updated", ticket=t, delivery_id=data.get("id"))
        for t in tickets
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store in the temp state dir."""
    opened = Store.for_state(tmp_path / "state")
    yield opened
    opened.close()


@pytest.fixture
def queue(tmp_path: Path, store: Store) -> SyncQueue:
    """A SQLite queue nobody consumes, so tests can count what was enqueued."""
    return SyncQueue(make_huey(None, tmp_path / "state"), store, Idle())


@pytest.fixture
def client(store: Store, queue: SyncQueue) -> Iterator[TestClient]:
    """The app with the fake parser on /webhooks/jira and the real one on /webhooks/servicenow."""
    app = create_app(
        store=store,
        enqueue=queue.enqueue_event,
        config=CONFIG,
        parsers={"jira": fake_parser},
        clock=lambda: NOW,
        queue_depth=queue.depth,
        health=lambda: {"config": "abc123"},
    )
    with TestClient(app) as test_client:
        yield test_client


def post(client: TestClient, body: object, sig: str = "ok", **headers: str) -> requests.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(  # type: ignore[return-value]
        "/webhooks/jira", content=raw, headers={"X-Test-Signature": sig, **headers}
    )


def test_accepted_delivery_is_durable_before_202(
    client: TestClient, store: Store, queue: SyncQueue
) -> None:
    """202 comes back only with the delivery id recorded and every event in the queue."""
    response = post(client, {"id": "d-1", "tickets": ["DS-1", "DS-2"]})
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "events": 2}
    assert queue.depth() == 2
    assert store.seen_delivery("jira:d-1") is True
    pending = queue.huey.pending()
    assert sorted(t.args[1] for t in pending) == ["DS-1", "DS-2"]


def test_duplicate_delivery_is_acknowledged_and_dropped(
    client: TestClient, queue: SyncQueue
) -> None:
    """The same delivery id again answers 200 "duplicate" and enqueues nothing more."""
    assert post(client, {"id": "d-1", "tickets": ["DS-1"]}).status_code == 202
    again = post(client, {"id": "d-1", "tickets": ["DS-1"]})
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert queue.depth() == 1


def test_delivery_without_an_id_is_deduplicated_by_body(
    client: TestClient, queue: SyncQueue
) -> None:
    """Without a vendor delivery id, an identical body is recognised as the same delivery."""
    assert post(client, {"tickets": ["DS-1"]}).status_code == 202
    assert post(client, {"tickets": ["DS-1"]}).json()["status"] == "duplicate"
    assert post(client, {"tickets": ["DS-1", "DS-2"]}).status_code == 202
    assert queue.depth() == 3


def test_bad_signature_is_401_and_logged_without_the_secret(
    client: TestClient, queue: SyncQueue
) -> None:
    """A wrong signature is refused 401, logged with the reason, and the secret never appears."""
    with capture_logs() as logs:
        response = post(client, {"id": "x", "tickets": ["DS-1"]}, sig="forged")
    assert response.status_code == 401
    assert response.json()["reason"] == "signature"
    assert queue.depth() == 0
    refused = [e for e in logs if e["event"] == "webhook refused"]
    assert refused and refused[0]["reason"] == "signature" and refused[0]["status"] == 401
    assert JIRA_SECRET not in repr(logs) and SNOW_SECRET not in repr(logs)


def test_stale_delivery_is_401(client: TestClient) -> None:
    """A delivery outside the replay window is refused 401."""
    response = post(client, {"id": "x", "tickets": ["DS-1"]}, sig="stale")
    assert response.status_code == 401
    assert response.json()["reason"] == "stale"


def test_malformed_body_is_400_with_a_reason(client: TestClient, queue: SyncQueue) -> None:
    """A body that is not a delivery is refused 400 and says why."""
    response = post(client, b"{not json")
    assert response.status_code == 400
    assert "tickets" in response.json()["detail"]
    assert queue.depth() == 0


def test_body_over_the_limit_is_413_by_content_length(client: TestClient) -> None:
    """A declared Content-Length over the limit is refused before the body is read."""
    big = {"id": "big", "tickets": ["DS-1"], "pad": "x" * 4096}
    with capture_logs() as logs:
        response = post(client, big)
    assert response.status_code == 413
    assert response.json()["reason"] == "too_large"
    assert any(e.get("reason") == "too_large" for e in logs)


def test_body_over_the_limit_is_413_when_streamed(client: TestClient) -> None:
    """A chunked body without Content-Length is counted while read and refused past the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"id": "s", "tickets": ["DS-1"], "pad": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    response = client.post("/webhooks/jira", content=chunks(), headers={"X-Test-Signature": "ok"})
    assert response.status_code == 413


def test_enqueue_failure_answers_503_and_forgets_the_delivery(
    store: Store, queue: SyncQueue
) -> None:
    """When the queue cannot take the events the vendor gets 503, and its retry is accepted."""
    broken = True

    def enqueue(event: ChangeEvent) -> None:
        if broken:
            raise OSError("disk full")
        queue.enqueue_event(event)

    app = create_app(store=store, enqueue=enqueue, config=CONFIG, parsers={"jira": fake_parser})
    with TestClient(app) as client:
        first = post(client, {"id": "d-9", "tickets": ["DS-9"]})
        assert first.status_code == 503
        broken = False
        retry = post(client, {"id": "d-9", "tickets": ["DS-9"]})
    assert retry.status_code == 202
    assert queue.depth() == 1


def test_no_secret_configured_refuses_deliveries(store: Store, queue: SyncQueue) -> None:
    """Without a shared secret nothing is trusted: deliveries are refused 401."""
    app = create_app(
        store=store,
        enqueue=queue.enqueue_event,
        config=WebhookConfig(jira_secret=None, servicenow_secret=None),
        parsers={"jira": fake_parser},
    )
    with TestClient(app) as client:
        response = post(client, {"id": "d", "tickets": ["DS-1"]})
    assert response.status_code == 401
    assert queue.depth() == 0


def test_deliveries_without_ticket_changes_are_ignored(store: Store, queue: SyncQueue) -> None:
    """A delivery that concerns no ticket (e.g. a sprint event) is acknowledged, not enqueued."""
    app = create_app(
        store=store,
        enqueue=queue.enqueue_event,
        config=CONFIG,
        parsers={"jira": lambda headers, body, config, now: []},
    )
    with TestClient(app) as client:
        response = client.post("/webhooks/jira", content=b"{}")
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert queue.depth() == 0


def _jira_issue_updated() -> bytes:
    payload = {
        "timestamp": 1763892000000,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_updated",
        "user": {"accountId": "557058:alice", "displayName": "Alice"},
        "issue": {
            "id": "10001",
            "key": "DS-1",
            "fields": {"updated": "2026-11-23T10:00:00.000+0000", "summary": "Login fails"},
        },
        "changelog": {"id": "1", "items": [{"field": "summary", "fieldId": "summary"}]},
    }
    return json.dumps(payload).encode()


def test_real_jira_parser_signed_delivery(store: Store, queue: SyncQueue) -> None:
    """A Jira delivery signed with the shared secret is accepted; a tampered one is 401."""
    app = create_app(store=store, enqueue=queue.enqueue_event, config=CONFIG)
    body = _jira_issue_updated()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature": jira_webhook.sign(JIRA_SECRET, body),
        "X-Atlassian-Webhook-Identifier": "wh-1",
    }
    with TestClient(app) as client:
        ok = client.post("/webhooks/jira", content=body, headers=headers)
        dup = client.post("/webhooks/jira", content=body, headers=headers)
        tampered = client.post("/webhooks/jira", content=body + b" ", headers=headers)
    assert ok.status_code == 202, ok.text
    assert dup.json()["status"] == "duplicate"
    assert tampered.status_code == 401
    assert [t.args for t in queue.huey.pending()] == [("jira", "DS-1")]


def test_real_servicenow_parser_checks_signature_and_window(store: Store, queue: SyncQueue) -> None:
    """A Business Rule post is accepted signed and fresh; 401 when stale, 400 when malformed."""
    app = create_app(store=store, enqueue=queue.enqueue_event, config=CONFIG, clock=lambda: NOW)
    body = json.dumps(
        {
            "table": "incident",
            "sys_id": "9d385017c611228701d22104cc95c371",
            "number": "INC0010001",
            "sys_mod_count": "4",
            "sys_updated_on": "2026-11-23 09:59:30",
            "sys_updated_by": "abel.tuter",
            "operation": "update",
        }
    ).encode()
    fresh = servicenow_webhook.signed_headers(SNOW_SECRET, body, NOW)
    stale = servicenow_webhook.signed_headers(SNOW_SECRET, body, NOW - timedelta(hours=1))
    junk = b'{"hello": "world"}'
    with TestClient(app) as client:
        ok = client.post("/webhooks/servicenow", content=body, headers=fresh)
        old = client.post("/webhooks/servicenow", content=body, headers=stale)
        bad = client.post(
            "/webhooks/servicenow",
            content=junk,
            headers=servicenow_webhook.signed_headers(SNOW_SECRET, junk, NOW),
        )
    assert ok.status_code == 202, ok.text
    assert old.status_code == 401
    assert bad.status_code == 400 and bad.json()["detail"]
    assert [t.args[1] for t in queue.huey.pending()] == ["9d385017c611228701d22104cc95c371"]


def test_healthz_and_metrics(client: TestClient) -> None:
    """/healthz reports ok with the daemon's fields; /metrics exposes the sync series."""
    post(client, {"id": "m-1", "tickets": ["DS-1"]})
    post(client, {"id": "m-2", "tickets": ["DS-1"]}, sig="bad")
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "queue_depth": 1, "config": "abc123"}
    text = client.get("/metrics").text
    assert 'escalation_sync_events_received_total{source="webhook",system="jira"}' in text
    assert 'escalation_sync_webhooks_refused_total{reason="signature",system="jira"}' in text
    assert "escalation_sync_queue_depth 1.0" in text
    for declared in (
        "escalation_sync_events_processed_total",
        "escalation_sync_events_failed_total",
        "escalation_sync_writes_total",
        "escalation_sync_lag_seconds",
    ):
        assert f"# TYPE {declared} " in text, declared


def test_real_uvicorn_server_on_a_free_port(store: Store, queue: SyncQueue) -> None:
    """Served by uvicorn on 127.0.0.1 port 0, a delivery is accepted over real HTTP."""
    app = create_app(store=store, enqueue=queue.enqueue_event, config=CONFIG)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        body = _jira_issue_updated()
        response = requests.post(
            f"http://127.0.0.1:{port}/webhooks/jira",
            data=body,
            headers={"X-Hub-Signature": jira_webhook.sign(JIRA_SECRET, body)},
            timeout=10,
        )
        assert response.status_code == 202
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        server.should_exit = True
        thread.join(10)
    assert queue.depth() == 1
