"""The konnect-emulator command as a real process: listening line, signals, flags."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.emulator_support import start_emulator_process, stop_emulator_process


def get_json(url: str, token: str | None = "kpat_emulator") -> object:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def test_prints_the_listening_line_and_serves(tmp_path: Path) -> None:
    process, url = start_emulator_process(tmp_path, "--event-rate", "0")
    try:
        assert url.startswith("http://127.0.0.1:")
        webhook = get_json(f"{url}/v2/audit-log-webhook")
        assert isinstance(webhook, dict) and webhook["endpoint"] == "unconfigured"
    finally:
        code = stop_emulator_process(process)
    assert code == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_it_cleanly_with_status_0(tmp_path: Path, signum: int) -> None:
    process, _ = start_emulator_process(tmp_path)
    process.send_signal(signum)
    assert process.wait(timeout=10) == 0
    assert process.stdout is not None
    assert process.stdout.read() == ""
    process.stdout.close()
    assert "Traceback" not in (tmp_path / "konnect-emulator.log").read_text()


def test_seed_makes_the_signing_key_repeat(tmp_path: Path) -> None:
    keys = []
    for _ in range(2):
        process, url = start_emulator_process(tmp_path, "--seed", "42", "--event-rate", "0")
        try:
            keys.append(get_json(f"{url}/v2/audit-log-webhook/jwks.json", token=None))
        finally:
            stop_emulator_process(process)
    assert keys[0] == keys[1]


def test_token_flag_sets_the_accepted_token(tmp_path: Path) -> None:
    process, url = start_emulator_process(tmp_path, "--token", "spat_other")
    try:
        assert isinstance(get_json(f"{url}/v3/audit-log-destinations", "spat_other"), dict)
    finally:
        stop_emulator_process(process)


def test_busy_port_is_a_clean_error(tmp_path: Path) -> None:
    process, url = start_emulator_process(tmp_path)
    port = url.rsplit(":", 1)[1]
    try:
        second = subprocess.run(
            [sys.executable, "-m", "kongctl.emulator.cli", "--port", port],
            capture_output=True,
            text=True,
            timeout=20,
        )
    finally:
        stop_emulator_process(process)
    assert second.returncode == 1
    assert second.stdout == ""
    assert "Error: cannot listen on 127.0.0.1:" in second.stderr
    assert "Traceback" not in second.stderr


def test_bad_flag_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kongctl.emulator", "--content-encoding", "br"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert "--content-encoding" in result.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "konnect-emulator"
    found = shutil.which("konnect-emulator") or (str(script) if script.exists() else None)
    assert found is not None
    result = subprocess.run([found, "--help"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0
    assert "--event-rate" in result.stdout


def test_console_script_prints_the_line_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "konnect-emulator"
    process = subprocess.Popen(
        [str(script), "--port", "0", "--event-rate", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    with process.stdout:
        line = process.stdout.readline()
        assert re.fullmatch(r"konnect-emulator listening on http://127\.0\.0\.1:\d+\n", line)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
