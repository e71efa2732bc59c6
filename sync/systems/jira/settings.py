"""The `[jira]` section: a Jira Cloud site (e-mail and API token) or Server/DC (access token)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import SecretStr

from sync.systems.base import SystemSettings


class JiraSettings(SystemSettings):
    """Connection to Jira Cloud (email + API token) or Server/DC (personal access token)."""

    secrets: ClassVar[tuple[str, ...]] = ("api_token", "pat", "webhook_secret")

    base_url: str = "http://127.0.0.1:8081"
    auth: Literal["cloud", "pat"] = "cloud"
    email: str | None = None
    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    pat: SecretStr | None = None
    pat_file: Path | None = None
    project: str = "DS"
    jql: str = ""
    internal_comment_role: str = "Administrators"
    # A Jira Service Management project: comments carry the `sd.public.comment` property, and
    # reading them needs their properties to tell the customer-visible ones apart.
    service_desk: bool = False

    def address(self) -> str | None:
        """The site's base URL."""
        return self.base_url
