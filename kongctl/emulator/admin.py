"""The admin API under ``/_emulator/``: inspect state, inject faults, deliver on demand.

It has no authentication and is not part of Konnect; tests use it to set the stage and to
check outcomes without going through the API under test.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from kongctl.emulator.context import EMULATOR_KEY, Emulator
from kongctl.emulator.faults import FaultRuleError, parse_rules
from kongctl.emulator.problems import ProblemError, bad_request, invalid

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/_emulator/"
DELIVER_MAX = 10_000


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/_emulator/state", get_state)
    router.add_get("/_emulator/faults", get_faults)
    router.add_post("/_emulator/faults", add_faults)
    router.add_delete("/_emulator/faults", clear_faults)
    router.add_post("/_emulator/deliver", deliver_now)
    router.add_post("/_emulator/reset", reset)


def _emulator(request: web.Request) -> Emulator:
    return request.app[EMULATOR_KEY]


async def _optional_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise bad_request(
            "Could not parse request body", [invalid("body", "request format is invalid")]
        ) from exc


async def get_state(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    snapshot = emulator.state.snapshot()
    snapshot["faults"] = [rule.view() for rule in emulator.faults.rules]
    return web.json_response(snapshot)


async def get_faults(request: web.Request) -> web.Response:
    rules = _emulator(request).faults.rules
    return web.json_response({"rules": [rule.view() for rule in rules]})


async def add_faults(request: web.Request) -> web.Response:
    faults = _emulator(request).faults
    try:
        rules = parse_rules(await _optional_json(request))
    except FaultRuleError as exc:
        raise bad_request(str(exc), [invalid("rules", str(exc))]) from exc
    faults.add(rules)
    logger.info("fault rules added count=%s", len(rules))
    return web.json_response({"rules": [rule.view() for rule in faults.rules]})


async def clear_faults(request: web.Request) -> web.Response:
    _emulator(request).faults.clear()
    logger.info("fault rules cleared")
    return web.Response(status=204)


async def deliver_now(request: web.Request) -> web.Response:
    """Make ``count`` new records and deliver them; answers once delivery has finished."""
    emulator = _emulator(request)
    body = await _optional_json(request)
    count = body.get("count", 1) if isinstance(body, dict) else None
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= DELIVER_MAX:
        raise bad_request(
            "Invalid count",
            [invalid("count", f"must be an integer from 1 to {DELIVER_MAX}", "invalid")],
        )
    target = emulator.state.delivery_target()
    if target is None:
        raise ProblemError(409, "No webhook is configured and enabled")

    events = [emulator.events.next_event() for _ in range(count)]
    for event in events:
        emulator.state.remember(event)
    result, lines = await emulator.require_deliverer().send(target, events)
    return web.json_response(
        {"status": result.status, "attempts": result.attempts, "records": lines}
    )


async def reset(request: web.Request) -> web.Response:
    """Back to an empty organization: no destinations, no webhook, no faults, no logs."""
    emulator = _emulator(request)
    if emulator.replay_task is not None:
        emulator.replay_task.cancel()
        emulator.replay_task = None
    emulator.state.reset()
    emulator.faults.clear()
    logger.info("organization reset")
    return web.Response(status=204)
