"""Realistic Konnect audit records: authentication, authorization and access events.

Field names, values and order follow the examples of Konnect's audit-log reference. An event
is kept as data and rendered per delivery, so a replay can send it again in the format the
destination has then. Rendering is deterministic: the same event gives the same bytes.

CEF lines look like
``2025-05-19T00:03:39Z konghq.com CEF:0|KongInc|Konnect|1.0|konnect|Authz.portals|1|rt=...``;
JSON lines are compact objects with keys in alphabetical order, as in Konnect's examples.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from kongctl.emulator.signing import Signer

LogFormat = Literal["cef", "json", "cps"]
LOG_FORMATS: tuple[LogFormat, ...] = ("cef", "json", "cps")
ExtensionValue = str | int | bool

CEF_HOST = "konghq.com"
VENDOR = "KongInc"
PRODUCT = "Konnect"
PRODUCT_VERSION = "1.0"
# Trace ids are unsigned 63-bit correlation ids; above 2**53 a float cannot hold them, which
# is exactly what a receiver must survive.
TRACE_ID_MIN = 2**53 + 1
TRACE_ID_MAX = 2**63 - 1

_AUTHN_TYPES = ("AUTHENTICATION_TYPE_BASIC", "AUTHENTICATION_TYPE_SSO", "AUTHENTICATION_TYPE_PAT")
_AUTHN_FAILURES = (
    "AUTHENTICATION_OUTCOME_NOT_FOUND",
    "AUTHENTICATION_OUTCOME_INVALID_PASSWORD",
    "AUTHENTICATION_OUTCOME_LOCKED",
    "AUTHENTICATION_OUTCOME_DISABLED",
)
_AUTHZ_RESOURCES = (
    "portals",
    "control-planes",
    "usage",
    "api-products",
    "teams",
    "users",
    "audit-logs",
    "service-hub",
    "identity",
)
_AUTHZ_ACTIONS = ("retrieve", "list", "edit", "create", "delete")
_ACCESS_REQUESTS = (
    ("POST", "/v2/control-planes/{cp}/core-entities/services", 201),
    ("PATCH", "/v2/control-planes/{cp}/core-entities/routes/{id}", 200),
    ("PUT", "/v2/control-planes/{cp}/core-entities/plugins/{id}", 200),
    ("DELETE", "/v2/control-planes/{cp}/core-entities/consumers/{id}", 204),
    ("POST", "/v3/api-products", 201),
    ("POST", "/v3/audit-log-destinations", 201),
    ("PATCH", "/v3/audit-log-webhook", 200),
    ("POST", "/konnect-api/api/vitals/v1/explore", 200),
    ("DELETE", "/v2/control-planes/{cp}", 403),
)
_USER_AGENTS = (
    "grpc-node-js/1.8.10",
    "grpc-go/1.51.0",
    "kongctl/0.1.0",
    "deck/1.40.2",
    "terraform-provider-konnect/2.4.0",
    "curl/8.5.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
)
_SOURCES = ("127.0.0.6", "203.0.113.17", "198.51.100.42", "192.0.2.8", "203.0.113.250")
_CONTENT_TYPES: dict[LogFormat, str] = {
    "cef": "text/plain",
    "json": "application/json",
    "cps": "application/json",
}


@dataclass(frozen=True)
class AuditEvent:
    """One audit event; ``extensions`` are the event fields in CEF order."""

    at: datetime
    event_class_id: str
    name: str
    severity: int
    extensions: tuple[tuple[str, ExtensionValue], ...]

    @property
    def event_ts(self) -> str:
        return self.at.strftime("%Y-%m-%dT%H:%M:%SZ")


class EventFactory:
    """Makes a plausible stream of events for one organization; seeded, it repeats itself."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self.org_id = self._uuid()
        self._principals = [self._uuid() for _ in range(4)]
        self._control_planes = [self._uuid() for _ in range(2)]
        self._trace_id = 0
        self._trace_uses_left = 0

    def next_event(self, at: datetime | None = None) -> AuditEvent:
        """The next event, stamped ``at`` (now by default)."""
        when = _millis(at or datetime.now(UTC))
        roll = self._rng.random()
        if roll < 0.15:
            return self._authentication(when)
        if roll < 0.6:
            return self._authorization(when)
        return self._access(when)

    def _authentication(self, at: datetime) -> AuditEvent:
        auth_type = self._rng.choice(_AUTHN_TYPES)
        success = self._rng.random() < 0.85
        outcome = "AUTHENTICATION_OUTCOME_SUCCESS" if success else self._rng.choice(_AUTHN_FAILURES)
        request = (
            "/api/v1/personal-access-tokens/introspect"
            if auth_type == "AUTHENTICATION_TYPE_PAT"
            else "/api/v1/authenticate"
        )
        head = self._common_head(at)
        fields = (*head, ("request", request), ("success", "true" if success else "false"))
        return AuditEvent(at, auth_type, outcome, 0, (*fields, *self._common_tail()))

    def _authorization(self, at: datetime) -> AuditEvent:
        name = f"Authz.{self._rng.choice(_AUTHZ_RESOURCES)}"
        action = self._rng.choice(_AUTHZ_ACTIONS)
        granted = self._rng.random() < 0.9
        fields = (*self._common_head(at), ("action", action), ("granted", granted))
        return AuditEvent(at, "konnect", name, 1, (*fields, *self._common_tail()))

    def _access(self, at: datetime) -> AuditEvent:
        method, template, status = self._rng.choice(_ACCESS_REQUESTS)
        path = template.format(cp=self._rng.choice(self._control_planes), id=self._uuid())
        query = "{}"
        if method == "POST" and "explore" in path:
            start = int(at.timestamp()) - 3600
            query = json.dumps(
                {"end": str(start + 3600), "start": str(start)}, separators=(",", ":")
            )
        org, principal, trace, agent = self._common_tail()
        fields = (
            *self._common_head(at),
            ("request", path),
            ("act", method),
            ("status", status),
            org,
            principal,
            agent,
            trace,
            ("query", query),
        )
        return AuditEvent(at, "KongGateway", "Ingress", 1, fields)

    def _common_head(self, at: datetime) -> tuple[tuple[str, ExtensionValue], ...]:
        rt = str(int(at.timestamp() * 1000))
        return (("rt", rt), ("src", self._rng.choice(_SOURCES)))

    def _common_tail(self) -> tuple[tuple[str, ExtensionValue], ...]:
        return (
            ("org_id", self.org_id),
            ("principal_id", self._rng.choice(self._principals)),
            ("trace_id", self._next_trace_id()),
            ("user_agent", self._rng.choice(_USER_AGENTS)),
        )

    def _next_trace_id(self) -> int:
        # One API request leaves several records (authentication, authorization, access) that
        # share its trace id; reusing an id for a few events mimics that.
        if self._trace_uses_left <= 0:
            self._trace_id = self._rng.randint(TRACE_ID_MIN, TRACE_ID_MAX)
            self._trace_uses_left = self._rng.randint(1, 3)
        self._trace_uses_left -= 1
        return self._trace_id

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def _millis(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def content_type(log_format: LogFormat) -> str:
    """The Content-Type of a batch in ``log_format``."""
    return _CONTENT_TYPES[log_format]


def render(event: AuditEvent, log_format: LogFormat, signer: Signer | None = None) -> str:
    """One record line (no newline) in ``log_format``, signed when a signer is given."""
    if log_format == "cef":
        line = _cef_line(event)
        return signer.sign_cef_line(line) if signer else line
    fields = _json_fields(event)
    if log_format == "json":
        fields = dict(sorted(fields.items()))
    line = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return signer.sign_json_line(line) if signer else line


def _json_fields(event: AuditEvent) -> dict[str, ExtensionValue]:
    # CPS keeps the CEF header fields first and the event fields in CEF order; the JSON
    # format sorts them. Konnect does not document the CPS layout; see docs/emulator.md.
    head: dict[str, ExtensionValue] = {
        "event_ts": event.event_ts,
        "event_vendor": VENDOR,
        "event_product": PRODUCT,
        "event_version": PRODUCT_VERSION,
        "cef_version": 0,
        "event_class_id": event.event_class_id,
        "name": event.name,
        "severity": event.severity,
    }
    return {**head, **dict(event.extensions)}


def _cef_line(event: AuditEvent) -> str:
    parts = (
        VENDOR,
        PRODUCT,
        PRODUCT_VERSION,
        event.event_class_id,
        event.name,
        str(event.severity),
    )
    header = "|".join(part.replace("\\", "\\\\").replace("|", "\\|") for part in parts)
    extension = " ".join(f"{key}={_cef_value(value)}" for key, value in event.extensions)
    return f"{event.event_ts} {CEF_HOST} CEF:0|{header}|{extension}"


def _cef_value(value: ExtensionValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    # CEF extension values escape backslash, equals sign and line breaks.
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")
