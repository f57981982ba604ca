"""The command line as plain data: the commands, the global flags and the root help text.

The click CLI (``kongctl.cli.root``) and the fast path (``kongctl.cli.fast``) both build on
these tables, so ``kongctl --help`` reads the same whichever of them prints it. Importing this
module must stay cheap: it imports nothing.
"""

from __future__ import annotations

OUTPUT_FORMATS = ("text", "json", "yaml")
LOG_LEVELS = ("trace", "debug", "info", "warn", "error")

ROOT_HELP = """kongctl: receive Kong Konnect audit logs on your own machine.

Global flags work before or after the command name."""

# Command name: (module, attribute, summary). Subcommands load on first use, so that
# `kongctl --help` and `kongctl ps` stay fast; `--help` shows the summaries from here.
COMMANDS = {
    "listen": (
        "kongctl.cli.listen",
        "listen",
        "Receive Konnect audit-log events into a local store.",
    ),
    "tail": ("kongctl.cli.listen", "tail", "Receive audit-log events and stream them to stdout."),
    "ps": ("kongctl.cli.ps", "ps", "List, stop and read the logs of detached listeners."),
    "get": (
        "kongctl.cli.get",
        "get",
        "Show destinations, the webhook, replay jobs, stored events.",
    ),
    "delete": ("kongctl.cli.delete", "delete", "Delete a destination or release the webhook."),
    "replay": ("kongctl.cli.replay", "replay", "Ask Konnect to re-send past audit-log events."),
}


class GlobalFlag:
    """A global flag: its names, its value's metavar or choices, and its help."""

    __slots__ = ("choices", "help", "key", "metavar", "names")

    def __init__(
        self,
        key: str,
        names: tuple[str, ...],
        help: str,
        *,
        metavar: str | None = None,
        choices: tuple[str, ...] = (),
    ) -> None:
        self.key = key
        self.names = names
        self.help = help
        self.metavar = metavar
        self.choices = choices


GLOBAL_FLAGS = (
    GlobalFlag(
        "profile", ("--profile", "-p"), "Configuration profile (default: default).", metavar="NAME"
    ),
    GlobalFlag(
        "config_file",
        ("--config-file",),
        "Config file (default: <config dir>/config.yaml).",
        metavar="PATH",
    ),
    GlobalFlag(
        "output", ("--output", "-o"), "Output format (default: text).", choices=OUTPUT_FORMATS
    ),
    GlobalFlag("log_level", ("--log-level",), "Log level (default: error).", choices=LOG_LEVELS),
    GlobalFlag(
        "log_file",
        ("--log-file",),
        "Log file; %PID% becomes the process id (default: <config dir>/logs/kongctl.log).",
        metavar="PATH",
    ),
)

# The root's own flags around the global ones: `--version` first, the help flag last.
VERSION_FLAG_HELP = "Show the version and exit."
HELP_FLAGS = ("-h", "--help")
# click's own wording for the help flag it adds; tests/cli/test_fast_path.py compares both pages.
HELP_FLAG_HELP = "Show this message and exit."
