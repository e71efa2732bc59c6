"""The errors every connector raises, on the product's error spine (`errors`, at the root).

```
errors.EscalationSyncError
└── ConnectorError              a vendor call failed: system, HTTP status, vendor messages
    ├── RetryableError          errors.Retry: retry with backoff (honour retry_after)
    │   ├── RateLimited         429
    │   ├── ServerUnavailable   5xx, or an HTML page where JSON was expected
    │   └── TransportFailed     timeouts, refused connections
    ├── PermanentError          errors.DeadLetter: dead-letter the event with the reason
    │   ├── NotFound            404
    │   ├── Forbidden           403: the credentials work, this user may not do this
    │   └── InvalidRequest      other 4xx, with the vendor's error messages
    └── AuthFailed              errors.PauseSystem: 401, stop calling the system
errors.Reject
└── WebhookRejected             an inbound webhook the receiver must refuse
    ├── BadSignature            401
    ├── StaleWebhook            401 (timestamp outside the replay window)
    └── MalformedWebhook        400
```
Connectors import this module and the root `errors` module, nothing else of the product.
Messages never carry credentials or auth headers: build them from status codes and the vendor's
own error text only.
"""

from __future__ import annotations

from collections.abc import Sequence

from errors import DeadLetter, EscalationSyncError, PauseSystem, Reject, Retry


class ConnectorError(EscalationSyncError):
    """Base of every error a connector raises: which system, its HTTP status, its messages."""

    def __init__(
        self,
        message: str,
        *,
        system: str = "",
        status: int | None = None,
        messages: Sequence[str] = (),
    ) -> None:
        super().__init__(message, system=system)
        self.status = status
        self.messages = tuple(messages)


class RetryableError(ConnectorError, Retry):
    """A transient failure: the same request may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        system: str = "",
        status: int | None = None,
        messages: Sequence[str] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, system=system, status=status, messages=messages)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """The vendor answered 429."""


class ServerUnavailable(RetryableError):
    """The vendor answered 5xx, or a non-JSON page (a sleeping instance)."""


class TransportFailed(RetryableError):
    """The request did not get an answer: timeout, refused or reset connection."""


class PermanentError(ConnectorError, DeadLetter):
    """Repeating the request will not help: dead-letter it with the reason."""


class NotFound(PermanentError):
    """The record or endpoint does not exist."""


class Forbidden(PermanentError):
    """403: the credentials were accepted but this user may not do this (an ACL, a project
    permission): this write fails, the others may not, so only this event is parked."""


class InvalidRequest(PermanentError):
    """The vendor refused the request's content (other 4xx)."""


class AuthFailed(ConnectorError, PauseSystem):
    """The credentials were refused (401, a refused token, SMTP 535): every call to this system
    would fail alike, so the system is paused rather than each event dead-lettered."""


class WebhookRejected(Reject):
    """An inbound webhook delivery that must be refused; `http_status` is what to answer."""

    http_status = 400


class BadSignature(WebhookRejected):
    """Missing or wrong signature."""

    http_status = 401


class StaleWebhook(WebhookRejected):
    """Signed timestamp outside the replay window."""

    http_status = 401


class MalformedWebhook(WebhookRejected):
    """Not a webhook of the expected vendor and shape."""

    http_status = 400
