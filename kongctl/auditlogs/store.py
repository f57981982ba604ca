"""The record file: durable JSONL appends with group commit, torn-line repair, rotation, and
state files.

Records are stored exactly as received, one per line, in ``events.jsonl`` under the profile's
store directory. An append returns only once its lines are on disk (fdatasync), so the receiver
can acknowledge a batch knowing a crash cannot lose it. With a rotation policy, the file is
renamed between two groups once it passes the rotate size; compression and retention of the
rotated files happen in the background (see ``rotation``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import queue
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kongctl.auditlogs.rotation import (
    Housekeeper,
    RotationPolicy,
    fsync_dir,
    newest_key,
    next_rotated_path,
    recover,
)
from kongctl.auditlogs.throttle import LogThrottle
from kongctl.errors import ExecutionError

logger = logging.getLogger(__name__)

_UNSAFE_PROFILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_REPAIR_CHUNK = 64 * 1024
_ERROR_LOG_INTERVAL = 10.0
_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024) if hasattr(os, "sysconf") else 16
LOCK_FILE = "store.lock"
# After a failed rotation, appends go on into the same file; the next try waits this long.
_ROTATE_RETRY_SECONDS = 10.0
# How long close() lets a running compression finish before leaving it to the next start.
_HOUSEKEEPING_GRACE = 5.0

# The errors a full, read-only or forbidden disk produces; they get a hint, not a traceback.
_DISK_HINTS = {
    errno.ENOSPC: "free some disk space; appends succeed again once there is room",
    errno.EDQUOT: "the disk quota is exhausted; appends succeed again once there is room",
    errno.EFBIG: "the file size limit (ulimit -f) is reached; move the record file away",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "check the permissions of the store directory",
    errno.EPERM: "check the permissions of the store directory",
}

Listener = Callable[[Sequence[bytes]], None]
# One queued append: its records, the same as file lines, and the future its caller awaits.
# Empty appends never queue, so an entry without records is the close request.
_Pending = tuple[Sequence[bytes], bytes, "asyncio.Future[None]"]


class StoreError(ExecutionError):
    """The record file could not be opened or written; nothing of the failed append is kept."""


def profile_store_dir(config_dir: Path, profile: str) -> Path:
    """Return the store directory of a profile, its name reduced to ``[A-Za-z0-9._-]``."""
    name = _UNSAFE_PROFILE_CHARS.sub("_", profile)
    # "." and ".." would point at the audit-logs directory itself or above it.
    if name.strip(".") == "":
        name = name.replace(".", "_") or "_"
    return config_dir / "audit-logs" / name


def write_state_file(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically with ``data`` as indented JSON, mode 0600.

    A reader sees the old or the new file, never a half-written one, even across a crash.
    """
    text = json.dumps(data, indent=2) + "\n"
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _store_error(f"cannot write {path}", exc) from exc

    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
        fsync_dir(path.parent)
    except OSError as exc:
        _remove_quietly(tmp_name)
        raise _store_error(f"cannot write {path}", exc) from exc


class EventStore:
    """The append-only record file of one profile.

    Appends are handed to one writer thread. While it writes and syncs a group, later appends
    queue up and go out together in the next group: one write and one fdatasync for many
    requests, so throughput is not capped at one disk sync per batch. With ``rotation``, the
    same thread renames the file between two groups once it passes the rotate size.
    """

    def __init__(
        self,
        directory: Path,
        filename: str = "events.jsonl",
        rotation: RotationPolicy | None = None,
    ) -> None:
        self.directory = directory
        self.path = directory / filename
        self.rotation = rotation
        self.records_written = 0
        self.bytes_written = 0
        self.fsyncs = 0
        self.rotations = 0
        self._base = Path(filename).stem
        self._lock_fd = -1
        self._fd = -1
        # Every byte below _size is a whole line that has been synced.
        self._size = 0
        # A failed group could not be cut back; the next group must retry that first.
        self._needs_cut = False
        self._failing = False
        self._closing = False
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._listeners: list[Listener] = []
        self._error_log = LogThrottle(logger, _ERROR_LOG_INTERVAL)
        # The file rotates once _size reaches this; one comparison per group.
        self._rotate_at = rotation.rotate_size if rotation else None
        self._rotate_retry_at = 0.0
        self._last_rotated: tuple[str, int] | None = None
        # A rotation whose directory entries are not yet synced: the next group syncs them
        # before it is acknowledged, or its records could vanish with the new file's name.
        self._directory_unsynced = False
        self._housekeeper: Housekeeper | None = None
        # When (time.monotonic()) the last group was synced: compression waits for a pause.
        self._last_write = float("-inf")

    def open(self) -> int:
        """Create or open the record file, repair a torn last line, and start the writer.

        Returns the number of bytes dropped from a line a crash left unfinished.
        """
        if self._fd >= 0:
            raise RuntimeError("event store is already open")
        try:
            created = not self.directory.exists()
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            if created:
                fsync_dir(self.directory.parent)
            self._lock_fd = self._lock()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._unlock()
            raise _store_error(f"cannot open event store {self.path}", exc) from exc

        try:
            os.fchmod(fd, 0o600)
            dropped = self._repair_torn_tail(fd)
            # The file's directory entry must survive a crash as well as its content.
            fsync_dir(self.directory)
            self._size = os.fstat(fd).st_size
            pending = self._recover_rotation()
        except OSError as exc:
            os.close(fd)
            self._unlock()
            raise _store_error(f"cannot open event store {self.path}", exc) from exc

        self._fd = fd
        self._closing = False
        if self.rotation is not None:
            self._housekeeper = Housekeeper(
                self.directory, self.rotation, self._base, last_write=lambda: self._last_write
            )
            if self._rotation_due():
                self._rotate()
            self._housekeeper.start(pending)
        self._writer = threading.Thread(
            target=self._run_writer, name="event-store-writer", daemon=True
        )
        self._writer.start()
        logger.debug("event store opened path=%s size=%d", self.path, self._size)
        return dropped

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback`` on the event loop with each durably written group, in file order."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        self._listeners.remove(callback)

    async def append(self, records: Sequence[bytes]) -> None:
        """Append ``records`` (lines without their newline) and return once they are synced.

        The records of one call stay contiguous in the file, and calls land in call order.
        Raises StoreError when the disk refuses the write; then none of them are kept.
        """
        if self._fd < 0 or self._closing:
            raise StoreError(f"event store {self.path} is closed")
        if not records:
            return
        # Joining here, not in the writer, keeps the writer's time holding the GIL short: it
        # only hands the buffers to writev, so the event loop is not stalled behind it.
        lines = b"\n".join([*records, b""])
        future = asyncio.get_running_loop().create_future()
        self._queue.put((records, lines, future))
        await future

    async def close(self) -> None:
        """Write what is queued, then stop the writer and close the file."""
        if self._fd < 0 or self._closing or self._writer is None:
            return
        self._closing = True
        done = asyncio.get_running_loop().create_future()
        self._queue.put(((), b"", done))
        await done
        self._writer.join()
        self._writer = None
        if self._housekeeper is not None:
            await asyncio.to_thread(self._housekeeper.close, _HOUSEKEEPING_GRACE)
            self._housekeeper = None
        self._unlock()
        logger.debug(
            "event store closed path=%s records=%d fsyncs=%d",
            self.path,
            self.records_written,
            self.fsyncs,
        )

    def wait_for_housekeeping(self, timeout: float) -> bool:
        """Wait until rotated files are compressed and retention applied; False on timeout."""
        if self._housekeeper is None:
            return True
        return self._housekeeper.wait_idle(timeout)

    def _lock(self) -> int:
        """Hold the store for this process until close; StoreError when another holds it."""
        # A second writer would cut a line the first is still writing as torn, and rotate
        # the file from under it.
        lock_path = self.directory / LOCK_FILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"event store {self.directory} is in use by another listener",
                hint="stop that listener (see `kongctl ps`) or use another --profile",
            ) from None
        except OSError as exc:
            # LIMITATION: without file locks (some network file systems) two listeners of one
            # profile are not kept apart; each would still write whole lines.
            logger.warning("event store lock unavailable path=%s error=%s", lock_path, exc)
        return fd

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _recover_rotation(self) -> list[Path]:
        # Rotated files are looked after even when this run does not rotate: a compression
        # cut short by a crash is finished by the next listener.
        pending = recover(self.directory, self._base)
        self._last_rotated = newest_key(self.directory, self._base)
        return pending

    def _repair_torn_tail(self, fd: int) -> int:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return 0

        keep = 0
        end = size
        while end > 0:
            start = max(0, end - _REPAIR_CHUNK)
            newline = os.pread(fd, end - start, start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        os.ftruncate(fd, keep)
        os.fsync(fd)

        dropped = size - keep
        logger.warning("event store torn last line dropped path=%s bytes=%d", self.path, dropped)
        return dropped

    def _run_writer(self) -> None:
        pending = self._queue
        while True:
            group = [pending.get()]
            while True:
                try:
                    group.append(pending.get_nowait())
                except queue.Empty:
                    break

            closer = group.pop() if not group[-1][0] else None
            if group:
                try:
                    error: Exception | None = self._write_group(group)
                except Exception as exc:
                    # Whatever goes wrong fails this group, never the writer: appends would hang.
                    error = exc
                # Between two groups: no record can be split or land in both files. Rotating
                # before the answer means an append returns with its rotation done.
                if self._rotation_due():
                    self._rotate()
                _call_soon(group[0][2], self._finish_group, group, error)
            if closer is not None:
                os.close(self._fd)
                self._fd = -1
                _call_soon(closer[2], _resolve, closer[2])
                return

    def _write_group(self, group: list[_Pending]) -> OSError | None:
        buffers = [lines for _, lines, _ in group]
        size = sum(map(len, buffers))
        fd = self._fd
        try:
            if self._needs_cut:
                os.ftruncate(fd, self._size)
                self._needs_cut = False
            _write_fully(fd, buffers)
            os.fdatasync(fd)
            self._last_write = time.monotonic()
            if self._directory_unsynced:
                fsync_dir(self.directory)
                self._directory_unsynced = False
        except OSError as exc:
            self._cut_back(fd)
            return exc

        self._size += size
        self.bytes_written += size
        self.records_written += sum(len(records) for records, _, _ in group)
        self.fsyncs += 1
        return None

    def _rotation_due(self) -> bool:
        return self._rotate_at is not None and self._size >= self._rotate_at

    def _rotate(self) -> None:
        """Move the full file aside and continue in a fresh one; compression comes later."""
        # A failed group not yet cut back would leave half a line in the rotated file.
        if self._needs_cut or time.monotonic() < self._rotate_retry_at:
            return
        try:
            rotated, size = self._switch_file()
        except OSError as exc:
            self._rotate_retry_at = time.monotonic() + _ROTATE_RETRY_SECONDS
            self._error_log.log(
                logging.ERROR,
                "event store rotation failed path=%s error=%s",
                self.path,
                exc.strerror,
            )
            return
        self.rotations += 1
        logger.info("event store rotated path=%s rotated=%s bytes=%d", self.path, rotated, size)
        if self._housekeeper is not None:
            self._housekeeper.submit(rotated)

    def _switch_file(self) -> tuple[Path, int]:
        key, rotated = next_rotated_path(
            self.directory, self._base, datetime.now(UTC), self._last_rotated
        )
        os.rename(self.path, rotated)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            # Put the file back: appends continue into it and the next try starts clean.
            os.rename(rotated, self.path)
            raise
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)  # a umask such as 0277 would take the owner's write bit
        old_fd, size = self._fd, self._size
        self._fd, self._size = fd, 0
        self._last_rotated = key
        os.close(old_fd)
        try:
            # One sync makes both the rename and the new file durable.
            fsync_dir(self.directory)
        except OSError:
            self._directory_unsynced = True
        return rotated, size

    def _cut_back(self, fd: int) -> None:
        # A short write leaves part of a line; without the cut, the next group would be glued
        # onto it and corrupt a record.
        try:
            os.ftruncate(fd, self._size)
        except OSError:
            self._needs_cut = True

    def _finish_group(self, group: list[_Pending], error: Exception | None) -> None:
        if error is not None:
            self._fail_group(group, error)
            return

        if self._failing:
            self._failing = False
            logger.info("event store writable again path=%s", self.path)
        if self._listeners:
            self._notify([line for records, _, _ in group for line in records])
        for _, _, future in group:
            if not future.done():
                future.set_result(None)

    def _fail_group(self, group: list[_Pending], error: Exception) -> None:
        self._failing = True
        reason = error.strerror if isinstance(error, OSError) else repr(error)
        self._error_log.log(
            logging.ERROR,
            "event store write failed path=%s error=%s appends=%d",
            self.path,
            reason,
            len(group),
        )
        for _, _, future in group:
            if future.done():
                continue
            if isinstance(error, OSError):
                future.set_exception(_store_error(f"cannot write to {self.path}", error))
            else:
                future.set_exception(StoreError(f"cannot write to {self.path}: {reason}"))

    def _notify(self, records: list[bytes]) -> None:
        for listener in list(self._listeners):
            try:
                listener(records)
            except Exception:
                logger.exception("event store listener failed")


def _write_fully(fd: int, buffers: list[bytes]) -> None:
    """Write every buffer in order with as few system calls as the kernel allows."""
    pending: list[bytes | memoryview] = list(buffers)
    while pending:
        batch = pending[:_IOV_MAX]
        written = os.writev(fd, batch)
        if written == 0:
            raise OSError(errno.EIO, "write made no progress")
        done = 0
        for buffer in batch:
            if written < len(buffer):
                break
            written -= len(buffer)
            done += 1
        del pending[:done]
        if written:
            pending[0] = memoryview(pending[0])[written:]


def _store_error(action: str, exc: OSError) -> StoreError:
    reason = exc.strerror or str(exc)
    return StoreError(f"{action}: {reason}", hint=_DISK_HINTS.get(exc.errno or 0))


def _call_soon(future: asyncio.Future[None], callback: Callable[..., None], *args: Any) -> None:
    # A closed loop raises RuntimeError: nobody is waiting for the answer any more.
    with contextlib.suppress(RuntimeError):
        future.get_loop().call_soon_threadsafe(callback, *args)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)
