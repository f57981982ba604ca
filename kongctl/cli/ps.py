"""``kongctl ps``: list, stop and read the logs of detached listeners."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import click

from kongctl.cli.listing import EMPTY_LISTING, collect_listing, print_listing, warn_unreadable
from kongctl.cli.render import emit, table
from kongctl.cli.root import cli_context, global_options
from kongctl.errors import ExecutionError, UsageError
from kongctl.processes.registry import (
    ProcessRecord,
    load_records,
    locked_record,
    read_record,
    record_path,
    remove_record,
)
from kongctl.processes.runtime import StopOutcome, status_of, terminate
from kongctl.processes.scan import UnmanagedListener, find_unmanaged_listeners

DEFAULT_STOP_TIMEOUT = 90.0
# A second `ps stop` of the same pid waits for the first one this much longer than its timeout.
_LOCK_MARGIN = 5.0
_FOLLOW_INTERVAL = 0.2


@click.group(
    name="ps",
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@global_options
@click.pass_context
def ps(ctx: click.Context) -> None:
    """List detached kongctl processes, and listeners running without a record.

    A listener found running without a process record is shown as "unmanaged".
    """
    if ctx.invoked_subcommand is None:
        cli = cli_context()
        output = cli.output  # a bad format is reported before anything is listed
        print_listing(collect_listing(cli.config_dir), output)


@ps.command("stop")
@global_options
@click.argument("pids", nargs=-1, type=click.IntRange(min=1))
@click.option("--all", "stop_all", is_flag=True, help="Stop every tracked detached process.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_STOP_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for each process to exit after SIGTERM.",
)
@click.pass_context
def stop(ctx: click.Context, pids: tuple[int, ...], stop_all: bool, timeout: float) -> None:
    """Stop detached listeners by pid, or all of them with --all.

    A running listener gets SIGTERM, releases its Konnect destination and webhook, and its
    record is removed. Records of processes that are gone are pruned.
    """
    if stop_all and pids:
        raise UsageError("give process ids or --all, not both")
    if not stop_all and not pids:
        raise UsageError("give at least one process id, or --all")
    cli = cli_context()
    records, bad = load_records(cli.config_dir)
    warn_unreadable(bad)

    recorded = {record.pid for _, record in records}
    targets = sorted(recorded) if stop_all else list(dict.fromkeys(pids))
    unmanaged: dict[int, UnmanagedListener] = {}
    if any(pid not in recorded for pid in targets):
        unmanaged = {found.pid: found for found in find_unmanaged_listeners(recorded)}
    results = _stop_all(cli.config_dir, targets, recorded, unmanaged, timeout)

    if not results and cli.output == "text":
        click.echo(EMPTY_LISTING)
    else:
        emit(cli.output, results, lambda: _stop_text(results))
    failures = [result for result in results if not result["success"]]
    for result in failures:
        click.echo(f"Error: {result['error']}", err=True)
    if failures:
        ctx.exit(1)


def _stop_all(
    config_dir: Path,
    targets: Sequence[int],
    recorded: set[int],
    unmanaged: dict[int, UnmanagedListener],
    timeout: float,
) -> list[dict[str, Any]]:
    def stop_one(pid: int) -> dict[str, Any]:
        if pid in recorded:
            return _stop_recorded(config_dir, pid, timeout)
        if pid in unmanaged:
            return _stop_unmanaged(unmanaged[pid], timeout)
        return _result(pid, "failed", f"no kongctl listener with pid {pid}")

    if len(targets) <= 1:
        return [stop_one(pid) for pid in targets]
    # Each listener may take a while to release Konnect; stopping them side by side keeps
    # `--all` as quick as the slowest one.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        return list(pool.map(stop_one, targets))


def _result(pid: int, action: str, error: str | None = None) -> dict[str, Any]:
    return {"pid": pid, "action": action, "success": error is None, "error": error}


def _stop_recorded(config_dir: Path, pid: int, timeout: float) -> dict[str, Any]:
    path = record_path(config_dir, pid)
    try:
        with locked_record(config_dir, pid, timeout=timeout + _LOCK_MARGIN) as record:
            if record is None:
                return _result(pid, "gone")  # stopped meanwhile by someone else
            return _stop_locked(config_dir, record, timeout)
    except TimeoutError:
        return _result(pid, "failed", f"another kongctl is still stopping pid {pid}")
    except (OSError, ValueError) as exc:
        return _result(pid, "failed", f"cannot read process record {path}: {exc}")


def _stop_locked(config_dir: Path, record: ProcessRecord, timeout: float) -> dict[str, Any]:
    pid = record.pid
    status = status_of(record)
    if status in ("exited", "stale"):
        remove_record(config_dir, pid)
        return _result(pid, "pruned")
    if status == "unknown":
        return _result(pid, "failed", f"cannot inspect pid {pid}; its record is kept")
    outcome = terminate(pid, timeout=timeout, expected_start_ticks=record.start_time_ticks)
    if outcome is StopOutcome.STOPPED:
        remove_record(config_dir, pid)
        return _result(pid, "stopped")
    if outcome in (StopOutcome.GONE, StopOutcome.MISMATCH):
        remove_record(config_dir, pid)
        return _result(pid, "pruned")
    return _failed_stop(pid, outcome, timeout)


def _stop_unmanaged(listener: UnmanagedListener, timeout: float) -> dict[str, Any]:
    outcome = terminate(
        listener.pid, timeout=timeout, expected_start_ticks=listener.start_time_ticks
    )
    if outcome is StopOutcome.STOPPED:
        return _result(listener.pid, "stopped")
    if outcome in (StopOutcome.GONE, StopOutcome.MISMATCH):
        return _result(listener.pid, "gone")
    return _failed_stop(listener.pid, outcome, timeout)


def _failed_stop(pid: int, outcome: StopOutcome, timeout: float) -> dict[str, Any]:
    if outcome is StopOutcome.TIMEOUT:
        return _result(pid, "timeout", f"pid {pid} is still running {timeout:g}s after SIGTERM")
    if outcome is StopOutcome.DENIED:
        return _result(pid, "failed", f"not allowed to signal pid {pid}")
    return _result(pid, "failed", f"cannot read the start time of pid {pid}; not signalled")


def _stop_text(results: Sequence[dict[str, Any]]) -> str:
    rows = [(r["pid"], r["action"], "true" if r["success"] else "false") for r in results]
    return table(("PID", "ACTION", "SUCCESS"), rows)


@ps.command("logs")
@global_options
@click.argument("pid", type=click.IntRange(min=1))
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until it exits.")
@click.option(
    "--lines",
    "-n",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="How many of the last lines to print.",
)
@click.pass_context
def logs(ctx: click.Context, pid: int, follow: bool, lines: int) -> None:
    """Print the log of a detached listener."""
    cli = cli_context()
    log_file, record = _log_source(cli.config_dir, pid)
    sys.stdout.flush()
    out = sys.stdout.buffer
    try:
        handle = open(log_file, "rb")  # noqa: SIM115 - closed below, after following
    except OSError as exc:
        raise ExecutionError(f"cannot read log file {log_file}: {exc.strerror}") from None
    with handle:
        handle.seek(_tail_start(handle, lines))
        _copy_available(handle, out)
        if follow and record is not None:
            try:
                _follow(handle, out, record)
            except KeyboardInterrupt:
                ctx.exit(130)


def _log_source(config_dir: Path, pid: int) -> tuple[Path, ProcessRecord | None]:
    """The log file of ``pid``, and its record while the listener is still recorded."""
    path = record_path(config_dir, pid)
    try:
        record = read_record(path)
    except FileNotFoundError:
        # A cleanly stopped listener takes its record with it but leaves its log behind.
        leftover = config_dir / "logs" / f"kongctl-listener-{pid}.log"
        if leftover.is_file():
            return leftover, None
        raise ExecutionError(
            f"no process record for pid {pid}", hint="`kongctl ps` lists detached processes"
        ) from None
    except (OSError, ValueError) as exc:
        raise ExecutionError(f"cannot read process record {path}: {exc}") from None
    if not record.log_file:
        raise ExecutionError(f"the process record of pid {pid} names no log file")
    return Path(record.log_file), record


def _tail_start(handle: BinaryIO, count: int) -> int:
    """The offset where the last ``count`` lines of the file begin."""
    end = handle.seek(0, os.SEEK_END)
    if count == 0:
        return end
    # A final line without a newline still counts as a line.
    handle.seek(max(0, end - 1))
    position = end - 1 if handle.read(1) == b"\n" else end
    newlines = 0
    while position > 0:
        step = min(8192, position)
        handle.seek(position - step)
        block = handle.read(step)
        for index in range(len(block) - 1, -1, -1):
            if block[index] == 0x0A:
                newlines += 1
                if newlines == count:
                    return position - step + index + 1
        position -= step
    return 0


def _copy_available(handle: BinaryIO, out: BinaryIO) -> bool:
    """Copy what is in the file now; True when there was anything."""
    copied = False
    while chunk := handle.read(65536):
        out.write(chunk)
        copied = True
    out.flush()
    return copied


def _follow(handle: BinaryIO, out: BinaryIO, record: ProcessRecord) -> None:
    while True:
        if _copy_available(handle, out):
            continue
        if status_of(record) in ("exited", "stale"):
            _copy_available(handle, out)  # the last words written before it exited
            return
        time.sleep(_FOLLOW_INTERVAL)
