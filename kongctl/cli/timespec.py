"""Times and durations on the command line: RFC 3339 times, "now", and spans like 36h or 7d.

A duration where a time is expected means "that long ago", so ``--since 2h`` and
``--start-at 2h`` both name the moment two hours before now.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from kongctl.errors import UsageError

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")
_WITHOUT_ZONE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
# Far beyond any span Konnect keeps; it only stops "99999999w" from overflowing timedelta.
_LONGEST = timedelta(days=100 * 365)

TIME_FORMS = 'an RFC 3339 time (2026-12-01T10:00:00Z), a duration ago (36h, 7d, 90m) or "now"'
DURATION_FORMS = "a number and a unit: s, m, h, d or w, combined as in 1h30m (e.g. 36h, 7d, 90m)"


class TimeSpecError(UsageError):
    """A time or duration that cannot be read; the message names the flag and the forms."""


def parse_duration(text: str, *, flag: str = "duration") -> timedelta:
    """A span such as ``90m``, ``36h``, ``7d``, ``1h30m`` or ``1.5h``; never negative.

    ``flag`` names the value in error messages (``--timeout``).
    """
    cleaned = text.strip().lower()
    if not _DURATION.fullmatch(cleaned):
        raise TimeSpecError(f'invalid {flag} "{text}": use {DURATION_FORMS}')
    seconds = sum(
        float(number) * UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(cleaned)
    )
    if seconds > _LONGEST.total_seconds():
        raise TimeSpecError(f'{flag} "{text}" is too long')
    return timedelta(seconds=seconds)


def parse_time(text: str, *, flag: str = "time", now: datetime | None = None) -> datetime:
    """An aware UTC time from RFC 3339, ``now``, or a duration meaning that long before ``now``.

    ``flag`` names the value in error messages (``--since``); ``now`` defaults to the clock.
    """
    cleaned = text.strip()
    current = now or datetime.now(UTC)
    if cleaned.lower() == "now":
        return current.astimezone(UTC)
    upper = cleaned.upper()
    if _RFC3339.fullmatch(upper):
        try:
            return datetime.fromisoformat(upper).astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise TimeSpecError(f'invalid {flag} "{text}": {exc}') from None
    if _WITHOUT_ZONE.fullmatch(upper):
        raise TimeSpecError(
            f'{flag} "{text}" needs a time of day and a time zone: write '
            "2026-12-01T10:00:00Z for UTC or add an offset such as +02:00"
        )
    if not _DURATION.fullmatch(cleaned.lower()):
        raise TimeSpecError(f'invalid {flag} "{text}": use {TIME_FORMS}')
    return (current - parse_duration(cleaned, flag=flag)).astimezone(UTC)


def is_relative(text: str) -> bool:
    """Whether ``text`` names a time relative to now (``now`` or a duration ago)."""
    cleaned = text.strip().lower()
    return cleaned == "now" or _DURATION.fullmatch(cleaned) is not None


def format_time(at: datetime) -> str:
    """RFC 3339 in UTC with ``Z``; fractions of a second only when there are any."""
    utc = at.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_duration(span: timedelta) -> str:
    """A short span such as ``10m``, ``1h30m`` or ``7d``, the inverse of ``parse_duration``."""
    remaining = int(span.total_seconds())
    if remaining <= 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, remaining = divmod(remaining, UNIT_SECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
