"""The chat room stage of decide() and the policy's [chat] table: pure, no chat service."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from escalation.chat import (
    ArchiveChat,
    ChatRoomState,
    ChatStatus,
    InviteToChat,
    OpenChat,
    PostChat,
    room_key,
)
from escalation.decide import decide
from escalation.decision import (
    AddEngineeringComment,
    AddNote,
    EngineeringStatus,
    LedgerEntry,
    LedgerView,
    NoteKind,
    decision_to_dict,
)
from mapping.errors import ConfigInvalid
from mapping.model import Comment, EscalationState, Person, Priority, Ref, Status, System

S = EscalationState
DS = Ref(system=System.JIRA, id="10042", key="ENG-42", url="https://jira.example/browse/ENG-42")
CHAT: dict[str, Any] = {
    "enabled": True,
    "channel": "ds-{number}-{summary}",
    "invite": ["requester", "approver", "contact", "engineering_assignee"],
    "groups": ["sme"],
    "addresses": {"lead.1": "lead.1@example.com", "Dana Ops": "dana.ops@example.com"},
    "events": ["approved", "level", "priority", "engineering_status", "resolved", "closed"],
    "archive": "closed",
}


def chat_actions(decision: Any) -> list[Any]:
    kinds = (OpenChat, InviteToChat, PostChat, ArchiveChat, AddEngineeringComment)
    return [a for a in decision.actions if isinstance(a, kinds)]


def chat_notes(decision: Any) -> list[str]:
    return [a.body for a in decision.actions if isinstance(a, AddNote) and a.kind is NoteKind.CHAT]


@pytest.fixture
def chat_policy(make_policy: Any) -> Any:
    return make_policy(chat=dict(CHAT))


def active(now: Any, **changes: Any) -> LedgerView:
    """An escalation at L2 approved an hour ago by alice, requested by lead.1."""
    entry = LedgerEntry(
        state=S.APPROVED,
        level="L2",
        requested_at=now - timedelta(hours=2),
        requested_by="lead.1",
        reason="merchant outage",
        approved_at=now - timedelta(hours=1),
        approved_by="alice",
        notice_key="approval:L2:x",
    )
    return LedgerView(entry=replace(entry, **changes))


def engineering(status: Status = Status.NEW, **kw: Any) -> EngineeringStatus:
    return EngineeringStatus(ref=DS, status=status, **kw)


def made(url: str = "https://x.slack.com/archives/C1", **kw: Any) -> ChatRoomState:
    return ChatRoomState("Slack", made=True, name="ds-42-payments", url=url, **kw)


def ours(body: str) -> Comment:
    return Comment(id="n1", body=f"{body}\n\n[escalation-sync origin=servicenow:sys1:chat-1]")


# --- the policy table ----------------------------------------------------------------------------


def test_chat_table_errors_are_reported_together_with_their_keys(make_policy: Any) -> None:
    """An unknown template field and an address that is not one: both at once, each with its
    key."""
    with pytest.raises(ConfigInvalid) as refused:
        make_policy(
            chat={
                "enabled": True,
                "channel": "ds-{ticket}-{summary}",
                "addresses": {"lead.1": "lead-one"},
            }
        )
    found = {(e.key, e.reason) for e in refused.value.errors}
    assert any(
        key == "chat.channel" and "unknown field {ticket}" in why and "{number}" in why
        for key, why in found
    )
    assert ("chat.addresses", "not an e-mail address for lead.1") in found
    assert len(found) == 2
    assert all(e.file == "test.toml" for e in refused.value.errors)


def test_an_unknown_group_and_an_archived_joined_channel_are_refused(make_policy: Any) -> None:
    """A group the policy does not define is refused at its key; a channel joined (not made
    for the escalation) may not be archived."""
    with pytest.raises(ConfigInvalid) as refused:
        make_policy(chat={"enabled": True, "groups": ["sme", "nobody"]})
    assert [(e.key, e.reason) for e in refused.value.errors] == [
        ("chat.groups[1]", "unknown group 'nobody'")
    ]
    with pytest.raises(ConfigInvalid) as refused:
        make_policy(chat={"enabled": True, "join": "sre-escalations", "archive": "closed"})
    [error] = refused.value.errors
    assert error.key == "chat" and "archive must be 'never'" in error.reason


# --- opening ---------------------------------------------------------------------------------


def test_without_a_chat_notifier_nothing_is_asked(
    make_ticket: Any, chat_policy: Any, now: Any
) -> None:
    """No chat status (no notifier configured): no chat action, and the reason says why."""
    decision = decide(make_ticket(), active(now), now, chat_policy, engineering=engineering())
    assert chat_actions(decision) == []
    assert any(r.rule == "chat" and "no chat notifier" in r.detail for r in decision.reasons)


def test_the_room_waits_for_the_engineering_record_it_is_named_after(
    make_ticket: Any, make_comment: Any, chat_policy: Any, now: Any, people: Any
) -> None:
    """Approved now, the engineering record not made yet: no room, and the decision says the
    ticket should be decided again once the record exists."""
    ticket = make_ticket(
        comments=(make_comment("c1", "/approve-escalation go", author=people.alice),)
    )
    pending = LedgerView(
        entry=LedgerEntry(state=S.PENDING_APPROVAL, level="L1", requested_at=now, reason="x")
    )
    decision = decide(ticket, pending, now, chat_policy, chat=ChatStatus())
    assert decision.state is S.APPROVED
    assert chat_actions(decision) == []
    assert decision.awaits_engineering_record


def test_the_room_opens_named_after_the_engineering_record_with_its_people(
    make_ticket: Any, chat_policy: Any, now: Any
) -> None:
    """Active with its engineering record: the room is ds-<number>-<summary>, the requester,
    approver, contact, engineering assignee and group members invited by address (those with
    none listed), and the approval posted with who, why and the links."""
    ticket = make_ticket(description="Broken.\nContact: Dana Ops, +1 555 0100")
    eng = engineering(assignee=Person(id="acc-9", name="Erin", email="erin@example.com"))
    decision = decide(ticket, active(now), now, chat_policy, engineering=eng, chat=ChatStatus())
    [opened, approved] = chat_actions(decision)
    assert isinstance(opened, OpenChat) and isinstance(approved, PostChat)
    room = opened.room
    assert room.key == room_key("INC0000001", now - timedelta(hours=1))
    assert (room.name, dict(room.fields)["number"], dict(room.fields)["key"]) == (
        "ds-{number}-{summary}",
        "42",
        "ENG-42",
    )
    assert room.topic == "ENG-42: Payments API returns HTTP 500 on retry (1)"
    assert room.links == (
        ("ITSM record", "https://sn.example/incident/1"),
        ("Engineering record", "https://jira.example/browse/ENG-42"),
    )
    assert opened.members == (
        "lead.1@example.com",
        "dana.ops@example.com",
        "erin@example.com",
        "sam@example.com",
    )
    assert "no e-mail address known for approver alice" in next(
        r.detail for r in decision.reasons if r.rule == "chat.room"
    )
    assert approved.event == "approved"
    assert "approved by alice" in approved.text and "Reason: merchant outage" in approved.text
    assert "Engineering record: https://jira.example/browse/ENG-42" in approved.text
    assert dict(approved.facts) == {
        "level": "L2",
        "priority": "P3",
        "engineering_status": "new",
        "state": "approved",
    }
    assert decision_to_dict(decision)["actions"][-1]["room"]["key"] == room.key


def test_a_room_shared_with_the_customer_gets_nothing_internal(
    make_ticket: Any, make_policy: Any, now: Any
) -> None:
    """Shared with the customer: no links to the agents' records, no reason, no approver, and
    an internal resolution is not quoted (a public one is)."""
    policy = make_policy(
        chat={**CHAT, "shared_with_customer": True, "invite": ["customer"], "groups": []}
    )
    eng = engineering()
    decision = decide(make_ticket(), active(now), now, policy, engineering=eng, chat=ChatStatus())
    [opened, approved] = chat_actions(decision)
    assert opened.room.links == () and opened.room.shared
    assert opened.members == ("carl@customer.example",)
    assert "merchant outage" not in approved.text and "alice" not in approved.text
    status = ChatStatus(opened=True, facts=(("state", "approved"),), rooms=(made(),))
    for public, quoted in ((False, False), (True, True)):
        resolved = engineering(
            Status.RESOLVED, resolution="Cert renewed, see PR 4411", resolution_public=public
        )
        decision = decide(
            make_ticket(), active(now), now, policy, engineering=resolved, chat=status
        )
        [post] = [a for a in chat_actions(decision) if isinstance(a, PostChat)]
        assert post.event == "resolved"
        assert ("PR 4411" in post.text) is quoted


# --- while it is open ----------------------------------------------------------------------------


def opened(**facts: str) -> ChatStatus:
    base = {"level": "L2", "priority": "P3", "engineering_status": "new", "state": "approved"}
    base.update(facts)
    return ChatStatus(
        opened=True,
        facts=tuple(base.items()),
        invited=frozenset({"lead.1@example.com", "sam@example.com", "dana.ops@example.com"}),
        rooms=(made(),),
    )


def test_an_unchanged_escalation_asks_nothing(make_ticket: Any, chat_policy: Any, now: Any) -> None:
    """Room made, link noted, facts as posted, everyone invited: no action at all."""
    ticket = make_ticket(comments=(ours("Slack channel ... https://x.slack.com/archives/C1"),))
    decision = decide(
        ticket, active(now), now, chat_policy, engineering=engineering(), chat=opened()
    )
    assert decision.actions == ()


def test_changes_are_posted_against_what_the_room_was_told(
    make_ticket: Any, chat_policy: Any, now: Any
) -> None:
    """Priority and engineering status changed since the room was told: one message each, the
    new facts with them; a newly assigned engineer is invited, alone."""
    ticket = make_ticket(priority=Priority.P1, comments=(ours("https://x.slack.com/archives/C1"),))
    eng = engineering(Status.IN_PROGRESS, assignee=Person(id="e", email="erin@example.com"))
    decision = decide(ticket, active(now), now, chat_policy, engineering=eng, chat=opened())
    actions = chat_actions(decision)
    assert [type(a).__name__ for a in actions] == ["InviteToChat", "PostChat", "PostChat"]
    assert actions[0].members == ("erin@example.com",)
    assert [a.text for a in actions[1:]] == [
        "Priority changed: P3 → P1.",
        "Engineering record ENG-42 is now in progress (was new).",
    ]
    assert dict(actions[2].facts)["priority"] == "P1"


def test_the_link_is_noted_in_both_records_once(
    make_ticket: Any, chat_policy: Any, now: Any
) -> None:
    """Once the room exists its link goes to the ITSM record (a work note naming the people
    without an address) and the engineering record (a comment); with the note there, nothing."""
    decision = decide(
        make_ticket(), active(now), now, chat_policy, engineering=engineering(), chat=opened()
    )
    [note] = chat_notes(decision)
    assert note.startswith("Slack channel #ds-42-payments for this escalation: https://x.slack")
    assert "No e-mail address known, so not invited: approver alice." in note
    [comment] = [a for a in decision.actions if isinstance(a, AddEngineeringComment)]
    assert comment.body == (
        "Slack channel for this escalation: #ds-42-payments https://x.slack.com/archives/C1"
    )
    noted = make_ticket(comments=(ours(note),))
    again = decide(noted, active(now), now, chat_policy, engineering=engineering(), chat=opened())
    assert chat_notes(again) == [] and again.actions == ()


def test_a_refused_token_and_people_not_in_the_chat_are_noted_once(
    make_ticket: Any, chat_policy: Any, now: Any
) -> None:
    """Why the room could not be made, and who has no account, are each written once: a note
    saying it already is stops the next."""
    refused = ChatRoomState("Slack", problem="SlackAuthFailed: slack auth.test: token_revoked")
    status = ChatStatus(
        opened=True, facts=opened().facts, invited=opened().invited, rooms=(refused,)
    )
    decision = decide(
        make_ticket(), active(now), now, chat_policy, engineering=engineering(), chat=status
    )
    [note] = chat_notes(decision)
    assert note.startswith(
        "The Slack channel for this escalation could not be made: SlackAuthFailed: slack "
        "auth.test: token_revoked"
    )
    written = make_ticket(comments=(ours(note),))
    assert (
        chat_notes(
            decide(written, active(now), now, chat_policy, engineering=engineering(), chat=status)
        )
        == []
    )
    strangers = ChatStatus(
        opened=True,
        facts=opened().facts,
        invited=opened().invited,
        rooms=(made(not_in_chat=("dana.ops@example.com",)),),
    )
    link = ours("https://x.slack.com/archives/C1")
    decision = decide(
        make_ticket(comments=(link,)),
        active(now),
        now,
        chat_policy,
        engineering=engineering(),
        chat=strangers,
    )
    [note] = chat_notes(decision)
    assert note == "Not in Slack, so not invited to #ds-42-payments: dana.ops@example.com."
    listed = make_ticket(comments=(link, ours(note)))
    assert (
        chat_notes(
            decide(listed, active(now), now, chat_policy, engineering=engineering(), chat=strangers)
        )
        == []
    )


def test_a_refusal_known_before_the_room_is_asked_for_is_noted_with_the_opening(
    make_ticket: Any, chat_policy: Any, now: Any
) -> None:
    """The chat service is paused already (another escalation found the token revoked): the
    opening escalation's record is told at once, in the same decision."""
    paused = ChatStatus(rooms=(ChatRoomState("Slack", problem="token_revoked"),))
    decision = decide(
        make_ticket(), active(now), now, chat_policy, engineering=engineering(), chat=paused
    )
    assert any(isinstance(a, OpenChat) for a in decision.actions)
    [note] = chat_notes(decision)
    assert "could not be made: token_revoked" in note


# --- the end -------------------------------------------------------------------------------------


def test_resolved_then_closed_and_archived(make_ticket: Any, chat_policy: Any, now: Any) -> None:
    """Engineering resolves: the resolution is posted once; the ITSM record closes: the closing
    is posted and the room archived, once."""
    link = ours("https://x.slack.com/archives/C1")
    resolved = engineering(Status.RESOLVED, resolution="Certificate renewed.")
    decision = decide(
        make_ticket(comments=(link,)),
        active(now),
        now,
        chat_policy,
        engineering=resolved,
        chat=opened(),
    )
    assert decision.state is S.RESOLVED
    [post] = chat_actions(decision)
    assert post.text == "Engineering resolved ENG-42.\nResolution: Certificate renewed."
    after = active(now, state=S.RESOLVED, released_at=now)
    told = opened(state="resolved", engineering_status="resolved")
    closed = make_ticket(status=Status.CLOSED, comments=(link,))
    decision = decide(closed, after, now, chat_policy, engineering=resolved, chat=told)
    assert decision.state is S.CLOSED
    assert [type(a).__name__ for a in chat_actions(decision)] == ["PostChat", "ArchiveChat"]
    done = ChatStatus(
        opened=True, facts=opened(state="closed").facts, archived=True, rooms=(made(),)
    )
    closed_entry = active(now, state=S.CLOSED, released_at=now)
    assert (
        chat_actions(
            decide(closed, closed_entry, now, chat_policy, engineering=resolved, chat=done)
        )
        == []
    )


def test_joining_an_existing_channel_is_never_archived(
    make_ticket: Any, make_policy: Any, now: Any
) -> None:
    """With `join`, the room is the named channel; the escalation's people are invited there."""
    policy = make_policy(
        chat={
            "enabled": True,
            "join": "#sre-escalations",
            "invite": ["approver"],
            "addresses": {"alice": "alice@example.com"},
        }
    )
    decision = decide(
        make_ticket(), active(now), now, policy, engineering=engineering(), chat=ChatStatus()
    )
    [opened_room, _] = chat_actions(decision)
    assert opened_room.room.join == "sre-escalations"
    assert opened_room.members == ("alice@example.com",)
