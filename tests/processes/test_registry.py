"""Process records on disk: redaction, atomic private writes, tolerant loading."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kongctl.processes import registry
from kongctl.processes.registry import (
    REDACTED,
    ProcessRecord,
    load_records,
    records_dir,
    redact_args,
    remove_record,
    write_record,
)


def a_record(pid: int = 4242, **fields: object) -> ProcessRecord:
    record = ProcessRecord(
        pid=pid,
        profile="default",
        created_at="2025-01-02T03:04:05Z",
        log_file=f"/tmp/kongctl-listener-{pid}.log",
        args=["kongctl", "listen"],
        start_time_ticks=123456,
        listen_address="127.0.0.1:19090",
        endpoint="https://example.test/audit-logs",
        kongctl_version="0.1.0",
    )
    for name, value in fields.items():
        setattr(record, name, value)
    return record


@pytest.mark.parametrize(
    "flag", ["--authorization", "--pat", "--token", "--konnect-token", "--api-key", "--password"]
)
def test_secret_flag_values_are_redacted_in_both_forms(flag: str) -> None:
    argv = ["kongctl", "listen", flag, "s3cret", f"{flag}=s3cret-too", "--endpoint", "https://e/x"]

    assert redact_args(argv) == [
        "kongctl",
        "listen",
        flag,
        REDACTED,
        f"{flag}={REDACTED}",
        "--endpoint",
        "https://e/x",
    ]


def test_flags_that_merely_contain_a_secret_word_stay_readable() -> None:
    argv = ["--path", "/audit-logs", "--keep-files", "3", "--public-url", "https://e"]

    assert redact_args(argv) == argv


def test_a_bare_konnect_token_is_redacted_wherever_it_appears() -> None:
    assert redact_args(["kongctl", "kpat_abc123", "spat_xyz"]) == ["kongctl", REDACTED, REDACTED]


def test_a_secret_flag_followed_by_another_flag_redacts_nothing_else() -> None:
    assert redact_args(["--token", "--endpoint", "https://e"]) == [
        "--token",
        "--endpoint",
        "https://e",
    ]


@given(secret=st.text(min_size=1).filter(lambda s: not s.startswith("--")))
def test_no_secret_value_survives_redaction(secret: str) -> None:
    redacted = redact_args(["listen", "--authorization", secret, f"--pat={secret}"])

    assert redacted == ["listen", "--authorization", REDACTED, f"--pat={REDACTED}"]


def test_record_is_written_privately(config_dir: Path) -> None:
    path = write_record(config_dir, a_record())

    assert path == records_dir(config_dir) / "4242.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["pid"] == 4242


def test_record_file_uses_the_shared_field_names(config_dir: Path) -> None:
    data = json.loads(write_record(config_dir, a_record()).read_text())

    assert data == {
        "pid": 4242,
        "kind": "konnect.audit-logs.listen",
        "profile": "default",
        "created_at": "2025-01-02T03:04:05Z",
        "log_file": "/tmp/kongctl-listener-4242.log",
        "args": ["kongctl", "listen"],
        "start_time_ticks": 123456,
        "listen_address": "127.0.0.1:19090",
        "endpoint": "https://example.test/audit-logs",
        "kongctl_version": "0.1.0",
    }


def test_failed_rewrite_leaves_the_old_record_and_no_temporary_file(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_record(config_dir, a_record(profile="first"))

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(registry.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_record(config_dir, a_record(profile="second"))

    assert json.loads(path.read_text())["profile"] == "first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["4242.json"]


def test_fields_unknown_to_this_version_survive_a_rewrite(config_dir: Path) -> None:
    path = records_dir(config_dir) / "77.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 77, "kind": "konnect.audit-logs.listen", "future": [1]}))

    (_, record), *_ = load_records(config_dir)[0]
    write_record(config_dir, record)

    assert json.loads(path.read_text())["future"] == [1]


def test_unreadable_records_are_reported_next_to_the_good_ones(config_dir: Path) -> None:
    write_record(config_dir, a_record(pid=10))
    directory = records_dir(config_dir)
    (directory / "11.json").write_text("{not json")
    (directory / "12.json").write_text(json.dumps({"pid": "twelve"}))
    (directory / "13.json").write_text(json.dumps({"pid": 14}))
    (directory / "15.json").write_text("[]")
    (directory / "16.json").write_bytes(b"\xff\xfe")

    good, bad = load_records(config_dir)

    assert [record.pid for _, record in good] == [10]
    reasons = {path.name: reason for path, reason in bad}
    assert set(reasons) == {"11.json", "12.json", "13.json", "15.json", "16.json"}
    assert "invalid JSON" in reasons["11.json"]
    assert "pid" in reasons["12.json"]
    assert "does not match" in reasons["13.json"]
    assert "not a JSON object" in reasons["15.json"]
    assert "UTF-8" in reasons["16.json"]


def test_loading_without_a_records_directory_finds_nothing(config_dir: Path) -> None:
    assert load_records(config_dir) == ([], [])


def test_removing_a_record_twice_is_harmless(config_dir: Path) -> None:
    write_record(config_dir, a_record())

    assert remove_record(config_dir, 4242) is True
    assert remove_record(config_dir, 4242) is False


def test_record_directory_is_made_private_even_if_it_existed(config_dir: Path) -> None:
    records_dir(config_dir).mkdir(parents=True, mode=0o755)
    os.chmod(records_dir(config_dir), 0o755)

    write_record(config_dir, a_record())

    assert stat.S_IMODE(records_dir(config_dir).stat().st_mode) == 0o700
