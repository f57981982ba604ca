"""``kongctl get audit-logs events``: the stored records read back, filtered or summarized.

Records stream from the store to stdout in batches, so the memory used does not grow with the
store: only ``-n`` keeps anything, its last N results.
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import click

from kongctl.auditlogs.reader import TimeWindow, has_records, iter_stored, last_stored_records
from kongctl.auditlogs.store import profile_store_dir
from kongctl.auditlogs.summary import Summary
from kongctl.auditlogs.tail import JqFilter
from kongctl.cli.render import emit
from kongctl.cli.root import cli_context, global_options
from kongctl.cli.timespec import format_time, parse_time
from kongctl.errors import UsageError

T = TypeVar("T")

BATCH_SIZE = 1000
# Warnings of one kind shown before the rest are only counted.
SHOWN_WARNINGS = 5


@dataclass(frozen=True)
class EventsQuery:
    """What to read and how to show it; built from the flags by :func:`build_query`."""

    lines: int | None
    since: datetime | None
    until: datetime | None
    jq: JqFilter | None
    summary: bool


class Warnings:
    """Warnings for stderr: the first few of each kind as they come, the count of the rest."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, kind: str, text: str) -> None:
        count = self.counts.get(kind, 0) + 1
        self.counts[kind] = count
        if count <= SHOWN_WARNINGS:
            click.echo(text, err=True)

    def report(self) -> None:
        for kind, count in self.counts.items():
            if count > SHOWN_WARNINGS:
                click.echo(f"warning: {count - SHOWN_WARNINGS} more {kind} not shown", err=True)


@click.command("events", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=0),
    metavar="N",
    help="Only the last N records (with --jq: the last N results).",
)
@click.option(
    "--since", metavar="DURATION|TIME", help="Records from this time on (36h, 7d, RFC 3339)."
)
@click.option("--until", metavar="TIME", help="Records before this time.")
@click.option("--jq", "jq_expression", metavar="EXPR", help="jq filter applied to each record.")
@click.option("--summary", is_flag=True, help="Counts by name, principal, outcome and hour.")
@global_options
def events(
    lines: int | None,
    since: str | None,
    until: str | None,
    jq_expression: str | None,
    summary: bool,
) -> None:
    """Show stored audit-log records, filtered or summarized.

    Rotated files and the current one are read oldest first. The time of a record is its
    event_ts or rt (JSON, CPS) or the time a CEF line starts with.
    """
    ctx = cli_context()
    output = ctx.output
    query = build_query(lines, since, until, jq_expression, summary)
    directory = profile_store_dir(ctx.config_dir, ctx.profile)
    if not has_records(directory):
        click.echo(f'No events stored for profile "{ctx.profile}" yet ({directory}).', err=True)
    warnings = Warnings()
    try:
        if query.summary:
            show_summary(query, directory, output, warnings)
        else:
            show_records(query, directory, output, warnings)
    except BrokenPipeError:
        # `... | head` stops reading: that is the end of the output, not a failure.
        _silence_stdout()
    finally:
        warnings.report()


def build_query(
    lines: int | None,
    since: str | None,
    until: str | None,
    jq_expression: str | None,
    summary: bool,
) -> EventsQuery:
    """Check the flags together, before any file is read."""
    if summary and jq_expression is not None:
        raise UsageError("--summary counts records and cannot be combined with --jq")
    start = parse_time(since, flag="--since") if since is not None else None
    end = parse_time(until, flag="--until") if until is not None else None
    if start is not None and end is not None and start >= end:
        shown = [format_time(at.replace(microsecond=0)) for at in (start, end)]
        raise UsageError(f"--since must be before --until (from {shown[0]} to {shown[1]})")
    jq_filter = JqFilter.compile(jq_expression) if jq_expression is not None else None
    return EventsQuery(lines, start, end, jq_filter, summary)


def show_records(query: EventsQuery, directory: Path, output: str, warnings: Warnings) -> None:
    window = TimeWindow(query.since, query.until)
    if query.lines is not None and query.jq is None and not window.bounded:
        # Only the newest files are read, and the current one backwards from its end.
        batches: Iterable[list[Any]] = [last_stored_records(directory, query.lines)]
    else:
        selected = window.select(_stored(directory, query.since, warnings))
        batches = _results(query, selected, warnings)
        if query.lines is not None:
            batches = [_last(batches, query.lines)]

    sink = _sink(output)
    for batch in batches:
        if batch:
            sink.write(batch)
    sink.close()
    _warn_untimed(window.untimed, warnings)


def show_summary(query: EventsQuery, directory: Path, output: str, warnings: Warnings) -> None:
    window = TimeWindow(query.since, query.until)
    timed: Iterable[tuple[bytes, float | None]] = window.select_timed(
        _stored(directory, query.since, warnings)
    )
    if query.lines is not None:
        timed = deque(timed, maxlen=query.lines)
    summary = Summary()
    for record, at in timed:
        summary.add(record, at)
    _warn_untimed(window.untimed, warnings)
    emit(output, summary.to_document(), summary.render_text)


def _stored(directory: Path, since: datetime | None, warnings: Warnings) -> Iterator[bytes]:
    return iter_stored(
        directory, since=since, warn=lambda text: warnings.add("warnings about damaged files", text)
    )


def _results(
    query: EventsQuery, records: Iterator[bytes], warnings: Warnings
) -> Iterator[list[Any]]:
    """Batches of what is printed: the records, or the outputs of the jq filter."""
    for batch in _batches(records, BATCH_SIZE):
        if query.jq is None:
            yield batch
            continue
        outputs, jq_warnings = query.jq.filter_batch(batch)
        for text in jq_warnings:
            warnings.add("jq warnings", text)
        yield outputs


def _last(batches: Iterable[list[T]], n: int) -> list[T]:
    kept: deque[T] = deque(maxlen=n)
    for batch in batches:
        kept.extend(batch)
    return list(kept)


def _batches(items: Iterator[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _warn_untimed(untimed: int, warnings: Warnings) -> None:
    if untimed:
        warnings.add(
            "untimed",
            f"warning: skipped {untimed} records without a time "
            "(no event_ts or rt, no CEF time); --since and --until need one",
        )


# Where the results go: raw lines, a JSON array, or a YAML list, written as they come.


class _Sink:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0

    def write(self, batch: list[bytes | str]) -> None:
        self._stream.write(self.render(batch))
        self._stream.flush()
        self.count += len(batch)

    def render(self, batch: list[bytes | str]) -> bytes:
        return b"".join(_as_bytes(item) + b"\n" for item in batch)

    def close(self) -> None:
        self._stream.flush()


class _JsonSink(_Sink):
    """A JSON array, one element per line; JSON records are copied as they were stored."""

    def render(self, batch: list[bytes | str]) -> bytes:
        opening = b"[\n  " if self.count == 0 else b",\n  "
        return opening + b",\n  ".join(_json_text(item) for item in batch)

    def close(self) -> None:
        self._stream.write(b"\n]\n" if self.count else b"[]\n")
        super().close()


class _YamlSink(_Sink):
    def render(self, batch: list[bytes | str]) -> bytes:
        import yaml

        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        text = yaml.dump(
            [_value(item) for item in batch],
            Dumper=dumper,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
        )
        return text.encode("utf-8")

    def close(self) -> None:
        if not self.count:
            self._stream.write(b"[]\n")
        super().close()


def _sink(output: str) -> _Sink:
    stream = sys.stdout.buffer
    sys.stdout.flush()
    if output == "json":
        return _JsonSink(stream)
    if output == "yaml":
        return _YamlSink(stream)
    return _Sink(stream)


def _silence_stdout() -> None:
    # Later writes and the flush at exit would fail on the closed pipe again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _as_bytes(item: bytes | str) -> bytes:
    return item if isinstance(item, bytes) else item.encode("utf-8", errors="replace")


def _json_text(item: bytes | str) -> bytes:
    # A record that is JSON keeps its exact text (big numbers and key order untouched);
    # anything else becomes a JSON string.
    if _parse(item) is not _NOT_JSON:
        return _as_bytes(item)
    return json.dumps(_text(item), ensure_ascii=False).encode("utf-8")


def _value(item: bytes | str) -> Any:
    parsed = _parse(item)
    return _text(item) if parsed is _NOT_JSON else parsed


_NOT_JSON = object()


def _parse(item: bytes | str) -> Any:
    try:
        return json.loads(item, parse_constant=_reject_constant)
    except ValueError:
        return _NOT_JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _text(item: bytes | str) -> str:
    return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item
