"""Tail --jq throughput: records/s through JqFilter.filter_batch against the jq command line.

Generates Konnect-shaped JSON audit records (trace ids above 2^53, a request on most), runs
the filter over them in batches the way ``kongctl tail`` does, and, when ``jq`` is installed,
times ``jq -c`` on the same file. Best of ``--repeat`` runs each.

    .venv/bin/python bench/tail_jq.py --records 100000 --batch-size 1000
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from kongctl.auditlogs.tail import JqFilter

FILTER = "{ts:.event_ts, name, request:(.request // null)}"
NAMES = ["Authorize", "CreateControlPlane", "ListServices", "UpdateRoute", "DeletePlugin", "Login"]
METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36"
)


def make_records(count: int, seed: int = 7) -> list[bytes]:
    """Compact JSON lines shaped like Konnect audit records, about 480 bytes each."""
    rnd = random.Random(seed)
    records = []
    for i in range(count):
        record: dict[str, object] = {
            "cef_version": "0",
            "event_class_id": "konnect",
            "event_product": "Konnect",
            "event_ts": f"2024-05-{1 + i % 28:02d}T12:{i % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
            "event_vendor": "KongInc",
            "event_version": "1.0",
            "name": rnd.choice(NAMES),
            "org_id": f"b6d8a1a4-7c1f-4e59-9a0b-{rnd.getrandbits(48):012x}",
            "principal_id": f"0f3a9e6c-1b2d-4c5e-8f7a-{rnd.getrandbits(48):012x}",
            "rt": 1714565000000 + i,
            "severity": rnd.choice([1, 3, 5, 7]),
            "src": f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}",
            "trace_id": rnd.randrange(2**53 + 1, 2**63),
            "user_agent": USER_AGENT,
        }
        if rnd.random() < 0.6:
            path = f"/v2/control-planes/{rnd.getrandbits(64):016x}"
            record["request"] = {"method": rnd.choice(METHODS), "path": path}
        records.append(json.dumps(record, separators=(",", ":")).encode())
    return records


def time_filter_batch(jq_filter: JqFilter, records: Sequence[bytes], batch_size: int) -> float:
    started = time.perf_counter()
    outputs = 0
    for start in range(0, len(records), batch_size):
        printed, warnings = jq_filter.filter_batch(records[start : start + batch_size])
        outputs += len(printed)
        if warnings:
            raise SystemExit(f"unexpected warnings: {warnings[:3]}")
    elapsed = time.perf_counter() - started
    if outputs != len(records):
        raise SystemExit(f"expected {len(records)} outputs, got {outputs}")
    return elapsed


def time_libjq_parse_only(records: Sequence[bytes], batch_size: int) -> float:
    """The ceiling: libjq reading the records and doing nothing else."""
    import jq

    program = jq.compile("empty")
    started = time.perf_counter()
    for start in range(0, len(records), batch_size):
        program.input_text(b"\n".join(records[start : start + batch_size]).decode()).all()
    return time.perf_counter() - started


def time_jq_cli(jq_path: str, expression: str, path: Path) -> float:
    started = time.perf_counter()
    subprocess.run([jq_path, "-c", expression, str(path)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def best(runs: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(runs))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, action="append", dest="batch_sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--filter", default=FILTER)
    args = parser.parse_args(argv)
    batch_sizes = args.batch_sizes or [1000]

    records = make_records(args.records)
    jq_filter = JqFilter.compile(args.filter)
    size = sum(map(len, records)) / len(records)
    print(f"{len(records):,} records, {size:.0f} bytes each, filter {args.filter}")

    ours = {}
    for batch_size in batch_sizes:
        seconds = best(args.repeat, partial(time_filter_batch, jq_filter, records, batch_size))
        ours[batch_size] = len(records) / seconds
        print(f"filter_batch  batch {batch_size:>6}: {ours[batch_size]:>10,.0f} records/s")
    parse_only = best(args.repeat, lambda: time_libjq_parse_only(records, batch_sizes[0]))
    print(f"libjq parse only (ceiling) : {len(records) / parse_only:>10,.0f} records/s")

    jq_path = shutil.which("jq")
    if jq_path is None:
        print("jq command not installed: no comparison")
        return 0
    version = subprocess.run([jq_path, "--version"], capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"".join(record + b"\n" for record in records))
        cli = len(records) / best(args.repeat, lambda: time_jq_cli(jq_path, args.filter, path))
        probe = subprocess.run(
            [jq_path, "-c", ".trace_id", str(path)], capture_output=True, check=True
        ).stdout.split(b"\n", 1)[0]
    exact = probe.decode() == str(json.loads(records[0])["trace_id"])
    print(f"{version.strip()} -c           : {cli:>10,.0f} records/s")
    print(
        f"trace ids through the jq CLI: {'exact' if exact else 'ROUNDED (' + probe.decode() + ')'}"
    )
    for batch_size, rate in ours.items():
        print(f"ratio filter_batch/jq CLI (batch {batch_size}): {rate / cli:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
