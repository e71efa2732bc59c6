"""What kind of mail this is: a person's reply, a robot's auto-reply, a bounce, or a loop.

Only a `REPLY` can become a comment. The checks, in the order they win:

1. Loop: the mail carries our own `X-Escalation-Sync-*` headers or one of our Message-IDs (our
   own mail came back, e.g. through a forwarding rule), its sender is one of our own addresses,
   it passed more relays (`Received` headers) than `LoopLimits.max_hops`, or the same sender
   already sent `max_per_window` mails about the same ticket within `window` (the caller passes
   the times of the earlier ones in: this module keeps no state and reads no clock).
2. Bounce: a delivery status notification (RFC 3464, `multipart/report;
   report-type=delivery-status`) with at least one recipient whose `Action` is `failed`; or a
   non-standard bounce from `MAILER-DAEMON` / `postmaster` with a failure subject (Exim's
   `X-Failed-Recipients` names the address). A DSN that only reports a delay is an auto-reply.
3. Auto-reply (RFC 3834 and the headers robots use in practice): `Auto-Submitted` other than
   `no`, `X-Autoreply`, `X-Autorespond`, `Precedence: bulk | auto_reply | list | junk`,
   `X-Auto-Response-Suppress: All | OOF | AutoReply` (Exchange marks its own automatic mail so),
   a read receipt (`report-type=disposition-notification`), or a subject that starts like an
   out-of-office answer ("Automatic reply:", "Out of Office:", "Abwesenheitsnotiz:", ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from inbound_mail.mime import ParsedMail, RecipientStatus


class MailKind(StrEnum):
    """What a mail is; only `REPLY` may become a comment."""

    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    LOOP = "loop"


@dataclass(frozen=True, slots=True)
class LoopLimits:
    """When a conversation is taken for a loop between robots."""

    max_hops: int = 25
    max_per_window: int = 10
    window: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Bounce:
    """A failed delivery: which addresses failed, and the Message-ID of the mail that failed."""

    failed: tuple[RecipientStatus, ...]
    original_message_id: str | None
    original_subject: str
    permanent: bool

    @property
    def addresses(self) -> tuple[str, ...]:
        """The failed addresses, lower case, in the report's order."""
        return tuple(dict.fromkeys(r.address for r in self.failed if r.address))


@dataclass(frozen=True, slots=True)
class Classification:
    """The kind, every reason found (for the log and the note), and the bounce when one."""

    kind: MailKind
    reasons: tuple[str, ...]
    bounce: Bounce | None = None


OUR_HEADER_PREFIX = "x-escalation-sync-"
_AUTO_PRECEDENCE = {"bulk", "auto_reply", "list", "junk"}
_SUPPRESS = {"all", "oof", "autoreply"}
_DAEMONS = {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"}
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliver(?:ed|able)|delivery (?:status notification|failure|has failed)|"
    r"mail delivery (?:failed|failure|system)|returned mail|failure notice|"
    r"unzustellbar|non remis|no se puede entregar|non recapitabile|onbestelbaar)",
    re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto(?:matic)?[- ]?(?:reply|response)|out of (?:the )?office|"
    r"abwesenheitsnotiz|automatische antwort|réponse automatique|respuesta automática|"
    r"risposta automatica|automatisch antwoord|frånvaro|fravær)\b",
    re.IGNORECASE,
)
_MSG_ID = re.compile(r"<[^<>\s]+>")


def _value(mail: ParsedMail, name: str) -> str | None:
    value = mail.header(name)
    return value.strip() if value is not None else None


def _bounce(mail: ParsedMail) -> Bounce | None:
    report = mail.report
    if mail.report_type == "delivery-status" and report is not None:
        failed = tuple(r for r in report.recipients if r.action == "failed")
        if not failed:
            return None
        original_ids = _MSG_ID.findall(
            next((v for k, v in report.returned_headers if k.lower() == "message-id"), "")
        )
        subject = next((v for k, v in report.returned_headers if k.lower() == "subject"), "")
        return Bounce(
            failed=failed,
            original_message_id=original_ids[0] if original_ids else None,
            original_subject=subject,
            permanent=any(r.status.startswith("5") for r in failed),
        )
    local = (mail.sender or "").split("@", 1)[0]
    null_sender = (_value(mail, "Return-Path") or "").replace(" ", "") == "<>"
    if (local in _DAEMONS or null_sender) and _BOUNCE_SUBJECT.match(mail.subject):
        failed_to = _value(mail, "X-Failed-Recipients") or ""
        failed = tuple(
            RecipientStatus(address=a.strip().lower(), action="failed", status="5.0.0")
            for a in failed_to.split(",")
            if "@" in a
        )
        return Bounce(failed, None, "", permanent=True)
    return None


def auto_reply_reasons(mail: ParsedMail) -> list[str]:
    """Why the mail looks automatic (empty when it looks written by a person)."""
    reasons = []
    auto = _value(mail, "Auto-Submitted")
    if auto is not None and auto.split(";", 1)[0].strip().lower() != "no":
        reasons.append(f"Auto-Submitted: {auto[:60]}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if mail.header(name) is not None:
            reasons.append(f"{name} header")
    precedence = (_value(mail, "Precedence") or "").lower()
    if precedence in _AUTO_PRECEDENCE:
        reasons.append(f"Precedence: {precedence}")
    suppress = {
        v.strip().lower() for v in (_value(mail, "X-Auto-Response-Suppress") or "").split(",")
    }
    if suppress & _SUPPRESS:
        reasons.append("X-Auto-Response-Suppress: " + ", ".join(sorted(suppress & _SUPPRESS)))
    if mail.report_type == "disposition-notification":
        reasons.append("read receipt (disposition notification)")
    if mail.report_type == "delivery-status":
        reasons.append("delivery status notification without a failed recipient")
    if _AUTO_SUBJECT.match(mail.subject):
        reasons.append("out-of-office subject")
    return reasons


def loop_reasons(
    mail: ParsedMail,
    *,
    is_ours: Callable[[str], bool],
    own_addresses: Iterable[str] = (),
    recent: Sequence[datetime] = (),
    now: datetime | None = None,
    limits: LoopLimits = LoopLimits(),
) -> list[str]:
    """Why the mail looks like part of a loop (empty when it does not)."""
    reasons = []
    ours = sorted({k for k, _ in mail.headers if k.lower().startswith(OUR_HEADER_PREFIX)})
    if ours:
        reasons.append(f"carries our own headers ({', '.join(ours)})")
    if mail.message_id and is_ours(mail.message_id):
        reasons.append(f"Message-ID {mail.message_id} is one of ours")
    own = {a.strip().lower() for a in own_addresses if a}
    if mail.sender and mail.sender in own:
        reasons.append(f"sent from our own address {mail.sender}")
    hops = len(mail.header_all("Received"))
    if hops > limits.max_hops:
        reasons.append(f"{hops} Received headers (more than {limits.max_hops} relays)")
    if now is not None and limits.max_per_window > 0:
        earlier = [t for t in recent if now - limits.window <= t <= now]
        if len(earlier) >= limits.max_per_window:
            minutes = int(limits.window.total_seconds() // 60)
            reasons.append(
                f"{len(earlier)} earlier mails from the same sender about the same ticket "
                f"within {minutes} minutes"
            )
    return reasons


def classify(
    mail: ParsedMail,
    *,
    is_ours: Callable[[str], bool],
    own_addresses: Iterable[str] = (),
    recent: Sequence[datetime] = (),
    now: datetime | None = None,
    limits: LoopLimits = LoopLimits(),
) -> Classification:
    """The kind of `mail`; `is_ours(message_id)` says whether the product sent that Message-ID."""
    loop = loop_reasons(
        mail, is_ours=is_ours, own_addresses=own_addresses, recent=recent, now=now, limits=limits
    )
    bounce = _bounce(mail)
    if loop and bounce is None:
        return Classification(MailKind.LOOP, tuple(loop))
    if bounce is not None:
        reasons = ["delivery failed for " + (", ".join(bounce.addresses) or "an unnamed address")]
        return Classification(MailKind.BOUNCE, tuple(reasons + loop), bounce)
    auto = auto_reply_reasons(mail)
    if auto:
        return Classification(MailKind.AUTO_REPLY, tuple(auto))
    return Classification(MailKind.REPLY, ())


__all__ = [
    "OUR_HEADER_PREFIX",
    "Bounce",
    "Classification",
    "LoopLimits",
    "MailKind",
    "auto_reply_reasons",
    "classify",
    "loop_reasons",
]
