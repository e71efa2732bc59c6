"""Shared fixtures: paths to the vendor reference material and the example configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
# Vendor material copied into the repository (see tests/fixtures/README.md for sources and
# licences): the suite needs nothing outside the clone.
VENDOR = FIXTURES / "vendor"
PROCEDURES = FIXTURES / "procedures"
EXAMPLE_CONFIG = ROOT / "config.example.toml"


@pytest.fixture(scope="session")
def vendor_dir() -> Path:
    """The vendor reference material under tests/fixtures/vendor."""
    return VENDOR


@pytest.fixture(scope="session")
def example_config() -> Path:
    """The shipped example configuration."""
    return EXAMPLE_CONFIG
