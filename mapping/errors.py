"""Configuration errors, reported all at once with file, key path and reason."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from errors import Refuse

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One problem in a configuration file: where it is and why it is wrong."""

    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key or '<root>'}: {self.reason}"


class ConfigInvalid(Refuse):
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


def _drop(data: Any, loc: tuple[object, ...]) -> bool:
    """Remove the key at `loc` from nested dicts/lists; False when the path does not lead there."""
    node = data
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(node, dict) and loc and loc[-1] in node:
        del node[loc[-1]]
        return True
    return False


def validate_reporting_all(
    build: Callable[[dict[str, Any]], T], data: Mapping[str, Any], file: str, prefix: str = ""
) -> tuple[T | None, list[ConfigError]]:
    """Validate `data` with `build`; unknown keys are reported, then set aside, and the rest is
    validated again, so one misspelt key does not hide every other error in the file.

    Returns the built object (None if anything but unknown keys is wrong) and the errors.
    """
    try:
        return build(dict(data)), []
    except ValidationError as exc:
        first = exc
    unknown = [
        tuple(e.get("loc", ()))
        for e in first.errors(include_url=False, include_input=False)
        if e.get("type") == "extra_forbidden"
    ]
    errors = from_pydantic(first, file, prefix)
    trimmed = copy.deepcopy(dict(data))
    if not unknown or not all(_drop(trimmed, loc) for loc in unknown):
        return None, errors
    reported = [e for e in errors if e.reason.startswith("unknown key")]
    try:
        return build(trimmed), reported
    except ValidationError as exc:
        return None, reported + from_pydantic(exc, file, prefix)
