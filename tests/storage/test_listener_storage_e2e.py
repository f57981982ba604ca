"""A real listener with rotation and tail -n: records stored, rotated, printed exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kongctl.auditlogs.rotation import list_rotated
from kongctl.cli.root import run
from tests.listen.conftest import wait_for
from tests.storage.conftest import hours_ago, json_record, write_current, write_rotated


def stored_lines(listener, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    wait_for(lambda: len(listener.stdout.splitlines()) >= count, timeout=10)
    return listener.stdout.splitlines()


def test_tail_n_prints_the_last_stored_records_before_new_ones(
    konnect, start_listener, config_home: Path
) -> None:
    store = config_home / "audit-logs" / "default"
    old = [json_record(hours_ago(3), index) for index in range(6)]
    write_rotated(store, hours_ago(3), old[:4])
    write_current(store, old[4:])

    listener = start_listener("-n", "3", verb="tail")
    listener.wait_ready()
    assert stored_lines(listener, 3) == [record.decode() for record in old[3:]]
    delivered = konnect.deliver(2)
    assert delivered["status"] == 202
    stored_lines(listener, 5)
    assert listener.stop() == 0
    assert listener.stdout.splitlines() == [r.decode() for r in old[3:]] + delivered["records"]


def test_listen_tail_n_with_jq_filters_the_stored_records_too(
    konnect, start_listener, config_home: Path
) -> None:
    write_current(
        config_home / "audit-logs" / "default", [json_record(hours_ago(1), i) for i in range(4)]
    )
    listener = start_listener("--tail", "-n", "2", "--jq", ".index // .name")
    listener.wait_ready()
    assert stored_lines(listener, 2) == ["2", "3"]
    delivered = konnect.deliver(1)
    stored_lines(listener, 3)
    assert listener.stop() == 0
    assert listener.stdout.splitlines()[2] == json.dumps(
        json.loads(delivered["records"][0])["name"]
    )


def test_a_rotating_listener_keeps_every_delivered_record_readable(
    konnect, start_listener, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = start_listener("--rotate-size", "1KiB")
    listener.wait_ready()
    delivered = []
    for _ in range(4):
        answer = konnect.deliver(5)
        assert answer["status"] == 202
        delivered += answer["records"]
    assert listener.stop() == 0

    rotated = list_rotated(listener.store)
    assert len(rotated) >= 3
    assert all(rotated_file.compressed for rotated_file in rotated)
    capsys.readouterr()
    assert run(["get", "audit-logs", "events", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [json.loads(line) for line in delivered]


def test_retain_files_bounds_what_a_listener_keeps(konnect, start_listener) -> None:
    listener = start_listener("--rotate-size", "1KiB", "--retain-files", "1")
    listener.wait_ready()
    for _ in range(4):
        assert konnect.deliver(5)["status"] == 202
    assert listener.stop() == 0
    assert len(list_rotated(listener.store)) == 1


def test_a_second_listener_of_the_same_profile_stops_before_touching_konnect(
    konnect, start_listener
) -> None:
    first = start_listener("--configure-webhook=false")
    first.wait_ready()
    second = start_listener("--configure-webhook=false")
    assert second.process.wait(timeout=20) == 1
    assert "in use by another listener" in second.stderr
    assert len(konnect.state()["destinations"]) == 1
    assert first.stop() == 0
