"""A customer's e-mail reply posted on the ITSM record is mirrored like a person's comment;
its copy is not mirrored back, and carries no trace of the mail's origin marker."""

from __future__ import annotations

from datetime import UTC, datetime

from mapping.model import Comment, Person, Ref, Status, System, Ticket, Visibility
from sync.pipeline.markers import Marker, find_marker, mail_marker, with_marker
from sync.pipeline.plan import SyncRules, plan

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
FIELDS = frozenset({"summary", "status"})
RULES = SyncRules(
    writable={System.JIRA: FIELDS, System.SERVICENOW: FIELDS},
    ignore_authors=frozenset({"svc.sync"}),
)
INTEGRATION = Person(id="svc.sync", name="Escalation Sync")


def incident(*comments: Comment) -> Ticket:
    return Ticket(
        ref=Ref(system=System.SERVICENOW, id="a1b2", key="INC0010001"),
        summary="Export fails",
        status=Status.IN_PROGRESS,
        comments=comments,
        updated=T0,
    )


def issue(*comments: Comment) -> Ticket:
    return Ticket(
        ref=Ref(system=System.JIRA, id="10001", key="DS-12"),
        summary="Export fails",
        status=Status.IN_PROGRESS,
        comments=comments,
        updated=T0,
    )


def reply_comment(visibility: Visibility = Visibility.PUBLIC) -> Comment:
    marker = mail_marker(System.SERVICENOW, "INC0010001", "<m1@customer.example>")
    return Comment(
        id="j1",
        body=with_marker("By e-mail from Carla <carla@customer.example>:\n\nStill broken.", marker),
        visibility=visibility,
        author=INTEGRATION,
    )


def test_a_mail_marker_is_deterministic_and_says_so() -> None:
    """The marker of a mail's comment comes from its Message-ID, and reads as from mail."""
    one = mail_marker(System.SERVICENOW, "INC0010001", "<m1@customer.example>")
    assert one == mail_marker(System.SERVICENOW, "INC0010001", " <m1@customer.example> ")
    assert one.from_mail and one.item.startswith("mail-")
    assert not Marker(System.JIRA, "DS-12", "10001").from_mail
    assert find_marker(with_marker("x", one)) == one


def test_the_reply_is_mirrored_with_its_visibility_and_without_the_mail_marker() -> None:
    """Written by the integration user, the reply is still the customer's words: it is copied
    to Jira (public stays public; a stranger's internal note stays internal), without the
    mail marker in the copy."""
    for visibility in (Visibility.PUBLIC, Visibility.INTERNAL):
        result = plan(incident(reply_comment(visibility)), issue(), None, None, RULES)
        [mirror] = result.comments
        assert mirror.target is System.JIRA and mirror.visibility is visibility
        assert "mail-" not in mirror.body and "Still broken." in mirror.body
        assert mirror.marker == Marker(System.SERVICENOW, "INC0010001", "j1")


def test_its_copy_is_not_mirrored_back_and_not_twice() -> None:
    """Once Jira holds the copy, nothing flows either way."""
    copy = Comment(
        id="c1",
        body=with_marker(
            "By e-mail from Carla:\n\nStill broken.",
            Marker(System.SERVICENOW, "INC0010001", "j1"),
        ),
        visibility=Visibility.PUBLIC,
        author=Person(id="integration"),
    )
    assert plan(incident(reply_comment()), issue(copy), None, None, RULES).comments == ()
    assert plan(issue(copy), incident(reply_comment()), None, None, RULES).comments == ()


def test_a_mail_marker_of_another_record_is_a_copy() -> None:
    """A comment carrying the mail marker of the other record is a copy of it, not a source."""
    foreign = Comment(
        id="c2",
        body=with_marker("x", mail_marker(System.SERVICENOW, "INC0010001", "<m2@x>")),
        visibility=Visibility.PUBLIC,
    )
    assert plan(issue(foreign), incident(), None, None, RULES).comments == ()
