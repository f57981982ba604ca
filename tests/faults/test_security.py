"""Nobody gets in and nothing leaks: near-miss credentials, constant-time comparison, secrets
kept out of every output, private files under any umask, and a loopback-only default bind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from kongctl.auditlogs.receiver import Receiver, ReceiverConfig, bind_listen_socket
from kongctl.auditlogs.store import EventStore
from tests.faults.conftest import (
    AUTH,
    TOKEN,
    Figures,
    Konnect,
    LaunchListener,
    ListenerProcess,
    exchange,
    free_port,
    launch,
    listener_command,
    wait_for,
)

RECORD = b'{"name":"Authz.portals"}\n'
SCHEME, _, SECRET_TOKEN = AUTH.partition(" ")


@pytest.fixture(scope="module")
def listener(
    emulator_process: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ListenerProcess]:
    home = tmp_path_factory.mktemp("security")
    running = launch(listener_command(emulator_process), home, home / "output").wait_ready()
    yield running
    assert running.stop() == 0, running.stderr


def raw_request(*header_lines: bytes, body: bytes = RECORD) -> bytes:
    head = [
        b"POST /audit-logs HTTP/1.1",
        b"Host: 127.0.0.1",
        *header_lines,
        b"Content-Length: %d" % len(body),
        b"Connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def auth(value: bytes | str, name: bytes = b"Authorization") -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return name + b": " + raw


NEAR_MISSES: dict[str, list[bytes]] = {
    "missing": [],
    "empty": [auth("")],
    "wrong": [auth("Bearer wrong")],
    "last character dropped": [auth(AUTH[:-1])],
    "one character added": [auth(AUTH + "0")],
    "last character changed": [auth(AUTH[:-1] + "e")],
    "scheme in lower case": [auth(AUTH.lower())],
    "token in upper case": [auth(f"{SCHEME} {SECRET_TOKEN.upper()}")],
    "two spaces after the scheme": [auth(f"{SCHEME}  {SECRET_TOKEN}")],
    "a tab after the scheme": [auth(f"{SCHEME}\t{SECRET_TOKEN}")],
    "scheme only": [auth(SCHEME)],
    "token without its scheme": [auth(SECRET_TOKEN)],
    "another scheme": [auth(f"Basic {SECRET_TOKEN}")],
    "a Cyrillic e in the scheme": [auth(AUTH.replace("e", "\u0435", 1))],
    "a Latin-1 byte": [auth(AUTH.encode() + b"\xe9")],
    "the right value twice": [auth(AUTH), auth(AUTH)],
    "right then wrong": [auth(AUTH), auth("Bearer wrong")],
    "wrong then right": [auth("Bearer wrong"), auth(AUTH)],
    "split over two headers": [auth(SCHEME), auth(SECRET_TOKEN)],
    "as Proxy-Authorization": [auth(AUTH, b"Proxy-Authorization")],
    "as Authorisation": [auth(AUTH, b"Authorisation")],
    "as X-Authorization": [auth(AUTH, b"X-Authorization")],
}
# Malformed header syntax: the parser refuses the request before anyone looks at the value.
MALFORMED: dict[str, list[bytes]] = {
    "a NUL inside": [auth(AUTH.encode().replace(b" ", b"\x00", 1))],
    "folded onto a continuation line": [auth(SCHEME), b" " + SECRET_TOKEN.encode()],
    "a space before the colon": [b"Authorization : " + AUTH.encode()],
}


@pytest.mark.parametrize("case", list(NEAR_MISSES))
def test_near_miss_authorization_values_are_unauthorized(
    listener: ListenerProcess, figures: Figures, case: str
) -> None:
    before = listener.events.stat().st_size
    status, _, body = exchange(listener.port, raw_request(*NEAR_MISSES[case]))
    assert status == 401
    assert body == b'{"error": "unauthorized"}'
    assert listener.events.stat().st_size == before
    figures.record(
        f"Authorization: {case}",
        "one batch with this Authorization",
        "401; nothing stored",
        sent=1,
        acknowledged=0,
        stored=0,
        lost=0,
    )


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_authorization_headers_are_refused(
    listener: ListenerProcess, figures: Figures, case: str
) -> None:
    before = listener.events.stat().st_size
    status, _, _ = exchange(listener.port, raw_request(*MALFORMED[case]))
    assert status == 400
    assert listener.events.stat().st_size == before
    figures.record(
        f"Authorization: {case}",
        "one batch with this malformed header",
        "400 from the HTTP parser; nothing stored",
        sent=1,
        acknowledged=0,
        stored=0,
        lost=0,
    )


@pytest.mark.parametrize(
    "header",
    [auth(AUTH, b"authorization"), auth(AUTH, b"AUTHORIZATION"), auth(f"  {AUTH} \t")],
    ids=["lower-case name", "upper-case name", "whitespace around the value"],
)
def test_header_name_case_and_surrounding_whitespace_are_not_part_of_the_value(
    listener: ListenerProcess, header: bytes
) -> None:
    # RFC 9110: field names are case-insensitive and the whitespace around a value is not
    # part of it, so these are the exact value and must be accepted.
    before = listener.events.stat().st_size
    status, _, _ = exchange(listener.port, raw_request(header))
    assert status == 202
    with listener.events.open("rb") as events:
        events.seek(before)
        assert events.read() == RECORD


# Timing. Over HTTP the comparison drowns in noise, so that check is generous and only catches
# gross leaks; the comparison itself is measured with a secret long enough to show any early
# exit, next to a control that does exit early.


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    store = EventStore(tmp_path / "store")
    store.open()
    running = Receiver(store, ReceiverConfig(authorization="Bearer " + "k" * 7000))
    await running.start(bind_listen_socket("127.0.0.1", 0))
    yield running
    await running.stop()
    await store.close()


async def timed_401(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, value: str
) -> float:
    request = (
        "POST /audit-logs HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {value}\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode()
    started = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    elapsed = time.perf_counter() - started
    assert head.startswith(b"HTTP/1.1 401 ")
    return elapsed


async def test_rejection_time_over_http_does_not_depend_on_where_the_value_differs(
    receiver: Receiver, figures: Figures
) -> None:
    secret = "Bearer " + "k" * 7000
    shares_prefix = secret[:-1] + "x"
    differs_first = "x" + secret[1:]
    reader, writer = await asyncio.open_connection("127.0.0.1", receiver.bound_address[1])
    late: list[float] = []
    early: list[float] = []
    try:
        for _ in range(20):  # warm up
            await timed_401(reader, writer, differs_first)
        for _ in range(150):
            late.append(await timed_401(reader, writer, shares_prefix))
            early.append(await timed_401(reader, writer, differs_first))
    finally:
        writer.close()
    ratio = statistics.median(late) / statistics.median(early)
    assert 0.5 < ratio < 2.0
    figures.record(
        "timing over HTTP",
        "150 interleaved 401s each: a 7 KiB value wrong in its last byte vs its first",
        f"median ratio {ratio:.3f} (bound 0.5-2.0)",
    )


def median_ns(check: object, first: object, second: object, rounds: int = 41) -> float:
    """Median of first-time / second-time over interleaved calls of ``check``."""
    assert callable(check)
    firsts, seconds = [], []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        check(first)
        firsts.append(time.perf_counter_ns() - started)
        started = time.perf_counter_ns()
        check(second)
        seconds.append(time.perf_counter_ns() - started)
    return statistics.median(firsts) / statistics.median(seconds)


def test_the_authorization_comparison_takes_as_long_wherever_the_value_differs(
    figures: Figures,
) -> None:
    secret = "Bearer " + "k" * (1 << 20)
    shares_prefix = secret[:-1] + "x"
    differs_first = "x" + secret[1:]
    store = EventStore(Path("/nonexistent"))  # never opened: only the comparison runs
    receiver = Receiver(store, ReceiverConfig(authorization=secret))

    def request_with(value: str) -> object:
        return make_mocked_request("POST", "/audit-logs", headers=CIMultiDict(Authorization=value))

    late, early = request_with(shares_prefix), request_with(differs_first)
    # The private check is the code path under test; a request through HTTP cannot carry a
    # value long enough to time it.
    ratio = median_ns(receiver._authorized, late, early)

    expected = secret.encode()
    late_bytes, early_bytes = shares_prefix.encode(), differs_first.encode()
    control = median_ns(lambda value: value == expected, late_bytes, early_bytes)

    assert control > 3.0, f"the harness cannot see an early exit (ratio {control:.2f})"
    assert 0.67 < ratio < 1.5
    figures.record(
        "timing of the comparison itself",
        "a 1 MiB secret; 41 interleaved checks of a value wrong in its last byte vs its first",
        f"median ratio {ratio:.3f} (an early-exit == shows {control:.0f})",
    )


# Secrets in outputs.


def secret_leaks(text: str | bytes) -> list[str]:
    data = text.encode(errors="replace") if isinstance(text, str) else text
    return [name for name, secret in SECRETS.items() if secret.encode() in data]


SECRETS = {"PAT": TOKEN, "authorization": SECRET_TOKEN}


def test_secrets_stay_out_of_logs_output_and_files_at_trace_level(
    konnect: Konnect, launch_listener: LaunchListener, figures: Figures
) -> None:
    port = free_port()
    listener = launch_listener(
        "--log-level",
        "trace",
        listen_address=f"127.0.0.1:{port}",
        endpoint=f"http://127.0.0.1:{port}/audit-logs",
        webhook=True,
    ).wait_ready()
    assert konnect.deliver(5)["status"] == 202
    assert exchange(port, raw_request(auth("Bearer wrong")))[0] == 401
    assert exchange(port, raw_request(auth(AUTH[:-1])))[0] == 401
    # A failed cleanup goes through the error path and its traceback at debug level.
    konnect.fault(method="DELETE", path="/v3/audit-log-destinations/*", status=500)
    assert listener.stop(signal.SIGINT) == 1
    konnect.admin("DELETE", "/_emulator/faults")

    outputs = {
        "log file": listener.log_file.read_bytes(),
        "stdout": listener.stdout_path.read_bytes(),
        "stderr": listener.stderr_path.read_bytes(),
        **{path.name: path.read_bytes() for path in listener.store.iterdir()},
    }
    assert b"Traceback" in outputs["log file"]
    assert b"konnect request" in outputs["log file"]
    assert {name: secret_leaks(data) for name, data in outputs.items()} == {
        name: [] for name in outputs
    }
    figures.record(
        "secrets at --log-level trace",
        "5 deliveries, two 401s, a failed cleanup with its traceback; PAT and authorization"
        " given as flags",
        f"neither secret in the log file, stdout, stderr or {len(outputs) - 3} store files",
    )


def test_an_error_answer_that_echoes_the_token_does_not_print_it(
    konnect: Konnect, launch_listener: LaunchListener
) -> None:
    konnect.fault(
        method="GET",
        path="/v2/audit-log-webhook",
        status=400,
        detail=f"bad request headers: Authorization: Bearer {TOKEN}",
    )
    listener = launch_listener("--log-level", "debug", webhook=True)
    assert listener.process.wait(20) == 1
    assert secret_leaks(listener.log_file.read_bytes()) == []
    assert secret_leaks(listener.stderr) == []


def kongctl(config_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KONGCTL_")}
    return subprocess.run(
        [sys.executable, "-m", "kongctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, "XDG_CONFIG_HOME": str(config_home)},
    )


@pytest.fixture
def detached(konnect: Konnect, config_home: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """A detached listener at trace level; yields its pid and what kongctl printed."""
    port = free_port()
    command = listener_command(
        konnect.url,
        "--log-level",
        "trace",
        "--detach",
        "-o",
        "json",
        listen_address=f"127.0.0.1:{port}",
        endpoint=f"http://127.0.0.1:{port}/audit-logs",
        webhook=True,
    )
    started = kongctl(config_home.parent, *command[3:])
    assert started.returncode == 0, started.stderr
    pid = int(json.loads(started.stdout)["pid"])
    try:
        yield pid, {"listen -d stdout": started.stdout, "listen -d stderr": started.stderr}
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


def test_a_detached_listener_keeps_secrets_out_of_ps_its_record_and_its_log(
    konnect: Konnect,
    config_home: Path,
    detached: tuple[int, dict[str, str]],
    figures: Figures,
) -> None:
    pid, printed = detached
    assert konnect.deliver(3)["status"] == 202
    home = config_home.parent
    listing = kongctl(home, "ps", "-o", "json")
    logs = kongctl(home, "ps", "logs", str(pid))
    record = (config_home / "processes" / f"{pid}.json").read_text()
    stopped = kongctl(home, "ps", "stop", str(pid))
    assert stopped.returncode == 0, stopped.stderr
    log_file = (config_home / "logs" / f"kongctl-listener-{pid}.log").read_text()

    outputs = {
        **printed,
        "ps": listing.stdout + listing.stderr,
        "ps logs": logs.stdout + logs.stderr,
        "process record": record,
        "ps stop": stopped.stdout + stopped.stderr,
        "listener log": log_file,
    }
    assert "batch stored" in log_file or "destination created" in log_file
    assert {name: secret_leaks(text) for name, text in outputs.items()} == {
        name: [] for name in outputs
    }
    figures.record(
        "secrets of a detached listener",
        "listen -d at trace level, 3 deliveries, ps, ps logs, ps stop",
        "neither secret in any output, the process record or the listener's log",
    )


def test_a_detached_listeners_command_line_holds_no_secrets(
    detached: tuple[int, dict[str, str]],
) -> None:
    pid, _ = detached
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert secret_leaks(command_line) == []


# Files and the bind address.


def modes_under(root: Path) -> dict[str, int]:
    modes = {}
    for path in [root, *root.rglob("*")]:
        modes[str(path.relative_to(root.parent))] = stat.S_IMODE(path.lstat().st_mode)
    return modes


def test_store_and_log_files_are_private_even_with_umask_000(
    konnect: Konnect, launch_listener: LaunchListener, figures: Figures
) -> None:
    port = free_port()
    listener = launch_listener(
        "--log-level",
        "info",
        umask=0,
        listen_address=f"127.0.0.1:{port}",
        endpoint=f"http://127.0.0.1:{port}/audit-logs",
        webhook=True,
    ).wait_ready()
    assert konnect.deliver(2)["status"] == 202
    running = modes_under(listener.config_dir)
    assert listener.stop() == 0

    files = {path: mode for path, mode in running.items() if "." in Path(path).name}
    assert set(files) >= {
        "kongctl/audit-logs/default/events.jsonl",
        "kongctl/audit-logs/default/listener.json",
        "kongctl/audit-logs/default/destination.json",
        "kongctl/logs/kongctl.log",
    }
    assert {path: mode for path, mode in files.items() if mode != 0o600} == {}
    assert running["kongctl/audit-logs/default"] == 0o700
    assert running["kongctl/logs"] == 0o700
    figures.record(
        "umask 000",
        "a listener started with umask 000, 2 deliveries",
        "store and log files 0600, store and log folders 0700",
    )


def test_every_folder_kongctl_creates_is_private_even_with_umask_000(
    konnect: Konnect, launch_listener: LaunchListener
) -> None:
    listener = launch_listener(umask=0).wait_ready()
    running = modes_under(listener.config_dir)
    assert listener.stop() == 0
    folders = {path: mode for path, mode in running.items() if "." not in Path(path).name}
    assert {path: mode for path, mode in folders.items() if mode & 0o077} == {}


def listening_sockets(port: int) -> list[str]:
    """Local addresses in LISTEN state on ``port``, from /proc/net/tcp and tcp6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                address, port_hex = fields[1].split(":")
                if int(port_hex, 16) == port and fields[3] == "0A":
                    found.append(address)
    return found


def test_the_default_bind_is_loopback_only(
    konnect: Konnect, launch_listener: LaunchListener, figures: Figures
) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 19090))
        except OSError:
            pytest.skip("port 19090, the default listen address, is busy on this machine")
    listener = launch_listener(listen_address=None)
    wait_for(
        lambda: (
            listener.process.poll() is not None or (listener.store / "destination.json").exists()
        )
    )
    if listener.process.poll() is not None and "already in use" in listener.stderr:
        pytest.skip("port 19090 was taken while the listener started")
    listener.wait_ready()
    assert listener.info()["listen_address"] == "127.0.0.1:19090"
    assert listening_sockets(19090) == ["0100007F"]
    assert listener.stop() == 0
    figures.record(
        "default bind",
        "a listener started without --listen-address",
        "bound to 127.0.0.1:19090 only (no wildcard, no IPv6 socket)",
    )
