"""Inspecting and stopping processes by pid, guarded by their start time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kongctl.processes import runtime
from kongctl.processes.registry import ProcessRecord
from kongctl.processes.runtime import StopOutcome, process_start_ticks, status_of, terminate
from tests.processes.conftest import kill_and_reap, pid_alive

SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]
IGNORES_TERM = [
    sys.executable,
    "-c",
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('ready', flush=True); time.sleep(30)",
]


def start(command: list[str], popen_children: list[subprocess.Popen[Any]]) -> int:
    process = subprocess.Popen(command)
    popen_children.append(process)
    return process.pid


def record_for(pid: int, ticks: int | None) -> ProcessRecord:
    return ProcessRecord(pid=pid, start_time_ticks=ticks)


def test_start_ticks_match_field_22_of_proc_stat() -> None:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()

    assert process_start_ticks(os.getpid()) == int(fields[19])


def test_recorded_live_process_is_running(popen_children: list[subprocess.Popen[Any]]) -> None:
    pid = start(SLEEPER, popen_children)

    assert status_of(record_for(pid, process_start_ticks(pid))) == "running"


def test_process_that_is_gone_has_exited() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()

    assert status_of(record_for(process.pid, 1)) == "exited"


def test_unreaped_zombie_has_exited() -> None:
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], os.environ)
    ticks = process_start_ticks(pid)
    try:
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)

        assert status_of(record_for(pid, ticks)) == "exited"
    finally:
        os.waitpid(pid, 0)


def test_live_pid_with_another_start_time_is_stale(
    popen_children: list[subprocess.Popen[Any]],
) -> None:
    pid = start(SLEEPER, popen_children)
    ticks = process_start_ticks(pid)
    assert ticks is not None

    assert status_of(record_for(pid, ticks + 1)) == "stale"


def test_live_pid_whose_start_time_cannot_be_read_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stat that is a directory reads as an error other than "no such process".
    (tmp_path / str(os.getpid()) / "stat").mkdir(parents=True)
    monkeypatch.setattr(runtime, "_PROC", tmp_path)

    assert status_of(record_for(os.getpid(), 1)) == "unknown"


def test_record_without_start_time_is_running_while_the_pid_lives() -> None:
    assert status_of(record_for(os.getpid(), None)) == "running"


def test_terminate_stops_and_reaps_our_child() -> None:
    pid = os.posix_spawn(SLEEPER[0], SLEEPER, os.environ)
    ticks = process_start_ticks(pid)
    try:
        assert terminate(pid, timeout=5, expected_start_ticks=ticks) is StopOutcome.STOPPED
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    finally:
        kill_and_reap(pid)


def test_terminate_never_signals_a_pid_with_another_start_time(
    popen_children: list[subprocess.Popen[Any]],
) -> None:
    pid = start(SLEEPER, popen_children)
    ticks = process_start_ticks(pid)
    assert ticks is not None

    assert terminate(pid, timeout=1, expected_start_ticks=ticks + 1) is StopOutcome.MISMATCH
    assert popen_children[0].poll() is None


def test_terminate_gives_up_on_a_process_that_ignores_sigterm(
    popen_children: list[subprocess.Popen[Any]],
) -> None:
    process = subprocess.Popen(IGNORES_TERM, stdout=subprocess.PIPE, text=True)
    popen_children.append(process)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"

    outcome = terminate(process.pid, timeout=0.3, expected_start_ticks=None)

    assert outcome is StopOutcome.TIMEOUT
    assert process.poll() is None


def test_terminate_of_a_process_that_is_gone_signals_nothing() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()

    assert terminate(process.pid, timeout=1, expected_start_ticks=None) is StopOutcome.GONE


def test_terminate_refuses_pid_zero() -> None:
    with pytest.raises(ValueError):
        terminate(0, timeout=1, expected_start_ticks=None)
