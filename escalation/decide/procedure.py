"""The procedure: the stages of a decision, in the order they run."""

from __future__ import annotations

from datetime import datetime

from escalation.chat import ChatStatus
from escalation.decide import (
    approval,
    chat,
    closure,
    context,
    duplicates,
    limits,
    play,
    priority_change,
    recognition,
    reopen,
    request,
    timers,
    updates,
)
from escalation.decide.context import Flow, Stage, begin
from escalation.decide.times import aware
from escalation.decision import Decision, EngineeringStatus, LedgerView
from escalation.policy import Policy
from mapping.model import Ticket

# Each stage looks at the run as the stages before it left it and does nothing when the state is
# not its business; a stage that settles the decision returns Flow.DONE. A new rule is a module
# with its stage function, and its line here in the place the procedure needs it.
PROCEDURE: tuple[Stage, ...] = (
    context.where_it_stands,
    closure.close,
    duplicates.follow_primary,
    timers.unconfirmed,
    recognition.recognise,
    request.resume,
    play.play_commands,
    reopen.reopened,
    approval.by_field_or_transition,
    priority_change.follow,
    timers.follow_ups,
    limits.preview,
    limits.engineering_assignee,
    updates.customer_updates,
)

# Stages that follow whatever the procedure settled (a resolution ends the procedure's stages
# and still has to be told in the escalation's chat room).
AFTERWARDS: tuple[Stage, ...] = (chat.chat_room,)


def decide(
    ticket: Ticket,
    ledger: LedgerView,
    now: datetime,
    policy: Policy,
    *,
    engineering: EngineeringStatus | None = None,
    chat: ChatStatus | None = None,
) -> Decision:
    """Decide the escalation state, actions and reasons for an ITSM ticket at `now`.

    `ticket` is the ITSM record (where requests, approvals and notes live). `engineering` is the
    paired engineering record as last read by the sync engine, or None when there is none; its
    status drives closure. `chat` is the escalation's chat room as the chat notifiers left it
    (None when none is configured). Pure: the same inputs always give the same decision.
    """
    run = begin(ticket, ledger, aware(now), policy, engineering, chat)
    for stage in PROCEDURE:
        if stage(run) is Flow.DONE:
            break
    for stage in AFTERWARDS:
        stage(run)
    return run.decision()
