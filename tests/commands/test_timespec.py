"""Times and durations on the command line: RFC 3339, "now", and spans meaning "ago"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kongctl.cli.timespec import (
    TimeSpecError,
    format_duration,
    format_time,
    is_relative,
    parse_duration,
    parse_time,
)
from kongctl.errors import UsageError

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("36h", timedelta(hours=36)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        (" 10M ", timedelta(minutes=10)),
        ("0s", timedelta(0)),
    ],
)
def test_duration_is_a_number_and_a_unit(text, span):
    assert parse_duration(text) == span


@pytest.mark.parametrize("text", ["", "h", "10", "-5m", "5 m", "5y", "1h-30m", "1e3s", "P1D"])
def test_malformed_duration_names_the_flag_and_the_forms(text):
    with pytest.raises(TimeSpecError, match=r'invalid --timeout ".*": use a number and a unit'):
        parse_duration(text, flag="--timeout")


def test_absurdly_long_duration_is_refused():
    with pytest.raises(TimeSpecError, match="is too long"):
        parse_duration("99999999999w")


def test_timespec_errors_are_usage_errors():
    assert issubclass(TimeSpecError, UsageError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("36h", NOW - timedelta(hours=36)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01t10:00:00z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01 10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01T12:00:00+02:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01T10:00:00.52Z", datetime(2026, 12, 1, 10, 0, 0, 520000, tzinfo=UTC)),
    ],
)
def test_time_is_rfc3339_now_or_a_duration_ago(text, expected):
    parsed = parse_time(text, now=NOW)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["2026-12-01T10:00:00", "2026-12-01", "2026-12-01T10:00"])
def test_time_without_zone_asks_for_one(text):
    with pytest.raises(TimeSpecError, match="needs a time of day and a time zone"):
        parse_time(text, flag="--since", now=NOW)


@pytest.mark.parametrize("text", ["yesterday", "", "10", "2026-13-01T10:00:00Z", "-2h"])
def test_unreadable_time_names_the_flag(text):
    with pytest.raises(TimeSpecError, match=r'invalid --start-at "'):
        parse_time(text, flag="--start-at", now=NOW)


def test_format_time_is_utc_with_z_and_fractions_only_when_present():
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 1, 2, 5, 4, 5, 250000, tzinfo=plus_two)) == (
        "2026-01-02T03:04:05.25Z"
    )


def test_relative_means_now_or_a_duration():
    assert is_relative("now") and is_relative("36h")
    assert not is_relative("2026-12-01T10:00:00Z")


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(9999, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)), timezone(timedelta(0))]),
    )
)
def test_formatted_time_reads_back_as_the_same_moment(moment):
    assert parse_time(format_time(moment)) == moment


@given(st.integers(min_value=1, max_value=60 * 60 * 24 * 365 * 10))
def test_formatted_duration_reads_back_as_the_same_span(seconds):
    span = timedelta(seconds=seconds)
    assert parse_duration(format_duration(span)) == span
