"""The emulator's settings and the runtime objects its handlers share."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from kongctl.emulator.faults import FaultBook
from kongctl.emulator.records import EventFactory
from kongctl.emulator.signing import Signer
from kongctl.emulator.state import OrgState

if TYPE_CHECKING:
    from kongctl.emulator.delivery import Deliverer

EMULATOR_TOKEN = "kpat_emulator"
ContentEncoding = Literal["gzip", "application/gzip"]


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves; every field has a command-line flag."""

    token: str = EMULATOR_TOKEN
    event_rate: float = 2.0
    batch_size: int = 10
    seed: int | None = None
    content_encoding: ContentEncoding = "gzip"
    sign: bool = True
    retry_base: float = 1.0
    retry_max: float = 30.0
    max_retries: int = 4
    replay_delay: float = 0.5
    delivery_timeout: float = 10.0
    ca_file: str | None = None
    history_size: int = 10_000

    def __post_init__(self) -> None:
        if self.event_rate < 0:
            raise ValueError("event_rate must not be negative")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.max_retries < 0 or self.retry_base < 0 or self.retry_max < 0:
            raise ValueError("retry settings must not be negative")
        if self.content_encoding not in ("gzip", "application/gzip"):
            raise ValueError("content_encoding must be gzip or application/gzip")


@dataclass
class Emulator:
    """The shared runtime: settings, the organization, the key, the event source."""

    config: EmulatorConfig
    state: OrgState
    signer: Signer
    events: EventFactory
    faults: FaultBook = field(default_factory=FaultBook)
    deliverer: Deliverer | None = None
    replay_task: asyncio.Task[None] | None = None

    @classmethod
    def create(cls, config: EmulatorConfig) -> Emulator:
        return cls(
            config=config,
            state=OrgState(history_size=config.history_size),
            signer=Signer(config.seed),
            events=EventFactory(config.seed),
        )

    @property
    def record_signer(self) -> Signer | None:
        return self.signer if self.config.sign else None

    def require_deliverer(self) -> Deliverer:
        if self.deliverer is None:
            raise RuntimeError("the emulator is not running")
        return self.deliverer


EMULATOR_KEY = web.AppKey("emulator", Emulator)
