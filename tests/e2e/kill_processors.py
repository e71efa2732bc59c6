"""Processors `escalation-sync run --processor` starts in the kill tests: the real engine with a
crash seam."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from sync.queue.tasks import SyncQueue, TicketProcessor
from sync.runtime.wiring import default_processor
from sync.store.database import Store

KILLED_MARK = "killed-after-comment"


def kill_after_first_comment(settings: Any, store: Store, queue: SyncQueue) -> TicketProcessor:
    """The engine, killing its own process (SIGKILL, no cleanup) right after the first mirrored
    comment is written and before it is recorded; a mark file in the state dir makes it once."""
    engine = default_processor(settings, store, queue)
    mark = Path(settings.state.dir) / KILLED_MARK

    def die_once(what: str) -> None:
        if what.startswith("comment") and not mark.exists():
            mark.write_text(what)
            os.kill(os.getpid(), signal.SIGKILL)

    engine.after_write = die_once  # type: ignore[attr-defined]
    return engine


MAIL_KILLED_MARK = "killed-after-mail-comment"


def kill_after_mail_comment(settings: Any, store: Store, queue: SyncQueue) -> TicketProcessor:
    """The engine, killing its own process (SIGKILL) right after a customer's e-mail reply is
    posted as a comment, before the mail is recorded or marked on the mail server; once."""
    engine = default_processor(settings, store, queue)
    mark = Path(settings.state.dir) / MAIL_KILLED_MARK

    def die_once(what: str) -> None:
        if what.startswith("mail comment") and not mark.exists():
            mark.write_text(what)
            os.kill(os.getpid(), signal.SIGKILL)

    engine.after_write = die_once  # type: ignore[attr-defined]
    return engine
