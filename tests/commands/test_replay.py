"""kongctl replay audit-logs: the window checked first, conflicts named, --wait, end to end."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from kongctl.cli.replay import StatusLine, replay_window
from kongctl.cli.timespec import format_time
from kongctl.errors import UsageError
from tests import commands
from tests.commands import bind_webhook, create_destination
from tests.listen import conftest as listen_fixtures
from tests.listen.conftest import wait_for

emulator_url = commands.emulator_url
konnect = commands.konnect
kongctl = commands.kongctl
start_listener = listen_fixtures.start_listener

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
REPLAY_JOB = "/v2/audit-log-replay-job"


def ago(**span: float) -> str:
    return format_time((datetime.now(UTC) - timedelta(**span)).replace(microsecond=0))


def enable_webhook(konnect) -> None:
    """A bound, enabled webhook; with no records in the window a replay completes at once."""
    created = create_destination(konnect, "laptop")
    bind_webhook(konnect, created["id"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start-at", "1h", "--end-at", "2h"], "the replay must start before it ends: "),
        (["--since", "0s"], "is not before now"),
        (["--since", "8d"], "is more than 7 days ago"),
        (["--start-at", "2026-01-01T00:00:00Z", "--end-at", "1h"], "is more than 7 days ago"),
        (["--since", "1h", "--end-at", "2099-01-01T00:00:00Z"], "--end-at 2099-01-01T00:00:00Z is"),
        (["--start-at", "2099-01-01T00:00:00Z"], "is in the future"),
        (["--since", "2h", "--start-at", "1h"], "give --since or --start-at, not both"),
        ([], "say where the replay starts: --since DURATION or --start-at TIME"),
        (["--since", "yesterday"], 'invalid --since "yesterday"'),
        (["--start-at", "2026-12-01T10:00:00"], "needs a time of day and a time zone"),
        (["--since", "1h", "--timeout", "5m"], "--timeout and --poll-interval need --wait"),
        (["--since", "1h", "--wait", "--timeout", "soon"], 'invalid --timeout "soon"'),
    ],
)
def test_bad_window_is_refused_before_any_call(konnect, kongctl, args, message):
    refused = kongctl("replay", "audit-logs", *args)
    assert refused.code == 2
    assert refused.err.startswith("Error: ")
    assert message in refused.err
    assert konnect.state()["requests"] == []


def test_since_is_the_start_and_now_the_end():
    window = replay_window(start_at=None, end_at=None, since="36h", now=NOW)
    assert (window.start_at, window.end_at) == ("2026-04-30T00:00:00Z", "2026-05-01T12:00:00Z")


def test_start_and_end_take_rfc3339_and_durations_ago():
    window = replay_window(start_at="2026-05-01T08:00:00+02:00", end_at="90m", since=None, now=NOW)
    assert (window.start_at, window.end_at) == ("2026-05-01T06:00:00Z", "2026-05-01T10:30:00Z")


def test_since_seven_days_moves_a_minute_inside_the_limit():
    window = replay_window(start_at=None, end_at=None, since="7d", now=NOW)
    assert window.start == NOW - timedelta(days=7) + timedelta(minutes=1)


def test_an_end_slightly_ahead_of_the_clock_is_taken_as_now():
    window = replay_window(start_at="1h", end_at="2026-05-01T12:00:30Z", since=None, now=NOW)
    assert window.end == NOW


def test_an_end_a_minute_ahead_is_in_the_future():
    with pytest.raises(UsageError, match="is in the future"):
        replay_window(start_at="1h", end_at="2026-05-01T12:01:01Z", since=None, now=NOW)


def test_replay_submits_the_window_and_prints_the_accepted_job(konnect, kongctl):
    enable_webhook(konnect)
    before = datetime.now(UTC)
    submitted = kongctl("replay", "audit-logs", "--since", "1h", "-o", "json")
    assert submitted.code == 0, submitted.err
    job = submitted.json()
    assert job["status"] == "accepted"
    start = datetime.fromisoformat(job["start_at"])
    end = datetime.fromisoformat(job["end_at"])
    assert end - start == timedelta(hours=1)
    assert before - timedelta(seconds=1) <= end <= datetime.now(UTC)
    assert konnect.state()["replay_job"]["start_at"] == job["start_at"]
    [put] = konnect.requests("PUT", REPLAY_JOB)
    assert put["status"] == 202


def test_replay_text_says_how_to_follow_the_job(konnect, kongctl):
    enable_webhook(konnect)
    submitted = kongctl("replay", "al", "--since", "30m")
    assert submitted.code == 0, submitted.err
    assert submitted.out.startswith("Replay job accepted.\n")
    assert "Follow it with: kongctl get audit-logs replay-job" in submitted.out
    assert submitted.err == ""


def test_replay_without_an_enabled_webhook_warns(kongctl):
    submitted = kongctl("replay", "audit-logs", "--since", "1h")
    assert submitted.code == 0
    assert "warning: the regional audit-log webhook is not enabled" in submitted.err


def test_running_job_is_named_in_the_conflict(konnect, kongctl):
    enable_webhook(konnect)
    status, running = konnect.api(
        "PUT", REPLAY_JOB, {"start_at": ago(hours=2), "end_at": ago(hours=1)}
    )
    assert status == 202
    # However quickly the first job moves on, the second request meets a running one.
    konnect.fault(method="PUT", path=REPLAY_JOB, status=409, times=1)

    refused = kongctl("replay", "audit-logs", "--since", "30m")
    assert refused.code == 1
    assert refused.err.startswith("Error: a replay job is already running (status ")
    assert f"replaying {running['start_at']} to {running['end_at']})" in refused.err
    assert "kongctl get audit-logs replay-job" in refused.err


def test_wait_follows_the_job_until_it_completes(konnect, kongctl):
    enable_webhook(konnect)
    finished = kongctl(
        "replay", "audit-logs", "--since", "1h", "--wait", "--poll-interval", "0.05", "-o", "yaml"
    )
    assert finished.code == 0, finished.err
    assert finished.yaml()["status"] == "completed"
    # stderr is no terminal here: a plain line for each status seen, none repeated.
    lines = finished.err.splitlines()
    assert lines[0] == "replay job accepted"
    assert lines[-1] == "replay job completed"
    assert lines in (
        ["replay job accepted", "replay job completed"],
        ["replay job accepted", "replay job running", "replay job completed"],
    )


def test_wait_exits_1_when_the_job_fails(konnect, kongctl):
    failed = kongctl("replay", "audit-logs", "--since", "1h", "--wait", "--poll-interval", "0.05")
    assert failed.code == 1
    assert failed.out.startswith("Replay job failed.\n")
    assert "Error: the replay job failed (replaying " in failed.err


def test_wait_gives_up_after_the_timeout(konnect, kongctl):
    # The webhook points at an API path of the emulator itself, which a fault then holds back:
    # the job keeps running, with a record to deliver, well past the timeout.
    created = create_destination(konnect, "slow", endpoint=f"{konnect.url}/v3/slow-hook")
    bind_webhook(konnect, created["id"])
    konnect.deliver(1)
    konnect.fault(method="POST", path="/v3/slow-hook", delay=2)

    waited = kongctl(
        "replay",
        "audit-logs",
        "--since",
        "1h",
        "--wait",
        "--timeout",
        "0.3s",
        "--poll-interval",
        "0.05",
    )
    assert waited.code == 1
    assert "Error: the replay job did not finish within 0.3s (status " in waited.err
    assert "Hint: it goes on in Konnect" in waited.err
    assert waited.out == ""
    assert konnect.state()["replay_job"]["status"] in ("accepted", "running")


def test_status_line_redraws_one_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    line = StatusLine(stream)
    for status in ("accepted", "running", "running", "completed"):
        line.show({"status": status})
    line.close()
    text = stream.getvalue()
    assert text.count("\r\x1b[K") == 4
    assert text.endswith("replay job completed (0s)\n")
    assert text.count("\n") == 1


def test_replayed_events_reach_a_running_listener_again(konnect, kongctl, start_listener):
    listener = start_listener()
    listener.wait_ready()
    delivered = konnect.deliver(5)["records"]
    events = listener.store / "events.jsonl"
    assert events.read_text().splitlines() == delivered

    replayed = kongctl("replay", "audit-logs", "--since", "1h", "--wait", "--poll-interval", "0.05")
    assert replayed.code == 0, replayed.err
    assert replayed.out.startswith("Replay job completed.\n")
    wait_for(lambda: len(events.read_text().splitlines()) == 10, timeout=5)
    assert events.read_text().splitlines() == delivered + delivered
    assert listener.stop() == 0
