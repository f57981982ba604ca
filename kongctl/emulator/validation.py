"""Request validation with Konnect's 400 answers: a detail and ``invalid_parameters``."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from kongctl.emulator.problems import bad_request, invalid
from kongctl.emulator.records import LOG_FORMATS

REPLAY_WINDOW = timedelta(days=7)
# A client whose clock runs a little ahead of the emulator's may ask for "up to now".
CLOCK_SKEW = timedelta(seconds=60)

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
)
_MISSING = "Required field missing"
_INVALID = "Invalid request parameters"


class _Errors:
    """Collects problems field by field; the first one names the answer's detail."""

    def __init__(self) -> None:
        self.detail: str | None = None
        self.entries: list[dict[str, Any]] = []

    def add(self, detail: str, entry: dict[str, Any]) -> None:
        if self.detail is None:
            self.detail = detail
        self.entries.append(entry)

    def raise_if_any(self) -> None:
        if self.entries:
            raise bad_request(self.detail or _INVALID, self.entries)


def validate_destination(
    body: dict[str, Any], *, partial: bool, require_authorization: bool
) -> dict[str, Any]:
    """The destination fields of a create (``partial=False``) or update request."""
    errors = _Errors()
    fields: dict[str, Any] = {}

    if "name" in body or not partial:
        fields["name"] = _required_text(body, "name", errors, reason="is a required field")
    if "endpoint" in body or not partial:
        fields["endpoint"] = _endpoint(body, errors)
    if "authorization" in body or (require_authorization and not partial):
        fields["authorization"] = _required_text(body, "authorization", errors)
    if "log_format" in body or not partial:
        fields["log_format"] = _log_format(body, errors, required=not partial)
    if "skip_ssl_verification" in body:
        fields["skip_ssl_verification"] = _boolean(body, "skip_ssl_verification", errors)

    errors.raise_if_any()
    if not partial:
        fields.setdefault("authorization", "")
        fields.setdefault("skip_ssl_verification", False)
    return fields


def validate_legacy_webhook(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of a v2 webhook update; each is optional."""
    errors = _Errors()
    fields: dict[str, Any] = {}
    if "endpoint" in body:
        fields["endpoint"] = _endpoint(body, errors)
    if "authorization" in body:
        fields["authorization"] = _required_text(body, "authorization", errors)
    if "log_format" in body:
        fields["log_format"] = _log_format(body, errors, required=False)
    for key in ("enabled", "skip_ssl_verification"):
        if key in body:
            fields[key] = _boolean(body, key, errors)
    errors.raise_if_any()
    return fields


def validate_webhook_binding(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of a v3 webhook update: a destination id and the enabled flag."""
    fields: dict[str, Any] = {}
    if "audit_log_destination_id" in body:
        raw = body["audit_log_destination_id"]
        if not isinstance(raw, str) or not _is_uuid(raw):
            raise bad_request(
                "Could not parse destination id",
                [
                    invalid(
                        "audit_log_destination_id", "destination id format is invalid", "is_uuid"
                    )
                ],
            )
        fields["audit_log_destination_id"] = raw.lower()
    if "enabled" in body:
        errors = _Errors()
        fields["enabled"] = _boolean(body, "enabled", errors)
        errors.raise_if_any()
    return fields


def validate_replay_window(body: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    """``start_at`` and ``end_at``: RFC 3339, in order, and within the last 7 days."""
    errors = _Errors()
    start = _timestamp(body, "start_at", errors)
    end = _timestamp(body, "end_at", errors)
    if start is None or end is None:
        raise bad_request(errors.detail or _MISSING, errors.entries)

    oldest = now - REPLAY_WINDOW
    for key, value in (("start_at", start), ("end_at", end)):
        if value < oldest or value > now + CLOCK_SKEW:
            errors.add(
                "Replay window must be within the last 7 days",
                invalid(key, "must be within the last 7 days", "invalid"),
            )
    if start >= end:
        errors.add(
            "start_at must be before end_at",
            invalid("end_at", "must be after start_at", "invalid"),
        )
    errors.raise_if_any()
    return start, end


def is_destination_id(text: str) -> bool:
    return _is_uuid(text)


def _required_text(
    body: dict[str, Any], key: str, errors: _Errors, reason: str = "cannot be blank"
) -> str:
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        errors.add(_MISSING, invalid(key, reason, "required"))
        return ""
    if not isinstance(value, str):
        errors.add(_INVALID, invalid(key, "must be a string", "is_string"))
        return ""
    return value


def _endpoint(body: dict[str, Any], errors: _Errors) -> str:
    value = _required_text(body, "endpoint", errors)
    if value and not is_valid_url(value):
        errors.add("Invalid endpoint", invalid("endpoint", "must be a valid URL", "invalid"))
    return value


def is_valid_url(text: str) -> bool:
    """An absolute http(s) URL with a host, as Konnect accepts for webhook endpoints."""
    if any(ch.isspace() for ch in text):
        return False
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _log_format(body: dict[str, Any], errors: _Errors, *, required: bool) -> str:
    value = body.get("log_format")
    if value is None and required:
        errors.add(_MISSING, invalid("log_format", "is a required field", "required"))
        return ""
    if value not in LOG_FORMATS:
        errors.add(
            "Invalid log format",
            invalid(
                "log_format",
                f"must be one of: {', '.join(LOG_FORMATS)}",
                "enum",
                choices=list(LOG_FORMATS),
            ),
        )
        return ""
    return str(value)


def _boolean(body: dict[str, Any], key: str, errors: _Errors) -> bool:
    value = body.get(key)
    if not isinstance(value, bool):
        errors.add(_INVALID, invalid(key, "must be a boolean", "is_boolean"))
        return False
    return value


def _timestamp(body: dict[str, Any], key: str, errors: _Errors) -> datetime | None:
    value = body.get(key)
    if value is None or value == "":
        errors.add(_MISSING, invalid(key, "is a required field", "required"))
        return None
    if not isinstance(value, str) or not _RFC3339.match(value):
        errors.add(
            "Invalid date-time", invalid(key, "must be an RFC 3339 date-time", "is_date_time")
        )
        return None
    return datetime.fromisoformat(value.upper())


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    # uuid.UUID also takes forms without dashes or in braces; Konnect ids are canonical.
    return len(text) == 36
