"""The fault and hostile-input suite: --soak, the figures table, listener processes, ledgers.

Every test here states what it put through the listener and what came out. Those counts go
into one table (``figures``) that is written as JSON at the end of the run and printed in the
terminal summary; docs/reliability.md is filled from it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.listen.conftest import TOKEN, Konnect, emulator_process, konnect

__all__ = ["TOKEN", "Konnect", "emulator_process", "konnect"]

AUTH = "Bearer fault-suite-0123456789abcdef"
FIGURES_ENV = "KONGCTL_RELIABILITY_FIGURES"
SOAK_ENVIRONMENT = "KONGCTL_SOAK_TESTS"
# Read at import: the autouse config_home fixture removes every KONGCTL_* variable in tests.
_FIGURES_OVERRIDE = os.environ.get(FIGURES_ENV)
_SOAK_FROM_ENVIRONMENT = os.environ.get(SOAK_ENVIRONMENT) == "1"
_FIGURES_KEY = pytest.StashKey[list[dict[str, Any]]]()
_FIGURES_PATH_KEY = pytest.StashKey[Path]()
_HERE = Path(__file__).parent


def soak_enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--soak", default=False)) or _SOAK_FROM_ENVIRONMENT


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if soak_enabled(config):
        return
    skip = pytest.mark.skip(reason=f"soak variant: run with --soak or {SOAK_ENVIRONMENT}=1")
    for item in items:
        if item.get_closest_marker("soak") and _HERE in Path(str(item.path)).parents:
            item.add_marker(skip)


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    """Whether the long variants run (``pytest tests/faults --soak``, ``KONGCTL_SOAK_TESTS=1``)."""
    return soak_enabled(request.config)


# The figures table.


@dataclass
class Figures:
    """Rows of the reliability table: a case, what was tried, and what came out."""

    rows: list[dict[str, Any]]
    suite: str = ""

    def record(
        self,
        case: str,
        load: str,
        outcome: str,
        *,
        sent: int | None = None,
        acknowledged: int | None = None,
        stored: int | None = None,
        lost: int | None = None,
        **extra: Any,
    ) -> None:
        self.rows.append(
            {
                "suite": self.suite,
                "case": case,
                "load": load,
                "sent": sent,
                "acknowledged": acknowledged,
                "stored": stored,
                "lost": lost,
                "outcome": outcome,
                **extra,
            }
        )


@pytest.fixture
def figures(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Figures:
    stash = request.config.stash
    stash[_FIGURES_PATH_KEY] = (
        Path(_FIGURES_OVERRIDE)
        if _FIGURES_OVERRIDE
        else tmp_path_factory.getbasetemp() / "reliability-figures.json"
    )
    suite = request.node.module.__name__.rpartition(".")[2].removeprefix("test_")
    return Figures(stash.setdefault(_FIGURES_KEY, []), suite)


def pytest_sessionfinish(session: pytest.Session) -> None:
    rows = session.config.stash.get(_FIGURES_KEY, [])
    if not rows:
        return
    target = session.config.stash[_FIGURES_PATH_KEY]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(rows, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(_FIGURES_KEY, [])
    if not rows:
        return
    terminalreporter.section("reliability figures")
    lost = sum(row["lost"] or 0 for row in rows)
    # One line per case only when asked (-v): make test runs everything and stays short.
    if config.option.verbose > 0:
        for row in rows:
            counts = " ".join(
                f"{key}={row[key]}"
                for key in ("sent", "acknowledged", "stored", "lost")
                if row[key] is not None
            )
            terminalreporter.write_line(f"{row['case']}: {counts} -> {row['outcome']}")
    terminalreporter.write_line(
        f"{len(rows)} cases, {lost} acknowledged records lost;"
        f" written to {config.stash[_FIGURES_PATH_KEY]}"
    )


# Batches of records with a known identity, and what the record file must then hold.

_RECORD = re.compile(rb'^\{"batch":"(?P<batch>[^"]+)","i":(?P<i>[0-9]+),')


def make_batch(batch_id: str, count: int, pad: int = 40) -> list[bytes]:
    """Records of one batch; each names its batch and position, so the file can be audited."""
    filler = b"x" * pad
    return [
        b'{"batch":"%s","i":%d,"pad":"%s"}' % (batch_id.encode(), i, filler) for i in range(count)
    ]


@dataclass
class Ledger:
    """Every batch sent, and the status each got (None: no answer, the connection died)."""

    batches: dict[str, list[bytes]] = field(default_factory=dict)
    answers: dict[str, int | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self, batch_id: str, records: list[bytes]) -> None:
        with self._lock:
            self.batches[batch_id] = records

    def answered(self, batch_id: str, status: int | None) -> None:
        with self._lock:
            self.answers[batch_id] = status

    @property
    def acknowledged(self) -> set[str]:
        with self._lock:
            return {b for b, status in self.answers.items() if status == 202}

    def records_of(self, batch_ids: set[str]) -> int:
        return sum(len(self.batches[b]) for b in batch_ids)


@dataclass(frozen=True)
class Audit:
    """What the record file holds, measured against a ledger."""

    sent_records: int
    acknowledged_records: int
    stored_records: int
    lost_records: int
    unacknowledged_stored_batches: int

    def counts(self) -> dict[str, int]:
        """The record counts of a row of figures (``Figures.record``)."""
        return {
            "sent": self.sent_records,
            "acknowledged": self.acknowledged_records,
            "stored": self.stored_records,
            "lost": self.lost_records,
        }


def audit_record_file(data: bytes, ledger: Ledger) -> Audit:
    """Check the file against the ledger and return the counts.

    Every line is a whole record of a sent batch; every stored batch is there once, complete,
    contiguous and in order; every acknowledged batch is stored. Batches without a 202 may be
    stored (the answer was lost) or absent, never partly there.
    """
    assert data == b"" or data.endswith(b"\n"), f"file ends inside a line: {data[-80:]!r}"
    lines = data.split(b"\n")[:-1] if data else []
    seen: dict[str, int] = {}
    position = 0
    while position < len(lines):
        match = _RECORD.match(lines[position])
        assert match, f"line {position} is not a record of any batch: {lines[position][:80]!r}"
        batch_id = match["batch"].decode()
        assert batch_id in ledger.batches, f"line {position} names an unknown batch {batch_id}"
        assert batch_id not in seen, f"batch {batch_id} is stored twice"
        expected = ledger.batches[batch_id]
        got = lines[position : position + len(expected)]
        assert got == expected, f"batch {batch_id} is not stored whole and in order"
        seen[batch_id] = position
        position += len(expected)

    acknowledged = ledger.acknowledged
    missing = acknowledged - set(seen)
    unacknowledged_stored = set(seen) - acknowledged
    return Audit(
        sent_records=ledger.records_of(set(ledger.batches)),
        acknowledged_records=ledger.records_of(acknowledged),
        stored_records=len(lines),
        lost_records=ledger.records_of(missing),
        unacknowledged_stored_batches=len(unacknowledged_stored),
    )


# Raw HTTP, so that tests control every byte a sender puts on the wire.


def request_bytes(
    body: bytes,
    headers: Sequence[tuple[str, str | bytes]] = (),
    *,
    authorization: str | None = AUTH,
    path: str = "/audit-logs",
    method: str = "POST",
    length: bool = True,
    close: bool = False,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    if authorization is not None:
        lines.append(b"Authorization: " + authorization.encode("utf-8", "surrogateescape"))
    for name, value in headers:
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length body (what the receiver sends)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full answer: {buffer!r}")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    size = int(headers.get("content-length", "0"))
    while len(rest) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(status_line.split(" ")[1]), headers, rest[:size]


def exchange(port: int, raw: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request on a new connection and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_response(sock)


def post(port: int, body: bytes, *headers: tuple[str, str | bytes], **options: Any) -> int:
    return exchange(port, request_bytes(body, headers, **options))[0]


class Sender:
    """A keep-alive connection that posts batches and notes each answer in the ledger."""

    def __init__(self, port: int, ledger: Ledger, name: str) -> None:
        self.port = port
        self.ledger = ledger
        self.name = name
        self.sock: socket.socket | None = None

    def send(self, index: int, records: int = 10) -> int | None:
        batch_id = f"{self.name}-{index}"
        batch = make_batch(batch_id, records)
        self.ledger.sent(batch_id, batch)
        status: int | None = None
        try:
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=15)
            self.sock.sendall(request_bytes(b"\n".join(batch) + b"\n"))
            status = read_response(self.sock)[0]
        except OSError:
            self.close()
        self.ledger.answered(batch_id, status)
        return status

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass
class Load:
    """Concurrent senders in threads, posting batches until told to stop or refused."""

    port: int
    ledger: Ledger
    senders: int = 8
    records: int = 10
    prefix: str = "s"
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for number in range(self.senders):
            name = f"{self.prefix}{number}"
            thread = threading.Thread(target=self._run, args=(name,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def _run(self, name: str) -> None:
        sender = Sender(self.port, self.ledger, name)
        index = 0
        failures = 0
        try:
            while not self.stop.is_set() and failures < 3:
                status = sender.send(index, self.records)
                failures = failures + 1 if status is None else 0
                index += 1
        finally:
            sender.close()

    def wait_for_acknowledged(self, batches: int, timeout: float = 20.0) -> None:
        wait_for(lambda: len(self.ledger.acknowledged) >= batches, timeout)

    def finish(self, timeout: float = 20.0) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a sender did not finish"


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


# Real listener processes.


@dataclass
class ListenerProcess:
    """A ``kongctl listen`` subprocess and the files it writes."""

    process: subprocess.Popen[bytes]
    config_dir: Path
    stdout_path: Path
    stderr_path: Path
    # State files an earlier listener left: readiness means this one replaced them.
    stale: dict[str, int] = field(default_factory=dict)

    @property
    def store(self) -> Path:
        return self.config_dir / "audit-logs" / "default"

    @property
    def events(self) -> Path:
        return self.store / "events.jsonl"

    @property
    def log_file(self) -> Path:
        return self.config_dir / "logs" / "kongctl.log"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.store / "listener.json").read_text())
        return info

    @property
    def port(self) -> int:
        return int(self.info()["listen_address"].rsplit(":", 1)[1])

    def wait_ready(self, timeout: float = 20.0) -> ListenerProcess:
        def written(name: str) -> bool:
            return _inode(self.store / name) not in (None, self.stale.get(name))

        wait_for(lambda: written("listener.json") or self.process.poll() is not None, timeout)
        assert self.process.poll() is None, f"listener exited: {self.stderr}"
        # Each state file is replaced atomically; destination.json comes just after the other.
        wait_for(lambda: written("destination.json"), timeout)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def peak_rss_kib(self) -> int:
        """The largest resident set the process has had (VmHWM), in KiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        assert match, status
        return int(match[1])


LaunchListener = Callable[..., ListenerProcess]


def listener_command(
    konnect_url: str,
    *args: str,
    verb: str = "listen",
    listen_address: str | None = "127.0.0.1:0",
    endpoint: str = "https://listener.example/audit-logs",
    authorization: str = AUTH,
    webhook: bool = False,
    pat: str | None = TOKEN,
) -> list[str]:
    command = [sys.executable, "-m", "kongctl", verb, "--base-url", konnect_url]
    if pat is not None:
        command += ["--pat", pat]
    command += ["--endpoint", endpoint, "--authorization", authorization]
    if listen_address is not None:
        command += ["--listen-address", listen_address]
    if not webhook:
        command.append("--configure-webhook=false")
    return [*command, *args]


def launch(
    command: list[str],
    config_home: Path,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    umask: int = -1,
) -> ListenerProcess:
    """Start a listener with ``XDG_CONFIG_HOME=config_home``; stdout and stderr to files."""
    log_dir.mkdir(parents=True, exist_ok=True)
    number = len(list(log_dir.glob("stdout-*")))
    out, err = log_dir / f"stdout-{number}", log_dir / f"stderr-{number}"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KONGCTL_")},
        "XDG_CONFIG_HOME": str(config_home),
        **(env or {}),
    }
    store = config_home / "kongctl" / "audit-logs" / "default"
    stale = {
        name: inode
        for name in ("listener.json", "destination.json")
        if (inode := _inode(store / name)) is not None
    }
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, env=environment, umask=umask
        )
    return ListenerProcess(process, config_home / "kongctl", out, err, stale)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


@pytest.fixture
def launch_listener(
    konnect: Konnect, config_home: Path, tmp_path: Path
) -> Iterator[LaunchListener]:
    """Start ``kongctl listen`` subprocesses against the emulator; killed at the end if alive."""
    started: list[ListenerProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        umask: int = -1,
        **options: Any,
    ) -> ListenerProcess:
        command = listener_command(konnect.url, *args, **options)
        listener = launch(command, config_home.parent, tmp_path / "output", env=env, umask=umask)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        if listener.process.poll() is None:
            listener.process.kill()
            listener.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
