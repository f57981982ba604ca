"""The fast path: ``kongctl --help`` and a plain ``kongctl ps``, without importing click.

Both are typed often, by people and by scripts, and importing click alone would double their
start-up time. Only the exact command lines below are handled here, from the same tables and
functions the click CLI uses, so the output is the same byte for byte; every other command line,
and any failure before output begins, is left to the click CLI (``kongctl.cli.root``).
"""

from __future__ import annotations

import sys

from kongctl.cli.spec import HELP_FLAGS
from kongctl.errors import EXIT_USAGE

# Formats the fast path prints; yaml loads PyYAML anyway, so it is left to click.
_LISTING_OUTPUTS = ("text", "json")


def run_fast(args: list[str]) -> int | None:
    """Run ``args`` when they are one of the handled command lines; None leaves them to click."""
    if not args:
        # click answers a bare `kongctl` with the help page on stderr and a usage status.
        sys.stderr.write(_root_help())
        return EXIT_USAGE
    if len(args) == 1 and args[0] in HELP_FLAGS:
        sys.stdout.write(_root_help())
        sys.stdout.flush()
        return 0
    if args == ["ps"]:
        return _list_processes(None)
    flag = _output_flag(args)
    if flag in _LISTING_OUTPUTS:
        return _list_processes(flag)
    return None


def _output_flag(args: list[str]) -> str | None:
    """The value of the one ``-o``/``--output`` in ``args`` when the rest is just ``ps``."""
    for index, arg in enumerate(args):
        if arg.startswith("--output="):
            value, rest = arg.partition("=")[2], args[:index] + args[index + 1 :]
        elif arg in ("-o", "--output") and index + 1 < len(args):
            value, rest = args[index + 1], args[:index] + args[index + 2 :]
        else:
            continue
        return value if rest == ["ps"] else None
    return None


def _list_processes(flag: str | None) -> int | None:
    from kongctl.cli.listing import collect_listing, print_listing
    from kongctl.cli.render import output_format
    from kongctl.config import config_dir, load_settings

    try:
        directory = config_dir()
        settings = load_settings("default", directory=directory)
        output = output_format(settings.get("output", flag, "text"))
        if output not in _LISTING_OUTPUTS:
            return None
        listing = collect_listing(directory)
    except Exception:
        # Nothing is printed yet: the click CLI runs the command again and reports the failure
        # the one way every command does.
        return None
    print_listing(listing, output)
    return 0


def _root_help() -> str:
    from kongctl.cli.helppage import help_width, root_help

    return root_help(help_width())
