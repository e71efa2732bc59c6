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
3. play.set_aside_when_finished: a resolved or closed escalation consumes new commands; ends.
4. recognition.recognise: with no escalation, a request label, field value, proactive trigger
   or auto-requesting priority starts a request (request.start: top level and low impact
   refused, the gate, then approval asked or activation).
5. request.resume: a request the gate held earlier is checked again.
6. play.play_commands: request, approve and reject commands in the order written, each only if
   authorise.authorised (right place, right people, not a mirrored copy).
7. approval.by_field_or_transition: a pending request answered by field or transition
   (approval leads to activation: limits, level, reservation, the on_approval actions).
8. overdue.approval_overdue: management told when approval waits too long.
9. limits.preview: what the limits would say if the pending request were approved now.
10. limits.engineering_assignee: the engineer engineering assigned is over their limit.
11. updates.customer_updates: engineering's public comment, else the periodic update, emailed.

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
