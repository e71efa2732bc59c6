"""escalation.replies.react: what a customer's e-mail verdict moves, as customer_replies says;
and the policy engine never takes a command from a comment that came by e-mail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from escalation.decide import decide
from escalation.decision import LedgerEntry, LedgerView
from escalation.policy import Policy
from escalation.replies import Reply, react
from mapping.errors import ConfigInvalid
from mapping.model import Comment, EscalationState, Ref, Status, System, Visibility

S = EscalationState
ENG = Ref(system=System.JIRA, id="10001", key="ENG-1")
MAIL_MARK = "[escalation-sync origin=servicenow:INC0000001:mail-0f3a9c2b7d1e4a5b6c7d8e9f]"


def verdict(kind: str, *, standing: str = "customer", words: tuple[str, ...] = ("yes",)) -> Reply:
    return Reply(
        sender="carl@customer.example",
        standing=standing,  # type: ignore[arg-type]
        verdict=kind,  # type: ignore[arg-type]
        words=words,
        received=datetime(2026, 3, 10, 11, 0, tzinfo=UTC),
    )


@pytest.fixture
def resolved_ticket(make_ticket: Callable[..., Any]) -> Any:
    return make_ticket(status=Status.RESOLVED)


def test_a_confirmation_closes_while_the_escalation_waits(resolved_ticket, policy: Policy):
    """The customer confirms a resolved escalation: the record moves to closed, a note says who
    confirmed with which words; engineering is left alone."""
    effect = react(policy, resolved_ticket, S.RESOLVED, verdict("confirmed", words=("yes",)))
    assert effect.move_itsm_to is Status.CLOSED
    assert effect.itsm_note is not None
    assert "carl@customer.example" in effect.itsm_note and '"yes"' in effect.itsm_note
    assert "2026-03-10 11:00 UTC" in effect.itsm_note
    assert effect.move_engineering_to is None and effect.engineering_note is None


def test_a_confirmation_counts_only_at_resolution(resolved_ticket, policy: Policy):
    """Before engineering resolved (or after the escalation closed) a "yes" moves nothing."""
    for state in (S.APPROVED, S.CLOSED, None):
        effect = react(policy, resolved_ticket, state, verdict("confirmed"))
        assert effect.empty
        assert effect.reasons[0].rule == "customer_replies.state"


def test_not_fixed_reopens_and_tells_engineering(resolved_ticket, policy: Policy):
    """ "Still fails": the record reopens, engineering gets a note with the words and its record
    reopens too."""
    effect = react(
        policy,
        resolved_ticket,
        S.RESOLVED,
        verdict("not_fixed", words=("still fails",)),
        engineering=ENG,
    )
    assert effect.move_itsm_to is Status.IN_PROGRESS
    assert effect.move_engineering_to is Status.IN_PROGRESS
    assert effect.engineering_note is not None and '"still fails"' in effect.engineering_note
    assert "INC0000001 was reopened" in effect.engineering_note
    assert effect.itsm_note is not None and "reopened (in_progress)" in effect.itsm_note


def test_not_fixed_without_an_engineering_record_reopens_only(resolved_ticket, policy: Policy):
    """No paired record: only the ITSM record moves."""
    effect = react(policy, resolved_ticket, S.RESOLVED, verdict("not_fixed"))
    assert effect.move_itsm_to is Status.IN_PROGRESS
    assert effect.engineering_note is None and effect.move_engineering_to is None


def test_the_policy_says_what_not_fixed_does(resolved_ticket, make_policy):
    """Engineering only told (no reopening there), or not told at all; no ITSM note."""
    told_only = make_policy(
        **{"customer_replies.not_fixed": {"engineering_move_to": "none", "note": False}}
    )
    effect = react(told_only, resolved_ticket, S.RESOLVED, verdict("not_fixed"), engineering=ENG)
    assert effect.engineering_note is not None and effect.move_engineering_to is None
    assert effect.itsm_note is None
    silent = make_policy(**{"customer_replies.not_fixed": {"tell_engineering": False}})
    effect = react(silent, resolved_ticket, S.RESOLVED, verdict("not_fixed"), engineering=ENG)
    assert effect.engineering_note is None
    assert effect.move_engineering_to is Status.IN_PROGRESS


def test_watchers_confirm_only_when_the_policy_says(resolved_ticket, make_policy, policy):
    """A watcher's "yes" moves nothing by default, and closes with watchers_may_confirm."""
    assert react(
        policy, resolved_ticket, S.RESOLVED, verdict("confirmed", standing="watcher")
    ).empty
    allowed = make_policy(**{"customer_replies.watchers_may_confirm": True})
    effect = react(allowed, resolved_ticket, S.RESOLVED, verdict("confirmed", standing="watcher"))
    assert effect.move_itsm_to is Status.CLOSED


def test_unclear_asks_a_person_and_moves_nothing(resolved_ticket, make_policy, policy):
    """A reply that reads both ways leaves a note (or nothing, with unclear_note = false)."""
    effect = react(policy, resolved_ticket, S.RESOLVED, verdict("unclear"))
    assert effect.move_itsm_to is None and effect.itsm_note is not None
    quiet = make_policy(**{"customer_replies.unclear_note": False})
    assert react(quiet, resolved_ticket, S.RESOLVED, verdict("unclear")).empty


def test_switched_off_or_already_there(make_ticket, make_policy, policy):
    """enabled = false moves nothing; a record already closed is not moved again."""
    off = make_policy(**{"customer_replies.enabled": False})
    assert react(off, make_ticket(status=Status.RESOLVED), S.RESOLVED, verdict("confirmed")).empty
    effect = react(policy, make_ticket(status=Status.CLOSED), S.RESOLVED, verdict("confirmed"))
    assert effect.move_itsm_to is None and effect.itsm_note is not None


def test_a_command_in_a_comment_that_came_by_mail_is_refused(
    make_ticket, make_comment, policy, now, people
):
    """Even an approver's own words, when they came by e-mail (the comment carries the mail
    origin), approve nothing: the refusal says why."""
    body = f"By e-mail from Alice <alice@example.com>:\n\n/approve-escalation\n\n{MAIL_MARK}"
    c = make_comment("c9", body, people.alice, visibility=Visibility.INTERNAL, minutes=30)
    entry = LedgerEntry(
        state=S.PENDING_APPROVAL,
        level="L1",
        requested_at=now - timedelta(hours=1),
        reason="label escalate",
        notice_key="request:x",
    )
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=entry), now, policy)
    assert d.state is S.PENDING_APPROVAL
    [blocked] = [r for r in d.reasons if r.rule == "command.approve" and r.outcome == "blocked"]
    assert "came by e-mail" in blocked.detail


def test_the_gate_reads_a_customer_reply_as_evidence(make_ticket, make_comment, policy, now):
    """Steps to reproduce the customer sent by e-mail count for the completeness gate."""
    reply = Comment(
        id="m1",
        body=f"By e-mail from Carl:\n\nSteps to reproduce: open the cart twice.\n\n{MAIL_MARK}",
        visibility=Visibility.PUBLIC,
    )
    description = "Payments API returns 500.\nEnvironment: prod, version 4.2.1\n"
    description += "Troubleshooting: restarted workers.\nContact: Dana Ops"
    without = decide(make_ticket(description=description), LedgerView(), now, policy)
    with_reply = decide(
        make_ticket(description=description, comments=(reply,)), LedgerView(), now, policy
    )
    missing = [r for r in without.reasons if r.rule == "gate.steps" and r.outcome == "fail"]
    assert missing
    assert not [r for r in with_reply.reasons if r.rule == "gate.steps" and r.outcome == "fail"]


def test_replies_rules_are_validated(make_policy):
    """A confirmation must close; "not fixed" must reopen; patterns must compile."""
    with pytest.raises(ConfigInvalid) as caught:
        make_policy(
            **{
                "customer_replies.confirmed": {"move_to": "resolved", "patterns": ["("]},
                "customer_replies.not_fixed": {"move_to": "closed"},
            }
        )
    keys = {e.key for e in caught.value.errors}
    assert "customer_replies.confirmed.patterns[0]" in keys
    # The cross-checks run once the shapes are valid.
    with pytest.raises(ConfigInvalid) as caught:
        make_policy(
            **{
                "customer_replies.confirmed": {"move_to": "resolved"},
                "customer_replies.not_fixed": {"move_to": "closed"},
            }
        )
    keys = {e.key for e in caught.value.errors}
    assert keys == {"customer_replies.confirmed.move_to", "customer_replies.not_fixed.move_to"}
