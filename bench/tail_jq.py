"""Tail --jq throughput: records/s through the tail filter path against the jq command line.

The filter path is what ``kongctl tail --jq`` runs for each stored group: JqFilter.filter_batch
and a TailWriter printing to /dev/null. The jq command line reads the same records from a file
with the same filter (``jq -c``), writing to /dev/null. Best of ``--repeat`` runs each; the
libjq parse-only figure (filter ``empty``) is the ceiling of any libjq-based path.

    .venv/bin/python bench/tail_jq.py --records 100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import records as make_records

from kongctl.auditlogs.tail import JqFilter, TailWriter

FILTER = "{ts:.event_ts, name, request:(.request // null)}"
# kongctl tail hands the printer each durably written group; at full ingest speed a group
# holds a few batches of 100 records.
BATCH_SIZE = 1000


def time_filter_path(expression: str, records: Sequence[bytes], batch_size: int) -> float:
    """Seconds for the tail printer to filter and print ``records`` to /dev/null."""
    warnings: list[str] = []
    jq_filter = JqFilter.compile(expression)
    with open(os.devnull, "wb") as devnull:
        writer = TailWriter(devnull, jq_filter, warn=warnings.append)
        started = time.perf_counter()
        for start in range(0, len(records), batch_size):
            writer.write_records(records[start : start + batch_size])
        elapsed = time.perf_counter() - started
    if warnings:
        raise SystemExit(f"unexpected warnings: {warnings[:3]}")
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


def jq_package_build() -> str:
    """Which build of the jq package runs: the figures depend on it (docs/performance.md)."""
    from importlib.metadata import distribution

    dist = distribution("jq")
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    published = any("manylinux" in tag or "macosx" in tag for tag in tags)
    how = "published wheel, compiled without optimisation" if published else "built here"
    return f"{dist.version} ({how})"


def measure(
    count: int = 100_000,
    expression: str = FILTER,
    batch_size: int = BATCH_SIZE,
    repeat: int = 3,
) -> dict[str, Any]:
    """Run the jq benchmark; return its figures (the jq CLI ones only when jq is installed)."""
    records = make_records(count)
    ours = count / best(repeat, lambda: time_filter_path(expression, records, batch_size))
    parse_only = count / best(repeat, lambda: time_libjq_parse_only(records, batch_size))
    result: dict[str, Any] = {
        "records": count,
        "record_bytes": round(sum(map(len, records)) / count),
        "batch_size": batch_size,
        "filter": expression,
        "kongctl_records_per_s": round(ours),
        "libjq_parse_only_records_per_s": round(parse_only),
        "jq_package": jq_package_build(),
    }

    jq_path = shutil.which("jq")
    if jq_path is None:
        result["jq_cli"] = "not installed"
        return result
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"".join(record + b"\n" for record in records))
        cli = count / best(repeat, lambda: time_jq_cli(jq_path, expression, path))
        probe = subprocess.run(
            [jq_path, "-c", ".trace_id", str(path)], capture_output=True, check=True
        ).stdout.split(b"\n", 1)[0]
    version = subprocess.run([jq_path, "--version"], capture_output=True, text=True).stdout
    result.update(
        jq_cli=version.strip(),
        jq_cli_records_per_s=round(cli),
        ratio_to_jq_cli=round(ours / cli, 2),
        jq_cli_keeps_trace_ids=probe.decode() == str(json.loads(records[0])["trace_id"]),
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--filter", default=FILTER)
    args = parser.parse_args(argv)
    result = measure(args.records, args.filter, args.batch_size, args.repeat)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
