"""Reading stored records back: rotated files and the current one, oldest first, streamed.

Nothing here loads a file whole: records come out of generators one line at a time, so memory
stays flat however large the store is. Each record's time is taken from its raw bytes with a
regex (``event_ts`` or ``rt`` of a JSON or CPS record, the leading time or ``rt=`` of a CEF
line) instead of parsing every record as JSON.
"""

from __future__ import annotations

import gzip
import logging
import re
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from kongctl.auditlogs.rotation import COMPRESSED, PLAIN, RotatedFile, list_rotated, newest_key
from kongctl.auditlogs.tail import last_records

logger = logging.getLogger(__name__)

CURRENT_FILE = "events.jsonl"
BASE = "events"

_CHUNK = 1 << 20
# A listing and an open can straddle a rotation; it is rare, so a few tries always suffice.
_SNAPSHOT_TRIES = 5
# Records in a rotated file arrived before it was rotated, and an event is stamped before it
# is sent, so a file rotated before --since holds nothing newer: it is skipped. The margin
# covers a sender clock that runs ahead of this machine's.
# LIMITATION: a record stamped more than this margin after it arrived can be missed by --since.
CLOCK_MARGIN = timedelta(hours=1)

_EVENT_TS = re.compile(rb'"event_ts"\s*:\s*"([^"\\]{1,64})"')
_JSON_RT = re.compile(rb'"rt"\s*:\s*"?(\d{1,16})\b')
_CEF_TIME = re.compile(rb"\s*(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s")
_CEF_RT = re.compile(rb"[\s|]rt=(\d{1,16})\b")
_TIME_CACHE_LIMIT = 4096
_time_cache: dict[bytes, float | None] = {}

Warn = Callable[[str], None]


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def record_time(record: bytes) -> float | None:
    """The record's time as seconds since the epoch, or None when it names none."""
    if record[:1] == b"{":
        match = _EVENT_TS.search(record)
        if match is not None:
            return _parse_timestamp(match.group(1))
        match = _JSON_RT.search(record)
    else:
        match = _CEF_TIME.match(record)
        if match is not None:
            return _parse_timestamp(match.group(1))
        match = _CEF_RT.search(record)
    return int(match.group(1)) / 1000 if match is not None else None


def _parse_timestamp(text: bytes) -> float | None:
    # Records of one delivery share their second: the cache saves nearly every parse.
    if text in _time_cache:
        return _time_cache[text]
    try:
        at = datetime.fromisoformat(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        seconds = None
    else:
        seconds = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    if len(_time_cache) >= _TIME_CACHE_LIMIT:
        _time_cache.clear()
    _time_cache[text] = seconds
    return seconds


@dataclass
class TimeWindow:
    """Selects records with ``since <= time < until``; counts those without a time."""

    since: datetime | None = None
    until: datetime | None = None
    untimed: int = 0

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None

    def select_timed(self, records: Iterable[bytes]) -> Iterator[tuple[bytes, float | None]]:
        """The records inside the window, each with its time (None only without bounds)."""
        if not self.bounded:
            for record in records:
                yield record, record_time(record)
            return
        low = self.since.timestamp() if self.since is not None else float("-inf")
        high = self.until.timestamp() if self.until is not None else float("inf")
        for record in records:
            at = record_time(record)
            if at is None:
                self.untimed += 1
            elif low <= at < high:
                yield record, at

    def select(self, records: Iterable[bytes]) -> Iterator[bytes]:
        """The records inside the window; all of them when it has no bounds."""
        if not self.bounded:
            yield from records
            return
        for record, _at in self.select_timed(records):
            yield record


def has_records(directory: Path) -> bool:
    """Whether the store directory holds a record file, current or rotated."""
    return (directory / CURRENT_FILE).exists() or bool(list_rotated(directory, BASE))


def iter_stored(
    directory: Path, *, since: datetime | None = None, warn: Warn | None = None
) -> Iterator[bytes]:
    """Every stored record, oldest file first, as lines without their newline.

    The set of files is fixed when reading starts: a rotation meanwhile neither hides records
    nor shows any twice. Rotated files that cannot hold records from ``since`` on are skipped.
    Bytes after the last newline of the current file are a record still being written and are
    left out.
    """
    rotated, current = _snapshot(directory)
    try:
        for rotated_file in rotated:
            if since is not None and rotated_file.rotated_at < since - CLOCK_MARGIN:
                continue
            yield from _rotated_records(rotated_file, warn)
        if current is not None:
            yield from _lines(current)
    finally:
        if current is not None:
            current.close()


def last_stored_records(directory: Path, n: int) -> list[bytes]:
    """The last ``n`` stored records: from the current file, then back into rotated files."""
    if n <= 0:
        return []
    rotated: list[RotatedFile] = []
    newest: list[bytes] = []
    for _attempt in range(_SNAPSHOT_TRIES):
        before = newest_key(directory, BASE)
        newest = last_records(directory / CURRENT_FILE, n)
        rotated = list_rotated(directory, BASE)
        # A rotation while the current file was read could have moved records out of view.
        if (rotated[-1].key if rotated else None) == before:
            break

    older: list[bytes] = []
    for rotated_file in reversed(rotated):
        needed = n - len(newest) - len(older)
        if needed <= 0:
            break
        older[:0] = deque(_rotated_records(rotated_file, None), maxlen=needed)
    return older + newest


def _snapshot(directory: Path) -> tuple[list[RotatedFile], _Readable | None]:
    """The rotated files, and the current file opened, with no rotation in between."""
    rotated: list[RotatedFile] = []
    current: _Readable | None = None
    for _attempt in range(_SNAPSHOT_TRIES):
        rotated = list_rotated(directory, BASE)
        try:
            current = (directory / CURRENT_FILE).open("rb")
        except FileNotFoundError:
            current = None
        if (rotated[-1].key if rotated else None) == newest_key(directory, BASE):
            break
        # The open file may already be one of the rotated ones: list again and retry.
        if current is not None:
            current.close()
            current = None
    return rotated, current


def _rotated_records(rotated_file: RotatedFile, warn: Warn | None) -> Iterator[bytes]:
    stream = _open_rotated(rotated_file)
    if stream is None:
        return  # removed by retention since it was listed
    try:
        yield from _lines(stream)
    except (EOFError, OSError, zlib.error) as exc:
        logger.warning("rotated file unreadable path=%s error=%s", rotated_file.path, exc)
        if warn is not None:
            warn(f"warning: {rotated_file.path} is damaged, read up to the damage: {exc}")
    finally:
        stream.close()


def _open_rotated(rotated_file: RotatedFile) -> _Readable | None:
    path = rotated_file.path
    if not rotated_file.compressed:
        try:
            return path.open("rb")
        except FileNotFoundError:
            # Compressed since it was listed: the .gz holds the same records.
            path = path.with_name(path.name.removesuffix(PLAIN) + COMPRESSED)
    try:
        return gzip.open(path, "rb")
    except FileNotFoundError:
        return None


def _lines(stream: _Readable) -> Iterator[bytes]:
    """Complete lines of ``stream`` without their newline, read in large chunks."""
    rest = b""
    while chunk := stream.read(_CHUNK):
        lines = (rest + chunk).split(b"\n") if rest else chunk.split(b"\n")
        rest = lines.pop()
        yield from lines
