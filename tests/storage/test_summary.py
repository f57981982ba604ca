"""The summary: what a record's name, principal and outcome are, and the per-hour chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kongctl.auditlogs.summary import MAX_CHART_ROWS, Summary, describe
from kongctl.emulator.records import EventFactory, LogFormat, render

AT = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)


def expected_outcome(fields: dict[str, object]) -> str:
    if "granted" in fields:
        return "granted" if fields["granted"] is True else "denied"
    if "success" in fields:
        return "success" if fields["success"] == "true" else "failure"
    return f"status {fields['status']}"


@pytest.mark.parametrize("log_format", ["json", "cps", "cef"])
def test_every_emulator_event_is_described_alike_in_each_format(log_format: LogFormat) -> None:
    factory = EventFactory(seed=5)
    for _ in range(200):
        event = factory.next_event(AT)
        fields = dict(event.extensions)
        assert describe(render(event, log_format).encode()) == (
            event.name,
            fields["principal_id"],
            expected_outcome(fields),
        )


@pytest.mark.parametrize(
    "record",
    [b"plain text", b"[1, 2]", b'{"broken": ', b"CEF:0|only|three"],
)
def test_records_that_say_nothing_count_as_dashes(record: bytes) -> None:
    assert describe(record) == ("-", "-", "-")


def test_escaped_pipes_in_a_cef_header_are_part_of_the_name() -> None:
    record = rb"2026-12-03T15:30:00Z h CEF:0|KongInc|Konnect|1.0|konnect|Authz.a\|b|1|granted=true"
    assert describe(record) == ("Authz.a|b", "-", "granted")


def test_the_chart_has_a_row_per_hour_including_quiet_ones() -> None:
    summary = Summary()
    for hours, count in ((0, 4), (1, 0), (2, 2)):
        at = (AT + timedelta(hours=hours)).timestamp()
        for _ in range(count):
            summary.add(b'{"name":"x"}', at)
    chart = summary.render_text().split("RECORDS PER HOUR (UTC)\n")[1].splitlines()
    assert [row[:16] for row in chart] == [
        "2026-12-03 15:00",
        "2026-12-03 16:00",
        "2026-12-03 17:00",
    ]
    full, empty, half = (row[18:].rstrip(" 0123456789") for row in chart)
    assert empty == ""
    assert half == "█" * (len(full) // 2) + ("▌" if len(full) % 2 else "")
    assert set(full) == {"█"}


def test_a_long_window_is_charted_in_wider_buckets_within_80_columns() -> None:
    summary = Summary()
    for hour in range(0, 24 * 14, 5):
        summary.add(b'{"name":"x"}', (AT + timedelta(hours=hour)).timestamp())
    text = summary.render_text()
    chart = text.split("(UTC)\n")[1].splitlines()
    assert "RECORDS PER 12 HOURS (UTC)" in text
    assert len(chart) <= MAX_CHART_ROWS
    assert all(len(line) <= 80 for line in text.splitlines())
    assert sum(int(row.split()[-1]) for row in chart) == summary.records


def test_a_small_count_still_shows_a_sliver() -> None:
    summary = Summary()
    for _ in range(10000):
        summary.add(b"{}", AT.timestamp())
    summary.add(b"{}", (AT + timedelta(hours=1)).timestamp())
    last_row = summary.render_text().splitlines()[-1]
    assert "▏" in last_row


def test_untimed_records_are_counted_but_not_charted() -> None:
    summary = Summary()
    summary.add(b'{"name":"x"}', None)
    document = summary.to_document()
    assert document["records"] == 1
    assert document["without_time"] == 1
    assert document["per_hour"] == []
    assert "(1 without a time)" in summary.render_text()
