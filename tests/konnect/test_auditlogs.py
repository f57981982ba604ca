"""AuditLogsAPI: the rules it adds on top of the raw Konnect calls."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from kongctl.emulator.app import EMULATOR_TOKEN, EmulatorConfig, start_emulator
from kongctl.errors import ExecutionError, KonnectAPIError, KonnectError
from kongctl.konnect.auditlogs import AuditLogsAPI, next_cursor
from kongctl.konnect.client import KonnectClient

from .conftest import TOKEN, ScriptedServer

PROBLEM = "application/problem+json"
IN_USE = {"status": 409, "title": "Conflict", "detail": "destination is in use"}


@pytest.fixture
async def scripted_api(server: ScriptedServer) -> AsyncIterator[AuditLogsAPI]:
    konnect = KonnectClient(TOKEN, base_url=server.url, backoff_base=0.01, backoff_max=0.05)
    async with konnect:
        yield AuditLogsAPI(konnect)


def page(names: list[str], after: str | None) -> dict[str, object]:
    link = f"/v3/audit-log-destinations?page%5Bafter%5D={after}&page%5Bsize%5D=2" if after else None
    return {
        "data": [{"id": f"id-{n}", "name": n} for n in names],
        "meta": {"next": link, "previous": None, "size": 2},
    }


@pytest.mark.parametrize(
    ("link", "cursor"),
    [
        (None, None),
        ("", None),
        ("/v3/audit-log-destinations?page%5Bsize%5D=10", None),
        ("/v3/audit-log-destinations?page%5Bafter%5D=&page%5Bsize%5D=10", None),
        ("/v3/audit-log-destinations?page%5Bafter%5D=abc%3D%3D&page%5Bsize%5D=1", "abc=="),
        ("/v3/audit-log-destinations?page[after]=xyz&page[size]=1", "xyz"),
        # Konnect's own documented example carries a malformed page%5Bsize%5 key.
        ("/api/v2/audit-log-destinations?page%5Bafter%5D=f1%3D&page%5Bsize%5=1", "f1="),
        ("https://global.api.konghq.com/v3/audit-log-destinations?page%5Bafter%5D=q", "q"),
        (42, None),
    ],
)
def test_next_cursor_is_page_after_of_the_next_link(link: object, cursor: str | None) -> None:
    assert next_cursor(link) == cursor


async def test_list_destinations_sends_page_and_filter_parameters(
    server: ScriptedServer, scripted_api: AuditLogsAPI
) -> None:
    server.reply(200, page(["a", "b"], after="c2"))
    items, cursor = await scripted_api.list_destinations(page_size=2, after="c1", name="a")

    assert [d["name"] for d in items] == ["a", "b"]
    assert cursor == "c2"
    assert server.seen[0].query == {
        "page[size]": "2",
        "page[after]": "c1",
        "filter[name][eq]": "a",
    }


async def test_find_by_name_takes_only_an_exact_match(
    server: ScriptedServer, scripted_api: AuditLogsAPI
) -> None:
    # A server whose filter matches loosely (prefix, case) must not fool the lookup.
    server.reply(200, page(["Listen", "listen-2"], after="c1"))
    server.reply(200, page(["listen-3", "LISTEN"], after="c2"))
    server.reply(200, page(["listen"], after=None))
    found = await scripted_api.find_destination_by_name("listen", page_size=2)

    assert found == {"id": "id-listen", "name": "listen"}
    assert [s.query.get("page[after]") for s in server.seen] == [None, "c1", "c2"]


async def test_find_by_name_without_a_match_is_none(
    server: ScriptedServer, scripted_api: AuditLogsAPI
) -> None:
    server.reply(200, page(["listen-1"], after=None))
    assert await scripted_api.find_destination_by_name("listen") is None


async def test_repeating_page_cursor_stops_the_scan(
    server: ScriptedServer, scripted_api: AuditLogsAPI
) -> None:
    for _ in range(5):
        server.reply(200, page(["a"], after="same"))
    with pytest.raises(KonnectError, match="same destinations page cursor twice"):
        await scripted_api.find_destination_by_name("zzz")
    assert len(server.seen) == 2


async def test_answer_that_is_not_an_object_is_an_error(
    server: ScriptedServer, scripted_api: AuditLogsAPI
) -> None:
    server.reply(200, ["not", "an", "object"])
    with pytest.raises(KonnectError, match="expected a JSON object, got list"):
        await scripted_api.get_webhook()


async def test_destination_id_cannot_change_the_path(
    server: ScriptedServer, scripted_api: AuditLogsAPI
) -> None:
    server.reply(204)
    await scripted_api.delete_destination("../../v2/audit-log-webhook?x=1")
    assert server.seen[0].path.startswith("/v3/audit-log-destinations/")
    assert server.seen[0].query == {}


async def test_in_use_destination_is_deleted_once_free(
    server: ScriptedServer, scripted_api: AuditLogsAPI
) -> None:
    server.reply(409, IN_USE, content_type=PROBLEM)
    server.reply(409, IN_USE, content_type=PROBLEM)
    server.reply(204)
    waits: list[float] = []

    status = await scripted_api.delete_destination_when_free("d1", budget=5, on_wait=waits.append)

    assert status == 204
    assert len(waits) == 2 and all(0 < w <= 0.05 for w in waits)
    assert [s.method for s in server.seen] == ["DELETE"] * 3


async def test_destination_in_use_past_the_budget_is_left_with_a_clear_error(
    server: ScriptedServer, scripted_api: AuditLogsAPI
) -> None:
    for _ in range(200):
        server.reply(409, IN_USE, content_type=PROBLEM)
    started = time.monotonic()

    with pytest.raises(ExecutionError) as caught:
        await scripted_api.delete_destination_when_free("d1", budget=0.3)

    assert time.monotonic() - started < 1.5
    assert "destination d1 is still in use" in caught.value.message
    assert "left in Konnect" in caught.value.message


async def test_other_delete_failures_are_not_waited_out(
    server: ScriptedServer, scripted_api: AuditLogsAPI
) -> None:
    server.reply(403, {"status": 403, "title": "Forbidden", "detail": "no"}, content_type=PROBLEM)
    with pytest.raises(KonnectAPIError) as caught:
        await scripted_api.delete_destination_when_free("d1", budget=5)
    assert caught.value.status == 403
    assert len(server.seen) == 1


# Against the Konnect emulator.

EMULATOR_AUTH = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}


@pytest.fixture
async def emulator_url() -> AsyncIterator[str]:
    # No generated events: these tests look at the API, not at deliveries.
    running = await start_emulator(EmulatorConfig(event_rate=0, seed=7), port=0)
    try:
        yield running.url
    finally:
        await running.stop()


@pytest.fixture
async def api(emulator_url: str) -> AsyncIterator[AuditLogsAPI]:
    konnect = KonnectClient(
        EMULATOR_TOKEN, base_url=emulator_url, backoff_base=0.01, backoff_max=0.05
    )
    async with konnect:
        yield AuditLogsAPI(konnect)


async def add_faults(emulator_url: str, *rules: dict[str, object]) -> None:
    async with (
        aiohttp.ClientSession(headers=EMULATOR_AUTH) as http,
        http.post(f"{emulator_url}/_emulator/faults", json={"rules": list(rules)}) as answer,
    ):
        assert answer.status < 300, await answer.text()


async def emulator_state(emulator_url: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers=EMULATOR_AUTH) as http,
        http.get(f"{emulator_url}/_emulator/state") as answer,
    ):
        assert answer.status == 200, await answer.text()
        state: dict[str, Any] = await answer.json()
        return state


async def create(api: AuditLogsAPI, name: str) -> dict[str, Any]:
    return await api.create_destination(
        name=name,
        endpoint=f"https://listener.example/{name}",
        log_format="json",
        authorization="Bearer shared-secret",
        skip_ssl_verification=False,
    )


def destination_ids(state: dict[str, Any]) -> set[str]:
    return {d["id"] for d in state["destinations"]}


async def test_fresh_region_has_an_unconfigured_webhook(api: AuditLogsAPI) -> None:
    webhook = await api.get_webhook()
    assert webhook["enabled"] is False
    assert webhook["endpoint"] == "unconfigured"
    assert await api.get_webhook_binding() is None
    assert "webhook_status" in await api.get_webhook_status()


async def test_destination_is_created_read_updated_and_deleted(api: AuditLogsAPI) -> None:
    created = await create(api, "lifecycle")
    assert created["name"] == "lifecycle"
    assert "authorization" not in created

    fetched = await api.get_destination(created["id"])
    assert fetched["endpoint"] == "https://listener.example/lifecycle"

    updated = await api.update_destination(created["id"], {"log_format": "cef"})
    assert updated["log_format"] == "cef"

    assert await api.delete_destination(created["id"]) in (200, 202, 204)
    with pytest.raises(KonnectAPIError) as caught:
        await api.get_destination(created["id"])
    assert caught.value.status == 404
    assert await api.delete_destination(created["id"]) == 404


async def test_invalid_destination_is_refused_with_the_field_named(api: AuditLogsAPI) -> None:
    with pytest.raises(KonnectAPIError) as caught:
        await api.create_destination(
            name="bad",
            endpoint="not a url",
            log_format="json",
            authorization="Bearer x",
            skip_ssl_verification=False,
        )
    assert caught.value.status == 400
    assert "endpoint" in str(caught.value)


async def test_webhook_is_bound_disabled_and_unbound(api: AuditLogsAPI) -> None:
    destination = await create(api, "bound")

    await api.bind_webhook(destination["id"])
    assert await api.get_webhook_binding() == {
        "audit_log_destination_id": destination["id"],
        "enabled": True,
    }
    webhook = await api.get_webhook()
    assert (webhook["enabled"], webhook["endpoint"]) == (True, destination["endpoint"])

    assert (await api.disable_webhook())["enabled"] is False
    assert await api.unbind_webhook() is True
    assert await api.get_webhook_binding() is None
    assert await api.unbind_webhook() is False


async def test_webhook_is_configured_in_place_through_v2(api: AuditLogsAPI) -> None:
    body = {"endpoint": "https://listener.example/v2", "authorization": "Bearer x"}
    await api.update_webhook_v2({**body, "log_format": "json", "enabled": True})
    webhook = await api.get_webhook()
    assert (webhook["enabled"], webhook["endpoint"]) == (True, "https://listener.example/v2")


async def test_destinations_are_listed_across_pages(api: AuditLogsAPI) -> None:
    names = [f"dest-{n:02d}" for n in range(25)]
    for name in names:
        await create(api, name)

    first, cursor = await api.list_destinations(page_size=10)
    assert len(first) == 10 and cursor is not None
    listed = [d["name"] async for d in api.iter_destinations(page_size=10)]
    assert sorted(listed) == names


async def test_destination_on_page_three_is_found_by_name(api: AuditLogsAPI) -> None:
    # The emulator honours filter[name][eq], so this pins the lookup against real cursors;
    # test_find_by_name_takes_only_an_exact_match pins the scan when a filter is loose.
    for n in range(25):
        await create(api, f"dest-{n:02d}")
    on_page_three = [d async for d in api.iter_destinations(page_size=10)][23]

    found = await api.find_destination_by_name(on_page_three["name"], page_size=10)

    assert found == on_page_three
    assert await api.find_destination_by_name("dest-2") is None


async def test_destination_busy_twice_is_deleted_on_the_third_try(
    api: AuditLogsAPI, emulator_url: str
) -> None:
    destination = await create(api, "busy")
    await add_faults(
        emulator_url,
        {
            "method": "DELETE",
            "path": "/v3/audit-log-destinations/*",
            "status": 409,
            "detail": "destination is in use",
            "times": 2,
        },
    )
    waits: list[float] = []

    status = await api.delete_destination_when_free(
        destination["id"], budget=5, on_wait=waits.append
    )

    assert status in (200, 202, 204)
    assert len(waits) == 2
    assert destination["id"] not in destination_ids(await emulator_state(emulator_url))


async def test_destination_bound_to_the_webhook_is_left_after_the_budget(
    api: AuditLogsAPI, emulator_url: str
) -> None:
    destination = await create(api, "bound-forever")
    await api.bind_webhook(destination["id"])

    with pytest.raises(ExecutionError) as caught:
        await api.delete_destination_when_free(destination["id"], budget=0.3)

    assert f"destination {destination['id']} is still in use" in caught.value.message
    assert "left in Konnect" in caught.value.message
    assert destination["id"] in destination_ids(await emulator_state(emulator_url))


async def test_transient_konnect_failures_are_retried(api: AuditLogsAPI, emulator_url: str) -> None:
    await add_faults(
        emulator_url,
        {"method": "GET", "path": "/v2/audit-log-webhook", "status": 503, "times": 2},
        {"method": "GET", "path": "/v2/audit-log-webhook/jwks.json", "reset": True, "times": 1},
    )
    assert (await api.get_webhook())["enabled"] is False
    assert (await api.get_jwks())["keys"]


async def test_replay_job_is_accepted_and_read_back(api: AuditLogsAPI) -> None:
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(hours=1)
    start_at, end_at = (t.isoformat().replace("+00:00", "Z") for t in (start, end))

    job = await api.put_replay_job(start_at, end_at)
    assert job["status"] in ("accepted", "pending", "running", "completed")
    read_back = await api.get_replay_job()
    assert parse_time(read_back["start_at"]) == start
    assert parse_time(read_back["end_at"]) == end


async def test_signing_keys_are_ed25519(api: AuditLogsAPI) -> None:
    jwks = await api.get_jwks()
    assert jwks["keys"]
    assert {(k["kty"], k["crv"]) for k in jwks["keys"]} == {("OKP", "Ed25519")}


async def test_wrong_token_is_refused_with_a_hint(emulator_url: str) -> None:
    async with KonnectClient("kpat_wrong", base_url=emulator_url) as konnect:
        with pytest.raises(KonnectAPIError) as caught:
            await AuditLogsAPI(konnect).get_webhook()
    assert caught.value.status == 401
    assert caught.value.hint and "--pat" in caught.value.hint


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
