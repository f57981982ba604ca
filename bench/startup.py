"""Start-up time: median wall time of ``kongctl --help`` and ``kongctl ps`` against a bare
``python -c pass`` of the same interpreter.

``kongctl ps`` lists ten process records (of processes that are gone) in a temporary config
home. hyperfine measures when installed; otherwise each command is timed with subprocess. The
commands run from cached bytecode, as an installed kongctl does, and the report names the slow
modules (click, logging, ...) each kongctl command imports.

    .venv/bin/python bench/startup.py --runs 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
RECORDS = 10
# Modules that cost a good part of the start-up budget; --help and ps should import none.
SLOW_MODULES = ("click", "logging", "dataclasses", "inspect", "typing", "yaml", "aiohttp", "jq")


def write_process_records(config_home: Path, count: int = RECORDS) -> None:
    """Process records as detached listeners leave them, for pids that are not running."""
    directory = config_home / "kongctl" / "processes"
    directory.mkdir(parents=True, mode=0o700)
    for index in range(count):
        pid = 4_000_000 + index  # above the default pid_max: never a live process
        record = {
            "pid": pid,
            "kind": "konnect.audit-logs.listen",
            "profile": "default",
            "created_at": "2025-05-01T12:00:00Z",
            "log_file": str(config_home / "kongctl" / "logs" / f"kongctl-listener-{pid}.log"),
            "args": [sys.executable, "-m", "kongctl", "listen", "--authorization", "[REDACTED]"],
            "start_time_ticks": 123456 + index,
            "listen_address": f"127.0.0.1:{19090 + index}",
            "endpoint": f"https://host-{index}.example.ts.net/audit-logs",
            "kongctl_version": "0.1.0",
        }
        (directory / f"{pid}.json").write_text(json.dumps(record, indent=2) + "\n")


def commands() -> dict[str, list[str]]:
    kongctl = str(VENV_BIN / "kongctl")
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "kongctl --help": [kongctl, "--help"],
        "kongctl ps": [kongctl, "ps"],
    }


def with_hyperfine(hyperfine: str, runs: int, env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "hyperfine.json"
        names = list(commands())
        argv = [hyperfine, "--warmup", "3", "--runs", str(runs), "-N", "--style", "none"]
        argv += ["--export-json", str(export)]
        for name, command in commands().items():
            argv += ["-n", name, " ".join(command)]
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        results = json.loads(export.read_text())["results"]
    return {name: result["median"] * 1e3 for name, result in zip(names, results, strict=True)}


def with_subprocess(runs: int, env: dict[str, str]) -> dict[str, float]:
    medians = {}
    for name, command in commands().items():
        times = []
        for run in range(runs + 3):
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
            if run >= 3:  # the first runs warm the page cache and the bytecode cache
                times.append(time.perf_counter() - started)
        medians[name] = statistics.median(times) * 1e3
    return medians


def imports_of(argv: list[str], env: dict[str, str]) -> list[str]:
    """Top-level packages the command imports that a bare interpreter does not."""
    # kongctl.cli.main.run is what the kongctl console script runs.
    code = (
        "import sys; sys.argv = {argv!r}; "
        "from kongctl.cli.main import run; run(sys.argv[1:]); "
        "print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})), file=sys.stderr)"
    ).format(argv=["kongctl", *argv])
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    loaded = set(result.stderr.split())
    bare = subprocess.run(
        [sys.executable, "-c", "import sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(loaded - {name.split(".")[0] for name in bare})


def environment(config_home: Path, bytecode_cache: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    # An installed kongctl runs from bytecode compiled at install time; without a cache every
    # run would compile kongctl's modules again. The warm-up runs fill this one.
    env["PYTHONPYCACHEPREFIX"] = str(bytecode_cache)
    env["XDG_CONFIG_HOME"] = str(config_home)
    return env


def measure(runs: int = 20) -> dict[str, Any]:
    hyperfine = shutil.which("hyperfine")
    with tempfile.TemporaryDirectory(prefix="kongctl-bench-") as tmp:
        config_home = Path(tmp) / "config"
        write_process_records(config_home)
        env = environment(config_home, Path(tmp) / "bytecode")
        medians = with_hyperfine(hyperfine, runs, env) if hyperfine else with_subprocess(runs, env)
        imports = {
            f"kongctl {' '.join(argv)}": imports_of(argv, env) for argv in (["--help"], ["ps"])
        }
    base = medians["python -c pass"]
    return {
        "timer": "hyperfine" if hyperfine else "subprocess (hyperfine not installed)",
        "runs": runs,
        "median_ms": {name: round(ms, 1) for name, ms in medians.items()},
        "ratio_to_python": {
            name: round(ms / base, 2) for name, ms in medians.items() if name != "python -c pass"
        },
        "slow_imports": {
            name: [module for module in SLOW_MODULES if module in loaded]
            for name, loaded in imports.items()
        },
        "imports": imports,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(measure(args.runs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
