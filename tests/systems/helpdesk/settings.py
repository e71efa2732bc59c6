"""The `[helpdesk]` section."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import SecretStr

from sync.systems.base import SystemSettings


class HelpdeskSettings(SystemSettings):
    """Where the help desk is and the key the integration uses there."""

    secrets: ClassVar[tuple[str, ...]] = ("api_key", "webhook_secret")

    url: str
    api_key: SecretStr | None = None
    api_key_file: Path | None = None

    def address(self) -> str | None:
        """The help desk's URL."""
        return self.url
