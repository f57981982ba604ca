"""Fault injection through the admin API: status, delay, reset, Retry-After and times."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from kongctl.emulator.app import RunningEmulator
from tests.emulator_support import admin_state, bind_webhook, create_destination


async def add_faults(api: aiohttp.ClientSession, *rules: dict[str, Any]) -> None:
    async with api.post("/_emulator/faults", json={"rules": list(rules)}) as answer:
        assert answer.status == 200, await answer.text()


async def status_of(api: aiohttp.ClientSession, method: str, path: str) -> int:
    async with api.request(method, path) as answer:
        return answer.status


async def test_status_rule_answers_problem_json(api: aiohttp.ClientSession) -> None:
    await add_faults(api, {"method": "GET", "path": "/v3/*", "status": 503, "detail": "down"})
    async with api.get("/v3/audit-log-destinations") as answer:
        assert answer.status == 503
        assert answer.content_type == "application/problem+json"
        problem = await answer.json(content_type=None)
    assert problem["detail"] == "down"
    assert problem["title"] == "Service Unavailable"


async def test_rule_applies_only_to_matching_method_and_path(api: aiohttp.ClientSession) -> None:
    await add_faults(api, {"method": "POST", "path": "/v3/audit-log-destinations", "status": 500})
    assert await status_of(api, "GET", "/v3/audit-log-destinations") == 200
    assert await status_of(api, "POST", "/v2/audit-log-destinations") == 400


async def test_times_limits_how_often_a_rule_fires(api: aiohttp.ClientSession) -> None:
    await add_faults(
        api, {"method": "*", "path": "/v2/audit-log-webhook", "status": 502, "times": 2}
    )
    statuses = [await status_of(api, "GET", "/v2/audit-log-webhook") for _ in range(3)]
    assert statuses == [502, 502, 200]


async def test_retry_after_header_is_sent(api: aiohttp.ClientSession) -> None:
    await add_faults(api, {"path": "/v3/*", "status": 429, "retry_after": 1})
    async with api.get("/v3/audit-log-destinations") as answer:
        assert answer.status == 429
        assert answer.headers["Retry-After"] == "1"


async def test_delay_rule_slows_the_real_answer(api: aiohttp.ClientSession) -> None:
    await add_faults(api, {"path": "/v3/audit-log-destinations", "delay": 0.3, "times": 1})
    started = time.monotonic()
    assert await status_of(api, "GET", "/v3/audit-log-destinations") == 200
    assert time.monotonic() - started >= 0.3


async def test_reset_rule_drops_the_connection(emulator: RunningEmulator) -> None:
    rule = {"path": "/v3/audit-log-destinations", "reset": True, "times": 1}
    async with (
        aiohttp.ClientSession() as admin,
        admin.post(f"{emulator.url}/_emulator/faults", json={"rules": [rule]}) as answer,
    ):
        assert answer.status == 200
    headers = {"Authorization": "Bearer kpat_emulator"}
    async with aiohttp.ClientSession(headers=headers) as api:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with api.post(f"{emulator.url}/v3/audit-log-destinations", json={}):
                pass
    state = emulator.state.snapshot()
    assert state["requests"][-1] == {
        "method": "POST",
        "path": "/v3/audit-log-destinations",
        "status": None,
    }


async def test_409_rule_on_destination_delete_says_in_use(api: aiohttp.ClientSession) -> None:
    destination = await create_destination(api)
    await add_faults(
        api, {"method": "DELETE", "path": "/v3/audit-log-destinations/*", "status": 409}
    )
    async with api.delete(f"/v3/audit-log-destinations/{destination['id']}") as answer:
        assert answer.status == 409
        assert (await answer.json(content_type=None))["detail"] == "Destination is in use"


async def test_faults_take_precedence_over_auth(emulator: RunningEmulator) -> None:
    rule = {"path": "/v2/*", "status": 500}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emulator.url}/_emulator/faults", json={"rules": [rule]}):
            pass
        async with http.get(f"{emulator.url}/v2/audit-log-webhook") as answer:
            assert answer.status == 500


async def test_admin_paths_are_never_faulted(api: aiohttp.ClientSession) -> None:
    await add_faults(api, {"path": "*", "status": 500})
    async with api.get("/_emulator/state") as answer:
        assert answer.status == 200


async def test_clearing_faults_restores_normal_answers(api: aiohttp.ClientSession) -> None:
    await add_faults(api, {"path": "*", "status": 500})
    async with api.delete("/_emulator/faults") as answer:
        assert answer.status == 204
    assert await status_of(api, "GET", "/v3/audit-log-destinations") == 200


async def test_rules_are_listed(api: aiohttp.ClientSession) -> None:
    await add_faults(api, {"method": "DELETE", "path": "/v3/*", "status": 409, "times": 3})
    async with api.get("/_emulator/faults") as answer:
        rules = (await answer.json())["rules"]
    assert rules[0]["times"] == 3
    assert rules[0]["status"] == 409


@pytest.mark.parametrize(
    "body",
    [
        {"rules": [{"path": "*"}]},
        {"rules": [{"status": 99}]},
        {"rules": [{"status": 500, "times": 0}]},
        {"rules": [{"status": 500, "bogus": 1}]},
        {"rules": "nope"},
        [],
    ],
)
async def test_malformed_rules_are_rejected(api: aiohttp.ClientSession, body: Any) -> None:
    async with api.post("/_emulator/faults", json=body) as answer:
        assert answer.status == 400


async def test_in_use_binding_still_wins_without_faults(api: aiohttp.ClientSession) -> None:
    destination = await create_destination(api)
    await bind_webhook(api, destination["id"], enabled=False)
    assert await status_of(api, "DELETE", f"/v3/audit-log-destinations/{destination['id']}") == 409
    assert [r["status"] for r in (await admin_state(api))["requests"]][-1] == 409
