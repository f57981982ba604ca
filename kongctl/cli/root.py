"""The command root: global flags, profiles, and the one place errors become messages."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import click

from kongctl import __version__
from kongctl.cli.render import OUTPUT_FORMATS
from kongctl.errors import EXIT_FAILURE, EXIT_USAGE, KongctlError, UsageError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Subcommands load on first use so that `kongctl --help` and `kongctl ps` stay fast.
_COMMANDS = {
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
_GLOBAL_KEYS = ("profile", "config_file", "output", "log_level", "log_file")


class CliContext:
    """Global flags as given, and the settings derived from them on first use."""

    def __init__(self) -> None:
        global _last_context
        self.flags: dict[str, Any] = {}
        self.log_path: Path | None = None
        _last_context = self

    @property
    def profile(self) -> str:
        value = self.flags.get("profile") or "default"
        return str(value)

    @cached_property
    def config_dir(self) -> Path:
        from kongctl.config import config_dir

        return config_dir()

    @cached_property
    def settings(self) -> Any:
        from kongctl.config import load_settings

        config_file = self.flags.get("config_file")
        return load_settings(
            self.profile,
            config_file=Path(config_file).expanduser() if config_file else None,
            directory=self.config_dir,
        )

    @property
    def output(self) -> str:
        value = str(self.settings.get("output", self.flags.get("output"), "text")).lower()
        if value not in OUTPUT_FORMATS:
            raise UsageError(f'invalid output format "{value}": use one of text|json|yaml')
        return value

    @property
    def log_level(self) -> str:
        return str(self.settings.get("log-level", self.flags.get("log_level"), "error"))

    def default_log_file(self) -> Path:
        return self.config_dir / "logs" / "kongctl.log"

    def start_logging(
        self, log_file: str | Path | None = None, *, at_least: str | None = None
    ) -> Path:
        """Open the log file; detached listeners pass their own file and level ``info``."""
        from kongctl.logs import parse_level, setup_logging

        target = log_file or self.settings.get(
            "log-file", self.flags.get("log_file"), self.default_log_file()
        )
        level = self.log_level
        if at_least is not None and parse_level(at_least) < parse_level(level):
            level = at_least
        self.log_path = setup_logging(level, target)
        return self.log_path


_last_context: CliContext | None = None


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.ensure_object(CliContext).flags[key] = value

    return callback


def global_options(func: F) -> F:
    """The global flags, accepted before or after the command name like the Go kongctl."""
    options = [
        click.option(
            "--profile",
            "-p",
            metavar="NAME",
            help="Configuration profile (default: default).",
            callback=_remember("profile"),
            expose_value=False,
        ),
        click.option(
            "--config-file",
            metavar="PATH",
            help="Config file (default: <config dir>/config.yaml).",
            callback=_remember("config_file"),
            expose_value=False,
        ),
        click.option(
            "--output",
            "-o",
            type=click.Choice(OUTPUT_FORMATS, case_sensitive=False),
            help="Output format (default: text).",
            callback=_remember("output"),
            expose_value=False,
        ),
        click.option(
            "--log-level",
            type=click.Choice(["trace", "debug", "info", "warn", "error"], case_sensitive=False),
            help="Log level (default: error).",
            callback=_remember("log_level"),
            expose_value=False,
        ),
        click.option(
            "--log-file",
            metavar="PATH",
            help="Log file; %PID% becomes the process id (default: <config dir>/logs/kongctl.log).",
            callback=_remember("log_file"),
            expose_value=False,
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def cli_context() -> CliContext:
    """The CliContext of the running command."""
    return click.get_current_context().ensure_object(CliContext)


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when they are used."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attribute, _summary = self.lazy[cmd_name]
            command = getattr(importlib.import_module(module_name), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Summaries come from the table, so `--help` imports no command module.
        rows = [(name, summary) for name, (_m, _a, summary) in sorted(self.lazy.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy=_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name="kongctl", message="%(prog)s %(version)s")
@global_options
def cli() -> None:
    """kongctl: receive Kong Konnect audit logs on your own machine.

    Global flags work before or after the command name.
    """


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and turn every error into ``Error: <message>`` and an exit status."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    # Everything kongctl creates (store, logs, process records, their folders) is private;
    # mkdir(parents=True) would otherwise leave the parents to the user's umask.
    os.umask(0o077)
    # Until a command opens the log file, log lines have nowhere to go but must not reach stderr.
    logging.getLogger("kongctl").addHandler(logging.NullHandler())
    logging.getLogger("kongctl").propagate = False
    try:
        # Not cli.main(): it turns a broken pipe into exit status 1 before we can see it.
        args = sys.argv[1:] if argv is None else list(argv)
        with cli.make_context("kongctl", args) as ctx:
            result = cli.invoke(ctx)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        return 130
    except KongctlError as exc:
        _report(exc.message, exc.hint)
        log.debug("command failed", exc_info=True)
        return exc.exit_code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Exception as exc:  # a bug: say so briefly, keep the details in the log
        _report(f"unexpected failure: {type(exc).__name__}: {exc}", _log_traceback())
        return EXIT_FAILURE
    return result if isinstance(result, int) else 0


def _report(message: str, hint: str | None) -> None:
    # Konnect's or a proxy's error text may echo the request, token included.
    from kongctl.logs import redact

    click.echo(f"Error: {redact(message)}", err=True)
    if hint:
        click.echo(f"Hint: {redact(hint)}", err=True)


def _log_traceback() -> str | None:
    """Write the current exception's traceback to the log file; return a hint naming it."""
    obj = _last_context
    try:
        path = obj.log_path or obj.start_logging() if obj else None
    except KongctlError:
        path = None
    log.error("unexpected failure", exc_info=True)
    return f"details are in the log file {path}" if path else None


def _quiet_broken_pipe() -> int:
    # The reader went away; point stdout at /dev/null so flushing at exit cannot fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0
