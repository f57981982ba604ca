"""Rendering command results: text for people, JSON and YAML for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

from kongctl.cli.spec import OUTPUT_FORMATS
from kongctl.errors import UsageError

# typing.TYPE_CHECKING without importing typing, which `kongctl ps` would pay for at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def output_format(value: object) -> str:
    """The output format ``value`` names (from a flag, the environment or the config file)."""
    name = str(value).lower()
    if name not in OUTPUT_FORMATS:
        raise UsageError(f'invalid output format "{name}": use one of {"|".join(OUTPUT_FORMATS)}')
    return name


def emit(output: str, data: Any, text: Callable[[], str] | str) -> None:
    """Print ``data`` as JSON or YAML, or the text rendering for ``-o text``."""
    if output == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif output == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    else:
        rendered = text() if callable(text) else text
        sys.stdout.write(rendered if rendered.endswith("\n") else rendered + "\n")
    sys.stdout.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; empty cells print as ``-``."""
    cells = [[("-" if v is None or v == "" else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
