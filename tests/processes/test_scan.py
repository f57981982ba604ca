"""Finding kongctl listeners that run without a process record."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kongctl.config import config_dir
from kongctl.processes.registry import REDACTED
from kongctl.processes.runtime import process_start_ticks
from kongctl.processes.scan import find_unmanaged_listeners, listener_verb, option_value
from tests.processes.conftest import wait_for


@pytest.mark.parametrize(
    ("argv", "verb"),
    [
        (["/usr/local/bin/kongctl", "listen", "--endpoint", "https://e/x"], "listen"),
        (["/venv/bin/python3", "/venv/bin/kongctl", "tail", "audit-logs"], "tail"),
        (["python3.11", "-u", "-m", "kongctl", "--profile", "p", "listen"], "listen"),
        (["python", "-mkongctl", "tail"], "tail"),
        (["python", "-X", "dev", "/opt/kongctl", "listen"], "listen"),
    ],
)
def test_foreground_listener_command_lines_are_recognised(argv: list[str], verb: str) -> None:
    assert listener_verb(argv) == verb


@pytest.mark.parametrize(
    "argv",
    [
        ["kongctl", "ps", "stop", "--all"],
        ["kongctl", "listen", "--detach"],
        ["python", "-m", "kongctl", "listen", "-d"],
        ["timeout", "10", "kongctl", "listen"],
        ["python", "-c", "kongctl listen"],
        ["python", "-m", "pytest", "tests/listen", "-k", "listen"],
        ["bash", "-c", "kongctl listen"],
        [],
    ],
)
def test_other_command_lines_are_not_listeners(argv: list[str]) -> None:
    assert listener_verb(argv) is None


def test_option_values_are_read_in_both_forms() -> None:
    args = ["listen", "--endpoint", "https://e/x", "--listen-address=127.0.0.1:1"]

    assert option_value(args, "--endpoint") == "https://e/x"
    assert option_value(args, "--listen-address") == "127.0.0.1:1"
    assert option_value(args, "--profile") is None


def test_running_listener_without_record_is_found_with_secrets_redacted(
    tmp_path: Path, popen_children: list[subprocess.Popen[Any]]
) -> None:
    script = tmp_path / "kongctl"
    script.write_text("import time\ntime.sleep(30)\n")
    process = subprocess.Popen(
        [sys.executable, str(script), "listen", "--authorization", "Bearer s3cret"]
    )
    popen_children.append(process)

    found = wait_for(lambda: [f for f in find_unmanaged_listeners(set()) if f.pid == process.pid])

    (listener,) = found
    assert listener.verb == "listen"
    assert listener.args == [sys.executable, str(script), "listen", "--authorization", REDACTED]
    assert listener.start_time_ticks == process_start_ticks(process.pid)
    assert listener.started_at is not None


def test_known_pids_are_not_reported_as_unmanaged(
    tmp_path: Path, popen_children: list[subprocess.Popen[Any]]
) -> None:
    script = tmp_path / "kongctl"
    script.write_text("import time\ntime.sleep(30)\n")
    process = subprocess.Popen([sys.executable, str(script), "tail"])
    popen_children.append(process)
    wait_for(lambda: any(f.pid == process.pid for f in find_unmanaged_listeners(set())))

    assert all(f.pid != process.pid for f in find_unmanaged_listeners({process.pid}))


def test_listeners_of_another_config_dir_are_not_listed_as_ours(
    tmp_path: Path, popen_children: list[subprocess.Popen[Any]]
) -> None:
    script = tmp_path / "kongctl"
    script.write_text("import time\ntime.sleep(30)\n")
    ours = config_dir()
    other_home = tmp_path / "other-home"
    env = {**os.environ, "XDG_CONFIG_HOME": str(other_home)}
    theirs = subprocess.Popen([sys.executable, str(script), "listen"], env=env)
    mine = subprocess.Popen([sys.executable, str(script), "listen"])
    popen_children.extend([theirs, mine])

    wait_for(lambda: any(f.pid == mine.pid for f in find_unmanaged_listeners(set(), ours)))

    assert all(f.pid != theirs.pid for f in find_unmanaged_listeners(set(), ours))
    other = other_home / "kongctl"
    assert any(f.pid == theirs.pid for f in find_unmanaged_listeners(set(), other))
