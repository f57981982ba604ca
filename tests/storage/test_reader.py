"""Reading the store back: record times from raw bytes, file order, snapshots, the last N."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kongctl.auditlogs.reader import (
    TimeWindow,
    has_records,
    iter_stored,
    last_stored_records,
    record_time,
)
from kongctl.auditlogs.rotation import RotationPolicy
from kongctl.auditlogs.store import EventStore
from kongctl.emulator.records import EventFactory, render
from tests.storage.conftest import hours_ago, json_record, write_current, write_rotated

AT = datetime(2026, 12, 3, 15, 30, 5, tzinfo=UTC)


@pytest.mark.parametrize("log_format", ["json", "cps", "cef"])
def test_the_time_of_every_emulator_format_is_found(log_format: str) -> None:
    event = EventFactory(seed=1).next_event(AT)
    assert record_time(render(event, log_format).encode()) == AT.timestamp()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (b'{"event_ts":"2026-12-03T15:30:05.250Z","name":"x"}', AT.timestamp() + 0.25),
        (b'{"name":"x", "event_ts" : "2026-12-03T17:30:05+02:00"}', AT.timestamp()),
        (b'{"event_ts":"2026-12-03T15:30:05"}', AT.timestamp()),  # no zone: UTC
        (b'{"name":"x","rt":"1796311805000"}', AT.timestamp()),
        (b'{"name":"x","rt":1796311805000}', AT.timestamp()),
        (
            b"CEF:0|KongInc|Konnect|1.0|konnect|Authz.teams|1|rt=1796311805000 src=1.2.3.4",
            1796311805.0,
        ),
        (b"2026-12-03T15:30:05Z konghq.com CEF:0|KongInc|Konnect|1.0|k|n|1|src=x", AT.timestamp()),
    ],
)
def test_record_times_come_from_event_ts_rt_or_the_cef_header(
    record: bytes, expected: float
) -> None:
    assert record_time(record) == pytest.approx(expected)


@pytest.mark.parametrize(
    "record",
    [
        b'{"name":"no time"}',
        b'{"event_ts":"yesterday"}',
        b'{"query":"{\\"event_ts\\":\\"2026-12-03T15:30:05Z\\"}"}',  # only inside a string
        b"not a record at all",
        b"",
    ],
)
def test_records_without_a_readable_time_have_none(record: bytes) -> None:
    assert record_time(record) is None


def test_files_are_read_oldest_first_whatever_their_state(tmp_path: Path) -> None:
    write_rotated(tmp_path, hours_ago(5), [b"a1", b"a2"])
    write_rotated(tmp_path, hours_ago(5), [b"b1"], sequence=1, suffix=".jsonl")
    write_rotated(tmp_path, hours_ago(3), [b"c1", b"c2"])
    write_rotated(tmp_path, hours_ago(1), [b"d1"], suffix=".jsonl")
    (tmp_path / "events-20261203T153000Z.jsonl.gz.tmp").write_bytes(b"partial garbage")
    (tmp_path / "events.jsonl").write_bytes(b"e1\ne2\nstill being writ")
    assert list(iter_stored(tmp_path)) == [b"a1", b"a2", b"b1", b"c1", b"c2", b"d1", b"e1", b"e2"]


def test_a_record_longer_than_a_read_chunk_stays_whole(tmp_path: Path) -> None:
    long = b"x" * (3 << 20)
    write_rotated(tmp_path, hours_ago(1), [b"short", long, b"after"])
    write_current(tmp_path, [long])
    assert list(iter_stored(tmp_path)) == [b"short", long, b"after", long]


def test_rotated_files_from_before_since_are_not_opened(tmp_path: Path) -> None:
    old = write_rotated(tmp_path, hours_ago(30), [b"old"])
    write_rotated(tmp_path, hours_ago(10), [b"recent"])
    write_current(tmp_path, [b"current"])
    old.write_bytes(b"not gzip: reading it would fail")
    assert list(iter_stored(tmp_path, since=hours_ago(20))) == [b"recent", b"current"]


def test_a_damaged_rotated_file_is_read_up_to_the_damage_with_a_warning(tmp_path: Path) -> None:
    damaged = write_rotated(tmp_path, hours_ago(3), [b"r%d" % i for i in range(1000)])
    damaged.write_bytes(damaged.read_bytes()[:-30])
    write_rotated(tmp_path, hours_ago(2), [b"next"])
    warnings: list[str] = []
    records = list(iter_stored(tmp_path, warn=warnings.append))
    assert records[-1] == b"next"
    assert records[:-1] == [b"r%d" % i for i in range(len(records) - 1)]
    assert len(warnings) == 1 and damaged.name in warnings[0]


def test_no_store_has_no_records(tmp_path: Path) -> None:
    assert not has_records(tmp_path / "missing")
    assert list(iter_stored(tmp_path / "missing")) == []
    assert last_stored_records(tmp_path / "missing", 5) == []


def test_the_last_records_reach_back_into_rotated_files(tmp_path: Path) -> None:
    write_rotated(tmp_path, hours_ago(3), [b"a1", b"a2", b"a3"])
    write_rotated(tmp_path, hours_ago(2), [b"b1"], suffix=".jsonl")
    write_current(tmp_path, [b"c1", b"c2"])
    assert last_stored_records(tmp_path, 2) == [b"c1", b"c2"]
    assert last_stored_records(tmp_path, 4) == [b"a3", b"b1", b"c1", b"c2"]
    assert last_stored_records(tmp_path, 50) == [b"a1", b"a2", b"a3", b"b1", b"c1", b"c2"]
    assert last_stored_records(tmp_path, 0) == []


def test_the_time_window_includes_since_and_excludes_until() -> None:
    records = [json_record(AT + timedelta(minutes=m), m) for m in range(5)] + [b"untimed"]
    window = TimeWindow(AT + timedelta(minutes=1), AT + timedelta(minutes=3))
    assert list(window.select(records)) == records[1:3]
    assert window.untimed == 1
    everything = TimeWindow()
    assert list(everything.select(records)) == records
    assert everything.untimed == 0


async def test_reads_during_rotations_see_a_prefix_without_gaps_or_repeats(
    tmp_path: Path,
) -> None:
    store = EventStore(tmp_path, rotation=RotationPolicy(rotate_size=1500))
    store.open()
    expected = [json_record(AT, index, pad="y" * 60) for index in range(600)]

    async def append_all() -> None:
        for start in range(0, len(expected), 3):
            await store.append(expected[start : start + 3])

    appending = asyncio.create_task(append_all())
    seen = []
    while not appending.done():
        records = await asyncio.to_thread(lambda: list(iter_stored(tmp_path)))
        newest = await asyncio.to_thread(last_stored_records, tmp_path, 25)
        assert records == expected[: len(records)]
        # Appends go on between the two reads: the newest records are a later, unbroken run.
        start = expected.index(newest[0]) if newest else 0
        assert newest == expected[start : start + len(newest)]
        assert start + len(newest) >= len(records)
        assert len(newest) == min(25, start + len(newest))
        seen.append(len(records))
    await appending
    assert await asyncio.to_thread(store.wait_for_housekeeping, 10)
    await store.close()
    assert store.rotations > 10
    assert len(set(seen)) > 1  # the reads really overlapped the appends
    assert list(iter_stored(tmp_path)) == expected


def test_gzip_members_appended_by_hand_are_read_too(tmp_path: Path) -> None:
    # A rotated file concatenated from several gzip members is still one valid gzip file.
    path = write_rotated(tmp_path, hours_ago(1), [b"one"])
    path.write_bytes(path.read_bytes() + gzip.compress(b"two\n"))
    assert list(iter_stored(tmp_path)) == [b"one", b"two"]
