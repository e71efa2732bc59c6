"""System health: what each system last did, kept in the store, judged for /healthz and metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.errors import AuthFailed, InvalidRequest, ServerUnavailable
from sync.runtime import metrics
from sync.runtime.health import (
    HealthBoard,
    HealthPolicy,
    SystemState,
    read_states,
    reason_of,
    verdict,
)
from sync.store.database import Store
from tests.sync.store_backends import opened_store

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store on each backend."""
    with opened_store(request.param, tmp_path) as opened:
        yield opened


def test_failures_count_in_a_row_until_a_success(store: Store) -> None:
    """Each failure adds one with the vendor's reason; a success resets the count, keeps the
    last error and its time for the operator."""
    clock = Clock()
    board = HealthBoard(store.db, clock=clock)
    board.failed("jira", ServerUnavailable("GET /search: HTTP 503", system="jira"))
    clock.now += timedelta(seconds=30)
    board.failed("jira", ServerUnavailable("GET /search: HTTP 502", system="jira"))
    state = read_states(store.db)["jira"]
    assert state.consecutive_failures == 2
    assert state.failing_since == T0
    assert state.last_error == "ServerUnavailable: GET /search: HTTP 502"
    assert not state.up
    clock.now += timedelta(seconds=30)
    board.succeeded("jira")
    state = read_states(store.db)["jira"]
    assert (state.consecutive_failures, state.failing_since) == (0, None)
    assert state.last_success_at == clock.now and state.up
    assert state.last_error == "ServerUnavailable: GET /search: HTTP 502"


def test_a_refusal_of_one_request_is_told_but_not_counted(store: Store) -> None:
    """A 400 means the system answered: the reason is kept, the failure count is not raised."""
    board = HealthBoard(store.db, clock=Clock())
    board.failed("servicenow", InvalidRequest("PATCH: HTTP 400: bad state"), counts=False)
    state = read_states(store.db)["servicenow"]
    assert state.consecutive_failures == 0
    assert state.last_error == "InvalidRequest: PATCH: HTTP 400: bad state"


def test_a_pause_is_seen_by_every_process_and_ends_once(store: Store) -> None:
    """A system paused by one board is paused for another (another process); only the first
    pause and the first resume report True."""
    here = HealthBoard(store.db, clock=Clock())
    there = HealthBoard(store.db, clock=Clock())
    assert here.pause("jira", "AuthFailed: HTTP 401")
    assert not there.pause("jira", "AuthFailed: HTTP 401")
    assert there.paused("jira") == "AuthFailed: HTTP 401"
    assert there.paused("servicenow") is None
    assert there.resume("jira")
    assert not here.resume("jira")
    assert here.states(fresh=True)["jira"].paused is False


def test_resume_all_resumes_every_paused_system(store: Store) -> None:
    """A reload resumes whatever was paused, and says which."""
    board = HealthBoard(store.db, clock=Clock())
    board.pause("jira", "AuthFailed")
    board.pause("email", "AuthFailed")
    board.succeeded("servicenow")
    assert sorted(board.resume_all()) == ["email", "jira"]
    assert not any(s.paused for s in board.states(fresh=True).values())


def test_successes_are_written_at_most_every_few_seconds(store: Store) -> None:
    """A busy system's successes do not write a row each; the first after a failure does."""
    clock = Clock()
    board = HealthBoard(store.db, clock=clock)
    board.succeeded("jira")
    clock.now += timedelta(seconds=1)
    board.succeeded("jira")
    assert read_states(store.db)["jira"].last_success_at == T0
    board.failed("jira", ServerUnavailable("503", system="jira"))
    clock.now += timedelta(seconds=1)
    board.succeeded("jira")
    state = read_states(store.db)["jira"]
    assert state.last_success_at == T0 + timedelta(seconds=2)
    assert state.consecutive_failures == 0


def test_a_poll_success_is_kept_apart_from_a_call(store: Store) -> None:
    """A polling pass records its own last success."""
    board = HealthBoard(store.db, clock=Clock())
    board.succeeded("servicenow", "poll")
    state = read_states(store.db)["servicenow"]
    assert state.last_poll_success_at == T0 and state.last_success_at is None


def test_reason_has_the_type_and_the_message_bounded() -> None:
    """What is kept of an error: its type and its text, never more than a screenful."""
    assert reason_of(AuthFailed("HTTP 401", system="jira")) == "AuthFailed: HTTP 401"
    assert reason_of(RuntimeError()) == "RuntimeError"
    assert len(reason_of(ValueError("x" * 5000))) == 500


def test_verdict_names_the_pause_the_long_failure_and_the_stuck_queue() -> None:
    """Each problem is one sentence an operator can act on; short failures are not problems."""
    policy = HealthPolicy(
        failing_after=timedelta(minutes=5), queue_stuck_after=timedelta(minutes=10)
    )
    states = [
        SystemState("jira", paused_at=T0, paused_reason="AuthFailed: HTTP 401"),
        SystemState(
            "servicenow",
            consecutive_failures=4,
            failing_since=T0,
            last_error="TransportFailed: refused",
        ),
        SystemState("email", consecutive_failures=1, failing_since=T0 + timedelta(minutes=9)),
    ]
    judged = verdict(
        states,
        T0 + timedelta(minutes=10),
        policy,
        queue_age=601.0,
        in_doubt={"email": 1},
        held={"jira": 2},
    )
    assert not judged.healthy
    assert judged.problems == (
        "jira paused: authentication refused (AuthFailed: HTTP 401); 2 events wait for it",
        "servicenow failing: every call for 600 s (4 in a row), last: TransportFailed: refused",
        "queue stuck: the oldest ready task has waited 601 s (limit 600 s)",
    )
    assert judged.notes[0].startswith("1 email message in doubt after an interrupted send")
    calm = verdict([SystemState("jira")], T0, policy, queue_age=3.0)
    assert calm.healthy and calm.notes == ()


def test_metrics_show_each_system_up_and_its_last_successes(store: Store) -> None:
    """escalation_sync_up and the last-success timestamps come from the board at each scrape."""
    clock = Clock()
    board = HealthBoard(store.db, clock=clock)
    board.succeeded("servicenow", "poll")
    board.succeeded("servicenow")
    board.pause("jira", "AuthFailed")
    metrics.watch_systems(lambda: board.states(fresh=True))
    try:
        text = metrics.render()[0].decode()
    finally:
        metrics.watch_systems(dict)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("escalation_sync_up", (("system", "jira"),))] == 0.0
    assert samples[("escalation_sync_up", (("system", "servicenow"),))] == 1.0
    last = "escalation_sync_last_success_timestamp_seconds"
    for kind in ("poll", "call"):
        key = (last, (("kind", kind), ("system", "servicenow")))
        assert samples[key] == T0.timestamp()
    assert any(name == "escalation_sync_build_info" for name, _ in samples)
