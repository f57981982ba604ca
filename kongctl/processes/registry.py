"""Process records: one JSON file per detached listener, ``<config dir>/processes/<pid>.json``.

The file layout is shared with the Go kongctl, so records written by either tool list in both.
Fields this module does not know are kept and written back unchanged.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

# typing.TYPE_CHECKING without importing typing, which `kongctl ps` would pay for at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any

LISTEN_KIND = "konnect.audit-logs.listen"
REDACTED = "[REDACTED]"
RECORDS_DIR_NAME = "processes"

# A flag is secret when one of its dash-separated words is one of these: `--pat`,
# `--konnect-token`, `--api-key`, `--client-secret`, `--authorization`. Whole words, so that
# `--path` and `--keep-files` stay readable.
SECRET_FLAG_WORDS = frozenset(
    {
        "apikey",
        "auth",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "key",
        "passphrase",
        "passwd",
        "password",
        "pat",
        "secret",
        "token",
    }
)
# Konnect personal and system access tokens, in case one is passed as a positional argument.
_TOKEN_SHAPE = re.compile(r"^(kpat|spat)_\S+$")
_KNOWN_FIELDS = (
    "pid",
    "kind",
    "profile",
    "created_at",
    "log_file",
    "args",
    "start_time_ticks",
    "listen_address",
    "endpoint",
    "kongctl_version",
)


def _log() -> logging.Logger:
    # logging is imported when first needed: `kongctl ps` only reads records and logs nothing.
    import logging

    return logging.getLogger(__name__)


class ProcessRecord:
    """What kongctl remembers about one detached process."""

    # A plain class, not a dataclass: `kongctl ps` reads records on every run, and importing
    # dataclasses (and inspect with it) would be a good part of its start-up time.
    def __init__(
        self,
        pid: int,
        kind: str = LISTEN_KIND,
        profile: str = "default",
        created_at: str = "",
        log_file: str = "",
        args: list[str] | None = None,
        start_time_ticks: int | None = None,
        listen_address: str | None = None,
        endpoint: str | None = None,
        kongctl_version: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.pid = pid
        self.kind = kind
        self.profile = profile
        self.created_at = created_at
        self.log_file = log_file
        self.args = [] if args is None else args
        self.start_time_ticks = start_time_ticks
        self.listen_address = listen_address
        self.endpoint = endpoint
        self.kongctl_version = kongctl_version
        self.extra = {} if extra is None else extra

    def __repr__(self) -> str:
        return f"ProcessRecord({self.to_dict()!r})"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        data.update(
            pid=self.pid,
            kind=self.kind,
            profile=self.profile,
            created_at=self.created_at,
            log_file=self.log_file,
            args=list(self.args),
        )
        optional = {
            "start_time_ticks": self.start_time_ticks,
            "listen_address": self.listen_address,
            "endpoint": self.endpoint,
            "kongctl_version": self.kongctl_version,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessRecord:
        """Build a record from parsed JSON; ``ValueError`` says what is wrong with it."""
        pid = data.get("pid")
        if type(pid) is not int or pid <= 0:
            raise ValueError(f"pid must be a positive integer, got {pid!r}")
        ticks = data.get("start_time_ticks")
        if ticks is not None and type(ticks) is not int:
            raise ValueError(f"start_time_ticks must be an integer, got {ticks!r}")
        args = data.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError("args must be a list of strings")
        return cls(
            pid=pid,
            kind=_text(data, "kind", LISTEN_KIND),
            profile=_text(data, "profile", "default"),
            created_at=_text(data, "created_at", ""),
            log_file=_text(data, "log_file", ""),
            args=list(args),
            start_time_ticks=ticks,
            listen_address=_optional_text(data, "listen_address"),
            endpoint=_optional_text(data, "endpoint"),
            kongctl_version=_optional_text(data, "kongctl_version"),
            extra={k: v for k, v in data.items() if k not in _KNOWN_FIELDS},
        )


def _text(data: Mapping[str, Any], key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value


def utc_now_rfc3339() -> str:
    """The current time as RFC 3339 in UTC with a ``Z``, as the Go tool writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def records_dir(config_dir: Path) -> Path:
    return Path(config_dir) / RECORDS_DIR_NAME


def record_path(config_dir: Path, pid: int) -> Path:
    return records_dir(config_dir) / f"{pid}.json"


def write_record(config_dir: Path, record: ProcessRecord) -> Path:
    """Write the record atomically: readers see the old file or the new one, never a torn one."""
    directory = records_dir(config_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    target = directory / f"{record.pid}.json"
    payload = (json.dumps(record.to_dict(), indent=2) + "\n").encode("utf-8")
    # Imported here: tempfile pulls in shutil, random and the compression modules, a few
    # milliseconds that `kongctl ps`, which only reads records, should not pay.
    import tempfile

    fd, temp_name = tempfile.mkstemp(prefix=f".{record.pid}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    _log().debug("process record written pid=%s path=%s", record.pid, target)
    return target


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry itself reaches the disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_record(path: Path) -> ProcessRecord:
    """Parse one record file; ``OSError`` or ``ValueError`` when it cannot be used."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    record = ProcessRecord.from_dict(data)
    if path.stem != str(record.pid):
        raise ValueError(f"file name does not match pid {record.pid}")
    return record


def load_records(
    config_dir: Path,
) -> tuple[list[tuple[Path, ProcessRecord]], list[tuple[Path, str]]]:
    """All records, oldest first, and every ``*.json`` file that could not be read, with why."""
    directory = records_dir(config_dir)
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError as exc:
        return [], [(directory, exc.strerror or str(exc))]
    good: list[tuple[Path, ProcessRecord]] = []
    bad: list[tuple[Path, str]] = []
    for path in paths:
        try:
            good.append((path, read_record(path)))
        except FileNotFoundError:
            continue  # removed by a concurrent stop between listing and reading
        except OSError as exc:
            bad.append((path, exc.strerror or str(exc)))
        except UnicodeDecodeError:
            bad.append((path, "not UTF-8 text"))
        except json.JSONDecodeError as exc:
            bad.append((path, f"invalid JSON: {exc}"))
        except ValueError as exc:
            bad.append((path, str(exc)))
    good.sort(key=lambda item: (item[1].created_at, item[1].pid))
    return good, bad


def remove_record(config_dir: Path, pid: int) -> bool:
    """Delete the record of ``pid``; False when there was none (already removed is fine)."""
    try:
        record_path(config_dir, pid).unlink()
    except FileNotFoundError:
        return False
    _log().debug("process record removed pid=%s", pid)
    return True


@contextmanager
def locked_record(config_dir: Path, pid: int, *, timeout: float) -> Iterator[ProcessRecord | None]:
    """Hold an exclusive lock on the record of ``pid``; yield it, or None once it is gone.

    Two ``kongctl ps stop`` of the same pid take turns: the second finds the record removed
    by the first instead of signalling the process again. ``TimeoutError`` when the lock is
    still held after ``timeout`` seconds; ``ValueError``/``OSError`` for an unreadable record.
    """
    path = record_path(config_dir, pid)
    fd = _open_locked(path, time.monotonic() + timeout)
    if fd is None:
        yield None
        return
    try:
        try:
            record = read_record(path)
        except FileNotFoundError:
            record = None  # the listener removed its own record on its way out
        yield record
    finally:
        os.close(fd)


def _open_locked(path: Path, deadline: float) -> int | None:
    """A descriptor holding the lock on the file now at ``path``; None when there is none."""
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            _lock(fd, deadline)
            # The file may have been removed or replaced while we waited for the lock.
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _lock(fd: int, deadline: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError from None
            time.sleep(0.05)


def is_secret_flag(flag: str) -> bool:
    """Whether ``--flag`` carries a secret by the word rule of ``SECRET_FLAG_WORDS``."""
    if not flag.startswith("--"):
        return False
    words = flag[2:].lower().replace("_", "-").split("-")
    return any(word in SECRET_FLAG_WORDS for word in words)


def redact_args(argv: Iterable[str]) -> list[str]:
    """A copy of ``argv`` with the values of secret flags replaced by ``[REDACTED]``.

    Both ``--token VALUE`` and ``--token=VALUE`` are covered. The word after a bare secret
    flag is redacted unless it is itself a long option: redacting too much only hides a
    harmless word, too little leaks a credential into ``kongctl ps`` output and bug reports.
    """
    result: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next and not arg.startswith("--"):
            result.append(REDACTED)
            redact_next = False
            continue
        redact_next = False
        name, has_value, _value = arg.partition("=")
        if is_secret_flag(name):
            if has_value:
                result.append(f"{name}={REDACTED}")
            else:
                result.append(arg)
                redact_next = True
        elif _TOKEN_SHAPE.match(arg):
            result.append(REDACTED)
        else:
            result.append(arg)
    return result
