"""A scripted HTTP server on loopback that stands in for Konnect in client tests."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

TOKEN = "kpat_test_0123456789abcdef"


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class ScriptedServer:
    """Answers requests with queued replies in order (then 200 ``{}``), recording each one."""

    def __init__(self) -> None:
        self.url = ""
        self.seen: list[Seen] = []
        self._replies: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None

    def reply(
        self,
        status: int = 200,
        data: Any = None,
        *,
        text: str | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        if text is not None:
            body = text.encode()
            kind = content_type or "text/plain"
        else:
            body = b"" if data is None and status == 204 else json.dumps(data or {}).encode()
            kind = content_type or "application/json"
        self._replies.append(Reply(status, body, kind, headers or {}, delay))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            Seen(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=await request.read(),
            )
        )
        reply = self._replies.popleft() if self._replies else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(
            status=reply.status,
            body=reply.body or None,
            headers={"Content-Type": reply.content_type, **reply.headers},
        )


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    try:
        yield scripted
    finally:
        await scripted.stop()
