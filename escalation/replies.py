"""What a customer's e-mail reply moves, as the policy's `customer_replies` says. Pure.

The mail intake posts every reply as a comment and reads it for a verdict (confirmed, not fixed,
unclear); this module decides what that verdict does to the records, from the policy and the
escalation's state alone:

```
react(policy, ticket, state, reply) -> ReplyEffect
    confirmed   -> the ITSM record moves to customer_replies.confirmed.move_to (a closed status:
                   the next decision closes the escalation), an internal note says who and when
    not fixed   -> the ITSM record reopens (not_fixed.move_to), engineering is told in a note on
                   its record and its record reopens (not_fixed.engineering_move_to)
    unclear     -> nothing moves; an internal note asks a person to read the reply
```
A verdict counts only while the escalation waits for it (state `resolved`: engineering resolved
and the customer was asked) and only from the ticket's customer (or a watcher, when the policy
says). Everything else is a reason with outcome "info", for the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from escalation.decide.times import stamp
from escalation.decision import Reason
from escalation.policy import Policy
from mapping.model import EscalationState, Ref, Status, Ticket

Verdict = Literal["confirmed", "not_fixed", "unclear", "none"]
Standing = Literal["customer", "watcher", "stranger"]


@dataclass(frozen=True, slots=True)
class Reply:
    """A customer's reply as the verdict needs it: who, when, the verdict and its words."""

    sender: str
    standing: Standing
    verdict: Verdict
    words: tuple[str, ...]
    received: datetime


@dataclass(frozen=True, slots=True)
class ReplyEffect:
    """What to do to the records: statuses to reach, notes to write, and why."""

    move_itsm_to: Status | None = None
    itsm_note: str | None = None
    move_engineering_to: Status | None = None
    engineering_note: str | None = None
    reasons: tuple[Reason, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to write."""
        return not (
            self.move_itsm_to or self.itsm_note or self.move_engineering_to or self.engineering_note
        )


def _quote(words: tuple[str, ...]) -> str:
    said = "; ".join(w.strip() for w in words if w.strip())
    return f'"{said[:300]}"' if said else "(no words matched)"


def react(
    policy: Policy,
    ticket: Ticket,
    state: EscalationState | None,
    reply: Reply,
    *,
    engineering: Ref | None = None,
) -> ReplyEffect:
    """The effect of `reply` on `ticket`, whose escalation is in `state` (None: never had one)."""
    rules = policy.customer_replies
    name = ticket.ref.key or ticket.ref.id
    if reply.verdict == "none":
        return ReplyEffect(reasons=(Reason("customer_replies", "info", "no verdict in the reply"),))
    if not rules.enabled:
        return ReplyEffect(
            reasons=(Reason("customer_replies", "info", "customer_replies is switched off"),)
        )
    if state is not EscalationState.RESOLVED:
        return ReplyEffect(
            reasons=(
                Reason(
                    "customer_replies.state",
                    "info",
                    f"the reply reads {reply.verdict.replace('_', ' ')}, but the escalation of "
                    f"{name} is {state.value if state else 'not on record'}, not waiting for a "
                    "confirmation",
                    {"state": state.value if state else None},
                ),
            )
        )
    allowed = reply.standing == "customer" or (
        reply.standing == "watcher" and rules.watchers_may_confirm
    )
    if not allowed:
        return ReplyEffect(
            reasons=(
                Reason(
                    "customer_replies.sender",
                    "info",
                    f"{reply.sender} is a {reply.standing} of {name}, whose word does not "
                    "confirm or reopen it",
                    {"sender": reply.sender, "standing": reply.standing},
                ),
            )
        )
    when = stamp(reply.received)
    said = _quote(reply.words)
    if reply.verdict == "unclear":
        note = None
        if rules.unclear_note:
            note = (
                f"The customer's e-mail reply of {when} ({reply.sender}) reads both as a "
                f'confirmation and as "not fixed" ({said}); nothing was moved. Please read '
                "it and decide."
            )
        return ReplyEffect(
            itsm_note=note,
            reasons=(Reason("customer_replies.unclear", "info", "the reply reads both ways"),),
        )
    if reply.verdict == "confirmed":
        confirmed = rules.confirmed
        target = confirmed.move_to if confirmed.move_to != ticket.status else None
        moves = f" The record moves to {target.value}." if target is not None else ""
        return ReplyEffect(
            move_itsm_to=target,
            itsm_note=(
                f"The customer confirmed the fix by e-mail on {when} ({reply.sender}): "
                f"{said}.{moves}"
            )
            if confirmed.note
            else None,
            reasons=(
                Reason(
                    "customer_replies.confirmed",
                    "pass",
                    f"{reply.sender} confirmed the fix of {name}",
                    {"move_to": target.value if target else None},
                ),
            ),
        )
    not_fixed = rules.not_fixed
    target = not_fixed.move_to if not_fixed.move_to != ticket.status else None
    reopens = f" The record was reopened ({target.value})." if target is not None else ""
    eng_note = eng_target = None
    if engineering is not None:
        eng_target = not_fixed.engineering_move_to
        if not_fixed.tell_engineering:
            eng_note = (
                f"The customer of {name} says the fix did not work (e-mail of {when}, "
                f"{reply.sender}): {said}."
                + (f" {name} was reopened." if target is not None else "")
                + (
                    f" This record is reopened ({eng_target.value})."
                    if eng_target is not None
                    else ""
                )
            )
    return ReplyEffect(
        move_itsm_to=target,
        itsm_note=(
            f"The customer says the fix did not work (e-mail of {when}, {reply.sender}): "
            f"{said}.{reopens}"
        )
        if not_fixed.note
        else None,
        move_engineering_to=eng_target,
        engineering_note=eng_note,
        reasons=(
            Reason(
                "customer_replies.not_fixed",
                "pass",
                f"{reply.sender} says the fix of {name} did not work",
                {
                    "move_to": target.value if target else None,
                    "engineering_move_to": eng_target.value if eng_target else None,
                },
            ),
        ),
    )


__all__ = ["Reply", "ReplyEffect", "Standing", "Verdict", "react"]
