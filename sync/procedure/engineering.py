"""The paired engineering record as the escalation procedure reads it.

What engineering last said (the newest comment a person wrote there: the resolution when the
record is resolved), whether that was public, who is assigned, and when a person last
commented (the no-response follow-up). Our own copies and the integration user's comments are
nobody's word.
"""

from __future__ import annotations

from collections.abc import Iterable

from escalation.decision import EngineeringStatus
from mapping.model import Comment, Ticket, Visibility
from sync.pipeline.markers import find_marker


def said_by_a_person(eng: Ticket, integration_users: Iterable[str]) -> Comment | None:
    """The newest comment on `eng` that a person wrote there (None when there is none)."""
    ours = {u for u in integration_users if u}
    for comment in reversed(eng.comments):
        if find_marker(comment.body) is not None or not comment.body.strip():
            continue
        author = comment.author
        names = {p for p in (author.id, author.name, author.email) if p} if author else set()
        if names & ours:
            continue
        return comment
    return None


def engineering_status(eng: Ticket, integration_users: Iterable[str]) -> EngineeringStatus:
    """The escalation's view of the engineering record `eng`, as just read."""
    said = said_by_a_person(eng, integration_users)
    return EngineeringStatus(
        ref=eng.ref,
        status=eng.status,
        resolution=said.body.strip() if said is not None else None,
        resolution_public=said is not None and said.visibility is Visibility.PUBLIC,
        assignee=eng.assignee,
        responded_at=said.created if said is not None else None,
    )
