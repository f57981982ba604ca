"""The emulated organization: destinations, the region's webhook, its status and replay job.

Pure data with no HTTP: the API handlers validate input and then change this state; the
delivery side reads the webhook target from it and records each attempt into it.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kongctl.emulator.records import AuditEvent, LogFormat

ZERO_TIME = "0001-01-01T00:00:00Z"
REQUEST_LOG_SIZE = 1000
DELIVERY_LOG_SIZE = 1000
UNCONFIGURED_ENDPOINT = "unconfigured"
REPLAY_BUSY = frozenset({"accepted", "pending", "running"})


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(at: datetime | None) -> str:
    """Konnect's timestamp shape; Go's zero time stands for "never"."""
    if at is None:
        return ZERO_TIME
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Destination:
    """An audit-log destination; ``authorization`` is write-only in the API."""

    id: str
    seq: int
    name: str
    endpoint: str
    authorization: str
    log_format: LogFormat
    skip_ssl_verification: bool
    created_at: datetime
    updated_at: datetime

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "endpoint": self.endpoint,
            "log_format": self.log_format,
            "skip_ssl_verification": self.skip_ssl_verification,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        }

    def admin_view(self) -> dict[str, Any]:
        return {**self.view(), "authorization": self.authorization}


@dataclass
class LegacyWebhook:
    """A webhook configured in place through the v2 API, without a destination."""

    endpoint: str = ""
    authorization: str = ""
    log_format: LogFormat = "cef"
    skip_ssl_verification: bool = False


@dataclass
class Webhook:
    """The region's single webhook: bound to a destination (v3) or configured in place (v2)."""

    destination_id: str | None = None
    legacy: LegacyWebhook | None = None
    enabled: bool = False
    updated_at: datetime | None = None


@dataclass(frozen=True)
class DeliveryTarget:
    """Where and how records go right now."""

    destination_id: str | None
    endpoint: str
    authorization: str
    log_format: LogFormat
    skip_ssl_verification: bool


@dataclass
class WebhookStatus:
    last_attempt_at: datetime | None = None
    last_response_code: int = 0
    last_response_message: str = ""
    failing: bool = False


@dataclass
class ReplayJob:
    start_at: datetime | None = None
    end_at: datetime | None = None
    status: str = "unconfigured"
    updated_at: datetime | None = None

    def view(self) -> dict[str, Any]:
        return {
            "start_at": rfc3339(self.start_at),
            "end_at": rfc3339(self.end_at),
            "status": self.status,
            "updated_at": rfc3339(self.updated_at),
        }

    @property
    def busy(self) -> bool:
        return self.status in REPLAY_BUSY


@dataclass
class OrgState:
    """Everything the emulated Konnect organization holds for one region."""

    history_size: int = 10_000
    destinations: dict[str, Destination] = field(default_factory=dict)
    webhook: Webhook = field(default_factory=Webhook)
    status: WebhookStatus = field(default_factory=WebhookStatus)
    replay_job: ReplayJob = field(default_factory=ReplayJob)
    history: deque[AuditEvent] = field(default_factory=deque)
    deliveries: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=DELIVERY_LOG_SIZE)
    )
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE))
    _next_seq: int = 0

    def reset(self) -> None:
        """Back to an empty organization with an unconfigured webhook."""
        self.destinations.clear()
        self.webhook = Webhook()
        self.status = WebhookStatus()
        self.replay_job = ReplayJob()
        self.history.clear()
        self.deliveries.clear()
        self.requests.clear()

    def add_destination(
        self,
        name: str,
        endpoint: str,
        authorization: str,
        log_format: LogFormat,
        skip_ssl_verification: bool,
    ) -> Destination:
        self._next_seq += 1
        at = now()
        destination = Destination(
            id=str(uuid.uuid4()),
            seq=self._next_seq,
            name=name,
            endpoint=endpoint,
            authorization=authorization,
            log_format=log_format,
            skip_ssl_verification=skip_ssl_verification,
            created_at=at,
            updated_at=at,
        )
        self.destinations[destination.id] = destination
        return destination

    def destination_in_use(self, destination_id: str) -> bool:
        return self.webhook.destination_id == destination_id

    def remember(self, event: AuditEvent) -> None:
        """Keep a generated event for replay jobs, dropping the oldest past the bound."""
        self.history.append(event)
        while len(self.history) > self.history_size:
            self.history.popleft()

    def delivery_target(self) -> DeliveryTarget | None:
        """The webhook's target if it is configured and enabled, else None."""
        if not self.webhook.enabled:
            return None
        return self.configured_target()

    def configured_target(self) -> DeliveryTarget | None:
        hook = self.webhook
        if hook.destination_id is not None:
            dest = self.destinations.get(hook.destination_id)
            if dest is None:
                return None
            return DeliveryTarget(
                dest.id,
                dest.endpoint,
                dest.authorization,
                dest.log_format,
                dest.skip_ssl_verification,
            )
        if hook.legacy is not None and hook.legacy.endpoint:
            legacy = hook.legacy
            return DeliveryTarget(
                None,
                legacy.endpoint,
                legacy.authorization,
                legacy.log_format,
                legacy.skip_ssl_verification,
            )
        return None

    def webhook_v2_view(self) -> dict[str, Any]:
        target = self.configured_target()
        return {
            "enabled": self.webhook.enabled,
            "endpoint": target.endpoint if target else UNCONFIGURED_ENDPOINT,
            "log_format": target.log_format if target else "cef",
            "skip_ssl_verification": target.skip_ssl_verification if target else False,
            "updated_at": rfc3339(self.webhook.updated_at),
        }

    def webhook_v3_view(self) -> dict[str, Any] | None:
        if self.webhook.destination_id is None:
            return None
        return {
            "audit_log_destination_id": self.webhook.destination_id,
            "enabled": self.webhook.enabled,
        }

    def status_view(self) -> dict[str, Any]:
        status = self.status
        if self.configured_target() is None and status.last_attempt_at is None:
            webhook_status = "unconfigured"
        else:
            webhook_status = "inactive" if status.failing else "active"
        return {
            "webhook_status": webhook_status,
            "webhook_enabled": self.webhook.enabled,
            "last_attempt_at": rfc3339(status.last_attempt_at),
            "last_response_code": status.last_response_code,
            "last_response_message": status.last_response_message,
        }

    def record_attempt(
        self,
        target: DeliveryTarget,
        status: int | None,
        message: str,
        records: int,
        attempt: int,
    ) -> None:
        """Log one delivery attempt and update the webhook status from it."""
        at = now()
        self.deliveries.append(
            {
                "destination_id": target.destination_id,
                "endpoint": target.endpoint,
                "status": status,
                "records": records,
                "attempt": attempt,
                "at": rfc3339(at),
            }
        )
        self.status = WebhookStatus(
            last_attempt_at=at,
            last_response_code=status or 0,
            last_response_message=message,
            failing=status is None or not 200 <= status < 300,
        )

    def record_request(self, method: str, path: str, status: int | None) -> None:
        self.requests.append({"method": method, "path": path, "status": status})

    def snapshot(self) -> dict[str, Any]:
        """Everything, secrets included, for the admin API."""
        return {
            "destinations": [d.admin_view() for d in self.destinations.values()],
            "webhook": {"v2": self.webhook_v2_view(), "v3": self.webhook_v3_view()},
            "webhook_status": self.status_view(),
            "replay_job": self.replay_job.view(),
            "history_size": len(self.history),
            "deliveries": list(self.deliveries),
            "requests": list(self.requests),
        }
