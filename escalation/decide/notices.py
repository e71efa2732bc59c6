"""Notices: who is told of an escalation event, To and CC, as the policy names them.

An event is told to the audiences the rule that raised it names (management, the sponsor, a
RACI letter, a stakeholder role) and to every stakeholder notice for that event and the
ticket's priority. All of one event's recipients share one e-mail, so a person named twice
hears once; someone in To is not also copied.
"""

from __future__ import annotations

from collections.abc import Iterable

from escalation.decide.context import Run
from escalation.decide.reading import field_value
from escalation.decision import NotifyManagement
from escalation.policy import RACI_WORDS, Audience
from mapping.model import Person

RACI_LETTERS = frozenset(RACI_WORDS.values())


def tell(run: Run, event: str, audiences: Iterable[Audience] = ()) -> None:
    """Tell `event` to `audiences` and to the stakeholder notices for it (if anyone)."""
    to = _addresses(run, audiences)
    cc: list[str] = []
    priority = run.ticket.priority
    for notice in run.policy.stakeholders.notices:
        if event not in notice.events:
            continue
        if notice.priorities and priority not in notice.priorities:
            continue
        to.extend(_addresses(run, notice.to))
        cc.extend(_addresses(run, notice.cc))
    to = list(dict.fromkeys(to))
    cc = [a for a in dict.fromkeys(cc) if a not in to]
    if not to:
        to, cc = cc, []
    if not to:
        return
    for i, action in enumerate(run.actions):
        if isinstance(action, NotifyManagement) and action.event == event:
            merged_to = list(dict.fromkeys([*action.recipients, *to]))
            merged_cc = [a for a in dict.fromkeys([*action.cc, *cc]) if a not in merged_to]
            run.actions[i] = NotifyManagement(event, tuple(merged_to), tuple(merged_cc))
            return
    run.actions.append(NotifyManagement(event, tuple(to), tuple(cc)))


def management(run: Run, event: str, wanted: bool) -> None:
    """Tell management when `wanted` (a policy switch), and the stakeholders in any case."""
    tell(run, event, ("management",) if wanted else ())


def _addresses(run: Run, audiences: Iterable[Audience]) -> list[str]:
    policy = run.policy
    found: list[str] = []
    for name in audiences:
        if name == "management":
            found.extend(policy.management.recipients)
        elif name == "sponsor":
            sponsor = _sponsor(run)
            if sponsor:
                found.append(sponsor)
        else:
            letter = RACI_WORDS.get(name.casefold()) or (name if name in RACI_LETTERS else None)
            if letter is not None:
                for role in policy.stakeholders.roles.values():
                    if letter in role.raci:
                        found.extend(role.emails)
            elif name in policy.stakeholders.roles:
                found.extend(policy.stakeholders.roles[name].emails)
    return found


def _sponsor(run: Run) -> str | None:
    """The customer's sponsor from the ticket: an address, or a person who has one."""
    path = run.policy.stakeholders.sponsor_field
    if path is None:
        return None
    value = field_value(run.ticket, path)
    if isinstance(value, Person):
        return value.email
    if isinstance(value, dict):
        email = value.get("email")
        return email if isinstance(email, str) and "@" in email else None
    text = str(value).strip() if value is not None else ""
    return text if "@" in text else None
