"""decide(): the escalation procedure as a pure function of ticket, ledger, time and policy.

The ledger's state is the truth about where an escalation stands; the ticket supplies the
signals (labels, fields, comment commands, priority, the gate's evidence). Commands are read in
time order and each comment's commands are consumed once: the ledger keeps the ids, so deciding
the same ticket twice writes nothing twice.

Security: a command counts only when the comment is in a place the policy allows (internal
notes by default) and its author, as the ITSM system reports it, is among the people the policy
names. Names typed in the text are never read as identity. Every refused command yields a
Reason with outcome "blocked".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from escalation.cadence import periodic_update
from escalation.decision import (
    Action,
    AddLabel,
    AddNote,
    CreateEngineeringRecord,
    CustomerEvent,
    Decision,
    EmailCustomer,
    EngineeringStatus,
    LedgerEntry,
    LedgerView,
    MoveStatus,
    NoteKind,
    NotifyManagement,
    Outcome,
    PostLinks,
    Reason,
    ReleaseEscalation,
    RemoveLabel,
    Reservation,
    SetLevel,
    SetPriority,
    ledger_key,
)
from escalation.policy import (
    AttachmentItem,
    CategoryTrigger,
    ContactItem,
    FieldItem,
    GateItem,
    Level,
    People,
    Policy,
    PriorityTrigger,
    RepeatedTrigger,
    SlaTrigger,
    TextItem,
    TextSource,
    Trigger,
)
from escalation.wording import limit_count, plural
from mapping.model import (
    Comment,
    EscalationState,
    Person,
    Priority,
    Ticket,
    Visibility,
)

S = EscalationState

# States from which a fresh request (a new command) starts the procedure again.
_RESTARTABLE = frozenset({S.NONE, S.REJECTED, S.REFUSED})
# States of a request that has not become active yet.
_WAITING = frozenset({S.REQUESTED, S.INCOMPLETE, S.PENDING_APPROVAL})


def day_start(now: datetime, timezone: str) -> datetime:
    """Start (in UTC) of the policy's calendar day containing `now`."""
    tz = ZoneInfo(timezone)
    local = _aware(now).astimezone(tz)
    return datetime.combine(local.date(), time(0), tzinfo=tz).astimezone(UTC)


def fingerprint(ticket: Ticket, policy: Policy) -> str | None:
    """A short hash of the fingerprint fields, normalised; None when they are all empty."""
    parts = [_text(_get(ticket, path)) for path in policy.fingerprint.fields]
    norm = [re.sub(r"\s+", " ", p).strip().casefold() for p in parts]
    if not any(norm):
        return None
    return hashlib.sha256("\x1f".join(norm).encode()).hexdigest()[:16]


def decide(
    ticket: Ticket,
    ledger: LedgerView,
    now: datetime,
    policy: Policy,
    *,
    engineering: EngineeringStatus | None = None,
) -> Decision:
    """Decide the escalation state, actions and reasons for an ITSM ticket at `now`.

    `ticket` is the ITSM record (where requests, approvals and notes live). `engineering` is the
    paired engineering record as last read by the sync engine, or None when there is none; its
    status drives closure. Pure: the same inputs always give the same decision.
    """
    return _Run(ticket, ledger, _aware(now), policy, engineering).decide()


# --- helpers -----------------------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _get(ticket: Ticket, path: str) -> Any:
    value: Any = ticket
    for part in path.split("."):
        if value is None:
            return None
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Person):
        return value.name or value.email or value.id or ""
    if isinstance(value, tuple | list):
        return " ".join(_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _who(person: Person | None) -> str:
    if person is None:
        return "unknown"
    if person.name and person.email:
        return f"{person.name} <{person.email}>"
    return person.name or person.email or person.id or "unknown"


def _person_key(person: Person | None) -> str | None:
    if person is None:
        return None
    return person.id or person.email


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, str) and value.strip():
        try:
            return _aware(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class _Command:
    kind: str  # "request" | "approve" | "reject"
    word: str
    argument: str
    comment: Comment


def _command_re(word: str) -> re.Pattern[str]:
    # A command is the word at the start of the text or after whitespace, not a longer word.
    return re.compile(rf"(?:^|(?<=\s)){re.escape(word)}(?![\w-])[ \t]*(?P<arg>[^\r\n]*)")


def _defang(text: str, words: Iterable[str]) -> str:
    """Quote text in our own notes so it can never be read back as a command."""
    for word in words:
        text = text.replace(word, word.lstrip("/"))
    return text


# The origin marker the sync engine appends to every comment it mirrors or writes.
_COPY_MARK = "[escalation-sync origin="


def _our_note(ticket: Ticket, body: str) -> bool:
    """A note this product wrote on the ticket itself (not a comment mirrored from elsewhere).

    Mirrored comments carry the origin of the other system; our policy notes name this one.
    """
    return f"{_COPY_MARK}{ticket.ref.system.value}:" in body


# --- the run -------------------------------------------------------------------------------------


@dataclass
class _Run:
    ticket: Ticket
    ledger: LedgerView
    now: datetime
    policy: Policy
    engineering: EngineeringStatus | None
    actions: list[Action] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.entry: LedgerEntry = self.ledger.entry or LedgerEntry()
        self.state: EscalationState = self.entry.state
        first = self.policy.levels[0].name
        self.level: str = self.entry.level or self.ticket.escalation.level or first
        self.notice_key: str | None = self.entry.notice_key
        self.requested_by: str | None = self.entry.requested_by
        self.request_reason: str | None = self.entry.reason
        self.requested_at: datetime | None = self.entry.requested_at
        self.approved_by: str | None = None
        # Active: approved and not yet released. A further escalation (L2 -> L3) of an active
        # ticket keeps its slot, so it is neither limited again nor reserved twice.
        self.active = self.entry.approved_at is not None and self.entry.released_at is None
        self.reservation: Reservation | None = None
        self.request_started = False
        self.fired: Trigger | None = None
        self.requester: str | None = None
        self.fingerprint = fingerprint(self.ticket, self.policy)
        self.assignee = self._counted_assignee()
        self.rule = self.policy.priority_rule(self.ticket.priority)
        self.words = (
            self.policy.request.command or "",
            self.policy.approval.approve_command,
            self.policy.approval.reject_command,
        )

    def _counted_assignee(self) -> str | None:
        """The assignee the per-assignee limit counts this escalation under."""
        if self.policy.limits.assignee_of == "itsm":
            return _person_key(self.ticket.assignee)
        eng = self.engineering
        if eng is not None and eng.assignee is not None:
            return _person_key(eng.assignee)
        # Unassigned in engineering (or not yet read): keep what the ledger counted.
        return self.entry.assignee

    # ---- recording ----

    def why(
        self, rule: str, outcome: Outcome, detail: str, compared: Mapping[str, Any] | None = None
    ) -> None:
        self.reasons.append(Reason(rule, outcome, detail, dict(compared or {})))

    def note(self, kind: NoteKind, key: str, body: str) -> None:
        """Write an internal note unless the same note was the last one written."""
        if key == self.notice_key:
            return
        self.notice_key = key
        self.actions.append(AddNote(_defang(body, self.words), kind=kind))

    # ---- main flow ----

    def decide(self) -> Decision:
        self.why(
            "state",
            "info",
            f"escalation state is {self.state.value} at level {self.level}",
            {"state": self.state.value, "level": self.level, "fingerprint": self.fingerprint},
        )
        if self._closure():
            return self._result()
        if self.state in (S.RESOLVED, S.CLOSED):
            self._drain_commands(reason="the escalation is already finished")
            return self._result()

        # A label, field or trigger asks now; approvals in comments may already answer it.
        if self.state is S.NONE:
            signal = self._passive_request()
            if signal is not None:
                self._start_request(*signal)
                self._management_escalation()
        elif self.state is S.INCOMPLETE:
            self._advance_request()
        # Requests and approvals are played in the order their comments were written.
        for cmd in self._new_commands():
            self._play(cmd)
        if self.state is S.PENDING_APPROVAL:
            self._passive_approval()
        if self.state is S.PENDING_APPROVAL:
            self._overdue()
            self._preview_limits()
        if self.active and self.state is S.APPROVED:
            self._engineering_assignee()
            if not self._engineering_update():
                self._cadence()
        return self._result()

    def _engineering_assignee(self) -> None:
        """Engineering assigned the record to someone: check the per-assignee limit then."""
        lim = self.policy.limits
        limit = lim.max_active_per_assignee
        if lim.assignee_of != "engineering" or limit is None:
            return
        if self.assignee is None or self.assignee == self.entry.assignee:
            return
        eng = self.engineering
        person = eng.assignee if eng is not None else None
        who = _who(person) if person is not None else self.assignee
        n = self.ledger.active_by_assignee.get(self.assignee, 0)
        ok = n < limit
        counted = f"{plural(n, 'other active escalation')}, limit {limit}"
        self.why(
            "limit.max_active_per_assignee",
            "pass" if ok else "fail",
            f"engineering assigned {who}, who has {counted}",
            {"assignee": self.assignee, "count": n, "limit": limit},
        )
        if ok:
            return
        record = eng.ref.key or eng.ref.id if eng is not None and eng.ref is not None else None
        body = (
            f"Limit max_active_per_assignee: {who} already has {counted}. "
            f"Please assign {record or 'the engineering record'} to someone else."
        )
        self.note(NoteKind.LIMIT_WARNING, f"assignee:{self.assignee}@{self._request_key()}", body)

    def _result(self) -> Decision:
        return Decision(
            state=self.state,
            level=self.level,
            actions=tuple(self.actions),
            reasons=tuple(self.reasons),
            processed_command_ids=tuple(dict.fromkeys(self.processed)),
            assignee=self.assignee,
            fingerprint=self.fingerprint,
            notice_key=self.notice_key,
            requested_by=self.requested_by,
            request_reason=self.request_reason,
            approved_by=self.approved_by,
            reservation=self.reservation,
            request_started=self.request_started,
        )

    # ---- commands ----

    def _new_commands(self) -> list[_Command]:
        patterns: list[tuple[str, str]] = []
        if self.policy.request.command:
            patterns.append(("request", self.policy.request.command))
        patterns.append(("approve", self.policy.approval.approve_command))
        patterns.append(("reject", self.policy.approval.reject_command))
        floor = datetime.min.replace(tzinfo=UTC)
        per_comment: list[tuple[datetime, int, int, list[_Command]]] = []
        seen_before = 0
        for index, comment in enumerate(self.ticket.comments):
            hits: list[tuple[int, _Command]] = []
            for kind, word in patterns:
                for m in _command_re(word).finditer(comment.body):
                    hits.append((m.start(), _Command(kind, word, m.group("arg").strip(), comment)))
            if not hits:
                continue
            if comment.id in self.entry.processed_command_ids:
                seen_before += 1
                continue
            cmds = [cmd for _, cmd in sorted(hits, key=lambda h: h[0])]
            # Journals stamp to the second and list newest first: within one timestamp a
            # request goes before the answer to it.
            answers_only = int(all(cmd.kind != "request" for cmd in cmds))
            created = _aware(comment.created or floor)
            per_comment.append((created, answers_only, index, cmds))
        per_comment.sort(key=lambda item: item[:3])
        found = [cmd for *_, cmds in per_comment for cmd in cmds]
        if seen_before:
            self.why(
                "commands.already_processed",
                "info",
                f"{plural(seen_before, 'comment')} with commands handled earlier, not re-read",
                {"comments": seen_before},
            )
        return found

    def _drain_commands(self, reason: str) -> None:
        for cmd in self._new_commands():
            self.processed.append(cmd.comment.id)
            self.why(
                f"command.{cmd.kind}",
                "info",
                f"{cmd.word} in comment {cmd.comment.id} ignored: {reason}",
                {"comment": cmd.comment.id, "author": _person_key(cmd.comment.author)},
            )

    def _place_ok(self, cmd: _Command, allowed: tuple[Visibility, ...]) -> bool:
        if cmd.comment.visibility in allowed:
            return True
        self.why(
            f"command.{cmd.kind}",
            "blocked",
            f"{cmd.word} in a {cmd.comment.visibility.value} comment ({cmd.comment.id}) by "
            f"{_who(cmd.comment.author)} is not honoured: the policy accepts it only in "
            f"{', '.join(v.value for v in allowed)} comments",
            {
                "comment": cmd.comment.id,
                "visibility": cmd.comment.visibility.value,
                "allowed": [v.value for v in allowed],
                "author": _person_key(cmd.comment.author),
            },
        )
        return False

    def _person_ok(self, cmd: _Command, people: People, role: str) -> bool:
        if people.empty or self.policy.is_member(cmd.comment.author, people):
            return True
        self.why(
            f"command.{cmd.kind}",
            "blocked",
            f"{cmd.word} in comment {cmd.comment.id} is not honoured: its author "
            f"{_who(cmd.comment.author)} is not among the {role} the policy names",
            {
                "comment": cmd.comment.id,
                "author": _person_key(cmd.comment.author),
                "users": list(people.users),
                "groups": list(people.groups),
            },
        )
        return False

    def _play(self, cmd: _Command) -> None:
        self.processed.append(cmd.comment.id)
        if _COPY_MARK in cmd.comment.body:
            self.why(
                f"command.{cmd.kind}",
                "blocked",
                f"{cmd.word} in comment {cmd.comment.id} is not honoured: the comment is a copy "
                "mirrored from the paired record; commands count only where they were written",
                {"comment": cmd.comment.id, "author": _person_key(cmd.comment.author)},
            )
            return
        if cmd.kind == "request":
            req = self.policy.request
            if not self._place_ok(cmd, req.command_in):
                return
            if not self._person_ok(cmd, req.command_from, "requesters"):
                return
            further = self.active and self.state is S.APPROVED
            if self.state not in _RESTARTABLE and not further:
                self.why(
                    "command.request",
                    "info",
                    f"{cmd.word} in comment {cmd.comment.id} ignored: an escalation is already "
                    f"{self.state.value}",
                    {"comment": cmd.comment.id, "state": self.state.value},
                )
                return
            by = _person_key(cmd.comment.author)
            if req.reason_required and not cmd.argument:
                self.why(
                    "recognition.command",
                    "fail",
                    f"{cmd.word} in comment {cmd.comment.id} gives no reason; the policy "
                    "requires one",
                    {"comment": cmd.comment.id, "author": by},
                )
                self.note(
                    NoteKind.REQUEST,
                    f"no-reason:{cmd.comment.id}",
                    f"Escalation request in comment {cmd.comment.id} by "
                    f"{_who(cmd.comment.author)} not taken: say why the ticket needs "
                    f"escalating ({cmd.word} <reason>).",
                )
                return
            self.why(
                "recognition.command",
                "pass",
                f"escalation requested by {_who(cmd.comment.author)} in comment {cmd.comment.id}",
                {"comment": cmd.comment.id, "author": by, "reason": cmd.argument},
            )
            self._start_request(by, cmd.argument or "requested by command", cmd.comment)
            return

        approval = self.policy.approval
        target = self.policy.next_level(self.level)
        if "command" not in approval.via:
            self.why(
                f"command.{cmd.kind}",
                "blocked",
                f"{cmd.word} in comment {cmd.comment.id} is not honoured: this policy takes "
                f"approval by {', '.join(approval.via)}, not by command",
                {"comment": cmd.comment.id, "via": list(approval.via)},
            )
            return
        if not self._place_ok(cmd, approval.command_in):
            return
        approvers = self._approvers(target)
        if approvers.empty:
            level_name = target.name if target else f"above {self.level}"
            self.why(
                f"command.{cmd.kind}",
                "blocked",
                f"{cmd.word} in comment {cmd.comment.id} is not honoured: no approvers are "
                f"named for level {level_name}",
                {"comment": cmd.comment.id},
            )
            return
        if not self._person_ok(cmd, approvers, "approvers"):
            return
        refused_by_limit = (self.notice_key or "").startswith("refused:max")
        if cmd.kind == "approve" and self.state is S.REFUSED and refused_by_limit:
            # A refusal by limit can be retried by an approver once slots are free.
            self._approve(_person_key(cmd.comment.author), _who(cmd.comment.author), cmd.argument)
            return
        if self.state is not S.PENDING_APPROVAL:
            self.why(
                f"command.{cmd.kind}",
                "info",
                f"{cmd.word} in comment {cmd.comment.id} ignored: nothing awaits approval "
                f"(state {self.state.value})",
                {"comment": cmd.comment.id, "state": self.state.value},
            )
            return
        if cmd.kind == "approve":
            self._approve(_person_key(cmd.comment.author), _who(cmd.comment.author), cmd.argument)
        else:
            self._reject(_person_key(cmd.comment.author), _who(cmd.comment.author), cmd.argument)

    # ---- recognition ----

    def _passive_request(self) -> tuple[str | None, str, Comment | None] | None:
        """A label, field value or proactive trigger that asks for escalation, if any."""
        req = self.policy.request
        labels = {lb.casefold() for lb in self.ticket.labels}
        if req.labels:
            hit = [lb for lb in req.labels if lb.casefold() in labels]
            self.why(
                "recognition.label",
                "pass" if hit else "fail",
                f"request label {hit[0]!r} present" if hit else "no request label on the ticket",
                {"labels": list(self.ticket.labels), "request_labels": list(req.labels)},
            )
            if hit:
                return None, f"label {hit[0]}", None
        for i, cond in enumerate(req.fields):
            value = _get(self.ticket, cond.field)
            text = _text(value).strip()
            values = [_text(v).casefold() for v in value] if isinstance(value, tuple) else []
            if cond.equals:
                wanted = {e.casefold() for e in cond.equals}
                ok = text.casefold() in wanted or bool(wanted.intersection(values))
            else:
                ok = bool(text)
            self.why(
                f"recognition.field[{i}]",
                "pass" if ok else "fail",
                f"{cond.field} is {text!r}" + (" (requests escalation)" if ok else ""),
                {"field": cond.field, "value": text, "equals": list(cond.equals)},
            )
            if ok:
                return None, f"{cond.field} = {text}", None
        for trig in self.policy.triggers:
            hit_reason = self._trigger(trig)
            if hit_reason is not None:
                self.fired = trig
                return f"trigger:{trig.name}", hit_reason, None
        if self.rule.auto_request and self.ticket.priority is not None:
            self.why(
                f"priority.{self.ticket.priority.value}",
                "pass",
                f"{self.ticket.priority.value} tickets are escalated immediately",
                {"priority": self.ticket.priority.value},
            )
            return (
                f"priority:{self.ticket.priority.value}",
                (f"{self.ticket.priority.value} immediate escalation"),
                None,
            )
        return None

    def _trigger(
        self, trig: PriorityTrigger | SlaTrigger | RepeatedTrigger | CategoryTrigger
    ) -> str | None:
        rule = f"trigger.{trig.name}"
        if isinstance(trig, PriorityTrigger):
            prio = self.ticket.priority
            ok = prio is not None and prio in trig.priorities
            self.why(
                rule,
                "pass" if ok else "fail",
                f"priority {prio.value if prio else 'unset'}"
                + (" is" if ok else " is not")
                + f" one of {', '.join(p.value for p in trig.priorities)}",
                {"priority": prio.value if prio else None, "priorities": list(trig.priorities)},
            )
            return f"priority {prio.value}" if ok and prio else None
        if isinstance(trig, SlaTrigger):
            due = _parse_time(_get(self.ticket, trig.field))
            if due is None:
                self.why(rule, "fail", f"{trig.field} holds no SLA due time", {"field": trig.field})
                return None
            hours = (due - self.now).total_seconds() / 3600
            ok = hours <= trig.within_hours
            self.why(
                rule,
                "pass" if ok else "fail",
                f"SLA due in {hours:.1f} h (threshold {trig.within_hours:g} h)"
                if hours >= 0
                else f"SLA breached {-hours:.1f} h ago",
                {"hours_left": round(hours, 2), "within_hours": trig.within_hours},
            )
            return f"SLA breach within {trig.within_hours:g} h" if ok else None
        if isinstance(trig, RepeatedTrigger):
            since = self.now - timedelta(hours=trig.window_hours)
            me = ledger_key(self.ticket.ref)
            tickets = {
                s.ticket
                for s in self.ledger.recent_fingerprints
                if s.fingerprint == self.fingerprint and _aware(s.seen_at) >= since
            }
            if self.fingerprint is not None:
                tickets.add(me)
            count = len(tickets)
            ok = self.fingerprint is not None and count >= trig.count
            self.why(
                rule,
                "pass" if ok else "fail",
                f"{plural(count, 'ticket')} with this fingerprint in the last "
                f"{trig.window_hours:g} h (threshold {trig.count})",
                {"count": count, "threshold": trig.count, "window_hours": trig.window_hours},
            )
            return (
                f"repeated occurrence ({plural(count, 'ticket')} in {trig.window_hours:g} h)"
                if ok
                else None
            )
        category = (self.ticket.category or "").casefold()
        ok = bool(category) and category in {c.casefold() for c in trig.categories}
        self.why(
            rule,
            "pass" if ok else "fail",
            f"category {self.ticket.category or 'unset'!r}"
            + (" is" if ok else " is not")
            + f" one of {', '.join(trig.categories)}",
            {"category": self.ticket.category, "categories": list(trig.categories)},
        )
        return f"category {self.ticket.category}" if ok else None

    # ---- the request path ----

    def _start_request(self, by: str | None, reason: str, comment: Comment | None) -> None:
        self.state = S.REQUESTED
        self.requested_by = by
        self.requester = _who(comment.author) if comment is not None else None
        self.request_reason = reason
        self.requested_at = self.now
        self.request_started = True
        self.approved_by = None
        self._advance_request()

    def _advance_request(self) -> None:
        """From a request: low-impact refusal, the gate, then approval or activation."""
        target = self.policy.next_level(self.level)
        if target is None:
            self._refuse(
                "refused:top-level",
                f"Escalation refused: the ticket is already at the highest level ({self.level}).",
                "level",
                {"level": self.level},
            )
            return
        low = self._low_impact()
        if low is not None:
            self._refuse(
                "refused:low-impact",
                f"Escalation refused: low-impact issue ({low}). Low-impact issues are not "
                "accepted as escalations.",
                "limit.low_impact",
                {"matched": low},
            )
            return
        missing = self._gate()
        if missing:
            self.state = S.INCOMPLETE
            names = [m[0] for m in missing]
            body = (
                f"Escalation to {target.name} is on hold: the ticket is incomplete. Missing:\n"
                + "\n".join(f"- {desc}" for _, desc in missing)
                + "\nThe escalation proceeds once these are added."
            )
            key = "incomplete:" + ",".join(sorted(names))
            before = self.notice_key
            self.note(NoteKind.NEEDS_INFORMATION, key, body)
            if self.policy.gate.email_customer and before != self.notice_key:
                self.actions.append(EmailCustomer(CustomerEvent.NEEDS_INFORMATION))
            return
        if self._approval_required():
            self.state = S.PENDING_APPROVAL
            approvers = self._approvers(target)
            named = ", ".join([*approvers.users, *(f"group {g}" for g in approvers.groups)])
            self.note(
                NoteKind.REQUEST,
                f"request:{self.requested_at.isoformat() if self.requested_at else ''}",
                f"Escalation to {target.name} requested"
                + (f" by {self.requester or self.requested_by}" if self.requested_by else "")
                + f" at {_stamp(self.now)}. Reason: {self.request_reason or 'not given'}.\n"
                f"Awaiting approval ({named or 'approval field or transition'}).",
            )
            self.why(
                "approval.required",
                "info",
                f"approval by {named or 'field/transition'} is required before transfer",
                {
                    "level": target.name,
                    "users": list(approvers.users),
                    "groups": list(approvers.groups),
                },
            )
            return
        self.why(
            "approval.required",
            "info",
            "approval is not required for this ticket"
            + (f" ({self.ticket.priority.value})" if self.ticket.priority else ""),
            {"priority": self.ticket.priority.value if self.ticket.priority else None},
        )
        self._activate(None, None, "")

    def _approvers(self, target: Level | None) -> People:
        """Who may approve escalating to `target`: the priority's approvers, else the level's."""
        if target is None:
            return People()
        return target.approvers if self.rule.approvers.empty else self.rule.approvers

    def _management_escalation(self) -> None:
        """Tell management at once when the trigger that started the request says so."""
        if self.fired is None or not self.fired.notify_management:
            return
        self.why(
            f"trigger.{self.fired.name}.notify_management",
            "pass",
            f"management is told now: {self.request_reason}",
            {"trigger": self.fired.name},
        )
        self.actions.append(NotifyManagement("requested", self.policy.management.recipients))

    def _approval_required(self) -> bool:
        if self.rule.approval_required is not None:
            return self.rule.approval_required
        return self.policy.approval.required

    def _low_impact(self) -> str | None:
        low = self.policy.limits.low_impact
        t = self.ticket
        found: str | None = None
        if t.priority is not None and t.priority in low.priorities:
            found = f"priority {t.priority.value}"
        elif t.impact is not None and t.impact.value in low.impacts:
            found = f"impact {t.impact.value}"
        elif t.category and t.category.casefold() in {c.casefold() for c in low.categories}:
            found = f"category {t.category}"
        else:
            labels = {lb.casefold() for lb in t.labels}
            hit = [lb for lb in low.labels if lb.casefold() in labels]
            if hit:
                found = f"label {hit[0]}"
        configured = any((low.priorities, low.impacts, low.categories, low.labels))
        if configured:
            self.why(
                "limit.low_impact",
                "fail" if found else "pass",
                f"low impact: {found}" if found else "not a low-impact issue",
                {
                    "priority": t.priority.value if t.priority else None,
                    "impact": t.impact.value if t.impact else None,
                    "category": t.category,
                },
            )
        return found

    def _gate(self) -> list[tuple[str, str]]:
        """Missing gate items as (name, description)."""
        gate = self.policy.gate
        if not gate.enabled or not self.rule.gate_required:
            self.why(
                "gate",
                "info",
                "completeness gate skipped"
                + ("" if gate.enabled else " (disabled)")
                + ("" if self.rule.gate_required else " for this priority"),
            )
            return []
        wanted = set(self.rule.extra_gate_items)
        target = self.policy.next_level(self.level)
        items = [
            i
            for i in gate.items
            if (i.name in wanted or not self._only_for_priorities(i.name))
            and (not i.levels or (target is not None and target.name in i.levels))
        ]
        missing: list[tuple[str, str]] = []
        for item in items:
            ok, evidence = self._check_item(item)
            self.why(
                f"gate.{item.name}",
                "pass" if ok else "fail",
                f"{item.description or item.name}: {evidence}",
                {"check": item.check, "found": ok},
            )
            if not ok:
                missing.append((item.name, item.description or item.name))
        return missing

    def _only_for_priorities(self, name: str) -> bool:
        """Items named in some priority's extra_gate_items apply only to those priorities."""
        return any(name in r.extra_gate_items for r in self.policy.priorities.values())

    def _texts(self, sources: tuple[TextSource, ...]) -> list[str]:
        out: list[str] = []
        for src in sources:
            if src == "summary":
                out.append(self.ticket.summary or "")
            elif src == "description":
                out.append(self.ticket.description or "")
            else:
                for c in self.ticket.comments:
                    if _our_note(self.ticket, c.body):
                        # Our own notes quote what is missing; they are no evidence of it.
                        continue
                    if (
                        src == "comments"
                        or (src == "internal_comments" and c.visibility is Visibility.INTERNAL)
                        or (src == "public_comments" and c.visibility is Visibility.PUBLIC)
                    ):
                        out.append(c.body)
        return out

    def _check_item(self, item: GateItem) -> tuple[bool, str]:
        if isinstance(item, FieldItem):
            text = _text(_get(self.ticket, item.field)).strip()
            ok = len(text) >= item.min_length
            return ok, (
                f"{item.field} is filled ({plural(len(text), 'character')})"
                if ok
                else f"{item.field} is empty or shorter than {plural(item.min_length, 'character')}"
            )
        if isinstance(item, TextItem):
            rx = re.compile(item.pattern)
            ok = any(rx.search(t) for t in self._texts(item.search))
            return ok, (
                f"found in {'/'.join(item.search)}"
                if ok
                else f"not found in {'/'.join(item.search)}"
            )
        if isinstance(item, AttachmentItem):
            atts = self.ticket.attachments
            if item.filename:
                frx = re.compile(item.filename)
                atts = tuple(a for a in atts if frx.search(a.filename))
            ok = len(atts) >= item.min_count
            return ok, f"{plural(len(atts), 'matching attachment')}, {item.min_count} needed"
        assert isinstance(item, ContactItem)
        if item.field:
            value = _get(self.ticket, item.field)
            named = (
                bool(value.name or value.email)
                if isinstance(value, Person)
                else bool(_text(value).strip())
            )
            if named:
                return True, f"contact named in {item.field}"
        if item.pattern and any(re.search(item.pattern, t) for t in self._texts(item.search)):
            return True, "contact named in the text"
        return False, "no contact named"

    # ---- approval ----

    def _request_key(self) -> str:
        return self.requested_at.isoformat() if self.requested_at else "-"

    def _passive_approval(self) -> None:
        approval = self.policy.approval
        target = self.policy.next_level(self.level)
        if "field" in approval.via and approval.field:
            text = _text(_get(self.ticket, approval.field)).strip()
            token = f"field:{approval.field}={text.casefold()}@{self._request_key()}"
            if text and token not in self.entry.processed_command_ids:
                folded = text.casefold()
                if folded in {v.casefold() for v in approval.approved_values}:
                    self.processed.append(token)
                    self.why(
                        "approval.field",
                        "pass",
                        f"{approval.field} is {text!r}",
                        {"field": approval.field, "value": text},
                    )
                    self._approve(None, f"{approval.field} set to {text!r}", "")
                    return
                if folded in {v.casefold() for v in approval.rejected_values}:
                    self.processed.append(token)
                    self.why(
                        "approval.field",
                        "fail",
                        f"{approval.field} is {text!r}",
                        {"field": approval.field, "value": text},
                    )
                    self._reject(None, f"{approval.field} set to {text!r}", "")
                    return
        if "transition" in approval.via:
            esc = self.ticket.escalation
            if esc.state in (S.APPROVED, S.REJECTED):
                # Who decided is part of the token: a refused decision does not use up the
                # one an approver makes afterwards.
                who_key = _person_key(esc.approver) or ""
                token = f"transition:{esc.state.value}:{who_key}@{self._request_key()}"
                if token in self.entry.processed_command_ids:
                    return
                self.processed.append(token)
                approvers = self._approvers(target)
                if (
                    esc.approver is not None
                    and not approvers.empty
                    and not self.policy.is_member(esc.approver, approvers)
                ):
                    self.why(
                        "approval.transition",
                        "blocked",
                        f"transition to {esc.state.value} by {_who(esc.approver)} is not honoured:"
                        " not among the approvers the policy names",
                        {"approver": _person_key(esc.approver)},
                    )
                    return
                who = _who(esc.approver) if esc.approver else "workflow transition"
                if esc.state is S.APPROVED:
                    self._approve(_person_key(esc.approver), who, esc.reason or "")
                else:
                    self._reject(_person_key(esc.approver), who, esc.reason or "")

    def _approve(self, by: str | None, who: str, note: str) -> None:
        self.approved_by = by or who
        self.why(
            "approval",
            "pass",
            f"approved by {who}",
            {"approver": by or who, "note": note},
        )
        self._activate(by, who, note)

    def _reject(self, by: str | None, who: str, items: str) -> None:
        target = self.policy.next_level(self.level)
        # Rejecting a further escalation leaves the current one running.
        self.state = S.APPROVED if self.active else S.REJECTED
        self.why(
            "approval",
            "fail",
            f"rejected by {who}",
            {"approver": by or who, "action_items": items},
        )
        self.note(
            NoteKind.REJECTION,
            f"rejection:{self._request_key()}:{self.now.isoformat()}",
            f"Escalation to {target.name if target else '-'} rejected by {who} at "
            f"{_stamp(self.now)} (current level {self.level}).\n"
            f"Action items: {items or 'none given'}",
        )

    # ---- limits and activation ----

    def _limit_checks(self) -> list[tuple[str, int, int, bool]]:
        """(limit name, current count, limit, passes) for each configured limit."""
        lim = self.policy.limits
        out: list[tuple[str, int, int, bool]] = []
        if lim.max_per_day is not None:
            n = self.ledger.escalations_today
            out.append(("max_per_day", n, lim.max_per_day, n < lim.max_per_day))
        if lim.max_active is not None:
            n = self.ledger.active_count
            out.append(("max_active", n, lim.max_active, n < lim.max_active))
        if lim.max_active_per_assignee is not None and self.assignee is not None:
            n = self.ledger.active_by_assignee.get(self.assignee, 0)
            out.append(
                (
                    "max_active_per_assignee",
                    n,
                    lim.max_active_per_assignee,
                    n < lim.max_active_per_assignee,
                )
            )
        return out

    def _preview_limits(self) -> None:
        for name, n, limit, ok in self._limit_checks():
            self.why(
                f"limit.{name}",
                "info",
                f"if approved now: {limit_count(name, n)} of {limit} allowed"
                + ("" if ok else " (would be refused)"),
                {"count": n, "limit": limit},
            )

    def _activate(self, by: str | None, who: str | None, note: str) -> None:
        target = self.policy.next_level(self.level)
        assert target is not None
        failed: list[str] = []
        if self.active:
            self.why(
                "limits",
                "info",
                "further escalation of an active escalation: it keeps its slot",
                {"level": self.level},
            )
        for name, n, limit, ok in [] if self.active else self._limit_checks():
            self.why(
                f"limit.{name}",
                "pass" if ok else "fail",
                f"{limit_count(name, n)}, limit {limit}",
                {"count": n, "limit": limit},
            )
            if not ok:
                failed.append(f"{name} ({limit_count(name, n)}, limit {limit})")
        if failed:
            self._refuse(
                "refused:" + ",".join(f.split(" ")[0] for f in failed),
                "Escalation refused: limit reached: " + "; ".join(failed) + ".",
                None,
                {},
            )
            return
        previous = self.level
        self.state = S.APPROVED
        self.level = target.name
        lim = self.policy.limits
        if not self.active:
            self.reservation = Reservation(
                max_per_day=lim.max_per_day,
                max_active=lim.max_active,
                max_active_per_assignee=lim.max_active_per_assignee,
                assignee=self.assignee,
                day_start=day_start(self.now, self.policy.timezone),
            )
        self._approval_actions(previous, target, who, note)

    def _approval_actions(self, previous: str, target: Level, who: str | None, note: str) -> None:
        on = self.policy.on_approval
        t = self.ticket
        if who is None:
            head = (
                f"Escalation from {previous} to {target.name} started at {_stamp(self.now)} "
                "without approval (not required by the policy for this ticket)."
            )
        else:
            head = (
                f"Escalation approved by {who} at {_stamp(self.now)}: {previous} -> {target.name}."
            )
        body = head + f"\nReason: {self.request_reason or 'not given'}"
        if note:
            body += f"\nApprover note: {note}"
        self.note(NoteKind.APPROVAL, f"approval:{target.name}:{self._request_key()}", body)
        if on.tag and on.tag.casefold() not in {lb.casefold() for lb in t.labels}:
            self.actions.append(AddLabel(on.tag))
        if self.policy.request.remove_labels_on_approval:
            present = {lb.casefold(): lb for lb in t.labels}
            for lb in self.policy.request.labels:
                if lb.casefold() in present:
                    self.actions.append(RemoveLabel(present[lb.casefold()]))
        new_prio = self._new_priority()
        if new_prio is not None and new_prio != t.priority:
            self.actions.append(SetPriority(new_prio))
        if on.set_level:
            self.actions.append(SetLevel(target.name))
        if on.status is not None and t.status != on.status:
            self.actions.append(MoveStatus(on.status))
        if on.create_engineering_record and target.target_system is not None:
            project = target.project_for(t.category)
            assert project is not None
            self.actions.append(
                CreateEngineeringRecord(
                    target_system=target.target_system,
                    project_or_table=project,
                    level=target.name,
                    summary=self._engineering_summary(),
                    description=self._engineering_description(target, who, note),
                    queue=target.queue,
                    issue_type=target.issue_type,
                    labels=(on.tag,) if on.tag else (),
                )
            )
            if on.post_links:
                self.actions.append(PostLinks())
        if on.notify_management or self.rule.notify_management:
            self.actions.append(NotifyManagement("escalated", self.policy.management.recipients))
        if on.email_customer:
            self.actions.append(EmailCustomer(CustomerEvent.ESCALATED))

    def _new_priority(self) -> Priority | None:
        on = self.policy.on_approval
        if on.set_priority is not None:
            return on.set_priority
        if on.priority_bump and self.ticket.priority is not None:
            rank = max(1, self.ticket.priority.rank - on.priority_bump)
            return Priority(f"P{rank}")
        return None

    def _engineering_summary(self) -> str:
        key = self.ticket.ref.key or self.ticket.ref.id
        return f"[{key}] {self.ticket.summary or '(no summary)'}"

    def _engineering_description(self, target: Level, who: str | None, note: str) -> str:
        t = self.ticket
        lines = [
            t.description or "(no description)",
            "",
            "Escalation context",
            f"- Source record: {t.ref.key or t.ref.id}" + (f" ({t.ref.url})" if t.ref.url else ""),
            f"- Level: {target.name}",
            f"- Priority: {t.priority.value if t.priority else 'unset'}",
            f"- Category: {t.category or 'unset'}",
            f"- Reason: {self.request_reason or 'not given'}",
            f"- Requested by: {self.requester or self.requested_by or 'not recorded'}",
            f"- Approved by: {who or 'not required'}",
        ]
        if note:
            lines.append(f"- Approver note: {note}")
        if t.attachments:
            lines.append("- Attachments: " + ", ".join(a.filename for a in t.attachments))
        return _defang("\n".join(lines), self.words)

    def _refuse(self, key: str, body: str, rule: str | None, compared: Mapping[str, Any]) -> None:
        self.state = S.APPROVED if self.active else S.REFUSED
        if rule is not None and not any(r.rule == rule for r in self.reasons):
            self.why(rule, "fail", body, compared)
        self.note(NoteKind.REFUSAL, f"{key}@{self._request_key()}", body)

    # ---- while pending / active ----

    def _overdue(self) -> None:
        hours = self.rule.approval_within_hours
        if hours is None or self.requested_at is None:
            return
        waited = (self.now - _aware(self.requested_at)).total_seconds() / 3600
        late = waited > hours
        self.why(
            "priority.approval_within_hours",
            "fail" if late else "pass",
            f"approval has waited {waited:.1f} h of {hours:g} h allowed",
            {"waited_hours": round(waited, 2), "within_hours": hours},
        )
        key = f"overdue:{self._request_key()}"
        if late and self.notice_key != key:
            self.notice_key = key
            self.actions.append(
                NotifyManagement("approval_overdue", self.policy.management.recipients)
            )

    def _engineering_update(self) -> bool:
        """A public comment from engineering reached the ticket since the customer last heard."""
        if not self.policy.customer_updates.public_comments:
            return False
        last = self.entry.last_customer_update_at or self.entry.approved_at
        if last is None:
            return False
        since = _aware(last)
        # ServiceNow journal times stop at the second while ours do not: a comment copied in
        # the same second as the approval or the last update must still count, so compare
        # whole seconds and let the comment id (the notice key) stop a second telling.
        floor = since.replace(microsecond=0)
        fresh = [
            c
            for c in self.ticket.comments
            if c.visibility is Visibility.PUBLIC
            and _COPY_MARK in c.body
            and not _our_note(self.ticket, c.body)
            and c.created is not None
            and _aware(c.created) >= floor
        ]
        if not fresh or self.notice_key == f"public:{fresh[-1].id}":
            return False
        self.why(
            "customer_updates.public_comment",
            "pass",
            f"{plural(len(fresh), 'public comment')} from engineering since {_stamp(since)}",
            {"comments": [c.id for c in fresh]},
        )
        # Each update is its own outbox message, keyed by the newest comment it reports.
        self.notice_key = f"public:{fresh[-1].id}"
        self.actions.append(EmailCustomer(CustomerEvent.PUBLIC_UPDATE, comment_id=fresh[-1].id))
        return True

    def _cadence(self) -> None:
        interval = self.policy.customer_updates.interval(self.ticket.priority)
        if interval is None:
            return
        approved = self.entry.approved_at
        last = self.entry.last_customer_update_at
        due = periodic_update(
            priority=self.ticket.priority.value if self.ticket.priority else None,
            escalated=True,
            escalated_at=_aware(approved) if approved else None,
            last_public_update_at=_aware(last) if last else None,
            now=self.now,
            cadence={self.ticket.priority.value if self.ticket.priority else "": interval},
        )
        self.why(
            "customer_updates.cadence",
            "pass" if due.due else "info",
            due.reason,
            {"interval_hours": interval.total_seconds() / 3600, "due_at": due.slot},
        )
        if due.due:
            self.notice_key = f"periodic:{due.slot}"
            self.actions.append(EmailCustomer(CustomerEvent.PERIODIC_UPDATE))

    # ---- closure ----

    def _closure(self) -> bool:
        """Engineering resolved, or the ITSM record closed; True when a closure step ran."""
        close = self.policy.closure
        t = self.ticket
        itsm_closed = t.status is not None and t.status in close.itsm_closed_statuses
        if self.active:
            eng = self.engineering
            if (
                eng is not None
                and eng.status is not None
                and eng.status in close.engineering_statuses
            ):
                self._resolve(eng)
                return True
            if itsm_closed:
                self.state = S.CLOSED
                self.why(
                    "closure.itsm_closed",
                    "pass",
                    f"the ITSM record is {t.status.value if t.status else '-'}; the escalation "
                    "is closed and stops counting as active",
                )
                self.note(
                    NoteKind.CLOSURE,
                    f"closure:{self._request_key()}",
                    f"Escalation at {self.level} closed at {_stamp(self.now)}: the record was "
                    f"{t.status.value if t.status else 'closed'} before engineering resolved it.",
                )
                self.actions.append(ReleaseEscalation())
                return True
            self.why(
                "closure.engineering",
                "info",
                "engineering record "
                + (f"is {eng.status.value}" if eng and eng.status else "status not known yet")
                + "; the escalation stays active",
                {"engineering_status": eng.status.value if eng and eng.status else None},
            )
            return False
        if self.state is S.RESOLVED and itsm_closed and t.status is not None:
            self.state = S.CLOSED
            self.why("closure.itsm_closed", "pass", f"the ITSM record is {t.status.value}")
            if close.email_customer_on_close:
                self.actions.append(EmailCustomer(CustomerEvent.CLOSED))
            self.notice_key = f"closed:{self._request_key()}"
            return True
        if self.state in _WAITING and itsm_closed:
            self.state = S.CLOSED
            self.why(
                "closure.itsm_closed",
                "info",
                f"the record is {t.status.value if t.status else '-'}; the pending request lapses",
            )
            return True
        return False

    def _resolve(self, eng: EngineeringStatus) -> None:
        close = self.policy.closure
        t = self.ticket
        self.state = S.RESOLVED
        ref = eng.ref.key or eng.ref.id if eng.ref else "the engineering record"
        self.why(
            "closure.engineering",
            "pass",
            f"engineering record {ref} is {eng.status.value if eng.status else '-'}",
            {"engineering_status": eng.status.value if eng.status else None},
        )
        if close.write_resolution:
            self.note(
                NoteKind.RESOLUTION,
                f"resolution:{self._request_key()}",
                f"Engineering ({self.level}) resolved {ref} at {_stamp(self.now)}.\n"
                f"Resolution: {eng.resolution or 'no resolution notes were given'}",
            )
        if close.move_to is not None and t.status != close.move_to:
            self.actions.append(MoveStatus(close.move_to))
        if close.ask_customer_to_confirm:
            self.actions.append(EmailCustomer(CustomerEvent.RESOLVED_PLEASE_CONFIRM))
        if close.notify_management:
            self.actions.append(NotifyManagement("resolved", self.policy.management.recipients))
        tag = self.policy.on_approval.tag
        if close.remove_tag and tag and tag.casefold() in {lb.casefold() for lb in t.labels}:
            self.actions.append(RemoveLabel(tag))
        self.actions.append(ReleaseEscalation())
