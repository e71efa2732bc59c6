"""Settings: one TOML file (`--config` or ESCALATION_SYNC_CONFIG), overridden by the environment.

Environment variables use the prefix `ESCALATION_SYNC_` and `__` between levels, e.g.
`ESCALATION_SYNC_JIRA__API_TOKEN`. Every secret may instead be read from a file (`api_token_file`),
which suits container secrets. Secrets are `SecretStr`: their repr and str are masked.

Loading validates everything once (connections, mapping, escalation policy, email) and reports all
errors together, each with file, key and reason; a policy rule reading a field the mapping does not
give the ITSM record is one of them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mapping import Mapping, load_mapping
from mapping.errors import ConfigError, ConfigInvalid, from_pydantic, validate_reporting_all
from sync.console.settings import ConsoleSettings, with_users_file
from sync.notify.registry import validate_sections

CONFIG_ENV = "ESCALATION_SYNC_CONFIG"
# Shipped inside the package so an installed wheel has it too (the repository root links here).
EXAMPLE_CONFIG = Path(__file__).resolve().parent / "config.example.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def _secret_from_file(self, name: str) -> None:
        path: Path | None = getattr(self, f"{name}_file")
        if getattr(self, name) is None and path is not None:
            try:
                setattr(self, name, SecretStr(Path(path).read_text().strip()))
            except OSError as exc:
                raise ValueError(f"cannot read {name}_file: {exc.strerror}") from None


class JiraSettings(_Section):
    """Connection to Jira Cloud (email + API token) or Server/DC (personal access token)."""

    base_url: str = "http://127.0.0.1:8081"
    auth: Literal["cloud", "pat"] = "cloud"
    email: str | None = None
    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    pat: SecretStr | None = None
    pat_file: Path | None = None
    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = None
    project: str = "DS"
    jql: str = ""
    integration_user: str | None = None
    internal_comment_role: str = "Administrators"
    # A Jira Service Management project: comments carry the `sd.public.comment` property, and
    # reading them needs their properties to tell the customer-visible ones apart.
    service_desk: bool = False
    poll_interval_seconds: int = Field(default=60, ge=5)

    @model_validator(mode="after")
    def _secrets(self) -> JiraSettings:
        for name in ("api_token", "pat", "webhook_secret"):
            self._secret_from_file(name)
        return self


class ServiceNowSettings(_Section):
    """Connection to a ServiceNow instance's Table API (basic or OAuth client credentials)."""

    instance_url: str = "http://127.0.0.1:8082"
    table: str = "incident"
    auth: Literal["basic", "oauth"] = "basic"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = None
    replay_window_seconds: int = Field(default=300, ge=1)
    integration_user: str | None = None
    query: str = ""
    poll_interval_seconds: int = Field(default=60, ge=5)

    @model_validator(mode="after")
    def _secrets(self) -> ServiceNowSettings:
        for name in ("password", "client_secret", "webhook_secret"):
            self._secret_from_file(name)
        return self


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
    """The daemon's HTTP listener."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)


class SyncSettings(_Section):
    """Engine tuning."""

    attachment_max_bytes: int = Field(default=25 * 1024 * 1024, ge=0)
    reconcile_at: str = Field(default="03:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class HealthSettings(_Section):
    """When /healthz turns 503, and how often a paused system is probed."""

    # A system that failed every call for this long (none answered) is unhealthy.
    failing_after_seconds: int = Field(default=900, ge=1)
    # The oldest ready task has waited this long: the workers are stuck or far behind.
    queue_stuck_after_seconds: int = Field(default=600, ge=1)
    # A system paused for refused credentials is asked again this often (one cheap call).
    probe_interval_seconds: int = Field(default=60, ge=1)


class Settings(BaseSettings):
    """The whole validated configuration."""

    model_config = SettingsConfigDict(
        env_prefix="ESCALATION_SYNC_",
        env_nested_delimiter="__",
        extra="forbid",
        arbitrary_types_allowed=True,
    )

    jira: JiraSettings = Field(default_factory=JiraSettings)
    servicenow: ServiceNowSettings = Field(default_factory=ServiceNowSettings)
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
    compiled_mapping: Any = None
    compiled_policy: Any = None
    email_settings: Any = None
    notify_settings: dict[str, Any] = Field(default_factory=dict, repr=False)

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
        assert isinstance(self.compiled_mapping, Mapping)
        return self.compiled_mapping


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


def _section_loader(module: str, attribute: str) -> Callable[..., Any] | None:
    """Find a section validator owned by another package, if it is installed."""
    try:
        imported = __import__(module, fromlist=[attribute])
    except ImportError:
        return None
    loader = getattr(imported, attribute, None)
    return loader if callable(loader) else None


def load_mapping_file(settings: Settings, config_file: Path) -> Mapping:
    """The mapping in effect: `mapping_file` when set, else the `[mapping]` section."""
    return _load_mapping(settings.mapping_file, settings.mapping, config_file)


def _load_mapping(file: Path | None, table: dict[str, Any], config_file: Path) -> Mapping:
    if file is not None:
        path = _relative(config_file, file)
        return load_mapping(read_toml(path), source=str(path))
    return load_mapping(table, source=str(config_file), prefix="mapping")


def load_policy_file(settings: Settings, config_file: Path) -> Any:
    """The escalation policy in effect: `policy_file` when set, else `[escalation]`."""
    return _load_policy(settings.policy_file, settings.escalation, config_file)


def _load_policy(file: Path | None, table: dict[str, Any], config_file: Path) -> Any:
    load_policy = _section_loader("escalation.policy", "load_policy")
    if load_policy is None:
        return None
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
    policy: Any, mapping: Mapping, sections: _Sections, config_file: Path
) -> list[ConfigError]:
    """Policy rules reading a field the mapping never gives the ITSM record (they never fire)."""
    gaps = _section_loader("escalation.policy", "mapping_gaps")
    prefix_of = _section_loader("escalation.policy", "key_prefix")
    if gaps is None or prefix_of is None:
        return []
    data, source, prefix = _policy_table(sections.policy_file, sections.escalation, config_file)
    found: list[ConfigError] = gaps(policy, mapping, source=source, prefix=prefix_of(data, prefix))
    return found


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
    settings, errors = validate_reporting_all(lambda d: Settings(**d), data, source)
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
    compiled: dict[str, Any] = {}
    try:
        compiled["mapping"] = _load_mapping(sections.mapping_file, sections.mapping, file)
    except ConfigInvalid as exc:
        errors.extend(exc.errors)
    try:
        compiled["policy"] = _load_policy(sections.policy_file, sections.escalation, file)
    except ConfigInvalid as exc:
        errors.extend(exc.errors)
    if compiled.get("mapping") is not None and compiled.get("policy") is not None:
        errors.extend(_policy_mapping_gaps(compiled["policy"], compiled["mapping"], sections, file))
    email_model = _section_loader("connectors.email", "EmailSettings")
    if email_model is not None:
        try:
            compiled["email"] = email_model.model_validate(sections.email)  # type: ignore[attr-defined]
        except ValidationError as exc:
            errors.extend(from_pydantic(exc, source, "email"))
    if settings is not None:
        try:
            settings.console = with_users_file(settings.console, file)
        except ConfigInvalid as exc:
            errors.extend(exc.errors)
    notify_models, notify_errors = validate_sections(sections.notify, source)
    errors.extend(notify_errors)
    if settings is None or errors:
        raise ConfigInvalid(errors)
    settings.source = source
    if settings.state.dir and not settings.state.dir.is_absolute():
        # Relative to the file it is written in; for the built-in example (no file given),
        # relative to where the command runs, never inside the installed package.
        if file.resolve() == EXAMPLE_CONFIG:
            settings.state.dir = Path.cwd() / settings.state.dir
        else:
            settings.state.dir = _relative(file, settings.state.dir)
    settings.compiled_mapping = compiled["mapping"]
    settings.compiled_policy = compiled["policy"]
    settings.email_settings = compiled.get("email")
    settings.notify_settings = notify_models
    return settings
