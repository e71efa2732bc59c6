"""One mail from the replies mailbox, turned into what it means for the records.

```
read_reply (inbound_mail, pure): kind, ticket, the customer's words made inert, the verdict
  loop / auto-reply          -> nothing is posted; the mail goes to the refused folder
  bounce                     -> one internal note per failed address on the ticket; a permanent
                                failure stops mail to that address (the outbox skips it)
  reply, no ticket           -> refused (a new conversation is not a reply)
  reply from the customer    -> a public comment on the ITSM record "By e-mail from ...", its
  or a watcher                  attachments under the size limit; then the policy's
                                customer_replies: a confirmation closes, "not fixed" reopens and
                                tells engineering; the ticket is queued, so the normal sync
                                mirrors the comment to engineering
  reply from anyone else     -> an internal note, or refused ([email.inbound] stranger_policy)
```
Posting happens once. The comment carries an origin marker made from the mail's Message-ID
(`mail_marker`), and the mailbox claims a mail before anything is posted for it: a mail read
again after a crash ("maybe processed") is looked for on the record first, and a comment found
is not written twice. Attachments are uploaded before the comment (a file already on the record
with that name and size is not uploaded again), so a comment found means its files are there.
Notes and status moves are keyed and compared the same way.

Errors say what becomes of the mail: a transient failure (`errors.Retry`, a system paused)
leaves it claimed for the next pass; a permanent one (`errors.DeadLetter`: the record refused
the write) moves it to the refused folder with the reason recorded, so nothing is lost and an
operator can find it there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from io import BytesIO

import structlog

import errors
from connectors.errors import NotFound
from connectors.mailbox import FetchedMail, MailState, Outcome
from connectors.mailbox.settings import InboundSettings
from escalation.decide.reading import field_value
from escalation.policy import Policy
from escalation.replies import Reply, ReplyEffect, react
from inbound_mail import (
    DEFAULT_CONFIRMED,
    DEFAULT_NOT_FIXED,
    InboundReply,
    Limits,
    LoopLimits,
    MailKind,
    Placement,
    ReplyOptions,
    ReplyPatterns,
    Standing,
    compile_subject_patterns,
    placement,
    read_reply,
    standing,
)
from inbound_mail.defang import defang
from inbound_mail.matching import DEFAULT_SUBJECT_RES
from mapping.model import Person, Status, System, Ticket
from sync.pipeline.engine import Engine
from sync.pipeline.markers import Marker, mail_marker
from sync.pipeline.plan import ticket_name
from sync.pipeline.records import ticket_id
from sync.procedure.ledger import get_entry
from sync.replies import store as mails
from sync.systems import registry as systems
from sync.systems.base import CommentsAsPerson

log = structlog.get_logger("escalation_sync.replies")

# The loop check counts a sender's mails about a ticket over this window.
LOOP_WINDOW = timedelta(hours=1)
_ADDRESS = re.compile(r"[^\s,;<>\"']+@[^\s,;<>\"']+")


@dataclass(frozen=True, slots=True)
class Handled:
    """What became of one mail: how it is settled on the server (None: left claimed, to be
    read again), what the store records, and whether a comment was written in this pass."""

    message_id: str
    kind: str
    outcome: str
    reason: str
    settle: Outcome | None
    ticket: str | None = None
    sender: str | None = None
    subject: str | None = None
    posted: bool = False
    # A system refused our credentials (errors.PauseSystem): the pass stops here.
    paused: bool = False


def reply_options(
    inbound: InboundSettings, policy: Policy | None, own_addresses: Sequence[str]
) -> ReplyOptions:
    """How replies are read, from `[email.inbound]` and the policy's `customer_replies`."""
    limits = Limits(
        max_text_chars=inbound.max_text_chars,
        max_attachment_bytes=inbound.max_attachment_bytes,
        max_attachments_total_bytes=inbound.max_attachments_total_bytes,
        max_attachments=inbound.max_attachments,
    )
    patterns = ReplyPatterns.compile()
    if policy is not None:
        rules = policy.customer_replies
        patterns = ReplyPatterns.compile(
            rules.confirmed.patterns if rules.confirmed.patterns is not None else DEFAULT_CONFIRMED,
            rules.not_fixed.patterns if rules.not_fixed.patterns is not None else DEFAULT_NOT_FIXED,
            rules.read_lines,
        )
    subjects = (
        compile_subject_patterns(inbound.subject_patterns)
        if inbound.subject_patterns is not None
        else DEFAULT_SUBJECT_RES
    )
    return ReplyOptions(
        limits=limits,
        languages=inbound.languages,
        subject_patterns=subjects,
        loop=LoopLimits(
            max_hops=inbound.loop_max_hops,
            max_per_window=inbound.loop_max_per_hour,
            window=LOOP_WINDOW,
        ),
        own_addresses=tuple(a.lower() for a in own_addresses if a),
        patterns=patterns,
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def _one_line(text: str, limit: int = 200) -> str:
    return defang(" ".join(text.split()))[:limit]


def _size(n: int) -> str:
    mib = 1024 * 1024
    return f"{n / mib:.1f} MB" if n >= mib else f"{n // 1024} kB"


def _first_line(text: str) -> tuple[str, ...]:
    """The reply's first line of words, as the notes quote it."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (line[:200],) if line else ()


def addresses_in(value: object) -> set[str]:
    """The e-mail addresses a field value holds: a person's, or any written in text or lists."""
    if value is None:
        return set()
    if isinstance(value, Person):
        return {value.email.strip().lower()} if value.email else set()
    if isinstance(value, list | tuple | set | frozenset):
        found: set[str] = set()
        for item in value:
            found |= addresses_in(item)
        return found
    if isinstance(value, Mapping):
        return addresses_in(value.get("email") or value.get("value"))
    return {a.lower() for a in _ADDRESS.findall(str(value))}


class ReplyHandler:
    """Reads one mail and makes the writes it calls for (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        inbound: InboundSettings,
        *,
        policy: Policy | None = None,
        own_addresses: Sequence[str] = (),
        enqueue: Callable[[str, str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.inbound = inbound
        self.policy = policy
        self.options = reply_options(inbound, policy, own_addresses)
        self.enqueue = enqueue

    # --- reading ------------------------------------------------------------------------------

    def _sent(self, message_id: str) -> str | None:
        with self.engine.store.reading() as tx:
            return mails.sent_ticket(tx, message_id)

    def _recent(self, message_id: str) -> Callable[[str, str], Sequence[datetime]]:
        def recent(sender: str, ticket: str) -> Sequence[datetime]:
            since = self.engine.clock() - LOOP_WINDOW
            with self.engine.store.reading() as tx:
                return mails.earlier_mails(tx, sender, ticket, since=since, besides=message_id)

        return recent

    def _known(self, key: str) -> bool:
        """A ticket number in a subject names a ticket of ours: mailed about, or readable."""
        with self.engine.store.reading() as tx:
            if mails.mailed_about(tx, key):
                return True
        return self._find(key) is not None

    def _find(self, key: str) -> Ticket | None:
        """The ITSM record a mail names (by key or number), read fresh; None when none has it."""
        itsm = sorted(self.engine.itsm_systems)
        claimed = [s for s in itsm if systems.get(s).claims_reference(key)]
        for system in claimed or itsm:
            try:
                return self.engine.read(system, key)
            except NotFound:
                continue
        return None

    def read(self, fetched: FetchedMail) -> InboundReply:
        """The mail as `inbound_mail` reads it (pure, given the outbox and the clock)."""
        now = self.engine.clock()
        # The key the mail is recorded under (`InboundReply.origin_key`), so a mail read again
        # after a crash is not counted as one more of its sender's.
        key = fetched.message_id or (
            f"<sha256.{hashlib.sha256(fetched.raw).hexdigest()[:40]}@inbound.invalid>"
        )
        return read_reply(
            fetched.raw,
            sent_lookup=self._sent,
            options=self.options,
            recent=self._recent(key),
            now=now,
            known_ticket=self._known,
        )

    # --- one mail -----------------------------------------------------------------------------

    def handle(self, fetched: FetchedMail) -> Handled:
        """Read the mail and do what it calls for; never raises for the mail's sake."""
        try:
            reply = self.read(fetched)
        except Exception as exc:
            unread = Handled(
                fetched.message_id or fetched.ref.id,
                "unreadable",
                mails.REFUSED,
                f"could not be read: {type(exc).__name__}",
                "refused",
            )
            if errors.action_of(exc) is errors.Action.UNKNOWN:
                # The reader never raises on bad input: this is a bug of ours, and the mail
                # goes to the refused folder with the reason rather than stopping the mailbox.
                log.exception("mail could not be read", ref=fetched.ref.id)
                return unread
            # Looking its ticket up failed (a system unreachable): read it again next pass.
            return self._failed(exc, unread)
        base = Handled(
            reply.origin_key,
            reply.kind.value,
            mails.REFUSED,
            "",
            "refused",
            ticket=reply.match.ticket,
            sender=reply.mail.sender,
            subject=reply.mail.subject,
        )
        if fetched.truncated:
            log.warning("mail over the size limit was read in part", message_id=reply.origin_key)
        try:
            return self._handle(fetched, reply, base)
        except Exception as exc:
            return self._failed(exc, base)

    def _failed(self, exc: Exception, base: Handled) -> Handled:
        action = errors.action_of(exc)
        reason = f"{type(exc).__name__}: {exc}"[:500]
        if action in (errors.Action.RETRY, errors.Action.PAUSE_SYSTEM):
            log.warning("mail left for the next pass", message_id=base.message_id, reason=reason)
            paused = action is errors.Action.PAUSE_SYSTEM
            return replace(base, outcome=mails.FAILED, reason=reason, settle=None, paused=paused)
        if action is errors.Action.UNKNOWN:
            log.exception("mail left for the next pass after an error", message_id=base.message_id)
            return replace(base, outcome=mails.FAILED, reason=reason, settle=None)
        log.error(
            "mail refused: a system refused its writes", message_id=base.message_id, reason=reason
        )
        return replace(base, outcome=mails.FAILED, reason=reason, settle="refused")

    def _handle(self, fetched: FetchedMail, reply: InboundReply, base: Handled) -> Handled:
        kind = reply.kind
        reasons = "; ".join(reply.classification.reasons)
        if kind is MailKind.LOOP:
            log.info("mail loop broken: not posted", message_id=reply.origin_key, why=reasons)
            return replace(base, reason=f"loop: {reasons}")
        if kind is MailKind.AUTO_REPLY:
            log.info("auto-reply not posted", message_id=reply.origin_key, why=reasons)
            return replace(base, reason=f"auto-reply: {reasons}")
        if kind is MailKind.BOUNCE:
            return self._bounce(reply, base)
        if not reply.match.matched or reply.match.ticket is None:
            return replace(base, outcome=mails.NO_TICKET, reason="names no ticket of ours")
        itsm = self._find(reply.match.ticket)
        if itsm is None:
            return replace(
                base, outcome=mails.NO_TICKET, reason=f"no record {reply.match.ticket} was found"
            )
        base = replace(base, ticket=ticket_name(itsm))
        who = standing(reply.mail.sender, self._customer(itsm), self._watchers(itsm))
        where = placement(who, self.inbound.stranger_policy)
        if where is Placement.REFUSED:
            log.info("mail from a stranger refused", message_id=reply.origin_key)
            return replace(
                base,
                reason=f"{reply.mail.sender or 'no sender'} is neither the customer nor a watcher",
            )
        words = reply.text.strip()
        if not words:
            return replace(base, reason="no words of the sender's own (only quoted history)")
        if reply.mail.sender:
            self._lift_bounce(reply.mail.sender)
        posted = self._post(fetched, reply, itsm, who, where)
        outcome = mails.PUBLIC_COMMENT if where is Placement.PUBLIC_COMMENT else mails.INTERNAL_NOTE
        return replace(
            base,
            outcome=outcome,
            reason=f"{who.value} reply matched by {reply.match.by.value}",
            settle="processed",
            posted=posted,
        )

    # --- people -------------------------------------------------------------------------------

    @staticmethod
    def _customer(ticket: Ticket) -> str | None:
        return ticket.customer.email if ticket.customer is not None else None

    def _watchers(self, ticket: Ticket) -> set[str]:
        found: set[str] = set()
        for path in self.inbound.watcher_fields:
            found |= addresses_in(field_value(ticket, path))
        return found

    # --- posting ------------------------------------------------------------------------------

    def _post(
        self,
        fetched: FetchedMail,
        reply: InboundReply,
        itsm: Ticket,
        who: Standing,
        where: Placement,
    ) -> bool:
        """Write the comment (once), its attachments and the verdict's effect; True when the
        comment was written in this pass."""
        engine = self.engine
        system = itsm.ref.system
        iid = ticket_id(itsm)
        link = engine.pairs.link_of(system.value, iid)
        leases = [(system.value, iid)] + ([link.other(system.value)] if link else [])
        public = where is Placement.PUBLIC_COMMENT
        with engine.pairs.leases(leases):
            itsm = engine.read(system, iid)
            marker = mail_marker(system, ticket_name(itsm), reply.origin_key)
            written = False
            if not self._has(itsm, marker, look_up=fetched.state is MailState.MAYBE_PROCESSED):
                # A mail read in part may end in the middle of a file: none is attached then.
                whole = not fetched.truncated
                if public and whole:
                    self._attach(itsm, reply)
                self._comment(itsm, reply, marker, who, public, attached=whole)
                written = True
            else:
                log.info("reply already on the record: not posted again", marker=marker.text())
            if public:
                self._verdict(itsm, reply, who)
        if self.enqueue is not None:
            # The normal sync mirrors the comment (and its files) to engineering and decides.
            self.enqueue(system.value, iid)
        return written

    def _has(self, ticket: Ticket, marker: Marker, *, look_up: bool) -> bool:
        text = marker.text()
        if any(text in c.body for c in ticket.comments):
            return True
        if not look_up:
            return False
        adapter = self.engine.adapters[ticket.ref.system]
        return adapter.find_comment_by_marker(ticket_id(ticket), marker) is not None

    def _attach(self, itsm: Ticket, reply: InboundReply) -> None:
        """Upload the kept attachments the record does not have yet (by name and size)."""
        adapter = self.engine.adapters[itsm.ref.system]
        present = {(a.filename, a.size) for a in itsm.attachments}
        iid = ticket_id(itsm)
        for attachment in reply.mail.attachments:
            if attachment.content is None:
                continue
            if (attachment.filename, attachment.size) in present:
                continue
            adapter.upload(iid, attachment.filename, BytesIO(attachment.content))
            present.add((attachment.filename, attachment.size))
            self.engine.metrics.write(itsm.ref.system.value, "attachment")
            self.engine.context.after_write(f"mail attachment {attachment.filename}")
            self.engine.store.audit(
                itsm.ref.system.value,
                iid,
                "attachment",
                None,
                attachment.filename,
                reason=f"attached to an e-mail reply {reply.origin_key}",
            )

    def _comment(
        self,
        itsm: Ticket,
        reply: InboundReply,
        marker: Marker,
        who: Standing,
        public: bool,
        *,
        attached: bool = True,
    ) -> None:
        system = itsm.ref.system
        iid = ticket_id(itsm)
        adapter = self.engine.adapters[system]
        sender = reply.mail.sender or "an unknown sender"
        name = _one_line(reply.mail.sender_name)
        author = f"{name} <{sender}>" if name else sender
        kept = [a.filename for a in reply.mail.attachments if a.content is not None]
        if public:
            head = f"By e-mail from {author}:"
        else:
            head = (
                f"By e-mail from {author}, who is neither the customer nor a watcher of this "
                "ticket, so it is kept internal:"
            )
        body = f"{head}\n\n{reply.text}"
        if not attached:
            body += (
                f"\n\n[the e-mail was larger than {_size(self.inbound.max_message_bytes)} and "
                "was read only in part; its attachments were not added]"
            )
        elif public and kept:
            body += "\n\nAttached: " + ", ".join(defang(k) for k in kept)
        elif kept:
            body += "\n\nAttachments not added to the record: " + ", ".join(defang(k) for k in kept)
        written = None
        if isinstance(adapter, CommentsAsPerson) and reply.mail.sender:
            written = adapter.add_comment_as(
                iid, reply.text, author_email=reply.mail.sender, public=public, marker=marker
            )
        if written is None:
            adapter.add_comment(iid, body, public=public, marker=marker)
        self.engine.metrics.write(system.value, "comment")
        self.engine.context.after_write(f"mail comment {marker.text()}")
        self.engine.store.audit(
            system.value,
            iid,
            "comment" if public else "work_note",
            None,
            marker.text(),
            reason=f"e-mail reply {reply.origin_key} from {sender} ({who.value})",
        )

    # --- confirmation -------------------------------------------------------------------------

    def _verdict(self, itsm: Ticket, reply: InboundReply, who: Standing) -> None:
        """What the policy's customer_replies makes of the verdict, carried out once."""
        if self.policy is None:
            return
        verdict = reply.confirmation.verdict.value
        if verdict == "none":
            return
        with self.engine.store.reading() as tx:
            entry = get_entry(tx, itsm)
        eng = self._engineering(itsm)
        effect = react(
            self.policy,
            itsm,
            entry.state if entry is not None else None,
            Reply(
                sender=reply.mail.sender or "",
                standing=who.value,
                verdict=verdict,  # type: ignore[arg-type]
                words=_first_line(reply.text),
                received=self.engine.clock(),
            ),
            engineering=eng.ref if eng is not None else None,
        )
        for reason in effect.reasons:
            log.info("customer reply", rule=reason.rule, outcome=reason.outcome, why=reason.detail)
        if not effect.empty:
            self._carry_out(itsm, eng, effect, reply, verdict)

    def _engineering(self, itsm: Ticket) -> Ticket | None:
        link = self.engine.pairs.link_of(itsm.ref.system.value, ticket_id(itsm))
        if link is None:
            return None
        other_system, other_id = link.other(itsm.ref.system.value)
        return self.engine.read(System(other_system), other_id)

    def _carry_out(
        self,
        itsm: Ticket,
        eng: Ticket | None,
        effect: ReplyEffect,
        reply: InboundReply,
        verdict: str,
    ) -> None:
        """Notes first, then status moves: a crash in between leaves the move to a retry,
        which still finds the escalation waiting (a move first could end it, and lose the
        note)."""
        item = f"reply-{_digest(reply.origin_key)}-{verdict}"
        if effect.itsm_note:
            self._note(itsm, effect.itsm_note, Marker(itsm.ref.system, ticket_name(itsm), item))
        if eng is not None and effect.engineering_note:
            self._note(eng, effect.engineering_note, Marker(eng.ref.system, ticket_name(eng), item))
        if effect.move_itsm_to is not None:
            self._move(itsm, effect.move_itsm_to, eng)
        if eng is not None and effect.move_engineering_to is not None:
            self._move(eng, effect.move_engineering_to, itsm)

    def _note(self, ticket: Ticket, body: str, marker: Marker) -> None:
        adapter = self.engine.adapters[ticket.ref.system]
        iid = ticket_id(ticket)
        if any(marker.text() in c.body for c in ticket.comments):
            return
        if adapter.find_comment_by_marker(iid, marker) is not None:
            return
        adapter.add_comment(iid, body, public=False, marker=marker)
        self.engine.metrics.write(ticket.ref.system.value, "comment")
        self.engine.context.after_write(f"note {marker.text()}")
        self.engine.store.audit(
            ticket.ref.system.value, iid, "work_note", None, marker.text(), reason=body[:500]
        )

    def _move(self, ticket: Ticket, status: Status, peer: Ticket | None) -> None:
        current = self.engine.read(ticket.ref.system, ticket_id(ticket))
        if current.status is status:
            return
        self.engine.escalator.set_status(current, status, peer)

    # --- bounces ------------------------------------------------------------------------------

    def _bounce(self, reply: InboundReply, base: Handled) -> Handled:
        bounce = reply.classification.bounce
        if bounce is None or not bounce.addresses:
            return replace(base, reason="a bounce that names no failed address")
        key = reply.match.ticket
        if key is None:
            return replace(base, reason="a bounce of no mail of ours")
        with self.engine.store.reading() as tx:
            ours = mails.sent_addresses(tx, key, bounce.addresses)
        if not ours:
            return replace(
                base, reason=f"a bounce for {', '.join(bounce.addresses)}, not mailed by us"
            )
        itsm = self._find(key)
        now = self.engine.clock()
        if bounce.permanent:
            with self.engine.store.session() as tx:
                for failed in bounce.failed:
                    if failed.address in ours:
                        mails.add_bounce(
                            tx,
                            address=failed.address,
                            ticket=key,
                            status=failed.status,
                            diagnostic=failed.diagnostic,
                            message_id=reply.origin_key,
                            now=now,
                        )
        if itsm is not None:
            for failed in bounce.failed:
                if failed.address not in ours:
                    continue
                self._bounce_note(
                    itsm,
                    failed.address,
                    failed.status,
                    failed.diagnostic,
                    permanent=bounce.permanent,
                )
        log.warning(
            "mail bounced",
            ticket=key,
            addresses=sorted(ours),
            permanent=bounce.permanent,
        )
        return replace(
            base,
            outcome=mails.BOUNCE_NOTED,
            ticket=ticket_name(itsm) if itsm is not None else key,
            reason=f"delivery failed for {', '.join(sorted(ours))}",
        )

    def _bounce_note(
        self, itsm: Ticket, address: str, status: str, diagnostic: str, *, permanent: bool
    ) -> None:
        why = " ".join(p for p in (status, _one_line(diagnostic, 300)) if p)
        if permanent:
            body = (
                f"E-mail to the customer's address {address} could not be delivered"
                + (f" ({why})" if why else "")
                + ". No further e-mail goes to this address until the customer's address on "
                "this ticket changes (or `escalation-sync email bounces --clear` lifts it); "
                "please reach the customer another way."
            )
        else:
            body = (
                f"E-mail to the customer's address {address} could not be delivered for now"
                + (f" ({why})" if why else "")
                + "; later e-mails are still sent to it."
            )
        digest = _digest(f"{address}|{'permanent' if permanent else 'temporary'}")
        marker = Marker(itsm.ref.system, ticket_name(itsm), f"bounce-{digest}")
        self._note(itsm, body, marker)

    def _lift_bounce(self, sender: str) -> None:
        """A person's reply from a stopped address shows it receives mail again."""
        with self.engine.store.session() as tx:
            lifted = mails.clear_bounce(tx, sender)
        if lifted:
            log.info("mail to an address that bounced resumes: it replied", address=sender)


__all__ = ["Handled", "ReplyHandler", "addresses_in", "reply_options"]
