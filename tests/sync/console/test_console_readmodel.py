"""The read model: what each page is given, read from the store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sync.config.settings import Settings
from sync.console.readmodel import (
    BoardFilter,
    LagHistory,
    Loaded,
    ReadModel,
    redact,
    to_toml,
)
from sync.runtime import metrics
from sync.store.database import Store
from tests.sync.console.seed import ACTIVE_SYS_ID, NOW, seed


@pytest.fixture
def model(settings: Settings, store: Store) -> ReadModel:
    """A read model over the seeded store, with the clock at NOW."""
    seed(store)
    return ReadModel(store, lambda: Loaded(settings, "abc123", NOW), clock=lambda: NOW)


def test_board_sorts_escalations_by_state(model: ReadModel) -> None:
    """Active, awaiting approval and recently refused escalations each land in their list."""
    board = model.board()
    assert [r.key for r in board.active] == ["INC0010002"]
    assert [r.key for r in board.waiting] == ["INC0010004"]
    assert [r.key for r in board.recent] == ["INC0010003"]
    active = board.active[0]
    assert (active.level, active.priority, active.team) == ("L2", "P1", "Payments")
    assert (active.requested_by, active.approved_by) == ("lee.l1", "sme.alice")
    assert active.engineering_key == "DS-7"
    assert active.sla_due is not None and active.sla_due > NOW
    assert board.waiting[0].since == NOW - timedelta(minutes=50)


def test_board_limits_in_use(model: ReadModel) -> None:
    """Limits read "n of m": today's escalations and the active ones against the policy."""
    board = model.board()
    texts = {u.name: u.text for u in board.limits}
    assert texts == {"per day": "1 of 3 today", "active": "1 of 5 active"}
    assert board.per_assignee == (("Lee Support", 1),)
    assert board.per_assignee_limit == 1


def test_board_filters(model: ReadModel) -> None:
    """Level, priority and team narrow every list; the options list what is there."""
    assert model.board().teams == ("Billing", "Messaging", "Payments")
    only_p2 = model.board(BoardFilter(priority="P2"))
    assert not only_p2.active and len(only_p2.waiting) == 1
    billing = model.board(BoardFilter(team="Billing"))
    assert [r.key for r in billing.waiting] == ["INC0010004"] and not billing.recent


def test_ticket_page_by_either_record(model: ReadModel) -> None:
    """The pair is found from the ServiceNow sys_id, its number or the Jira key, with the
    audit trail of both records, the mail and the dead letter."""
    for system, ident in (
        ("servicenow", ACTIVE_SYS_ID),
        ("jira", "DS-7"),
        ("servicenow", "INC0010002"),
    ):
        view = model.ticket(system, ident)
        assert view is not None, ident
        assert view.ref == f"servicenow:{ACTIVE_SYS_ID}"
    assert view is not None
    assert view.itsm.key == "INC0010002"
    assert view.engineering is not None and view.engineering.key == "DS-7"
    assert view.state_label == "Escalated"
    assert {(e.system, e.field) for e in view.timeline} == {
        ("servicenow", "labels"),
        ("jira", "status"),
    }
    assert [m.status for m in view.mails] == ["pending", "dead"]
    assert [d.error_class for d in view.dead_letters] == ["WriteRefused"]
    assert model.ticket("servicenow", "nope") is None


def test_health(model: ReadModel) -> None:
    """Health lists both systems, the dead letter and the dead mail, worst first."""
    health = model.health()
    assert [s.system for s in health.systems][:2] == ["servicenow", "jira"]
    snow = health.systems[0]
    assert snow.up is None and snow.last_error is not None and "close notes" in snow.last_error
    assert [d.reason for d in health.dead_letters] == [
        "HTTP 400: Data policy: close notes are required"
    ]
    assert [m.status for m in health.outbox] == ["dead", "pending"]
    assert health.pairs == 1


def test_configuration_shows_no_secret(model: ReadModel, settings: Settings) -> None:
    """Connection settings show whether a secret is set, never its value."""
    config = model.configuration()
    shown = repr(config)
    for secret in (
        "jira-token-never-shown",
        "jira-hook-secret-never-shown",
        "snow-password-never-shown",
        "snow-hook-never-shown",
        "argon2",
    ):
        assert secret not in shown
    jira = dict(dict(config.connections)["jira"])
    assert jira["api_token"] == "set (hidden)"
    assert settings.compiled_policy is not None
    assert config.policy_name == settings.compiled_policy.name
    assert "[mapping.systems.jira.fields.status]" in config.mapping_text


def test_redaction_of_urls_and_tables() -> None:
    """A password inside a URL or under a secret-looking key is hidden."""
    assert redact("postgresql+psycopg://app:s3cret@db/x") == "postgresql+psycopg://app:***@db/x"
    text = to_toml({"smtp": {"host": "mail", "password": "p4ss"}}, "email")
    assert "p4ss" not in text and '"(hidden)"' in text and 'host = "mail"' in text


def test_what_if_runs_policy_simulate(model: ReadModel) -> None:
    """The what-if form's run is `policy simulate` over the given lines, limits overridable."""
    from sync.console.app import SAMPLE

    text = SAMPLE.read_text()
    as_is = model.what_if("current", text, {})
    assert as_is.report is not None and not as_is.problems
    tighter = model.what_if("current", text, {"max_per_day": 1})
    assert tighter.report is not None
    assert tighter.report.totals().escalated < as_is.report.totals().escalated
    broken = model.what_if("current", '{"ticket": 1}\nnot json', {})
    assert broken.report is None and len(broken.problems) == 2
    assert model.what_if("no-such-preset", text, {}).problems


def test_lag_history_takes_the_mean_of_each_interval() -> None:
    """Each sample's lag is the growth of the histogram's sum over the growth of its count."""
    times = iter([NOW, NOW + timedelta(seconds=30), NOW + timedelta(seconds=60)])
    history = LagHistory(lambda: 4, clock=lambda: next(times))
    history.sample()
    metrics.SYNC_LAG.labels(system="console-test").observe(2.0)
    metrics.SYNC_LAG.labels(system="console-test").observe(4.0)
    second = history.sample()
    third = history.sample()
    assert second.lag["console-test"] == pytest.approx(3.0)
    assert third.lag["console-test"] is None
    assert second.queue_depth == 4
    assert len(history.samples()) == 3
