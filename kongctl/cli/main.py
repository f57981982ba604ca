"""The ``kongctl`` command: the fast path for ``--help`` and ``ps``, else the click CLI."""

from __future__ import annotations

import sys

from kongctl.cli.fast import run_fast


def main(argv: list[str] | None = None) -> None:
    """Run kongctl and exit with its status."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    """Run kongctl with ``argv`` (default: the process's arguments); return the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        status = run_fast(args)
    except (Exception, KeyboardInterrupt) as exc:
        # Ctrl-C, or a failure once output has begun (a closed pipe, a full disk): the click CLI
        # cannot start over, but it tells the user the way it does for every command.
        from kongctl.cli.root import failure_status

        return failure_status(exc)
    if status is not None:
        return status
    from kongctl.cli.root import run as run_cli

    return run_cli(args)
