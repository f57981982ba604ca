"""The listener's storage flags: rotation, retention, -n; from flags, environment or config."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import pytest

from kongctl.auditlogs.rotation import DEFAULT_ROTATE_SIZE, RotationPolicy
from kongctl.cli.listen import rotation_policy
from kongctl.cli.root import run
from kongctl.config import load_settings
from kongctl.errors import UsageError

NO_FLAGS = {"rotate_size": None, "retention": None, "retain_files": None}


def settings(config_home: Path, yaml_text: str = "", **environ: str):  # type: ignore[no-untyped-def]
    config_home.mkdir(parents=True, exist_ok=True)
    (config_home / "config.yaml").write_text(yaml_text)
    return load_settings("default", directory=config_home, environ=environ)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listen(*args: str) -> list[str]:
    url = f"http://127.0.0.1:{closed_port()}"
    return [
        "listen",
        "--authorization",
        "Bearer s",
        "--endpoint",
        "https://example.com/audit-logs",
        "--base-url",
        url,
        "--pat",
        "kpat_test",
        *args,
    ]


def test_defaults_rotate_at_64_mib_and_keep_everything(config_home: Path) -> None:
    assert rotation_policy(NO_FLAGS, settings(config_home)) == RotationPolicy(
        DEFAULT_ROTATE_SIZE, None, None
    )
    assert DEFAULT_ROTATE_SIZE == 64 * 1024 * 1024


def test_profile_keys_set_rotation_and_retention(config_home: Path) -> None:
    config = (
        "default:\n  audit-logs:\n    rotate-size: 1MiB\n    retention: 36h\n    retain-files: 3\n"
    )
    assert rotation_policy(NO_FLAGS, settings(config_home, config)) == RotationPolicy(
        1 << 20, timedelta(hours=36), 3
    )


def test_environment_beats_the_file_and_flags_beat_both(config_home: Path) -> None:
    config = "default:\n  audit-logs:\n    rotate-size: 1MiB\n    retain-files: 3\n"
    env = {"KONGCTL_DEFAULT_AUDIT_LOGS_ROTATE_SIZE": "2MiB"}
    from_env = rotation_policy(NO_FLAGS, settings(config_home, config, **env))
    assert (from_env.rotate_size, from_env.retain_files) == (2 << 20, 3)
    flags = {**NO_FLAGS, "rotate_size": "4KiB", "retention": "7d"}
    from_flags = rotation_policy(flags, settings(config_home, config, **env))
    assert from_flags == RotationPolicy(4096, timedelta(days=7), 3)


@pytest.mark.parametrize(
    ("config", "environ", "message"),
    [
        ("default:\n  audit-logs:\n    rotate-size: big\n", {}, "audit-logs.rotate-size in the"),
        ("", {"KONGCTL_DEFAULT_AUDIT_LOGS_RETENTION": "forever"}, "KONGCTL_DEFAULT_AUDIT_LOGS"),
        ("default:\n  audit-logs:\n    retain-files: many\n", {}, "audit-logs.retain-files in"),
    ],
)
def test_a_bad_configured_value_names_where_it_came_from(
    config_home: Path, config: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        rotation_policy(NO_FLAGS, settings(config_home, config, **environ))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rotate-size", "lots"], 'invalid --rotate-size "lots"'),
        (["--rotate-size", "0"], "--rotate-size must be greater than 0"),
        (["--retention", "soon"], 'invalid --retention "soon"'),
        (["--retention", "0h"], "--retention must be longer than 0"),
        (["--retain-files", "-2"], 'invalid --retain-files "-2"'),
        (["-n", "5"], "-n/--lines requires --tail"),
        (["--tail", "-n", "-5"], "-5"),
    ],
)
def test_bad_storage_flags_are_usage_errors_before_konnect_is_called(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run(listen(*args)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
