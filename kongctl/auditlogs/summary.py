"""Counting stored records: by event name, principal and outcome, and per hour.

The outcome of a record is what Konnect's event says happened: ``granted`` or ``denied`` for
an authorization, ``success`` or ``failure`` for an authentication, ``status <code>`` for an
API access. JSON and CPS records are parsed as JSON; CEF lines by their header and extension.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NONE = "-"
CHART_WIDTH = 80
TOP_ROWS = 10
# Per-hour rows beyond this are merged into wider buckets so the chart stays small.
MAX_CHART_ROWS = 48
_BUCKET_HOURS = (1, 2, 3, 4, 6, 12, 24)
_BLOCKS = " ▏▎▍▌▋▊▉█"
_HOUR_LABEL = "%Y-%m-%d %H:%M"

_CEF_FIELD = re.compile(rb"((?:\\.|[^\\|])*)\|")
_CEF_EXTENSION = re.compile(rb"([\w.]+)=((?:\\.|[^\\])*?)(?=\s+[\w.]+=|\s*$)")
_CEF_UNESCAPE = re.compile(rb"\\(.)")
_CEF_HEADER_FIELDS = 7
_CEF_NAME = 5


@dataclass
class Summary:
    """Counts over a set of records; feed it with :meth:`add`."""

    records: int = 0
    without_time: int = 0
    first: float | None = None
    last: float | None = None
    names: Counter[str] = field(default_factory=Counter)
    principals: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    hours: Counter[int] = field(default_factory=Counter)

    def add(self, record: bytes, at: float | None) -> None:
        """Count one record; ``at`` is its time in seconds since the epoch, if it has one."""
        self.records += 1
        name, principal, outcome = describe(record)
        self.names[name] += 1
        self.principals[principal] += 1
        self.outcomes[outcome] += 1
        if at is None:
            self.without_time += 1
            return
        self.hours[math.floor(at / 3600)] += 1
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)

    def to_document(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "first_event": _time_text(self.first),
            "last_event": _time_text(self.last),
            "without_time": self.without_time,
            "by_name": dict(self.names.most_common()),
            "by_principal": dict(self.principals.most_common()),
            "by_outcome": dict(self.outcomes.most_common()),
            "per_hour": [
                {"hour": _time_text(hour * 3600.0), "records": count}
                for hour, count in sorted(self.hours.items())
            ],
        }

    def render_text(self, width: int = CHART_WIDTH) -> str:
        if not self.records:
            return "No records in the selected window."
        lines = [self._headline(), ""]
        for title, counts in (
            ("EVENT NAME", self.names),
            ("PRINCIPAL", self.principals),
            ("OUTCOME", self.outcomes),
        ):
            lines += [*_count_table(title, counts), ""]
        lines += _chart(self.hours, width)
        return "\n".join(lines).rstrip("\n")

    def _headline(self) -> str:
        text = f"{self.records} records"
        if self.first is not None and self.last is not None:
            text += f", {_time_text(self.first)} to {_time_text(self.last)}"
        if self.without_time:
            text += f" ({self.without_time} without a time)"
        return text


def describe(record: bytes) -> tuple[str, str, str]:
    """The event name, principal and outcome of a record; ``-`` for what it does not say."""
    if record[:1] == b"{":
        return _describe_json(record)
    return _describe_cef(record)


def _describe_json(record: bytes) -> tuple[str, str, str]:
    try:
        data = json.loads(record)
    except ValueError:
        return NONE, NONE, NONE
    if not isinstance(data, dict):
        return NONE, NONE, NONE
    return _text(data.get("name")), _text(data.get("principal_id")), _outcome(data)


def _describe_cef(record: bytes) -> tuple[str, str, str]:
    start = record.find(b"CEF:")
    if start < 0:
        return NONE, NONE, NONE
    header: list[bytes] = []
    position = start
    while len(header) < _CEF_HEADER_FIELDS:
        match = _CEF_FIELD.match(record, position)
        if match is None:
            return NONE, NONE, NONE
        header.append(match.group(1))
        position = match.end()
    extension = {
        key.decode("ascii"): _cef_unescape(value)
        for key, value in _CEF_EXTENSION.findall(record, position)
    }
    name = _cef_unescape(header[_CEF_NAME]) or NONE
    return name, extension.get("principal_id") or NONE, _outcome(extension)


def _outcome(fields: dict[str, Any]) -> str:
    if "granted" in fields:
        return "granted" if _truthy(fields["granted"]) else "denied"
    if "success" in fields:
        return "success" if _truthy(fields["success"]) else "failure"
    if "status" in fields:
        return f"status {fields['status']}"
    return NONE


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _text(value: Any) -> str:
    if value is None or value == "":
        return NONE
    return value if isinstance(value, str) else json.dumps(value)


def _cef_unescape(value: bytes) -> str:
    unescaped = _CEF_UNESCAPE.sub(
        lambda m: {b"n": b"\n", b"r": b"\r"}.get(m.group(1), m.group(1)), value
    )
    return unescaped.decode("utf-8", errors="replace")


def _time_text(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _count_table(title: str, counts: Counter[str]) -> list[str]:
    shown = counts.most_common(TOP_ROWS)
    width = max(len(title), *(len(key) for key, _ in shown))
    digits = max(len("RECORDS"), *(len(str(count)) for _, count in shown))
    lines = [f"{title.ljust(width)}  {'RECORDS'.rjust(digits)}"]
    lines += [f"{key.ljust(width)}  {str(count).rjust(digits)}" for key, count in shown]
    hidden = len(counts) - len(shown)
    if hidden:
        rest = sum(counts.values()) - sum(count for _, count in shown)
        lines.append(f"({hidden} more with {rest} records)")
    return lines


def _chart(hours: Counter[int], width: int) -> list[str]:
    """A bar per hour (or wider bucket) from the first to the last record, gaps included."""
    if not hours:
        return []
    first, last = min(hours), max(hours)
    span = _bucket_hours(last - first + 1)
    buckets: Counter[int] = Counter()
    for hour, count in hours.items():
        buckets[first + (hour - first) // span * span] += count
    rows = range(first, last + 1, span)
    digits = max(len(str(count)) for count in buckets.values())
    label_width = len(datetime.fromtimestamp(0, UTC).strftime(_HOUR_LABEL))
    bar_width = max(10, width - label_width - digits - 4)
    peak = max(buckets.values())
    unit = "hour" if span == 1 else f"{span} hours"
    lines = [f"RECORDS PER {unit.upper()} (UTC)"]
    for start in rows:
        label = datetime.fromtimestamp(start * 3600, UTC).strftime(_HOUR_LABEL)
        count = buckets.get(start, 0)
        lines.append(f"{label}  {_bar(count, peak, bar_width)} {str(count).rjust(digits)}")
    return lines


def _bucket_hours(span: int) -> int:
    for hours in _BUCKET_HOURS:
        if math.ceil(span / hours) <= MAX_CHART_ROWS:
            return hours
    return 24 * math.ceil(span / (24 * MAX_CHART_ROWS))


def _bar(count: int, peak: int, width: int) -> str:
    """``count`` as a bar of block characters in eighths; any count above 0 shows."""
    eighths = round(count / peak * width * 8) if peak else 0
    if count and not eighths:
        eighths = 1
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_BLOCKS[part] if part else "")
    return bar.ljust(width)
