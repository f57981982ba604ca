"""kongctl get audit-logs events: every filter and output, run in-process on a store on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kongctl.cli.root import run
from tests.storage.conftest import (
    cef_record,
    hours_ago,
    json_record,
    write_current,
    write_rotated,
)

BIG = 6891110586028963295


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    def lines(self) -> list[str]:
        return self.out.splitlines()

    def indexes(self) -> list[int]:
        return [_index(line) for line in self.lines()]


def _index(line: str) -> int:
    if line.startswith("{"):
        return int(json.loads(line)["index"])
    return int(line.split("index=")[1].split()[0])


@pytest.fixture
def events(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    def invoke(*args: str) -> Outcome:
        capsys.readouterr()
        code = run(["get", "audit-logs", "events", *args])
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def store(config_home: Path) -> Path:
    """Ten records an hour apart (index 0 is 10 hours old), over two .gz, a plain file, current.

    Index 4 is a CEF line; one record without any time sits between index 6 and 7.
    """
    directory = config_home / "audit-logs" / "default"
    at = [hours_ago(10 - index) + timedelta(minutes=1) for index in range(10)]
    write_rotated(directory, at[2], [json_record(at[i], i, trace_id=BIG) for i in range(3)])
    write_rotated(
        directory, at[5], [json_record(at[3], 3), cef_record(at[4], 4), json_record(at[5], 5)]
    )
    write_rotated(
        directory,
        at[6] + timedelta(seconds=1),
        [json_record(at[6], 6), b"untimed index=99"],
        suffix=".jsonl",
    )
    write_current(directory, [json_record(at[i], i) for i in range(7, 10)])
    return directory


def test_text_prints_every_record_raw_oldest_file_first(store: Path, events) -> None:
    shown = events()
    assert shown.code == 0, shown.err
    assert shown.indexes() == [0, 1, 2, 3, 4, 5, 6, 99, 7, 8, 9]
    assert str(BIG) in shown.lines()[0]
    assert shown.err == ""


def test_lines_keeps_the_last_n(store: Path, events) -> None:
    assert events("-n", "4").indexes() == [99, 7, 8, 9]
    assert events("-n", "0").out == ""
    assert events("-n", "100").indexes() == [0, 1, 2, 3, 4, 5, 6, 99, 7, 8, 9]


def test_since_and_until_select_by_record_time(store: Path, events) -> None:
    recent = events("--since", "3h")
    assert recent.indexes() == [7, 8, 9]
    older = events("--until", "5h")
    assert older.indexes() == [0, 1, 2, 3, 4]
    window = events("--since", "8h", "--until", "5h")
    assert window.indexes() == [2, 3, 4]
    assert events("--since", "8h", "--until", "5h", "-n", "2").indexes() == [3, 4]


def test_a_time_filter_skips_records_without_a_time_with_one_warning(store: Path, events) -> None:
    shown = events("--since", "3h")
    assert shown.err.count("warning:") == 1
    assert "skipped 1 records without a time" in shown.err


def test_since_accepts_an_rfc3339_time(store: Path, events) -> None:
    since = (hours_ago(3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert events("--since", since).indexes() == [7, 8, 9]


def test_jq_prints_its_outputs_and_n_keeps_the_last_outputs(store: Path, events) -> None:
    shown = events("--jq", "select(.index >= 5) | .index")
    assert shown.lines() == ["5", "6", "7", "8", "9"]
    assert shown.err.count("not JSON") == 2  # the CEF record and the record without time
    assert events("--jq", "select(.index >= 5) | .index", "-n", "2").lines() == ["8", "9"]
    assert events("--jq", ".trace_id", "-n", "99", "--until", "8h").lines() == [str(BIG)] * 2


def test_json_output_is_an_array_of_records_with_exact_numbers(store: Path, events) -> None:
    shown = events("-o", "json")
    records = json.loads(shown.out)
    assert len(records) == 11
    assert records[0]["trace_id"] == BIG
    assert records[4].startswith(hours_ago(0).strftime("%Y")) and "CEF:0" in records[4]
    assert records[7] == "untimed index=99"
    assert json.loads(events("-o", "json", "--since", "3h").out) == records[8:]


def test_json_output_of_jq_outputs_is_an_array_of_them(store: Path, events) -> None:
    shown = events("-o", "json", "--jq", "{i: .index, t: .trace_id}", "--until", "8h")
    assert json.loads(shown.out) == [{"i": 0, "t": BIG}, {"i": 1, "t": BIG}]


def test_yaml_output_is_a_list_of_records(store: Path, events) -> None:
    records = yaml.safe_load(events("-o", "yaml").out)
    assert records == json.loads(events("-o", "json").out)
    assert records[0]["trace_id"] == BIG
    assert yaml.safe_load(events("-o", "yaml", "-n", "1").out) == [records[-1]]


def test_empty_selections_are_empty_documents(store: Path, events) -> None:
    assert events("--since", "1m").out == ""
    assert events("--since", "1m", "-o", "json").out == "[]\n"
    assert yaml.safe_load(events("--since", "1m", "-o", "yaml").out) == []


def test_without_a_store_it_says_so_and_succeeds(events, config_home: Path) -> None:
    shown = events()
    assert shown.code == 0
    assert shown.out == ""
    assert 'No events stored for profile "default" yet' in shown.err
    assert str(config_home / "audit-logs" / "default") in shown.err
    assert json.loads(events("-o", "json").out) == []
    assert json.loads(events("--summary", "-o", "json").out)["records"] == 0


def test_the_profile_picks_its_own_store(store: Path, events, config_home: Path) -> None:
    write_current(config_home / "audit-logs" / "staging", [json_record(hours_ago(1), 500)])
    assert events("-p", "staging").indexes() == [500]
    assert events("--profile", "staging", "-n", "1").indexes() == [500]


def test_summary_counts_by_name_principal_and_outcome(config_home: Path, events) -> None:
    directory = config_home / "audit-logs" / "default"
    at = hours_ago(2)
    records = [
        json_record(at, 0, name="Authz.portals", granted=True, principal_id="alice"),
        json_record(at, 1, name="Authz.portals", granted=False, principal_id="alice"),
        json_record(at, 2, name="Ingress", status=201, principal_id="bob"),
        cef_record(at + timedelta(hours=1), 3, name="Authz.teams"),
    ]
    write_rotated(directory, at, records[:2])
    write_current(directory, records[2:])

    document = json.loads(events("--summary", "-o", "json").out)
    assert document["records"] == 4
    assert document["by_name"] == {"Authz.portals": 2, "Ingress": 1, "Authz.teams": 1}
    assert document["by_principal"] == {"alice": 2, "bob": 1, "p-cef": 1}
    assert document["by_outcome"] == {"granted": 1, "denied": 2, "status 201": 1}
    assert [hour["records"] for hour in document["per_hour"]] == [3, 1]
    assert yaml.safe_load(events("--summary", "-o", "yaml").out) == document

    text = events("--summary").out
    assert text.startswith("4 records, ")
    assert "Authz.portals" in text and "status 201" in text
    chart = text.split("RECORDS PER HOUR (UTC)\n")[1].splitlines()
    assert [line.split()[-1] for line in chart] == ["3", "1"]
    assert all(len(line) <= 80 for line in text.splitlines())


def test_summary_follows_the_time_window_and_n(store: Path, events) -> None:
    assert json.loads(events("--summary", "-o", "json", "--since", "3h").out)["records"] == 3
    assert json.loads(events("--summary", "-o", "json", "-n", "5").out)["records"] == 5
    everything = json.loads(events("--summary", "-o", "json").out)
    assert everything["records"] == 11
    assert everything["without_time"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "1h", "--until", "2h"], "--since must be before --until"),
        (["--since", "yesterday"], 'invalid --since "yesterday"'),
        (["--until", "2026-12-01"], "needs a time of day"),
        (["--summary", "--jq", "."], "cannot be combined with --jq"),
        (["--jq", ".["], "invalid --jq expression"),
        (["-n", "-1"], "-1"),
    ],
)
def test_bad_flags_are_usage_errors(events, args: list[str], message: str) -> None:
    shown = events(*args)
    assert shown.code == 2
    assert message in shown.err
    assert "Traceback" not in shown.err


def test_events_is_reachable_through_every_spelling(store: Path, capsys: Any) -> None:
    for words in (["get", "al", "events"], ["get", "konnect", "audit-log", "events"]):
        capsys.readouterr()
        assert run([*words, "-n", "1"]) == 0
        assert _index(capsys.readouterr().out) == 9


def test_a_reader_that_stops_early_ends_the_command_quietly(config_home: Path) -> None:
    write_current(
        config_home / "audit-logs" / "default",
        [json_record(hours_ago(1), index, pad="z" * 200) for index in range(5000)],
    )
    with subprocess.Popen(
        [sys.executable, "-m", "kongctl", "get", "audit-logs", "events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        assert _index(child.stdout.readline().decode()) == 0
        child.stdout.close()
        err = child.stderr.read().decode()
        assert child.wait(timeout=30) == 0, err
    assert err == ""
