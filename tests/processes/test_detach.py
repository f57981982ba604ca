"""Detaching a listener: its own session, its log file, its record, the readiness handshake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kongctl.errors import ExecutionError
from kongctl.processes.detach import (
    DETACHED_ENV,
    READY_FD_ENV,
    DetachResult,
    is_detached_child,
    remove_own_record,
    report_failed,
    report_ready,
    strip_detach_flags,
)
from kongctl.processes.registry import (
    REDACTED,
    ProcessRecord,
    load_records,
    record_path,
    write_record,
)
from kongctl.processes.runtime import process_start_ticks, terminate
from tests.processes.conftest import pid_alive, stand_in_command, wait_for

Detach = Callable[..., DetachResult]


@pytest.mark.parametrize(
    ("argv", "kept"),
    [
        (["listen", "--detach", "--endpoint", "e"], ["listen", "--endpoint", "e"]),
        (["listen", "-d"], ["listen"]),
        (["--detach=true", "listen"], ["listen"]),
        (["listen", "--", "-d"], ["listen", "--", "-d"]),
        (["listen", "--detach", "true", "audit-logs"], ["listen", "audit-logs"]),
        (["listen", "--detach", "audit-logs"], ["listen", "audit-logs"]),
    ],
)
def test_detach_flags_are_not_passed_to_the_child(argv: list[str], kept: list[str]) -> None:
    assert strip_detach_flags(argv) == kept


def test_detached_child_runs_in_its_own_session(detach_stand_in: Detach) -> None:
    result = detach_stand_in()

    assert pid_alive(result.pid)
    assert os.getsid(result.pid) == result.pid
    assert os.getpgid(result.pid) != os.getpgid(0)


def test_detached_child_is_recorded_with_secrets_redacted(
    detach_stand_in: Detach, config_dir: Path
) -> None:
    result = detach_stand_in("ready", "--pat", "kpat_secret", "--authorization=Bearer x")

    assert result.record_file == record_path(config_dir, result.pid)
    (_, record), *_ = load_records(config_dir)[0]
    assert record.pid == result.pid
    assert record.start_time_ticks == process_start_ticks(result.pid)
    assert record.log_file == str(result.log_file)
    assert record.args[-3:] == ["--pat", REDACTED, f"--authorization={REDACTED}"]
    assert "kpat_secret" not in result.record_file.read_text()


def test_ready_report_fills_in_the_record(detach_stand_in: Detach, config_dir: Path) -> None:
    result = detach_stand_in()

    data = json.loads(result.record_file.read_text())
    assert result.info == {
        "listen_address": "127.0.0.1:19090",
        "endpoint": "https://example.test/a",
    }
    assert data["listen_address"] == "127.0.0.1:19090"
    assert data["endpoint"] == "https://example.test/a"


def test_child_output_goes_to_a_log_file_named_after_its_pid(
    detach_stand_in: Detach, config_dir: Path
) -> None:
    result = detach_stand_in()

    assert result.log_file == config_dir / "logs" / f"kongctl-listener-{result.pid}.log"
    text = result.log_file.read_text()
    assert "stand-in starting detached=True" in text
    assert "stand-in stderr line" in text
    assert [p.name for p in result.log_file.parent.iterdir()] == [result.log_file.name]


def test_child_reads_stdin_from_dev_null(detach_stand_in: Detach) -> None:
    result = detach_stand_in()

    assert os.readlink(f"/proc/{result.pid}/fd/0") == os.devnull


def test_reported_startup_failure_is_raised_and_the_record_kept(
    detach_stand_in: Detach, config_dir: Path
) -> None:
    with pytest.raises(ExecutionError) as failure:
        detach_stand_in("fail")

    assert "listen address 127.0.0.1:9 is already in use" in failure.value.message
    assert failure.value.hint is not None and "kongctl-listener-" in failure.value.hint
    records, _ = load_records(config_dir)
    assert len(records) == 1


def test_child_dying_without_a_word_is_explained_from_its_log(detach_stand_in: Detach) -> None:
    with pytest.raises(ExecutionError) as failure:
        detach_stand_in("die")

    assert "exited with status 3 before it was ready" in failure.value.message
    assert "boom: cannot go on" in failure.value.message


def test_child_missing_the_readiness_deadline_is_stopped(
    detach_stand_in: Detach, config_dir: Path
) -> None:
    with pytest.raises(ExecutionError) as failure:
        detach_stand_in("silent", ready_timeout=0.5)

    assert "did not report ready within 0.5s; it was stopped" in failure.value.message
    (log_file,) = (config_dir / "logs").iterdir()
    assert "stand-in stopped" in log_file.read_text()
    pid = int(log_file.stem.rsplit("-", 1)[1])
    assert f"(pid {pid})" in failure.value.message
    assert not pid_alive(pid)


PARENT = r"""
import sys
from pathlib import Path
from kongctl.processes.detach import spawn_detached

config_dir = Path(sys.argv[1])
result = spawn_detached(
    ["listen"], config_dir=config_dir, profile="default", log_dir=config_dir / "logs",
    command=sys.argv[2:],
)
print(result.pid, flush=True)
sys.stdin.read()
"""


def test_sighup_to_the_parent_process_group_leaves_the_child_running(config_dir: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(config_dir), *stand_in_command("ready", config_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a shell job
    )
    assert parent.stdout is not None and parent.stdin is not None
    with parent, parent.stdin, parent.stdout:
        child = int(parent.stdout.readline())
        os.killpg(parent.pid, signal.SIGHUP)
        assert parent.wait(timeout=5) == -signal.SIGHUP

    try:
        # The hangup reached the whole group at once; a child in it would be gone by now.
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            assert pid_alive(child)
            time.sleep(0.02)
    finally:
        terminate(child, timeout=5, expected_start_ticks=None)


def test_a_process_outside_its_own_session_is_not_a_detached_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DETACHED_ENV, "1")

    assert os.getsid(0) != os.getpid()
    assert is_detached_child() is False


def test_reporting_is_a_no_op_outside_a_detached_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(READY_FD_ENV, raising=False)

    report_ready({"listen_address": "x"})
    report_failed("nothing listens")


def test_readiness_is_reported_once_and_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    read_fd, write_fd = os.pipe()
    monkeypatch.setenv(READY_FD_ENV, str(write_fd))

    report_ready({"listen_address": "127.0.0.1:1"})
    report_failed("too late")

    with os.fdopen(read_fd) as reader:
        assert reader.read() == '{"listen_address": "127.0.0.1:1", "status": "ready"}\n'
    assert READY_FD_ENV not in os.environ


def test_a_listener_removes_only_its_own_record(config_dir: Path) -> None:
    ticks = process_start_ticks(os.getpid())
    assert ticks is not None
    write_record(config_dir, ProcessRecord(pid=os.getpid(), start_time_ticks=ticks + 1))

    remove_own_record(config_dir)
    assert record_path(config_dir, os.getpid()).exists()

    write_record(config_dir, ProcessRecord(pid=os.getpid(), start_time_ticks=ticks))
    remove_own_record(config_dir)
    assert not record_path(config_dir, os.getpid()).exists()


def test_stopped_stand_in_removes_its_record(detach_stand_in: Detach, config_dir: Path) -> None:
    result = detach_stand_in()

    terminate(result.pid, timeout=5, expected_start_ticks=None)

    wait_for(lambda: not result.record_file.exists())
    assert "stand-in stopped" in result.log_file.read_text()
