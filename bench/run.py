"""The whole benchmark in one run (``make bench``): ingest, the fsync ceiling, tail --jq, start-up.

Installs wrk, jq and hyperfine with apt-get when they are missing and this runs as root;
otherwise each part falls back (a Python load generator, no jq comparison, subprocess timing)
and says so. Prints each part's figures as JSON, then a Markdown table for
docs/performance.md, and writes everything to ``bench/results.json``.

    .venv/bin/python bench/run.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest
import startup
import tail_jq

TOOLS = {"wrk": "wrk", "jq": "jq", "hyperfine": "hyperfine"}
RESULTS = Path(__file__).resolve().parent / "results.json"


def ensure_tools() -> list[str]:
    """Install missing tools when possible; return a note per tool still missing."""
    missing = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
        command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        installed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if installed.returncode != 0:
            print(f"apt-get failed: {installed.stderr.decode()[-300:]}", file=sys.stderr)
    notes = {
        "wrk": "wrk missing: the load comes from a Python generator sharing the cores",
        "jq": "jq missing: no comparison with the jq command line",
        "hyperfine": "hyperfine missing: start-up timed with subprocess",
    }
    return [notes[tool] for tool in TOOLS if shutil.which(tool) is None]


def machine() -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def table(results: dict[str, Any]) -> str:
    """The Markdown table of docs/performance.md."""
    i, j, s = results["ingest"], results["jq"], results["startup"]
    ms = s["median_ms"]
    rows = [
        (
            "durable ingest",
            f"{i['batches_per_s']:,} batches/s ({i['records_per_s']:,} records/s)",
            "≥ 4,000 batches/s",
        ),
        ("fsync ceiling (1 fdatasync per append)", f"{i['fsync_ceiling_per_s']:,} appends/s", ""),
        ("ingest / ceiling", f"{i['ratio_to_ceiling']}x", "≥ 1.5x"),
        ("ack latency p50 / p99", f"{i['p50_ms']} ms / {i['p99_ms']} ms", "p99 ≤ 10 ms"),
        ("listener peak RSS (VmHWM)", f"{i['peak_rss_mb']} MB", "≤ 80 MB"),
        (
            "acknowledged records on disk",
            f"{i['verify']} ({i['record_files']} files)",
            "all, exactly once",
        ),
        (
            "tail --jq filter path",
            f"{j['kongctl_records_per_s']:,} records/s (jq {j['jq_package']})",
            "",
        ),
        (
            "jq CLI, same records and filter",
            f"{j.get('jq_cli_records_per_s', 0):,} records/s ({j.get('jq_cli', '-')})",
            "",
        ),
        ("tail --jq / jq CLI", f"{j.get('ratio_to_jq_cli', '-')}x", "≥ 1.0x"),
        ("libjq parse only (ceiling)", f"{j['libjq_parse_only_records_per_s']:,} records/s", ""),
        ("python -c pass", f"{ms['python -c pass']} ms", ""),
        (
            "kongctl --help",
            f"{ms['kongctl --help']} ms ({s['ratio_to_python']['kongctl --help']}x)",
            "≤ 1.6x",
        ),
        (
            "kongctl ps (10 records)",
            f"{ms['kongctl ps']} ms ({s['ratio_to_python']['kongctl ps']}x)",
            "≤ 1.6x",
        ),
    ]
    lines = ["| figure | result | target |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {target} |" for name, value, target in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="ingest duration")
    parser.add_argument("--runs", type=int, default=20, help="start-up runs per command")
    args = parser.parse_args()

    notes = ensure_tools()
    for note in notes:
        print(f"note: {note}")
    results: dict[str, Any] = {"machine": machine(), "notes": notes}
    print(json.dumps(results["machine"]))

    results["ingest"] = ingest.measure(
        seconds=args.seconds, use_wrk=shutil.which("wrk") is not None
    )
    print(json.dumps({"ingest": results["ingest"]}, indent=2))
    results["jq"] = tail_jq.measure()
    print(json.dumps({"jq": results["jq"]}, indent=2))
    results["startup"] = startup.measure(args.runs)
    print(json.dumps({"startup": results["startup"]}, indent=2))

    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table(results))
    return 0 if results["ingest"]["verify"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
