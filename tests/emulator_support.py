"""Run the Konnect emulator in tests: in-process, as a subprocess, plus a webhook receiver.

In-process::

    async with running_emulator(event_rate=0) as konnect:
        ...  # konnect.url, konnect.state

As a real process (for tests of signals and detaching, or a non-async test)::

    process, url = start_emulator_process(tmp_path, "--event-rate", "0")
    try: ...
    finally: stop_emulator_process(process)

A ``WebhookReceiver`` is a loopback HTTP server that records each delivered batch raw.
"""

from __future__ import annotations

import asyncio
import gzip
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from kongctl.emulator.app import EMULATOR_TOKEN, EmulatorConfig, RunningEmulator, start_emulator

# Fast retries and short replay steps keep tests quick; no background records unless asked.
TEST_DEFAULTS: dict[str, Any] = {
    "event_rate": 0.0,
    "seed": 7,
    "retry_base": 0.05,
    "retry_max": 0.2,
    "replay_delay": 0.2,
}
LISTENING_PREFIX = "konnect-emulator listening on "
AUTH_HEADERS = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}


@asynccontextmanager
async def running_emulator(**config_overrides: Any) -> AsyncIterator[RunningEmulator]:
    """An emulator on a free loopback port for the duration of the block."""
    config = EmulatorConfig(**{**TEST_DEFAULTS, **config_overrides})
    running = await start_emulator(config, "127.0.0.1", 0)
    try:
        yield running
    finally:
        await running.stop()


def api_session(url: str, token: str = EMULATOR_TOKEN) -> aiohttp.ClientSession:
    """A client session for the emulator's API at ``url`` with the bearer token set."""
    return aiohttp.ClientSession(base_url=url, headers={"Authorization": f"Bearer {token}"})


def start_emulator_process(
    tmp_path: Path, *args: str, timeout: float = 15.0
) -> tuple[subprocess.Popen[str], str]:
    """Run ``python -m kongctl.emulator --port 0 *args``; return the process and its URL.

    stderr goes to ``tmp_path / "konnect-emulator.log"``. Stop it with
    ``stop_emulator_process``, which also closes its stdout pipe.
    """
    command = [sys.executable, "-m", "kongctl.emulator", "--port", "0", *args]
    log_path = tmp_path / "konnect-emulator.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = _read_line(process, timeout)
    except BaseException:
        stop_emulator_process(process)
        raise
    if not line.startswith(LISTENING_PREFIX):
        stop_emulator_process(process)
        raise RuntimeError(f"emulator did not start: {line!r}\n{log_path.read_text()}")
    return process, line[len(LISTENING_PREFIX) :].strip()


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"no listening line within {timeout}s")
    return process.stdout.readline()


def stop_emulator_process(process: subprocess.Popen[str], timeout: float = 10.0) -> int:
    """SIGTERM the emulator, wait for it, close its pipe; returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    if process.stdout is not None:
        process.stdout.close()
    return code


@dataclass
class ReceivedBatch:
    """One webhook request as it arrived."""

    headers: dict[str, str]
    raw_body: bytes

    @property
    def body(self) -> bytes:
        """The decompressed body."""
        return gzip.decompress(self.raw_body)

    @property
    def lines(self) -> list[str]:
        return self.body.decode("utf-8").split("\n")


@dataclass
class WebhookReceiver:
    """A loopback HTTP server standing in for a listener; answers from ``responses`` first."""

    path: str = "/audit-logs"
    responses: list[int] = field(default_factory=list)
    default_status: int = 202
    batches: list[ReceivedBatch] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        # The raw gzip body is what the test inspects, so the server must not inflate it.
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{self.path}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        status = self.responses.pop(0) if self.responses else self.default_status
        self.statuses.append(status)
        if 200 <= status < 300:
            self.batches.append(ReceivedBatch(dict(request.headers), await request.read()))
        return web.Response(status=status, text="accepted" if status < 300 else "try later")

    @property
    def lines(self) -> list[str]:
        return [line for batch in self.batches for line in batch.lines]

    async def wait_for_lines(self, count: int, timeout: float = 5.0) -> list[str]:
        await wait_until(lambda: len(self.lines) >= count, timeout)
        return self.lines


async def wait_until(condition: Any, timeout: float = 5.0, interval: float = 0.02) -> None:
    """Poll ``condition()`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def create_destination(
    api: aiohttp.ClientSession, version: str = "v3", **fields: Any
) -> dict[str, Any]:
    """Create a destination (defaults fill what the test does not care about)."""
    body = {
        "name": "listener",
        "endpoint": "https://example.com/audit-logs",
        "log_format": "json",
        "authorization": "Bearer listener-secret",
        **fields,
    }
    async with api.post(f"/{version}/audit-log-destinations", json=body) as answer:
        assert answer.status == 201, await answer.text()
        created: dict[str, Any] = await answer.json()
        return created


async def bind_webhook(
    api: aiohttp.ClientSession, destination_id: str, enabled: bool = True
) -> dict[str, Any]:
    body = {"audit_log_destination_id": destination_id, "enabled": enabled}
    async with api.patch("/v3/audit-log-webhook", json=body) as answer:
        assert answer.status == 200, await answer.text()
        bound: dict[str, Any] = await answer.json()
        return bound


async def webhook_to(api: aiohttp.ClientSession, endpoint: str, **fields: Any) -> dict[str, Any]:
    """A destination at ``endpoint`` bound to the enabled webhook."""
    destination = await create_destination(api, endpoint=endpoint, **fields)
    await bind_webhook(api, destination["id"])
    return destination


async def admin_state(api: aiohttp.ClientSession) -> dict[str, Any]:
    async with api.get("/_emulator/state") as answer:
        assert answer.status == 200
        state: dict[str, Any] = await answer.json()
        return state


async def deliver(api: aiohttp.ClientSession, count: int) -> dict[str, Any]:
    async with api.post("/_emulator/deliver", json={"count": count}) as answer:
        assert answer.status == 200, await answer.text()
        result: dict[str, Any] = await answer.json()
        return result
