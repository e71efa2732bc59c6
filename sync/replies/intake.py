"""The replies mailbox read in passes: fetch, claim, handle, record, settle.

```
MailIntake(open_mailbox, handler).run_once() -> IntakePass     (sync --once: one pass)
MailIntake.run(stop)                                            (the daemon: a thread)
    pass; then wait for new mail (IMAP IDLE) or the poll interval; again until `stop`
```
Each mail: claimed on the server (when new), handled (`ReplyHandler`), what became of it
recorded in the store, then settled on the server (marked and moved to the processed or the
refused folder). A mail whose handling failed for a passing reason stays claimed and comes back
in the next pass as "maybe processed"; the handler looks for its comment before posting again.

The mailbox's failures (the server down, the login refused) end the pass: they are logged and
told to the health board under the name "mailbox" (so /healthz turns 503 when replies have not
been read for `[health] failing_after_seconds`), and the daemon tries again after a back-off.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from connectors.mailbox import FetchedMail, Mailbox, MailState
from connectors.mailbox.base import SYSTEM
from sync.replies import store as mails
from sync.replies.handler import Handled, ReplyHandler
from sync.runtime.health import POLL, HealthBoard

log = structlog.get_logger("escalation_sync.replies")

# After the mailbox failed, the daemon waits this long (doubling) before the next pass.
BACKOFF_FIRST = 5.0
BACKOFF_MAX = 300.0
# Mails left claimed for a passing reason (a record being synced) are read again this soon.
RETRY_LEFT = 5.0


@dataclass
class IntakePass:
    """What one pass over the mailbox did."""

    read: int = 0
    posted: int = 0
    refused: int = 0
    left: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    failed: Exception | None = None

    def count(self, handled: Handled) -> None:
        """Add one mail's outcome."""
        self.read += 1
        self.outcomes[handled.outcome] = self.outcomes.get(handled.outcome, 0) + 1
        if handled.settle is None:
            self.left += 1
        elif handled.outcome in (mails.PUBLIC_COMMENT, mails.INTERNAL_NOTE):
            self.posted += 1
        else:
            self.refused += 1


class StateFile(MutableMapping[str, str]):
    """A small JSON file in the state directory (the IMAP reader's UIDVALIDITY per folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            loaded = {}
        self._data: dict[str, str] = {str(k): str(v) for k, v in dict(loaded).items()}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data, sort_keys=True))
        tmp.replace(self.path)

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __setitem__(self, key: str, value: str) -> None:
        if self._data.get(key) != value:
            self._data[key] = value
            self._save()

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._save()

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class MailIntake:
    """Reads the replies mailbox and hands each mail to the handler."""

    def __init__(
        self,
        open_mailbox: Callable[[], Mailbox],
        handler: ReplyHandler,
        *,
        batch_size: int = 50,
        poll_interval: float = 60.0,
        health: HealthBoard | None = None,
    ) -> None:
        self._open = open_mailbox
        self.handler = handler
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.health = health
        self._mailbox: Mailbox | None = None

    @property
    def mailbox(self) -> Mailbox:
        """The open mailbox (opened on first use)."""
        if self._mailbox is None:
            self._mailbox = self._open()
        return self._mailbox

    def close(self) -> None:
        """Log out of the mailbox."""
        box, self._mailbox = self._mailbox, None
        if box is not None:
            box.close()

    def run_once(self) -> IntakePass:
        """One pass: every unsettled mail (up to the batch size), oldest first."""
        result = IntakePass()
        try:
            fetched = self.mailbox.fetch(self.batch_size)
        except Exception as exc:
            self._mailbox_failed(exc)
            result.failed = exc
            return result
        self._mailbox_answered()
        for mail in fetched:
            try:
                handled = self._one(mail)
            except Exception as exc:
                # The mailbox stopped answering mid-pass: what is claimed comes back next time.
                self._mailbox_failed(exc)
                result.failed = exc
                return result
            result.count(handled)
            if handled.paused:
                # A system refused our credentials: the rest of the batch would fail alike.
                break
        if result.read:
            log.info(
                "replies read",
                read=result.read,
                posted=result.posted,
                refused=result.refused,
                left=result.left,
            )
        return result

    def _one(self, mail: FetchedMail) -> Handled:
        box = self.mailbox
        if mail.state is MailState.NEW:
            box.claim(mail.ref)
        handled = self.handler.handle(mail)
        now = self.handler.engine.clock()
        with self.handler.engine.store.session() as tx:
            mails.record_mail(
                tx,
                message_id=handled.message_id,
                sender=handled.sender,
                ticket=handled.ticket,
                kind=handled.kind,
                outcome=handled.outcome,
                reason=handled.reason,
                subject=handled.subject,
                now=now,
                settled=handled.settle is not None,
            )
        if handled.settle is not None:
            box.settle(mail.ref, handled.settle)
        log.info(
            "mail handled",
            message_id=handled.message_id,
            ticket=handled.ticket,
            kind=handled.kind,
            outcome=handled.outcome,
            reason=handled.reason,
            state=mail.state.value,
        )
        return handled

    def _mailbox_failed(self, exc: Exception) -> None:
        log.error("replies mailbox failed", error=type(exc).__name__, reason=str(exc)[:300])
        self.close()
        if self.health is not None:
            self.health.failed(SYSTEM, exc)

    def _mailbox_answered(self) -> None:
        if self.health is not None:
            self.health.succeeded(SYSTEM, POLL)

    def run(self, stop: threading.Event) -> None:
        """Pass after pass until `stop`: new mail is read as the server announces it (IMAP
        IDLE), else every poll interval; a failing mailbox is tried again after a back-off."""
        backoff = BACKOFF_FIRST
        while not stop.is_set():
            result = self.run_once()
            if result.failed is not None:
                stop.wait(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            backoff = BACKOFF_FIRST
            if result.left or result.read >= self.batch_size:
                # More is waiting (a full batch, or mails left for a passing reason).
                stop.wait(RETRY_LEFT if result.left else 0.0)
                continue
            try:
                self.mailbox.wait(self.poll_interval, stop)
            except Exception as exc:
                self._mailbox_failed(exc)
                stop.wait(backoff)
        self.close()


__all__ = ["IntakePass", "MailIntake", "StateFile"]
