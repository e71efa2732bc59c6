"""Which secrets the configuration needs and lacks, named by the environment variable to set.

Offline: nothing is contacted, nothing secret is printed. The credentials a system's `auth`
needs are required (a command that talks to the systems cannot start without them); a missing
webhook secret is reported as a warning, since polling still works and unsigned deliveries are
refused by design.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mapping.errors import ConfigError

ENV_PREFIX = "ESCALATION_SYNC_"
_DISPLAY = {"jira": "Jira", "servicenow": "ServiceNow"}


@dataclass(frozen=True, slots=True)
class MissingSecret:
    """A secret (or credential part) the configuration does not give."""

    key: str  # dotted, e.g. "jira.api_token"
    required: bool
    consequence: str = ""

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return ENV_PREFIX + self.key.upper().replace(".", "__")

    @property
    def reason(self) -> str:
        """`not set (set ESCALATION_SYNC_JIRA__API_TOKEN or api_token_file)`."""
        leaf = self.key.rsplit(".", 1)[-1]
        how = f"set {self.env} or {leaf}_file" if _has_file_key(leaf) else f"set {self.env}"
        tail = f"; {self.consequence}" if self.consequence else ""
        return f"not set ({how}){tail}"

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}"

    def as_error(self, source: str) -> ConfigError:
        """The same, as a configuration error of `source`."""
        return ConfigError(source, self.key, self.reason)


def _has_file_key(leaf: str) -> bool:
    return leaf in ("api_token", "pat", "password", "client_secret", "webhook_secret")


def _set(value: Any) -> bool:
    if value is None:
        return False
    if hasattr(value, "get_secret_value"):
        return bool(value.get_secret_value())
    return bool(str(value).strip())


def missing_secrets(settings: Any) -> list[MissingSecret]:
    """Every secret the settings lack, required ones first."""
    found: list[MissingSecret] = []
    sections = getattr(settings, "systems", {}) or {}
    jira = sections.get("jira")
    if jira is not None:
        if jira.auth == "pat":
            if not _set(jira.pat):
                found.append(MissingSecret("jira.pat", True))
        else:
            if not _set(jira.email):
                found.append(MissingSecret("jira.email", True))
            if not _set(jira.api_token):
                found.append(MissingSecret("jira.api_token", True))
    snow = sections.get("servicenow")
    if snow is not None:
        if snow.auth == "oauth":
            if not _set(snow.client_id):
                found.append(MissingSecret("servicenow.client_id", True))
            if not _set(snow.client_secret):
                found.append(MissingSecret("servicenow.client_secret", True))
        else:
            if not _set(snow.username):
                found.append(MissingSecret("servicenow.username", True))
            if not _set(snow.password):
                found.append(MissingSecret("servicenow.password", True))
    found.extend(_email_secrets(getattr(settings, "email_settings", None)))
    for name, section in sections.items():
        if not _set(getattr(section, "webhook_secret", None)):
            found.append(
                MissingSecret(
                    f"{name}.webhook_secret",
                    False,
                    f"{_DISPLAY.get(name, name)} webhooks will be refused (401) and changes "
                    "found by polling only",
                )
            )
    return sorted(found, key=lambda m: not m.required)


def _email_secrets(email: Any) -> list[MissingSecret]:
    if email is None or not getattr(email, "enabled", False):
        return []
    if email.transport == "smtp" and email.smtp.username and not _readable(email.smtp):
        return [MissingSecret("email.smtp.password", True)]
    if email.transport == "ews" and email.ews is not None and not _readable(email.ews):
        return [MissingSecret("email.ews.password", True)]
    return []


def _readable(section: Any) -> bool:
    try:
        return bool(section.password_value())
    except OSError:
        return False
