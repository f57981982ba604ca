"""Webhook delivery: gzip batches of record lines, headers, retries and the webhook status."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from tests.emulator_support import (
    WebhookReceiver,
    admin_state,
    api_session,
    create_destination,
    deliver,
    running_emulator,
    wait_until,
    webhook_to,
)


async def status_of(api: aiohttp.ClientSession) -> dict[str, Any]:
    async with api.get("/v3/audit-log-webhook/status") as answer:
        body: dict[str, Any] = await answer.json()
        return body


async def test_batch_is_gzip_with_one_record_per_line(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await webhook_to(api, receiver.url, log_format="json")
    result = await deliver(api, 3)

    assert result["status"] == 202
    assert result["attempts"] == 1
    [batch] = receiver.batches
    assert batch.raw_body[:2] == b"\x1f\x8b"
    assert batch.lines == result["records"]
    assert len(batch.lines) == 3
    assert all(json.loads(line)["event_product"] == "Konnect" for line in batch.lines)


async def test_batch_headers_follow_the_destination(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await webhook_to(api, receiver.url, log_format="json", authorization="Bearer listener-secret")
    await deliver(api, 1)
    headers = receiver.batches[0].headers
    assert headers["Authorization"] == "Bearer listener-secret"
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "application/json"


async def test_cef_batches_are_text_plain(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await webhook_to(api, receiver.url, log_format="cef")
    result = await deliver(api, 2)
    assert receiver.batches[0].headers["Content-Type"] == "text/plain"
    assert all(" konghq.com CEF:0|KongInc|Konnect|1.0|" in line for line in result["records"])


async def test_application_gzip_content_encoding(receiver: WebhookReceiver) -> None:
    async with (
        running_emulator(content_encoding="application/gzip") as konnect,
        api_session(konnect.url) as api,
    ):
        await webhook_to(api, receiver.url)
        await deliver(api, 1)
    assert receiver.batches[0].headers["Content-Encoding"] == "application/gzip"
    assert receiver.batches[0].raw_body[:2] == b"\x1f\x8b"


async def test_trace_ids_above_2_53_arrive_exact(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await webhook_to(api, receiver.url, log_format="json")
    await deliver(api, 20)
    for line in receiver.lines:
        raw_trace = line.split('"trace_id":', 1)[1].split(",", 1)[0]
        assert raw_trace.isdigit()
        assert int(raw_trace) > 2**53
        assert json.loads(line)["trace_id"] == int(raw_trace)


async def test_large_deliveries_are_split_into_batches(receiver: WebhookReceiver) -> None:
    async with running_emulator(batch_size=4) as konnect, api_session(konnect.url) as api:
        await webhook_to(api, receiver.url)
        result = await deliver(api, 10)
    assert [len(batch.lines) for batch in receiver.batches] == [4, 4, 2]
    assert result["attempts"] == 3


@pytest.mark.parametrize("failure", [500, 503, 429])
async def test_retryable_answers_are_retried(
    api: aiohttp.ClientSession, receiver: WebhookReceiver, failure: int
) -> None:
    receiver.responses = [failure, failure]
    await webhook_to(api, receiver.url)
    result = await deliver(api, 2)
    assert result["status"] == 202
    assert result["attempts"] == 3
    assert receiver.statuses == [failure, failure, 202]
    assert len(receiver.lines) == 2


async def test_client_errors_are_not_retried(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    receiver.responses = [401]
    await webhook_to(api, receiver.url)
    result = await deliver(api, 1)
    assert result == {**result, "status": 401, "attempts": 1}
    status = await status_of(api)
    assert status["webhook_status"] == "inactive"
    assert status["last_response_code"] == 401


async def test_retries_stop_after_max_retries(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    receiver.default_status = 500
    await webhook_to(api, receiver.url)
    result = await deliver(api, 1)
    assert result["status"] == 500
    assert result["attempts"] == 5
    state = await admin_state(api)
    assert [d["attempt"] for d in state["deliveries"]] == [1, 2, 3, 4, 5]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_connection_refused_is_retried_and_reported(api: aiohttp.ClientSession) -> None:
    await webhook_to(api, f"http://127.0.0.1:{closed_port()}/audit-logs")
    result = await deliver(api, 1)
    assert result["status"] is None
    assert result["attempts"] == 5
    status = await status_of(api)
    assert status["webhook_status"] == "inactive"
    assert status["last_response_code"] == 0
    assert status["last_response_message"]
    state = await admin_state(api)
    assert {d["status"] for d in state["deliveries"]} == {None}


async def test_status_reports_the_last_successful_attempt(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    receiver.responses = [500]
    await webhook_to(api, receiver.url)
    await deliver(api, 1)
    status = await status_of(api)
    assert status["webhook_status"] == "active"
    assert status["webhook_enabled"] is True
    assert status["last_response_code"] == 202
    assert status["last_response_message"] == "accepted"
    assert status["last_attempt_at"] != "0001-01-01T00:00:00Z"


async def test_deliveries_are_logged_in_admin_state(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    destination = await webhook_to(api, receiver.url)
    await deliver(api, 3)
    [entry] = (await admin_state(api))["deliveries"]
    assert entry["destination_id"] == destination["id"]
    assert entry["endpoint"] == receiver.url
    assert entry["status"] == 202
    assert entry["records"] == 3
    assert entry["attempt"] == 1


async def test_deliver_without_enabled_webhook_is_409(api: aiohttp.ClientSession) -> None:
    destination = await create_destination(api)
    async with api.post("/_emulator/deliver", json={"count": 1}) as answer:
        assert answer.status == 409
    body = {"audit_log_destination_id": destination["id"], "enabled": False}
    async with api.patch("/v3/audit-log-webhook", json=body):
        pass
    async with api.post("/_emulator/deliver", json={"count": 1}) as answer:
        assert answer.status == 409


async def test_legacy_v2_webhook_receives_records(
    api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    body = {
        "endpoint": receiver.url,
        "authorization": "Bearer legacy",
        "log_format": "cef",
        "enabled": True,
    }
    async with api.patch("/v2/audit-log-webhook", json=body) as answer:
        assert answer.status == 200
    await deliver(api, 2)
    assert receiver.batches[0].headers["Authorization"] == "Bearer legacy"
    assert len(receiver.lines) == 2


async def test_background_records_flow_at_the_event_rate(receiver: WebhookReceiver) -> None:
    async with running_emulator(event_rate=50, batch_size=5) as konnect:
        async with api_session(konnect.url) as api:
            await webhook_to(api, receiver.url)
        lines = await receiver.wait_for_lines(10, timeout=5)
    assert all(len(batch.lines) <= 5 for batch in receiver.batches)
    assert len(lines) >= 10


async def test_records_made_while_disabled_are_kept_but_not_delivered() -> None:
    async with running_emulator(event_rate=50) as konnect, api_session(konnect.url) as api:
        await create_destination(api)
        await wait_until(lambda: len(konnect.state.history) >= 5)
        state = await admin_state(api)
    assert state["deliveries"] == []
    assert state["history_size"] >= 5


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


async def https_receiver(ca: trustme.CA, tmp_path: Path) -> tuple[web.AppRunner, str, list[int]]:
    hits: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        hits.append(1)
        return web.Response(status=202)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    app = web.Application()
    app.router.add_post("/audit-logs", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    port = runner.addresses[0][1]
    return runner, f"https://localhost:{port}/audit-logs", hits


async def test_self_signed_endpoint_fails_unless_skip_ssl_verification(
    tls_ca: trustme.CA, tmp_path: Path
) -> None:
    runner, url, hits = await https_receiver(tls_ca, tmp_path)
    try:
        async with running_emulator(max_retries=0) as konnect, api_session(konnect.url) as api:
            destination = await webhook_to(api, url)
            refused = await deliver(api, 1)
            patch = {"skip_ssl_verification": True}
            async with api.patch(f"/v3/audit-log-destinations/{destination['id']}", json=patch):
                pass
            accepted = await deliver(api, 1)
    finally:
        await runner.cleanup()
    assert refused["status"] is None
    assert accepted["status"] == 202
    assert len(hits) == 1


async def test_ca_file_makes_a_private_ca_trusted(tls_ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    runner, url, hits = await https_receiver(tls_ca, tmp_path)
    try:
        async with (
            running_emulator(ca_file=str(ca_file)) as konnect,
            api_session(konnect.url) as api,
        ):
            await webhook_to(api, url)
            result = await deliver(api, 1)
    finally:
        await runner.cleanup()
    assert result["status"] == 202
    assert hits == [1]


async def test_the_record_pump_sleeps_between_events() -> None:
    async with running_emulator(event_rate=1):
        started = time.process_time()
        await asyncio.sleep(0.5)
        busy = time.process_time() - started
    assert busy < 0.25
