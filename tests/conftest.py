"""Shared fixtures: every test gets its own config home, never the user's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point XDG_CONFIG_HOME at a fresh folder and drop KONGCTL_* from the environment."""
    home = tmp_path / "config-home"
    home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    for name in list(__import__("os").environ):
        if name.startswith("KONGCTL_"):
            monkeypatch.delenv(name)
    yield home / "kongctl"
