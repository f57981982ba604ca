"""The emulator's HTTP application and its lifecycle: start, serve, stop.

Requests to the API pass, outermost first: the request log, fault injection, problem+json
rendering, then the bearer-token check. The admin API skips all but problem rendering.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import struct
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiohttp import web
from aiohttp.typedefs import Handler

from kongctl.emulator import admin, api
from kongctl.emulator.context import EMULATOR_KEY, EMULATOR_TOKEN, Emulator, EmulatorConfig
from kongctl.emulator.delivery import Deliverer
from kongctl.emulator.faults import FaultRule
from kongctl.emulator.jobs import EventPump
from kongctl.emulator.problems import ProblemError, problem_response
from kongctl.emulator.state import OrgState

__all__ = ["EMULATOR_TOKEN", "EmulatorConfig", "RunningEmulator", "build_app", "start_emulator"]

logger = logging.getLogger(__name__)

# Keep-alive connections of a client that went away must not hold up a stop.
SHUTDOWN_TIMEOUT = 1.0


def _is_api(path: str) -> bool:
    return path.startswith(("/v2/", "/v3/"))


@web.middleware
async def _request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_api(request.path):
        return await handler(request)
    state = request.app[EMULATOR_KEY].state
    status: int | None = None
    try:
        response = await handler(request)
        status = None if _was_reset(request) else response.status
        return response
    finally:
        state.record_request(request.method, request.path, status)
        logger.debug(
            "api request method=%s path=%s status=%s", request.method, request.path, status
        )


def _was_reset(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def _faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_api(request.path):
        return await handler(request)
    rule = request.app[EMULATOR_KEY].faults.take(request.method, request.path)
    if rule is None:
        return await handler(request)
    logger.debug("fault applied method=%s path=%s rule=%s", request.method, request.path, rule)
    if rule.delay:
        await asyncio.sleep(rule.delay)
    if rule.reset:
        reset_connection(request)
        return web.Response(status=500)
    if rule.status is None:
        return await handler(request)
    return _fault_response(rule, request.path)


def reset_connection(request: web.BaseRequest) -> None:
    """Drop the request's connection with a TCP reset, as a crashed proxy would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger zero turns the close into a TCP reset.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _fault_response(rule: FaultRule, path: str) -> web.Response:
    status = rule.status or 500
    title = None
    detail = rule.detail
    if status == 409 and path.endswith("/audit-log-replay-job"):
        title = "Resource Conflict"
        detail = detail or api.REPLAY_RUNNING
    elif status == 409:
        detail = detail or api.DESTINATION_IN_USE
    headers = {}
    if rule.retry_after is not None:
        headers["Retry-After"] = f"{rule.retry_after:g}"
    return problem_response(status, detail or "Injected fault", title=title, headers=headers)


@web.middleware
async def _problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as problem:
        return problem.response()
    except web.HTTPMethodNotAllowed as exc:
        return problem_response(405, "Method Not Allowed", headers={"Allow": exc.headers["Allow"]})
    except web.HTTPNotFound:
        return problem_response(404, "Not Found")


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_api(request.path) and request.path != api.JWKS_PATH:
        token = request.app[EMULATOR_KEY].config.token
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if not presented:
            raise ProblemError(401, "Unauthorized: missing bearer token")
        valid = scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), token.encode()
        )
        if not valid:
            raise ProblemError(401, "Invalid credentials")
    return await handler(request)


def build_app(emulator: Emulator) -> web.Application:
    """The aiohttp application serving the API and the admin API over ``emulator``."""
    app = web.Application(middlewares=[_request_log, _faults, _problems, _auth])
    app[EMULATOR_KEY] = emulator
    api.add_routes(app)
    admin.add_routes(app)
    return app


@dataclass
class RunningEmulator:
    """A started emulator; ``url`` has no trailing slash."""

    url: str
    emulator: Emulator
    _runner: web.AppRunner
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def state(self) -> OrgState:
        return self.emulator.state

    @property
    def config(self) -> EmulatorConfig:
        return self.emulator.config

    async def stop(self) -> None:
        """Stop background work, close delivery connections and the listening socket."""
        tasks = [*self._tasks]
        if self.emulator.replay_task is not None:
            tasks.append(self.emulator.replay_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        # Handlers still waiting on a delivery get SHUTDOWN_TIMEOUT to finish before the
        # delivery session goes away under them.
        await self._runner.cleanup()
        await self.emulator.require_deliverer().close()
        logger.info("emulator stopped url=%s", self.url)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def start_emulator(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> RunningEmulator:
    """Listen on ``host:port`` (0 picks a free port) and start making records."""
    emulator = Emulator.create(config)
    deliverer = Deliverer(emulator)
    emulator.deliverer = deliverer
    await deliverer.start()

    runner = web.AppRunner(build_app(emulator), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        await deliverer.close()
        raise

    bound_port = _bound_port(runner)
    url_host = f"[{host}]" if ":" in host else host
    running = RunningEmulator(
        url=f"http://{url_host}:{bound_port}", emulator=emulator, _runner=runner
    )
    running._tasks.append(asyncio.create_task(EventPump(emulator).run()))
    logger.info(
        "emulator started url=%s event_rate=%s batch_size=%s sign=%s",
        running.url,
        config.event_rate,
        config.batch_size,
        config.sign,
    )
    return running


def _bound_port(runner: web.AppRunner) -> int:
    address = runner.addresses[0]
    return int(address[1])
