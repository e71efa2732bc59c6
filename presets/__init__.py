"""Escalation policy presets: one TOML policy per written procedure the product ships with.

Each file is a standalone policy (an `[escalation]` table) that can be named by `policy_file`
in the configuration or pasted into its `[escalation]` section.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from escalation.policy import Policy

PRESETS_DIR = Path(__file__).resolve().parent


def presets_dir() -> Path:
    """The folder holding the preset policy files."""
    return PRESETS_DIR


def preset_names() -> list[str]:
    """The presets shipped, by name (the file name without `.toml`)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    """The file of the preset called `name` (FileNotFoundError when there is none)."""
    path = PRESETS_DIR / f"{name.removesuffix('.toml')}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"no preset named {name!r}; presets: {', '.join(preset_names())}")
    return path


def load_preset(name: str) -> Policy:
    """Read and validate a preset (ConfigInvalid if it does not validate)."""
    from escalation.policy import load_policy

    path = preset_path(name)
    with path.open("rb") as fh:
        return load_policy(tomllib.load(fh), source=str(path))
