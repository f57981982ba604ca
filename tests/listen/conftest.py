"""A Konnect emulator per test module, reset before each test, and listener subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.emulator_support import start_emulator_process, stop_emulator_process

TOKEN = "kpat_emulator"
AUTH = "Bearer listener-secret"


@dataclass
class Konnect:
    """The emulator, seen through its admin API."""

    url: str

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
        return json.loads(raw) if raw else None

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                raw, status = answer.read(), answer.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        return status, (json.loads(raw) if raw else None)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.admin("GET", "/_emulator/state")
        return state

    def deliver(self, count: int) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("POST", "/_emulator/deliver", {"count": count})
        return result

    def fault(self, **rule: Any) -> None:
        self.admin("POST", "/_emulator/faults", {"rules": [rule]})

    def requests(self, method: str, path_part: str) -> list[dict[str, Any]]:
        return [
            r for r in self.state()["requests"] if r["method"] == method and path_part in r["path"]
        ]


@pytest.fixture(scope="module")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_emulator_process(
        tmp_path_factory.mktemp("emulator"),
        *("--token", TOKEN, "--event-rate", "0", "--retry-base", "0.05", "--retry-max", "0.2"),
    )
    yield url
    stop_emulator_process(process)


@pytest.fixture
def konnect(emulator_process: str) -> Konnect:
    emulator = Konnect(emulator_process)
    emulator.admin("DELETE", "/_emulator/faults")
    emulator.admin("POST", "/_emulator/reset")
    return emulator


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Listener:
    process: subprocess.Popen[bytes]
    port: int
    store: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/audit-logs"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_for(
            lambda: (self.store / "destination.json").exists() or self.process.poll() is not None,
            timeout,
        )
        assert self.process.poll() is None, self.stderr
        wait_for(lambda: (self.store / "listener.json").exists(), timeout)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def listener_flags(konnect_url: str, port: int, authorization: str = AUTH) -> list[str]:
    """The flags of a listener on loopback ``port`` that the emulator at ``konnect_url`` knows."""
    return [
        "--base-url",
        konnect_url,
        "--pat",
        TOKEN,
        "--endpoint",
        f"http://127.0.0.1:{port}/audit-logs",
        "--listen-address",
        f"127.0.0.1:{port}",
        "--authorization",
        authorization,
    ]


@pytest.fixture
def start_listener(
    konnect: Konnect, config_home: Path, tmp_path: Path
) -> Iterator[Callable[..., Listener]]:
    started: list[Listener] = []

    def start(*args: str, verb: str = "listen", port: int | None = None) -> Listener:
        port = port or free_port()
        out, err = tmp_path / f"out-{len(started)}", tmp_path / f"err-{len(started)}"
        command = [
            sys.executable,
            "-m",
            "kongctl",
            verb,
            *listener_flags(konnect.url, port),
            "--log-level",
            "debug",
            *args,
        ]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env={**os.environ})
        listener = Listener(process, port, config_home / "audit-logs" / "default", out, err)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        if listener.process.poll() is None:
            listener.process.kill()
            listener.process.wait()
