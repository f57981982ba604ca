"""KonnectClient against real HTTP servers on loopback."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kongctl
from kongctl.errors import KonnectAPIError, KonnectConnectionError, KonnectError, UsageError
from kongctl.konnect import client as client_module
from kongctl.konnect.client import (
    KonnectClient,
    backoff_delay,
    parse_retry_after,
    resolve_base_urls,
)

from .conftest import TOKEN, ScriptedServer

PROBLEM = "application/problem+json"


def client_for(url: str, **overrides: Any) -> KonnectClient:
    settings: dict[str, Any] = {"backoff_base": 0.001, "backoff_max": 0.005}
    settings.update(overrides)
    return KonnectClient(TOKEN, base_url=url, **settings)


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that is bound but not listening, so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# Base URLs.


@pytest.mark.parametrize(
    ("base_url", "region", "expected"),
    [
        (None, None, ("https://us.api.konghq.com", "https://global.api.konghq.com")),
        (None, "eu", ("https://eu.api.konghq.com", "https://global.api.konghq.com")),
        (None, "me-1", ("https://me-1.api.konghq.com", "https://global.api.konghq.com")),
        ("http://127.0.0.1:8080/", "eu", ("http://127.0.0.1:8080", "http://127.0.0.1:8080")),
        ("https://k.example/api//", None, ("https://k.example/api", "https://k.example/api")),
        ("HTTPS://k.example", None, ("HTTPS://k.example", "HTTPS://k.example")),
    ],
)
def test_base_url_beats_region_beats_us_default(
    base_url: str | None, region: str | None, expected: tuple[str, str]
) -> None:
    assert resolve_base_urls(base_url, region) == expected


@pytest.mark.parametrize("region", ["EU", "eu.evil.example", "eu/", " eu", "eu_1", "ü"])
def test_malformed_region_is_a_usage_error_naming_it(region: str) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_base_urls(None, region)
    assert repr(region) in caught.value.message


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://k.example",
        "k.example",
        "http://",
        "http://:8080",
        "http://k.example:99999",
        "http://k.example:abc",
        "https://k.example/?q=1",
        "https://k.example/#top",
    ],
)
def test_malformed_base_url_is_a_usage_error_naming_it(base_url: str) -> None:
    with pytest.raises(UsageError) as caught:
        KonnectClient(TOKEN, base_url=base_url)
    assert repr(base_url) in caught.value.message


def test_client_exposes_regional_and_global_urls() -> None:
    konnect = KonnectClient(TOKEN, region="au")
    assert konnect.regional_url == "https://au.api.konghq.com"
    assert konnect.global_url == "https://global.api.konghq.com"


async def test_global_calls_go_to_the_base_url_when_one_is_given(server: ScriptedServer) -> None:
    async with client_for(server.url) as konnect:
        await konnect.request("GET", "/v3/audit-log-destinations", scope="global")
        await konnect.request("GET", "/v2/audit-log-webhook")
    assert [s.path for s in server.seen] == ["/v3/audit-log-destinations", "/v2/audit-log-webhook"]


@pytest.mark.parametrize("token", ["", "   ", "kpat_a b", "kpat_a\nX-Evil: 1"])
def test_missing_or_malformed_token_is_a_usage_error(token: str) -> None:
    with pytest.raises(UsageError) as caught:
        KonnectClient(token)
    assert caught.value.hint is not None and "--pat" in caught.value.hint


# What goes on the wire.


async def test_requests_carry_token_user_agent_and_json_body(server: ScriptedServer) -> None:
    server.reply(201, {"id": "d1"})
    async with client_for(server.url) as konnect:
        response = await konnect.request("POST", "/v3/things", json={"name": "n", "n": 1})

    assert response.status == 201
    assert response.data == {"id": "d1"}
    seen = server.seen[0]
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["User-Agent"] == f"kongctl/{kongctl.__version__}"
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["Content-Type"].startswith("application/json")
    assert json.loads(seen.body) == {"name": "n", "n": 1}


async def test_query_parameters_arrive_intact(server: ScriptedServer) -> None:
    params = {"page[size]": "10", "page[after]": "ab+/==", "filter[name][eq]": "my dest&x"}
    async with client_for(server.url) as konnect:
        await konnect.request("GET", "/v3/audit-log-destinations", params=params)
    assert server.seen[0].query == params


async def test_empty_success_body_gives_no_data(server: ScriptedServer) -> None:
    server.reply(204)
    async with client_for(server.url) as konnect:
        response = await konnect.request("DELETE", "/v3/audit-log-webhook")
    assert (response.status, response.data) == (204, None)


async def test_success_with_a_non_json_body_is_an_error(server: ScriptedServer) -> None:
    server.reply(200, text="<html>captive portal</html>", content_type="text/html")
    async with client_for(server.url) as konnect:
        with pytest.raises(KonnectError, match=r"not JSON .*captive portal"):
            await konnect.request("GET", "/v2/audit-log-webhook")


async def test_redirect_is_not_followed(server: ScriptedServer) -> None:
    server.reply(302, text="", headers={"Location": "http://elsewhere.example/"})
    async with client_for(server.url) as konnect:
        with pytest.raises(KonnectAPIError) as caught:
            await konnect.request("GET", "/v2/audit-log-webhook")
    assert caught.value.status == 302
    assert len(server.seen) == 1


# Error answers.


async def test_problem_json_renders_invalid_parameters(server: ScriptedServer) -> None:
    problem = {
        "status": 400,
        "title": "Bad Request",
        "detail": "Invalid endpoint",
        "instance": "konnect:trace:1",
        "invalid_parameters": [{"field": "endpoint", "reason": "must be a valid URL"}],
    }
    server.reply(400, problem, content_type=PROBLEM)
    async with client_for(server.url) as konnect:
        with pytest.raises(KonnectAPIError) as caught:
            await konnect.request("POST", "/v3/audit-log-destinations", json={})

    error = caught.value
    assert str(error) == "Konnect API 400 Bad Request: endpoint: must be a valid URL"
    assert (error.status, error.method, error.path) == (400, "POST", "/v3/audit-log-destinations")
    assert error.invalid_parameters == problem["invalid_parameters"]


async def test_problem_json_detail_is_shown(server: ScriptedServer) -> None:
    server.reply(
        409, {"status": 409, "title": "Conflict", "detail": "in use"}, content_type=PROBLEM
    )
    async with client_for(server.url) as konnect:
        with pytest.raises(KonnectAPIError, match=r"^Konnect API 409 Conflict: in use$"):
            await konnect.request("DELETE", "/v3/audit-log-destinations/d1")


async def test_non_json_error_falls_back_to_reason_and_a_short_snippet(
    server: ScriptedServer,
) -> None:
    server.reply(500, text="<html>\n  <body>upstream   exploded</body>\n</html>" + "x" * 500)
    async with client_for(server.url) as konnect:
        with pytest.raises(KonnectAPIError) as caught:
            await konnect.request("GET", "/v2/audit-log-webhook")

    message = str(caught.value)
    assert message.startswith(
        "Konnect API 500 Internal Server Error: <html> <body>upstream exploded</body>"
    )
    assert message.endswith("…")
    assert len(caught.value.detail) == client_module.ERROR_SNIPPET_CHARS


async def test_unauthorized_carries_a_hint_about_the_token(server: ScriptedServer) -> None:
    server.reply(401, {"status": 401, "title": "Unauthorized", "detail": "Invalid credentials"})
    async with client_for(server.url) as konnect:
        with pytest.raises(KonnectAPIError) as caught:
            await konnect.request("GET", "/v2/audit-log-webhook")
    hint = caught.value.hint or ""
    assert "--pat" in hint and "KONNECT_PAT" in hint and "config" in hint


async def test_status_listed_as_ok_is_returned_not_raised(server: ScriptedServer) -> None:
    server.reply(404, {"status": 404, "title": "Not Found"}, content_type=PROBLEM)
    async with client_for(server.url) as konnect:
        response = await konnect.request("DELETE", "/v3/audit-log-webhook", ok=(404,))
    assert response.status == 404
    assert response.data == {"status": 404, "title": "Not Found"}


async def test_status_not_listed_as_ok_is_raised(server: ScriptedServer) -> None:
    server.reply(404, {"status": 404, "title": "Not Found"}, content_type=PROBLEM)
    async with client_for(server.url) as konnect:
        with pytest.raises(KonnectAPIError, match="404 Not Found"):
            await konnect.request("GET", "/v3/audit-log-webhook")


# Retries.


async def test_get_is_retried_on_503_until_it_succeeds(server: ScriptedServer) -> None:
    server.reply(503)
    server.reply(503)
    server.reply(200, {"enabled": False})
    async with client_for(server.url) as konnect:
        response = await konnect.request("GET", "/v2/audit-log-webhook")
    assert response.data == {"enabled": False}
    assert len(server.seen) == 3


@pytest.mark.parametrize("status", [429, 502, 504])
async def test_put_is_retried_on_transient_statuses(server: ScriptedServer, status: int) -> None:
    server.reply(status)
    async with client_for(server.url) as konnect:
        response = await konnect.request("PUT", "/v2/audit-log-replay-job", json={})
    assert response.status == 200
    assert len(server.seen) == 2


async def test_post_is_not_retried_on_503(server: ScriptedServer) -> None:
    server.reply(503, {"title": "Service Unavailable"})
    async with client_for(server.url) as konnect:
        with pytest.raises(KonnectAPIError) as caught:
            await konnect.request("POST", "/v3/audit-log-destinations", json={})
    assert caught.value.status == 503
    assert len(server.seen) == 1


async def test_patch_is_not_retried_unless_marked_idempotent(server: ScriptedServer) -> None:
    server.reply(503)
    server.reply(503)
    async with client_for(server.url) as konnect:
        with pytest.raises(KonnectAPIError):
            await konnect.request("PATCH", "/v2/audit-log-webhook", json={"enabled": False})
        response = await konnect.request(
            "PATCH", "/v2/audit-log-webhook", json={"enabled": False}, idempotent=True
        )
    assert response.status == 200
    assert len(server.seen) == 3


async def test_post_is_retried_on_429_because_konnect_did_not_act(server: ScriptedServer) -> None:
    server.reply(429, headers={"Retry-After": "0"})
    server.reply(201, {"id": "d1"})
    async with client_for(server.url) as konnect:
        response = await konnect.request("POST", "/v3/audit-log-destinations", json={})
    assert response.data == {"id": "d1"}
    assert len(server.seen) == 2


async def test_retries_stop_after_max_retries(server: ScriptedServer) -> None:
    for _ in range(5):
        server.reply(503, {"title": "Service Unavailable"})
    async with client_for(server.url, max_retries=2) as konnect:
        with pytest.raises(KonnectAPIError, match="503"):
            await konnect.request("GET", "/v2/audit-log-webhook")
    assert len(server.seen) == 3


async def test_retry_after_seconds_is_honoured(server: ScriptedServer) -> None:
    server.reply(503, headers={"Retry-After": "1"})
    async with client_for(server.url) as konnect:
        started = time.monotonic()
        await konnect.request("GET", "/v2/audit-log-webhook")
        elapsed = time.monotonic() - started
    assert len(server.seen) == 2
    assert elapsed >= 0.95


async def test_retry_after_beyond_the_cap_is_cut_to_the_cap(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "RETRY_AFTER_MAX", 0.05)
    server.reply(429, headers={"Retry-After": "3600"})
    async with client_for(server.url) as konnect:
        started = time.monotonic()
        await konnect.request("GET", "/v2/audit-log-webhook")
    assert time.monotonic() - started < 1.0
    assert len(server.seen) == 2


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=7), usegmt=True)

    assert parse_retry_after("5", now=now) == 5.0
    assert parse_retry_after(" 0.25 ", now=now) == 0.25
    assert parse_retry_after(later, now=now) == 7.0
    assert parse_retry_after(earlier, now=now) == 0.0
    for unusable in (None, "", "-1", "nan", "inf", "soon", "Mon, 99 Foo 2025"):
        assert parse_retry_after(unusable, now=now) is None


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0, max_value=10),
    cap=st.floats(min_value=0, max_value=60),
)
def test_backoff_delay_stays_within_the_exponential_envelope(
    attempt: int, base: float, cap: float
) -> None:
    delay = backoff_delay(attempt, base, cap)
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(attempt, 32))


# Connection failures.


async def test_refused_connection_is_a_connection_error(refused_url: str) -> None:
    async with client_for(refused_url, max_retries=1) as konnect:
        with pytest.raises(KonnectConnectionError) as caught:
            await konnect.request("GET", "/v2/audit-log-webhook")
    assert str(caught.value) == f"cannot reach Konnect at {refused_url}: connection refused"
    assert caught.value.__cause__ is None


async def test_post_is_retried_when_the_connection_was_refused(
    refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kongctl.konnect.client")
    async with client_for(refused_url, max_retries=2) as konnect:
        with pytest.raises(KonnectConnectionError):
            await konnect.request("POST", "/v3/audit-log-destinations", json={})
    assert caplog.text.count("konnect retry method=POST") == 2


async def test_timeout_is_a_connection_error(server: ScriptedServer) -> None:
    server.reply(200, delay=0.6)
    async with client_for(server.url, timeout=0.2, max_retries=0) as konnect:
        with pytest.raises(KonnectConnectionError) as caught:
            await konnect.request("GET", "/v2/audit-log-webhook")
    assert str(caught.value) == f"cannot reach Konnect at {server.url}: no response within 0.2 s"


async def test_timed_out_get_is_retried(server: ScriptedServer) -> None:
    server.reply(200, {"late": True}, delay=0.6)
    server.reply(200, {"late": False})
    async with client_for(server.url, timeout=0.2) as konnect:
        response = await konnect.request("GET", "/v2/audit-log-webhook")
    assert response.data == {"late": False}


async def test_timed_out_post_is_not_retried(server: ScriptedServer) -> None:
    server.reply(201, {"id": "d1"}, delay=0.6)
    async with client_for(server.url, timeout=0.2) as konnect:
        with pytest.raises(KonnectConnectionError):
            await konnect.request("POST", "/v3/audit-log-destinations", json={})
    assert len(server.seen) == 1


# Logging.


async def test_retries_are_logged_at_debug_without_the_token(
    server: ScriptedServer, refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kongctl")
    server.reply(503)
    server.reply(401, {"title": "Unauthorized", "detail": "Invalid credentials"})
    async with client_for(server.url) as konnect:
        with pytest.raises(KonnectAPIError) as unauthorized:
            await konnect.request("GET", "/v2/audit-log-webhook")
    async with client_for(refused_url, max_retries=1) as konnect:
        with pytest.raises(KonnectConnectionError) as unreachable:
            await konnect.request("GET", "/v2/audit-log-webhook")
        shown = repr(konnect)

    assert "konnect retry method=GET path=/v2/audit-log-webhook status=503 attempt=1" in caplog.text
    for text in (caplog.text, str(unauthorized.value), str(unreachable.value), shown):
        assert TOKEN not in text
