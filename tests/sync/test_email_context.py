"""Customer mail context: public comments only, without the sync's origin markers."""

from __future__ import annotations

from mapping.model import Comment, Ref, System, Ticket, Visibility
from sync.email_context import customer_context


def test_origin_marker_is_not_shown_to_the_customer() -> None:
    """A mirrored engineering comment reaches the customer without its bookkeeping marker."""
    ticket = Ticket(
        ref=Ref(system=System.SERVICENOW, id="s1", key="INC0010001"),
        summary="Checkout fails",
        comments=(
            Comment(
                id="c1",
                body="Fix deployed.\n\n[escalation-sync origin=jira:DS-1:10001]",
                visibility=Visibility.PUBLIC,
            ),
            Comment(id="c2", body="internal detail", visibility=Visibility.INTERNAL),
        ),
    )
    context = customer_context(ticket, company="Example Support")
    assert [c.body for c in context.comments] == ["Fix deployed."]
    assert context.latest_comment is not None and context.latest_comment.body == "Fix deployed."
