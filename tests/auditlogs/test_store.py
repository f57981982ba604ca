"""The record file: durable appends, group commit, torn-line repair, disk errors, state files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kongctl.auditlogs.store import EventStore, StoreError, profile_store_dir, write_state_file
from kongctl.errors import ExecutionError


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    opened = EventStore(tmp_path / "store")
    opened.open()
    yield opened
    await opened.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_child(script: str, *args: str) -> dict[str, object]:
    """Run a store script in its own process (for limits that must not touch pytest)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("default", "default"),
        ("prod-eu_1.x", "prod-eu_1.x"),
        ("a b/c\\d", "a_b_c_d"),
        ("zoë", "zo_"),
        ("..", "__"),
        (".", "_"),
        ("", "_"),
    ],
)
def test_profile_store_dir_keeps_only_safe_characters(profile: str, expected: str) -> None:
    assert profile_store_dir(Path("/cfg"), profile) == Path("/cfg/audit-logs") / expected


def test_state_file_is_indented_json_with_a_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "listener.json"
    write_state_file(path, {"pid": 42, "name": "zoë"})
    assert path.read_text() == '{\n  "pid": 42,\n  "name": "zo\\u00eb"\n}\n'
    assert mode(path) == 0o600


def test_state_file_replaces_the_old_one_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    path = tmp_path / "store" / "destination.json"
    path.write_text("old")
    write_state_file(path, {"id": "new"})
    assert json.loads(path.read_text()) == {"id": "new"}
    assert [p.name for p in path.parent.iterdir()] == ["destination.json"]


def test_state_file_in_a_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot write"):
        write_state_file(tmp_path / "missing" / "listener.json", {})


def test_store_error_is_an_execution_error() -> None:
    assert issubclass(StoreError, ExecutionError)


def test_open_creates_a_private_directory_and_file(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "audit-logs" / "default")
    assert store.open() == 0
    try:
        assert store.path == tmp_path / "audit-logs" / "default" / "events.jsonl"
        assert mode(store.path.parent) == 0o700
        assert mode(store.path) == 0o600
    finally:
        asyncio.run(store.close())


async def test_open_makes_an_existing_directory_and_file_private(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    directory.mkdir(mode=0o755)
    (directory / "events.jsonl").write_bytes(b"kept\n")
    (directory / "events.jsonl").chmod(0o644)

    store = EventStore(directory)
    store.open()
    await store.close()

    assert mode(directory) == 0o700
    assert mode(directory / "events.jsonl") == 0o600
    assert (directory / "events.jsonl").read_bytes() == b"kept\n"


async def test_appended_records_are_stored_byte_exact_one_per_line(store: EventStore) -> None:
    records = [b'{"a":1}', '{"name":"zoë ✓"}'.encode(), b'{"nul":"\x00"}', b"\xff\xfe raw"]
    await store.append(records[:2])
    await store.append(records[2:])
    assert store.path.read_bytes() == b"\n".join(records) + b"\n"
    assert (store.records_written, store.fsyncs) == (4, 2)
    assert store.bytes_written == store.path.stat().st_size


async def test_appending_no_records_writes_nothing(store: EventStore) -> None:
    await store.append([])
    assert store.path.read_bytes() == b""
    assert store.fsyncs == 0


async def test_appends_reopen_after_existing_records(tmp_path: Path) -> None:
    for text in (b"first", b"second"):
        store = EventStore(tmp_path)
        store.open()
        await store.append([text])
        await store.close()
    assert (tmp_path / "events.jsonl").read_bytes() == b"first\nsecond\n"


@pytest.mark.parametrize(
    ("content", "kept", "dropped"),
    [
        (b'{"a":1}\n{"b":2}\n{"c":', b'{"a":1}\n{"b":2}\n', 5),
        (b"no newline at all", b"", 17),
        (b"whole\n", b"whole\n", 0),
        (b"", b"", 0),
    ],
    ids=["torn-tail", "only-a-torn-line", "intact", "empty"],
)
async def test_open_cuts_a_torn_last_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, kept: bytes, dropped: int
) -> None:
    (tmp_path / "events.jsonl").write_bytes(content)
    store = EventStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="kongctl.auditlogs.store"):
        assert store.open() == dropped
    await store.append([b"next"])
    await store.close()

    assert (tmp_path / "events.jsonl").read_bytes() == kept + b"next\n"
    warned = [r for r in caplog.records if "torn last line" in r.getMessage()]
    assert len(warned) == (1 if dropped else 0)


async def test_torn_line_longer_than_a_read_chunk_is_cut_whole(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_bytes(b"ok\n" + b"x" * 200_000)
    store = EventStore(tmp_path)
    assert store.open() == 200_000
    await store.close()
    assert (tmp_path / "events.jsonl").read_bytes() == b"ok\n"


async def test_concurrent_appends_keep_each_batch_contiguous_and_share_fsyncs(
    store: EventStore,
) -> None:
    senders, batches_each, per_batch = 16, 50, 20

    async def sender(who: int) -> None:
        for batch in range(batches_each):
            await store.append([b"%d-%d-%d" % (who, batch, i) for i in range(per_batch)])

    await asyncio.gather(*(sender(who) for who in range(senders)))

    lines = store.path.read_bytes().split(b"\n")
    assert lines.pop() == b""
    assert len(lines) == len(set(lines)) == senders * batches_each * per_batch
    for start in range(0, len(lines), per_batch):
        chunk = [line.rsplit(b"-", 1) for line in lines[start : start + per_batch]]
        assert {prefix for prefix, _ in chunk} == {chunk[0][0]}
        assert [int(index) for _, index in chunk] == list(range(per_batch))
    assert store.fsyncs < senders * batches_each


async def test_appends_land_in_call_order(store: EventStore) -> None:
    await asyncio.gather(*(store.append([b"%d" % n]) for n in range(200)))
    assert store.path.read_bytes() == b"".join(b"%d\n" % n for n in range(200))


async def test_listeners_see_each_durable_group_in_file_order(store: EventStore) -> None:
    seen: list[bytes] = []
    on_disk_when_called: list[bool] = []

    def listener(records: Sequence[bytes]) -> None:
        on_disk_when_called.append(store.path.read_bytes().endswith(records[-1] + b"\n"))
        seen.extend(records)

    store.add_listener(listener)
    await asyncio.gather(*(store.append([b"a%d" % n, b"b%d" % n]) for n in range(50)))
    assert seen == store.path.read_bytes().splitlines()
    assert all(on_disk_when_called)


async def test_a_failing_listener_does_not_fail_the_append(store: EventStore) -> None:
    def broken(records: Sequence[bytes]) -> None:
        raise RuntimeError("listener bug")

    store.add_listener(broken)
    await store.append([b"kept"])
    assert store.path.read_bytes() == b"kept\n"


async def test_close_writes_pending_appends_and_refuses_later_ones(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.open()
    pending = [asyncio.create_task(store.append([b"%d" % n])) for n in range(20)]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.gather(*pending)

    assert len(store.path.read_bytes().splitlines()) == 20
    with pytest.raises(StoreError, match="closed"):
        await store.append([b"late"])


async def test_records_that_are_not_bytes_fail_their_append_only(store: EventStore) -> None:
    with pytest.raises(TypeError):
        await store.append(["text"])  # type: ignore[list-item]
    await store.append([b"fine"])
    assert store.path.read_bytes() == b"fine\n"


FILE_SIZE_LIMIT_SCRIPT = """
    import asyncio, json, logging, resource, signal, sys
    from pathlib import Path
    from kongctl.auditlogs.store import EventStore, StoreError

    class Count(logging.Handler):
        errors = 0
        def emit(self, record):
            if record.levelno >= logging.ERROR:
                Count.errors += 1

    logging.getLogger("kongctl").addHandler(Count())
    # Without this the kernel kills the process instead of failing the write with EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    async def main():
        store = EventStore(Path(sys.argv[1]))
        store.open()
        await store.append([b"a" * 99] * 5)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
        outcomes = await asyncio.gather(
            *(store.append([b"b" * 599]) for _ in range(4)), return_exceptions=True
        )
        failed = [o for o in outcomes if isinstance(o, StoreError)]
        size_after_failure = store.path.stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        await store.append([b"after"])
        await store.close()
        print(json.dumps({
            "failed": len(failed),
            "message": failed[0].message,
            "hint": failed[0].hint,
            "size_after_failure": size_after_failure,
            "content": store.path.read_text(),
            "error_logs": Count.errors,
        }))

    asyncio.run(main())
"""


def test_full_disk_fails_the_append_without_a_partial_line_and_recovers(
    tmp_path: Path,
) -> None:
    result = run_child(FILE_SIZE_LIMIT_SCRIPT, str(tmp_path))

    assert result["failed"] == 4
    assert "File too large" in str(result["message"])
    assert result["hint"]
    assert result["size_after_failure"] == 500
    assert result["content"] == ("a" * 99 + "\n") * 5 + "after\n"
    assert result["error_logs"] == 1


UNPRIVILEGED_OPEN_SCRIPT = """
    import json, os, sys
    from pathlib import Path
    from kongctl.auditlogs.store import EventStore, StoreError

    # Root ignores file modes, so drop to an unprivileged user to meet a real EACCES.
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    try:
        EventStore(Path(sys.argv[1]) / "store").open()
    except StoreError as exc:
        print(json.dumps({"message": exc.message, "hint": exc.hint}))
    else:
        print(json.dumps({"message": None}))
"""


def test_unwritable_store_directory_fails_to_open_with_a_store_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    if os.geteuid() != 0:
        locked.chmod(0o500)
    try:
        result = run_child(UNPRIVILEGED_OPEN_SCRIPT, str(locked))
    finally:
        locked.chmod(0o700)
    assert "Permission denied" in str(result["message"])
    assert result["hint"]


def test_a_file_in_place_of_the_store_directory_fails_to_open(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open event store"):
        EventStore(tmp_path / "store").open()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.binary(min_size=1, max_size=64).filter(lambda b: b"\n" not in b))))
def test_stored_bytes_are_exactly_the_appended_records(appends: list[list[bytes]]) -> None:
    async def scenario(directory: Path) -> bytes:
        store = EventStore(directory)
        store.open()
        await asyncio.gather(*(store.append(records) for records in appends))
        await store.close()
        return store.path.read_bytes()

    with tempfile.TemporaryDirectory() as directory:
        stored = asyncio.run(scenario(Path(directory)))
    assert stored == b"".join(record + b"\n" for records in appends for record in records)


async def test_a_group_larger_than_one_vectored_write_is_stored_in_order(
    store: EventStore,
) -> None:
    appends = [[b"%d" % n] for n in range(3000)]
    await asyncio.gather(*(store.append(records) for records in appends))
    assert store.path.read_bytes() == b"".join(b"%d\n" % n for n in range(3000))
