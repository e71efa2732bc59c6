"""ServiceNowConnector over real HTTP against the ServiceNow simulator on 127.0.0.1."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.errors import ServerUnavailable
from connectors.retry import RetryPolicy
from connectors.servicenow import BatchRequest, ServiceNowConnector
from connectors.servicenow_webhook import ReplayGuard, parse_webhook
from simulators.common import FaultConfig
from simulators.servicenow import ServiceNowSimulator

FAST = RetryPolicy(attempts=12, base_delay=0.005, max_delay=0.05)
SECOND = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)


@pytest.fixture()
def sim() -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator() as running:
        running.add_user("svc.sync", name="Escalation Sync", password="sync-pw")
        running.add_user("abel.tuter", name="Abel Tuter", password="abel-pw")
        yield running


class CountingSession(requests.Session):
    """A session that counts the requests it sends."""

    calls = 0

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.calls += 1
        return super().request(*args, **kwargs)


def connector(sim: ServiceNowSimulator, **kwargs: Any) -> ServiceNowConnector:
    options: dict[str, Any] = {"username": "svc.sync", "password": "sync-pw", "retry": FAST}
    options.update(kwargs)
    return ServiceNowConnector(sim.url, **options)


def test_polling_thousands_of_records_sharing_one_second(sim: ServiceNowSimulator) -> None:
    """3,000 records stamped with the same second, paged 100 at a time: each exactly once."""
    sim.freeze_time(SECOND)
    seeded = {r["sys_id"] for r in sim.seed_incidents(3000)}
    session = CountingSession()
    sn = connector(sim, page_size=100, session=session)
    got = list(sn.changed_since(SECOND, overlap=timedelta(0)))
    ids = [r["sys_id"] for r in got]
    assert len(ids) == len(set(ids)) == 3000
    assert set(ids) == seeded
    assert ids == sorted(ids)
    assert session.calls == 31  # 3,000 rows, 99 new per page after the first


def test_polling_while_records_change_skips_none(sim: ServiceNowSimulator) -> None:
    """Records updated during the scan move to the end; the scan still sees every record."""
    sim.freeze_time(SECOND)
    seeded = [r["sys_id"] for r in sim.seed_incidents(600)]
    sn = connector(sim, page_size=50)
    seen: list[tuple[str, str]] = []
    later = SECOND
    for row in sn.changed_since(SECOND, overlap=timedelta(0)):
        seen.append((row["sys_id"], row["sys_mod_count"]))
        if len(seen) % 40 == 0:
            # Touch a record already read (shifts every later offset) and one not yet read.
            later += timedelta(seconds=1)
            sim.freeze_time(later)
            sim.update_incident(seen[len(seen) // 2][0], {"urgency": "2"}, as_user="abel.tuter")
            sim.update_incident(seeded[-1 - len(seen) // 40], {"urgency": "1"})
    assert len(seen) == len(set(seen))
    assert {sys_id for sys_id, _ in seen} == set(seeded)


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator() as running:
        yield running


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    count=st.integers(min_value=1, max_value=60),
    page_size=st.integers(min_value=2, max_value=9),
    touches=st.lists(
        st.tuples(st.integers(min_value=0, max_value=80), st.integers(min_value=0)), max_size=12
    ),
)
def test_scan_never_skips_whatever_changes_mid_scan(
    shared_sim: ServiceNowSimulator,
    count: int,
    page_size: int,
    touches: list[tuple[int, int]],
) -> None:
    """For any page size and any updates between pages, every record is seen, none twice."""
    marker = f"scan-{uuid.uuid4().hex}"
    shared_sim.freeze_time(SECOND)
    seeded = [r["sys_id"] for r in shared_sim.seed_incidents(count, fields={"category": marker})]
    sn = connector(shared_sim, username="admin", password="admin", page_size=page_size)
    seen: list[tuple[str, str]] = []
    clock = SECOND
    try:
        for row in sn.changed_since(SECOND, query=f"category={marker}", overlap=timedelta(0)):
            seen.append((row["sys_id"], row["sys_mod_count"]))
            for _position, which in (t for t in touches if t[0] == len(seen)):
                clock += timedelta(seconds=1)
                shared_sim.freeze_time(clock)
                target = seeded[which % count]
                shared_sim.update_incident(target, {"description": f"touched at {clock}"})
    finally:
        shared_sim.freeze_time(None)
    assert len(seen) == len(set(seen))
    assert {sys_id for sys_id, _ in seen} == set(seeded)


def test_priority_bump_through_impact_and_urgency(sim: ServiceNowSimulator) -> None:
    """Writing impact and urgency raises the priority the instance computes and returns it."""
    sn = connector(sim)
    created = sn.create({"short_description": "Payroll export fails"})
    assert created["priority"] == "5"
    assert sn.set_priority(created["sys_id"], "1", "2") == "2"
    assert sn.get_record(created["sys_id"])["priority"] == "2"
    shown = sn.get_record(created["sys_id"], fields=["priority"], display_value="true")
    assert shown == {"priority": "2 - High"}


def test_comments_are_public_and_work_notes_internal(sim: ServiceNowSimulator) -> None:
    """A public comment lands in comments, an internal one in work_notes, both in the journal."""
    sn = connector(sim)
    inc = sn.create({"short_description": "VPN drops"})
    sim.add_comment(inc["sys_id"], "It drops every hour", as_user="abel.tuter")
    sn.add_comment(inc["sys_id"], "We are on it", public=True)
    sn.add_comment(inc["sys_id"], "Looks like the DHCP lease", public=False)
    journal = sn.journal(inc["sys_id"])
    # One second holds all three; within a second the platform orders by sys_id.
    assert sorted((j["element"], j["value"], j["sys_created_by"]) for j in journal) == [
        ("comments", "It drops every hour", "abel.tuter"),
        ("comments", "We are on it", "svc.sync"),
        ("work_notes", "Looks like the DHCP lease", "svc.sync"),
    ]
    record = sn.get_record(inc["sys_id"], display_value="true")
    assert "We are on it" in record["comments"]
    assert "DHCP" not in record["comments"] and "DHCP" in record["work_notes"]


def test_429_without_retry_after_converges(sim: ServiceNowSimulator) -> None:
    """With 30% bare 429s every operation still completes, and no comment is written twice."""
    sn = connector(sim)
    inc = sn.create({"short_description": "rate limited"})
    sim.configure_faults(FaultConfig(rate_429_no_retry_after=0.3, seed=11))
    try:
        for i in range(20):
            sn.update(inc["sys_id"], {"description": f"round {i}"})
            sn.add_comment(inc["sys_id"], f"comment {i}", public=i % 2 == 0)
            sn.get_record(inc["sys_id"])
        polled = list(sn.changed_since(datetime(2000, 1, 1, tzinfo=UTC)))
    finally:
        sim.configure_faults(FaultConfig())
    assert sim.stats()["faults"]["429-no-retry-after"] > 5
    # Entries written in one second are ordered by sys_id, as the platform orders them.
    values = sorted(j["value"] for j in sn.journal(inc["sys_id"]))
    assert values == sorted(f"comment {i}" for i in range(20))
    assert sim.incident(inc["sys_id"])["description"] == "round 19"
    assert inc["sys_id"] in {r["sys_id"] for r in polled}


def test_oauth_token_is_renewed_after_revocation(sim: ServiceNowSimulator) -> None:
    """OAuth client credentials work, and a revoked token is replaced on the 401."""
    sim.add_oauth_client("sync-client", "client-secret", user_name="svc.sync")
    sn = connector(
        sim, username=None, password=None, client_id="sync-client", client_secret="client-secret"
    )
    first = sn.create({"short_description": "oauth"})
    sim.revoke_tokens()
    assert sn.get_record(first["sys_id"])["sys_created_by"] == "svc.sync"


def test_sleeping_instance_is_server_unavailable(sim: ServiceNowSimulator) -> None:
    """The hibernation page is reported as ServerUnavailable with a clear reason."""
    sn = connector(sim, retry=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001))
    sim.hibernate(True)
    with pytest.raises(ServerUnavailable, match="hibernating"):
        sn.get_record("0" * 32)


def test_attachments_round_trip(sim: ServiceNowSimulator) -> None:
    """A file uploaded through the connector is listed and downloads byte for byte."""
    sn = connector(sim)
    inc = sn.create({"short_description": "logs attached"})
    content = bytes(range(256)) * 1000
    meta = sn.upload_attachment(inc["sys_id"], "trace.bin", io.BytesIO(content))
    assert [m["sys_id"] for m in sn.list_attachments(inc["sys_id"])] == [meta["sys_id"]]
    assert b"".join(sn.download_attachment(meta["sys_id"])) == content


def test_batch_creates_many_records(sim: ServiceNowSimulator) -> None:
    """A Batch API call creates each record and reports each status."""
    sn = connector(sim)
    results = sn.batch(
        [
            BatchRequest(
                id=str(i),
                method="POST",
                url="/api/now/table/incident",
                body={"short_description": f"backfill {i}"},
            )
            for i in range(150)
        ]
    )
    assert all(r.ok and r.status_code == 201 for r in results)
    assert len(sim.incidents("short_descriptionSTARTSWITHbackfill ")) == 150


class _Intake(BaseHTTPRequestHandler):
    secret = "rule-secret"
    guard = ReplayGuard(timedelta(minutes=5))
    events: list[Any] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = dict(self.headers.items())
        found = parse_webhook(
            headers,
            body,
            secret=self.secret,
            now=datetime.now(UTC),
            replay_window=timedelta(minutes=5),
            replay_guard=self.guard,
        )
        self.events.extend(found)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


def test_business_rule_posts_verify_and_skip_the_integration_user(
    sim: ServiceNowSimulator,
) -> None:
    """The simulator's rule posts verify with parse_webhook; the sync's own writes post nothing."""
    _Intake.events = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Intake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sim.set_webhook(
            f"http://127.0.0.1:{server.server_address[1]}/webhooks/servicenow",
            _Intake.secret,
            integration_user="svc.sync",
        )
        inc = sim.create_incident({"short_description": "hooked"}, as_user="abel.tuter")
        sn = connector(sim)
        sn.add_comment(inc["sys_id"], "mirrored from Jira", public=True)
        sim.add_comment(inc["sys_id"], "any news?", as_user="abel.tuter")
        assert sim.wait_for_webhooks(10)
    finally:
        sim.set_webhook(None)
        server.shutdown()
        server.server_close()
    assert [(e.event, e.dedupe_key, e.author) for e in _Intake.events] == [
        ("incident_inserted", f"{inc['sys_id']}:0", "abel.tuter"),
        ("incident_updated", f"{inc['sys_id']}:2", "abel.tuter"),
    ]
    assert all(d.status == 200 for d in sim.deliveries())
