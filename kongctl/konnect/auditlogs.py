"""The Konnect audit-log API: destinations, the regional webhook, replay jobs and JWKS."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from kongctl.errors import ExecutionError, KonnectAPIError, KonnectError
from kongctl.konnect.client import KonnectClient, KonnectResponse, Scope, backoff_delay

logger = logging.getLogger(__name__)

WEBHOOK_V2 = "/v2/audit-log-webhook"
WEBHOOK_V3 = "/v3/audit-log-webhook"
DESTINATIONS = "/v3/audit-log-destinations"
REPLAY_JOB = "/v2/audit-log-replay-job"
JWKS = "/v2/audit-log-webhook/jwks.json"

# Konnect drops a destination's link to the regional webhook asynchronously, so a delete
# right after unbinding can still meet 409 "in use" for a few seconds.
IN_USE_STATUS = 409

Destination = dict[str, Any]


class AuditLogsAPI:
    """Typed calls to the Konnect audit-log endpoints; results are the JSON objects Konnect sent."""

    def __init__(self, client: KonnectClient) -> None:
        self._client = client

    # The regional webhook (v2 shape: endpoint, authorization, log format on the webhook).

    async def get_webhook(self) -> dict[str, Any]:
        """The regional webhook as the v2 API shows it (``enabled``, ``endpoint``, ...)."""
        return await self._object("GET", WEBHOOK_V2)

    async def disable_webhook(self) -> dict[str, Any]:
        """Turn the regional webhook off; repeating it changes nothing."""
        return await self._object("PATCH", WEBHOOK_V2, json={"enabled": False}, idempotent=True)

    async def update_webhook_v2(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Set fields of the regional webhook through the v2 API."""
        return await self._object("PATCH", WEBHOOK_V2, json=dict(body), idempotent=True)

    async def get_webhook_status(self) -> dict[str, Any]:
        """Delivery status of the regional webhook (``webhook_status``, last response, ...)."""
        return await self._object("GET", f"{WEBHOOK_V2}/status")

    # The regional webhook (v3 shape: a binding to a destination).

    async def get_webhook_binding(self) -> dict[str, Any] | None:
        """The webhook's destination binding, or None when the region has none."""
        response = await self._client.request("GET", WEBHOOK_V3, ok=(404,))
        if response.status == 404:
            return None
        return _as_object(response, "GET", WEBHOOK_V3)

    async def bind_webhook(self, destination_id: str) -> dict[str, Any]:
        """Point the regional webhook at a destination and enable it."""
        body = {"audit_log_destination_id": destination_id, "enabled": True}
        return await self._object("PATCH", WEBHOOK_V3, json=body, idempotent=True)

    async def unbind_webhook(self) -> bool:
        """Remove the webhook's binding; False when there was none to remove."""
        response = await self._client.request("DELETE", WEBHOOK_V3, ok=(404,))
        return response.status != 404

    # Destinations, which Konnect keeps globally rather than per region.

    async def list_destinations(
        self, *, page_size: int = 100, after: str | None = None, name: str | None = None
    ) -> tuple[list[Destination], str | None]:
        """One page of destinations and the cursor of the next page (None on the last)."""
        params = {"page[size]": str(page_size)}
        if after is not None:
            params["page[after]"] = after
        if name is not None:
            params["filter[name][eq]"] = name
        response = await self._client.request("GET", DESTINATIONS, scope="global", params=params)
        page = _as_object(response, "GET", DESTINATIONS)
        items = page.get("data")
        if not isinstance(items, list):
            raise KonnectError(f"unexpected response from Konnect for GET {DESTINATIONS}: no data")
        meta = page.get("meta")
        next_path = meta.get("next") if isinstance(meta, dict) else None
        return [d for d in items if isinstance(d, dict)], next_cursor(next_path)

    async def iter_destinations(
        self, *, page_size: int = 100, name: str | None = None
    ) -> AsyncIterator[Destination]:
        """Every destination, page after page."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            items, cursor = await self.list_destinations(
                page_size=page_size, after=cursor, name=name
            )
            for item in items:
                yield item
            if cursor is None:
                return
            # A server handing out a cursor twice would otherwise keep this loop going forever.
            if cursor in seen:
                raise KonnectError("Konnect returned the same destinations page cursor twice")
            seen.add(cursor)

    async def find_destination_by_name(
        self, name: str, *, page_size: int = 100
    ) -> Destination | None:
        """The destination called exactly ``name``, or None."""
        # The server-side filter narrows the scan; the exact comparison decides, because
        # older servers ignore the filter and some match it loosely.
        async for destination in self.iter_destinations(page_size=page_size, name=name):
            if destination.get("name") == name:
                return destination
        return None

    async def create_destination(
        self,
        *,
        name: str,
        endpoint: str,
        log_format: str,
        authorization: str,
        skip_ssl_verification: bool,
    ) -> Destination:
        """Create a destination; the returned object carries its ``id``."""
        body = {
            "name": name,
            "endpoint": endpoint,
            "log_format": log_format,
            "authorization": authorization,
            "skip_ssl_verification": skip_ssl_verification,
        }
        return await self._object("POST", DESTINATIONS, scope="global", json=body)

    async def get_destination(self, destination_id: str) -> Destination:
        """One destination; a missing one raises KonnectAPIError with status 404."""
        return await self._object("GET", _destination_path(destination_id), scope="global")

    async def update_destination(self, destination_id: str, body: Mapping[str, Any]) -> Destination:
        """Set fields of a destination."""
        path = _destination_path(destination_id)
        return await self._object("PATCH", path, scope="global", json=dict(body), idempotent=True)

    async def delete_destination(self, destination_id: str) -> int:
        """Delete a destination; returns the status (404 means it was already gone).

        A destination still bound to a webhook answers 409, raised as KonnectAPIError.
        """
        path = _destination_path(destination_id)
        response = await self._client.request("DELETE", path, scope="global", ok=(404,))
        return response.status

    async def delete_destination_when_free(
        self,
        destination_id: str,
        *,
        budget: float = 60.0,
        on_wait: Callable[[float], None] | None = None,
    ) -> int:
        """Delete a destination, waiting out 409 "in use" answers for up to ``budget`` seconds."""
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            try:
                return await self.delete_destination(destination_id)
            except KonnectAPIError as exc:
                if exc.status != IN_USE_STATUS:
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _still_in_use(destination_id, budget, exc) from None

            delay = min(self._in_use_delay(attempt), remaining)
            attempt += 1
            logger.debug(
                "destination in use id=%s attempt=%d delay=%.3f", destination_id, attempt, delay
            )
            if on_wait is not None:
                on_wait(delay)
            await asyncio.sleep(delay)

    def _in_use_delay(self, attempt: int) -> float:
        # Full jitter can pick ~0 several times in a row; a floor keeps the polling polite.
        floor = self._client.backoff_base / 2
        return max(
            floor, backoff_delay(attempt, self._client.backoff_base, self._client.backoff_max)
        )

    # Replay jobs and signing keys.

    async def put_replay_job(self, start_at: str, end_at: str) -> dict[str, Any]:
        """Ask Konnect to send the audit logs of [start_at, end_at] (RFC 3339) again."""
        body = {"start_at": start_at, "end_at": end_at}
        return await self._object("PUT", REPLAY_JOB, json=body)

    async def get_replay_job(self) -> dict[str, Any]:
        """The replay job's range and status."""
        return await self._object("GET", REPLAY_JOB)

    async def get_jwks(self) -> dict[str, Any]:
        """The public keys (JWKS) Konnect signs audit-log entries with."""
        return await self._object("GET", JWKS)

    async def _object(
        self,
        method: str,
        path: str,
        *,
        scope: Scope = "regional",
        json: Any = None,
        idempotent: bool | None = None,
    ) -> dict[str, Any]:
        response = await self._client.request(
            method,
            path,
            scope=scope,
            json=json,
            idempotent=idempotent,
        )
        return _as_object(response, method, path)


def next_cursor(next_path: object) -> str | None:
    """The ``page[after]`` cursor inside a ``meta.next`` link, or None when there is none."""
    if not isinstance(next_path, str) or not next_path:
        return None
    values = parse_qs(urlsplit(next_path).query).get("page[after]")
    return values[0] if values and values[0] else None


def _destination_path(destination_id: str) -> str:
    # An id is ours to pass through, but quoting keeps a stray "/" or "?" from changing the call.
    return f"{DESTINATIONS}/{quote(destination_id, safe='')}"


def _as_object(response: KonnectResponse, method: str, path: str) -> dict[str, Any]:
    if not isinstance(response.data, dict):
        raise KonnectError(
            f"unexpected response from Konnect for {method} {path}: "
            f"expected a JSON object, got {type(response.data).__name__}"
        )
    return response.data


def _still_in_use(destination_id: str, budget: float, exc: KonnectAPIError) -> ExecutionError:
    return ExecutionError(
        f"audit-log destination {destination_id} is still in use after {budget:g} s "
        f"and was left in Konnect ({exc})",
        hint="unbind it from the regional webhook, then delete it in Konnect",
    )
