"""The region's one webhook: the v2 in-place view, the v3 binding, and how they agree."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from tests.emulator_support import bind_webhook, create_destination

UNCONFIGURED = {
    "enabled": False,
    "endpoint": "unconfigured",
    "log_format": "cef",
    "skip_ssl_verification": False,
}


async def get_json(api: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with api.get(path) as answer:
        return answer.status, await answer.json(content_type=None)


async def test_unconfigured_region_reads_unconfigured_in_v2(api: aiohttp.ClientSession) -> None:
    status, view = await get_json(api, "/v2/audit-log-webhook")
    assert status == 200
    assert {k: view[k] for k in UNCONFIGURED} == UNCONFIGURED
    assert view["updated_at"] == "0001-01-01T00:00:00Z"


async def test_unconfigured_region_is_404_in_v3(api: aiohttp.ClientSession) -> None:
    status, body = await get_json(api, "/v3/audit-log-webhook")
    assert status == 404
    assert body["title"] == "Not Found"


async def test_binding_shows_the_destination_in_both_views(api: aiohttp.ClientSession) -> None:
    destination = await create_destination(
        api, endpoint="https://hooks.example/x", log_format="cps", skip_ssl_verification=True
    )
    bound = await bind_webhook(api, destination["id"])
    assert bound == {"audit_log_destination_id": destination["id"], "enabled": True}

    _, v3 = await get_json(api, "/v3/audit-log-webhook")
    assert v3 == bound
    _, v2 = await get_json(api, "/v2/audit-log-webhook")
    assert v2["endpoint"] == "https://hooks.example/x"
    assert v2["log_format"] == "cps"
    assert v2["skip_ssl_verification"] is True
    assert v2["enabled"] is True
    assert v2["updated_at"] != "0001-01-01T00:00:00Z"


async def test_v2_view_follows_destination_updates(api: aiohttp.ClientSession) -> None:
    destination = await create_destination(api)
    await bind_webhook(api, destination["id"], enabled=False)
    patch = {"endpoint": "https://moved.example/y"}
    async with api.patch(f"/v3/audit-log-destinations/{destination['id']}", json=patch):
        pass
    _, v2 = await get_json(api, "/v2/audit-log-webhook")
    assert v2["endpoint"] == "https://moved.example/y"
    assert v2["enabled"] is False


async def test_v3_delete_unconfigures_the_region(api: aiohttp.ClientSession) -> None:
    destination = await create_destination(api)
    await bind_webhook(api, destination["id"])
    async with api.delete("/v3/audit-log-webhook") as answer:
        assert answer.status == 204
    status, _ = await get_json(api, "/v3/audit-log-webhook")
    assert status == 404
    _, v2 = await get_json(api, "/v2/audit-log-webhook")
    assert {k: v2[k] for k in UNCONFIGURED} == UNCONFIGURED


async def test_v3_delete_of_nothing_is_404(api: aiohttp.ClientSession) -> None:
    async with api.delete("/v3/audit-log-webhook") as answer:
        assert answer.status == 404


async def test_v3_patch_toggles_enabled_of_the_binding(api: aiohttp.ClientSession) -> None:
    destination = await create_destination(api)
    await bind_webhook(api, destination["id"])
    async with api.patch("/v3/audit-log-webhook", json={"enabled": False}) as answer:
        assert answer.status == 200
        assert await answer.json() == {
            "audit_log_destination_id": destination["id"],
            "enabled": False,
        }
    _, v2 = await get_json(api, "/v2/audit-log-webhook")
    assert v2["enabled"] is False


async def test_v3_patch_binding_without_enabled_starts_disabled(
    api: aiohttp.ClientSession,
) -> None:
    destination = await create_destination(api)
    body = {"audit_log_destination_id": destination["id"]}
    async with api.patch("/v3/audit-log-webhook", json=body) as answer:
        assert (await answer.json())["enabled"] is False


async def test_v3_patch_without_binding_is_404(api: aiohttp.ClientSession) -> None:
    async with api.patch("/v3/audit-log-webhook", json={"enabled": True}) as answer:
        assert answer.status == 404


@pytest.mark.parametrize("bad_id", ["nope", "1234", 42])
async def test_v3_patch_with_malformed_destination_id_is_400(
    api: aiohttp.ClientSession, bad_id: object
) -> None:
    body = {"audit_log_destination_id": bad_id, "enabled": True}
    async with api.patch("/v3/audit-log-webhook", json=body) as answer:
        assert answer.status == 400
        problem = await answer.json(content_type=None)
    assert problem["detail"] == "Could not parse destination id"
    assert problem["invalid_parameters"][0]["field"] == "audit_log_destination_id"


async def test_v3_patch_with_unknown_destination_is_400(api: aiohttp.ClientSession) -> None:
    body = {"audit_log_destination_id": str(uuid.uuid4()), "enabled": True}
    async with api.patch("/v3/audit-log-webhook", json=body) as answer:
        assert answer.status == 400
        problem = await answer.json(content_type=None)
    assert problem["invalid_parameters"][0]["field"] == "audit_log_destination_id"
    assert problem["invalid_parameters"][0]["rule"] == "missing_reference"


async def test_v3_patch_enabled_must_be_boolean(api: aiohttp.ClientSession) -> None:
    destination = await create_destination(api)
    body = {"audit_log_destination_id": destination["id"], "enabled": "yes"}
    async with api.patch("/v3/audit-log-webhook", json=body) as answer:
        assert answer.status == 400


async def test_v2_patch_configures_the_webhook_in_place(api: aiohttp.ClientSession) -> None:
    body = {
        "endpoint": "https://legacy.example/logs",
        "authorization": "Bearer legacy",
        "log_format": "json",
        "enabled": True,
    }
    async with api.patch("/v2/audit-log-webhook", json=body) as answer:
        assert answer.status == 200
        view = await answer.json()
    assert view["endpoint"] == "https://legacy.example/logs"
    assert view["log_format"] == "json"
    assert view["enabled"] is True
    assert "authorization" not in view


async def test_v2_patch_disables(api: aiohttp.ClientSession) -> None:
    destination = await create_destination(api)
    await bind_webhook(api, destination["id"])
    async with api.patch("/v2/audit-log-webhook", json={"enabled": False}) as answer:
        assert (await answer.json())["enabled"] is False
    _, v3 = await get_json(api, "/v3/audit-log-webhook")
    assert v3 == {"audit_log_destination_id": destination["id"], "enabled": False}


async def test_v2_enable_without_endpoint_is_400(api: aiohttp.ClientSession) -> None:
    async with api.patch("/v2/audit-log-webhook", json={"enabled": True}) as answer:
        assert answer.status == 400
        problem = await answer.json(content_type=None)
    assert problem["invalid_parameters"] == [
        {"field": "endpoint", "reason": "cannot be blank", "source": "body"}
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"endpoint": "nope"}, "endpoint"),
        ({"endpoint": ""}, "endpoint"),
        ({"authorization": ""}, "authorization"),
        ({"log_format": "yaml"}, "log_format"),
        ({"skip_ssl_verification": 1}, "skip_ssl_verification"),
        ({"enabled": "true"}, "enabled"),
    ],
)
async def test_v2_patch_validates_fields(
    api: aiohttp.ClientSession, body: dict[str, Any], field: str
) -> None:
    async with api.patch("/v2/audit-log-webhook", json=body) as answer:
        assert answer.status == 400
        problem = await answer.json(content_type=None)
    assert [p["field"] for p in problem["invalid_parameters"]] == [field]


async def test_status_of_unconfigured_region(api: aiohttp.ClientSession) -> None:
    for version in ("v2", "v3"):
        status, body = await get_json(api, f"/{version}/audit-log-webhook/status")
        assert status == 200
        assert body == {
            "webhook_status": "unconfigured",
            "webhook_enabled": False,
            "last_attempt_at": "0001-01-01T00:00:00Z",
            "last_response_code": 0,
            "last_response_message": "",
        }


async def test_status_of_bound_webhook_before_any_attempt_is_active(
    api: aiohttp.ClientSession,
) -> None:
    destination = await create_destination(api)
    await bind_webhook(api, destination["id"])
    _, body = await get_json(api, "/v3/audit-log-webhook/status")
    assert body["webhook_status"] == "active"
    assert body["webhook_enabled"] is True
