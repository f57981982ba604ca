"""``kongctl replay audit-logs``: ask Konnect to send a past time range to the webhook again."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

import click

from kongctl.cli.get import (
    HELP_OPTIONS,
    AliasGroup,
    add_resource,
    call_konnect,
    fields_text,
    konnect_options,
)
from kongctl.cli.render import emit
from kongctl.cli.root import cli_context, global_options
from kongctl.cli.timespec import (
    format_duration,
    format_time,
    is_relative,
    parse_duration,
    parse_time,
)
from kongctl.errors import ExecutionError, KonnectAPIError, UsageError

if TYPE_CHECKING:
    from kongctl.konnect.auditlogs import AuditLogsAPI

log = logging.getLogger(__name__)

# Konnect replays audit logs of the last 7 days only.
MAX_AGE = timedelta(days=7)
# An end a little ahead of this clock is a skewed "now", not a mistake.
CLOCK_SKEW = timedelta(seconds=60)
# Konnect checks the 7 days when the call arrives, a moment after the window was computed
# here; a start right at the limit (`--since 7d`) moves this much later so it still passes.
START_MARGIN = timedelta(seconds=60)
DEFAULT_TIMEOUT = "10m"
DEFAULT_POLL_INTERVAL = 1.0
CONFLICT = 409
FINISHED = ("completed", "failed")
JOB_HINT = "`kongctl get audit-logs replay-job` shows the replay job"


@dataclass(frozen=True)
class ReplayWindow:
    start: datetime
    end: datetime

    @property
    def start_at(self) -> str:
        return format_time(self.start)

    @property
    def end_at(self) -> str:
        return format_time(self.end)


def replay_window(
    *, start_at: str | None, end_at: str | None, since: str | None, now: datetime
) -> ReplayWindow:
    """The window to replay, checked against Konnect's rules before anything is sent."""
    if since is not None and start_at is not None:
        raise UsageError("give --since or --start-at, not both")
    if since is None and start_at is None:
        raise UsageError(
            "say where the replay starts: --since DURATION or --start-at TIME",
            hint="for example --since 2h, or --start-at 2026-12-01T10:00:00Z --end-at 6h",
        )
    start_flag, start_text = ("--since", since) if since is not None else ("--start-at", start_at)
    assert start_text is not None
    start = parse_time(start_text, flag=start_flag, now=now)
    end = parse_time(end_at, flag="--end-at", now=now) if end_at is not None else now
    start_label = _label(start_flag, start_text, start)
    end_label = _label("--end-at", end_at, end) if end_at is not None else "now"

    if start > now + CLOCK_SKEW:
        raise UsageError(f"{start_label} is in the future")
    if end > now + CLOCK_SKEW:
        raise UsageError(f"{end_label} is in the future")
    end = min(end, now)
    if start >= end:
        raise UsageError(
            f"the replay must start before it ends: {start_label} is not before {end_label}"
        )
    oldest = now - MAX_AGE
    if start < oldest:
        raise UsageError(
            f"{start_label} is more than 7 days ago: "
            "Konnect replays the audit logs of the last 7 days only"
        )
    start = max(start, oldest + START_MARGIN)
    if start >= end:
        raise UsageError(f"{end_label} is within a minute of the 7-day limit")
    return ReplayWindow(start, end)


async def start_replay(api: AuditLogsAPI, window: ReplayWindow) -> dict[str, Any]:
    """Submit the replay job; a job still running is reported with its range and status."""
    try:
        job = await api.put_replay_job(window.start_at, window.end_at)
    except KonnectAPIError as exc:
        if exc.status != CONFLICT:
            raise
        running = await api.get_replay_job()
        if _same_window(running, window):
            # Our own PUT, retried after its answer was lost: the job is ours and running.
            log.info("replay job already accepted start_at=%s", window.start_at)
            return running
        raise ExecutionError(
            "a replay job is already running ("
            f"status {running.get('status')} since {running.get('updated_at')}, "
            f"replaying {running.get('start_at')} to {running.get('end_at')})",
            hint=f"wait for it to finish; {JOB_HINT}",
        ) from None
    log.info("replay job accepted start_at=%s end_at=%s", window.start_at, window.end_at)
    return job


def _same_window(job: dict[str, Any], window: ReplayWindow) -> bool:
    # Konnect keeps the times at a coarser precision than we send them.
    try:
        running = [parse_time(str(job.get(k)), flag=k) for k in ("start_at", "end_at")]
    except UsageError:
        return False
    requested = [window.start, window.end]
    return all(abs(a - b) < timedelta(seconds=1) for a, b in zip(running, requested, strict=True))


async def wait_for_job(
    api: AuditLogsAPI,
    job: dict[str, Any],
    *,
    timeout: float,
    interval: float,
    progress: StatusLine,
) -> dict[str, Any]:
    """Poll the replay job until it is completed or failed; ExecutionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    progress.show(job)
    try:
        while job.get("status") not in FINISHED:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExecutionError(
                    f"the replay job did not finish within {_seconds_text(timeout)} "
                    f"(status {job.get('status')})",
                    hint=f"it goes on in Konnect; {JOB_HINT}",
                )
            await asyncio.sleep(min(interval, remaining))
            job = await api.get_replay_job()
            progress.show(job)
    finally:
        progress.close()
    return job


class StatusLine:
    """The replay job's status on stderr: one line redrawn on a terminal, a line per change else."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.last: str | None = None
        self.drawn = False

    def show(self, job: Mapping[str, Any]) -> None:
        status = str(job.get("status"))
        if self.live:
            elapsed = format_duration(timedelta(seconds=time.monotonic() - self.started))
            self.stream.write(f"\r\x1b[Kreplay job {status} ({elapsed})")
            self.drawn = True
        elif status != self.last:
            self.stream.write(f"replay job {status}\n")
        self.last = status
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _label(flag: str, text: str, value: datetime) -> str:
    """How a time flag reads in messages: as given, and as a time when it was relative."""
    shown = format_time(value.replace(microsecond=0))
    return f"{flag} {text} ({shown})" if is_relative(text) else f"{flag} {text}"


def _seconds_text(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:g}s"
    return format_duration(timedelta(seconds=seconds))


# The commands.


@click.group(cls=AliasGroup, context_settings=HELP_OPTIONS)
@global_options
def replay() -> None:
    """Ask Konnect to re-send past audit-log events."""


@click.command("audit-logs", context_settings=HELP_OPTIONS)
@click.option("--since", metavar="DURATION", help="Replay from this long ago (2h, 36h, 7d) to now.")
@click.option("--start-at", metavar="TIME", help="Start: RFC 3339, or a duration meaning ago.")
@click.option("--end-at", metavar="TIME", help="End: RFC 3339, a duration ago, or now (default).")
@click.option("--wait", is_flag=True, help="Wait until the job completes or fails.")
@click.option(
    "--timeout",
    metavar="DURATION",
    help=f"With --wait: give up after this long (default {DEFAULT_TIMEOUT}).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help=f"With --wait: seconds between status checks (default {DEFAULT_POLL_INTERVAL:g}).",
)
@konnect_options
def audit_logs(
    since: str | None,
    start_at: str | None,
    end_at: str | None,
    wait: bool,
    timeout: str | None,
    poll_interval: float | None,
    **flags: Any,
) -> None:
    """Re-send the audit-log events of a past time range to the regional webhook.

    Konnect replays the last 7 days at most. Times are RFC 3339 (2026-12-01T10:00:00Z), a
    duration meaning that long ago (90m, 36h, 7d), or "now". Also spelled audit-log or al.
    """
    ctx = cli_context()
    output = ctx.output
    window = replay_window(start_at=start_at, end_at=end_at, since=since, now=datetime.now(UTC))
    if not wait and (timeout is not None or poll_interval is not None):
        raise UsageError("--timeout and --poll-interval need --wait")
    wait_seconds = parse_duration(timeout or DEFAULT_TIMEOUT, flag="--timeout").total_seconds()
    interval = poll_interval or DEFAULT_POLL_INTERVAL

    async def work(api: AuditLogsAPI) -> dict[str, Any]:
        await _warn_unless_webhook_enabled(api)
        job = await start_replay(api, window)
        if not wait:
            return job
        return await wait_for_job(
            api, job, timeout=wait_seconds, interval=interval, progress=StatusLine()
        )

    job = call_konnect(flags, work)
    emit(output, job, lambda: _job_text(job, waited=wait))
    if job.get("status") == "failed":
        raise ExecutionError(
            f"the replay job failed (replaying {job.get('start_at')} to {job.get('end_at')})",
            hint="Konnect could not deliver to the regional webhook; "
            "`kongctl get audit-logs webhook-status` shows its last answer",
        )


add_resource(replay, audit_logs)


async def _warn_unless_webhook_enabled(api: AuditLogsAPI) -> None:
    webhook = await api.get_webhook()
    if not webhook.get("enabled"):
        click.echo(
            "warning: the regional audit-log webhook is not enabled; the replayed events have "
            "nowhere to go (start `kongctl listen` first)",
            err=True,
        )


def _job_text(job: Mapping[str, Any], *, waited: bool) -> str:
    status = str(job.get("status"))
    title = f"Replay job {status}."
    rows = fields_text(
        [
            ("from", job.get("start_at")),
            ("to", job.get("end_at")),
            ("status", status),
            ("updated", job.get("updated_at")),
        ]
    )
    lines = [title, *(f"  {line}" for line in rows.splitlines())]
    if not waited:
        lines.append("Follow it with: kongctl get audit-logs replay-job")
    return "\n".join(lines)
