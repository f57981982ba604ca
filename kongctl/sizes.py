"""Human sizes and durations in flags: 64MiB, 1048576, 7d, 36h."""

from __future__ import annotations

import re

from kongctl.errors import UsageError

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: str | int, *, flag: str) -> int:
    """Bytes from ``1048576``, ``512KiB``, ``64MiB`` or ``1G`` (binary units)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if match is None:
        raise UsageError(f'invalid {flag} "{value}": use a byte count or units like 512KiB, 64MiB')
    number, unit = match.groups()
    return int(number) * _UNITS[(unit or "")[:1].upper()]
