"""Replay jobs: validation, the status lifecycle, the running conflict, and re-delivery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from kongctl.emulator.app import RunningEmulator
from tests.emulator_support import (
    WebhookReceiver,
    api_session,
    deliver,
    running_emulator,
    wait_until,
    webhook_to,
)

ZERO = "0001-01-01T00:00:00Z"


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def window(minutes_back: int = 5, minutes_forward: int = 0) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "start_at": stamp(now - timedelta(minutes=minutes_back)),
        "end_at": stamp(now + timedelta(minutes=minutes_forward, seconds=1)),
    }


async def job(api: aiohttp.ClientSession, version: str = "v3") -> dict[str, Any]:
    async with api.get(f"/{version}/audit-log-replay-job") as answer:
        assert answer.status == 200
        body: dict[str, Any] = await answer.json()
        return body


async def put_job(
    api: aiohttp.ClientSession, body: dict[str, Any], version: str = "v3"
) -> tuple[int, dict[str, Any]]:
    async with api.put(f"/{version}/audit-log-replay-job", json=body) as answer:
        return answer.status, await answer.json(content_type=None)


@pytest.mark.parametrize("version", ["v2", "v3"])
async def test_initial_job_is_unconfigured(api: aiohttp.ClientSession, version: str) -> None:
    assert await job(api, version) == {
        "start_at": ZERO,
        "end_at": ZERO,
        "status": "unconfigured",
        "updated_at": ZERO,
    }


async def test_job_goes_accepted_running_completed(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await webhook_to(api, receiver.url)
    body = window()
    status, accepted = await put_job(api, body)
    assert status == 202
    assert accepted["status"] == "accepted"
    assert accepted["start_at"] == body["start_at"].replace("Z", ".000Z")

    seen: list[str] = []

    async def status_now() -> str:
        current = (await job(api))["status"]
        if not seen or seen[-1] != current:
            seen.append(current)
        return current

    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while await status_now() != "completed":
        assert datetime.now(UTC) < deadline, seen
        await asyncio.sleep(0.01)
    assert seen == ["accepted", "running", "completed"]


async def test_a_second_job_while_one_runs_is_409(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await webhook_to(api, receiver.url)
    status, _ = await put_job(api, window())
    assert status == 202
    status, problem = await put_job(api, window())
    assert status == 409
    assert problem["detail"] == "A replay job is currently running"
    assert problem["title"] == "Resource Conflict"


async def test_a_new_job_is_accepted_once_the_last_finished(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await webhook_to(api, receiver.url)
    await put_job(api, window())
    await wait_until_status(api, "completed")
    status, _ = await put_job(api, window(), version="v2")
    assert status == 202


async def wait_until_status(api: aiohttp.ClientSession, wanted: str) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while (await job(api))["status"] != wanted:
        assert datetime.now(UTC) < deadline
        await asyncio.sleep(0.01)


async def test_replay_redelivers_the_records_of_the_window(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await webhook_to(api, receiver.url, log_format="json")
    delivered = (await deliver(api, 4))["records"]
    await put_job(api, window())
    await wait_until_status(api, "completed")
    assert receiver.lines == delivered + delivered


async def test_replay_skips_records_outside_the_window(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await webhook_to(api, receiver.url)
    await deliver(api, 3)
    before = len(receiver.lines)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    body = {"start_at": stamp(hour_ago - timedelta(hours=1)), "end_at": stamp(hour_ago)}
    await put_job(api, body)
    await wait_until_status(api, "completed")
    assert len(receiver.lines) == before


async def test_replay_without_enabled_webhook_fails(api: aiohttp.ClientSession) -> None:
    status, _ = await put_job(api, window())
    assert status == 202
    await wait_until_status(api, "failed")


async def test_replay_that_cannot_deliver_fails(receiver: WebhookReceiver) -> None:
    async with running_emulator(max_retries=1) as konnect, api_session(konnect.url) as api:
        await webhook_to(api, receiver.url)
        await deliver(api, 1)
        receiver.default_status = 500
        await put_job(api, window())
        await wait_until_status(api, "failed")


async def test_replay_recovers_records_made_while_the_webhook_was_off(
    receiver: WebhookReceiver,
) -> None:
    async with running_emulator(event_rate=100) as konnect, api_session(konnect.url) as api:
        await wait_until(lambda: len(konnect.state.history) >= 5)
        await webhook_to(api, receiver.url)
        await put_job(api, window())
        await wait_until_status(api, "completed")
        assert len(receiver.lines) >= 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"end_at": "2030-01-01T00:00:00Z"}, "start_at"),
        ({"start_at": "2030-01-01T00:00:00Z"}, "end_at"),
        ({"start_at": "yesterday", "end_at": "2030-01-01T00:00:00Z"}, "start_at"),
        ({"start_at": "2025-01-01", "end_at": "2030-01-01T00:00:00Z"}, "start_at"),
    ],
)
async def test_malformed_window_is_400(
    api: aiohttp.ClientSession, body: dict[str, Any], field: str
) -> None:
    status, problem = await put_job(api, body)
    assert status == 400
    assert field in [p["field"] for p in problem["invalid_parameters"]]


async def test_start_after_end_is_400(api: aiohttp.ClientSession) -> None:
    now = datetime.now(UTC)
    body = {
        "start_at": stamp(now - timedelta(minutes=1)),
        "end_at": stamp(now - timedelta(hours=1)),
    }
    status, problem = await put_job(api, body)
    assert status == 400
    assert problem["invalid_parameters"][0]["field"] == "end_at"


async def test_window_older_than_7_days_is_400(api: aiohttp.ClientSession) -> None:
    now = datetime.now(UTC)
    body = {"start_at": stamp(now - timedelta(days=8)), "end_at": stamp(now)}
    status, problem = await put_job(api, body)
    assert status == 400
    assert problem["invalid_parameters"][0] == {
        "field": "start_at",
        "reason": "must be within the last 7 days",
        "rule": "invalid",
        "source": "body",
    }


async def test_window_in_the_future_is_400(api: aiohttp.ClientSession) -> None:
    status, problem = await put_job(api, window(minutes_forward=60))
    assert status == 400
    assert problem["invalid_parameters"][0]["field"] == "end_at"


async def test_failed_validation_leaves_the_job_unchanged(emulator: RunningEmulator) -> None:
    async with api_session(emulator.url) as api:
        await put_job(api, {"start_at": "bad"})
        assert (await job(api))["status"] == "unconfigured"
