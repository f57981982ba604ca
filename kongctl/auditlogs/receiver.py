"""The local HTTP receiver: path, method, authorization, limits and decoding of record batches.

Konnect POSTs batches of records; each accepted batch is in the store, synced, before the 202
goes out. The receiver serves on a socket the session bound earlier and knows nothing of Konnect.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import ssl
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web

from kongctl.auditlogs.decoding import (
    BadPayload,
    PayloadTooLarge,
    UnsupportedEncoding,
    decode_body,
    split_records,
)
from kongctl.auditlogs.listenaddress import bind_listen_socket, parse_listen_address
from kongctl.auditlogs.store import EventStore, StoreError
from kongctl.auditlogs.throttle import LogThrottle

__all__ = [
    "Receiver",
    "ReceiverConfig",
    "ReceiverStats",
    "bind_listen_socket",
    "parse_listen_address",
]

logger = logging.getLogger(__name__)

_BACKLOG = 1024
# How long a rejected request's unread body is drained so the client can read the answer.
_LINGER_SECONDS = 2.0
_REJECTION_LOG_INTERVAL = 10.0
_MAX_LOGGED_PATH = 120
_JSON = "application/json"
_BUSY_BODY = b'{"error": "too many connections"}'
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
# At the cap, a new connection waits this long for its first bytes before it is turned away:
# senders write their request at once, a crowd of idle connections never does.
_NEWCOMER_GRACE = 1.0
# At most this many wait at once; a newer one turns the oldest away, so a crowd that keeps
# reconnecting cannot hold the waiting room either.
_NEWCOMER_SLOTS = 64


@dataclass(frozen=True, kw_only=True)
class ReceiverConfig:
    """What the receiver accepts and how long it waits for a client."""

    path: str = "/audit-logs"
    authorization: str
    max_body_bytes: int = 1 << 20
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 512
    drain_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.authorization:
            raise ValueError("the receiver needs an authorization value")
        if not self.path.startswith("/"):
            raise ValueError(f"receiver path must start with /: {self.path!r}")


@dataclass
class ReceiverStats:
    """Counters since start: requests seen, batches and records stored, rejections by status."""

    requests: int = 0
    batches: int = 0
    records: int = 0
    payload_bytes: int = 0
    rejected: Counter[int] = field(default_factory=Counter)


class _Reject(Exception):
    """Ends a request with an error status; the message is safe to show the client."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


class Receiver:
    """Serves POSTs of record batches on a bound socket and appends them to the store."""

    def __init__(
        self,
        store: EventStore,
        config: ReceiverConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._ssl_context = ssl_context
        self._expected_authorization = _header_bytes(config.authorization)
        self._admission = _Admission(
            config.max_connections,
            min(_NEWCOMER_GRACE, config.header_timeout),
            self._turned_away,
        )
        self._http: web.Server | None = None
        self._listener: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._rejection_logs: dict[int, LogThrottle] = {}
        self._in_flight: set[web.RequestHandler] = set()
        self._idle = asyncio.Event()
        self._draining = False
        self.stats = ReceiverStats()

    @property
    def bound_address(self) -> tuple[str, int]:
        """The host and port the socket is bound to (port 0 resolved)."""
        if self._address is None:
            raise RuntimeError("receiver is not started")
        return self._address

    @property
    def open_connections(self) -> int:
        """HTTP connections open now, the number held against ``max_connections``."""
        return self._admission.open_connections

    async def start(self, sock: socket.socket) -> None:
        """Serve on ``sock``, which must be bound and listening; the receiver now owns it."""
        config = self._config
        self._http = _Server(
            self._handle,
            self._admission,
            # aiohttp only times out a connection that waits for a request, counted from the
            # connection or the previous answer: exactly a bound on reading the headers.
            keepalive_timeout=config.header_timeout,
            # Decoding here keeps the decoded-size limit; aiohttp would also miss
            # application/gzip.
            auto_decompress=False,
            lingering_time=min(_LINGER_SECONDS, config.body_timeout),
            access_log=None,
            logger=_ProtocolLog(logging.getLogger(f"{__name__}.http"), {}),
        )
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self._make_protocol,
            sock=sock,
            backlog=_BACKLOG,
            ssl=self._ssl_context,
            ssl_handshake_timeout=config.header_timeout if self._ssl_context else None,
        )
        host, port = sock.getsockname()[:2]
        self._address = (host, port)
        logger.info(
            "receiver started address=%s port=%d path=%s tls=%s",
            host,
            port,
            config.path,
            self._ssl_context is not None,
        )

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish within the drain timeout, close."""
        if self._listener is None or self._http is None:
            return
        listener, http = self._listener, self._http
        self._listener = None
        self._draining = True
        listener.close()
        self._admission.close()

        # Requests whose headers already arrived get their handler started before idle
        # connections close; those never see a request cut off.
        await asyncio.sleep(0)
        for connection in http.connections:
            if connection not in self._in_flight:
                connection.close()
        if not await self._wait_for_requests(self._config.drain_timeout):
            logger.warning(
                "receiver drain timed out seconds=%s requests=%d",
                self._config.drain_timeout,
                len(self._in_flight),
            )
        for connection in http.connections:
            connection.force_close()
        await listener.wait_closed()
        logger.info(
            "receiver stopped batches=%d records=%d", self.stats.batches, self.stats.records
        )

    async def _wait_for_requests(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while self._in_flight:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def _make_protocol(self) -> asyncio.BaseProtocol:
        assert self._http is not None
        # LIMITATION: connections still in their TLS handshake are not counted; the handshake
        # timeout bounds how long they can last.
        admission = self._admission
        if not admission.full:
            return self._http()
        # An idle connection gives way to a sender; only a cap full of requests in flight
        # turns one away.
        if admission.has_idle:
            return _Newcomer(admission, self._http)
        self._turned_away()
        return _Busy()

    def _turned_away(self) -> None:
        self._count_rejection(503, "too many connections", None)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.stats.requests += 1
        # aiohttp's own shutdown stops reading from every connection, which would cut off a
        # request still receiving its body; tracking requests lets stop() wait for them.
        protocol = request.protocol
        self._in_flight.add(protocol)
        self._admission.request_started(protocol)
        try:
            response = await self._answer(request)
        finally:
            self._in_flight.discard(protocol)
            self._admission.request_finished(protocol)
            if not self._in_flight:
                self._idle.set()
        if self._draining:
            response.force_close()
        return response

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._accept_batch(request)
        except _Reject as rejection:
            return self._answer_rejection(request, rejection)
        except Exception:
            logger.exception("request handling failed")
            return self._answer_rejection(request, _Reject(500, "internal error", close=True))

    async def _accept_batch(self, request: web.BaseRequest) -> web.StreamResponse:
        config = self._config
        if request.raw_path.partition("?")[0] != config.path:
            raise _Reject(404, "not found")
        if request.method != "POST":
            raise _Reject(405, "method not allowed")
        if not self._authorized(request):
            raise _Reject(401, "unauthorized")
        declared = request.content_length
        if declared is not None and declared > config.max_body_bytes:
            raise _Reject(413, "request body too large", close=True)

        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        raw = await self._read_body(request)
        records = self._decode(raw, request.headers.get("Content-Encoding"))

        try:
            await self._store.append(records)
        except StoreError as exc:
            raise _Reject(500, "the batch could not be stored") from exc

        stats = self.stats
        stats.batches += 1
        stats.records += len(records)
        stats.payload_bytes += len(raw)
        logger.debug("batch stored records=%d bytes=%d status=202", len(records), len(raw))
        return web.Response(status=202, body=b'{"accepted": %d}' % len(records), content_type=_JSON)

    def _authorized(self, request: web.BaseRequest) -> bool:
        values = request.headers.getall("Authorization", ())
        if len(values) != 1:
            return False
        return hmac.compare_digest(_header_bytes(values[0]), self._expected_authorization)

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        limit = self._config.max_body_bytes
        content = request.content
        chunks: list[bytes] = []
        size = 0
        try:
            # Counting while reading stops a chunked body, which declares no length up front.
            async with asyncio.timeout(self._config.body_timeout):
                while chunk := await content.readany():
                    size += len(chunk)
                    if size > limit:
                        raise _Reject(413, "request body too large", close=True)
                    chunks.append(chunk)
        except TimeoutError:
            raise _Reject(408, "request body timeout", close=True) from None
        except (web.RequestPayloadError, ConnectionError) as exc:
            raise _Reject(400, "unreadable request body", close=True) from exc
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _decode(self, raw: bytes, content_encoding: str | None) -> list[bytes]:
        try:
            payload = decode_body(raw, content_encoding, self._config.max_body_bytes)
        except PayloadTooLarge:
            raise _Reject(413, "decoded payload too large") from None
        except UnsupportedEncoding:
            raise _Reject(415, "unsupported content-encoding") from None
        except BadPayload:
            raise _Reject(400, "invalid gzip body") from None
        return split_records(payload)

    def _answer_rejection(self, request: web.BaseRequest, rejection: _Reject) -> web.Response:
        self._count_rejection(rejection.status, rejection.message, request)
        response = web.json_response({"error": rejection.message}, status=rejection.status)
        if rejection.status == 405:
            response.headers["Allow"] = "POST"
        if rejection.close:
            response.force_close()
        return response

    def _count_rejection(self, status: int, reason: str, request: web.BaseRequest | None) -> None:
        self.stats.rejected[status] += 1
        throttle = self._rejection_logs.get(status)
        if throttle is None:
            throttle = LogThrottle(logger, _REJECTION_LOG_INTERVAL)
            self._rejection_logs[status] = throttle
        # Scanners probing the public endpoint are routine; the rest points at a sender problem.
        level = logging.INFO if status in (404, 405, 503) else logging.WARNING
        if request is None:
            throttle.log(level, "request rejected status=%d reason=%s", status, reason)
            return
        throttle.log(
            level,
            "request rejected status=%d reason=%s method=%s path=%r remote=%s",
            status,
            reason,
            request.method,
            request.raw_path[:_MAX_LOGGED_PATH],
            request.remote,
        )


class _Admission:
    """Holds connections to the cap, making room for a sender by closing the oldest idle one.

    A connection is idle from its start, or from the end of a request, until its next request's
    headers are in; one with a request in flight is never closed to make room. Both queues are
    ordered dicts, so every step is O(1).
    """

    def __init__(self, max_connections: int, grace: float, turned_away: Callable[[], None]) -> None:
        self._max_connections = max_connections
        self._grace = grace
        self._turned_away = turned_away
        self._open = 0
        self._idle: OrderedDict[web.RequestHandler, None] = OrderedDict()
        self._waiting: OrderedDict[_Newcomer, asyncio.TimerHandle] = OrderedDict()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def full(self) -> bool:
        return self._open >= self._max_connections

    @property
    def has_idle(self) -> bool:
        return bool(self._idle)

    def opened(self, handler: web.RequestHandler) -> None:
        self._open += 1
        self._idle[handler] = None

    def lost(self, handler: web.RequestHandler) -> None:
        self._open -= 1
        self._idle.pop(handler, None)

    def request_started(self, handler: web.RequestHandler) -> None:
        self._idle.pop(handler, None)

    def request_finished(self, handler: web.RequestHandler) -> None:
        # The answer is written right after; a connection closed now still sends it first.
        if handler.transport is not None:
            self._idle[handler] = None

    def arrived(self, newcomer: _Newcomer) -> None:
        """Let a connection over the cap wait a moment for its first bytes."""
        if self._closed:
            newcomer.close()
            return
        if len(self._waiting) >= _NEWCOMER_SLOTS:
            oldest, timer = self._waiting.popitem(last=False)
            timer.cancel()
            self._turn_away(oldest)
        loop = asyncio.get_running_loop()
        self._waiting[newcomer] = loop.call_later(self._grace, self._expire, newcomer)

    def make_room(self, newcomer: _Newcomer) -> bool:
        """Whether a waiting connection that started a request may now be served."""
        timer = self._waiting.pop(newcomer, None)
        if timer is None:
            return False
        timer.cancel()
        if not self._closed and (not self.full or self._close_oldest_idle()):
            return True
        self._turn_away(newcomer)
        return False

    def left(self, newcomer: _Newcomer) -> None:
        timer = self._waiting.pop(newcomer, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        """Stop admitting: waiting connections are closed, as idle ones are on stop."""
        self._closed = True
        while self._waiting:
            newcomer, timer = self._waiting.popitem(last=False)
            timer.cancel()
            newcomer.close()

    def _close_oldest_idle(self) -> bool:
        if not self._idle:
            return False
        # LIMITATION: a keep-alive request that arrives in the same instant can be cut off,
        # the race every keep-alive close has; the sender retries it.
        handler, _ = self._idle.popitem(last=False)
        handler.force_close()
        logger.debug("idle connection closed to admit a sender")
        return True

    def _expire(self, newcomer: _Newcomer) -> None:
        if self._waiting.pop(newcomer, None) is not None:
            self._turn_away(newcomer)

    def _turn_away(self, newcomer: _Newcomer) -> None:
        newcomer.turn_away()
        self._turned_away()


class _Server(web.Server):
    """aiohttp's low-level server, telling the admission when connections open and close."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        admission: _Admission,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._admission = admission

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._admission.opened(handler)

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        self._admission.lost(handler)


class _Newcomer(asyncio.Protocol):
    """A connection over the cap: served in an idle one's place once it starts a request."""

    def __init__(
        self, admission: _Admission, make_handler: Callable[[], web.RequestHandler]
    ) -> None:
        self._admission = admission
        self._make_handler = make_handler
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._admission.arrived(self)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or not self._admission.make_room(self):
            return
        # From here on the transport belongs to an ordinary HTTP connection.
        self._transport = None
        handler = self._make_handler()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        handler.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._admission.left(self)

    def turn_away(self) -> None:
        if self._transport is not None:
            self._transport.write(_BUSY_RESPONSE)
            self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class _Busy(asyncio.Protocol):
    """Answers a connection over the limit with 503 and hangs up, before reading anything."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY_RESPONSE)
        transport.close()


class _ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's protocol logger, with malformed requests demoted from errors to debug lines.

    Garbage from the public internet is routine for an exposed endpoint, not a listener fault.
    """

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        self.debug(msg, *args, exc_info=exc_info, **kwargs)


def _header_bytes(value: str) -> bytes:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape; this undoes it losslessly.
    return value.encode("utf-8", "surrogateescape")
