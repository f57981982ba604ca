"""The ``kongctl ps`` listing, without click: the ``ps`` command and the fast path both print it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from kongctl.cli.render import emit, table
from kongctl.processes.registry import LISTEN_KIND, ProcessRecord, load_records
from kongctl.processes.runtime import status_of
from kongctl.processes.scan import UnmanagedListener, find_unmanaged_listeners, option_value

# typing.TYPE_CHECKING without importing typing, which `kongctl ps` would pay for at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EMPTY_LISTING = "No detached kongctl processes found."


class Listing:
    """The rows to show, and the record files that could not be read."""

    def __init__(self, rows: list[dict[str, Any]], unreadable: list[tuple[Path, str]]) -> None:
        self.rows = rows
        self.unreadable = unreadable


def collect_listing(config_dir: Path) -> Listing:
    """Every process record, oldest first, then the listeners running without one."""
    records, unreadable = load_records(config_dir)
    rows = [_record_row(path, record) for path, record in records]
    known = {record.pid for _, record in records}
    unmanaged = find_unmanaged_listeners(known, config_dir)
    rows += [_unmanaged_row(listener) for listener in unmanaged]
    return Listing(rows, unreadable)


def print_listing(listing: Listing, output: str) -> None:
    """Warn about unreadable records on stderr, then print the rows in ``output`` format."""
    warn_unreadable(listing.unreadable)
    emit(output, listing.rows, lambda: listing_text(listing.rows))


def warn_unreadable(unreadable: Sequence[tuple[Path, str]]) -> None:
    for path, reason in unreadable:
        sys.stderr.write(f"warning: cannot read process record {path}: {reason}\n")


def listing_text(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return EMPTY_LISTING
    now = datetime.now(UTC)
    headers = ("PID", "STATUS", "KIND", "PROFILE", "AGE", "LISTEN", "ENDPOINT")
    return table(
        headers,
        [
            (
                row["pid"],
                row["status"],
                row["kind"],
                row["profile"],
                _age(row["created_at"], now),
                row["listen_address"],
                row["endpoint"],
            )
            for row in rows
        ],
    )


def _record_row(path: Path, record: ProcessRecord) -> dict[str, Any]:
    return {
        "pid": record.pid,
        "status": status_of(record),
        "kind": record.kind,
        "profile": record.profile,
        "created_at": record.created_at,
        "log_file": record.log_file,
        "record_file": str(path),
        "listen_address": record.listen_address,
        "endpoint": record.endpoint,
    }


def _unmanaged_row(listener: UnmanagedListener) -> dict[str, Any]:
    started = listener.started_at
    return {
        "pid": listener.pid,
        "status": "unmanaged",
        "kind": LISTEN_KIND.rsplit(".", 1)[0] + "." + listener.verb,
        "profile": option_value(listener.args, "--profile") or option_value(listener.args, "-p"),
        "created_at": started.strftime("%Y-%m-%dT%H:%M:%SZ") if started else None,
        "log_file": None,
        "record_file": None,
        "listen_address": option_value(listener.args, "--listen-address"),
        "endpoint": option_value(listener.args, "--endpoint"),
    }


def _age(created_at: str | None, now: datetime) -> str | None:
    """A short age like ``45s``, ``12m``, ``3h`` or ``2d``; None when the time is unknown."""
    if not created_at:
        return None
    try:
        created = datetime.fromisoformat(created_at)
    except ValueError:
        return None
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    seconds = max(0, int((now - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
