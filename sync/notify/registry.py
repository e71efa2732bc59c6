"""Notifiers built from the configuration: one module per channel in `sync/notify/channels/`.

A channel module is found by its file name and needs nothing registered anywhere else::

    CHANNEL = "pagerduty"                   # the channel's name (rows, health, configuration)

    class Settings(BaseModel):              # optional: validates `[notify.pagerduty]`
        model_config = ConfigDict(extra="forbid", frozen=True)
        ...

    def build(settings) -> Notifier | None: # the notifier, or None when it is not configured
        ...

`[notify.<channel>]` tables are validated with the module's `Settings` when the configuration
is loaded, every error reported with the others (file, key, reason); the validated models are
`settings.notify_settings[<channel>]`. E-mail keeps its own `[email]` section. See
docs/adding-a-notifier.md.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from mapping.errors import ConfigError, from_pydantic
from sync.notify import channels
from sync.notify.notifier import ChannelSettings, Notifier, Notifiers

PACKAGE = channels.__name__


def channel_names() -> list[str]:
    """Every channel module shipped in `sync/notify/channels/`, by name."""
    return sorted(m.name for m in pkgutil.iter_modules(channels.__path__) if not m.ispkg)


def channel_module(name: str) -> ModuleType | None:
    """The module of channel `name`, or None when there is none."""
    if name not in channel_names():
        return None
    # Imported on demand: a channel's module (and its client library) is loaded only when the
    # configuration uses that channel.
    return importlib.import_module(f"{PACKAGE}.{name}")


def validate_sections(
    tables: Mapping[str, Any], source: str
) -> tuple[dict[str, BaseModel], list[ConfigError]]:
    """Validate every `[notify.<channel>]` table with its module's `Settings`."""
    models: dict[str, BaseModel] = {}
    problems: list[ConfigError] = []
    for name, table in tables.items():
        key = f"notify.{name}"
        module = channel_module(name)
        if module is None:
            known = ", ".join(channel_names())
            problems.append(ConfigError(source, key, f"no notifier for this channel ({known})"))
            continue
        model = getattr(module, "Settings", None)
        if model is None:
            problems.append(ConfigError(source, key, "this channel takes no [notify] settings"))
            continue
        if not isinstance(table, Mapping):
            problems.append(ConfigError(source, key, "expected a table"))
            continue
        try:
            models[name] = model.model_validate(dict(table))
        except ValidationError as exc:
            problems.extend(from_pydantic(exc, source, key))
    return models, problems


def build_notifiers(settings: ChannelSettings) -> Notifiers:
    """Every configured notifier: each channel module builds one or says it is not configured."""
    built: list[Notifier] = []
    for name in channel_names():
        module = channel_module(name)
        build = getattr(module, "build", None)
        if build is None:
            continue
        notifier = build(settings)
        if notifier is not None:
            built.append(notifier)
    return Notifiers(built)
