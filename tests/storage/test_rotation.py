"""Rotation of the record file: exact record accounting, unique names, crash recovery, retention."""

from __future__ import annotations

import asyncio
import errno
import gzip
import itertools
import json
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kongctl.auditlogs import rotation
from kongctl.auditlogs.reader import iter_stored
from kongctl.auditlogs.rotation import (
    RotationPolicy,
    list_rotated,
    next_rotated_path,
)
from kongctl.auditlogs.store import EventStore, StoreError
from tests.storage.conftest import (
    hours_ago,
    json_record,
    stored_files,
    write_current,
    write_rotated,
)


def tagged(appender: int, batch: int, size: int) -> list[bytes]:
    return [
        json.dumps({"appender": appender, "batch": batch, "i": i, "pad": "x" * 40}).encode()
        for i in range(size)
    ]


def read_every_file(directory: Path) -> list[bytes]:
    """Every record on disk, read without the store's reader: rotated files by name, then current.

    Each file must end with a newline: a record split across two files would not.
    """
    records: list[bytes] = []
    for rotated_file in list_rotated(directory):
        raw = rotated_file.path.read_bytes()
        data = gzip.decompress(raw) if rotated_file.compressed else raw
        assert data.endswith(b"\n"), rotated_file.path
        records += data.split(b"\n")[:-1]
    current = (directory / "events.jsonl").read_bytes()
    assert current == b"" or current.endswith(b"\n")
    return records + current.split(b"\n")[:-1]


@pytest.fixture(autouse=True)
def short_quiet_period(monkeypatch: pytest.MonkeyPatch) -> None:
    # Compression waits for a pause in the appends; a short one keeps these tests quick.
    monkeypatch.setattr(rotation, "QUIET_PERIOD", 0.05)


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[Callable[..., EventStore]]:
    opened: list[EventStore] = []

    def open_with(**policy: object) -> EventStore:
        store = EventStore(tmp_path / "store", rotation=RotationPolicy(**policy))  # type: ignore[arg-type]
        store.open()
        opened.append(store)
        return store

    yield open_with
    for store in opened:
        await store.close()


async def test_concurrent_appends_across_rotations_keep_every_record_exactly_once(
    open_store: Callable[..., EventStore],
) -> None:
    store = open_store(rotate_size=4096)

    async def appender(number: int) -> None:
        for batch in range(30):
            await store.append(tagged(number, batch, 1 + batch % 4))

    await asyncio.gather(*(appender(number) for number in range(16)))
    assert await asyncio.to_thread(store.wait_for_housekeeping, 20)

    stored = read_every_file(store.directory)
    expected = [r for n in range(16) for b in range(30) for r in tagged(n, b, 1 + b % 4)]
    assert Counter(stored) == Counter(expected)
    assert len(stored) == len(expected)
    assert store.rotations >= 10
    names = stored_files(store.directory)
    assert names[-1] == "events.jsonl"
    assert all(re.fullmatch(r"events-\d{8}T\d{6}Z(-\d+)?\.jsonl\.gz", n) for n in names[:-1])
    # An append's records stay together, and each appender's batches stay in order.
    decoded = [json.loads(line) for line in stored]
    for first, record in itertools.pairwise(decoded):
        if record["i"] > 0:
            assert (record["appender"], record["batch"]) == (first["appender"], first["batch"])
    for number in range(16):
        batches = [r["batch"] for r in decoded if r["appender"] == number and r["i"] == 0]
        assert batches == list(range(30))
    assert list(iter_stored(store.directory)) == stored


async def test_appends_are_acknowledged_while_a_rotated_file_is_compressed(
    open_store: Callable[..., EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    compressing = threading.Event()
    real_compress = rotation.compress

    def slow_compress(plain: Path, **kwargs: object) -> Path:
        compressing.set()
        release.wait(10)
        return real_compress(plain, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rotation, "compress", slow_compress)
    store = open_store(rotate_size=2048)
    await store.append(tagged(0, 0, 40))
    await store.append(tagged(0, 1, 1))  # the first group passed the size: rotated after it
    assert await asyncio.to_thread(compressing.wait, 5)

    async with asyncio.timeout(5):
        for batch in range(2, 50):
            await store.append(tagged(0, batch, 1))
    assert not [f for f in list_rotated(store.directory) if f.compressed]

    release.set()
    assert await asyncio.to_thread(store.wait_for_housekeeping, 10)
    assert list_rotated(store.directory)[0].compressed
    expected = tagged(0, 0, 40) + [r for b in range(1, 50) for r in tagged(0, b, 1)]
    assert read_every_file(store.directory) == expected


async def test_rotation_costs_no_data_sync_beyond_one_per_group(
    open_store: Callable[..., EventStore],
) -> None:
    store = open_store(rotate_size=1024)
    for batch in range(100):
        await store.append(tagged(0, batch, 2))
    assert store.rotations >= 5
    assert store.fsyncs == 100


async def test_a_file_already_past_the_size_is_rotated_at_open(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    write_current(directory, tagged(0, 0, 100))
    store = EventStore(directory, rotation=RotationPolicy(rotate_size=1024))
    store.open()
    try:
        assert store.rotations == 1
        assert (directory / "events.jsonl").stat().st_size == 0
        await store.append(tagged(0, 1, 1))
        assert await asyncio.to_thread(store.wait_for_housekeeping, 10)
    finally:
        await store.close()
    assert read_every_file(directory) == tagged(0, 0, 100) + tagged(0, 1, 1)


def test_two_rotations_in_one_second_get_distinct_names_in_order(tmp_path: Path) -> None:
    at = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)
    first_key, first = next_rotated_path(tmp_path, "events", at, None)
    first.write_bytes(b"a\n")
    second_key, second = next_rotated_path(tmp_path, "events", at, first_key)
    second.write_bytes(b"b\n")
    earlier = at - timedelta(hours=1)  # the clock was set back
    _third_key, third = next_rotated_path(tmp_path, "events", earlier, second_key)
    third.write_bytes(b"c\n")

    assert first.name == "events-20261203T153000Z.jsonl"
    assert second.name == "events-20261203T153000Z-1.jsonl"
    assert third.name == "events-20261203T153000Z-2.jsonl"
    assert [f.path for f in list_rotated(tmp_path)] == [first, second, third]


def test_an_existing_name_is_never_reused(tmp_path: Path) -> None:
    at = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)
    (tmp_path / "events-20261203T153000Z.jsonl.gz").write_bytes(gzip.compress(b"old\n"))
    _key, path = next_rotated_path(tmp_path, "events", at, None)
    assert path.name == "events-20261203T153000Z-1.jsonl"


async def test_a_crash_between_rename_and_compression_is_finished_at_the_next_start(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "store"
    plain = write_rotated(directory, hours_ago(2), tagged(0, 0, 20), suffix=".jsonl")
    write_current(directory, tagged(0, 1, 3))

    store = EventStore(directory, rotation=RotationPolicy())
    store.open()
    assert await asyncio.to_thread(store.wait_for_housekeeping, 10)
    await store.close()

    assert not plain.exists()
    compressed = plain.with_name(plain.name + ".gz")
    assert gzip.decompress(compressed.read_bytes()) == b"".join(r + b"\n" for r in tagged(0, 0, 20))
    assert read_every_file(directory) == tagged(0, 0, 20) + tagged(0, 1, 3)


async def test_a_compression_cut_short_is_redone_at_the_next_start(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    plain = write_rotated(directory, hours_ago(2), tagged(0, 0, 200), suffix=".jsonl")
    partial = plain.with_name(plain.name + ".gz.tmp")
    partial.write_bytes(gzip.compress(plain.read_bytes())[:50])  # a truncated gzip stream
    assert [r for r in iter_stored(directory)] == tagged(0, 0, 200)  # the .tmp is not trusted

    store = EventStore(directory, rotation=RotationPolicy())
    store.open()
    assert await asyncio.to_thread(store.wait_for_housekeeping, 10)
    await store.close()

    assert stored_files(directory) == [plain.name + ".gz", "events.jsonl"]
    assert read_every_file(directory) == tagged(0, 0, 200)


async def test_a_plain_copy_left_beside_its_compressed_file_is_removed(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    at = hours_ago(2)
    plain = write_rotated(directory, at, tagged(0, 0, 5), suffix=".jsonl")
    write_rotated(directory, at, tagged(0, 0, 5))
    assert list(iter_stored(directory)) == tagged(0, 0, 5)  # read once, not twice

    store = EventStore(directory)  # even without rotation configured
    store.open()
    await store.close()
    assert not plain.exists()
    assert read_every_file(directory) == tagged(0, 0, 5)


def test_a_listener_killed_while_rotating_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        from pathlib import Path
        from kongctl.auditlogs.rotation import RotationPolicy
        from kongctl.auditlogs.store import EventStore

        async def main():
            store = EventStore(Path(sys.argv[1]), rotation=RotationPolicy(rotate_size=3000))
            store.open()
            async def appender(number):
                for batch in range(100000):
                    records = [json.dumps([number, batch, i, "x" * 30]).encode() for i in range(3)]
                    await store.append(records)
                    print(number, batch, flush=True)
            await asyncio.gather(*(appender(n) for n in range(4)))

        asyncio.run(main())
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acknowledged = []
    for line in child.stdout:
        acknowledged.append(tuple(map(int, line.split())))
        if len(acknowledged) >= 600:
            break
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=10)
    # The kill can cut the child's last line short: only whole lines count as acknowledged.
    whole_lines = rest.split("\n")[:-1]
    acknowledged += [tuple(map(int, line.split())) for line in whole_lines if line.strip()]

    async def reopen() -> None:
        store = EventStore(directory, rotation=RotationPolicy(rotate_size=3000))
        store.open()
        assert await asyncio.to_thread(store.wait_for_housekeeping, 20)
        await store.close()

    asyncio.run(reopen())
    records = [json.loads(line) for line in read_every_file(directory)]
    counts = Counter((number, batch, i) for number, batch, i, _pad in records)
    assert max(counts.values()) == 1
    for number, batch in acknowledged:
        assert all(counts[(number, batch, i)] == 1 for i in range(3)), (number, batch)
    assert not [n for n in stored_files(directory) if n.endswith((".tmp", "Z.jsonl"))]


async def test_retention_by_count_keeps_the_newest_rotated_files(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    rotated = [
        write_rotated(directory, hours_ago(10 - h), [json_record(hours_ago(10), h)])
        for h in range(5)
    ]
    write_current(directory, [json_record(hours_ago(0), 99)])

    store = EventStore(directory, rotation=RotationPolicy(retain_files=2))
    store.open()
    assert await asyncio.to_thread(store.wait_for_housekeeping, 10)
    await store.close()
    assert stored_files(directory) == sorted([rotated[3].name, rotated[4].name, "events.jsonl"])


async def test_retention_by_age_removes_files_whose_newest_record_is_older(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    old = write_rotated(directory, hours_ago(24 * 10), [b"old"])
    plain_old = write_rotated(directory, hours_ago(24 * 9), [b"old too"], suffix=".jsonl")
    recent = write_rotated(directory, hours_ago(24 * 2), [b"recent"])
    write_current(directory, [b"current"])

    store = EventStore(directory, rotation=RotationPolicy(retention=timedelta(days=3)))
    store.open()
    assert await asyncio.to_thread(store.wait_for_housekeeping, 10)
    await store.close()
    assert not old.exists() and not plain_old.exists()
    assert stored_files(directory) == sorted([recent.name, "events.jsonl"])


async def test_retention_applies_after_each_rotation(open_store: Callable[..., EventStore]) -> None:
    store = open_store(rotate_size=1024, retain_files=1)
    for batch in range(60):
        await store.append(tagged(0, batch, 2))
    assert await asyncio.to_thread(store.wait_for_housekeeping, 10)
    assert store.rotations >= 5
    assert len(list_rotated(store.directory)) == 1


async def test_retention_never_touches_files_it_does_not_recognise(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    write_rotated(directory, hours_ago(24 * 30), [b"old"])
    foreign = [directory / "events-backup.jsonl.gz", directory / "notes.txt"]
    for path in foreign:
        path.write_bytes(b"keep me")
    store = EventStore(directory, rotation=RotationPolicy(retention=timedelta(hours=1)))
    store.open()
    assert await asyncio.to_thread(store.wait_for_housekeeping, 10)
    await store.close()
    assert all(path.exists() for path in foreign)


async def test_closing_soon_after_a_rotation_leaves_a_readable_store(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store = EventStore(directory, rotation=RotationPolicy(rotate_size=1024))
    store.open()
    for batch in range(30):
        await store.append(tagged(0, batch, 3))
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 6
    expected = [r for b in range(30) for r in tagged(0, b, 3)]
    assert list(iter_stored(directory)) == expected
    assert read_every_file(directory) == expected


async def test_a_second_writer_on_the_same_store_is_refused(tmp_path: Path) -> None:
    first = EventStore(tmp_path, rotation=RotationPolicy())
    first.open()
    second = EventStore(tmp_path, rotation=RotationPolicy())
    with pytest.raises(StoreError, match="in use by another listener"):
        second.open()
    await first.append([b"one"])
    await first.close()

    second.open()
    await second.append([b"two"])
    await second.close()
    assert list(iter_stored(tmp_path)) == [b"one", b"two"]


async def test_a_compression_that_failed_is_retried_later(
    open_store: Callable[..., EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_compress = rotation.compress
    failures = []

    def full_disk_once(plain: Path, **kwargs: object) -> Path:
        if not failures:
            failures.append(plain)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_compress(plain, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rotation, "compress", full_disk_once)
    monkeypatch.setattr(rotation.Housekeeper, "catch_up_interval", 0.05)
    store = open_store(rotate_size=1024)
    await store.append(tagged(0, 0, 30))
    assert await asyncio.to_thread(store.wait_for_housekeeping, 5)
    assert failures and failures[0].exists()  # left plain, still readable

    deadline = time.monotonic() + 5
    while failures[0].exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert [f.compressed for f in list_rotated(store.directory)] == [True]
    assert read_every_file(store.directory) == tagged(0, 0, 30)


async def test_rotated_files_wait_for_a_pause_in_the_appends_before_compression(
    open_store: Callable[..., EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rotation, "QUIET_PERIOD", 0.5)
    store = open_store(rotate_size=1024)
    until = time.monotonic() + 1.5
    batch = 0
    while time.monotonic() < until:
        await store.append(tagged(0, batch, 10))
        batch += 1
        await asyncio.sleep(0.05)
        assert not any(f.compressed for f in list_rotated(store.directory))

    assert len(list_rotated(store.directory)) >= 3
    assert await asyncio.to_thread(store.wait_for_housekeeping, 10)
    assert all(f.compressed for f in list_rotated(store.directory))
    assert read_every_file(store.directory) == [
        record for number in range(batch) for record in tagged(0, number, 10)
    ]


async def test_a_rotated_file_is_compressed_under_sustained_appends_once_it_waited_long_enough(
    open_store: Callable[..., EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rotation, "QUIET_PERIOD", 5.0)  # never reached: only MAX_WAIT can apply
    monkeypatch.setattr(rotation, "MAX_WAIT", 0.3)
    store = open_store(rotate_size=1024)
    first = None
    deadline = time.monotonic() + 10
    batch = 0
    while time.monotonic() < deadline:
        await store.append(tagged(0, batch, 10))
        batch += 1
        await asyncio.sleep(0.02)
        rotated = list_rotated(store.directory)
        if first is None and rotated:
            first = rotated[0].key
        if any(f.key == first and f.compressed for f in rotated):
            break
    else:
        pytest.fail("no rotated file was compressed while appends went on")
    assert read_every_file(store.directory) == [
        record for number in range(batch) for record in tagged(0, number, 10)
    ]
