"""Konnect on a bad day: bursts of 5xx and 429, resets, slow answers, lost answers, a revoked
token and a destination that stays busy, during listen setup, cleanup, get and replay.

The rule under test: setup either succeeds or fails with nothing left in Konnect, and cleanup
either removes everything or names exactly what it left. Most cases run the listen session in
this process with a short client timeout, so that a Konnect slower than the client costs a
fraction of a second instead of the real 30 s; the cases that pin what the user reads run a
real ``kongctl`` process.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kongctl.auditlogs.options import ListenOptions
from kongctl.auditlogs.session import ListenSession, SessionIO
from kongctl.cli.root import run
from kongctl.emulator.app import RunningEmulator, reset_connection
from kongctl.errors import KongctlError
from kongctl.konnect.auditlogs import AuditLogsAPI
from kongctl.konnect.client import KonnectClient
from tests.emulator_support import admin_state, api_session, running_emulator
from tests.faults.conftest import (
    TOKEN,
    Figures,
    Konnect,
    LaunchListener,
    free_port,
)

NAME = "fault-listener"
DESTINATIONS = "/v3/audit-log-destinations"
ONE_DESTINATION = "/v3/audit-log-destinations/*"
WEBHOOK_V2 = "/v2/audit-log-webhook"
WEBHOOK_V3 = "/v3/audit-log-webhook"
REPLAY_JOB = "/v2/audit-log-replay-job"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


# A network between kongctl and Konnect that loses answers or holds requests back.


@dataclass
class _NetworkRule:
    method: str
    path: str
    lose_answer: bool = False
    hold: float = 0.0
    times: int = 1


@dataclass
class LossyNetwork:
    """A forwarding proxy, in its own thread, in front of the emulator.

    The emulator's own faults strike before Konnect acts. This covers the other half: Konnect
    acts, and the answer is lost on the way back (``lose_answer``), or Konnect acts late, after
    the caller has given up waiting (``hold``).
    """

    upstream: str
    url: str = ""
    acted: list[tuple[str, str, int]] = field(default_factory=list)
    _rules: list[_NetworkRule] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _client: aiohttp.ClientSession | None = None

    def lose_answer(self, method: str, path: str, times: int = 1) -> None:
        self._rules.append(_NetworkRule(method, path, lose_answer=True, times=times))

    def hold(self, method: str, path: str, seconds: float, times: int = 1) -> None:
        self._rules.append(_NetworkRule(method, path, hold=seconds, times=times))

    def start(self) -> LossyNetwork:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self) -> str:
        self._client = aiohttp.ClientSession()
        # The handler goes on when the caller hangs up: Konnect does not notice either.
        server = web.Server(self._forward, handler_cancellation=False)
        self._runner = web.ServerRunner(server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    def _take(self, method: str, path: str) -> _NetworkRule | None:
        for rule in self._rules:
            if rule.method == method and fnmatch.fnmatchcase(path, rule.path):
                rule.times -= 1
                if rule.times <= 0:
                    self._rules.remove(rule)
                return rule
        return None

    async def _forward(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self._client is not None
        body = await request.read()
        rule = self._take(request.method, request.path)
        if rule is not None and rule.hold:
            await asyncio.sleep(rule.hold)
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("authorization", "content-type", "accept")
        }
        async with self._client.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            payload = await answer.read()
            status = answer.status
            kept = {
                name: value
                for name, value in answer.headers.items()
                if name.lower() in ("content-type", "retry-after")
            }
        self.acted.append((request.method, request.path, status))
        if rule is not None and rule.lose_answer:
            reset_connection(request)
        return web.Response(status=status, body=payload, headers=kept)


@pytest.fixture
def lossy_network() -> Iterator[Callable[[str], LossyNetwork]]:
    started: list[LossyNetwork] = []

    def start(upstream: str) -> LossyNetwork:
        network = LossyNetwork(upstream).start()
        started.append(network)
        return network

    yield start
    for network in started:
        network.stop()


# The listen session in this process.


@dataclass
class Outcome:
    """How one listen went: the error the user would read, and what Konnect holds afterwards."""

    error: KongctlError | None
    served: bool
    notices: list[str]
    store_dir: Path
    seconds: float

    @property
    def message(self) -> str:
        assert self.error is not None, "the listen succeeded"
        return self.error.message


def listen_options(*, configure_webhook: bool = True) -> ListenOptions:
    return ListenOptions(
        endpoint="https://listener.example/audit-logs",
        public_url=None,
        path="/audit-logs",
        listen_host="127.0.0.1",
        listen_port=0,
        max_body_bytes=1 << 20,
        name=NAME,
        log_format="json",
        skip_ssl_verification=False,
        authorization="Bearer session-secret",
        configure_webhook=configure_webhook,
        tail=False,
        jq=None,
        detach=False,
    )


async def listen_once(
    konnect_url: str,
    store_dir: Path,
    *,
    while_serving: Callable[[], Awaitable[None]] | None = None,
    timeout: float = 2.0,
    delete_budget: float = 60.0,
) -> Outcome:
    """Run a listen session: set up, serve, run ``while_serving``, stop and clean up."""
    client = KonnectClient(
        TOKEN, base_url=konnect_url, timeout=timeout, backoff_base=0.02, backoff_max=0.1
    )
    ready = asyncio.Event()
    notices: list[str] = []
    session = ListenSession(
        options=listen_options(),
        api=AuditLogsAPI(client),
        store_dir=store_dir,
        io=SessionIO(
            summary=lambda _info: None, notice=notices.append, on_ready=lambda _i: ready.set()
        ),
        delete_budget=delete_budget,
    )
    started = time.monotonic()
    listening = asyncio.create_task(session.run())
    error: KongctlError | None = None
    try:
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({listening, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if ready.is_set():
            if while_serving is not None:
                await while_serving()
            session.stop()
        await listening
    except KongctlError as exc:
        error = exc
    finally:
        await client.close()
    return Outcome(error, ready.is_set(), notices, store_dir, time.monotonic() - started)


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator() as running:
        yield running


@pytest.fixture
async def admin(emulator: RunningEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with api_session(emulator.url) as session:
        yield session


async def add_faults(admin: aiohttp.ClientSession, *rules: dict[str, Any]) -> None:
    async with admin.post("/_emulator/faults", json={"rules": list(rules)}) as answer:
        assert answer.status == 200, await answer.text()


async def clear_faults(admin: aiohttp.ClientSession) -> None:
    async with admin.delete("/_emulator/faults") as answer:
        assert answer.status == 204


@dataclass(frozen=True)
class Leftovers:
    """What a listener left in Konnect: destination ids and whether the webhook is bound."""

    destinations: frozenset[str]
    webhook: bool

    @classmethod
    def in_konnect(cls, state: dict[str, Any]) -> Leftovers:
        webhook = state["webhook"]
        bound = webhook["v3"] is not None or webhook["v2"]["endpoint"] != "unconfigured"
        return cls(frozenset(d["id"] for d in state["destinations"]), bound)

    @classmethod
    def named_in(cls, message: str) -> Leftovers:
        if "nothing was left in Konnect" in message:
            return cls(frozenset(), False)
        _, _, claim = message.rpartition("left in Konnect")
        ids = frozenset(re.findall(rf"audit-log destination ({_UUID})", claim))
        return cls(ids, "regional audit-log webhook" in claim)


async def leftovers(admin: aiohttp.ClientSession) -> Leftovers:
    return Leftovers.in_konnect(await admin_state(admin))


async def konnect_requests(admin: aiohttp.ClientSession, method: str, path: str) -> list[Any]:
    state = await admin_state(admin)
    return [
        r["status"]
        for r in state["requests"]
        if r["method"] == method and fnmatch.fnmatchcase(r["path"], path)
    ]


NOTHING = Leftovers(frozenset(), False)


# Setup.


async def test_bursts_of_5xx_and_429_during_setup_are_ridden_out(
    emulator: RunningEmulator, admin: aiohttp.ClientSession, tmp_path: Path, figures: Figures
) -> None:
    await add_faults(
        admin,
        {"method": "GET", "path": WEBHOOK_V2, "status": 503, "times": 3},
        {"method": "GET", "path": DESTINATIONS, "status": 502, "times": 3},
        {"method": "POST", "path": DESTINATIONS, "status": 429, "retry_after": 0, "times": 3},
        {"method": "PATCH", "path": WEBHOOK_V3, "status": 504, "times": 3},
    )
    seen: list[Leftovers] = []

    async def check() -> None:
        seen.append(await leftovers(admin))

    outcome = await listen_once(emulator.url, tmp_path / "store", while_serving=check)

    assert outcome.error is None
    assert outcome.served
    [serving] = seen
    assert len(serving.destinations) == 1 and serving.webhook
    # A 429 means Konnect did not act, so the create is repeated, and only then.
    assert await konnect_requests(admin, "POST", DESTINATIONS) == [429, 429, 429, 201]
    assert await leftovers(admin) == NOTHING
    figures.record(
        "Konnect 5xx/429 bursts during setup",
        "3x 503, 3x 502, 3x 429, 3x 504 on the four setup calls",
        "setup retried and served; cleanup removed everything",
    )


async def test_resets_and_timeouts_of_repeatable_setup_calls_are_retried(
    emulator: RunningEmulator, admin: aiohttp.ClientSession, tmp_path: Path, figures: Figures
) -> None:
    await add_faults(
        admin,
        {"method": "GET", "path": WEBHOOK_V2, "reset": True, "times": 2},
        {"method": "GET", "path": DESTINATIONS, "delay": 1.0, "times": 1},
        {"method": "PATCH", "path": WEBHOOK_V3, "reset": True, "times": 1},
        {"method": "PATCH", "path": WEBHOOK_V3, "delay": 1.0, "times": 1},
    )
    outcome = await listen_once(emulator.url, tmp_path / "store", timeout=0.4)

    assert outcome.error is None
    assert outcome.served
    assert await leftovers(admin) == NOTHING
    figures.record(
        "Konnect resets and timeouts during setup",
        "2 resets on the webhook read, a 1 s stall (client timeout 0.4 s) on the name lookup,"
        " a reset and a stall on the webhook bind",
        "setup retried and served; cleanup removed everything",
    )


async def test_slow_konnect_within_the_timeout_is_only_slow(
    emulator: RunningEmulator, admin: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await add_faults(admin, {"path": "/v*", "delay": 0.1})
    outcome = await listen_once(emulator.url, tmp_path / "store", timeout=2.0)
    assert outcome.error is None
    assert outcome.served
    assert await leftovers(admin) == NOTHING


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503},
        {"status": 500},
        {"status": 403},
        {"status": 400, "detail": "endpoint: must be a valid URL"},
        {"reset": True},
        {"delay": 1.0},
    ],
    ids=["503", "500", "403", "400", "reset", "timeout"],
)
async def test_a_failed_create_leaves_nothing_in_konnect(
    emulator: RunningEmulator,
    admin: aiohttp.ClientSession,
    tmp_path: Path,
    figures: Figures,
    fault: dict[str, Any],
) -> None:
    # A create is not repeated after a failure that may have reached Konnect.
    await add_faults(admin, {"method": "POST", "path": DESTINATIONS, **fault})
    outcome = await listen_once(emulator.url, tmp_path / "store", timeout=0.4)

    assert outcome.error is not None
    assert not outcome.served
    assert await leftovers(admin) == NOTHING
    assert (await admin_state(admin))["webhook"]["v2"]["enabled"] is False
    store = tmp_path / "store"
    assert not (store / "listener.json").exists()
    assert not (store / "destination.json").exists()
    figures.record(
        f"create refused during setup ({next(iter(fault))}={next(iter(fault.values()))})",
        "the destination create fails",
        f"exit 1 ({re.sub(r' at http://[^:]+:[0-9]+', '', outcome.message)}); nothing left",
    )


async def test_a_create_whose_answer_is_lost_is_found_by_name_and_deleted(
    emulator: RunningEmulator,
    admin: aiohttp.ClientSession,
    tmp_path: Path,
    lossy_network: Callable[[str], LossyNetwork],
    figures: Figures,
) -> None:
    network = lossy_network(emulator.url)
    network.lose_answer("POST", DESTINATIONS)
    outcome = await listen_once(network.url, tmp_path / "store")

    assert ("POST", DESTINATIONS, 201) in network.acted
    assert outcome.error is not None
    assert "cannot reach Konnect" in outcome.message
    assert await leftovers(admin) == NOTHING
    figures.record(
        "create acted on, answer lost",
        "Konnect creates the destination; the connection resets before the answer",
        "setup fails; the destination is found by name and deleted; nothing left",
    )


async def test_a_create_konnect_completes_after_the_client_gave_up_is_not_forgotten(
    emulator: RunningEmulator,
    admin: aiohttp.ClientSession,
    tmp_path: Path,
    lossy_network: Callable[[str], LossyNetwork],
) -> None:
    network = lossy_network(emulator.url)
    network.hold("POST", DESTINATIONS, seconds=1.0)
    outcome = await listen_once(network.url, tmp_path / "store", timeout=0.4)
    assert outcome.error is not None

    async def created() -> bool:
        return ("POST", DESTINATIONS, 201) in network.acted

    deadline = time.monotonic() + 3
    while not await created():
        assert time.monotonic() < deadline, "the held create never reached Konnect"
        await asyncio.sleep(0.02)
    left = await leftovers(admin)
    # Either the listener waited for it and deleted it, or the error names it for the user.
    assert left == NOTHING or NAME in outcome.message


async def test_a_bind_whose_answer_is_lost_is_repeated_safely(
    emulator: RunningEmulator,
    admin: aiohttp.ClientSession,
    tmp_path: Path,
    lossy_network: Callable[[str], LossyNetwork],
) -> None:
    network = lossy_network(emulator.url)
    network.lose_answer("PATCH", WEBHOOK_V3)
    outcome = await listen_once(network.url, tmp_path / "store")
    assert outcome.error is None
    assert outcome.served
    assert [a for a in network.acted if a[:2] == ("PATCH", WEBHOOK_V3)] == [
        ("PATCH", WEBHOOK_V3, 200),
        ("PATCH", WEBHOOK_V3, 200),
    ]
    assert await leftovers(admin) == NOTHING


async def test_a_bind_that_keeps_failing_deletes_the_new_destination(
    emulator: RunningEmulator, admin: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await add_faults(admin, {"method": "PATCH", "path": WEBHOOK_V3, "status": 503})
    outcome = await listen_once(emulator.url, tmp_path / "store")
    assert outcome.error is not None
    assert "503" in outcome.message
    assert await leftovers(admin) == NOTHING


# Cleanup.


async def test_cleanup_rides_out_resets_timeouts_and_throttling(
    emulator: RunningEmulator, admin: aiohttp.ClientSession, tmp_path: Path, figures: Figures
) -> None:
    async def trouble() -> None:
        await add_faults(
            admin,
            {"method": "PATCH", "path": WEBHOOK_V2, "reset": True, "times": 1},
            {"method": "PATCH", "path": WEBHOOK_V2, "delay": 1.0, "times": 1},
            {"method": "DELETE", "path": WEBHOOK_V3, "status": 429, "retry_after": 0, "times": 2},
            {"method": "DELETE", "path": ONE_DESTINATION, "reset": True, "times": 1},
            {"method": "DELETE", "path": ONE_DESTINATION, "status": 503, "times": 2},
        )

    outcome = await listen_once(
        emulator.url, tmp_path / "store", while_serving=trouble, timeout=0.4
    )

    assert outcome.error is None
    assert await leftovers(admin) == NOTHING
    assert not (tmp_path / "store" / "destination.json").exists()
    figures.record(
        "Konnect resets, timeouts and 429/503 during cleanup",
        "a reset and a 1 s stall on the disable, 2x 429 on the unbind, a reset and 2x 503 on"
        " the delete",
        "cleanup retried and removed everything",
    )


async def test_a_delete_whose_answer_is_lost_counts_as_done(
    emulator: RunningEmulator,
    admin: aiohttp.ClientSession,
    tmp_path: Path,
    lossy_network: Callable[[str], LossyNetwork],
) -> None:
    network = lossy_network(emulator.url)
    network.lose_answer("DELETE", ONE_DESTINATION)
    outcome = await listen_once(network.url, tmp_path / "store")
    assert outcome.error is None
    assert [a[2] for a in network.acted if a[0] == "DELETE" and "destinations" in a[1]] == [
        204,
        404,
    ]
    assert await leftovers(admin) == NOTHING


# What the user is told when cleanup cannot finish: exactly what is left, no more, no less.

CLEANUP_FAILURES = {
    "token revoked (401 everywhere)": [{"path": "/v*", "status": 401}],
    "token revoked at the delete": [{"method": "DELETE", "path": ONE_DESTINATION, "status": 401}],
    "delete keeps failing (503)": [
        {"method": "DELETE", "path": ONE_DESTINATION, "status": 503, "retry_after": 0}
    ],
    "webhook disable refused (500)": [{"method": "PATCH", "path": WEBHOOK_V2, "status": 500}],
    "webhook unbind refused (500)": [{"method": "DELETE", "path": WEBHOOK_V3, "status": 500}],
    "Konnect unreachable (resets)": [{"path": "/v*", "reset": True}],
    "destination busy past the budget (409)": [
        {"method": "DELETE", "path": ONE_DESTINATION, "status": 409}
    ],
}


@pytest.mark.parametrize("case", list(CLEANUP_FAILURES))
async def test_a_cleanup_that_cannot_finish_names_exactly_what_is_left(
    emulator: RunningEmulator,
    admin: aiohttp.ClientSession,
    tmp_path: Path,
    figures: Figures,
    case: str,
) -> None:
    async def trouble() -> None:
        await add_faults(admin, *CLEANUP_FAILURES[case])

    outcome = await listen_once(
        emulator.url, tmp_path / "store", while_serving=trouble, timeout=0.4, delete_budget=0.5
    )
    await clear_faults(admin)

    assert outcome.error is not None
    left = await leftovers(admin)
    assert left != NOTHING
    assert Leftovers.named_in(outcome.message) == left
    assert "kongctl delete audit-logs destination" in (outcome.error.hint or "")
    # The state file keeps naming the destination for later.
    [destination_id] = left.destinations
    assert destination_id in (tmp_path / "store" / "destination.json").read_text()
    figures.record(
        f"cleanup blocked: {case}",
        "; ".join(
            f"{r.get('method', '*')} {r['path']} -> {_effect(r)}" for r in CLEANUP_FAILURES[case]
        ),
        f"exit 1 naming {'destination + webhook' if left.webhook else 'the destination'},"
        " as left in Konnect",
    )


def _effect(rule: dict[str, Any]) -> str:
    if rule.get("reset"):
        return "reset"
    return str(rule["status"])


async def test_a_second_listener_after_a_failed_cleanup_is_refused_by_the_webhook_guard(
    emulator: RunningEmulator, admin: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async def revoke() -> None:
        await add_faults(admin, {"path": "/v*", "status": 401})

    first = await listen_once(emulator.url, tmp_path / "a", while_serving=revoke)
    assert first.error is not None
    await clear_faults(admin)

    second = await listen_once(emulator.url, tmp_path / "b")
    assert second.error is not None
    assert "regional audit-log webhook is already configured" in second.message
    # The guard stopped it before it created anything of its own.
    assert len((await leftovers(admin)).destinations) == 1


# The same as a real process: what the user reads on the terminal.


def test_a_revoked_token_during_cleanup_tells_the_user_what_is_left(
    konnect: Konnect, launch_listener: LaunchListener, figures: Figures
) -> None:
    port = free_port()
    listener = launch_listener(
        listen_address=f"127.0.0.1:{port}",
        endpoint=f"http://127.0.0.1:{port}/audit-logs",
        webhook=True,
    ).wait_ready()
    [destination] = konnect.state()["destinations"]
    konnect.fault(path="/v*", status=401, detail="Invalid credentials")

    assert listener.stop(signal.SIGINT) == 1
    konnect.admin("DELETE", "/_emulator/faults")
    stderr = listener.stderr
    assert stderr.startswith("Error: could not release the regional webhook: Konnect API 401")
    assert (
        f'left in Konnect: audit-log destination {destination["id"]} ("{destination["name"]}")'
        " and the regional audit-log webhook (still bound to it)"
    ) in stderr
    assert "Hint: remove leftovers with `kongctl delete audit-logs destination" in stderr
    assert "Traceback" not in stderr
    assert destination["id"] in (listener.store / "destination.json").read_text()
    state = konnect.state()
    assert [d["id"] for d in state["destinations"]] == [destination["id"]]
    assert state["webhook"]["v3"]["audit_log_destination_id"] == destination["id"]
    figures.record(
        "token revoked mid-run (real process)",
        "401 on every Konnect call from the moment of Ctrl-C",
        "exit 1; stderr names the destination id and name and the bound webhook;"
        " destination.json kept",
    )


def test_bursts_during_setup_with_the_real_backoff(
    konnect: Konnect, launch_listener: LaunchListener, figures: Figures
) -> None:
    konnect.fault(method="GET", path=WEBHOOK_V2, status=503, times=2)
    konnect.fault(method="POST", path=DESTINATIONS, status=429, retry_after=0.2, times=2)
    konnect.fault(method="GET", path=DESTINATIONS, reset=True, times=1)
    started = time.monotonic()
    listener = launch_listener(webhook=True).wait_ready()
    setup_seconds = time.monotonic() - started
    assert len(konnect.state()["destinations"]) == 1
    assert listener.stop() == 0
    assert konnect.state()["destinations"] == []
    figures.record(
        "setup bursts with the product's own backoff (real process)",
        "2x 503 on the webhook read, a reset on the lookup, 2x 429 (Retry-After 0.2) on create",
        f"served after {setup_seconds:.1f} s; cleaned up; exit 0",
    )


@pytest.mark.soak
def test_a_destination_busy_past_the_real_60_s_budget_is_named(
    konnect: Konnect, launch_listener: LaunchListener, figures: Figures
) -> None:
    listener = launch_listener().wait_ready()
    [destination] = konnect.state()["destinations"]
    konnect.fault(method="DELETE", path=ONE_DESTINATION, status=409)
    started = time.monotonic()
    assert listener.stop(signal.SIGTERM, timeout=90) == 1
    waited = time.monotonic() - started
    assert 60 <= waited < 75
    assert f"audit-log destination {destination['id']} is still in use after 60 s" in (
        listener.stderr
    )
    figures.record(
        "destination busy for longer than the 60 s budget (real process)",
        "409 on every delete",
        f"gave up after {waited:.0f} s; exit 1 naming the destination",
    )


# get and replay.


def kongctl(capsys: pytest.CaptureFixture[str], base_url: str, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run([*args, "--base-url", base_url, "--pat", TOKEN])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def create_destinations(konnect: Konnect, count: int) -> list[str]:
    ids = []
    for index in range(count):
        status, created = konnect.api(
            "POST",
            DESTINATIONS,
            {
                "name": f"existing-{index}",
                "endpoint": "https://existing.example/audit-logs",
                "log_format": "json",
                "authorization": "Bearer x",
            },
        )
        assert status == 201
        ids.append(created["id"])
    return ids


def test_get_destinations_rides_out_5xx_429_and_resets(
    konnect: Konnect, capsys: pytest.CaptureFixture[str], figures: Figures
) -> None:
    ids = create_destinations(konnect, 3)
    konnect.fault(method="GET", path=DESTINATIONS, status=503, retry_after=0, times=1)
    konnect.fault(method="GET", path=DESTINATIONS, reset=True, times=1)
    konnect.fault(method="GET", path=DESTINATIONS, status=429, retry_after=0, times=1)
    code, out, err = kongctl(capsys, konnect.url, "get", "audit-logs", "destinations", "-o", "json")
    assert code == 0, err
    assert [d["id"] for d in json.loads(out)] == ids
    figures.record(
        "get audit-logs destinations under faults",
        "a 503, a reset and a 429 in a row",
        "retried; the full list printed; exit 0",
    )


def test_get_destinations_reports_a_lasting_outage_without_a_traceback(
    konnect: Konnect, capsys: pytest.CaptureFixture[str]
) -> None:
    konnect.fault(method="GET", path=DESTINATIONS, status=503, retry_after=0)
    code, out, err = kongctl(capsys, konnect.url, "get", "audit-logs", "destinations")
    assert code == 1
    assert out == ""
    assert err.startswith("Error: Konnect API 503")
    assert "Traceback" not in err
    assert len(konnect.requests("GET", DESTINATIONS)) == 5  # the first try and 4 retries


def enable_webhook(konnect: Konnect) -> None:
    [destination_id] = create_destinations(konnect, 1)
    status, _ = konnect.api(
        "PATCH", WEBHOOK_V3, {"audit_log_destination_id": destination_id, "enabled": True}
    )
    assert status == 200


def test_replay_is_submitted_once_through_resets_and_5xx(
    konnect: Konnect, capsys: pytest.CaptureFixture[str], figures: Figures
) -> None:
    enable_webhook(konnect)
    konnect.fault(method="PUT", path=REPLAY_JOB, status=503, retry_after=0, times=1)
    konnect.fault(method="PUT", path=REPLAY_JOB, reset=True, times=1)
    konnect.fault(method="GET", path=WEBHOOK_V2, status=502, retry_after=0, times=1)
    code, _, err = kongctl(capsys, konnect.url, "replay", "audit-logs", "--since", "1h")
    assert code == 0, err
    assert [r["status"] for r in konnect.requests("PUT", REPLAY_JOB)] == [503, None, 202]
    figures.record(
        "replay audit-logs under faults",
        "a 502 on the webhook read, a 503 and a reset on the replay PUT",
        "retried; the job was submitted once; exit 0",
    )


def test_a_replay_whose_answer_was_lost_is_reported_as_started(
    konnect: Konnect,
    capsys: pytest.CaptureFixture[str],
    lossy_network: Callable[[str], LossyNetwork],
) -> None:
    enable_webhook(konnect)
    network = lossy_network(konnect.url)
    network.lose_answer("PUT", REPLAY_JOB)
    code, _, err = kongctl(capsys, network.url, "replay", "audit-logs", "--since", "1h")
    assert ("PUT", REPLAY_JOB, 202) in network.acted
    assert code == 0, err
