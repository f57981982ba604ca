"""An emulator per test (fresh organization, no background records) and a webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from kongctl.emulator.app import RunningEmulator
from tests.emulator_support import WebhookReceiver, api_session, running_emulator


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator() as running:
        yield running


@pytest.fixture
async def api(emulator: RunningEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A session on the emulator with the right bearer token; admin paths work too."""
    async with api_session(emulator.url) as session:
        yield session


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = await WebhookReceiver().start()
    yield hook
    await hook.stop()


@pytest.fixture
def receiver_url(receiver: WebhookReceiver) -> str:
    return receiver.url
