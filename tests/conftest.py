"""Shared fixtures: paths to the vendor reference material and the example configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VENDOR = SHARED / "vendor"
EXAMPLE_CONFIG = ROOT / "config.example.toml"


@pytest.fixture(scope="session")
def vendor_dir() -> Path:
    """The vendor reference folder beside the repository; tests that need it skip without it."""
    if not VENDOR.is_dir():
        pytest.skip(f"vendor reference material not found at {VENDOR}")
    return VENDOR


@pytest.fixture(scope="session")
def example_config() -> Path:
    """The shipped example configuration."""
    return EXAMPLE_CONFIG
