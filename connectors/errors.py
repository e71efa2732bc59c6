"""The exception tree every connector raises, named by what the caller should do.

```
ConnectorError
├── RetryableError          retry with backoff (honour retry_after when set)
│   ├── RateLimited         429
│   ├── ServerUnavailable   5xx, or an HTML page where JSON was expected
│   └── TransportFailed     timeouts, refused connections
└── PermanentError          dead-letter the event with the reason
    ├── NotFound            404
    ├── AuthFailed          401/403: refuse to continue with these credentials
    └── InvalidRequest      other 4xx, with the vendor's error messages
        └── WriteRefused    a 403 for a rule of the vendor's own (a data policy, a field or
                            record ACL): this write is refused, the credentials work
WebhookRejected             an inbound webhook the receiver must refuse
├── BadSignature            401
├── StaleWebhook            401 (timestamp outside the replay window)
└── MalformedWebhook        400
```
Messages never carry credentials or auth headers: build them from status codes and the vendor's
own error text only.
"""

from __future__ import annotations

from collections.abc import Sequence


class ConnectorError(Exception):
    """Base of every error a connector raises."""

    def __init__(
        self,
        message: str,
        *,
        system: str = "",
        status: int | None = None,
        messages: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.system = system
        self.status = status
        self.messages = tuple(messages)


class RetryableError(ConnectorError):
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


class PermanentError(ConnectorError):
    """Repeating the request will not help: dead-letter it with the reason."""


class NotFound(PermanentError):
    """The record or endpoint does not exist."""


class AuthFailed(PermanentError):
    """The credentials were refused (401/403)."""


class InvalidRequest(PermanentError):
    """The vendor refused the request's content (other 4xx)."""


class WriteRefused(InvalidRequest):
    """The vendor refused one write under a rule of its own (a ServiceNow data policy, an access
    control on a field or a closed record), answering 403: dead-letter the write with the
    vendor's reason and fix the configuration; the credentials are fine, other writes go on."""


class WebhookRejected(Exception):
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
