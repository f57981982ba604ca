"""`make demo`: a local Konnect emulator delivers audit events to `kongctl tail`.

Everything happens on loopback in a temporary config home, so the user's own
~/.config/kongctl is never touched. The demo stops by itself and shows the cleanup.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RUN_SECONDS = 20
TOKEN = "kpat_emulator"
JQ_FILTER = "{ts: .event_ts, name, principal: .principal_id, trace_id}"


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_emulator(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "kongctl.emulator",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--event-rate",
        "3",
        "--batch-size",
        "3",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return process, line.rsplit(" ", 1)[-1]


def konnect_state(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/_emulator/state", timeout=5) as answer:
        state: dict[str, object] = json.load(answer)
        return state


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="kongctl-demo-"))
    env = {**os.environ, "XDG_CONFIG_HOME": str(home)}
    say(f"config home for this demo: {home} (your ~/.config/kongctl is not used)")
    emulator, url = start_emulator(env)
    say(f"Konnect emulator listening on {url}")
    port = free_port()
    tail = [
        sys.executable,
        "-m",
        "kongctl",
        "tail",
        "--base-url",
        url,
        "--pat",
        TOKEN,
        "--endpoint",
        f"http://127.0.0.1:{port}/audit-logs",
        "--listen-address",
        f"127.0.0.1:{port}",
        "--authorization",
        "Bearer demo-secret",
        "--log-level",
        "info",
        "--jq",
        JQ_FILTER,
    ]
    say("kongctl tail --jq '" + JQ_FILTER + "'  (stops by itself in ~20 s)")
    listener = subprocess.Popen(tail, env=env)
    try:
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline and listener.poll() is None:
            time.sleep(0.2)
        if listener.poll() is None:
            say("stopping the listener (SIGINT, as Ctrl-C would)")
            listener.send_signal(signal.SIGINT)
        code = listener.wait(timeout=90)
        state = konnect_state(url)
        webhook = state.get("webhook") or {}
        region = webhook.get("v2") if isinstance(webhook, dict) else webhook
        destinations = state.get("destinations") or []
        say(f"kongctl exited with status {code}")
        say(f"Konnect now has {len(destinations)} destination(s); webhook: {json.dumps(region)}")
        events = home / "kongctl" / "audit-logs" / "default" / "events.jsonl"
        if events.exists():
            count = sum(1 for _ in events.open("rb"))
            say(f"{count} records stored in {events}")
        return code
    finally:
        if listener.poll() is None:
            listener.kill()
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
