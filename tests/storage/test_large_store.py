"""Reading a large store keeps memory flat: peak RSS of the real command in a subprocess.

The store is generated directly on disk (rotated .gz files and a plain current file), so a
200 MB store takes a second or two to build.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kongctl.auditlogs.rotation import STAMP_FORMAT

# An interpreter with kongctl loaded peaks near 31 MB while streaming; holding a 24 MB store
# would pass 48 MB, holding a 200 MB one would pass 60 MB many times over.
SMALL_STORE_BOUND_KB = 48 * 1024
LARGE_STORE_BOUND_KB = 60 * 1024
RECORD = (
    b'{"event_ts":"%s","index":%d,"name":"Authz.portals","granted":true,'
    b'"principal_id":"5b2d8c58-0c8e-4a4f-9a41-1f0e1c9a7d2e","trace_id":6891110586028963295,'
    b'"org_id":"21636369-8b52-4b4a-97b7-50923ceb3ffd","user_agent":"kongctl/0.1.0",'
    b'"request":"/v2/control-planes/1f0e1c9a/core-entities/services","pad":"' + b"x" * 180 + b'"}'
)
# The peak is read from VmHWM, the high-water mark of this process's own memory since exec:
# getrusage's ru_maxrss would also count the parent's memory, inherited through fork and exec.
CHILD = textwrap.dedent(
    """
    import os, sys
    from kongctl.cli.root import run
    code = run(sys.argv[1:])
    sys.stdout.flush()
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    os.write(2, b"peak_rss_kb=%d exit=%d\\n" % (peak, code))
    """
)
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LargeStore:
    records: int
    files: int
    first: datetime
    step: timedelta

    def time_of(self, index: int) -> datetime:
        return self.first + self.step * index


def build_store(directory: Path, megabytes: int, files: int = 8) -> LargeStore:
    """``files`` rotated .gz files and a current file, records a fixed step apart in time."""
    directory.mkdir(parents=True)
    per_file = megabytes * (1 << 20) // len(RECORD) // (files + 1)
    step = timedelta(seconds=7)
    store = LargeStore(per_file * (files + 1), files, START, step)
    for number in range(files + 1):
        first = number * per_file
        stamps = [
            (START + step * index).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
            for index in range(first, first + per_file)
        ]
        data = b"\n".join(RECORD % (stamp, first + i) for i, stamp in enumerate(stamps)) + b"\n"
        if number == files:
            (directory / "events.jsonl").write_bytes(data)
        else:
            rotated_at = store.time_of(first + per_file - 1).strftime(STAMP_FORMAT)
            (directory / f"events-{rotated_at}.jsonl.gz").write_bytes(gzip.compress(data, 1))
    return store


@dataclass(frozen=True)
class Run:
    lines: int
    last: bytes
    peak_rss_kb: int


def run_events(config_home: Path, *args: str) -> Run:
    """`kongctl get audit-logs events ...` in a fresh interpreter; its output is only counted."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home.parent)}
    command = [sys.executable, "-c", CHILD, "get", "audit-logs", "events", *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        lines, tail = 0, b""
        while chunk := child.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
            tail = (tail + chunk)[-4096:]
        err = child.stderr.read().decode()
        assert child.wait(timeout=120) == 0, err
    assert "exit=0" in err, err
    peak = int(err.rsplit("peak_rss_kb=", 1)[1].split()[0])
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return Run(lines, last, peak)


def index_of(line: bytes) -> int:
    return int(json.loads(line.rstrip(b",").decode())["index"])


def check_flat_memory(config_home: Path, store: LargeStore, bound_kb: int) -> None:
    everything = run_events(config_home)
    assert everything.lines == store.records
    assert index_of(everything.last) == store.records - 1
    assert everything.peak_rss_kb < bound_kb

    middle = store.records // 2
    since = store.time_of(middle).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = store.time_of(middle + 5000).strftime("%Y-%m-%dT%H:%M:%SZ")
    window = run_events(config_home, "--since", since, "--until", until, "-n", "1000")
    assert window.lines == 1000
    assert index_of(window.last) == middle + 4999
    assert window.peak_rss_kb < bound_kb

    as_json = run_events(config_home, "-o", "json", "--since", since)
    assert as_json.lines == store.records - middle + 2  # the brackets
    assert as_json.peak_rss_kb < bound_kb
    summary = run_events(config_home, "--summary", "-o", "json")
    assert summary.peak_rss_kb < bound_kb


def test_reading_a_store_of_many_files_keeps_memory_flat(config_home: Path) -> None:
    directory = config_home / "audit-logs" / "default"
    store = build_store(directory, megabytes=24)
    check_flat_memory(config_home, store, SMALL_STORE_BOUND_KB)


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_reading_a_200_mb_store_keeps_memory_flat(config_home: Path) -> None:
    directory = config_home / "audit-logs" / "default"
    store = build_store(directory, megabytes=200, files=12)
    check_flat_memory(config_home, store, LARGE_STORE_BOUND_KB)
