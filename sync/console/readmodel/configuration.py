"""The configuration page: what is loaded (no secret shown), the last reload, and the what-if
form over `policy simulate`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

import presets
from escalation.policy import Policy
from escalation.simulate import SimulationReport, SnapshotInvalid, simulate, snapshot_from_json
from sync.config.settings import Settings
from sync.console.readmodel.redaction import redact_toml, shown, shown_rows, to_toml
from sync.console.readmodel.shared import Loaded, ReloadResult, in_order, title

WHAT_IF_MAX_LINES = 5000
# The `[console]` keys the page lists (users are listed by name and role, never their hashes).
CONSOLE_KEYS = ("enabled", "host", "port", "root_path", "auth", "session_idle_minutes")

Rows = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Section:
    """One section of the configuration as shown: `[name]`, what it is, its settings."""

    name: str
    title: str
    rows: Rows


@dataclass(frozen=True, slots=True)
class ConfigView:
    """The configuration page: what is loaded (no secret), and the last reload."""

    source: str
    digest: str
    loaded_at: datetime | None
    last_reload: ReloadResult | None
    sections: tuple[Section, ...]
    mapping_text: str
    mapping_source: str
    policy_text: str
    policy_source: str
    policy_name: str
    levels: tuple[str, ...]
    limits: tuple[tuple[str, str], ...]
    presets: tuple[str, ...]

    @property
    def connections(self) -> tuple[tuple[str, Rows], ...]:
        """The sections as (name, rows)."""
        return tuple((s.name, s.rows) for s in self.sections)


@dataclass(frozen=True, slots=True)
class WhatIf:
    """A what-if run: the report, or why the input was refused."""

    policy: str
    report: SimulationReport | None
    problems: tuple[str, ...] = ()


def read_configuration(loaded: Loaded, last_reload: ReloadResult | None) -> ConfigView:
    """The loaded configuration, secrets left out, and the last reload's outcome."""
    settings = loaded.settings
    policy = settings.compiled_policy
    base = Path(settings.source).parent if settings.source else Path.cwd()
    mapping_source, mapping_text = _table_or_file(
        settings.mapping_file, settings.mapping, base, "mapping"
    )
    policy_source, policy_text = _table_or_file(
        settings.policy_file, settings.escalation, base, "escalation"
    )
    return ConfigView(
        source=settings.source or "(built-in example)",
        digest=loaded.digest,
        loaded_at=loaded.loaded_at,
        last_reload=last_reload,
        sections=_sections(settings),
        mapping_text=mapping_text,
        mapping_source=mapping_source,
        policy_text=policy_text,
        policy_source=policy_source,
        policy_name=policy.name if policy else "none",
        levels=tuple(lv.name for lv in policy.levels) if policy else (),
        limits=_limits(policy),
        presets=tuple(presets.preset_names()),
    )


def _limits(policy: Policy | None) -> tuple[tuple[str, str], ...]:
    if policy is None:
        return ()
    limits = policy.limits
    return tuple(
        (name, "no limit" if value is None else str(value))
        for name, value in (
            ("max_per_day", limits.max_per_day),
            ("max_active", limits.max_active),
            ("max_active_per_assignee", limits.max_active_per_assignee),
        )
    )


def _sections(settings: Settings) -> tuple[Section, ...]:
    """Each section of the configuration, secrets hidden: the ticket systems (in the order
    pages list them), the daemon's own sections, e-mail, other notifiers, the console."""
    found = [
        Section(name, title(name), _model_rows(settings.systems[name]))
        for name in in_order(settings)
        if name in settings.systems
    ]
    own: tuple[tuple[str, BaseModel], ...] = (
        ("state", settings.state),
        ("webhooks", settings.webhooks),
        ("sync", settings.sync),
        ("health", settings.health),
    )
    for name, model in own:
        found.append(Section(name, "", _model_rows(model)))
    if settings.email:
        found.append(Section("email", title("email"), shown_rows(settings.email)))
    for channel, section in sorted(settings.notify_settings.items()):
        found.append(Section(f"notify.{channel}", title(channel), _model_rows(section)))
    console = settings.console
    rows = [
        (key, text)
        for key, value in console.model_dump(include=set(CONSOLE_KEYS)).items()
        if (text := shown(key, value)) is not None
    ]
    rows.append(("users", ", ".join(f"{u.name} ({u.role})" for u in console.users) or "-"))
    found.append(Section("console", "", tuple(rows)))
    return tuple(found)


def _model_rows(model: BaseModel) -> Rows:
    # Python mode keeps SecretStr values wrapped, so they are recognised and hidden.
    return shown_rows(model.model_dump())


def _table_or_file(
    file: Path | None, table: Mapping[str, Any], base: Path, name: str
) -> tuple[str, str]:
    """The text of a mapping or policy: its own file as written, else its table as TOML."""
    if file is not None:
        path = file if file.is_absolute() else base / file
        try:
            return str(path), redact_toml(path.read_text())
        except OSError as exc:
            return str(path), f"(cannot read: {exc.strerror})"
    return f"[{name}] in the configuration file", to_toml(table, name)


def what_if(
    current: Policy | None, policy_name: str, tickets: str, overrides: Mapping[str, int | None]
) -> WhatIf:
    """`policy simulate` over pasted or uploaded ticket snapshots (JSON Lines), with the policy
    in force or a preset, its limits overridden as given."""
    chosen: Policy | None
    if policy_name in ("", "current"):
        chosen = current
        if chosen is None:
            return WhatIf("none", None, ("no escalation policy is configured",))
    elif policy_name in presets.preset_names():
        chosen = presets.load_preset(policy_name)
    else:
        return WhatIf(policy_name, None, (f"no policy or preset named {policy_name!r}",))
    changed = {k: v for k, v in overrides.items() if v is not None}
    if changed:
        try:
            limits = chosen.limits.model_validate({**chosen.limits.model_dump(), **changed})
        except ValidationError as exc:
            return WhatIf(chosen.name, None, tuple(e["msg"] for e in exc.errors()))
        chosen = chosen.model_copy(update={"limits": limits})
    lines = tickets.splitlines()
    if len(lines) > WHAT_IF_MAX_LINES:
        return WhatIf(chosen.name, None, (f"more than {WHAT_IF_MAX_LINES} lines",))
    snapshots = []
    problems: list[str] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            snapshots.append(snapshot_from_json(json.loads(line)))
        except (json.JSONDecodeError, ValidationError, SnapshotInvalid, ValueError) as exc:
            problems.append(f"line {n}: {str(exc).splitlines()[0][:300]}")
        except (TypeError, AttributeError):
            problems.append(f"line {n}: not a JSON object")
    if problems:
        return WhatIf(chosen.name, None, tuple(problems[:20]))
    if not snapshots:
        return WhatIf(chosen.name, None, ("no ticket snapshots given",))
    return WhatIf(chosen.name, simulate(chosen, snapshots))
