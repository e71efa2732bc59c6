"""Settings and files as the configuration page shows them: every secret left out.

A value is hidden when its key looks like a secret's (token, password, key...), when it is a
`SecretStr`, or when it is the password inside a URL; what is left is shown as text."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime

from pydantic import SecretStr

SECRET_KEY = re.compile(r"secret|token|password|passwd|credential|private|(^|_)pat$|api_key", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?=@)", re.I)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
HIDDEN = "set (hidden)"


def redact(value: str) -> str:
    """A URL's password taken out (`postgresql://u:secret@host` -> `postgresql://u:***@host`)."""
    return _URL_PASSWORD.sub(r"\g<head>***", value)


def shown(key: str, value: object) -> str | None:
    """A setting as the page shows it; None to leave it out (unset, or a table)."""
    if key.endswith("_file") or key == "source":
        return str(value) if value else None
    if SECRET_KEY.search(key):
        return HIDDEN if value else "not set"
    if isinstance(value, SecretStr):
        return HIDDEN
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return None
    return redact(str(value))


def shown_rows(table: Mapping[str, object], prefix: str = "") -> tuple[tuple[str, str], ...]:
    """A table's settings as (dotted key, shown value), nested tables flattened."""
    rows: list[tuple[str, str]] = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not SECRET_KEY.search(str(key)):
            rows.extend(shown_rows(value, f"{name}."))
        elif (text := shown(str(key), value)) is not None:
            rows.append((name, text))
    return tuple(rows)


def redact_toml(text: str) -> str:
    """A TOML text with the values of secret-looking keys replaced."""
    out = []
    for line in text.splitlines():
        key, sep, _ = line.partition("=")
        if sep and SECRET_KEY.search(key.strip().strip('"')):
            out.append(f'{key}= "(hidden)"')
        else:
            out.append(redact(line))
    return "\n".join(out)


def to_toml(table: Mapping[str, object], prefix: str) -> str:
    """A table written back as TOML for reading (secret-looking values hidden)."""
    lines: list[str] = []
    _toml_table(table, prefix, lines)
    return "\n".join(lines).strip()


def _toml_table(
    table: Mapping[str, object], name: str, lines: list[str], array: bool = False
) -> None:
    plain = [(k, v) for k, v in table.items() if not _is_table(v)]
    nested = [(k, v) for k, v in table.items() if _is_table(v)]
    if plain or not nested or array:
        lines.append("")
        lines.append(f"[[{name}]]" if array else f"[{name}]")
        for key, value in plain:
            text = '"(hidden)"' if SECRET_KEY.search(key) else _toml_value(value)
            lines.append(f"{_toml_key(key)} = {text}")
    for key, value in nested:
        child = f"{name}.{_toml_key(key)}"
        if isinstance(value, Mapping):
            _toml_table(value, child, lines)
        elif isinstance(value, list):
            for item in value:
                _toml_table(item, child, lines, array=True)


def _is_table(value: object) -> bool:
    return isinstance(value, Mapping) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)
    )


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(redact(value), ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    return json.dumps(str(value))
