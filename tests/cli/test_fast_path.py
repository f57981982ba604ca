"""`kongctl --help` and `kongctl ps` take the fast path and print what the click CLI prints."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from kongctl.cli.fast import run_fast
from kongctl.cli.helppage import help_width, root_help
from kongctl.cli.root import run as run_click
from kongctl.processes.registry import ProcessRecord, records_dir, write_record

KONGCTL = str(Path(sys.executable).parent / "kongctl")
CLICK_CLI = "import sys; from kongctl.cli.root import run; sys.exit(run(sys.argv[1:]))"
# Modules that would take a good part of the start-up time the fast path exists to save.
SLOW_MODULES = ("click", "logging", "dataclasses", "inspect", "typing", "yaml", "aiohttp", "jq")


@pytest.fixture
def without_click(tmp_path: Path) -> dict[str, str]:
    """An environment in which importing click fails, so only the fast path can answer."""
    blocked = tmp_path / "blocked" / "click"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('click is not available here')\n")
    return {**os.environ, "PYTHONPATH": str(blocked.parent)}


def kongctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([KONGCTL, *args], capture_output=True, timeout=30, env=env)


def click_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-c", CLICK_CLI, *args]
    return subprocess.run(command, capture_output=True, timeout=30, env=env)


def outcome(done: subprocess.CompletedProcess[bytes]) -> tuple[int, bytes, bytes]:
    return done.returncode, done.stdout, done.stderr


def exited_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def exited_listener_records(config_dir: Path) -> list[int]:
    pids = [exited_pid(), exited_pid()]
    write_record(
        config_dir,
        ProcessRecord(
            pid=pids[0],
            created_at="2025-01-01T00:00:00Z",
            log_file=str(config_dir / "logs" / f"kongctl-listener-{pids[0]}.log"),
            start_time_ticks=1234,
            listen_address="127.0.0.1:19090",
            endpoint="https://example.test/audit-logs",
        ),
    )
    write_record(config_dir, ProcessRecord(pid=pids[1], profile="staging"))
    return pids


def unreadable_record(config_dir: Path) -> Path:
    path = records_dir(config_dir) / "123.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{")
    return path


@pytest.mark.parametrize("columns", [1, 40, *range(50, 83), 120])
def test_root_help_is_laid_out_as_click_lays_it_out(
    columns: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))

    assert run_click(["--help"]) == 0

    assert root_help(help_width()) == capsys.readouterr().out


@pytest.mark.parametrize("columns", ["1", "54", "57", "80", "200"])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_command_prints_what_click_prints(
    flag: str, columns: str, without_click: dict[str, str]
) -> None:
    ours = kongctl(flag, env={**without_click, "COLUMNS": columns})
    theirs = click_cli(flag, env={**os.environ, "COLUMNS": columns})

    assert outcome(ours) == outcome(theirs)
    assert ours.returncode == 0
    assert ours.stdout.startswith(b"Usage: kongctl [OPTIONS] COMMAND [ARGS]...\n")


def test_bare_kongctl_prints_help_on_stderr_with_usage_status(
    without_click: dict[str, str],
) -> None:
    ours = kongctl(env=without_click)

    assert outcome(ours) == outcome(click_cli())
    assert ours.returncode == 2
    assert ours.stdout == b""
    assert b"Commands:" in ours.stderr


def on_terminal(command: list[str], columns: int, env: dict[str, str]) -> bytes:
    """What ``command`` prints on a terminal ``columns`` wide."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        subprocess.run(command, stdout=terminal, stderr=terminal, env=env, timeout=30, check=True)
    finally:
        os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: everything written has been read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return b"".join(chunks)


def test_help_on_a_terminal_is_as_wide_as_the_terminal(without_click: dict[str, str]) -> None:
    env = {name: value for name, value in without_click.items() if name != "COLUMNS"}
    reference = {name: value for name, value in os.environ.items() if name != "COLUMNS"}

    ours = on_terminal([KONGCTL, "--help"], 64, env)

    assert ours == on_terminal([sys.executable, "-c", CLICK_CLI, "--help"], 64, reference)
    assert ours.replace(b"\r\n", b"\n").decode() == root_help(62)
    assert root_help(62) != root_help(78)


@pytest.mark.parametrize(
    "args",
    [
        ["ps"],
        ["ps", "-o", "text"],
        ["ps", "-o", "json"],
        ["ps", "--output", "json"],
        ["ps", "--output=json"],
        ["-o", "json", "ps"],
    ],
)
def test_ps_prints_what_click_prints(
    args: list[str], config_home: Path, without_click: dict[str, str]
) -> None:
    pids = exited_listener_records(config_home)
    broken = unreadable_record(config_home)

    ours = kongctl(*args, env=without_click)

    assert outcome(ours) == outcome(click_cli(*args))
    assert ours.returncode == 0
    assert ours.stderr.decode().startswith(f"warning: cannot read process record {broken}: ")
    assert all(str(pid).encode() in ours.stdout for pid in pids)


@pytest.mark.parametrize("args", [["ps"], ["ps", "-o", "json"]])
def test_ps_without_records_prints_what_click_prints(
    args: list[str], without_click: dict[str, str]
) -> None:
    ours = kongctl(*args, env=without_click)

    assert outcome(ours) == outcome(click_cli(*args))
    assert ours.stdout in (b"No detached kongctl processes found.\n", b"[]\n")


def test_ps_takes_its_output_format_from_the_environment(
    config_home: Path, without_click: dict[str, str]
) -> None:
    exited_listener_records(config_home)
    env = {**without_click, "KONGCTL_DEFAULT_OUTPUT": "JSON"}

    ours = kongctl("ps", env=env)

    assert outcome(ours) == outcome(click_cli("ps", env={**os.environ, **env, "PYTHONPATH": ""}))
    assert len(json.loads(ours.stdout)) == 2


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ("default:\n  output: [\n", b"Error: malformed YAML in "),
        ("default:\n  output: xml\n", b'Error: invalid output format "xml"'),
        ("default:\n  output: yaml\n", None),
    ],
)
def test_ps_leaves_what_it_cannot_print_to_click(
    config: str, error: bytes | None, config_home: Path
) -> None:
    exited_listener_records(config_home)
    unreadable_record(config_home)
    config_home.joinpath("config.yaml").write_text(config)

    ours = kongctl("ps")

    assert outcome(ours) == outcome(click_cli("ps"))
    if error is None:
        assert ours.returncode == 0
        assert ours.stdout.startswith(b"- pid: ")
    else:
        assert ours.returncode == 2
        assert ours.stderr.count(b"Error: ") == 1
        assert error in ours.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["ps", "-o", "yaml"],
        ["ps", "--output="],
        ["ps", "-ojson"],
        ["ps", "-o"],
        ["ps", "-o", "json", "-o", "text"],
        ["ps", "--help"],
        ["ps", "stop", "--all"],
        ["ps", "logs", "1"],
        ["--profile", "x", "ps"],
        ["--version"],
        ["-h", "ps"],
        ["get", "--help"],
    ],
)
def test_other_command_lines_are_left_to_click(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_fast(args) is None
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("args", [[], ["--help"], ["ps"], ["ps", "-o", "json"]])
def test_fast_path_imports_neither_click_nor_logging(args: list[str], config_home: Path) -> None:
    exited_listener_records(config_home)
    code = (
        "import sys\n"
        "from kongctl.cli.main import run\n"
        f"status = run({args!r})\n"
        f"slow = [name for name in {SLOW_MODULES!r} if name in sys.modules]\n"
        "print('slow modules:', slow, file=sys.stderr)\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )

    assert "slow modules: []" in done.stderr


def with_stdout_closed(command: list[str]) -> tuple[int, bytes]:
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(command, stdout=writer, stderr=subprocess.PIPE, timeout=30)
    finally:
        os.close(writer)
    return done.returncode, done.stderr


@pytest.mark.parametrize("args", [["--help"], ["ps"], ["ps", "-o", "json"]])
def test_a_reader_that_went_away_is_no_error(args: list[str]) -> None:
    assert with_stdout_closed([KONGCTL, *args]) == (0, b"")
    assert with_stdout_closed([sys.executable, "-c", CLICK_CLI, *args]) == (0, b"")
