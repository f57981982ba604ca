"""Background work: the steady stream of new records and replay jobs.

The organization produces events whether or not a webhook is listening, as Konnect does;
every event is kept for replays, and only events made while the webhook is enabled are
delivered live. That is what makes a replay recover what a stopped listener missed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from kongctl.emulator.context import Emulator
from kongctl.emulator.records import AuditEvent
from kongctl.emulator.state import now

logger = logging.getLogger(__name__)

# Konnect ships records in near real time; a second of batching keeps requests few.
FLUSH_INTERVAL = 1.0


class EventPump:
    """Makes ``event_rate`` events a second and delivers them in batches while enabled."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        self._pending: list[AuditEvent] = []
        self._oldest_pending = 0.0

    async def run(self) -> None:
        rate = self._emulator.config.event_rate
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        interval = 1.0 / rate
        next_event_at = loop.time()
        while True:
            current = loop.time()
            next_event_at = self._make_due_events(current, next_event_at, interval)
            if self._flush_due(current):
                await self._flush()
            wake_at = next_event_at
            if self._pending:
                wake_at = min(wake_at, self._oldest_pending + FLUSH_INTERVAL)
            await asyncio.sleep(max(0.0, wake_at - loop.time()))

    def _make_due_events(self, current: float, next_event_at: float, interval: float) -> float:
        batch_size = self._emulator.config.batch_size
        # After a long stall (a slow webhook) start afresh instead of bursting to catch up.
        if current - next_event_at > batch_size * interval:
            next_event_at = current
        while next_event_at <= current:
            self._make_event(current)
            next_event_at += interval
        return next_event_at

    def _make_event(self, current: float) -> None:
        emulator = self._emulator
        event = emulator.events.next_event()
        emulator.state.remember(event)
        if emulator.state.delivery_target() is None:
            return
        if not self._pending:
            self._oldest_pending = current
        self._pending.append(event)

    def _flush_due(self, current: float) -> bool:
        if not self._pending:
            return False
        full = len(self._pending) >= self._emulator.config.batch_size
        return full or current - self._oldest_pending >= FLUSH_INTERVAL

    async def _flush(self) -> None:
        events, self._pending = self._pending, []
        target = self._emulator.state.delivery_target()
        if target is None:
            return
        result, _ = await self._emulator.require_deliverer().send(target, events)
        logger.debug("live batch records=%s status=%s", len(events), result.status)


async def run_replay(emulator: Emulator, start: datetime, end: datetime) -> None:
    """Walk the job through accepted, running, then completed or failed."""
    job = emulator.state.replay_job
    delay = emulator.config.replay_delay
    await asyncio.sleep(delay)

    if job is not emulator.state.replay_job:
        return
    _set_status(emulator, "running")
    events = [event for event in emulator.state.history if start <= event.at <= end]
    target = emulator.state.delivery_target()
    succeeded = target is not None
    if target is not None and events:
        result, _ = await emulator.require_deliverer().send(target, events)
        succeeded = result.ok
    await asyncio.sleep(delay)

    if job is emulator.state.replay_job:
        _set_status(emulator, "completed" if succeeded else "failed")
        logger.info(
            "replay job finished status=%s records=%s start_at=%s end_at=%s",
            job.status,
            len(events),
            start.isoformat(),
            end.isoformat(),
        )


def _set_status(emulator: Emulator, status: str) -> None:
    job = emulator.state.replay_job
    job.status = status
    job.updated_at = now()
