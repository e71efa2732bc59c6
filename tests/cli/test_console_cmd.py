"""`console hash-password` prints an argon2 hash the console accepts, and never the password."""

from __future__ import annotations

from pydantic import SecretStr
from typer.testing import CliRunner

from cli.app import build
from sync.console.auth import check_password
from sync.console.settings import ConsoleUser


def test_hash_password_from_stdin() -> None:
    """The printed hash verifies the password it was made from."""
    result = CliRunner().invoke(
        build(), ["console", "hash-password", "--stdin"], input="s3cret-pw\n"
    )
    assert result.exit_code == 0, result.output
    hashed = result.stdout.strip()
    assert "s3cret-pw" not in result.output
    user = ConsoleUser(name="ann", role="viewer", password_hash=SecretStr(hashed))
    assert check_password(user, "s3cret-pw")


def test_short_password_is_refused() -> None:
    """A password under eight characters is refused with exit 2."""
    result = CliRunner().invoke(build(), ["console", "hash-password", "--stdin"], input="short\n")
    assert result.exit_code == 2 and "at least 8" in result.stderr
