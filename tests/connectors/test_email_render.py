"""Templates and header safety: what customer mail may contain, and what cannot get in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError

from connectors.email import (
    Identity,
    OutgoingEmail,
    build_mime,
    clean_header_text,
    make_message_id,
    ticket_subject,
)
from connectors.email_render import (
    CUSTOMER_EVENTS,
    SAMPLE_MANAGEMENT,
    CustomerContext,
    ManagementContext,
    Renderer,
)
from mapping.model import (
    Comment,
    Escalation,
    EscalationState,
    Person,
    Priority,
    Ref,
    Status,
    System,
    Ticket,
    Visibility,
)
from sync.procedure.email_context import (
    InternalContentRefused,
    customer_context,
    management_context,
)

SECRETS = (
    "SECRET-WORKNOTE-root-password-hunter2",
    "SECRET-INTERNAL-customer-is-difficult",
    "SECRET-APPROVER-only-because-they-pay-a-lot",
    "SECRET-REASON-contract-penalty",
    "SECRET-DESCRIPTION-db-credentials",
    "SECRET-REQUESTER-name",
    "SECRET-APPROVER-name",
)
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _ticket(**extra: object) -> Ticket:
    internal = [
        Comment(
            id=f"n{i}",
            body=text,
            visibility=Visibility.INTERNAL,
            author=Person(name="Engineer"),
            created=T0.replace(hour=10 + i),
        )
        for i, text in enumerate(SECRETS[:3])
    ]
    public = Comment(
        id="c1",
        body="We have identified the cause and are preparing a fix.",
        visibility=Visibility.PUBLIC,
        author=Person(name="Dana Agent", email="dana@example.com"),
        created=T0.replace(hour=9, minute=30),
    )
    data: dict[str, object] = {
        "ref": Ref(system=System.SERVICENOW, id="a1b2c3", key="INC0010001", url="https://x/inc"),
        "summary": "Checkout fails with error 500",
        "description": SECRETS[4],
        "status": Status.IN_PROGRESS,
        "priority": Priority.P1,
        "customer": Person(name="Chris Customer", email="chris@example.org"),
        "comments": (public, *internal),
        "escalation": Escalation(
            state=EscalationState.APPROVED,
            level="L2",
            reason=SECRETS[3],
            requested_by=Person(name=SECRETS[5]),
            approver=Person(name=SECRETS[6]),
        ),
    }
    data.update(extra)
    return Ticket.model_validate(data)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


@pytest.mark.parametrize("event", CUSTOMER_EVENTS)
def test_internal_notes_never_reach_customer_mail(renderer: Renderer, event: str) -> None:
    """No internal note, work note, description or approver detail appears in any customer mail."""
    ctx = customer_context(
        _ticket(), company="Acme Support", missing_information=("logs",), cadence=None
    )
    mail = renderer.render(event, ctx)
    for part in (mail.subject, mail.text, mail.html):
        for secret in SECRETS:
            assert secret not in part
    assert mail.subject.startswith("[INC0010001] ")
    assert "Checkout fails with error 500" in mail.text


def test_public_update_carries_the_public_comment(renderer: Renderer) -> None:
    """A public update shows the public comment even when internal notes are newer."""
    mail = renderer.render("public_update", customer_context(_ticket(), company="Acme"))
    assert "We have identified the cause" in mail.text
    assert "We have identified the cause" in mail.html
    assert "Dana Agent" in mail.text
    assert "dana@example.com" not in mail.text + mail.html


def test_featuring_an_internal_note_is_refused() -> None:
    """Asking for a customer mail about an internal note raises instead of rendering it."""
    with pytest.raises(InternalContentRefused):
        customer_context(_ticket(), company="Acme", comment_id="n0")


def test_html_in_a_comment_is_escaped(renderer: Renderer) -> None:
    """Markup in a public comment is escaped in the HTML part and kept literal in the text part."""
    hostile = Comment(
        id="c9",
        body='<script>alert("x")</script>\n<a href="https://evil.example">click</a>',
        visibility=Visibility.PUBLIC,
        author=Person(name="<b>Mallory</b>"),
        created=T0,
    )
    ctx = customer_context(_ticket(comments=(hostile,)), company="Acme", comment_id="c9")
    mail = renderer.render("public_update", ctx)
    assert "<script>" not in mail.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in mail.html
    assert '<a href="https://evil.example">' not in mail.html
    assert "&lt;b&gt;Mallory&lt;/b&gt;" in mail.html
    assert '<script>alert("x")</script>' in mail.text


def test_injection_in_summary_and_customer_name(renderer: Renderer) -> None:
    """CR/LF in the summary and the customer's name stay out of the headers; HTML is escaped."""
    ticket = _ticket(
        summary="Disk full\r\nBcc: thief@evil.example\r\n\r\n<img src=x onerror=alert(1)>",
        customer=Person(name="Eve\nBcc: thief@evil.example <i>", email="eve@example.org"),
    )
    mail = renderer.render("escalated", customer_context(ticket, company="Acme"))
    assert "\r" not in mail.subject and "\n" not in mail.subject
    assert "<img" not in mail.html and "&lt;img src=x onerror=alert(1)&gt;" in mail.html
    assert "&lt;i&gt;" in mail.html
    mime = build_mime(
        OutgoingEmail(
            to=("eve@example.org",),
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            message_id=make_message_id("INC0010001|escalated|1", "example.com"),
        ),
        Identity("support@example.com", (ticket.customer.name or "") if ticket.customer else ""),
    )
    parsed = message_from_bytes(mime.as_bytes(), policy=policy.default)
    assert parsed["Bcc"] is None
    assert [k.lower() for k in parsed] == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "mime-version",
        "content-type",
    ]
    assert str(parsed["Subject"]).startswith("[INC0010001] Your request has been escalated: Disk")


def test_management_notification_has_the_reason(renderer: Renderer) -> None:
    """The management mail (internal readers) shows level, reason and approver."""
    ctx = management_context(_ticket(), event="escalated", company="Acme", linked_ticket="ENG-42")
    mail = renderer.render("management_escalated", ctx)
    assert SECRETS[3] in mail.text and SECRETS[6] in mail.html and "ENG-42" in mail.text
    assert mail.subject == "[INC0010001] P1 escalation to L2: Checkout fails with error 500"


PENDING = ("management_requested", "management_approval_overdue")


@pytest.mark.parametrize(
    ("event", "subject", "headline"),
    [
        (
            "management_requested",
            "[INC0010001] P2 escalation requested to L2: Checkout fails with error 500",
            "An escalation to L2 has been requested for this P2 ticket and waits for approval "
            "by mgr.one.",
        ),
        (
            "management_escalated",
            "[INC0010001] P2 escalation to L2: Checkout fails with error 500",
            "A P2 ticket has been escalated to L2.",
        ),
        (
            "management_approval_overdue",
            "[INC0010001] Escalation approval overdue: Checkout fails with error 500",
            "The request to escalate this P2 ticket to L2 is still waiting for approval after "
            "5.5 hours; the policy allows 4 hours.",
        ),
        (
            "management_resolved",
            "[INC0010001] P2 escalation resolved: Checkout fails with error 500",
            "The P2 escalation at L2 has been resolved by engineering (ENG-42).",
        ),
    ],
)
def test_each_management_event_has_its_own_wording(
    renderer: Renderer, event: str, subject: str, headline: str
) -> None:
    """Requested, escalated, overdue and resolved mails say what happened, with the real
    priority."""
    ctx = replace(
        SAMPLE_MANAGEMENT,
        ticket_key="INC0010001",
        summary="Checkout fails with error 500",
        requested_by="lee.l1",
        reason="production down",
        linked_ticket="ENG-42",
        # Nobody has approved a pending request; the context builder leaves the approver out.
        approver=None if event in PENDING else "sme.alice",
        approvers="mgr.one" if event == "management_requested" else None,
    )
    mail = renderer.render(event, ctx)
    assert mail.subject == subject
    assert mail.text.startswith(headline + "\n")
    assert f"<p>{headline}</p>" in mail.html
    assert "P1" not in mail.subject + mail.text + mail.html
    assert "Requested by: lee.l1" in mail.text and "production down" in mail.html


def test_retired_management_override_is_reported(tmp_path: Path) -> None:
    """An admin's management_p1 override is no longer read, and `check` says so."""
    (tmp_path / "management_p1.txt.j2").write_text("A P1 ticket has been escalated.\n")
    [problem] = Renderer(tmp_path).check()
    assert "management_p1.txt.j2 is no longer used" in problem
    assert "management_escalated.txt.j2" in problem


def test_greeting_stands_on_its_own_line(renderer: Renderer) -> None:
    """A blank line separates the greeting from the first sentence in the text part."""
    mail = renderer.render("escalated", customer_context(_ticket(), company="Acme"))
    assert mail.text.startswith("Dear Chris Customer,\n\nYour request has been escalated")


def test_context_types_cannot_be_swapped(renderer: Renderer) -> None:
    """A customer event refuses the management context, and the other way round."""
    with pytest.raises(TypeError):
        renderer.render(
            "escalated", management_context(_ticket(), event="escalated", company="Acme")
        )
    with pytest.raises(TypeError):
        renderer.render("management_escalated", customer_context(_ticket(), company="Acme"))


def test_admin_folder_overrides_file_by_file(tmp_path: Path) -> None:
    """A template in the admin folder wins; events it does not override use the packaged ones."""
    (tmp_path / "escalated.subject.j2").write_text("Escalated to engineering: {{ summary }}\n")
    (tmp_path / "_layout.html.j2").write_text(
        "<html><body>BRANDED {% block content %}{% endblock %}</body></html>"
    )
    custom = Renderer(tmp_path)
    mail = custom.render("escalated", customer_context(_ticket(), company="Acme"))
    assert mail.subject == "[INC0010001] Escalated to engineering: Checkout fails with error 500"
    assert mail.html.startswith("<html><body>BRANDED")
    closed = custom.render("closed", customer_context(_ticket(), company="Acme"))
    assert closed.subject.startswith("[INC0010001] Closed:")
    assert custom.check() == []


def test_admin_templates_are_sandboxed(tmp_path: Path) -> None:
    """An admin template cannot reach Python internals through the sandbox."""
    (tmp_path / "closed.txt.j2").write_text("{{ summary.__class__.__mro__ }}")
    with pytest.raises(SecurityError):
        Renderer(tmp_path).render("closed", customer_context(_ticket(), company="Acme"))


def test_packaged_templates_render() -> None:
    """Every packaged event renders with sample data."""
    assert Renderer().check() == []


def test_customer_context_has_no_field_for_internal_content() -> None:
    """The customer context type has only customer-safe fields."""
    assert set(CustomerContext.__dataclass_fields__) == {
        "ticket_key",
        "summary",
        "status",
        "priority",
        "customer_name",
        "comments",
        "latest_comment",
        "ticket_url",
        "company",
        "missing_information",
        "next_update_hours",
        "confirm_link",
        "not_fixed_link",
    }
    assert "reason" in ManagementContext.__dataclass_fields__


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_clean_header_text_is_one_line(value: str) -> None:
    """Whatever the ticket text, the header text has no line break or control character."""
    cleaned = clean_header_text(value)
    assert not any(ch in cleaned for ch in "\r\n\x00\x0b\x0c\x85\u2028\u2029")
    assert cleaned == cleaned.strip()


@settings(max_examples=100, deadline=None)
@given(subject=st.text(max_size=200), name=st.text(max_size=80))
def test_any_subject_and_name_yield_the_same_headers(subject: str, name: str) -> None:
    """Arbitrary subject and display name text never adds, removes or splits a header."""
    mime = build_mime(
        OutgoingEmail(
            to=("c@example.org",),
            subject=ticket_subject("INC1", subject),
            text="t",
            message_id="<id@example.com>",
        ),
        Identity("support@example.com", name),
    )
    parsed = message_from_bytes(mime.as_bytes(), policy=policy.default)
    assert [k.lower() for k in parsed] == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "content-type",
        "content-transfer-encoding",
        "mime-version",
    ]
    assert str(parsed["To"]) == "c@example.org"
    assert str(parsed["Subject"]).startswith("[INC1]")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_address_validation_fails_only_with_invalid_address(value: str) -> None:
    """Any string is either accepted as a plain one-line address or refused with InvalidAddress."""
    from connectors.email import InvalidAddress, validate_address

    try:
        accepted = validate_address(value)
    except InvalidAddress as exc:
        assert "\n" not in str(exc) and "\r" not in str(exc)
        return
    assert accepted.count("@") == 1 and not any(ch.isspace() for ch in accepted)
