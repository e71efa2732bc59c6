"""The `[console]` section is validated with the rest of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from mapping.errors import ConfigInvalid
from sync.config.settings import load_settings
from sync.console.settings import ConsoleSettings
from tests.sync.console.conftest import OPERATOR, console_section, write_config


def _errors(path: Path) -> list[str]:
    with pytest.raises(ConfigInvalid) as caught:
        load_settings(path)
    return [str(e) for e in caught.value.errors]


def test_off_unless_enabled() -> None:
    """Without a `[console]` section the console is off, bound to loopback when turned on."""
    section = ConsoleSettings()
    assert section.enabled is False
    assert section.host == "127.0.0.1"


def test_enabled_section_loads_users(tmp_path: Path) -> None:
    """A valid section loads with its users and their roles."""
    settings = load_settings(write_config(tmp_path, console_section()))
    assert settings.console.enabled
    assert [(u.name, u.role) for u in settings.console.users] == [
        ("olga", "operator"),
        ("victor", "viewer"),
    ]


def test_enabled_without_users_is_refused(tmp_path: Path) -> None:
    """Turning the console on with nobody to sign in is a configuration error naming the key."""
    errors = _errors(write_config(tmp_path, "\n[console]\nenabled = true\n"))
    assert any("console" in e and "no users" in e for e in errors)


def test_a_password_in_place_of_a_hash_is_refused_without_echo(tmp_path: Path) -> None:
    """A plain password pasted as `password_hash` is refused, and the error does not repeat it."""
    section = '\n[console]\nenabled = true\nusers = [{ name = "ann", password_hash = "hunter2" }]\n'
    errors = _errors(write_config(tmp_path, section))
    assert any("console.users[0].password_hash" in e and "argon2" in e for e in errors)
    assert not any("hunter2" in e for e in errors)


def test_proxy_mode_needs_trusted_proxies(tmp_path: Path) -> None:
    """Header sign-in without the addresses to believe it from is refused."""
    errors = _errors(write_config(tmp_path, '\n[console]\nenabled = true\nauth = "proxy"\n'))
    assert any("trusted_proxies" in e for e in errors)


def test_errors_are_reported_with_the_rest(tmp_path: Path) -> None:
    """A console error and an error elsewhere come out of one load together."""
    text = console_section().replace("port = 0", 'port = 0\nrole_of_everyone = "admin"')
    path = write_config(tmp_path, text)
    path.write_text(path.read_text().replace("workers = 2", "workers = 0", 1))
    errors = _errors(path)
    assert any("console.role_of_everyone" in e for e in errors)
    assert any("state.workers" in e for e in errors)


def test_users_file(tmp_path: Path) -> None:
    """Users may live in a file of their own, relative to the configuration file."""
    users = write_config(tmp_path, console_section())
    hashed = load_settings(users).console.users[0].password_hash
    assert hashed is not None
    (tmp_path / "console-users.toml").write_text(
        f'[[users]]\nname = "{OPERATOR[0]}"\nrole = "operator"\n'
        f'password_hash = "{hashed.get_secret_value()}"\n'
    )
    path = write_config(
        tmp_path, '\n[console]\nenabled = true\nusers_file = "console-users.toml"\n'
    )
    settings = load_settings(path)
    assert [u.name for u in settings.console.users] == [OPERATOR[0]]


def test_users_file_errors_name_the_file(tmp_path: Path) -> None:
    """A bad users file is reported with its own path and the entry's key."""
    (tmp_path / "people.toml").write_text(
        '[[users]]\nname = "x"\nrole = "admin"\n\n[[users]]\nname = "y"\n'
    )
    errors = _errors(
        write_config(tmp_path, '\n[console]\nenabled = true\nusers_file = "people.toml"\n')
    )
    assert any("people.toml" in e and "users[0].role" in e for e in errors)
    assert any("people.toml" in e and "users[1].password_hash" in e for e in errors)
