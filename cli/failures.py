"""One clear line, not a traceback, when Jira or ServiceNow fails a command.

Connector errors are typed by what the caller should do (the root `errors` module and
connectors/errors.py); here they are told to an operator: which system, at which address, what
went wrong and the vendor's reason.
Connector messages are built from status codes and vendor error text only, so they carry no
credentials; the address is shown without any user information it may hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

import typer

from connectors.errors import (
    AuthFailed,
    ConnectorError,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerUnavailable,
    TransportFailed,
)

if TYPE_CHECKING:
    from sync.config.settings import Settings

T = TypeVar("T")

# Most specific first: the first class the error is an instance of names what happened.
_WHAT: tuple[tuple[type[ConnectorError], str], ...] = (
    (AuthFailed, "refused our credentials"),
    (Forbidden, "does not permit this to our integration user"),
    (NotFound, "has no such record"),
    (InvalidRequest, "refused the request"),
    (RateLimited, "is limiting our request rate; try again later"),
    (ServerUnavailable, "is unavailable; try again later"),
    (TransportFailed, "could not be reached"),
)


def system_name(system: str) -> str:
    """The installed system's title (`Jira`, `ServiceNow`), or the identifier itself."""
    # The installed systems load when a failure is described, not with --help (start-up time).
    from sync.systems import registry as systems

    if system in systems.registry():
        return systems.get(system).title
    return system or "the remote system"


def _address(settings: Settings | None, system: str) -> str | None:
    section = settings.systems.get(system) if settings is not None else None
    url = section.address() if section is not None else None
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def describe(
    exc: ConnectorError, settings: Settings | None = None, system: str | None = None
) -> str:
    """`ServiceNow (https://x.service-now.com) refused our credentials: <the vendor's reason>`."""
    which = exc.system or system or ""
    where = _address(settings, which)
    what = next((text for cls, text in _WHAT if isinstance(exc, cls)), "failed")
    name = system_name(which) + (f" ({where})" if where else "")
    return f"{name} {what}: {exc}"


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `message` on stderr; the Exit to raise (1: the run failed, 2: bad configuration)."""
    typer.echo(message, err=True)
    return typer.Exit(code)


def configured(build: Callable[[], T]) -> T:
    """What `build` makes from the settings (connectors, an engine); a setting the connectors
    cannot work with (half of a credential pair, a malformed URL) exits 2 like any other
    configuration error."""
    try:
        return build()
    except ValueError as exc:
        raise fail(f"invalid configuration: {exc}", 2) from None
