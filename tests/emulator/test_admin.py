"""The admin API: state snapshot, request log, reset and on-demand delivery."""

from __future__ import annotations

import aiohttp
import pytest

from tests.emulator_support import (
    WebhookReceiver,
    admin_state,
    bind_webhook,
    create_destination,
    deliver,
    webhook_to,
)


async def test_state_shows_destinations_webhook_and_job(api: aiohttp.ClientSession) -> None:
    destination = await create_destination(api, authorization="Bearer shown-here")
    await bind_webhook(api, destination["id"])
    state = await admin_state(api)
    assert state["destinations"][0]["authorization"] == "Bearer shown-here"
    assert state["webhook"]["v3"] == {
        "audit_log_destination_id": destination["id"],
        "enabled": True,
    }
    assert state["webhook"]["v2"]["endpoint"] == destination["endpoint"]
    assert state["replay_job"]["status"] == "unconfigured"


async def test_unconfigured_state_has_no_v3_webhook(api: aiohttp.ClientSession) -> None:
    state = await admin_state(api)
    assert state["webhook"]["v3"] is None
    assert state["webhook"]["v2"]["endpoint"] == "unconfigured"


async def test_api_requests_are_logged_with_status(api: aiohttp.ClientSession) -> None:
    async with api.get("/v3/audit-log-destinations"):
        pass
    async with api.get("/v3/audit-log-webhook"):
        pass
    state = await admin_state(api)
    assert state["requests"] == [
        {"method": "GET", "path": "/v3/audit-log-destinations", "status": 200},
        {"method": "GET", "path": "/v3/audit-log-webhook", "status": 404},
    ]


async def test_reset_empties_the_organization(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await webhook_to(api, receiver.url)
    await deliver(api, 1)
    async with api.post("/_emulator/faults", json={"rules": [{"path": "/x", "status": 500}]}):
        pass
    async with api.post("/_emulator/reset") as answer:
        assert answer.status == 204
    state = await admin_state(api)
    assert state["destinations"] == []
    assert state["webhook"]["v3"] is None
    assert state["webhook"]["v2"]["endpoint"] == "unconfigured"
    assert state["deliveries"] == []
    assert state["faults"] == []
    async with api.get("/v2/audit-log-webhook/status") as answer:
        assert (await answer.json())["webhook_status"] == "unconfigured"


@pytest.mark.parametrize("count", [0, -1, "3", 10_001])
async def test_deliver_count_must_be_sensible(
    api: aiohttp.ClientSession, receiver: WebhookReceiver, count: object
) -> None:
    await webhook_to(api, receiver.url)
    async with api.post("/_emulator/deliver", json={"count": count}) as answer:
        assert answer.status == 400


async def test_deliver_defaults_to_one_record(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await webhook_to(api, receiver.url)
    async with api.post("/_emulator/deliver") as answer:
        result = await answer.json()
    assert len(result["records"]) == 1
