"""JiraConnector over real HTTP against the Jira simulator on 127.0.0.1."""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.errors import InvalidRequest
from connectors.jira import CommentPolicy, JiraConnector, comment_is_public, parse_jira_datetime
from connectors.jira_webhook import DeliveryDeduper, parse_webhook
from connectors.retry import RetryPolicy
from simulators.common import FaultConfig, ServerThread
from simulators.jira import JiraSimulator

ZONE = "America/St_Johns"  # UTC-3:30: a literal read in the wrong zone misses whole windows


class Clock:
    """A settable clock for the simulator, so many changes land in one minute."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self.now = moment


@pytest.fixture()
def clock() -> Clock:
    return Clock(datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC))


@pytest.fixture()
def sim(clock: Clock) -> Iterator[JiraSimulator]:
    simulator = JiraSimulator(time_zone=ZONE, clock=clock, webhook_base_delay=0.05)
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


def connector(sim: JiraSimulator, **kwargs: Any) -> JiraConnector:
    kwargs.setdefault("retry", RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05))
    return JiraConnector(
        sim.url, email=sim.integration.email, api_token=sim.integration.api_token, **kwargs
    )


def test_polling_same_minute_in_non_utc_zone_neither_skips_nor_repeats(
    sim: JiraSimulator, clock: Clock
) -> None:
    """300 issues changed within one minute, read across pages in UTC-3:30, each once."""
    start = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    first_batch = []
    for n in range(150):
        clock.set(start + timedelta(milliseconds=100 * n + 1))
        first_batch.append(sim.create_issue("ENG", f"first {n}"))
    jira = connector(sim)
    assert jira.myself()["timeZone"] == ZONE
    seen = list(jira.search_changed_since(start - timedelta(minutes=1), jql="project = ENG"))
    assert sorted(i["key"] for i in seen) == sorted(first_batch)
    watermark = max(parse_jira_datetime(i["fields"]["updated"]) for i in seen)
    assert watermark.utcoffset() == timedelta(hours=-3, minutes=-30)

    # Same minute again: new issues, and some earlier ones changed once more.
    second_batch = []
    for n in range(150):
        clock.set(start + timedelta(seconds=20, milliseconds=100 * n))
        second_batch.append(sim.create_issue("ENG", f"second {n}"))
    clock.set(start + timedelta(seconds=40))
    for key in first_batch[:10]:
        sim.update(key, {"labels": [{"add": "touched"}]})
    sim.create_issue("SUP", "other project")

    again = list(jira.search_changed_since(watermark, jql="project = ENG"))
    keys = [i["key"] for i in again]
    assert len(keys) == len(set(keys)) == 160
    assert set(keys) == set(second_batch) | set(first_batch[:10])
    assert list(jira.search_changed_since(watermark, jql="project = ENG")) == []
    stats = sim.stats()["requests"]
    assert stats["POST /rest/api/3/search/jql"] >= 4  # at least two pages per poll


def test_transitions_follow_the_workflow_by_target_status(sim: JiraSimulator) -> None:
    """Statuses are reached by the transitions leading there; a dead end is a clear error."""
    jira = connector(sim)
    key = jira.create_issue(
        {"project": {"key": "ENG"}, "summary": "Checkout fails", "issuetype": {"name": "Bug"}}
    )["key"]
    jira.transition_to(key, "In Progress")
    jira.transition_to(key, "In Review")
    jira.transition_to(key, "Done")
    issue = jira.get_issue(key, fields=["status", "resolution"])
    assert issue["fields"]["status"]["name"] == "Done"
    assert issue["fields"]["resolution"]["name"] == "Done"
    with pytest.raises(InvalidRequest, match="reachable: To Do"):
        jira.transition_to(key, "In Review")
    jira.transition_to(key, "Done")  # already there: nothing to do
    names = [h["items"][-1]["toString"] for h in sim.issue_record(key).changelog]
    assert names == ["In Progress", "In Review", "Done"]


def test_comments_public_vs_internal_on_software_project(sim: JiraSimulator) -> None:
    """Internal comments are role-restricted; the engineer's and ours are classified alike."""
    jira = connector(sim)
    key = sim.create_issue("ENG", "Escalated bug")
    jira.add_comment(key, "Customer update", public=True)
    jira.add_comment(key, "Approval note", public=False)
    sim.comment(key, "Root cause found in cache layer", public=False)
    sim.comment(key, "Fix deployed", public=True)
    comments = jira.get_issue(key)["fields"]["comment"]["comments"]
    assert [(c["body"], comment_is_public(c)) for c in comments] == [
        ("Customer update", True),
        ("Approval note", False),
        ("Root cause found in cache layer", False),
        ("Fix deployed", True),
    ]
    assert comments[1]["visibility"] == {"type": "role", "value": "Administrators"}


def test_comments_public_vs_internal_on_service_desk(sim: JiraSimulator) -> None:
    """On a service desk the sd.public.comment property tells public from internal."""
    jira = connector(sim, comments=CommentPolicy(service_desk=True, visibility_type=None))
    key = sim.create_issue("SUP", "Customer cannot log in", issuetype="Incident")
    jira.add_comment(key, "We are on it", public=True)
    jira.add_comment(key, "Escalating to L2", public=False)
    sim.comment(key, "Agent note", public=False)
    comments = jira.get_comments(key)
    assert [comment_is_public(c) for c in comments] == [True, False, False]
    via_issue = jira.get_issue(key)["fields"]["comment"]["comments"]
    assert [comment_is_public(c) for c in via_issue] == [True, False, False]
    assert "visibility" not in via_issue[1]


def test_attachments_links_labels_and_bulk_round_trip(sim: JiraSimulator) -> None:
    """Upload, list, download, link, label and bulk-create against the simulator."""
    jira = connector(sim)
    key = sim.create_issue("ENG", "Has logs", labels=["triage"])
    payload = b"log line\n" * 20_000
    (meta,) = jira.add_attachment(key, "app.log", io.BytesIO(payload))
    assert meta["size"] == len(payload)
    assert [a["filename"] for a in jira.list_attachments(key)] == ["app.log"]
    assert b"".join(jira.download_attachment(meta["id"])) == payload

    first = jira.add_remote_link(key, "https://sn.example/inc?sys_id=1", "INC0001", "sn:1")
    again = jira.add_remote_link(key, "https://sn.example/inc?sys_id=1", "INC0001 (P1)", "sn:1")
    assert first["id"] == again["id"]
    assert [link["object"]["title"] for link in jira.get_remote_links(key)] == ["INC0001 (P1)"]

    jira.update_labels(key, add=["ESCALATION"], remove=["triage"])
    jira.set_priority(key, "Highest")
    fields = jira.get_issue(key, fields=["labels", "priority"])["fields"]
    assert (fields["labels"], fields["priority"]["name"]) == (["ESCALATION"], "Highest")

    good = {"project": {"key": "ENG"}, "issuetype": {"name": "Task"}}
    batch = [dict(good, summary=f"bulk {n}") for n in range(60)]
    batch[55] = dict(good, summary="bad", priority={"name": "Urgentest"})
    result = jira.bulk_create(batch)
    assert len(result.created) == 59
    assert [(e.index, e.status) for e in result.errors] == [(55, 400)]
    assert "priority" in result.errors[0].messages[0]


def test_429_storm_converges(sim: JiraSimulator) -> None:
    """Under 40% 429s (with and without Retry-After) and 10% 503s every call lands once."""
    waits: list[float] = []
    jira = connector(
        sim, retry=RetryPolicy(attempts=40, base_delay=0.001, max_delay=2.0, sleep=waits.append)
    )
    jira.myself()
    sim.set_faults(
        FaultConfig(
            rate_429=0.3, rate_429_no_retry_after=0.1, rate_5xx=0.1, retry_after_seconds=2, seed=7
        )
    )
    keys = []
    for n in range(30):
        key = jira.create_issue(
            {"project": {"key": "ENG"}, "summary": f"storm {n}", "issuetype": {"name": "Task"}}
        )["key"]
        jira.transition_to(key, "In Progress")
        keys.append(key)
    sim.set_faults(FaultConfig())
    assert len(set(sim.keys())) == 30
    assert all(sim.issue(k)["fields"]["status"]["name"] == "In Progress" for k in keys)
    faults = sim.stats()["faults"]
    assert faults["429"] > 0 and faults["429-no-retry-after"] > 0 and faults["5xx"] > 0
    assert 2.0 in waits  # Retry-After honoured
    assert all(w <= 2.0 for w in waits)


def test_signed_webhooks_are_verified_and_redeliveries_deduped(sim: JiraSimulator) -> None:
    """Simulator deliveries verify with the secret; a retried delivery is dropped downstream."""
    secret = "hook-secret"
    received: list[tuple[dict[str, str], bytes]] = []
    failures = {"left": 2}
    lock = threading.Lock()
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> Response:
        body = await request.body()
        with lock:
            received.append((dict(request.headers), body))
            if failures["left"] > 0:
                failures["left"] -= 1
                return Response(status_code=500)
        return Response(status_code=204)

    server = ServerThread(receiver).start()
    try:
        sim.register_webhook(f"{server.url}/hook", secret=secret, events=["jira:issue_updated"])
        jira = connector(sim)
        key = sim.create_issue("ENG", "Webhook me")
        jira.set_priority(key, "High")
        jira.add_comment(key, "internal", public=False)
        assert sim.drain_webhooks(10)
    finally:
        server.stop()
    deduper = DeliveryDeduper()
    downstream = []
    for headers, body in received:
        downstream += deduper.fresh(parse_webhook(headers, body, secret=secret))
    assert len(received) == 4  # 2 deliveries, 2 failed attempts retried
    ids = [h["x-atlassian-webhook-identifier"] for h, _ in received]
    assert len(set(ids)) == 2
    retried = [h for h, _ in received if "x-atlassian-webhook-retry" in h]
    assert len(retried) == 2
    assert {h["x-atlassian-webhook-identifier"] for h in retried} <= set(ids)
    downstream.sort(key=lambda e: e.event, reverse=True)
    assert [(e.event, e.ticket) for e in downstream] == [
        ("issue_updated", key),
        ("comment_created", key),
    ]
    assert downstream[0].changed_fields == ("priority",)
    assert downstream[0].author == sim.integration.account_id


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[tuple[JiraSimulator, Clock]]:
    clock = Clock(datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC))
    simulator = JiraSimulator(time_zone="Asia/Kathmandu", clock=clock, seed=False)
    simulator.start()
    try:
        yield simulator, clock
    finally:
        simulator.stop()


_labels = itertools.count()
_project_names = (
    f"P{a}{b}" for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rounds=st.lists(
        st.lists(st.tuples(st.integers(0, 7), st.integers(0, 90_000)), min_size=1, max_size=25),
        min_size=1,
        max_size=4,
    )
)
def test_polling_property_nothing_skipped_nothing_repeated(
    shared_sim: tuple[JiraSimulator, Clock], rounds: list[list[tuple[int, int]]]
) -> None:
    """Whatever changes land between polls (same minute, same millisecond), each is seen once."""
    sim, clock = shared_sim
    project = next(_project_names)
    sim.add_project(project)
    keys = [sim.create_issue(project, f"i{n}") for n in range(8)]
    jira = connector(sim)
    watermark = sim.state.now() - timedelta(seconds=1)
    yielded: list[tuple[str, str]] = []
    for changes in rounds:
        # A later round starts after the last change: one issue changed twice in the same
        # millisecond has one `updated`, and that is one change as far as Jira shows it.
        base = sim.state.now() + timedelta(milliseconds=1)
        for index, offset in sorted(changes, key=lambda c: c[1]):
            clock.set(base + timedelta(milliseconds=offset))
            sim.update(keys[index], {"labels": [{"add": f"l{next(_labels)}"}]})
        expected = {
            (k, sim.issue(k, fields=["updated"])["fields"]["updated"])
            for k in {keys[i] for i, _ in changes}
        }
        got = [
            (i["key"], i["fields"]["updated"])
            for i in jira.search_changed_since(watermark, jql=f"project = {project}")
        ]
        assert expected <= set(got)
        yielded += got
        watermark = max(parse_jira_datetime(u) for _, u in got)
    assert len(yielded) == len(set(yielded))
