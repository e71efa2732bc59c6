"""structlog, configured once: JSON off a terminal, readable console on one, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog
from pydantic import BaseModel

from sync.config.settings import Settings

REDACTED = "***"
SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-hub-signature",
        "x-escalation-sync-signature",
        "password",
        "api_token",
        "pat",
        "client_secret",
        "webhook_secret",
        "secret",
        "token",
        "access_token",
        "cookie",
        "set-cookie",
    }
)


# A credential written into text ("Authorization: Basic dXNlcjpw", "'authorization': 'Bearer x'"),
# as libraries print request headers in their own messages.
_HEADER_IN_TEXT = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-hub-signature|cookie)"
    r"([\"']?\s*[:=]\s*[\"']?)((?:basic|bearer|token|sha256=)\s*)?[^\s\"',}]+"
)


class Redactor:
    """A structlog processor that masks configured secret values and sensitive keys anywhere."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Register more secret values (e.g. after a configuration reload)."""
        merged = set(self._secrets) | {s for s in secrets if s and len(s) >= 4}
        self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return _HEADER_IN_TEXT.sub(lambda m: f"{m[1]}{m[2]}{m[3] or ''}{REDACTED}", value)
        if isinstance(value, dict):
            return {
                k: (REDACTED if str(k).lower() in SENSITIVE_KEYS else self._scrub(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self._scrub(v) for v in value)
        return value

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if key.lower() in SENSITIVE_KEYS:
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self._scrub(event_dict[key])
        return event_dict


class _Stderr:
    """Whatever sys.stderr is at the moment of writing (it may be replaced after configuring)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


REDACTOR = Redactor()
_STDERR = _Stderr()
_current: tuple[str, bool] | None = None
# Libraries whose INFO lines narrate their own routine (see configure_logging).
CHATTY_LOGGERS = ("huey", "mail.log")


def configure_logging(
    *, level: str | None = None, secrets: Iterable[str] = (), json: bool | None = None
) -> None:
    """Configure structlog and stdlib logging; later calls add secrets, and change the level or
    the format only when they name one."""
    global _current
    REDACTOR.add_secrets(secrets)
    wanted_level = (level or (_current[0] if _current else "INFO")).upper()
    default_json = _current[1] if _current else not sys.stderr.isatty()
    as_json = default_json if json is None else json
    if _current == (wanted_level, as_json):
        return
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, REDACTOR, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(wanted_level, logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # Libraries' own log lines (jira, huey, uvicorn, urllib3) take the same format and the same
    # redaction: they may print request headers.
    handler = logging.StreamHandler(_STDERR)  # type: ignore[arg-type]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                REDACTOR,
                renderer,
            ],
        )
    )
    logging.basicConfig(handlers=[handler], force=True)
    logging.getLogger().setLevel(wanted_level)
    # Migration chatter ("Context impl SQLiteImpl") on every command says nothing to an operator.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    # Huey logs two lines per task and aiosmtpd (the SMTP sink) every step of every connection;
    # our own events say what happened to each ticket and message. Shown when debugging.
    chatty = logging.DEBUG if logging.getLogger().level <= logging.DEBUG else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty)
    _current = (wanted_level, as_json)


def settings_secrets(settings: Settings) -> list[str]:
    """Every SecretStr value found in a settings object, for the redactor."""
    found: list[str] = []

    def walk(obj: Any) -> None:
        if obj is None:
            return
        if hasattr(obj, "get_secret_value"):
            found.append(obj.get_secret_value())
        elif isinstance(obj, BaseModel):
            for name in type(obj).model_fields:
                walk(getattr(obj, name, None))
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)

    walk(settings)
    return found
