"""AuditLogsAPI: the rules it adds on top of the raw Konnect calls."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

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
    server.reply(200, page(["listen"], after=None))
    found = await scripted_api.find_destination_by_name("listen", page_size=2)

    assert found == {"id": "id-listen", "name": "listen"}
    assert server.seen[1].query["page[after]"] == "c1"


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
