"""Configuration errors, reported all at once with file, key path and reason."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One problem in a configuration file: where it is and why it is wrong."""

    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key or '<root>'}: {self.reason}"


class ConfigInvalid(Exception):
    """A configuration that must be refused; carries every error found, not just the first."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def dotted(loc: Iterable[object], prefix: str = "") -> str:
    """Render a pydantic/TOML location as a dotted key path (`systems.jira.fields.status`)."""
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(str(item))
    return ".".join(parts).replace(".[", "[")


def from_pydantic(exc: ValidationError, file: str, prefix: str = "") -> list[ConfigError]:
    """Turn a pydantic ValidationError into ConfigErrors; a typo'd key is named as such."""
    errors: list[ConfigError] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err.get("loc", ()))
        # Discriminated unions and function validators add type tags to the location.
        loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
        reason = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            reason = f"unknown key {loc[-1]!r} (misspelt?)" if loc else "unknown key"
        elif err.get("type") == "missing":
            reason = "required key is missing"
        errors.append(ConfigError(file=file, key=dotted(loc, prefix), reason=reason))
    return errors
