"""Helpers for the event store over time: records with known content, stores laid out on disk."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kongctl.auditlogs.rotation import STAMP_FORMAT


def json_record(
    at: datetime, index: int, *, name: str = "Authz.portals", **fields: object
) -> bytes:
    """A JSON audit record stamped ``at``, told apart by ``index``."""
    body = {
        "event_ts": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "index": index,
        "name": name,
        "principal_id": fields.pop("principal_id", "p-1"),
        **fields,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def cef_record(at: datetime, index: int, *, name: str = "Authz.teams") -> bytes:
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"{stamp} konghq.com CEF:0|KongInc|Konnect|1.0|konnect|{name}|1|"
        f"rt={int(at.timestamp() * 1000)} index={index} principal_id=p-cef granted=false"
    ).encode()


def rotated_name(at: datetime, sequence: int = 0, suffix: str = ".jsonl.gz") -> str:
    stamp = at.astimezone(UTC).strftime(STAMP_FORMAT)
    return f"events-{stamp}" + (f"-{sequence}" if sequence else "") + suffix


def write_rotated(
    directory: Path, at: datetime, records: Iterable[bytes], **kwargs: object
) -> Path:
    """A rotated file as the store leaves it: compressed unless the suffix says otherwise."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / rotated_name(at, **kwargs)  # type: ignore[arg-type]
    data = b"".join(record + b"\n" for record in records)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def write_current(directory: Path, records: Iterable[bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "events.jsonl"
    path.write_bytes(b"".join(record + b"\n" for record in records))
    return path


def stored_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith("events"))


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


# The listener end-to-end tests reuse the emulator and listener fixtures of tests/listen.
from tests.listen.conftest import emulator_process, konnect, start_listener  # noqa: E402, F401
