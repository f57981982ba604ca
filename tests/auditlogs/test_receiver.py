"""The HTTP receiver: answers, byte-exact storage, limits, slow clients, TLS, draining."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from kongctl.auditlogs.receiver import (
    _NEWCOMER_SLOTS,
    Receiver,
    ReceiverConfig,
    bind_listen_socket,
)
from kongctl.auditlogs.store import EventStore

SECRET = "Bearer s3cret-token"
AUTH = {"Authorization": SECRET}


@dataclass
class Running:
    receiver: Receiver
    store: EventStore
    port: int
    url: str

    def stored(self) -> bytes:
        return self.store.path.read_bytes()


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_receiver(tmp_path: Path) -> AsyncIterator[Start]:
    started: list[Running] = []

    async def start(*, ssl_context: ssl.SSLContext | None = None, **config: Any) -> Running:
        store = EventStore(tmp_path / f"store-{len(started)}")
        store.open()
        receiver = Receiver(
            store, ReceiverConfig(authorization=SECRET, **config), ssl_context=ssl_context
        )
        await receiver.start(bind_listen_socket("127.0.0.1", 0))
        port = receiver.bound_address[1]
        scheme = "https" if ssl_context else "http"
        running = Running(receiver, store, port, f"{scheme}://127.0.0.1:{port}/audit-logs")
        started.append(running)
        return running

    yield start
    for running in started:
        await running.receiver.stop()
        await running.store.close()


@pytest.fixture
async def running(start_receiver: Start) -> Running:
    return await start_receiver()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    client: aiohttp.ClientSession, url: str, body: Any, **headers: str
) -> tuple[int, Any]:
    async with client.post(url, data=body, headers={**AUTH, **headers}) as response:
        return response.status, await response.json()


async def exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def raw_post(body: bytes, *headers: bytes) -> bytes:
    head = [
        b"POST /audit-logs HTTP/1.1",
        b"Host: localhost",
        b"Authorization: " + SECRET.encode(),
        b"Content-Length: %d" % len(body),
        b"Connection: close",
        *headers,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_batch_is_stored_and_answered_202(
    running: Running, client: aiohttp.ClientSession
) -> None:
    status, body = await post(client, running.url, b'{"a":1}\n{"b":2}\n')
    assert (status, body) == (202, {"accepted": 2})
    assert running.stored() == b'{"a":1}\n{"b":2}\n'
    assert running.receiver.stats.batches == 1
    assert running.receiver.stats.records == 2


async def test_query_string_is_ignored(running: Running, client: aiohttp.ClientSession) -> None:
    status, _ = await post(client, running.url + "?source=konnect", b"record\n")
    assert status == 202
    assert running.stored() == b"record\n"


async def test_empty_batch_is_accepted_with_zero_records(
    running: Running, client: aiohttp.ClientSession
) -> None:
    assert await post(client, running.url, b"") == (202, {"accepted": 0})
    assert await post(client, running.url, b" \r\n\n") == (202, {"accepted": 0})
    assert running.stored() == b""


@pytest.mark.parametrize("path", ["/", "/audit-logs/", "/audit-logsx", "/other", "/AUDIT-LOGS"])
async def test_other_paths_are_not_found(
    running: Running, client: aiohttp.ClientSession, path: str
) -> None:
    status, body = await post(client, f"http://127.0.0.1:{running.port}{path}", b"record\n")
    assert (status, body) == (404, {"error": "not found"})
    assert running.stored() == b""


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_are_refused_with_allow_post(
    running: Running, client: aiohttp.ClientSession, method: str
) -> None:
    async with client.request(method, running.url, headers=AUTH, data=b"x\n") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
    assert running.stored() == b""


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer wrong", "Bearer  s3cret-token", SECRET[:-1], SECRET.lower(), SECRET + "x"],
    ids=["missing", "empty", "wrong", "inner-space", "prefix", "case", "extended"],
)
async def test_wrong_or_missing_authorization_is_unauthorized(
    running: Running, authorization: str | None
) -> None:
    headers = [] if authorization is None else [b"Authorization: " + authorization.encode()]
    request = b"\r\n".join(
        [
            b"POST /audit-logs HTTP/1.1",
            b"Host: localhost",
            *headers,
            b"Content-Length: 7",
            b"Connection: close",
        ]
    )
    answer = await exchange(running.port, request + b"\r\n\r\nrecord\n")
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert SECRET.encode() not in answer
    assert running.stored() == b""


async def test_a_second_authorization_header_is_unauthorized(running: Running) -> None:
    answer = await exchange(running.port, raw_post(b"record\n", b"Authorization: other"))
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert running.stored() == b""


async def test_records_are_stored_exactly_as_sent(
    running: Running, client: aiohttp.ClientSession
) -> None:
    unicode_record = '{"name":"zoë ✓ 日本"}'.encode()
    nul_record = b'{"nul":"\x00"}'
    invalid_utf8 = b'{"raw":"\xff\xfe"}'
    body = b"  " + unicode_record + b"\r\n\r\n" + nul_record + b"\t\n" + invalid_utf8
    status, answer = await post(client, running.url, body)
    assert (status, answer) == (202, {"accepted": 3})
    assert running.stored() == unicode_record + b"\n" + nul_record + b"\n" + invalid_utf8 + b"\n"


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "application/gzip", " GZIP "])
async def test_gzip_bodies_are_decoded(
    running: Running, client: aiohttp.ClientSession, encoding: str
) -> None:
    body = gzip.compress(b'{"a":1}\n{"b":2}\n')
    status, _ = await post(client, running.url, body, **{"Content-Encoding": encoding})
    assert status == 202
    assert running.stored() == b'{"a":1}\n{"b":2}\n'


async def test_gzip_body_without_a_content_encoding_is_recognised(
    running: Running, client: aiohttp.ClientSession
) -> None:
    status, _ = await post(client, running.url, gzip.compress(b"record\n"))
    assert status == 202
    assert running.stored() == b"record\n"


async def test_bad_gzip_is_a_bad_request(running: Running, client: aiohttp.ClientSession) -> None:
    truncated = gzip.compress(b"record\n" * 100)[:-10]
    status, body = await post(client, running.url, truncated, **{"Content-Encoding": "gzip"})
    assert status == 400
    assert "error" in body
    assert running.stored() == b""


async def test_unknown_content_encoding_is_unsupported(
    running: Running, client: aiohttp.ClientSession
) -> None:
    status, _ = await post(client, running.url, b"record\n", **{"Content-Encoding": "br"})
    assert status == 415
    assert running.stored() == b""


async def test_declared_body_over_the_limit_is_too_large(
    start_receiver: Start, client: aiohttp.ClientSession
) -> None:
    running = await start_receiver(max_body_bytes=1000)
    status, _ = await post(client, running.url, b"x" * 1001)
    assert status == 413
    assert running.stored() == b""


async def test_chunked_body_over_the_limit_is_too_large(
    start_receiver: Start, client: aiohttp.ClientSession
) -> None:
    running = await start_receiver(max_body_bytes=1000)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * 99 + b"\n"

    status, _ = await post(client, running.url, chunks())
    assert status == 413
    assert running.stored() == b""


async def test_body_of_exactly_the_limit_is_accepted(
    start_receiver: Start, client: aiohttp.ClientSession
) -> None:
    running = await start_receiver(max_body_bytes=1000)
    status, _ = await post(client, running.url, b"z" * 999 + b"\n")
    assert status == 202


async def test_zip_bomb_is_too_large_quickly(
    running: Running, client: aiohttp.ClientSession
) -> None:
    bomb = zlib.compress(bytes(20 << 20), 9, wbits=16 + zlib.MAX_WBITS)
    started = time.monotonic()
    status, _ = await post(client, running.url, bomb, **{"Content-Encoding": "gzip"})
    assert status == 413
    assert time.monotonic() - started < 1.0
    assert running.stored() == b""


async def test_store_failure_is_a_server_error_and_nothing_is_stored(
    running: Running, client: aiohttp.ClientSession
) -> None:
    await running.store.close()
    status, body = await post(client, running.url, b"record\n")
    assert status == 500
    assert body == {"error": "the batch could not be stored"}
    assert running.stored() == b""
    assert running.receiver.stats.rejected[500] == 1


async def test_concurrent_senders_store_every_record_once_and_contiguously(
    running: Running, client: aiohttp.ClientSession
) -> None:
    senders, batches_each, per_batch = 16, 50, 10

    async def sender(who: int) -> None:
        for batch in range(batches_each):
            lines = b"".join(b"%d-%d-%d\n" % (who, batch, i) for i in range(per_batch))
            status, _ = await post(client, running.url, gzip.compress(lines, 1))
            assert status == 202

    await asyncio.gather(*(sender(who) for who in range(senders)))

    lines = running.stored().split(b"\n")
    assert lines.pop() == b""
    assert len(lines) == len(set(lines)) == senders * batches_each * per_batch
    for start in range(0, len(lines), per_batch):
        chunk = [line.rsplit(b"-", 1) for line in lines[start : start + per_batch]]
        assert {prefix for prefix, _ in chunk} == {chunk[0][0]}
        assert [int(index) for _, index in chunk] == list(range(per_batch))
    assert running.store.fsyncs < senders * batches_each


async def test_slow_headers_are_dropped_while_other_clients_are_served(
    start_receiver: Start, client: aiohttp.ClientSession
) -> None:
    running = await start_receiver(header_timeout=0.4)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    opened = time.monotonic()

    async def dribble() -> None:
        with contextlib.suppress(ConnectionError):
            for byte in raw_post(b"record\n"):
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)

    dribbler = asyncio.create_task(dribble())
    try:
        assert (await post(client, running.url, b"meanwhile\n"))[0] == 202
        assert await asyncio.wait_for(reader.read(), 3) == b""
        assert time.monotonic() - opened >= 0.4
    finally:
        dribbler.cancel()
        writer.close()
    assert running.stored() == b"meanwhile\n"


async def test_a_stuck_body_times_out_while_other_clients_are_served(
    start_receiver: Start, client: aiohttp.ClientSession
) -> None:
    running = await start_receiver(body_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(raw_post(b"partial\n" + b"x" * 100)[:-60])
        assert (await post(client, running.url, b"meanwhile\n"))[0] == 202
        answer = await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert running.stored() == b"meanwhile\n"


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def connections(port: int, count: int, **tls: Any) -> AsyncIterator[list[Connection]]:
    """Open ``count`` connections one after the other; they send nothing by themselves."""
    opened: list[Connection] = []
    try:
        for _ in range(count):
            opened.append(await asyncio.open_connection("127.0.0.1", port, **tls))
        yield opened
    finally:
        for _, writer in opened:
            writer.close()
        for _, writer in opened:
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


async def hung_up(reader: asyncio.StreamReader, timeout: float = 3.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        return await asyncio.wait_for(reader.read(), timeout)
    return b""


async def test_a_sender_at_the_cap_takes_the_place_of_the_oldest_idle_connection(
    start_receiver: Start,
) -> None:
    running = await start_receiver(max_connections=8)
    async with connections(running.port, 8) as idle:
        await wait_until(lambda: running.receiver.open_connections == 8)

        started = time.monotonic()
        answer = await exchange(running.port, raw_post(b"sender\n"))
        assert answer.startswith(b"HTTP/1.1 202 ")
        assert time.monotonic() - started < 1.0
        assert await hung_up(idle[0][0]) == b""

        # The next oldest is untouched and still served.
        reader, writer = idle[1]
        writer.write(raw_post(b"second\n"))
        assert (await hung_up(reader)).startswith(b"HTTP/1.1 202 ")
    assert running.stored() == b"sender\nsecond\n"
    assert running.receiver.stats.rejected[503] == 0


async def test_idle_keep_alive_connections_make_room_for_a_sender_at_the_cap(
    start_receiver: Start,
) -> None:
    running = await start_receiver(max_connections=2)
    sessions = [aiohttp.ClientSession() for _ in range(2)]
    try:
        for session in sessions:
            assert (await post(session, running.url, b"held\n"))[0] == 202
        assert running.receiver.open_connections == 2

        answer = await exchange(running.port, raw_post(b"admitted\n"))
    finally:
        for session in sessions:
            await session.close()
    assert answer.startswith(b"HTTP/1.1 202 ")
    assert running.stored() == b"held\nheld\nadmitted\n"


async def test_a_connection_at_the_cap_is_turned_away_when_every_request_is_in_flight(
    start_receiver: Start,
) -> None:
    running = await start_receiver(max_connections=2)
    request = raw_post(b"held\n")
    async with connections(running.port, 2) as busy:
        for _, writer in busy:
            writer.write(request[:-3])
        await wait_until(lambda: running.receiver.stats.requests == 2)

        answer = await exchange(running.port, raw_post(b"refused\n"))
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert running.receiver.stats.rejected[503] == 1

        reader, writer = busy[0]
        writer.write(request[-3:])
        assert (await hung_up(reader)).startswith(b"HTTP/1.1 202 ")

        # The receiver notices the closed connection asynchronously, hence the retries.
        answers: list[bytes] = []

        async def admitted() -> bool:
            answers.append(await exchange(running.port, raw_post(b"admitted\n")))
            return answers[-1].startswith(b"HTTP/1.1 202 ")

        deadline = time.monotonic() + 3
        while not await admitted():
            assert time.monotonic() < deadline, answers[-1]
            await asyncio.sleep(0.02)

        reader, writer = busy[1]
        writer.write(request[-3:])
        assert (await hung_up(reader)).startswith(b"HTTP/1.1 202 ")
    assert running.stored() == b"held\nadmitted\nheld\n"


async def test_a_silent_connection_over_the_cap_is_turned_away_and_displaces_no_one(
    start_receiver: Start,
) -> None:
    running = await start_receiver(max_connections=2)
    async with connections(running.port, 2) as idle:
        await wait_until(lambda: running.receiver.open_connections == 2)

        started = time.monotonic()
        async with connections(running.port, 1) as ((silent, _),):
            assert (await hung_up(silent)).startswith(b"HTTP/1.1 503 ")
        assert time.monotonic() - started >= 0.9

        for reader, writer in idle:
            writer.write(raw_post(b"still served\n"))
            assert (await hung_up(reader)).startswith(b"HTTP/1.1 202 ")
    assert running.receiver.stats.rejected[503] == 1


async def test_a_crowd_over_the_cap_cannot_keep_a_sender_waiting(start_receiver: Start) -> None:
    running = await start_receiver(max_connections=2)
    stats = running.receiver.stats
    async with connections(running.port, 2):
        await wait_until(lambda: running.receiver.open_connections == 2)
        async with connections(running.port, _NEWCOMER_SLOTS + 1) as crowd:
            # The newest of a full waiting room turns the oldest away at once.
            assert (await hung_up(crowd[0][0], 0.5)).startswith(b"HTTP/1.1 503 ")
            assert stats.rejected[503] == 1

            answer = await exchange(running.port, raw_post(b"sender\n"))
            assert answer.startswith(b"HTTP/1.1 202 ")

            answers = await asyncio.gather(*(hung_up(reader) for reader, _ in crowd[1:]))
    assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in answers)
    assert stats.rejected[503] == _NEWCOMER_SLOTS + 1
    assert running.stored() == b"sender\n"


async def test_a_tls_sender_at_the_cap_takes_the_place_of_an_idle_connection(
    start_receiver: Start,
) -> None:
    server_context, client_context = tls_contexts()
    running = await start_receiver(ssl_context=server_context, max_connections=1)
    async with connections(running.port, 1, ssl=client_context) as ((idle, _),):
        await wait_until(lambda: running.receiver.open_connections == 1)
        async with (
            aiohttp.ClientSession() as session,
            session.post(running.url, data=b"secure\n", headers=AUTH, ssl=client_context) as resp,
        ):
            assert resp.status == 202
        assert await hung_up(idle) == b""
    assert running.stored() == b"secure\n"


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


async def test_tls_receiver_serves_https(start_receiver: Start) -> None:
    server_context, client_context = tls_contexts()
    running = await start_receiver(ssl_context=server_context)
    assert running.url.startswith("https://")
    async with (
        aiohttp.ClientSession() as session,
        session.post(running.url, data=b"secure\n", headers=AUTH, ssl=client_context) as resp,
    ):
        assert resp.status == 202
    assert running.stored() == b"secure\n"


async def test_expect_continue_gets_an_interim_answer_before_the_body(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        request = raw_post(b"record\n", b"Expect: 100-continue")
        head, body = request.split(b"\r\n\r\n")
        writer.write(head + b"\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        writer.write(body)
        final = await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 202 ")
    assert running.stored() == b"record\n"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00 garbage\r\n\r\n",
        b"POST /audit-logs HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /audit-logs HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    ],
    ids=["tls-hello", "bad-header", "bad-length"],
)
async def test_garbage_instead_of_http_is_a_bad_request_without_error_logs(
    running: Running, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    with caplog.at_level(logging.DEBUG):
        answer = await exchange(running.port, garbage)
    assert answer.split(b"\r\n")[0].split(b" ")[1] == b"400"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert running.stored() == b""


async def test_stop_lets_a_request_in_flight_finish(start_receiver: Start) -> None:
    running = await start_receiver(drain_timeout=3)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        request = raw_post(b"in flight\n")
        writer.write(request[:-4])
        await wait_until(lambda: running.receiver.stats.requests == 1)

        stopping = asyncio.create_task(running.receiver.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()
        writer.write(request[-4:])
        answer = await asyncio.wait_for(reader.read(), 3)
        await asyncio.wait_for(stopping, 3)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 202 ")
    assert running.stored() == b"in flight\n"
    with pytest.raises(OSError):
        await exchange(running.port, raw_post(b"late\n"))


async def test_stop_gives_up_on_a_stuck_request_after_the_drain_timeout(
    start_receiver: Start,
) -> None:
    running = await start_receiver(drain_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(raw_post(b"never finished\n")[:-5])
        await wait_until(lambda: running.receiver.stats.requests == 1)
        started = time.monotonic()
        await asyncio.wait_for(running.receiver.stop(), 3)
        assert time.monotonic() - started < 1.5
        assert await asyncio.wait_for(reader.read(), 3) == b""
    finally:
        writer.close()
    assert running.stored() == b""


async def test_idle_keep_alive_connections_do_not_delay_stop(
    running: Running, client: aiohttp.ClientSession
) -> None:
    assert (await post(client, running.url, b"record\n"))[0] == 202
    started = time.monotonic()
    await running.receiver.stop()
    assert time.monotonic() - started < 1.0


async def test_bound_address_reports_the_resolved_port(running: Running) -> None:
    host, port = running.receiver.bound_address
    assert host == "127.0.0.1"
    assert port == running.port > 0


async def test_secrets_and_records_never_reach_the_log_above_debug(
    running: Running, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await post(client, running.url, b'{"private":"record-content"}\n')
        async with client.post(running.url, data=b"x", headers={"Authorization": "wrong"}):
            pass
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "s3cret-token" not in text
    assert "wrong" not in text
    assert "record-content" not in text


async def test_repeated_rejections_are_logged_once_per_interval(
    running: Running, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kongctl.auditlogs.receiver"):
        for _ in range(20):
            assert (await post(client, running.url + "x", b"probe\n"))[0] == 404
    rejected = [r for r in caplog.records if "request rejected" in r.getMessage()]
    assert len(rejected) == 1
    assert running.receiver.stats.rejected[404] == 20


async def test_stop_closes_connections_waiting_over_the_cap(start_receiver: Start) -> None:
    running = await start_receiver(max_connections=1)
    async with connections(running.port, 1) as ((idle, _),):
        await wait_until(lambda: running.receiver.open_connections == 1)
        async with connections(running.port, 1) as ((waiting, _),):
            started = time.monotonic()
            await running.receiver.stop()
            assert await hung_up(waiting) == b""
            assert await hung_up(idle) == b""
            assert time.monotonic() - started < 0.5
    assert running.receiver.stats.rejected[503] == 0
