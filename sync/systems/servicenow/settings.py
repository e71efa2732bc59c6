"""The `[servicenow]` section: an instance's Table API, basic auth or OAuth client credentials."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from sync.systems.base import SystemSettings


class ServiceNowSettings(SystemSettings):
    """Connection to a ServiceNow instance's Table API (basic or OAuth client credentials)."""

    secrets: ClassVar[tuple[str, ...]] = ("password", "client_secret", "webhook_secret")

    instance_url: str = "http://127.0.0.1:8082"
    table: str = "incident"
    auth: Literal["basic", "oauth"] = "basic"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    # How old a delivery's signed timestamp may be (the Business Rule signs time and body).
    replay_window_seconds: int = Field(default=300, ge=1)
    query: str = ""

    def address(self) -> str | None:
        """The instance's URL."""
        return self.instance_url
