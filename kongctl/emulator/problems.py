"""Konnect's error answers: ``application/problem+json`` with status, title, detail, instance."""

from __future__ import annotations

import json
import random
from http import HTTPStatus
from typing import Any

from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"
_trace_ids = random.Random()


class ProblemError(Exception):
    """Raised by a handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        invalid_parameters: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title
        self.invalid_parameters = invalid_parameters
        self.headers = headers or {}

    def response(self) -> web.Response:
        return problem_response(
            self.status,
            self.detail,
            title=self.title,
            invalid_parameters=self.invalid_parameters,
            headers=self.headers,
        )


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    invalid_parameters: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A problem+json answer; ``instance`` carries a fresh ``kong:trace:<n>`` id."""
    body: dict[str, Any] = {
        "status": status,
        "title": title or _title(status),
        "detail": detail,
        "instance": f"kong:trace:{_trace_ids.randint(10**18, 2**63 - 1)}",
    }
    if invalid_parameters is not None:
        body["invalid_parameters"] = invalid_parameters
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def bad_request(detail: str, invalid_parameters: list[dict[str, Any]]) -> ProblemError:
    return ProblemError(400, detail, invalid_parameters=invalid_parameters)


def not_found(detail: str = "Not Found") -> ProblemError:
    return ProblemError(404, detail)


def invalid(
    field: str, reason: str, rule: str | None = None, source: str = "body", **extra: Any
) -> dict[str, Any]:
    """One ``invalid_parameters`` entry."""
    entry: dict[str, Any] = {"field": field, "reason": reason}
    if rule is not None:
        entry["rule"] = rule
    entry["source"] = source
    entry.update(extra)
    return entry


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or the 400 Konnect gives for anything else."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise bad_request(
            "Could not parse request body",
            [{"field": "body", "reason": "request format is invalid"}],
        )
    return body
