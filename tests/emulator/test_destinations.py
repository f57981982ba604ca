"""Audit-log destinations: create, read, list with cursors and filters, update, delete."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from tests.emulator_support import admin_state, bind_webhook, create_destination

DESTINATION_KEYS = {
    "id",
    "name",
    "endpoint",
    "log_format",
    "skip_ssl_verification",
    "created_at",
    "updated_at",
}


async def problem(answer: aiohttp.ClientResponse) -> dict[str, Any]:
    assert answer.content_type == "application/problem+json"
    body: dict[str, Any] = await answer.json(content_type=None)
    assert {"status", "title", "detail", "instance"} <= set(body)
    assert body["status"] == answer.status
    return body


def fields_of(body: dict[str, Any]) -> dict[str, str]:
    return {p["field"]: p["reason"] for p in body["invalid_parameters"]}


@pytest.mark.parametrize("version", ["v2", "v3"])
async def test_created_destination_reads_back_without_authorization(
    api: aiohttp.ClientSession, version: str
) -> None:
    created = await create_destination(
        api,
        version,
        name="mine",
        endpoint="https://example.com/a",
        log_format="cef",
        skip_ssl_verification=True,
    )
    assert set(created) == DESTINATION_KEYS
    assert created["name"] == "mine"
    assert created["log_format"] == "cef"
    assert created["skip_ssl_verification"] is True
    uuid.UUID(created["id"])

    async with api.get(f"/{version}/audit-log-destinations/{created['id']}") as answer:
        assert answer.status == 200
        assert await answer.json() == created


async def test_both_versions_share_one_store(api: aiohttp.ClientSession) -> None:
    created = await create_destination(api, "v2")
    async with api.get(f"/v3/audit-log-destinations/{created['id']}") as answer:
        assert answer.status == 200


async def test_authorization_is_kept_for_delivery_but_never_returned(
    api: aiohttp.ClientSession,
) -> None:
    created = await create_destination(api, authorization="Bearer s3cret")
    async with api.get("/v3/audit-log-destinations") as answer:
        listed = await answer.json()
    assert "authorization" not in listed["data"][0]
    assert "authorization" not in created
    state = await admin_state(api)
    assert state["destinations"][0]["authorization"] == "Bearer s3cret"


async def test_skip_ssl_verification_defaults_to_false(api: aiohttp.ClientSession) -> None:
    created = await create_destination(api)
    assert created["skip_ssl_verification"] is False


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"name": ""}, "name", "is a required field"),
        ({"endpoint": ""}, "endpoint", "cannot be blank"),
        ({"endpoint": "not a url"}, "endpoint", "must be a valid URL"),
        ({"endpoint": "ftp://example.com/x"}, "endpoint", "must be a valid URL"),
        ({"endpoint": "https:///no-host"}, "endpoint", "must be a valid URL"),
        ({"log_format": "xml"}, "log_format", "must be one of: cef, json, cps"),
        ({"authorization": ""}, "authorization", "cannot be blank"),
        ({"skip_ssl_verification": "yes"}, "skip_ssl_verification", "must be a boolean"),
    ],
)
async def test_invalid_destination_is_rejected_with_the_field(
    api: aiohttp.ClientSession, body: dict[str, Any], field: str, reason: str
) -> None:
    payload = {
        "name": "n",
        "endpoint": "https://example.com/a",
        "log_format": "json",
        "authorization": "Bearer x",
        **body,
    }
    async with api.post("/v3/audit-log-destinations", json=payload) as answer:
        assert answer.status == 400
        assert fields_of(await problem(answer)) == {field: reason}


async def test_log_format_error_lists_the_choices(api: aiohttp.ClientSession) -> None:
    payload = {"name": "n", "endpoint": "https://e.com", "log_format": "xml", "authorization": "a"}
    async with api.post("/v3/audit-log-destinations", json=payload) as answer:
        entry = (await problem(answer))["invalid_parameters"][0]
    assert entry["rule"] == "enum"
    assert entry["choices"] == ["cef", "json", "cps"]


async def test_v3_requires_authorization_but_v2_does_not(api: aiohttp.ClientSession) -> None:
    payload = {"name": "n", "endpoint": "https://example.com/a", "log_format": "json"}
    async with api.post("/v3/audit-log-destinations", json=payload) as answer:
        assert answer.status == 400
        assert fields_of(await problem(answer)) == {"authorization": "cannot be blank"}
    async with api.post("/v2/audit-log-destinations", json=payload) as answer:
        assert answer.status == 201


async def test_missing_fields_are_all_reported(api: aiohttp.ClientSession) -> None:
    async with api.post("/v3/audit-log-destinations", json={}) as answer:
        body = await problem(answer)
    assert body["detail"] == "Required field missing"
    assert set(fields_of(body)) == {"name", "endpoint", "log_format", "authorization"}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
async def test_unparsable_body_is_request_format_invalid(
    api: aiohttp.ClientSession, raw: bytes
) -> None:
    headers = {"Content-Type": "application/json"}
    async with api.post("/v3/audit-log-destinations", data=raw, headers=headers) as answer:
        assert answer.status == 400
        body = await problem(answer)
    assert body["invalid_parameters"] == [{"field": "body", "reason": "request format is invalid"}]


async def test_duplicate_names_are_allowed(api: aiohttp.ClientSession) -> None:
    first = await create_destination(api, name="same")
    second = await create_destination(api, name="same")
    assert first["id"] != second["id"]


async def test_listing_pages_through_25_destinations(api: aiohttp.ClientSession) -> None:
    for index in range(25):
        await create_destination(api, name=f"d{index:02d}")

    names: list[str] = []
    path: str | None = "/v3/audit-log-destinations?page%5Bsize%5D=10"
    pages = 0
    while path is not None:
        async with api.get(path) as answer:
            assert answer.status == 200
            page = await answer.json()
        pages += 1
        names += [d["name"] for d in page["data"]]
        assert page["meta"]["size"] == 10
        path = page["meta"]["next"]
    assert pages == 3
    assert names == [f"d{index:02d}" for index in range(25)]


async def test_previous_link_walks_back(api: aiohttp.ClientSession) -> None:
    for index in range(5):
        await create_destination(api, name=f"d{index}")
    async with api.get("/v2/audit-log-destinations", params={"page[size]": "2"}) as answer:
        first = await answer.json()
    assert first["meta"]["previous"] is None
    async with api.get(first["meta"]["next"]) as answer:
        second = await answer.json()
    assert [d["name"] for d in second["data"]] == ["d2", "d3"]
    assert second["meta"]["next"].startswith("/v2/audit-log-destinations?")
    async with api.get(second["meta"]["previous"]) as answer:
        back = await answer.json()
    assert [d["name"] for d in back["data"]] == ["d0", "d1"]


async def test_default_page_size_is_10(api: aiohttp.ClientSession) -> None:
    for index in range(11):
        await create_destination(api, name=f"d{index}")
    async with api.get("/v3/audit-log-destinations") as answer:
        page = await answer.json()
    assert len(page["data"]) == 10
    assert page["meta"]["size"] == 10
    assert page["meta"]["next"] is not None


async def test_empty_list_has_no_next_page(api: aiohttp.ClientSession) -> None:
    async with api.get("/v3/audit-log-destinations") as answer:
        page = await answer.json()
    assert page["data"] == []
    assert page["meta"]["next"] is None
    assert page["meta"]["previous"] is None


@pytest.mark.parametrize("size", ["0", "101", "ten"])
async def test_out_of_range_page_size_is_rejected(api: aiohttp.ClientSession, size: str) -> None:
    async with api.get("/v3/audit-log-destinations", params={"page[size]": size}) as answer:
        assert answer.status == 400
        body = await problem(answer)
    assert body["invalid_parameters"][0]["field"] == "page[size]"
    assert body["invalid_parameters"][0]["source"] == "query"


async def test_garbage_cursor_is_rejected(api: aiohttp.ClientSession) -> None:
    async with api.get("/v3/audit-log-destinations", params={"page[after]": "@@@"}) as answer:
        assert answer.status == 400


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"filter[name][eq]": "kongctl-a"}, ["kongctl-a"]),
        ({"filter[name]": "kongctl-a"}, ["kongctl-a"]),
        ({"filter[name][contains]": "kongctl"}, ["kongctl-a", "kongctl-b"]),
        ({"filter[name][eq]": "nope"}, []),
    ],
)
async def test_name_filter(
    api: aiohttp.ClientSession, params: dict[str, str], expected: list[str]
) -> None:
    for name in ("kongctl-a", "other", "kongctl-b"):
        await create_destination(api, name=name)
    async with api.get("/v3/audit-log-destinations", params=params) as answer:
        page = await answer.json()
    assert [d["name"] for d in page["data"]] == expected


async def test_filter_is_kept_in_next_link(api: aiohttp.ClientSession) -> None:
    for index in range(3):
        await create_destination(api, name=f"keep-{index}")
        await create_destination(api, name=f"drop-{index}")
    params = {"filter[name][contains]": "keep", "page[size]": "2"}
    async with api.get("/v3/audit-log-destinations", params=params) as answer:
        page = await answer.json()
    async with api.get(page["meta"]["next"]) as answer:
        rest = await answer.json()
    assert [d["name"] for d in rest["data"]] == ["keep-2"]
    assert rest["meta"]["next"] is None


async def test_patch_changes_given_fields_only(api: aiohttp.ClientSession) -> None:
    created = await create_destination(api, name="before", log_format="cef")
    path = f"/v3/audit-log-destinations/{created['id']}"
    async with api.patch(path, json={"name": "after"}) as answer:
        assert answer.status == 200
        updated = await answer.json()
    assert updated["name"] == "after"
    assert updated["log_format"] == "cef"
    assert updated["endpoint"] == created["endpoint"]
    assert updated["updated_at"] >= created["updated_at"]


async def test_patch_validates_like_create(api: aiohttp.ClientSession) -> None:
    created = await create_destination(api)
    path = f"/v2/audit-log-destinations/{created['id']}"
    async with api.patch(path, json={"endpoint": "nope"}) as answer:
        assert answer.status == 400
        assert fields_of(await problem(answer)) == {"endpoint": "must be a valid URL"}


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("destination_id", [str(uuid.uuid4()), "not-a-uuid"])
async def test_unknown_destination_is_404(
    api: aiohttp.ClientSession, method: str, destination_id: str
) -> None:
    path = f"/v3/audit-log-destinations/{destination_id}"
    async with api.request(method, path, json={"name": "x"}) as answer:
        assert answer.status == 404
        assert (await problem(answer))["title"] == "Not Found"


async def test_delete_removes_the_destination(api: aiohttp.ClientSession) -> None:
    created = await create_destination(api)
    path = f"/v3/audit-log-destinations/{created['id']}"
    async with api.delete(path) as answer:
        assert answer.status == 204
    async with api.get(path) as answer:
        assert answer.status == 404


@pytest.mark.parametrize("enabled", [True, False])
async def test_destination_bound_to_webhook_is_in_use(
    api: aiohttp.ClientSession, enabled: bool
) -> None:
    created = await create_destination(api)
    await bind_webhook(api, created["id"], enabled=enabled)
    async with api.delete(f"/v3/audit-log-destinations/{created['id']}") as answer:
        assert answer.status == 409
        assert (await problem(answer))["detail"] == "Destination is in use"

    async with api.delete("/v3/audit-log-webhook") as answer:
        assert answer.status == 204
    async with api.delete(f"/v3/audit-log-destinations/{created['id']}") as answer:
        assert answer.status == 204


@pytest.mark.parametrize("version", ["v2", "v3"])
async def test_full_lifecycle_in_each_version(api: aiohttp.ClientSession, version: str) -> None:
    base = f"/{version}/audit-log-destinations"
    created = await create_destination(api, version, name="life")
    async with api.get(base, params={"filter[name][eq]": "life"}) as answer:
        assert [d["id"] for d in (await answer.json())["data"]] == [created["id"]]
    async with api.patch(f"{base}/{created['id']}", json={"log_format": "cps"}) as answer:
        assert answer.status == 200
        assert (await answer.json())["log_format"] == "cps"
    async with api.delete(f"{base}/{created['id']}") as answer:
        assert answer.status == 204
    async with api.get(base) as answer:
        assert (await answer.json())["data"] == []
