"""Settings: one TOML file (`--config` or ESCALATION_SYNC_CONFIG), overridden by the environment.

Environment variables use the prefix `ESCALATION_SYNC_` and `__` between levels, e.g.
`ESCALATION_SYNC_JIRA__API_TOKEN`. Every secret may instead be read from a file (`api_token_file`),
which suits container secrets. Secrets are `SecretStr`: their repr and str are masked.

Each ticket system's section (`[jira]`, `[servicenow]`, or the section of a system another
package installs) is validated by that system's own settings model (sync/systems/); the mapping
may only name systems that are installed, and every system it names has its section.

Loading validates everything once (connections, mapping, escalation policy, email) and reports all
errors together, each with file, key and reason; a policy rule reading a field the mapping does not
give the ITSM record is one of them.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, InstanceOf, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connectors.email import EmailSettings
from escalation.policy import Policy, Scope, key_prefix, load_policy, mapping_gaps, target_gaps
from mapping import Mapping, load_mapping
from mapping.errors import ConfigError, ConfigInvalid, from_pydantic, validate_reporting_all
from mapping.model import System
from sync.console.settings import ConsoleSettings, with_users_file
from sync.notify.registry import validate_sections
from sync.systems.base import S, SystemSettings, TicketSystem
from sync.systems.registry import Registry, registry

CONFIG_ENV = "ESCALATION_SYNC_CONFIG"
ENV_PREFIX = "ESCALATION_SYNC_"
# Shipped inside the package so an installed wheel has it too (the repository root links here).
EXAMPLE_CONFIG = Path(__file__).resolve().parent / "config.example.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StateSettings(_Section):
    """Where state lives: SQLite in `dir` unless a database URL is given; the queue likewise."""

    dir: Path = Path("./state")
    database_url: str | None = None
    queue_url: str | None = None
    workers: int = Field(default=2, ge=1, le=64)

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL in use."""
        return self.database_url or f"sqlite:///{(self.dir / 'escalation-sync.store.db').resolve()}"


class WebhookServerSettings(_Section):
    """The daemon's HTTP listener, and the address Jira and ServiceNow post to."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Where the vendors reach this daemon (a proxy's https address); http://host:port if unset.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")

    def base_url(self) -> str:
        """The daemon's address as Jira and ServiceNow post to it, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"


class SyncSettings(_Section):
    """Engine tuning."""

    attachment_max_bytes: int = Field(default=25 * 1024 * 1024, ge=0)
    reconcile_at: str = Field(default="03:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


def default_sections() -> dict[str, SystemSettings]:
    """The sections of the installed systems that need no configuration to be valid (the
    built-in ones point at the local simulators), for settings made without a file."""
    sections: dict[str, SystemSettings] = {}
    for system in registry():
        try:
            sections[system.name] = system.settings_model()
        except ValidationError:
            continue
    return sections


class HealthSettings(_Section):
    """When /healthz turns 503, and how often a paused system is probed."""

    # A system that failed every call for this long (none answered) is unhealthy.
    failing_after_seconds: int = Field(default=900, ge=1)
    # The oldest ready task has waited this long: the workers are stuck or far behind.
    queue_stuck_after_seconds: int = Field(default=600, ge=1)
    # A system paused for refused credentials is asked again this often (one cheap call).
    probe_interval_seconds: int = Field(default=60, ge=1)


# What a configuration not (yet) loaded by `load_settings` maps: nothing.
EMPTY_MAPPING = Mapping(
    source="", systems={}, ownership={}, default_owner="both", conflict="newest-wins"
)


class Settings(BaseSettings):
    """The whole validated configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        arbitrary_types_allowed=True,
    )

    state: StateSettings = Field(default_factory=StateSettings)
    webhooks: WebhookServerSettings = Field(default_factory=WebhookServerSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    # The raw tables, validated into typed models by load_settings. Kept out of repr: the raw
    # `[email]` table holds transport passwords as plain strings (the typed model wraps them).
    email: dict[str, Any] = Field(default_factory=dict, repr=False)
    escalation: dict[str, Any] = Field(default_factory=dict, repr=False)
    mapping: dict[str, Any] = Field(default_factory=dict, repr=False)
    # `[notify.<channel>]` tables, one per notification channel besides e-mail
    # (sync/notify/channels/); each is validated by its channel's module.
    notify: dict[str, Any] = Field(default_factory=dict, repr=False)
    mapping_file: Path | None = None
    policy_file: Path | None = None

    # Filled by load_settings once the sections are validated; not configuration keys.
    source: str = ""
    compiled_mapping: InstanceOf[Mapping] = Field(default_factory=lambda: EMPTY_MAPPING)
    compiled_policy: InstanceOf[Policy] | None = None
    email_settings: InstanceOf[EmailSettings] | None = None
    # Each `[notify.<channel>]` table as its channel's validated model, by channel.
    notify_settings: dict[str, InstanceOf[BaseModel]] = Field(default_factory=dict, repr=False)
    # Each ticket system's validated section, by system name.
    systems: dict[str, InstanceOf[SystemSettings]] = Field(default_factory=default_sections)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, which is passed in as init values.
        return (env_settings, init_settings, file_secret_settings)

    @property
    def mapping_model(self) -> Mapping:
        """The compiled mapping."""
        return self.compiled_mapping

    def section(self, system: TicketSystem[S]) -> S:
        """`system`'s section, as its own settings model (LookupError when not configured)."""
        return system.section(self.systems)

    def system_settings(self, name: str) -> SystemSettings:
        """The section of the system named `name` (LookupError when not configured)."""
        found = self.systems.get(name)
        if found is None:
            raise LookupError(f"no [{name}] section is configured")
        return found


def config_path(explicit: Path | None) -> Path:
    """The config file in use: `--config`, else ESCALATION_SYNC_CONFIG, else the example."""
    if explicit is not None:
        return explicit
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else EXAMPLE_CONFIG


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error becomes a ConfigInvalid naming the line."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigInvalid([ConfigError(str(path), "", "file not found")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid([ConfigError(str(path), "", f"malformed TOML: {exc}")]) from None


def _relative(base: Path, target: Path) -> Path:
    return target if target.is_absolute() else base.parent / target


def load_mapping_file(settings: Settings, config_file: Path) -> Mapping:
    """The mapping in effect: `mapping_file` when set, else the `[mapping]` section."""
    return _load_mapping(settings.mapping_file, settings.mapping, config_file)


def _load_mapping(file: Path | None, table: dict[str, Any], config_file: Path) -> Mapping:
    if file is not None:
        path = _relative(config_file, file)
        return load_mapping(read_toml(path), source=str(path))
    return load_mapping(table, source=str(config_file), prefix="mapping")


def load_policy_file(settings: Settings, config_file: Path) -> Policy:
    """The escalation policy in effect: `policy_file` when set, else `[escalation]`."""
    return _load_policy(settings.policy_file, settings.escalation, config_file)


def _load_policy(file: Path | None, table: dict[str, Any], config_file: Path) -> Policy:
    data, source, prefix = _policy_table(file, table, config_file)
    return load_policy(data, source=source, prefix=prefix)


def _policy_table(
    file: Path | None, table: dict[str, Any], config_file: Path
) -> tuple[dict[str, Any], str, str]:
    """The policy as written, the file it is written in, and the key prefix of its errors."""
    if file is not None:
        path = _relative(config_file, file)
        return read_toml(path), str(path), ""
    return table, str(config_file), "escalation"


def _policy_mapping_gaps(
    policy: Policy, mapping: Mapping, sections: _Sections, config_file: Path
) -> list[ConfigError]:
    """Policy rules reading a field the mapping never gives the ITSM record (they never fire)."""
    data, source, prefix = _policy_table(sections.policy_file, sections.escalation, config_file)
    return mapping_gaps(policy, mapping, source=source, prefix=key_prefix(data, prefix))


def policy_scopes(
    sections: AbcMapping[str, SystemSettings], mapping: Mapping, installed: Registry | None = None
) -> dict[System, Scope | None]:
    """Per configured system, the projects or tables this configuration works in (None where
    it does not bound them): where a policy may escalate to."""
    found: dict[System, Scope | None] = {}
    for system in installed if installed is not None else registry():
        section = sections.get(system.name)
        if section is not None:
            found[system.system] = system.scope(section, mapping)
    return found


def _policy_target_gaps(
    policy: Policy,
    mapping: Mapping,
    scopes: AbcMapping[System, Scope | None],
    sections: _Sections,
    config_file: Path,
) -> list[ConfigError]:
    """Levels escalating where this configuration does not work, or routing by unmapped
    fields (their records would fail to be created or go unwatched)."""
    data, source, prefix = _policy_table(sections.policy_file, sections.escalation, config_file)
    return target_gaps(policy, mapping, scopes, source=source, prefix=key_prefix(data, prefix))


@dataclass(frozen=True, slots=True)
class _Sections:
    """The tables validated by other packages, as given (the settings may not have validated)."""

    mapping_file: Path | None
    mapping: dict[str, Any]
    policy_file: Path | None
    escalation: dict[str, Any]
    email: dict[str, Any]
    notify: dict[str, Any]

    @classmethod
    def from_raw(cls, data: dict[str, Any]) -> _Sections:
        def table(name: str) -> dict[str, Any]:
            value = data.get(name)
            return value if isinstance(value, dict) else {}

        def path(name: str) -> Path | None:
            value = data.get(name)
            return Path(value) if isinstance(value, str) else None

        return cls(
            path("mapping_file"),
            table("mapping"),
            path("policy_file"),
            table("escalation"),
            table("email"),
            table("notify"),
        )


def load_settings(path: Path | None = None) -> Settings:
    """Load and validate everything; raise ConfigInvalid with every error found.

    The mapping, the policy and the email section are checked even when another section is
    wrong, so an admin sees every problem in one `mapping check`.
    """
    file = config_path(path)
    data = read_toml(file)
    source = str(file)
    installed = registry()
    tables = {name: data.pop(name) for name in installed.names() if name in data}
    settings, errors = validate_reporting_all(lambda d: Settings(**d, systems={}), data, source)
    systems, system_errors = _system_sections(installed, tables, source)
    errors.extend(system_errors)
    if settings is None or errors:
        sections = _Sections.from_raw(data)
    else:
        sections = _Sections(
            settings.mapping_file,
            settings.mapping,
            settings.policy_file,
            settings.escalation,
            settings.email,
            settings.notify,
        )
    mapping: Mapping | None = None
    policy: Policy | None = None
    email: EmailSettings | None = None
    try:
        mapping = _load_mapping(sections.mapping_file, sections.mapping, file)
    except ConfigInvalid as exc:
        errors.extend(exc.errors)
    try:
        policy = _load_policy(sections.policy_file, sections.escalation, file)
    except ConfigInvalid as exc:
        errors.extend(exc.errors)
    if mapping is not None and policy is not None:
        errors.extend(_policy_mapping_gaps(policy, mapping, sections, file))
        scopes = policy_scopes(systems, mapping, installed)
        errors.extend(_policy_target_gaps(policy, mapping, scopes, sections, file))
    if mapping is not None:
        errors.extend(_unconfigured(mapping, systems, system_errors, installed, source))
    try:
        email = EmailSettings.model_validate(sections.email)
    except ValidationError as exc:
        errors.extend(from_pydantic(exc, source, "email"))
    if settings is not None:
        try:
            settings.console = with_users_file(settings.console, file)
        except ConfigInvalid as exc:
            errors.extend(exc.errors)
    notify_models, notify_errors = validate_sections(sections.notify, source)
    errors.extend(notify_errors)
    if settings is None or errors or mapping is None:
        raise ConfigInvalid(errors)
    settings.source = source
    if settings.state.dir and not settings.state.dir.is_absolute():
        # Relative to the file it is written in; for the built-in example (no file given),
        # relative to where the command runs, never inside the installed package.
        if file.resolve() == EXAMPLE_CONFIG:
            settings.state.dir = Path.cwd() / settings.state.dir
        else:
            settings.state.dir = _relative(file, settings.state.dir)
    settings.compiled_mapping = mapping
    settings.compiled_policy = policy
    settings.email_settings = email
    settings.notify_settings = notify_models
    settings.systems = systems
    return settings


def environment_table(name: str, environ: AbcMapping[str, str] | None = None) -> dict[str, Any]:
    """What the environment sets in section `name`: `ESCALATION_SYNC_<NAME>__<KEY>` variables
    (`__` between levels, names matched without regard to case), over the whole section given
    as JSON in `ESCALATION_SYNC_<NAME>`, as pydantic-settings reads the other sections."""
    environ = os.environ if environ is None else environ
    whole = f"{ENV_PREFIX}{name}".casefold()
    prefix = f"{whole}__"
    table: dict[str, Any] = {}
    for key, value in environ.items():
        if key.casefold() == whole:
            try:
                loaded = json.loads(value)
            except ValueError:
                continue
            if isinstance(loaded, dict):
                table = _merged(loaded, table)
    for key, value in sorted(environ.items()):
        folded = key.casefold()
        if not folded.startswith(prefix):
            continue
        *parents, leaf = folded[len(prefix) :].split("__")
        node = table
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[leaf] = value
    return table


def _merged(base: AbcMapping[str, Any], over: AbcMapping[str, Any]) -> dict[str, Any]:
    """`over` laid over `base`, tables merged key by key."""
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            out[key] = _merged(below, value)
        else:
            out[key] = value
    return out


def _system_sections(
    installed: Registry, tables: AbcMapping[str, Any], source: str
) -> tuple[dict[str, SystemSettings], list[ConfigError]]:
    """Each installed system's section, from the file's table with the environment over it,
    validated by the system's own model. A system neither the file nor the environment
    configures gets its defaults when they are valid on their own, else no section."""
    sections: dict[str, SystemSettings] = {}
    errors: list[ConfigError] = []
    for system in installed:
        table = tables.get(system.name)
        if table is not None and not isinstance(table, dict):
            errors.append(ConfigError(source, system.name, "must be a table ([section])"))
            continue
        given = _merged(table or {}, environment_table(system.name))
        model = system.settings_model
        try:
            sections[system.name] = model.model_validate(given)
        except ValidationError as exc:
            if table is not None or given:
                errors.extend(from_pydantic(exc, source, system.name))
    return sections, errors


def _unconfigured(
    mapping: Mapping,
    sections: AbcMapping[str, SystemSettings],
    reported: list[ConfigError],
    installed: Registry,
    source: str,
) -> list[ConfigError]:
    """A system the mapping names with no section (its own errors aside)."""
    wrong = {e.key.split(".", 1)[0] for e in reported}
    return [
        ConfigError(
            source,
            system.value,
            f"the mapping names {installed.get(system.value).title}, which is not configured "
            f"(add a [{system.value}] section)",
        )
        for system in mapping.systems
        if system.value not in sections and system.value not in wrong
    ]
