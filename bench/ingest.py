"""Durable ingest: a real ``kongctl listen`` under 16 concurrent senders, checked on disk after.

The listener runs as in production (``python -m kongctl listen`` against the Konnect emulator)
with its record file in a temporary config home. wrk, with bench/ingest.lua, keeps 16
connections busy POSTing distinct gzip batches of 100 realistic records for a fixed time; each
connection remembers which batches were acknowledged. Without wrk a Python sender does the same
(slower, and sharing the two cores with the listener, which the output says).

Afterwards every acknowledged batch must be in the record file exactly as often as it was
acknowledged (a batch whose answer was cut off at the end may also be there), its 100 lines
contiguous and in order. In the same run, the disk's ceiling for one fsync per request: a
single writer appending the same batch with an fdatasync after each, as the store syncs.

    .venv/bin/python bench/ingest.py --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import batch_tags, distinct_records, gzip_body, tagged_batch

TOKEN = "kpat_bench"
AUTHORIZATION = "Bearer bench-secret"
PATH = "/audit-logs"
LUA_SCRIPT = Path(__file__).resolve().parent / "ingest.lua"


@dataclass
class Load:
    """What the senders saw: acknowledged batches, latencies, failures."""

    generator: str
    seconds: float
    acked: Counter[int] = field(default_factory=Counter)
    unanswered: Counter[int] = field(default_factory=Counter)
    failed: int = 0
    socket_errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


def build_bodies(directory: Path, senders: int, per_sender: int, records: int) -> dict[str, int]:
    """Write each sender's share of gzip batches; batch b goes to sender b % senders."""
    pool = distinct_records()
    raw_total = gz_total = 0
    for sender in range(senders):
        sizes = []
        with (directory / f"bodies-{sender}").open("wb") as bodies:
            for j in range(per_sender):
                batch = tagged_batch(pool, sender + j * senders, records)
                body = gzip_body(batch)
                bodies.write(body)
                sizes.append(len(body))
                raw_total += sum(map(len, batch)) + len(batch)
                gz_total += len(body)
        (directory / f"sizes-{sender}").write_text("".join(f"{size}\n" for size in sizes))
    count = senders * per_sender
    return {"raw_bytes": raw_total // count, "gzip_bytes": gz_total // count}


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "kongctl.emulator", "--port", "0", "--token", TOKEN]
    process = subprocess.Popen(
        [*command, "--event-rate", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if "listening on" not in line:
        raise SystemExit(f"emulator did not start: {line!r}")
    return process, line.rsplit(" ", 1)[-1]


def start_listener(
    konnect_url: str, config_home: Path, port: int, extra_args: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "kongctl",
        "listen",
        "--base-url",
        konnect_url,
        "--pat",
        TOKEN,
        "--endpoint",
        f"http://127.0.0.1:{port}{PATH}",
        "--listen-address",
        f"127.0.0.1:{port}",
        "--authorization",
        AUTHORIZATION,
        *extra_args,
    ]
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    log = (config_home / "listener-output").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    ready = config_home / "kongctl" / "audit-logs" / "default" / "listener.json"
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(
                f"listener did not start:\n{(config_home / 'listener-output').read_text()}"
            )
        time.sleep(0.05)
    return process


def run_wrk(wrk: str, url: str, body_dir: Path, senders: int, seconds: float) -> Load:
    result_file = body_dir / "wrk-result"
    env = {
        **os.environ,
        "BENCH_BODY_DIR": str(body_dir),
        "BENCH_PATH": PATH,
        "BENCH_AUTHORIZATION": AUTHORIZATION,
        "BENCH_THREADS": str(senders),
        "BENCH_RESULT_FILE": str(result_file),
    }
    # One thread per connection: each thread's answers then come in the order of its requests.
    command = [wrk, f"-t{senders}", f"-c{senders}", f"-d{seconds:g}s", "-s", str(LUA_SCRIPT), url]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return parse_wrk_result(result_file.read_text(), seconds)


def parse_wrk_result(text: str, seconds: float) -> Load:
    load = Load(generator="wrk", seconds=seconds)
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "acked":
            load.acked.update(int(batch) for batch in value.split())
        elif key == "unanswered":
            load.unanswered.update(int(batch) for batch in value.split())
        elif key == "failed":
            load.failed += int(value)
        elif key == "socket_errors":
            load.socket_errors = int(value)
        elif key == "duration_us":
            load.seconds = int(value) / 1e6
        elif key in ("p50_us", "p99_us", "max_us"):
            setattr(load, key.replace("_us", "_ms"), int(value) / 1e3)
    return load


def run_python_senders(url: str, body_dir: Path, senders: int, seconds: float) -> Load:
    """The fallback load generator: aiohttp senders in this process, one connection each."""
    import aiohttp

    shares = []
    for share in range(senders):
        data = (body_dir / f"bodies-{share}").read_bytes()
        sizes = [int(size) for size in (body_dir / f"sizes-{share}").read_text().split()]
        offsets = [sum(sizes[:j]) for j in range(len(sizes))]
        shares.append([data[o : o + s] for o, s in zip(offsets, sizes, strict=True)])
    load = Load(generator="python (aiohttp client)", seconds=seconds)
    latencies: list[float] = []
    headers = {"Authorization": AUTHORIZATION, "Content-Encoding": "gzip"}

    async def sender(index: int, session: aiohttp.ClientSession, deadline: float) -> None:
        bodies, j = shares[index], 0
        while time.perf_counter() < deadline:
            batch = index + (j % len(bodies)) * senders
            started = time.perf_counter()
            try:
                async with session.post(url, data=bodies[j % len(bodies)], headers=headers) as r:
                    await r.read()
            except aiohttp.ClientError:
                load.unanswered[batch] += 1
                load.socket_errors += 1
                continue
            latencies.append(time.perf_counter() - started)
            if r.status == 202:
                load.acked[batch] += 1
            else:
                load.failed += 1
            j += 1

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=senders)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            deadline = time.perf_counter() + seconds
            await asyncio.gather(*(sender(i, session, deadline) for i in range(senders)))

    started = time.perf_counter()
    asyncio.run(main())
    load.seconds = time.perf_counter() - started
    latencies.sort()
    load.p50_ms = latencies[len(latencies) // 2] * 1e3
    load.p99_ms = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3
    load.max_ms = latencies[-1] * 1e3
    return load


def record_files(store: Path) -> list[Path]:
    """The current record file and every rotated one (its .gz once compressed), oldest first."""
    files = {}
    for path in sorted(store.glob("events*.jsonl*")):
        name = path.name
        if name.endswith(".jsonl.gz"):
            files[name.removesuffix(".gz")] = path  # complete once renamed; wins over plain
        elif name.endswith(".jsonl"):
            files.setdefault(name, path)
    return list(files.values())


def verify(store: Path, load: Load, records: int) -> tuple[str, int]:
    """Check every record file holds whole batches, each as often as acknowledged.

    Returns 'ok' or what is wrong, and the number of record files (rotation splits the store
    between groups, so a batch never spans two files).
    """
    stored: Counter[int] = Counter()
    files = record_files(store)
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as file:
            problem = _count_batches(file, records, stored)
        if problem:
            return f"{path.name}: {problem}", len(files)

    missing = sum((load.acked - stored).values())
    extra = stored - load.acked - load.unanswered
    if missing:
        return f"{missing} acknowledged batches are missing", len(files)
    if extra:
        return f"{sum(extra.values())} batches are stored more often than sent", len(files)
    return "ok", len(files)


def _count_batches(lines: Iterable[bytes], records: int, stored: Counter[int]) -> str | None:
    expected_index = 0
    current = -1
    for number, (batch, index) in enumerate(batch_tags(iter(lines)), 1):
        if batch < 0:
            return f"line {number} was not sent by the benchmark"
        if index != expected_index or (index > 0 and batch != current):
            return f"line {number}: batch {batch} record {index} is out of place"
        current = batch
        expected_index = (index + 1) % records
        if expected_index == 0:
            stored[batch] += 1
    if expected_index != 0:
        return f"the last batch ({current}) is incomplete"
    return None


def fsync_ceiling(directory: Path, batch: bytes, seconds: float) -> float:
    """Appends per second of ``batch`` by one writer with an fdatasync after each."""
    path = directory / "fsync-ceiling.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        count = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            os.write(fd, batch)
            os.fdatasync(fd)
            count += 1
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
        path.unlink()
    return count / elapsed


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    seconds: float = 10.0,
    senders: int = 16,
    records: int = 100,
    per_sender: int = 2500,
    ceiling_seconds: float = 3.0,
    use_wrk: bool = True,
    listen_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the whole ingest benchmark; return its figures."""
    wrk = shutil.which("wrk") if use_wrk else None
    with tempfile.TemporaryDirectory(
        prefix="kongctl-bench-", dir=os.environ.get("BENCH_DIR")
    ) as tmp:
        work = Path(tmp)
        body_dir, config_home = work / "bodies", work / "config"
        body_dir.mkdir()
        config_home.mkdir()
        sizes = build_bodies(body_dir, senders, per_sender, records)

        # Before the listener: afterwards the kernel is still writing back a gigabyte of its
        # records, and every fsync would wait behind that.
        os.sync()
        batch = b"\n".join(tagged_batch(distinct_records(), 0, records)) + b"\n"
        ceiling = fsync_ceiling(config_home, batch, ceiling_seconds)
        filesystem = _filesystem(config_home)

        emulator, konnect_url = start_emulator()
        try:
            port = _free_port()
            listener = start_listener(konnect_url, config_home, port, listen_args)
            url = f"http://127.0.0.1:{port}{PATH}"
            cpu_before = cpu_seconds(listener.pid)
            if wrk:
                load = run_wrk(wrk, url, body_dir, senders, seconds)
            else:
                load = run_python_senders(url, body_dir, senders, seconds)
            listener_cpu = cpu_seconds(listener.pid) - cpu_before
            peak_rss_kb = proc_status(listener.pid, "VmHWM")
            listener.send_signal(signal.SIGINT)
            listener.wait(timeout=60)
        finally:
            emulator.send_signal(signal.SIGTERM)
            emulator.wait(timeout=10)

        store = config_home / "kongctl" / "audit-logs" / "default"
        outcome, files = verify(store, load, records)

    acked = sum(load.acked.values())
    return {
        "generator": load.generator,
        "senders": senders,
        "records_per_batch": records,
        **sizes,
        "seconds": round(load.seconds, 2),
        "batches_per_s": round(acked / load.seconds),
        "records_per_s": round(acked * records / load.seconds),
        "p50_ms": round(load.p50_ms, 2),
        "p99_ms": round(load.p99_ms, 2),
        "max_ms": round(load.max_ms, 2),
        "failed": load.failed,
        "socket_errors": load.socket_errors,
        "unanswered": sum(load.unanswered.values()),
        "listener_cpu_percent": round(100 * listener_cpu / load.seconds),
        "peak_rss_mb": round(peak_rss_kb / 1024, 1),
        "verify": outcome,
        "record_files": files,
        "fsync_ceiling_per_s": round(ceiling),
        "ratio_to_ceiling": round(acked / load.seconds / ceiling, 2),
        "filesystem": filesystem,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _filesystem(path: Path) -> str:
    result = subprocess.run(
        ["df", "--output=fstype,source", str(path)], capture_output=True, text=True
    )
    lines = result.stdout.split("\n")
    return " ".join(lines[1].split()) if result.returncode == 0 and len(lines) > 1 else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--records", type=int, default=100, help="records per batch")
    parser.add_argument("--per-sender", type=int, default=2500, help="distinct batches each")
    parser.add_argument("--python-senders", action="store_true", help="do not use wrk")
    parser.add_argument(
        "--listen-arg", action="append", default=[], help="extra flag for kongctl listen"
    )
    args = parser.parse_args()
    result = measure(
        args.seconds,
        args.senders,
        args.records,
        args.per_sender,
        use_wrk=not args.python_senders,
        listen_args=args.listen_arg,
    )
    print(json.dumps(result, indent=2))
    return 0 if result["verify"] == "ok" and not result["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
