"""Fixtures for the get, delete and replay commands: one emulator process per test module.

The commands run in-process through ``kongctl.cli.root.run`` (each one calls ``asyncio.run``
itself, so the emulator must live in another process). A module takes the fixtures by name::

    from tests import commands

    konnect = commands.konnect
    kongctl = commands.kongctl
    emulator_url = commands.emulator_url
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from kongctl.cli.root import run
from tests.emulator_support import start_emulator_process, stop_emulator_process
from tests.listen.conftest import TOKEN, Konnect

# Quick retries and replay steps keep every test well under a second of waiting.
EMULATOR_ARGS = (
    "--token",
    TOKEN,
    "--event-rate",
    "0",
    "--retry-base",
    "0.05",
    "--retry-max",
    "0.2",
    "--replay-delay",
    "0.1",
)


@dataclass(frozen=True)
class Outcome:
    """What one in-process kongctl run left behind."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def yaml(self) -> Any:
        return yaml.safe_load(self.out)


@pytest.fixture(scope="module")
def emulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_emulator_process(tmp_path_factory.mktemp("konnect"), *EMULATOR_ARGS)
    yield url
    stop_emulator_process(process)


@pytest.fixture
def konnect(emulator_url: str) -> Konnect:
    """The emulator, emptied: no destinations, webhook unconfigured, no job, no faults."""
    emulator = Konnect(emulator_url)
    emulator.admin("DELETE", "/_emulator/faults")
    emulator.admin("POST", "/_emulator/reset")
    return emulator


@pytest.fixture
def kongctl(konnect: Konnect, capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """Run kongctl in-process against the emulator; ``connect=False`` leaves out the flags."""

    def invoke(*args: str, connect: bool = True) -> Outcome:
        capsys.readouterr()
        argv = [*args, "--base-url", konnect.url, "--pat", TOKEN] if connect else list(args)
        code = run(argv)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return invoke


def create_destination(konnect: Konnect, name: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "endpoint": f"https://{name}.example/audit-logs",
        "log_format": "json",
        "authorization": "Bearer secret",
        **fields,
    }
    status, created = konnect.api("POST", "/v3/audit-log-destinations", body)
    assert status == 201, created
    result: dict[str, Any] = created
    return result


def bind_webhook(konnect: Konnect, destination_id: str, enabled: bool = True) -> None:
    body = {"audit_log_destination_id": destination_id, "enabled": enabled}
    status, answer = konnect.api("PATCH", "/v3/audit-log-webhook", body)
    assert status == 200, answer


def configure_in_place(konnect: Konnect, endpoint: str) -> None:
    """The legacy setup: the webhook's endpoint set through the v2 API, no destination."""
    body = {"endpoint": endpoint, "authorization": "Bearer legacy", "enabled": True}
    status, answer = konnect.api("PATCH", "/v2/audit-log-webhook", body)
    assert status == 200, answer


def destination_ids(konnect: Konnect) -> list[str]:
    return [d["id"] for d in konnect.state()["destinations"]]
