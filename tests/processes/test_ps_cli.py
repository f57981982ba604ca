"""`kongctl ps`, `ps stop` and `ps logs` against real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from kongctl.cli.root import cli
from kongctl.errors import UsageError
from kongctl.processes.detach import DetachResult
from kongctl.processes.registry import (
    ProcessRecord,
    load_records,
    record_path,
    records_dir,
    write_record,
)
from kongctl.processes.runtime import process_start_ticks
from tests.processes.conftest import pid_alive, wait_for, wait_for_exec

Detach = Callable[..., DetachResult]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


def kongctl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kongctl", *args], capture_output=True, text=True, timeout=timeout
    )


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def exited_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def fake_record(config_dir: Path, pid: int, ticks: int | None) -> Path:
    record = ProcessRecord(
        pid=pid,
        created_at="2025-01-01T00:00:00Z",
        log_file=str(config_dir / "logs" / f"kongctl-listener-{pid}.log"),
        start_time_ticks=ticks,
    )
    return write_record(config_dir, record)


def live_sleeper(popen_children: list[subprocess.Popen[Any]]) -> tuple[int, int]:
    process = subprocess.Popen(SLEEPER)
    popen_children.append(process)
    ticks = process_start_ticks(process.pid)
    assert ticks is not None
    return process.pid, ticks


def fake_listener_script(tmp_path: Path) -> Path:
    script = tmp_path / "kongctl"
    script.write_text("import time\ntime.sleep(30)\n")
    return script


def rows_by_pid(output: str) -> dict[int, dict[str, Any]]:
    return {row["pid"]: row for row in json.loads(output)}


def test_empty_registry_says_so() -> None:
    result = invoke("ps")

    assert result.exit_code == 0
    assert result.stdout == "No detached kongctl processes found.\n"


def test_listing_shows_each_record_with_its_status(
    detach_stand_in: Detach, config_dir: Path, popen_children: list[subprocess.Popen[Any]]
) -> None:
    running = detach_stand_in()
    gone = exited_pid()
    fake_record(config_dir, gone, 1)
    reused, ticks = live_sleeper(popen_children)
    fake_record(config_dir, reused, ticks + 1)

    rows = rows_by_pid(invoke("ps", "-o", "json").stdout)

    assert {pid: rows[pid]["status"] for pid in (running.pid, gone, reused)} == {
        running.pid: "running",
        gone: "exited",
        reused: "stale",
    }
    assert rows[running.pid] == {
        "pid": running.pid,
        "status": "running",
        "kind": "konnect.audit-logs.listen",
        "profile": "default",
        "created_at": rows[running.pid]["created_at"],
        "log_file": str(running.log_file),
        "record_file": str(running.record_file),
        "listen_address": "127.0.0.1:19090",
        "endpoint": "https://example.test/a",
    }


def test_text_listing_is_an_aligned_table(detach_stand_in: Detach) -> None:
    running = detach_stand_in()

    lines = invoke("ps").stdout.splitlines()

    assert lines[0].split() == ["PID", "STATUS", "KIND", "PROFILE", "AGE", "LISTEN", "ENDPOINT"]
    (row,) = [line for line in lines if line.startswith(f"{running.pid} ")]
    assert row.split()[1:4] == ["running", "konnect.audit-logs.listen", "default"]
    assert row.split()[5:] == ["127.0.0.1:19090", "https://example.test/a"]
    assert lines[0].index("STATUS") == row.index("running")


def test_unreadable_record_is_a_warning_not_a_failure(config_dir: Path) -> None:
    records_dir(config_dir).mkdir(parents=True)
    broken = records_dir(config_dir) / "123.json"
    broken.write_text("{")

    result = invoke("ps")

    assert result.exit_code == 0
    assert result.stderr.startswith(f"warning: cannot read process record {broken}: invalid JSON")


def test_listener_without_record_is_listed_as_unmanaged(
    tmp_path: Path, popen_children: list[subprocess.Popen[Any]]
) -> None:
    script = fake_listener_script(tmp_path)
    process = subprocess.Popen(
        [sys.executable, str(script), "listen", "--listen-address", "127.0.0.1:7"]
    )
    popen_children.append(process)

    wait_for_exec(process.pid)

    row = rows_by_pid(invoke("ps", "-o", "json").stdout)[process.pid]

    assert row["status"] == "unmanaged"
    assert row["record_file"] is None
    assert row["listen_address"] == "127.0.0.1:7"


def test_stop_needs_pids_or_all() -> None:
    assert isinstance(invoke("ps", "stop").exception, UsageError)
    assert isinstance(invoke("ps", "stop", "--all", "12").exception, UsageError)


def test_stopping_a_running_listener_removes_its_record(
    detach_stand_in: Detach, config_dir: Path
) -> None:
    running = detach_stand_in()

    result = kongctl("ps", "stop", str(running.pid))

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split() == [str(running.pid), "stopped", "true"]
    assert not pid_alive(running.pid)
    assert not running.record_file.exists()
    assert "stand-in stopped" in running.log_file.read_text()


def test_stopping_an_exited_process_prunes_its_record(config_dir: Path) -> None:
    path = fake_record(config_dir, exited_pid(), 1)

    result = kongctl("ps", "stop", path.stem, "-o", "json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["action"] == "pruned"
    assert not path.exists()


def test_stale_record_is_pruned_and_the_new_owner_of_its_pid_left_alone(
    config_dir: Path, popen_children: list[subprocess.Popen[Any]]
) -> None:
    pid, ticks = live_sleeper(popen_children)
    path = fake_record(config_dir, pid, ticks + 1)

    result = kongctl("ps", "stop", str(pid), "-o", "json")

    assert json.loads(result.stdout)[0]["action"] == "pruned"
    assert not path.exists()
    assert popen_children[0].poll() is None


def test_stop_all_handles_running_exited_and_stale_records(
    detach_stand_in: Detach, config_dir: Path, popen_children: list[subprocess.Popen[Any]]
) -> None:
    running = detach_stand_in()
    gone = exited_pid()
    fake_record(config_dir, gone, 1)
    reused, ticks = live_sleeper(popen_children)
    fake_record(config_dir, reused, ticks + 1)

    result = kongctl("ps", "stop", "--all", "-o", "json")

    assert result.returncode == 0, result.stderr
    actions = {row["pid"]: (row["action"], row["success"]) for row in json.loads(result.stdout)}
    assert actions == {
        running.pid: ("stopped", True),
        gone: ("pruned", True),
        reused: ("pruned", True),
    }
    assert load_records(config_dir) == ([], [])
    assert popen_children[0].poll() is None


def test_stopping_an_unknown_pid_is_an_error_for_that_pid(
    detach_stand_in: Detach, config_dir: Path
) -> None:
    running = detach_stand_in()
    unknown = exited_pid()

    result = kongctl("ps", "stop", str(unknown), str(running.pid))

    assert result.returncode == 1
    assert result.stderr == f"Error: no kongctl listener with pid {unknown}\n"
    assert [line.split() for line in result.stdout.splitlines()[1:]] == [
        [str(unknown), "failed", "false"],
        [str(running.pid), "stopped", "true"],
    ]


def test_two_concurrent_stops_of_one_listener_both_succeed(detach_stand_in: Detach) -> None:
    running = detach_stand_in(stop_delay=1.0)
    command = [sys.executable, "-m", "kongctl", "ps", "stop", str(running.pid), "-o", "json"]

    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [process.communicate(timeout=30) for process in (first, second)]

    assert [process.returncode for process in (first, second)] == [0, 0], outputs
    actions = sorted(json.loads(out)[0]["action"] for out, _ in outputs)
    assert actions == ["gone", "stopped"]
    assert running.log_file.read_text().count("stand-in stopped") == 1


def test_unmanaged_listener_can_be_stopped_by_pid(
    tmp_path: Path, popen_children: list[subprocess.Popen[Any]]
) -> None:
    script = fake_listener_script(tmp_path)
    process = subprocess.Popen([sys.executable, str(script), "tail"])
    popen_children.append(process)
    wait_for_exec(process.pid)

    result = kongctl("ps", "stop", str(process.pid))

    assert result.returncode == 0, result.stderr
    assert process.wait(timeout=5) == -signal.SIGTERM


def test_listener_ignoring_sigterm_times_out_and_keeps_its_record(
    detach_stand_in: Detach,
) -> None:
    stubborn = detach_stand_in("ignore-term")

    result = kongctl("ps", "stop", str(stubborn.pid), "--timeout", "0.3")

    assert result.returncode == 1
    assert result.stdout.splitlines()[1].split() == [str(stubborn.pid), "timeout", "false"]
    assert "still running 0.3s after SIGTERM" in result.stderr
    assert stubborn.record_file.exists()


def test_logs_prints_the_last_lines(detach_stand_in: Detach) -> None:
    running = detach_stand_in(log_lines=10)

    result = invoke("ps", "logs", str(running.pid), "-n", "3")

    assert result.exit_code == 0
    assert result.stdout == "log line 7\nlog line 8\nlog line 9\n"


def test_logs_of_a_pid_without_record_fail(config_dir: Path) -> None:
    result = kongctl("ps", "logs", str(exited_pid()))

    assert result.returncode == 1
    assert result.stderr.startswith("Error: no process record for pid")


def test_log_of_a_stopped_listener_is_still_readable(
    detach_stand_in: Detach, config_dir: Path
) -> None:
    stopped = detach_stand_in()
    assert kongctl("ps", "stop", str(stopped.pid)).returncode == 0

    result = invoke("ps", "logs", str(stopped.pid), "-n", "1", "--follow")

    assert result.exit_code == 0
    assert result.stdout == "stand-in stopped\n"


def test_following_logs_ends_when_the_listener_exits(detach_stand_in: Detach) -> None:
    running = detach_stand_in(log_lines=2)
    follower = subprocess.Popen(
        [sys.executable, "-m", "kongctl", "ps", "logs", str(running.pid), "-f", "-n", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    assert follower.stdout.readline() == "log line 1\n"

    os.kill(running.pid, signal.SIGTERM)
    out, err = follower.communicate(timeout=10)

    assert follower.returncode == 0, err
    assert out == "stand-in stopped\n"


def test_interrupted_follow_exits_quietly(detach_stand_in: Detach) -> None:
    running = detach_stand_in(log_lines=1)
    follower = subprocess.Popen(
        [sys.executable, "-m", "kongctl", "ps", "logs", str(running.pid), "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    wait_for(lambda: "log line 0" in follower.stdout.readline())  # type: ignore[union-attr]

    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=10)

    assert follower.returncode == 130
    assert err == ""


def test_record_path_names_the_pid(config_dir: Path) -> None:
    assert record_path(config_dir, 7) == config_dir / "processes" / "7.json"
