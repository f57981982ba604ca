"""Every API route wants the bearer token, except the JWKS; errors are problem+json."""

from __future__ import annotations

import aiohttp
import pytest

from kongctl.emulator.app import RunningEmulator
from tests.emulator_support import api_session, running_emulator

API_ROUTES = [
    ("GET", "/v2/audit-log-destinations"),
    ("POST", "/v2/audit-log-destinations"),
    ("GET", "/v2/audit-log-destinations/07ec3858-066b-4629-bdc5-d4aa893b424d"),
    ("PATCH", "/v2/audit-log-destinations/07ec3858-066b-4629-bdc5-d4aa893b424d"),
    ("DELETE", "/v2/audit-log-destinations/07ec3858-066b-4629-bdc5-d4aa893b424d"),
    ("GET", "/v2/audit-log-webhook"),
    ("PATCH", "/v2/audit-log-webhook"),
    ("GET", "/v2/audit-log-webhook/status"),
    ("GET", "/v2/audit-log-replay-job"),
    ("PUT", "/v2/audit-log-replay-job"),
    ("GET", "/v3/audit-log-destinations"),
    ("POST", "/v3/audit-log-destinations"),
    ("GET", "/v3/audit-log-destinations/07ec3858-066b-4629-bdc5-d4aa893b424d"),
    ("PATCH", "/v3/audit-log-destinations/07ec3858-066b-4629-bdc5-d4aa893b424d"),
    ("DELETE", "/v3/audit-log-destinations/07ec3858-066b-4629-bdc5-d4aa893b424d"),
    ("GET", "/v3/audit-log-webhook"),
    ("PATCH", "/v3/audit-log-webhook"),
    ("DELETE", "/v3/audit-log-webhook"),
    ("GET", "/v3/audit-log-webhook/status"),
    ("GET", "/v3/audit-log-replay-job"),
    ("PUT", "/v3/audit-log-replay-job"),
]


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
async def test_every_api_route_refuses_a_request_without_token(
    emulator: RunningEmulator, method: str, path: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{emulator.url}{path}", json={}) as answer,
    ):
        assert answer.status == 401
        assert answer.content_type == "application/problem+json"
        problem = await answer.json(content_type=None)
    assert problem["status"] == 401
    assert problem["title"] == "Unauthorized"
    assert problem["detail"]
    assert problem["instance"].startswith("kong:trace:")


async def test_a_wrong_token_is_unauthorized(emulator: RunningEmulator) -> None:
    async with (
        api_session(emulator.url, token="kpat_wrong") as http,
        http.get("/v3/audit-log-destinations") as answer,
    ):
        assert answer.status == 401
        problem = await answer.json(content_type=None)
    assert problem["title"] == "Unauthorized"


async def test_a_non_bearer_scheme_is_unauthorized(emulator: RunningEmulator) -> None:
    headers = {"Authorization": "Basic kpat_emulator"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(f"{emulator.url}/v2/audit-log-webhook") as answer,
    ):
        assert answer.status == 401


async def test_a_custom_token_is_the_one_accepted() -> None:
    async with running_emulator(token="spat_custom") as running:
        async with (
            api_session(running.url, token="spat_custom") as http,
            http.get("/v3/audit-log-destinations") as answer,
        ):
            assert answer.status == 200
        async with (
            api_session(running.url) as http,
            http.get("/v3/audit-log-destinations") as answer,
        ):
            assert answer.status == 401


async def test_jwks_needs_no_token(emulator: RunningEmulator) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{emulator.url}/v2/audit-log-webhook/jwks.json") as answer,
    ):
        assert answer.status == 200


async def test_unknown_api_paths_are_problem_404(api: aiohttp.ClientSession) -> None:
    async with api.get("/v3/audit-log-nothing") as answer:
        assert answer.status == 404
        assert answer.content_type == "application/problem+json"
        problem = await answer.json(content_type=None)
    assert problem["title"] == "Not Found"


async def test_wrong_method_is_problem_405(api: aiohttp.ClientSession) -> None:
    async with api.post("/v3/audit-log-webhook") as answer:
        assert answer.status == 405
        assert answer.content_type == "application/problem+json"
        assert "PATCH" in answer.headers["Allow"]
