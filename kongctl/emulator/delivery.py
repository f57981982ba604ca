"""Webhook delivery as Konnect does it: gzip batches of record lines, retried with backoff.

A batch is the record lines joined by newlines, gzip-compressed, POSTed to the endpoint with
the destination's ``Authorization`` value. Connection errors, 429 and 5xx are retried after
``retry_base`` seconds, doubling up to ``retry_max``, at most ``max_retries`` times. Every
attempt is logged into the organization state, which is what the webhook status reports.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from kongctl import __version__
from kongctl.emulator.context import Emulator
from kongctl.emulator.records import AuditEvent, content_type, render
from kongctl.emulator.state import DeliveryTarget

logger = logging.getLogger(__name__)

USER_AGENT = f"konnect-emulator/{__version__} (audit-log-webhook)"
MESSAGE_CHARS = 200


@dataclass(frozen=True)
class DeliveryResult:
    """How one batch ended: the last HTTP status (None: no answer) and attempts made."""

    status: int | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class _Answer:
    status: int | None
    message: str
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


class Deliverer:
    """POSTs batches to the webhook target, one batch at a time to keep records in order."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        self._config = emulator.config
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._verified_tls: ssl.SSLContext | bool = True
        if self._config.ca_file:
            self._verified_tls = ssl.create_default_context(cafile=self._config.ca_file)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._config.delivery_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, target: DeliveryTarget, events: Sequence[AuditEvent]
    ) -> tuple[DeliveryResult, list[str]]:
        """Deliver ``events`` in batches; stops at the first batch that fails for good."""
        signer = self._emulator.record_signer
        lines = [render(event, target.log_format, signer) for event in events]
        size = self._config.batch_size
        result = DeliveryResult(status=None, attempts=0)
        attempts = 0
        for start in range(0, len(lines), size):
            result = await self.post_batch(target, lines[start : start + size])
            attempts += result.attempts
            if not result.ok:
                break
        return DeliveryResult(result.status, attempts), lines

    async def post_batch(self, target: DeliveryTarget, lines: Sequence[str]) -> DeliveryResult:
        """One batch with retries; the lock keeps concurrent senders from interleaving."""
        body = gzip.compress("\n".join(lines).encode("utf-8"), mtime=0)
        async with self._lock:
            return await self._post_with_retries(target, body, len(lines))

    async def _post_with_retries(
        self, target: DeliveryTarget, body: bytes, records: int
    ) -> DeliveryResult:
        config = self._config
        attempt = 0
        while True:
            attempt += 1
            answer = await self._attempt(target, body)
            self._emulator.state.record_attempt(
                target, answer.status, answer.message, records, attempt
            )
            logger.debug(
                "batch attempt endpoint=%s status=%s attempt=%s records=%s",
                target.endpoint,
                answer.status,
                attempt,
                records,
            )
            if not answer.retryable or attempt > config.max_retries:
                if answer.status is None or answer.status >= 300:
                    logger.info(
                        "batch failed endpoint=%s status=%s attempts=%s message=%s",
                        target.endpoint,
                        answer.status,
                        attempt,
                        answer.message,
                    )
                return DeliveryResult(answer.status, attempt)
            await asyncio.sleep(self._backoff(attempt, answer.retry_after))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        config = self._config
        delay = min(config.retry_base * 2.0 ** (attempt - 1), config.retry_max)
        if retry_after is not None:
            delay = max(delay, min(retry_after, config.retry_max))
        return delay

    async def _attempt(self, target: DeliveryTarget, body: bytes) -> _Answer:
        if self._session is None:
            raise RuntimeError("the deliverer is not started")
        headers = {
            "Content-Type": content_type(target.log_format),
            "Content-Encoding": self._config.content_encoding,
            "User-Agent": USER_AGENT,
        }
        if target.authorization:
            headers["Authorization"] = target.authorization
        tls = False if target.skip_ssl_verification else self._verified_tls
        try:
            async with self._session.post(
                target.endpoint, data=body, headers=headers, ssl=tls
            ) as response:
                text = await response.text(errors="replace")
                message = text.strip()[:MESSAGE_CHARS] or (response.reason or "")
                return _Answer(response.status, message, _retry_after(response))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return _Answer(None, _describe(exc))


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:MESSAGE_CHARS]
