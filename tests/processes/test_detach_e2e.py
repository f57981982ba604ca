"""A real detached `kongctl listen` against the Konnect emulator, managed with `kongctl ps`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.listen.conftest import TOKEN, listener_flags
from tests.processes.conftest import pid_alive, wait_for

AUTHORIZATION = "Bearer listener-s3cret"
EMULATOR_FLAGS = ["--event-rate", "0", "--retry-base", "0.05", "--retry-max", "0.2"]


class Emulator:
    def __init__(self, url: str) -> None:
        self.url = url

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.admin("GET", "/_emulator/state")
        return state


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kongctl.emulator",
            "--port",
            "0",
            "--token",
            TOKEN,
            *EMULATOR_FLAGS,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    with process, process.stdout:
        line = process.stdout.readline().strip()
        assert "listening on" in line, line
        yield line.rsplit(" ", 1)[-1]
        process.send_signal(signal.SIGTERM)


@pytest.fixture
def konnect(emulator_url: str) -> Emulator:
    emulator = Emulator(emulator_url)
    emulator.admin("POST", "/_emulator/reset")
    return emulator


@pytest.fixture
def detached_pids() -> Iterator[list[int]]:
    """Listeners the test detached; not our children, so killed by pid if left running."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kongctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kongctl", *args], capture_output=True, text=True, timeout=60
    )


def listen_detached(konnect: Emulator, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return kongctl(
        "listen",
        *extra,
        *listener_flags(konnect.url, port, AUTHORIZATION),
        "--detach",
        "-o",
        "json",
    )


def test_detached_listener_is_listed_receives_and_cleans_up_konnect_when_stopped(
    konnect: Emulator, config_dir: Path, detached_pids: list[int]
) -> None:
    port = free_port()

    started = listen_detached(konnect, port)
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    pid, record_file = info["pid"], Path(info["record_file"])
    detached_pids.append(pid)

    assert os.getsid(pid) == pid
    record_text = record_file.read_text()
    assert TOKEN not in record_text and "s3cret" not in record_text
    (row,) = [r for r in json.loads(kongctl("ps", "-o", "json").stdout) if r["pid"] == pid]
    assert row["status"] == "running"
    assert row["listen_address"] == f"127.0.0.1:{port}"
    assert len(konnect.state()["destinations"]) == 1

    assert konnect.admin("POST", "/_emulator/deliver", {"count": 5})["status"] == 202
    events = config_dir / "audit-logs" / "default" / "events.jsonl"
    wait_for(lambda: events.exists() and len(events.read_text().splitlines()) == 5)

    stopped = kongctl("ps", "stop", str(pid), "-o", "json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)[0]["action"] == "stopped"
    assert not record_file.exists()
    assert not pid_alive(pid)
    state = konnect.state()
    assert state["destinations"] == []
    assert state["webhook"]["v2"]["endpoint"] == "unconfigured"
    assert state["webhook"]["v2"]["enabled"] is False
    log_text = Path(info["log_file"]).read_text()
    assert "destination created" in log_text
    assert "destination deleted" in log_text
    assert "s3cret" not in log_text and TOKEN not in log_text


def test_detached_start_failure_is_reported_and_its_record_kept(
    konnect: Emulator, config_dir: Path, detached_pids: list[int]
) -> None:
    first = listen_detached(konnect, free_port())
    assert first.returncode == 0, first.stderr
    detached_pids.append(json.loads(first.stdout)["pid"])

    # Another profile, so the second listener gets past its own store and meets the webhook.
    second = listen_detached(konnect, free_port(), "-p", "other")

    assert second.returncode == 1
    assert second.stderr.startswith("Error: detached listener (pid ")
    assert "already configured" in second.stderr
    rows = json.loads(kongctl("ps", "-o", "json").stdout)
    failed = [r for r in rows if r["pid"] not in detached_pids and r["record_file"]]
    assert len(failed) == 1
    pruned = kongctl("ps", "stop", "--all", "-o", "json")
    assert pruned.returncode == 0, pruned.stderr
    actions = {r["pid"]: r["action"] for r in json.loads(pruned.stdout)}
    assert actions == {failed[0]["pid"]: "pruned", detached_pids[0]: "stopped"}
    assert konnect.state()["destinations"] == []
