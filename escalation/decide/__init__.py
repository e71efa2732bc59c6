"""decide(): the escalation procedure as a pure function of ticket, ledger, time and policy.

The ledger's state is the truth about where an escalation stands; the ticket supplies the
signals (labels, fields, comment commands, priority, the gate's evidence). Commands are read in
time order and each comment's commands are consumed once: the ledger keeps the ids, so deciding
the same ticket twice writes nothing twice. Pure: no I/O, and the time is passed in.

Security: a command counts only when the comment is in a place the policy allows (internal
notes by default) and its author, as the ITSM system reports it, is among the people the policy
names. Names typed in the text are never read as identity. Every refused command yields a
Reason with outcome "blocked".

Stages
------
decide() starts a run where the ledger says the escalation stands and runs these stages in
order (`procedure.PROCEDURE`); each acts only in the states it is about, and a stage that
settles the decision ends it:

1. context.where_it_stands: the state, level and fingerprint it starts from.
2. closure.close: engineering resolved, or the ITSM record closed; either ends the decision.
3. duplicates.follow_primary: a ticket that joined another's escalation follows it.
4. timers.unconfirmed: a resolution the customer has not confirmed: a reminder, then closing.
5. recognition.recognise: with no escalation running, a request label, field value, proactive
   trigger or auto-requesting priority starts a request (request.start: a repeat joins the
   open escalation of its issue; top level and low impact refused, the gate, then approval
   asked or activation).
6. request.resume: a request the gate held earlier is checked again.
7. play.play_commands: request, leadership, withdraw, approve and reject commands in the
   order written, each only if authorise.authorised (right place, right people, four eyes, not
   a mirrored copy); the author of one not honoured is told why in an internal note.
8. reopen.reopened: the ITSM record reopened after its escalation ended.
9. approval.by_field_or_transition: a pending request answered by field or transition
   (approval leads to activation: limits, level, reservation, the on_approval actions).
10. priority_change.follow: the ticket's priority changed during the escalation: keep, ask
    or follow, with a note.
11. timers.follow_ups: approval overdue, engineering assignment (noted; unassigned followed
    up), no engineering response, SLA imminent; each fires once.
12. limits.preview: what the limits would say if the pending request were approved now.
13. limits.engineering_assignee: the engineer engineering assigned is over their limit.
14. updates.customer_updates: engineering's public comment, else the periodic update, emailed.

Time: every rule that waits for a moment says when (`Decision.wake_at`), so the scheduler
decides an unchanged ticket again when something is due.

Then, whatever the procedure settled (`procedure.AFTERWARDS`):

- chat.chat_room: the escalation's chat room (`[escalation.chat]`): made once the escalation is
  active (and its engineering record exists), its people invited, its key events posted, archived
  at the end, its link and any problem noted in the records; from what the chat notifiers did
  so far (`ChatStatus`), so an unchanged escalation asks nothing.

Adding a rule is adding a module with its stage and one line in `procedure.PROCEDURE`.
"""

from escalation.decide.procedure import PROCEDURE, decide
from escalation.decide.reading import fingerprint
from escalation.decide.times import day_start

__all__ = ["PROCEDURE", "day_start", "decide", "fingerprint"]
