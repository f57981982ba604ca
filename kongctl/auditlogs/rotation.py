"""Rotated record files: their names, compression, retention, and finishing an interrupted one.

When ``events.jsonl`` passes the rotate size, the store's writer renames it, between two
groups, to ``events-<UTC time>.jsonl`` and opens a fresh ``events.jsonl``. A background thread
compresses the rotated file once the appends pause (or it has waited a minute), in steps that
each leave a state the next start recognises:

1. ``events-<t>.jsonl`` is gzipped into ``events-<t>.jsonl.gz.tmp``, which is fsynced;
2. the ``.tmp`` is renamed to ``events-<t>.jsonl.gz`` and the directory fsynced;
3. ``events-<t>.jsonl`` is unlinked.

A ``.gz`` therefore always holds the whole file, a ``.gz.tmp`` is never trusted, and a plain
rotated file is removed only once its ``.gz`` is durable. Retention deletes the oldest rotated
files, never the file being written.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

DEFAULT_ROTATE_SIZE = 64 << 20
DEFAULT_BASE = "events"
PLAIN, COMPRESSED, PARTIAL = ".jsonl", ".jsonl.gz", ".jsonl.gz.tmp"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"

_CHUNK = 1 << 20
# Fast compression: the thread shares two cores with ingestion, and audit records still
# shrink about tenfold at level 1.
_COMPRESS_LEVEL = 1
# How often the thread looks again while no rotation happens: for files past their retention
# time, and for rotated files a failed compression (a full disk) left uncompressed.
CATCH_UP_INTERVAL = 300.0
# A rotated file is compressed once the store has had no write for QUIET_PERIOD seconds, so a
# burst of deliveries never shares the processor with compression; or once the file has
# waited MAX_WAIT seconds, so that under sustained load uncompressed files cannot pile up.
QUIET_PERIOD = 1.0
MAX_WAIT = 60.0
_QUIET_POLL = 0.2
# The thread yields the processor to ingestion when both want it.
_BACKGROUND_NICENESS = 10
_RETENTION_PASS = "retention"
_CATCH_UP = "catch up"


@dataclass(frozen=True)
class RotationPolicy:
    """When the record file rotates and how many rotated files are kept."""

    rotate_size: int = DEFAULT_ROTATE_SIZE
    retention: timedelta | None = None
    retain_files: int | None = None

    def __post_init__(self) -> None:
        if self.rotate_size <= 0:
            raise ValueError("rotate size must be positive")
        if self.retention is not None and self.retention <= timedelta(0):
            raise ValueError("retention must be positive")
        if self.retain_files is not None and self.retain_files < 0:
            raise ValueError("retain files must not be negative")


@dataclass(frozen=True, order=True)
class RotatedFile:
    """One rotated record file; ``path`` is the one to read (the ``.gz`` once it exists)."""

    stamp: str
    sequence: int
    path: Path = field(compare=False)
    compressed: bool = field(compare=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.stamp, self.sequence)

    @property
    def rotated_at(self) -> datetime:
        """When it was rotated: the time of its last write, so of its newest record."""
        return datetime.strptime(self.stamp, STAMP_FORMAT).replace(tzinfo=UTC)

    def variants(self) -> list[Path]:
        """Every name this rotated file can have on disk, compressed or not."""
        stem = self.path.name.removesuffix(COMPRESSED if self.compressed else PLAIN)
        return [self.path.with_name(stem + suffix) for suffix in (PLAIN, COMPRESSED, PARTIAL)]


def rotated_pattern(base: str = DEFAULT_BASE) -> re.Pattern[str]:
    return re.compile(
        rf"^{re.escape(base)}-(\d{{8}}T\d{{6}}Z)(?:-(\d+))?(\.jsonl(?:\.gz(?:\.tmp)?)?)$"
    )


def list_rotated(directory: Path, base: str = DEFAULT_BASE) -> list[RotatedFile]:
    """The rotated files in ``directory``, oldest first; leftovers of a compression are ignored."""
    pattern = rotated_pattern(base)
    found: dict[tuple[str, int], set[str]] = {}
    stems: dict[tuple[str, int], str] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        match = pattern.match(name)
        if match is None:
            continue
        stamp, sequence, suffix = match.groups()
        key = (stamp, int(sequence or 0))
        found.setdefault(key, set()).add(suffix)
        stems[key] = name[: len(name) - len(suffix)]

    rotated = []
    for key in sorted(found):
        suffixes = found[key]
        if COMPRESSED in suffixes:
            suffix, compressed = COMPRESSED, True
        elif PLAIN in suffixes:
            suffix, compressed = PLAIN, False
        else:
            continue
        rotated.append(RotatedFile(key[0], key[1], directory / (stems[key] + suffix), compressed))
    return rotated


def newest_key(directory: Path, base: str = DEFAULT_BASE) -> tuple[str, int] | None:
    rotated = list_rotated(directory, base)
    return rotated[-1].key if rotated else None


def next_rotated_path(
    directory: Path, base: str, at: datetime, last: tuple[str, int] | None
) -> tuple[tuple[str, int], Path]:
    """A fresh ``<base>-<time>[-n].jsonl`` that sorts after every earlier rotated file.

    Two rotations in one second, or a clock set back, get the last time with a higher suffix,
    so the names stay unique and in rotation order.
    """
    stamp = at.astimezone(UTC).strftime(STAMP_FORMAT)
    sequence = 0
    if last is not None and stamp <= last[0]:
        stamp, sequence = last[0], last[1] + 1
    while True:
        stem = f"{base}-{stamp}" + (f"-{sequence}" if sequence else "")
        if not any(os.path.lexists(directory / (stem + s)) for s in (PLAIN, COMPRESSED, PARTIAL)):
            return (stamp, sequence), directory / (stem + PLAIN)
        sequence += 1


def recover(directory: Path, base: str = DEFAULT_BASE) -> list[Path]:
    """Clean up after compressions a crash interrupted; return the plain files to compress.

    A ``.gz`` exists only once complete, so a plain file beside it is a copy to remove; a
    ``.gz.tmp`` may be cut anywhere, so it is dropped and its compression redone.
    """
    pattern = rotated_pattern(base)
    try:
        names = set(os.listdir(directory))
    except FileNotFoundError:
        return []
    pending = []
    for name in sorted(names):
        match = pattern.match(name)
        if match is None or match.group(3) != PLAIN:
            continue
        stem = name[: -len(PLAIN)]
        if stem + PARTIAL in names:
            _unlink(directory / (stem + PARTIAL))
            logger.info("rotated file partial compression dropped path=%s", directory / name)
        if stem + COMPRESSED in names:
            _unlink(directory / name)
            logger.info("rotated file compression finished path=%s", directory / name)
        else:
            pending.append(directory / name)
    for name in names:
        match = pattern.match(name)
        if match is not None and match.group(3) == PARTIAL:
            stem = name[: -len(PARTIAL)]
            if stem + PLAIN not in names:
                # Without its source this may be the only copy left: keep it for a person to
                # look at rather than guess.
                logger.warning("partial compressed file without its source path=%s", name)
    return pending


class CompressionStopped(Exception):
    """The store closed while a file was being compressed; the next start redoes it."""


def compress(plain: Path, *, should_stop: Callable[[], bool] = lambda: False) -> Path:
    """Gzip a rotated ``.jsonl`` durably next to it, then remove it; return the ``.gz``."""
    stem = plain.name[: -len(PLAIN)]
    partial = plain.with_name(stem + PARTIAL)
    final = plain.with_name(stem + COMPRESSED)
    try:
        with plain.open("rb") as source:
            _gzip_into(source, partial, should_stop)
        os.replace(partial, final)
    except BaseException:
        _unlink(partial)
        raise
    fsync_dir(plain.parent)
    # Only now, with the .gz durable, may the plain copy go.
    os.unlink(plain)
    return final


def _gzip_into(source: BinaryIO, partial: Path, should_stop: Callable[[], bool]) -> None:
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as raw:
        # No file name or time in the header: the output depends on the records only.
        with gzip.GzipFile(
            filename="", mode="wb", compresslevel=_COMPRESS_LEVEL, fileobj=raw, mtime=0
        ) as packed:
            while chunk := source.read(_CHUNK):
                if should_stop():
                    raise CompressionStopped(str(partial))
                packed.write(chunk)
        raw.flush()
        os.fsync(raw.fileno())


def expired(rotated: list[RotatedFile], policy: RotationPolicy, now: datetime) -> list[RotatedFile]:
    """The rotated files retention removes: too old, or beyond the count to keep."""
    doomed: set[RotatedFile] = set()
    if policy.retention is not None:
        doomed.update(f for f in rotated if now - f.rotated_at > policy.retention)
    if policy.retain_files is not None:
        keep = policy.retain_files
        doomed.update(rotated[: max(0, len(rotated) - keep)])
    return sorted(doomed)


def remove_rotated(rotated: RotatedFile) -> None:
    for path in rotated.variants():
        _unlink(path)


class Housekeeper:
    """A background thread that compresses rotated files and applies retention.

    The store's writer only renames; everything slow happens here, so appends keep being
    acknowledged while a file is compressed.
    """

    catch_up_interval = CATCH_UP_INTERVAL

    def __init__(
        self,
        directory: Path,
        policy: RotationPolicy,
        base: str = DEFAULT_BASE,
        last_write: Callable[[], float] = lambda: float("-inf"),
    ):
        """``last_write`` tells when (``time.monotonic()``) the store last wrote records."""
        self.directory = directory
        self.policy = policy
        self.base = base
        self._last_write = last_write
        self.compressed = 0
        self.removed = 0
        # A path to compress with the time it was submitted (monotonic), a retention pass, or
        # None to stop.
        self._queue: queue.SimpleQueue[tuple[Path, float] | str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stop_at = float("inf")
        self._unfinished = 0
        self._idle = threading.Condition()

    def start(self, pending: list[Path]) -> None:
        """Start the thread; ``pending`` are plain rotated files left by an earlier run."""
        for plain in pending:
            self.submit(plain)
        self._track(1)
        self._queue.put(_RETENTION_PASS)
        self._thread = threading.Thread(
            target=self._run, name="event-store-housekeeper", daemon=True
        )
        self._thread.start()

    def submit(self, plain: Path) -> None:
        """Compress ``plain`` (a just rotated file), then apply retention."""
        self._track(1)
        self._queue.put((plain, time.monotonic()))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted file is handled; False when ``timeout`` passes first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout)

    def close(self, grace: float) -> None:
        """Finish queued work for at most ``grace`` seconds, then stop the thread.

        A compression cut short leaves its plain file, which the next start compresses.
        """
        if self._thread is None:
            return
        self._stop_at = time.monotonic() + grace
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    def _track(self, change: int) -> None:
        with self._idle:
            self._unfinished += change
            if self._unfinished == 0:
                self._idle.notify_all()

    def _run(self) -> None:
        _lower_thread_priority()
        while True:
            try:
                item = self._queue.get(timeout=self.catch_up_interval)
            except queue.Empty:
                item = _CATCH_UP
            if item is None:
                return
            try:
                if item is _CATCH_UP:
                    for plain in recover(self.directory, self.base):
                        self._compress(plain, submitted=time.monotonic())
                elif isinstance(item, tuple):
                    self._compress(*item)
                self._apply_retention()
            except Exception:
                # Whatever fails here must not stop the thread: later rotations need it.
                logger.exception("rotated file housekeeping failed item=%s", item)
            finally:
                if item is not _CATCH_UP:
                    self._track(-1)

    def _wait_for_quiet(self, submitted: float) -> bool:
        """Wait until the store is quiet or the file waited long enough; False when stopping."""
        while True:
            now = time.monotonic()
            if self._stop_at != float("inf"):
                # The store is closing: nothing more will be written, only the grace counts.
                return now < self._stop_at
            if now - self._last_write() >= QUIET_PERIOD or now - submitted >= MAX_WAIT:
                return True
            time.sleep(_QUIET_POLL)

    def _compress(self, plain: Path, submitted: float) -> None:
        if not self._wait_for_quiet(submitted):
            return
        started = time.monotonic()
        try:
            final = compress(plain, should_stop=lambda: time.monotonic() >= self._stop_at)
        except FileNotFoundError:
            return  # retention got to it first
        except CompressionStopped:
            logger.info("rotated file compression postponed path=%s", plain)
            return
        except OSError as exc:
            logger.error("rotated file compression failed path=%s error=%s", plain, exc.strerror)
            return
        self.compressed += 1
        logger.info(
            "rotated file compressed path=%s bytes=%d seconds=%.2f waited=%.1f",
            final,
            final.stat().st_size,
            time.monotonic() - started,
            started - submitted,
        )

    def _apply_retention(self) -> None:
        if self.policy.retention is None and self.policy.retain_files is None:
            return
        rotated = list_rotated(self.directory, self.base)
        for doomed in expired(rotated, self.policy, datetime.now(UTC)):
            remove_rotated(doomed)
            self.removed += 1
            logger.info(
                "rotated file removed by retention path=%s rotated_at=%s",
                doomed.path,
                doomed.stamp,
            )


def fsync_dir(directory: Path) -> None:
    """Make renames, creations and removals in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lower_thread_priority() -> None:
    # Linux applies a nice value to a single thread when given its id.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _BACKGROUND_NICENESS)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
