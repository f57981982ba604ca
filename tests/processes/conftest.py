"""Stand-in listeners: small real processes that speak the detach handshake."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kongctl.processes.detach import DetachResult, spawn_detached

# Modes: "ready" reports ready and serves until SIGTERM; "fail" reports a failure;
# "die" exits without a word; "silent" never reports; "ignore-term" survives SIGTERM.
STAND_IN = r"""
import os, signal, sys, time
from pathlib import Path
from kongctl.processes.detach import (
    is_detached_child, remove_own_record, report_failed, report_ready,
)

mode, config_dir = sys.argv[1], Path(sys.argv[2])
stop_delay = float(os.environ.get("STAND_IN_STOP_DELAY", "0"))
print(f"stand-in starting detached={is_detached_child()}", flush=True)
print("stand-in stderr line", file=sys.stderr, flush=True)
for number in range(int(os.environ.get("STAND_IN_LOG_LINES", "0"))):
    print(f"log line {number}", flush=True)

def on_term(signum, frame):
    time.sleep(stop_delay)  # stands for releasing the Konnect destination and webhook
    print("stand-in stopped", flush=True)
    remove_own_record(config_dir)
    os._exit(0)

if mode == "fail":
    report_failed("listen address 127.0.0.1:9 is already in use")
    sys.exit(1)
if mode == "die":
    print("boom: cannot go on", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, on_term)
if mode != "silent":
    report_ready({"listen_address": "127.0.0.1:19090", "endpoint": "https://example.test/a"})
while True:
    time.sleep(0.05)
"""


def stand_in_command(mode: str, config_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", STAND_IN, mode, str(config_dir), *extra]


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def wait_for_exec(pid: int) -> None:
    """Wait until a new process shows its own command line (empty while it execs)."""
    wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes())


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"Z", b"X")


def kill_and_reap(pid: int) -> None:
    """Stop a child of this test process for good; safe if it was reaped already."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return  # reaped already: the pid may belong to someone else now
    if reaped == 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


@pytest.fixture
def config_dir(config_home: Path) -> Path:
    return config_home


@pytest.fixture
def children() -> Iterator[list[int]]:
    """Pids this test started; every one is killed and reaped at the end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        kill_and_reap(pid)


@pytest.fixture
def detach_stand_in(
    config_dir: Path, tmp_path: Path, children: list[int], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., DetachResult]:
    """Start a stand-in listener through ``spawn_detached``."""

    def start(
        mode: str = "ready",
        *extra: str,
        ready_timeout: float = 10.0,
        stop_delay: float = 0.0,
        log_lines: int = 0,
    ) -> DetachResult:
        monkeypatch.setenv("STAND_IN_STOP_DELAY", str(stop_delay))
        monkeypatch.setenv("STAND_IN_LOG_LINES", str(log_lines))
        before = set(_children_of_this_process())
        try:
            result = spawn_detached(
                ["listen", "--detach", *extra],
                config_dir=config_dir,
                profile="default",
                log_dir=config_dir / "logs",
                ready_timeout=ready_timeout,
                extras={"endpoint": "https://example.test/a"},
                command=stand_in_command(mode, config_dir, *extra),
            )
        finally:
            children.extend(set(_children_of_this_process()) - before)
        return result

    return start


def _children_of_this_process() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()
            if fields[1].decode() == me:
                found.append(int(entry.name))
    return found


@pytest.fixture
def popen_children() -> Iterator[list[subprocess.Popen[Any]]]:
    """Plain subprocesses; killed and waited for at the end."""
    started: list[subprocess.Popen[Any]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
