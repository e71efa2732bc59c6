"""The `[console]` section: off unless enabled; who may sign in, and how.

Local users carry an argon2 hash of their password (`escalation-sync console hash-password`
makes one), in the configuration (`[[console.users]]`) or in a TOML file of their own
(`users_file`, a `[[users]]` table per person) that a secrets manager can own. With
`auth = "proxy"` a reverse proxy that signed the person in (SSO) names them in a header, which
is believed only from the addresses in `trusted_proxies`.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Literal

from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from mapping.errors import ConfigError, ConfigInvalid, from_pydantic

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConsoleUser(BaseModel):
    """A person who may sign in, with their role (`password_hash`: argon2, never the password)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._@+-]{1,100}$")
    role: Role = "viewer"
    password_hash: SecretStr | None = None

    @field_validator("password_hash")
    @classmethod
    def _argon2(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            extract_parameters(value.get_secret_value())
        except (InvalidHashError, ValueError):
            # The value is not repeated: it may be a password pasted by mistake.
            raise ValueError(
                "not an argon2 hash: make one with `escalation-sync console hash-password`"
            ) from None
        return value


class ConsoleSettings(BaseModel):
    """The operations console the daemon serves on its own listener."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # The path the console is served under when a reverse proxy puts it below one (`/console`).
    root_path: str = Field(default="", pattern=r"^(/[A-Za-z0-9._~-]+)*$")
    auth: Literal["local", "proxy"] = "local"
    users: list[ConsoleUser] = Field(default_factory=list)
    users_file: Path | None = None
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_max_hours: float = Field(default=12, gt=0, le=24 * 7)
    # None: Secure when the request came over https (told by a trusted proxy, or served so).
    cookie_secure: bool | None = None
    trusted_proxies: list[IPNetwork] = Field(default_factory=list)
    proxy_user_header: str = Field(default="X-Forwarded-User", min_length=1)
    proxy_groups_header: str = Field(default="X-Forwarded-Groups", min_length=1)
    operator_groups: list[str] = Field(default_factory=list)
    # Empty: anyone the proxy signed in may view; else only members of these groups.
    viewer_groups: list[str] = Field(default_factory=list)
    # The custom field (`custom.<name>` in the mapping) the board calls a ticket's team.
    team_field: str = "assignment_group"
    max_sign_in_failures: int = Field(default=5, ge=1, le=100)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, list):
            return [ipaddress.ip_network(str(v), strict=False) for v in value]
        return value

    @model_validator(mode="after")
    def _coherent(self) -> ConsoleSettings:
        names = [u.name for u in self.users]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"users listed twice: {', '.join(duplicates)}")
        if not self.enabled:
            return self
        if self.auth == "proxy" and not self.trusted_proxies:
            raise ValueError(
                "auth = 'proxy' needs trusted_proxies: the addresses whose sign-in header is "
                "believed"
            )
        if self.auth == "local":
            if not self.users and self.users_file is None:
                raise ValueError("enabled with no users: add [[console.users]] or users_file")
            missing = [u.name for u in self.users if u.password_hash is None]
            if missing:
                raise ValueError(f"users without a password_hash: {', '.join(missing)}")
        return self

    def user(self, name: str) -> ConsoleUser | None:
        """The configured user of that name."""
        return next((u for u in self.users if u.name == name), None)


def load_users_file(path: Path, *, local: bool) -> list[ConsoleUser]:
    """The `[[users]]` of a users file; ConfigInvalid with every error, naming the file."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigInvalid([ConfigError(str(path), "", "file not found")]) from None
    except OSError as exc:
        raise ConfigInvalid([ConfigError(str(path), "", f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid([ConfigError(str(path), "", f"malformed TOML: {exc}")]) from None
    errors: list[ConfigError] = []
    unknown = sorted(set(data) - {"users"})
    errors.extend(ConfigError(str(path), key, "unknown key (misspelt?)") for key in unknown)
    rows = data.get("users", [])
    if not isinstance(rows, list):
        raise ConfigInvalid([*errors, ConfigError(str(path), "users", "must be [[users]] tables")])
    users: list[ConsoleUser] = []
    for n, row in enumerate(rows):
        try:
            user = ConsoleUser.model_validate(row)
        except ValidationError as exc:
            errors.extend(from_pydantic(exc, str(path), f"users[{n}]"))
            continue
        if local and user.password_hash is None:
            errors.append(ConfigError(str(path), f"users[{n}].password_hash", "required"))
        users.append(user)
    if errors:
        raise ConfigInvalid(errors)
    return users


def with_users_file(console: ConsoleSettings, config_file: Path) -> ConsoleSettings:
    """The section with its users file read in (relative to the configuration file).

    A person in both the file and the configuration is refused: which entry holds would be a
    guess.
    """
    if console.users_file is None:
        return console
    path = console.users_file
    if not path.is_absolute():
        path = config_file.parent / path
    from_file = load_users_file(path, local=console.auth == "local")
    inline = {u.name for u in console.users}
    twice = sorted(u.name for u in from_file if u.name in inline)
    if twice:
        raise ConfigInvalid(
            [ConfigError(str(path), "users", f"also in [console] users: {', '.join(twice)}")]
        )
    if console.enabled and console.auth == "local" and not (console.users or from_file):
        raise ConfigInvalid([ConfigError(str(path), "users", "no users: the console is enabled")])
    return console.model_copy(update={"users": [*console.users, *from_file], "users_file": path})
