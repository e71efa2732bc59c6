"""Every error the product raises on purpose, named by what the caller does about it.

```
EscalationSyncError
├── Retry            transient: the same work may succeed later (honour retry_after when set)
│   ├── connectors.errors.RetryableError    429, 5xx, timeouts, refused or reset connections
│   ├── InDoubt          the other side may have acted: look for the effect before trying again
│   │   └── connectors.email.DeliveryUncertain   handed over, then the line broke
│   └── sync.store.database.LeaseBusy        another worker holds the ticket (not an attempt)
├── DeadLetter       permanent for this event: park it with the reason, replayable once fixed
│   ├── connectors.errors.PermanentError     a 4xx on a write: NotFound, InvalidRequest, ...
│   ├── sync.pipeline.records.MappingFailed  a value the mapping does not know
│   ├── sync.store.links.LinkConflict        a record is already paired with another one
│   ├── connectors.email_render.TemplateMissing       no template for the event
│   └── sync.procedure.email_context.InternalContentRefused   customer mail asked for a note
├── PauseSystem      authentication refused: stop calling that system, keep its events
│   └── connectors.errors.AuthFailed         401/403, SMTP 535, a refused OAuth token
├── Refuse           configuration: refuse to start (exit 2), keep the last good one on reload
│   └── mapping.errors.ConfigInvalid         every error in the files, with file, key, reason
└── Reject           inbound input the sender must be told is wrong: answer `http_status`
    ├── connectors.errors.WebhookRejected    BadSignature 401, StaleWebhook 401, Malformed 400
    └── sync.intake.webhooks.BodyTooLarge    413
```

Anything else that escapes is a bug of ours: the queue retries it a bounded number of times and
then dead-letters the event with the exception's type and message (`action_of` answers
`Action.UNKNOWN`).

This module is the one module of the product that every package may import, connectors
included: it imports nothing of ours. Messages never carry credentials: build them from status
codes, names and the vendor's own error text.
"""

from __future__ import annotations

from enum import Enum


class Action(Enum):
    """What the caller does with an error; `action_of` tells it for any exception."""

    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    PAUSE_SYSTEM = "pause_system"
    REFUSE = "refuse"
    REJECT = "reject"
    UNKNOWN = "unknown"


class EscalationSyncError(Exception):
    """Base of every error raised on purpose; `system` names the system it concerns, if any."""

    action: Action = Action.UNKNOWN

    def __init__(self, message: str = "", *, system: str = "") -> None:
        super().__init__(message)
        self.system = system


class Retry(EscalationSyncError):
    """A transient failure: the same work may succeed later.

    `retry_after` is the wait the other side asked for (seconds), when it said. An error with
    `counts_as_attempt` False (contention, not failure) is tried again without spending one of
    the event's attempts.
    """

    action = Action.RETRY
    counts_as_attempt = True

    def __init__(
        self, message: str = "", *, system: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, system=system)
        self.retry_after = retry_after


class InDoubt(Retry):
    """The work was handed over and the answer lost: it may have been done. Doing it again
    blindly could do it twice, so the caller first looks for its effect (or asks an operator)."""


class DeadLetter(EscalationSyncError):
    """Permanent for this event: park it with the reason; replay it once the cause is fixed."""

    action = Action.DEAD_LETTER


class PauseSystem(EscalationSyncError):
    """The system refused our credentials: stop calling it, keep its events until it answers."""

    action = Action.PAUSE_SYSTEM


class Refuse(EscalationSyncError):
    """The configuration cannot work: refuse to start (exit 2) or keep the last good one."""

    action = Action.REFUSE
    exit_code = 2


class Reject(EscalationSyncError):
    """Inbound input the sender must be told is wrong; `http_status` is the answer to give."""

    action = Action.REJECT
    http_status = 400


def action_of(exc: BaseException) -> Action:
    """What to do with `exc`: its class's action, or UNKNOWN for anything not raised on purpose."""
    if isinstance(exc, EscalationSyncError):
        return exc.action
    return Action.UNKNOWN


def system_of(exc: BaseException) -> str:
    """The system `exc` concerns ("" when it names none)."""
    return str(getattr(exc, "system", "") or "")


__all__ = [
    "Action",
    "DeadLetter",
    "EscalationSyncError",
    "InDoubt",
    "PauseSystem",
    "Refuse",
    "Reject",
    "Retry",
    "action_of",
    "system_of",
]
