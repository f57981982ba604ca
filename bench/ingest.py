"""Ingest micro-benchmark: concurrent senders POST gzip batches to a real receiver and store.

The receiver runs in its own process (as in production), the senders in this one. At the end
the record file is checked: every acknowledged batch is on disk exactly once, its lines
contiguous and in order.

    .venv/bin/python bench/ingest.py --senders 16 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from kongctl.auditlogs.receiver import Receiver, ReceiverConfig, bind_listen_socket
from kongctl.auditlogs.store import EventStore

AUTHORIZATION = "Bearer bench-secret"
PATH = "/audit-logs"
_BATCH_TAG = re.compile(rb'^\{"batch": (\d+), "index": (\d+),')


def make_batch(batch: int, records: int) -> list[bytes]:
    """Records shaped like Konnect audit logs, about 500 bytes each, tagged for checking."""
    return [
        json.dumps(
            {
                "batch": batch,
                "index": index,
                "event_ts": "2024-05-01T12:00:00.123Z",
                "event_product": "Konnect",
                "event_class_id": "auth",
                "event_action": "login",
                "event_outcome": "success",
                "principal_id": os.urandom(16).hex(),
                "org_id": "8a5b7f2e-0c3f-4b2c-9a7e-6a6b0f0f7d11",
                "trace_id": 6891110586028963295 + index,
                "client_ip": "203.0.113.7",
                "request": {
                    "method": "GET",
                    "path": f"/v2/control-planes/{os.urandom(8).hex()}/core-entities",
                    "status": 200,
                    "query": "page[size]=100&page[number]=1",
                },
                "cef": "CEF:0|Kong|Konnect|1.0|auth|login|1|rt=1714564800123 src=203.0.113.7",
            }
        ).encode()
        for index in range(records)
    ]


def serve(directory: Path) -> None:
    """The receiver process: print the port, serve until SIGTERM, print the store counters."""

    async def main() -> None:
        store = EventStore(directory)
        store.open()
        sock = bind_listen_socket("127.0.0.1", 0)
        receiver = Receiver(store, ReceiverConfig(authorization=AUTHORIZATION, path=PATH))
        await receiver.start(sock)
        print(receiver.bound_address[1], flush=True)

        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        threads = _thread_cpu()
        await receiver.stop()
        await store.close()
        report = {
            "fsyncs": store.fsyncs,
            "records_written": store.records_written,
            "bytes_written": store.bytes_written,
            "max_rss_kb": _max_rss_kb(),
            "cpu_seconds": sum(os.times()[:2]),
            "threads": threads,
        }
        print(json.dumps(report), flush=True)

    asyncio.run(main())


def _thread_cpu() -> dict[str, str]:
    """User and system CPU seconds per thread of this process, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    usage = {}
    for task in Path("/proc/self/task").iterdir():
        name = (task / "comm").read_text().strip()
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        usage[f"{name}/{task.name}"] = (
            f"user={int(fields[11]) / ticks:.2f}s sys={int(fields[12]) / ticks:.2f}s"
        )
    return usage


def _max_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


async def send(
    port: int, bodies: list[bytes], senders: int, seconds: float
) -> tuple[list[int], list[float], int]:
    """Run the senders; return the acknowledged batch numbers, latencies, and failures."""
    url = f"http://127.0.0.1:{port}{PATH}"
    headers = {"Authorization": AUTHORIZATION, "Content-Encoding": "gzip"}
    acknowledged: list[int] = []
    latencies: list[float] = []
    failures = 0
    next_batch = 0
    deadline = time.perf_counter() + seconds

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal next_batch, failures
        while time.perf_counter() < deadline:
            batch = next_batch % len(bodies)
            next_batch += 1
            started = time.perf_counter()
            async with session.post(url, data=bodies[batch], headers=headers) as response:
                await response.read()
            latencies.append(time.perf_counter() - started)
            if response.status == 202:
                acknowledged.append(batch)
            else:
                failures += 1

    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        await asyncio.gather(*(sender(session) for _ in range(senders)))
    return acknowledged, latencies, failures


def verify(events: Path, batches: list[list[bytes]], acknowledged: list[int]) -> str:
    """Check the file holds each acknowledged batch once per acknowledgement, contiguous."""
    lines = events.read_bytes().split(b"\n")
    if lines[-1] != b"":
        return "file does not end with a newline"
    lines.pop()

    expected = Counter(line for batch in acknowledged for line in batches[batch])
    if Counter(lines) != expected:
        return "records on disk differ from the acknowledged ones"

    per_batch = len(batches[0])
    for start in range(0, len(lines), per_batch):
        tags = [_BATCH_TAG.match(line) for line in lines[start : start + per_batch]]
        numbers = {tag.group(1) for tag in tags if tag}
        indexes = [int(tag.group(2)) for tag in tags if tag]
        if len(numbers) != 1 or indexes != list(range(per_batch)):
            return f"batch lines interleaved near line {start}"
    return "ok"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(args: argparse.Namespace) -> int:
    batches = [make_batch(number, args.records) for number in range(args.pool)]
    bodies = [gzip.compress(b"\n".join(batch) + b"\n", 6) for batch in batches]
    raw_size = sum(len(b"\n".join(batch)) for batch in batches) // len(batches)
    gz_size = sum(map(len, bodies)) // len(bodies)

    with tempfile.TemporaryDirectory(prefix="kongctl-bench-") as tmp:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", tmp],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        port = int(server.stdout.readline())

        started = time.perf_counter()
        cpu_before = sum(os.times()[:2])
        acknowledged, latencies, failures = asyncio.run(
            send(port, bodies, args.senders, args.seconds)
        )
        elapsed = time.perf_counter() - started
        sender_cpu = sum(os.times()[:2]) - cpu_before

        server.send_signal(signal.SIGTERM)
        report = json.loads(server.stdout.readline())
        server.wait(timeout=30)
        outcome = verify(Path(tmp) / "events.jsonl", batches, acknowledged)

    count = len(acknowledged)
    print(f"senders={args.senders} records/batch={args.records} raw={raw_size}B gzip={gz_size}B")
    print(f"batches/s={count / elapsed:,.0f} records/s={count * args.records / elapsed:,.0f}")
    print(
        f"latency p50={percentile(latencies, 0.5) * 1e3:.2f}ms "
        f"p99={percentile(latencies, 0.99) * 1e3:.2f}ms failures={failures}"
    )
    print(
        f"fsyncs={report['fsyncs']} batches/fsync={count / max(1, report['fsyncs']):.1f} "
        f"receiver max RSS={report['max_rss_kb'] / 1024:.1f}MB "
        f"CPU receiver={report['cpu_seconds'] / elapsed:.0%} senders={sender_cpu / elapsed:.0%}"
    )
    print(f"receiver threads: {report['threads']}")
    print(f"verify: {outcome}")
    return 0 if outcome == "ok" and failures == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--records", type=int, default=100, help="records per batch")
    parser.add_argument("--pool", type=int, default=400, help="distinct batches to cycle")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
