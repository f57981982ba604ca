from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kongctl import __version__
from kongctl.cli.root import run


def kongctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kongctl", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"kongctl {__version__}"


def test_help_lists_the_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in ("listen", "tail", "ps"):
        assert f"  {verb}  " in out


def test_help_imports_no_command_module() -> None:
    code = (
        "import sys; from kongctl.cli.root import run; run(['--help']);"
        "heavy = [m for m in ('aiohttp', 'jq', 'yaml', 'kongctl.cli.listen') if m in sys.modules];"
        "print('HEAVY', heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "HEAVY []" in done.stdout


def test_unknown_output_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-o", "xml", "ps"]) == 2
    err = capsys.readouterr().err
    assert "Error: Invalid value for '--output'" in err
    assert "xml" in err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_missing_config_file_is_reported_without_traceback(tmp_path: Path) -> None:
    done = kongctl(
        "listen",
        "--config-file",
        str(tmp_path / "missing.yaml"),
        "--authorization",
        "x",
        "--endpoint",
        "https://example.com/audit-logs",
    )
    assert done.returncode == 2
    assert f"Error: config file {tmp_path / 'missing.yaml'} does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_malformed_config_yaml_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("default:\n  konnect: {pat: [\n")
    done = kongctl(
        "listen",
        "--config-file",
        str(config),
        "--authorization",
        "x",
        "--endpoint",
        "https://example.com/audit-logs",
    )
    assert done.returncode == 2
    assert f"malformed YAML in {config}: line" in done.stderr
    assert "Traceback" not in done.stderr


def test_output_from_config_file_must_be_known(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("default:\n  output: xml\n")
    done = kongctl("ps", "--config-file", str(config))
    assert done.returncode == 2
    assert 'Error: invalid output format "xml"' in done.stderr


def test_log_file_pid_placeholder_and_debug_traceback(tmp_path: Path) -> None:
    template = tmp_path / "logs" / "kongctl-%PID%.log"
    done = kongctl(
        "--log-level",
        "debug",
        "--log-file",
        str(template),
        "get",
        "audit-logs",
        "destinations",
        "--base-url",
        "http://127.0.0.1:9",
        "--pat",
        "kpat_secret_value",
    )
    assert done.returncode == 1
    assert "Error: cannot reach Konnect" in done.stderr
    assert "Traceback" not in done.stderr
    [log_file] = (tmp_path / "logs").iterdir()
    assert log_file.name.startswith("kongctl-") and log_file.name[8:-4].isdigit()
    text = log_file.read_text()
    assert "Traceback" in text
    assert "kpat_secret_value" not in text
    assert log_file.stat().st_mode & 0o777 == 0o600


def test_default_log_level_keeps_tracebacks_out_of_the_log(tmp_path: Path) -> None:
    log_file = tmp_path / "k.log"
    done = kongctl(
        "--log-file",
        str(log_file),
        "get",
        "audit-logs",
        "destinations",
        "--base-url",
        "http://127.0.0.1:9",
        "--pat",
        "kpat_x",
    )
    assert done.returncode == 1
    assert not log_file.exists() or "Traceback" not in log_file.read_text()
