"""Inspecting and stopping processes by pid without being fooled by pid reuse.

A pid alone does not name a process for long: once it exits, the kernel may hand the number
to an unrelated program. Every check therefore compares the process start time with the one
recorded when kongctl started it. On Linux that is field 22 of ``/proc/<pid>/stat`` (clock
ticks since boot); elsewhere it is the start time ``ps -o lstart=`` prints, in epoch seconds.
"""

from __future__ import annotations

import enum
import errno
import os
import sys
import time
from pathlib import Path

from kongctl.processes.registry import ProcessRecord

# typing.TYPE_CHECKING without importing typing, which `kongctl ps` would pay for at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Literal

    Status = Literal["running", "exited", "stale", "unknown"]
    Presence = Literal["alive", "gone", "unknown"]

_PROC = Path("/proc")
_POLL_INTERVAL = 0.05


def _log() -> logging.Logger:
    # logging is imported when first needed: `kongctl ps` only inspects processes and logs nothing.
    import logging

    return logging.getLogger(__name__)


class StopOutcome(enum.StrEnum):
    """How a ``terminate`` ended."""

    STOPPED = "stopped"  # it exited after the SIGTERM
    GONE = "gone"  # it was no longer running, nothing was signalled
    MISMATCH = "mismatch"  # the pid belongs to another process now, nothing was signalled
    UNVERIFIABLE = "unverifiable"  # its start time cannot be read, nothing was signalled
    DENIED = "denied"  # not allowed to signal it
    TIMEOUT = "timeout"  # still running when the timeout ran out


class _Inspection:
    # A plain class: a dataclass or NamedTuple would add to `kongctl ps`'s start-up time.
    __slots__ = ("presence", "start_ticks")

    def __init__(self, presence: Presence, start_ticks: int | None = None) -> None:
        self.presence = presence
        self.start_ticks = start_ticks


def uses_procfs() -> bool:
    return sys.platform.startswith("linux") and _PROC.is_dir()


def process_start_ticks(pid: int) -> int | None:
    """The start time of a live ``pid`` in the record's unit; None when gone or unreadable."""
    return _inspect(pid).start_ticks


def status_of(record: ProcessRecord) -> Status:
    """running, exited (no such process), stale (pid reused) or unknown (cannot inspect)."""
    inspection = _inspect(record.pid)
    if inspection.presence == "gone":
        return "exited"
    if inspection.presence == "unknown":
        return "unknown"
    if record.start_time_ticks is None:
        return "running"  # a record without a start time cannot tell reuse apart
    if inspection.start_ticks is None:
        return "unknown"
    return "running" if inspection.start_ticks == record.start_time_ticks else "stale"


def terminate(pid: int, *, timeout: float, expected_start_ticks: int | None) -> StopOutcome:
    """Send SIGTERM to ``pid`` and wait up to ``timeout`` seconds for it to exit.

    With ``expected_start_ticks`` the signal goes out only if the process still has that start
    time. A zombie counts as gone; if it is our own child it is also reaped.
    """
    if pid <= 0:
        raise ValueError(f"not a process id: {pid}")
    pidfd = _open_pidfd(pid)
    try:
        inspection = _inspect(pid)
        if inspection.presence == "gone":
            return StopOutcome.GONE
        if expected_start_ticks is not None:
            if inspection.start_ticks is None:
                return StopOutcome.UNVERIFIABLE
            if inspection.start_ticks != expected_start_ticks:
                return StopOutcome.MISMATCH
        try:
            _send_sigterm(pid, pidfd)
        except ProcessLookupError:
            return StopOutcome.GONE
        except PermissionError:
            return StopOutcome.DENIED
        _log().info("sigterm sent pid=%s", pid)
        if _wait_until_gone(pid, pidfd, inspection.start_ticks, time.monotonic() + timeout):
            _log().info("process exited pid=%s", pid)
            return StopOutcome.STOPPED
        _log().warning("process still running after sigterm pid=%s timeout=%s", pid, timeout)
        return StopOutcome.TIMEOUT
    finally:
        if pidfd is not None:
            os.close(pidfd)


def reap_if_child(pid: int) -> bool:
    """Collect the exit status of ``pid`` if it is our exited child; True when reaped."""
    try:
        reaped, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return reaped == pid


def _open_pidfd(pid: int) -> int | None:
    # A pidfd keeps naming the process we checked even if the pid is reused right after the
    # check, so the SIGTERM cannot hit a stranger. Where there is none, the window is tiny.
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _send_sigterm(pid: int, pidfd: int | None) -> None:
    import signal  # here, like select: `kongctl ps` only inspects processes

    if pidfd is not None and hasattr(signal, "pidfd_send_signal"):
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
    else:
        os.kill(pid, signal.SIGTERM)


def _wait_until_gone(pid: int, pidfd: int | None, start_ticks: int | None, deadline: float) -> bool:
    import select

    poller = None
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
    while True:
        if reap_if_child(pid):
            return True
        inspection = _inspect(pid)
        if inspection.presence == "gone":
            reap_if_child(pid)  # it may have turned zombie since the first look
            return True
        if start_ticks is not None and inspection.start_ticks not in (None, start_ticks):
            return True  # it exited and the pid already belongs to someone else
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if poller is not None:
            # The pidfd turns readable the moment the process exits; the cap keeps the loop
            # checking in case that notice is missed.
            poller.poll(int(min(remaining, 0.5) * 1000) + 1)
        else:
            time.sleep(min(remaining, _POLL_INTERVAL))


def _inspect(pid: int) -> _Inspection:
    if pid <= 0:
        return _Inspection("gone")
    if uses_procfs():
        return _inspect_procfs(pid)
    return _inspect_ps(pid)


def _inspect_procfs(pid: int) -> _Inspection:
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return _Inspection("gone")
    except OSError:
        return _Inspection(_signal_probe(pid))
    # The command name (field 2) may itself contain spaces and parentheses: split after the
    # last closing parenthesis, where field 3 (state) begins.
    try:
        fields = raw[raw.rindex(b")") + 2 :].split()
        state = fields[0].decode("ascii", "replace")
        start_ticks = int(fields[19])
    except (ValueError, IndexError):
        return _Inspection(_signal_probe(pid))
    if state in ("Z", "X", "x"):
        return _Inspection("gone")
    return _Inspection("alive", start_ticks)


def _inspect_ps(pid: int) -> _Inspection:
    import subprocess  # only where there is no /proc; keeps `kongctl ps` quick to start

    try:
        result = subprocess.run(
            ["ps", "-o", "stat=,lstart=", "-p", str(pid)],
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return _Inspection(_signal_probe(pid))
    line = result.stdout.strip()
    if result.returncode != 0 or not line:
        presence = _signal_probe(pid)
        return _Inspection("unknown" if presence == "alive" else presence)
    state, _, lstart = line.partition(" ")
    if state.startswith("Z"):
        return _Inspection("gone")
    try:
        started = time.mktime(time.strptime(" ".join(lstart.split()), "%a %b %d %H:%M:%S %Y"))
    except (ValueError, OverflowError):
        return _Inspection("alive")
    return _Inspection("alive", int(started))


def _signal_probe(pid: int) -> Presence:
    """Existence by signal 0, used when the start time cannot be read."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "alive"
    except OSError as exc:
        return "gone" if exc.errno == errno.ESRCH else "unknown"
    return "alive"
