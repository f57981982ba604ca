"""Shared fixtures: every test gets its own config home, never the user's.

Soak variants (``@pytest.mark.soak``) run only with ``--soak`` or ``KONGCTL_SOAK_TESTS=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SOAK_ENVIRONMENT = "KONGCTL_SOAK_TESTS"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False, help="also run soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak") or os.environ.get(SOAK_ENVIRONMENT) == "1":
        return
    skip = pytest.mark.skip(reason=f"soak test: run with --soak or {SOAK_ENVIRONMENT}=1")
    for item in items:
        if item.get_closest_marker("soak"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point XDG_CONFIG_HOME at a fresh folder and drop KONGCTL_* from the environment."""
    home = tmp_path / "config-home"
    home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    for name in list(os.environ):
        if name.startswith("KONGCTL_"):
            monkeypatch.delenv(name)
    yield home / "kongctl"
