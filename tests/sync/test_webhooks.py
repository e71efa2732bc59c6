"""The webhook server: signatures, size limit, malformed bodies, durable acceptance, duplicates."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import uvicorn
from fastapi.testclient import TestClient
from starlette.types import ASGIApp
from structlog.testing import capture_logs

from connectors import jira_webhook, servicenow_webhook
from connectors.errors import BadSignature, MalformedWebhook, StaleWebhook
from connectors.events import ChangeEvent
from sync.intake.webhooks import WebhookConfig, create_app, delivery_key
from sync.queue.tasks import SyncQueue, make_huey
from sync.store.database import Store
from sync.systems.jira.settings import JiraSettings
from sync.systems.servicenow.settings import ServiceNowSettings
from tests.sync.store_backends import opened_store, redis_url

JIRA_SECRET = "jira-shared-secret-1234"
SNOW_SECRET = "snow-shared-secret-5678"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CONFIG = WebhookConfig(
    sections={
        "jira": JiraSettings(webhook_secret=JIRA_SECRET),
        "servicenow": ServiceNowSettings(webhook_secret=SNOW_SECRET, replay_window_seconds=300),
    },
    max_body_bytes=2048,
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


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """SQLite store and queue; PostgreSQL store and Redis queue when those servers are set."""
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[Store]:
    """A store in the temp state dir, or in a fresh PostgreSQL schema."""
    with opened_store("sqlite" if backend == "sqlite" else "postgresql", tmp_path / "state") as s:
        yield s


@pytest.fixture
def queue(backend: str, tmp_path: Path, store: Store) -> Iterator[SyncQueue]:
    """A queue nobody consumes, so tests can count what was enqueued."""
    if backend == "sqlite":
        yield SyncQueue(make_huey(None, tmp_path / "state"), store, Idle())
        return
    huey = make_huey(redis_url(), tmp_path, name=f"test-{uuid.uuid4().hex[:10]}")
    try:
        yield SyncQueue(huey, store, Idle())
    finally:
        huey.flush()


@pytest.fixture
def client(store: Store, queue: SyncQueue) -> Iterator[TestClient]:
    """The app with the fake parser on /webhooks/jira and the real one on /webhooks/servicenow."""
    app = create_app(
        store=store,
        enqueue=queue.enqueue_events,
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

    def enqueue(events: Sequence[ChangeEvent]) -> None:
        if broken:
            raise OSError("disk full")
        queue.enqueue_events(events)

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
        enqueue=queue.enqueue_events,
        config=WebhookConfig(sections={"jira": JiraSettings(), "servicenow": ServiceNowSettings()}),
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
        enqueue=queue.enqueue_events,
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
    app = create_app(store=store, enqueue=queue.enqueue_events, config=CONFIG)
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
    app = create_app(store=store, enqueue=queue.enqueue_events, config=CONFIG, clock=lambda: NOW)
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


@pytest.mark.parametrize("odd", ["x" * 500, "nul\x00inside", "lone\ud800surrogate"])
def test_a_delivery_id_the_store_cannot_hold_is_deduplicated_by_its_hash(
    client: TestClient, queue: SyncQueue, odd: str
) -> None:
    """An over-long or unprintable delivery id is recorded by its hash, so it neither fails the
    deliveries grouped with it nor escapes de-duplication."""
    body = json.dumps({"id": odd, "tickets": ["DS-1"]}).encode()
    assert post(client, body).status_code == 202
    assert post(client, body).json()["status"] == "duplicate"
    assert queue.depth() == 1
    event = ChangeEvent(system="jira", event="updated", ticket="DS-1", delivery_id=odd)
    assert delivery_key("jira", [event], body).startswith("jira:sha256-id:")


def test_webhook_paths_take_only_post(client: TestClient, queue: SyncQueue) -> None:
    """Another method on a webhook path is 405 naming POST; an unknown path is 404."""
    response = client.get("/webhooks/jira")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert client.post("/webhooks/zendesk", content=b"{}").status_code == 404
    assert queue.depth() == 0


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


class Served:
    """An app served by uvicorn on 127.0.0.1, port 0, in a thread (as the daemon serves it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{path}"

    def stop(self) -> None:
        """Ask for the graceful shutdown the daemon asks for on SIGTERM, and wait for it."""
        self.server.should_exit = True
        self.thread.join(20)


def test_real_uvicorn_server_on_a_free_port(store: Store, queue: SyncQueue) -> None:
    """Served by uvicorn on 127.0.0.1 port 0, a delivery is accepted over real HTTP."""
    app = create_app(store=store, enqueue=queue.enqueue_events, config=CONFIG)
    with Served(app) as served:
        body = _jira_issue_updated()
        response = requests.post(
            served.url("/webhooks/jira"),
            data=body,
            headers={"X-Hub-Signature": jira_webhook.sign(JIRA_SECRET, body)},
            timeout=10,
        )
        assert response.status_code == 202
        assert requests.get(served.url("/healthz"), timeout=10).status_code == 200
    assert queue.depth() == 1


class HeldQueue:
    """The real queue's group write, held until `release` and failing the groups in `fail`.

    Records the tickets of each group it is handed, at the moment it is handed them.
    """

    def __init__(self, queue: SyncQueue) -> None:
        self.queue = queue
        self.release = threading.Event()
        self.groups: list[list[str]] = []
        self.fail: set[int] = set()

    def __call__(self, events: Sequence[ChangeEvent]) -> None:
        index = len(self.groups)
        self.groups.append([e.ticket for e in events])
        if not self.release.wait(20):
            raise AssertionError("the test never released the queue write")
        if index in self.fail:
            raise OSError("disk full")
        self.queue.enqueue_events(events)

    def wait_for_groups(self, count: int) -> None:
        """Block until `count` groups have reached the queue write."""
        deadline = time.monotonic() + 20
        while len(self.groups) < count:
            assert time.monotonic() < deadline, f"{len(self.groups)} groups, not {count}"
            time.sleep(0.01)


class CountingParser:
    """The fake parser, counting the deliveries it has let through to acceptance."""

    def __init__(self) -> None:
        self.parsed = 0

    def __call__(
        self, headers: Mapping[str, str], body: bytes, config: WebhookConfig, now: datetime
    ) -> list[ChangeEvent]:
        events = fake_parser(headers, body, config, now)
        self.parsed += 1
        return events

    def wait_for(self, count: int) -> None:
        """Block until `count` deliveries were parsed, then a moment for them to be queued up."""
        deadline = time.monotonic() + 20
        while self.parsed < count:
            assert time.monotonic() < deadline, f"{self.parsed} deliveries parsed, not {count}"
            time.sleep(0.01)
        time.sleep(0.2)


def post_concurrently(
    pool: ThreadPoolExecutor, served: Served, deliveries: Sequence[tuple[str, str]]
) -> list[Future[requests.Response]]:
    """Post each (delivery id, ticket) as a test delivery from its own thread."""
    return [
        pool.submit(
            requests.post,
            served.url("/webhooks/jira"),
            data=json.dumps({"id": key, "tickets": [ticket]}),
            headers={"X-Test-Signature": "ok"},
            timeout=30,
        )
        for key, ticket in deliveries
    ]


@pytest.fixture
def held(store: Store, queue: SyncQueue) -> Iterator[tuple[Served, HeldQueue, CountingParser]]:
    """A served app whose queue writes wait for the test to release them."""
    held_queue = HeldQueue(queue)
    parser = CountingParser()
    app = create_app(store=store, enqueue=held_queue, config=CONFIG, parsers={"jira": parser})
    with Served(app) as served:
        yield served, held_queue, parser
        held_queue.release.set()


def test_concurrent_deliveries_share_a_write_and_are_answered_once_durable(
    held: tuple[Served, HeldQueue, CountingParser], store: Store, queue: SyncQueue
) -> None:
    """Deliveries arriving during a write share the next; none is answered before it is durable."""
    served, held_queue, parser = held
    with ThreadPoolExecutor(8) as pool:
        [first] = post_concurrently(pool, served, [("d-0", "DS-0")])
        held_queue.wait_for_groups(1)
        rest = post_concurrently(pool, served, [(f"d-{i}", f"DS-{i}") for i in range(1, 6)])
        parser.wait_for(6)
        assert not first.done() and not any(r.done() for r in rest)
        assert queue.depth() == 0
        held_queue.release.set()
        answers = [f.result() for f in [first, *rest]]
    assert [a.status_code for a in answers] == [202] * 6
    assert len(held_queue.groups) == 2 and held_queue.groups[0] == ["DS-0"]
    assert sorted(held_queue.groups[1]) == [f"DS-{i}" for i in range(1, 6)]
    assert queue.depth() == 6
    assert store.record_deliveries({f"jira:d-{i}": "jira" for i in range(6)}) == set()


def test_a_failed_queue_write_refuses_its_group_and_a_redelivery_is_accepted(
    held: tuple[Served, HeldQueue, CountingParser], store: Store, queue: SyncQueue
) -> None:
    """Every delivery of a group whose queue write fails gets 503 and is forgotten, so its retry
    is accepted; the group before it is not affected."""
    served, held_queue, parser = held
    held_queue.fail = {1}
    doomed = [(f"d-{i}", f"DS-{i}") for i in range(1, 5)]
    with ThreadPoolExecutor(8) as pool:
        [first] = post_concurrently(pool, served, [("d-0", "DS-0")])
        held_queue.wait_for_groups(1)
        refused = post_concurrently(pool, served, doomed)
        parser.wait_for(5)
        held_queue.release.set()
        assert first.result().status_code == 202
        answers = [f.result() for f in refused]
        assert [a.status_code for a in answers] == [503] * 4
        assert all(a.json()["status"] == "unavailable" for a in answers)
        assert store.status_counts().deliveries == 1 and queue.depth() == 1
        retried = [f.result() for f in post_concurrently(pool, served, doomed)]
    assert [a.status_code for a in retried] == [202] * 4
    assert queue.depth() == 5


def test_duplicates_in_one_group_and_across_groups_are_answered_duplicate(
    held: tuple[Served, HeldQueue, CountingParser], queue: SyncQueue
) -> None:
    """In a group, a repeated id is accepted once; an id accepted by an earlier group is a
    duplicate; only the accepted ones are queued."""
    served, held_queue, parser = held
    with ThreadPoolExecutor(8) as pool:
        [first] = post_concurrently(pool, served, [("d-0", "DS-0")])
        held_queue.wait_for_groups(1)
        again = post_concurrently(pool, served, [("d-1", "DS-1"), ("d-1", "DS-1"), ("d-0", "DS-0")])
        parser.wait_for(4)
        held_queue.release.set()
        assert first.result().status_code == 202
        twins = [f.result() for f in again[:2]]
        late = again[2].result()
    assert sorted(a.status_code for a in twins) == [200, 202]
    assert [a.json()["status"] for a in twins if a.status_code == 200] == ["duplicate"]
    assert late.status_code == 200 and late.json()["status"] == "duplicate"
    assert held_queue.groups == [["DS-0"], ["DS-1"]]
    assert queue.depth() == 2


def test_shutdown_answers_the_deliveries_in_flight_before_the_server_exits(
    held: tuple[Served, HeldQueue, CountingParser], store: Store, queue: SyncQueue
) -> None:
    """A graceful shutdown (the daemon's SIGTERM path) waits for pending deliveries to be made
    durable and answered."""
    served, held_queue, parser = held
    with ThreadPoolExecutor(8) as pool:
        pending = post_concurrently(pool, served, [(f"d-{i}", f"DS-{i}") for i in range(5)])
        parser.wait_for(5)
        stopping = pool.submit(served.stop)
        time.sleep(0.5)
        assert served.thread.is_alive() and not stopping.done()
        assert not any(f.done() for f in pending)
        held_queue.release.set()
        answers = [f.result() for f in pending]
        stopping.result()
    assert [a.status_code for a in answers] == [202] * 5
    assert not served.thread.is_alive()
    assert queue.depth() == 5 and store.status_counts().deliveries == 5
