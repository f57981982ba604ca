"""The Konnect audit-log API, v2 and v3, over one organization state.

Both versions serve destinations, the webhook status and the replay job; the webhook itself
differs: v2 shows it as an endpoint configured in place, v3 as a binding to a destination.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from kongctl.emulator.context import EMULATOR_KEY, Emulator
from kongctl.emulator.jobs import run_replay
from kongctl.emulator.problems import ProblemError, bad_request, invalid, read_json_object
from kongctl.emulator.state import Destination, LegacyWebhook, ReplayJob, now
from kongctl.emulator.validation import (
    is_destination_id,
    validate_destination,
    validate_legacy_webhook,
    validate_replay_window,
    validate_webhook_binding,
)

logger = logging.getLogger(__name__)

PAGE_SIZE_DEFAULT = 10
PAGE_SIZE_MAX = 100
JWKS_PATH = "/v2/audit-log-webhook/jwks.json"
DESTINATION_IN_USE = "Destination is in use"
REPLAY_RUNNING = "A replay job is currently running"


def add_routes(app: web.Application) -> None:
    router = app.router
    for version in ("v2", "v3"):
        base = f"/{version}"
        router.add_get(f"{base}/audit-log-destinations", list_destinations)
        router.add_post(f"{base}/audit-log-destinations", create_destination)
        one = f"{base}/audit-log-destinations/{{destination_id}}"
        router.add_get(one, get_destination)
        router.add_patch(one, update_destination)
        router.add_delete(one, delete_destination)
        router.add_get(f"{base}/audit-log-webhook/status", get_webhook_status)
        router.add_get(f"{base}/audit-log-replay-job", get_replay_job)
        router.add_put(f"{base}/audit-log-replay-job", put_replay_job)
    router.add_get("/v2/audit-log-webhook", get_webhook_v2)
    router.add_patch("/v2/audit-log-webhook", update_webhook_v2)
    router.add_get(JWKS_PATH, get_jwks)
    router.add_get("/v3/audit-log-webhook", get_webhook_v3)
    router.add_patch("/v3/audit-log-webhook", update_webhook_v3)
    router.add_delete("/v3/audit-log-webhook", delete_webhook_v3)


def _emulator(request: web.Request) -> Emulator:
    return request.app[EMULATOR_KEY]


def _version(request: web.Request) -> str:
    return request.path.split("/")[1]


# Destinations


async def list_destinations(request: web.Request) -> web.Response:
    state = _emulator(request).state
    size = _page_size(request)
    items = _filtered(request, list(state.destinations.values()))
    after = _cursor(request, "page[after]")
    before = _cursor(request, "page[before]")
    if after is not None:
        window = [d for d in items if d.seq > after][:size]
    elif before is not None:
        window = [d for d in items if d.seq < before][-size:]
    else:
        window = items[:size]

    has_next = bool(window) and items[-1].seq > window[-1].seq
    has_previous = bool(window) and items[0].seq < window[0].seq
    meta = {
        "size": size,
        "next": _page_link(request, size, "page[after]", window[-1].seq) if has_next else None,
        "previous": (
            _page_link(request, size, "page[before]", window[0].seq) if has_previous else None
        ),
        "first": _page_link(request, size),
    }
    return web.json_response({"data": [d.view() for d in window], "meta": meta})


def _page_size(request: web.Request) -> int:
    raw = request.query.get("page[size]", "")
    if raw == "":
        return PAGE_SIZE_DEFAULT
    try:
        size = int(raw)
    except ValueError:
        size = 0
        rule: dict[str, Any] = invalid("page[size]", "must be an integer", "is_integer", "query")
    else:
        rule = invalid("page[size]", "must be at least 1", "min", "query", minimum=1)
        if size > PAGE_SIZE_MAX:
            rule = invalid(
                "page[size]",
                f"must not be greater than {PAGE_SIZE_MAX}",
                "max",
                "query",
                maximum=PAGE_SIZE_MAX,
            )
    if 1 <= size <= PAGE_SIZE_MAX:
        return size
    raise bad_request("Invalid page size", [rule])


def _filtered(request: web.Request, items: list[Destination]) -> list[Destination]:
    query = request.query
    equals = query.get("filter[name][eq]", query.get("filter[name]"))
    contains = query.get("filter[name][contains]")
    if equals is not None:
        items = [d for d in items if d.name == equals]
    if contains is not None:
        items = [d for d in items if contains in d.name]
    return items


def _cursor(request: web.Request, key: str) -> int | None:
    raw = request.query.get(key)
    if not raw:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        seq = decoded["seq"]
        if isinstance(seq, int) and not isinstance(seq, bool):
            return seq
    except (ValueError, binascii.Error, KeyError, TypeError):
        pass
    raise bad_request("Invalid page cursor", [invalid(key, "is not a valid cursor", None, "query")])


def _page_link(request: web.Request, size: int, cursor_key: str | None = None, seq: int = 0) -> str:
    params = [(k, v) for k, v in request.query.items() if k.startswith("filter[")]
    params.append(("page[size]", str(size)))
    if cursor_key is not None:
        token = base64.urlsafe_b64encode(json.dumps({"seq": seq}).encode()).rstrip(b"=")
        params.append((cursor_key, token.decode("ascii")))
    return f"/{_version(request)}/audit-log-destinations?{urlencode(params)}"


async def create_destination(request: web.Request) -> web.Response:
    state = _emulator(request).state
    body = await read_json_object(request)
    fields = validate_destination(
        body, partial=False, require_authorization=_version(request) == "v3"
    )
    destination = state.add_destination(**fields)
    logger.info("destination created id=%s name=%s", destination.id, destination.name)
    return web.json_response(destination.view(), status=201)


def _destination(request: web.Request) -> Destination:
    raw = request.match_info["destination_id"]
    found = _emulator(request).state.destinations.get(raw.lower())
    if found is None or not is_destination_id(raw):
        raise ProblemError(404, "Not Found")
    return found


async def get_destination(request: web.Request) -> web.Response:
    return web.json_response(_destination(request).view())


async def update_destination(request: web.Request) -> web.Response:
    destination = _destination(request)
    body = await read_json_object(request)
    fields = validate_destination(
        body, partial=True, require_authorization=_version(request) == "v3"
    )
    for key, value in fields.items():
        setattr(destination, key, value)
    destination.updated_at = now()
    logger.info("destination updated id=%s fields=%s", destination.id, ",".join(sorted(fields)))
    return web.json_response(destination.view())


async def delete_destination(request: web.Request) -> web.Response:
    state = _emulator(request).state
    destination = _destination(request)
    if state.destination_in_use(destination.id):
        raise ProblemError(409, DESTINATION_IN_USE)
    del state.destinations[destination.id]
    logger.info("destination deleted id=%s", destination.id)
    return web.Response(status=204)


# Webhook


async def get_webhook_v2(request: web.Request) -> web.Response:
    return web.json_response(_emulator(request).state.webhook_v2_view())


async def update_webhook_v2(request: web.Request) -> web.Response:
    state = _emulator(request).state
    fields = validate_legacy_webhook(await read_json_object(request))
    hook = state.webhook
    settings = {k: v for k, v in fields.items() if k != "enabled"}
    if settings:
        # One webhook per region: configuring it in place replaces a v3 binding, starting
        # from what the v2 view showed so that unchanged fields stay as they were.
        target = state.configured_target()
        legacy = LegacyWebhook()
        if target is not None:
            legacy = LegacyWebhook(
                target.endpoint,
                target.authorization,
                target.log_format,
                target.skip_ssl_verification,
            )
        for key, value in settings.items():
            setattr(legacy, key, value)
        if not legacy.endpoint:
            raise _endpoint_blank()
        hook.legacy = legacy
        hook.destination_id = None
    if fields.get("enabled") is True and state.configured_target() is None:
        raise _endpoint_blank()
    if "enabled" in fields:
        hook.enabled = fields["enabled"]
    hook.updated_at = now()
    logger.info("webhook updated api=v2 fields=%s", ",".join(sorted(fields)))
    return web.json_response(state.webhook_v2_view())


def _endpoint_blank() -> ProblemError:
    return bad_request("Required field missing", [invalid("endpoint", "cannot be blank")])


async def get_webhook_v3(request: web.Request) -> web.Response:
    view = _emulator(request).state.webhook_v3_view()
    if view is None:
        raise ProblemError(404, "Not Found")
    return web.json_response(view)


async def update_webhook_v3(request: web.Request) -> web.Response:
    state = _emulator(request).state
    fields = validate_webhook_binding(await read_json_object(request))
    hook = state.webhook
    destination_id = fields.get("audit_log_destination_id")
    if destination_id is None and hook.destination_id is None:
        raise ProblemError(404, "Not Found")
    if destination_id is not None and destination_id not in state.destinations:
        raise bad_request(
            "Audit log destination not found",
            [
                invalid(
                    "audit_log_destination_id", "destination does not exist", "missing_reference"
                )
            ],
        )
    if destination_id is not None and destination_id != hook.destination_id:
        hook.destination_id = destination_id
        hook.legacy = None
        hook.enabled = False
    if "enabled" in fields:
        hook.enabled = fields["enabled"]
    hook.updated_at = now()
    logger.info(
        "webhook updated api=v3 destination_id=%s enabled=%s", hook.destination_id, hook.enabled
    )
    return web.json_response(state.webhook_v3_view())


async def delete_webhook_v3(request: web.Request) -> web.Response:
    state = _emulator(request).state
    hook = state.webhook
    if hook.destination_id is None and hook.legacy is None:
        raise ProblemError(404, "Not Found")
    hook.destination_id = None
    hook.legacy = None
    hook.enabled = False
    hook.updated_at = now()
    logger.info("webhook deleted")
    return web.Response(status=204)


async def get_webhook_status(request: web.Request) -> web.Response:
    return web.json_response(_emulator(request).state.status_view())


async def get_jwks(request: web.Request) -> web.Response:
    return web.json_response(_emulator(request).signer.jwks())


# Replay job


async def get_replay_job(request: web.Request) -> web.Response:
    return web.json_response(_emulator(request).state.replay_job.view())


async def put_replay_job(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    state = emulator.state
    body = await read_json_object(request)
    if state.replay_job.busy:
        raise ProblemError(409, REPLAY_RUNNING, title="Resource Conflict")
    start, end = validate_replay_window(body, now())

    state.replay_job = ReplayJob(start_at=start, end_at=end, status="accepted", updated_at=now())
    emulator.replay_task = asyncio.create_task(run_replay(emulator, start, end))
    logger.info("replay job accepted start_at=%s end_at=%s", start.isoformat(), end.isoformat())
    return web.json_response(state.replay_job.view(), status=202)
