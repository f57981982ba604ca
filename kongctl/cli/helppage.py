"""The root help page, laid out as click lays out a group's help page.

The fast path prints it for ``kongctl --help``; the click CLI prints its own from the same
tables (``kongctl.cli.spec``), and the tests compare the two at every width.
"""

from __future__ import annotations

import os
import sys
import textwrap

from kongctl.cli.spec import (
    COMMANDS,
    GLOBAL_FLAGS,
    HELP_FLAG_HELP,
    HELP_FLAGS,
    ROOT_HELP,
    VERSION_FLAG_HELP,
    GlobalFlag,
)

# click's fixed parts of a group's help page, and its layout rules.
_USAGE_PREFIX = "Usage: kongctl "
_USAGE_ARGS = "[OPTIONS] COMMAND [ARGS]..."
_INDENT = "  "
_TERM_COLUMN_MAX = 30
_MAX_WIDTH = 80
_MIN_WIDTH = 50
_FALLBACK_COLUMNS = 80


def help_width() -> int:
    """The width click lays help out in: the terminal's, at most 78 and at least 50 columns."""
    return max(min(_terminal_columns(), _MAX_WIDTH) - 2, _MIN_WIDTH)


def _terminal_columns() -> int:
    # shutil.get_terminal_size's rule (COLUMNS, else the terminal on stdout, else 80) without
    # importing shutil, which loads the compression modules.
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    if stdout is None:
        return _FALLBACK_COLUMNS
    try:
        return os.get_terminal_size(stdout.fileno()).columns or _FALLBACK_COLUMNS
    except (ValueError, OSError):
        return _FALLBACK_COLUMNS


def root_help(width: int) -> str:
    """The root help page as click lays out a group's help, ``width`` columns wide."""
    options = [("--version", VERSION_FLAG_HELP)]
    options += [(_flag_term(flag), flag.help) for flag in GLOBAL_FLAGS]
    options.append((", ".join(HELP_FLAGS), HELP_FLAG_HELP))
    commands = [(name, summary) for name, (_module, _attr, summary) in sorted(COMMANDS.items())]
    paragraphs = [" ".join(text.splitlines()) for text in ROOT_HELP.split("\n\n")]
    sections = [
        _wrap(_USAGE_ARGS, width, _USAGE_PREFIX, " " * len(_USAGE_PREFIX)),
        "\n\n".join(_wrap(text, width, _INDENT, _INDENT) for text in paragraphs),
        "Options:\n" + _definitions(options, width),
        "Commands:\n" + _definitions(commands, width),
    ]
    return "\n\n".join(sections) + "\n"


def _flag_term(flag: GlobalFlag) -> str:
    # Short names first, as click lists them: `-o, --output`.
    names = ", ".join(sorted(flag.names, key=lambda name: name.startswith("--")))
    value = f"[{'|'.join(flag.choices)}]" if flag.choices else flag.metavar
    return f"{names} {value}" if value else names


def _definitions(rows: list[tuple[str, str]], width: int) -> str:
    """Terms and their help in two columns; a term too wide puts its help on the next line."""
    term_width = min(max(len(term) for term, _ in rows), _TERM_COLUMN_MAX) + 2
    text_indent = " " * (len(_INDENT) + term_width)
    lines = []
    for term, text in rows:
        wrapped = _wrap(text, max(width - term_width - 2, 10)).splitlines()
        if len(term) <= term_width - 2:
            lines.append(_INDENT + term.ljust(term_width) + wrapped[0])
        else:
            lines += [_INDENT + term, text_indent + wrapped[0]]
        lines += [text_indent + line for line in wrapped[1:]]
    return "\n".join(lines)


def _wrap(text: str, width: int, first_indent: str = "", indent: str = "") -> str:
    wrapper = _Wrapper(
        width, initial_indent=first_indent, subsequent_indent=indent, replace_whitespace=False
    )
    return wrapper.fill(text)


class _Wrapper(textwrap.TextWrapper):
    def _handle_long_word(
        self, reversed_chunks: list[str], cur_line: list[str], cur_len: int, width: int
    ) -> None:
        # A word too long for any line is cut where the line ends, and after one character at
        # least, as click cuts it. The standard library prefers a hyphen, and may cut nothing
        # and leave a trailing space.
        room = max(width - cur_len, 1)
        word = reversed_chunks[-1]
        cur_line.append(word[:room])
        reversed_chunks[-1] = word[room:]
