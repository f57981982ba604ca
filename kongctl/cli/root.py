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
from kongctl.cli.render import output_format
from kongctl.cli.spec import COMMANDS, GLOBAL_FLAGS, HELP_FLAGS, ROOT_HELP, VERSION_FLAG_HELP
from kongctl.errors import EXIT_FAILURE, EXIT_USAGE, KongctlError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


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
        return output_format(self.settings.get("output", self.flags.get("output"), "text"))

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
    for flag in reversed(GLOBAL_FLAGS):
        option = click.option(
            *flag.names,
            metavar=flag.metavar,
            type=click.Choice(flag.choices, case_sensitive=False) if flag.choices else None,
            help=flag.help,
            callback=_remember(flag.key),
            expose_value=False,
        )
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
    lazy=COMMANDS,
    help=ROOT_HELP,
    context_settings={"help_option_names": list(HELP_FLAGS)},
)
@click.version_option(
    __version__,
    "--version",
    prog_name="kongctl",
    message="%(prog)s %(version)s",
    help=VERSION_FLAG_HELP,
)
@global_options
def cli() -> None:
    """The root group; `--help` shows ROOT_HELP, which the fast path renders too."""


def main(argv: list[str] | None = None) -> None:
    """``python -m kongctl``: the same as the ``kongctl`` command."""
    from kongctl.cli.main import main as kongctl_main

    kongctl_main(argv)


def run(argv: list[str] | None = None) -> int:
    """Run the click CLI and turn every error into ``Error: <message>`` and an exit status."""
    # Everything kongctl creates (store, logs, process records, their folders) is private;
    # mkdir(parents=True) would otherwise leave the parents to the user's umask.
    os.umask(0o077)
    _keep_logs_off_stderr()
    try:
        # Not cli.main(): it turns a broken pipe into exit status 1 before we can see it.
        args = sys.argv[1:] if argv is None else list(argv)
        with cli.make_context("kongctl", args) as ctx:
            result = cli.invoke(ctx)
    except (Exception, KeyboardInterrupt) as exc:
        return failure_status(exc)
    return result if isinstance(result, int) else 0


def failure_status(exc: BaseException) -> int:
    """Tell the user what went wrong, the one way every command does; the exit status."""
    _keep_logs_off_stderr()
    if isinstance(exc, click.exceptions.Exit):
        return int(exc.exit_code)
    if isinstance(exc, click.ClickException):
        exc.show()
        return EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    if isinstance(exc, click.exceptions.Abort | KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        return 130
    if isinstance(exc, KongctlError):
        _report(exc.message, exc.hint)
        log.debug("command failed", exc_info=exc)
        return exc.exit_code
    if isinstance(exc, BrokenPipeError):
        return _quiet_broken_pipe()
    # A bug: say so briefly, keep the details in the log.
    _report(f"unexpected failure: {type(exc).__name__}: {exc}", _log_traceback(exc))
    return EXIT_FAILURE


def _keep_logs_off_stderr() -> None:
    # Until a command opens the log file, log lines have nowhere to go but must not reach stderr.
    logger = logging.getLogger("kongctl")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


def _report(message: str, hint: str | None) -> None:
    # Konnect's or a proxy's error text may echo the request, token included.
    from kongctl.logs import redact

    click.echo(f"Error: {redact(message)}", err=True)
    if hint:
        click.echo(f"Hint: {redact(hint)}", err=True)


def _log_traceback(exc: BaseException) -> str | None:
    """Write the traceback of ``exc`` to the log file; return a hint naming the file."""
    obj = _last_context
    try:
        path = obj.log_path or obj.start_logging() if obj else None
    except KongctlError:
        path = None
    log.error("unexpected failure", exc_info=exc)
    return f"details are in the log file {path}" if path else None


def _quiet_broken_pipe() -> int:
    # The reader went away; point stdout at /dev/null so flushing at exit cannot fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0
