"""How the pages say things: the templates' environment and the filters that turn moments,
durations, people and systems into words (UTC, to the minute; two units of a duration)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from jinja2 import PackageLoader, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from sync.console.readmodel import title
from sync.systems.registry import registry


def environment() -> SandboxedEnvironment:
    """The pages' templates in a sandbox, autoescaped, with the filters they use."""
    env = SandboxedEnvironment(
        loader=PackageLoader("sync.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["ago"] = ago
    env.filters["span"] = span
    env.filters["until"] = until
    env.filters["person"] = person
    env.filters["display_name"] = title
    env.filters["tone"] = tone
    return env


def tone(name: str) -> str:
    """The CSS class that colours a system's name: by its place in the registry (built-in
    ones first), so each installed system has its own; channels share one."""
    names = registry().names()
    return f"sys-{names.index(name) % 4}" if name in names else "sys-channel"


def person(value: str | None) -> str:
    """A person as the page shows them: an opaque record id (32 hex digits, as some systems
    name people by) shortened."""
    if not value:
        return "-"
    if re.fullmatch(r"[0-9a-f]{32}", value):
        return f"user {value[:8]}…"
    return value


def when(value: datetime | None) -> str:
    """A moment as people read it on the page (UTC, to the minute)."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def span(delta: timedelta | None) -> str:
    """A duration in its two largest units: `3 h 12 min`, `2 days 4 h`, `45 s`."""
    if delta is None:
        return "-"
    seconds = int(abs(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago a moment was."""
    if value is None:
        return "-"
    now = now or datetime.now(UTC)
    if value > now:
        return f"in {span(value - now)}"
    return f"{span(now - value)} ago"


def until(value: datetime | None, now: datetime | None = None) -> str:
    """How long until a moment (or how long it is past)."""
    if value is None:
        return "-"
    now = now or datetime.now(UTC)
    if value >= now:
        return f"in {span(value - now)}"
    return f"{span(now - value)} late"
