"""Running a listener detached: the parent spawns and waits, the child reports readiness.

The parent re-runs kongctl without ``--detach`` in a new session, so that closing the terminal
(SIGHUP to the terminal's session) does not reach it, with stdin from /dev/null and
stdout/stderr going to ``<log dir>/kongctl-listener-<pid>.log``. It writes the process record,
then waits on a pipe for one JSON line from the child: ``{"status": "ready", ...}`` once the
listener serves, or ``{"status": "failed", "error": ...}``. The child finds the pipe's write
end through ``KONGCTL_DETACH_READY_FD``.

The child does not ignore SIGHUP: only a SIGHUP sent to its own pid or session reaches it, and
that is someone asking it to stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kongctl import __version__
from kongctl.errors import ExecutionError
from kongctl.processes.registry import (
    LISTEN_KIND,
    ProcessRecord,
    read_record,
    record_path,
    redact_args,
    remove_record,
    utc_now_rfc3339,
    write_record,
)
from kongctl.processes.runtime import StopOutcome, process_start_ticks, terminate

log = logging.getLogger(__name__)

READY_FD_ENV = "KONGCTL_DETACH_READY_FD"
DETACHED_ENV = "KONGCTL_DETACHED"
LOG_TAIL_LINES = 20
_BOOL_WORDS = frozenset({"1", "0", "true", "false", "t", "f", "yes", "no", "y", "n", "on", "off"})
# After a failed start the child is usually on its way out; give it this long to finish.
_EXIT_GRACE = 5.0
# A child that missed its readiness deadline gets this long to release Konnect and exit.
_STOP_GRACE = 15.0


@dataclass(frozen=True)
class DetachResult:
    """The detached child as the parent leaves it: running and ready."""

    pid: int
    log_file: Path
    record_file: Path
    info: dict[str, Any] = field(default_factory=dict)


def strip_detach_flags(args: Sequence[str]) -> list[str]:
    """``args`` without ``-d``, ``--detach [BOOL]`` and ``--detach=...`` (before a ``--``)."""
    kept: list[str] = []
    skip_bool = False
    for index, arg in enumerate(args):
        if skip_bool and arg.lower() in _BOOL_WORDS:
            skip_bool = False
            continue
        skip_bool = False
        if arg == "--":
            kept.extend(args[index:])
            break
        if arg in ("-d", "--detach") or arg.startswith("--detach="):
            skip_bool = arg == "--detach"  # `--detach true` gives the flag a separate value
            continue
        kept.append(arg)
    return kept


def strip_value_flags(args: Sequence[str], flags: Sequence[str]) -> list[str]:
    """``args`` without ``--flag value`` and ``--flag=value`` for each of ``flags``."""
    kept: list[str] = []
    skip_value = False
    for index, arg in enumerate(args):
        if skip_value:
            skip_value = False
            continue
        if arg == "--":
            kept.extend(args[index:])
            break
        if arg in flags:
            skip_value = True
            continue
        if any(arg.startswith(flag + "=") for flag in flags):
            continue
        kept.append(arg)
    return kept


def is_detached_child() -> bool:
    """Whether this process is a listener started by ``spawn_detached``."""
    # The session check keeps programs the listener might start from counting as detached.
    return os.environ.get(DETACHED_ENV) == "1" and os.getsid(0) == os.getpid()


def spawn_detached(
    argv: Sequence[str],
    *,
    config_dir: Path,
    profile: str,
    log_dir: Path,
    ready_timeout: float = 60.0,
    extras: Mapping[str, Any] | None = None,
    command: Sequence[str] | None = None,
    environment: Mapping[str, str] | None = None,
) -> DetachResult:
    """Start ``kongctl <argv>`` (minus ``--detach``) in the background; return once it is ready.

    ``argv`` is the command line after the program name. ``extras`` go into the process
    record (``listen_address``, ``endpoint``, ...). ``command`` replaces the whole child
    command line; tests use it to run a stand-in listener. ``environment`` is added to the
    child's environment: the way to hand it secrets, which a command line would show to every
    user of the machine. On any failure this raises
    ``ExecutionError`` naming the log file, and the process record is kept for debugging.
    """
    child_command = (
        list(command)
        if command is not None
        else [sys.executable, "-m", "kongctl", *strip_detach_flags(argv)]
    )
    log_dir = Path(log_dir)
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    pid, log_file, ready_fd = _start_child(child_command, log_dir, environment or {})
    try:
        record_file = _write_child_record(
            config_dir, pid, profile, log_file, child_command, extras or {}
        )
        message = _await_message(ready_fd, pid, ready_timeout, log_file)
    finally:
        os.close(ready_fd)

    if message.get("status") != "ready":
        error = str(message.get("error") or "the listener reported an unknown status")
        raise ExecutionError(
            f"detached listener (pid {pid}) failed to start: {error}",
            hint=f"see the log file {log_file}; the process record {record_file} is kept"
            f" until `kongctl ps stop {pid}`",
        )
    info = {k: v for k, v in message.items() if k != "status"}
    _record_ready_info(config_dir, record_file, info)
    log.info("detached listener ready pid=%s log_file=%s", pid, log_file)
    return DetachResult(pid=pid, log_file=log_file, record_file=record_file, info=info)


def _start_child(
    command: list[str], log_dir: Path, environment: Mapping[str, str]
) -> tuple[int, Path, int]:
    """Spawn the child; returns its pid, its log file and the read end of the ready pipe."""
    # The log is named after the child's pid, known only once it runs: open a temporary name
    # and give the file its real name afterwards. The child keeps writing to the same file.
    log_fd, startup_log = tempfile.mkstemp(prefix="kongctl-listener-starting-", dir=log_dir)
    # Append mode: the listener's own log handler writes to the same file, and writes
    # at two independent offsets would overwrite each other.
    fcntl.fcntl(log_fd, fcntl.F_SETFL, fcntl.fcntl(log_fd, fcntl.F_GETFL) | os.O_APPEND)
    read_fd, write_fd = os.pipe()
    try:
        os.set_inheritable(write_fd, True)
        pid = _spawn(command, log_fd, write_fd, environment)
    except OSError as exc:
        os.close(read_fd)
        Path(startup_log).unlink(missing_ok=True)
        raise ExecutionError(f"cannot start the detached listener: {exc}") from None
    finally:
        os.close(write_fd)
        os.close(log_fd)

    log_file = log_dir / f"kongctl-listener-{pid}.log"
    try:
        # A link, not a rename: should the listener have created its log file already,
        # that file must not be replaced under its open handler.
        os.link(startup_log, log_file)
        os.unlink(startup_log)
    except OSError as exc:
        log.warning("log file rename failed path=%s error=%s", startup_log, exc)
        log_file = Path(startup_log)
    log.info("detached listener spawned pid=%s log_file=%s", pid, log_file)
    return pid, log_file, read_fd


def _spawn(command: list[str], log_fd: int, ready_fd: int, environment: Mapping[str, str]) -> int:
    env = {**os.environ, **environment}
    env[READY_FD_ENV] = str(ready_fd)
    env[DETACHED_ENV] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # so `kongctl ps logs -f` sees lines as they are written
    # posix_spawn rather than subprocess.Popen: the child is meant to outlive this process,
    # and a Popen object still holding a running child complains when collected.
    return os.posix_spawnp(
        command[0],
        command,
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log_fd, 1),
            (os.POSIX_SPAWN_DUP2, log_fd, 2),
        ],
        setsid=True,
        setsigmask=(),
        # A parent run with SIGINT or SIGTERM ignored must not make an unstoppable listener.
        setsigdef=(signal.SIGINT, signal.SIGTERM, signal.SIGPIPE),
    )


def _write_child_record(
    config_dir: Path,
    pid: int,
    profile: str,
    log_file: Path,
    command: list[str],
    extras: Mapping[str, Any],
) -> Path:
    known = {"listen_address", "endpoint", "kind"}
    record = ProcessRecord(
        pid=pid,
        kind=str(extras.get("kind", LISTEN_KIND)),
        profile=profile,
        created_at=utc_now_rfc3339(),
        log_file=str(log_file),
        args=redact_args(command),
        start_time_ticks=process_start_ticks(pid),
        listen_address=_optional_str(extras.get("listen_address")),
        endpoint=_optional_str(extras.get("endpoint")),
        kongctl_version=__version__,
        extra={k: v for k, v in extras.items() if k not in known},
    )
    try:
        return write_record(config_dir, record)
    except OSError as exc:
        # Without a record nobody could find and stop this listener later: stop it now.
        outcome = terminate(pid, timeout=_STOP_GRACE, expected_start_ticks=record.start_time_ticks)
        raise ExecutionError(
            f"cannot write the process record for pid {pid}: {exc}; "
            f"the listener was stopped ({outcome})",
            hint=f"see the log file {log_file}",
        ) from None


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _await_message(ready_fd: int, pid: int, timeout: float, log_file: Path) -> dict[str, Any]:
    """The child's readiness message, or a ``failed`` one describing why there was none."""
    try:
        line = _read_line(ready_fd, time.monotonic() + timeout)
    except TimeoutError:
        # Our own child keeps its pid until we reap it, so no start-time check is needed.
        outcome = terminate(pid, timeout=_STOP_GRACE, expected_start_ticks=None)
        what = (
            "it was stopped"
            if outcome in (StopOutcome.STOPPED, StopOutcome.GONE)
            else f"it was sent SIGTERM and may still be releasing Konnect ({outcome})"
        )
        return _failed(f"did not report ready within {timeout:g}s; {what}")
    except KeyboardInterrupt:
        # Whoever interrupts the start does not want the listener; it cleans up on its own.
        terminate(pid, timeout=0, expected_start_ticks=None)
        raise
    if line is None:
        return _failed(_death_notice(pid, log_file))
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        return _failed(f"unreadable readiness message: {line[:200]!r}")
    return message


def _failed(error: str) -> dict[str, Any]:
    return {"status": "failed", "error": error}


def _read_line(fd: int, deadline: float) -> str | None:
    """The first line written to ``fd``; None at end of file without one."""
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    return line or None


def _death_notice(pid: int, log_file: Path) -> str:
    """Why the child went away without a message: its exit status and last log lines."""
    deadline = time.monotonic() + _EXIT_GRACE
    status = None
    while status is None and time.monotonic() < deadline:
        status = _exit_status(pid)
        if status is None:
            time.sleep(0.02)
    if status is None:
        terminate(pid, timeout=_STOP_GRACE, expected_start_ticks=None)
        notice = "the listener closed its readiness pipe without a report, and was stopped"
    else:
        notice = f"the listener {status} before it was ready"
    tail = last_lines(log_file, LOG_TAIL_LINES)
    if tail:
        notice += "; last log lines:\n" + "\n".join("  " + line for line in tail)
    return notice


def _exit_status(pid: int) -> str | None:
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return "exited"  # not ours to reap (only when the caller reaped it already)
    if reaped != pid:
        return None
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a text file; empty when it cannot be read."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            position, data = end, b""
            while position > 0 and data.count(b"\n") <= count:
                step = min(8192, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-count:]


def _record_ready_info(config_dir: Path, record_file: Path, info: Mapping[str, Any]) -> None:
    # The child knows better than the parent what it bound (port 0 becomes a real port).
    updates = {
        key: str(info[key]) for key in ("listen_address", "endpoint") if info.get(key) is not None
    }
    if not updates:
        return
    try:
        record = read_record(record_file)
        for key, value in updates.items():
            setattr(record, key, value)
        write_record(config_dir, record)
    except (OSError, ValueError) as exc:
        log.warning("process record update failed path=%s error=%s", record_file, exc)


def report_ready(info: Mapping[str, Any]) -> None:
    """Child side: tell the waiting parent the listener serves; a no-op when not detached."""
    _report({**info, "status": "ready"})


def report_failed(message: str) -> None:
    """Child side: tell the waiting parent the start failed; a no-op when not detached."""
    _report({"status": "failed", "error": message})


def _report(message: Mapping[str, Any]) -> None:
    # Popped so that the report happens once and processes started later do not inherit it.
    raw = os.environ.pop(READY_FD_ENV, None)
    if raw is None:
        return
    try:
        fd = int(raw)
    except ValueError:
        log.warning("readiness fd unusable value=%r", raw)
        return
    payload = (json.dumps(message, default=str) + "\n").encode("utf-8")
    try:
        while payload:
            payload = payload[os.write(fd, payload) :]
    except OSError as exc:
        # The parent gave up or was interrupted; the listener itself carries on.
        log.warning("readiness report not delivered error=%s", exc)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    log.info("readiness reported status=%s", message.get("status"))


def remove_own_record(config_dir: Path) -> None:
    """Child side: delete this process's record after a clean stop."""
    pid = os.getpid()
    try:
        record = read_record(record_path(config_dir, pid))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        log.warning("own process record unreadable pid=%s error=%s", pid, exc)
        return
    if record.start_time_ticks not in (None, process_start_ticks(pid)):
        return  # an older process with the same pid left it; not ours to judge
    remove_record(config_dir, pid)
