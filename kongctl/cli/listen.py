"""`kongctl listen` and `kongctl tail`: parse and validate, then run or detach a listener."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from kongctl.auditlogs.options import (
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PATH,
    ListenOptions,
    check_authorization,
    check_backlog,
    check_modes,
    check_tls,
    default_listener_name,
    normalize_path,
    parse_log_format,
    resolve_endpoint,
)
from kongctl.auditlogs.rotation import DEFAULT_ROTATE_SIZE, RotationPolicy
from kongctl.cli import konnect as konnect_flags
from kongctl.cli.render import emit
from kongctl.cli.root import CliContext, cli_context, global_options
from kongctl.cli.timespec import parse_duration
from kongctl.config import env_var_name
from kongctl.errors import UsageError
from kongctl.sizes import parse_size

log = logging.getLogger(__name__)

_RESOURCE_NAMES = ("audit-logs", "audit-log", "al")
_SECRET_FLAGS = ("--pat", "--authorization")
_FORMS = "kongctl {verb} [konnect] [audit-logs]"


def _bool_option(name: str, default: bool | None, help_text: str) -> Callable[..., Any]:
    # `--flag` alone means true and `--flag=false` works too, as in the Go kongctl.
    return click.option(
        name, type=click.BOOL, default=default, is_flag=False, flag_value=True, help=help_text
    )


def listener_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("forms", nargs=-1, metavar="[konnect] [audit-logs]"),
        click.option("--endpoint", help="Public URL Konnect delivers to, path included."),
        click.option("--public-url", help="Public base URL; --path is appended to it."),
        click.option("--path", default=DEFAULT_PATH, show_default=True, help="Listen path."),
        click.option(
            "--listen-address",
            default=DEFAULT_LISTEN_ADDRESS,
            show_default=True,
            help="Local address to bind, host:port.",
        ),
        click.option(
            "--max-body-bytes",
            default=str(DEFAULT_MAX_BODY_BYTES),
            show_default=True,
            help="Largest request body, before and after decompression (bytes, or KiB/MiB).",
        ),
        click.option("--name", help="Destination name (default: kongctl-<host>-<pid>)."),
        click.option(
            "--log-format", default="json", show_default=True, help="Record format: cef|json|cps."
        ),
        _bool_option(
            "--skip-ssl-verification", False, "Konnect skips TLS verification on delivery."
        ),
        click.option(
            "--authorization",
            help="Authorization header value Konnect must send (required; or env/config).",
        ),
        _bool_option("--configure-webhook", True, "Bind the regional webhook (default true)."),
        _bool_option("--tail", None, "Print each stored record to stdout."),
        click.option("--jq", "jq_expression", help="jq filter for tailed records."),
        click.option(
            "-n",
            "--lines",
            type=click.IntRange(min=0),
            metavar="N",
            help="With --tail: first print the last N stored records.",
        ),
        click.option(
            "--rotate-size",
            metavar="SIZE",
            help="Rotate the events file past this size (default 64MiB; KiB, MiB, GiB).",
        ),
        click.option(
            "--retention",
            metavar="DURATION",
            help="Delete rotated files older than this (7d, 36h; default: keep all).",
        ),
        click.option(
            "--retain-files",
            metavar="N",
            help="Keep at most N rotated files (default: keep all).",
        ),
        _bool_option(
            "--verify-signatures", False, "Check each record's Ed25519 signature (Konnect JWKS)."
        ),
        _bool_option("--detach", False, "Run the listener in the background."),
        click.option("-d", "detach_short", is_flag=True, help="Same as --detach."),
        click.option("--tls-cert-file", type=click.Path(path_type=Path), help="Serve HTTPS."),
        click.option("--tls-key-file", type=click.Path(path_type=Path), help="Key for HTTPS."),
        *konnect_flags.options(),
        global_options,
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@listener_options
def listen(**flags: Any) -> None:
    """Receive Konnect audit-log events into a local JSONL store.

    Creates an audit-log destination in Konnect, binds the region's audit-log webhook to it,
    stores every record it receives, and removes both from Konnect when it stops.
    """
    _run(verb="listen", tail_default=False, flags=flags)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@listener_options
def tail(**flags: Any) -> None:
    """Receive Konnect audit-log events and print each record to stdout.

    The same as `kongctl listen --tail`: records are stored first, then printed.
    """
    _run(verb="tail", tail_default=True, flags=flags)


def check_forms(verb: str, forms: Sequence[str]) -> None:
    words = list(forms)
    if words and words[0] == "konnect":
        words = words[1:]
        if not words:
            raise UsageError(f'"{verb} konnect" needs a resource: {_FORMS.format(verb=verb)}')
    if len(words) > 1 or (words and words[0] not in _RESOURCE_NAMES):
        raise UsageError(f"unexpected argument {' '.join(forms)!r}: use {_FORMS.format(verb=verb)}")


def build_options(
    verb: str, tail_default: bool, flags: Mapping[str, Any], settings: Any = None
) -> ListenOptions:
    """All validation, in the order users meet it, before anything touches the network.

    ``settings`` (the profile's configuration) supplies the storage keys no flag gives.
    """
    from kongctl.auditlogs.receiver import parse_listen_address

    check_forms(verb, flags["forms"])
    authorization = check_authorization(
        settings.get("audit-logs.authorization", flags["authorization"])
        if settings is not None
        else flags["authorization"],
        env_name=env_var_name(settings.profile, "audit-logs.authorization") if settings else None,
    )
    tail = tail_default if flags["tail"] is None else bool(flags["tail"])
    detach = bool(flags["detach"] or flags["detach_short"])
    check_modes(tail=tail, detach=detach, jq=flags["jq_expression"])
    backlog = check_backlog(flags.get("lines"), tail=tail)
    if flags["jq_expression"] is not None:
        _compile_jq(flags["jq_expression"])
    path = normalize_path(flags["path"])
    endpoint = resolve_endpoint(flags["endpoint"], flags["public_url"], path)
    log_format = parse_log_format(flags["log_format"])
    host, port = parse_listen_address(flags["listen_address"])
    max_body = parse_size(flags["max_body_bytes"], flag="--max-body-bytes")
    if max_body <= 0:
        raise UsageError("--max-body-bytes must be greater than 0")
    check_tls(flags["tls_cert_file"], flags["tls_key_file"])
    rotation = rotation_policy(flags, settings)
    return ListenOptions(
        endpoint=endpoint,
        public_url=flags["public_url"],
        path=path,
        listen_host=host,
        listen_port=port,
        max_body_bytes=max_body,
        name=flags["name"] or default_listener_name(),
        log_format=log_format,
        skip_ssl_verification=bool(flags["skip_ssl_verification"]),
        authorization=authorization,
        configure_webhook=bool(flags["configure_webhook"]),
        tail=tail,
        jq=flags["jq_expression"],
        detach=detach,
        tls_cert_file=flags["tls_cert_file"],
        tls_key_file=flags["tls_key_file"],
        rotation=rotation,
        backlog=backlog,
        verify_signatures=bool(flags["verify_signatures"]),
    )


def rotation_policy(flags: Mapping[str, Any], settings: Any = None) -> RotationPolicy:
    """--rotate-size, --retention and --retain-files, else their profile keys, else defaults."""
    size_value, size_name = _setting(settings, flags, "rotate-size", DEFAULT_ROTATE_SIZE)
    rotate_size = parse_size(
        size_value if isinstance(size_value, int) else str(size_value), flag=size_name
    )
    if rotate_size <= 0:
        raise UsageError(f"{size_name} must be greater than 0")

    retention = None
    retention_value, retention_name = _setting(settings, flags, "retention", None)
    if retention_value is not None:
        retention = parse_duration(str(retention_value), flag=retention_name)
        if not retention:
            raise UsageError(f"{retention_name} must be longer than 0")

    retain_files = None
    count_value, count_name = _setting(settings, flags, "retain-files", None)
    if count_value is not None:
        text = str(count_value).strip()
        if not text.isdigit():
            raise UsageError(f'invalid {count_name} "{count_value}": give a whole number, e.g. 30')
        retain_files = int(text)
    return RotationPolicy(rotate_size, retention, retain_files)


def _setting(settings: Any, flags: Mapping[str, Any], name: str, default: Any) -> tuple[Any, str]:
    """A storage setting's value and how to name it in an error: the flag or the profile key."""
    flag = flags.get(name.replace("-", "_"))
    if settings is None:
        return (default if flag is None else flag), f"--{name}"
    key = f"audit-logs.{name}"
    source = settings.source_of(key, flag)
    label = {
        "flag": f"--{name}",
        "env": env_var_name(settings.profile, key),
        "file": f"{key} in the config file",
    }.get(source, f"--{name}")
    return settings.get(key, flag, default), label


def _compile_jq(expression: str) -> Any:
    from kongctl.auditlogs.tail import JqFilter

    return JqFilter.compile(expression)


def _run(*, verb: str, tail_default: bool, flags: Mapping[str, Any]) -> None:
    ctx = cli_context()
    options = build_options(verb, tail_default, flags, ctx.settings)
    connection = konnect_flags.resolve(ctx, flags)
    from kongctl.logs import register_secret

    register_secret(options.authorization)
    if options.detach:
        _detach(ctx, options, connection)
        return
    _check_port_free(options)
    _listen_here(ctx, options, connection)


def _check_port_free(options: ListenOptions) -> None:
    from kongctl.auditlogs.receiver import bind_listen_socket

    bind_listen_socket(options.listen_host, options.listen_port).close()


def _detach(ctx: CliContext, options: ListenOptions, connection: Any) -> None:
    from kongctl.processes.detach import spawn_detached, strip_value_flags

    _check_port_free(options)
    # Secrets reach the child through its environment, which only its user can read,
    # never through its command line, which every user of the machine can.
    result = spawn_detached(
        strip_value_flags(sys.argv[1:], _SECRET_FLAGS),
        config_dir=ctx.config_dir,
        profile=ctx.profile,
        log_dir=ctx.config_dir / "logs",
        extras={"listen_address": options.listen_address, "endpoint": options.endpoint},
        environment={
            env_var_name(ctx.profile, "konnect.pat"): connection.token,
            env_var_name(ctx.profile, "audit-logs.authorization"): options.authorization,
        },
    )
    info = {
        "pid": result.pid,
        "log_file": str(result.log_file),
        "record_file": str(result.record_file),
    }
    emit(
        ctx.output,
        info,
        lambda: "\n".join(
            [
                "Detached Konnect audit-log listener started.",
                f"  pid: {result.pid}",
                f"  log file: {result.log_file}",
                f"  process record: {result.record_file}",
                f"Follow it with: kongctl ps logs {result.pid} --follow",
            ]
        ),
    )


def _listen_here(ctx: CliContext, options: ListenOptions, connection: Any) -> None:
    from kongctl.processes import detach

    child = detach.is_detached_child()
    if child:
        # Nobody watches a detached listener: its log must tell what happened.
        log_file = ctx.config_dir / "logs" / f"kongctl-listener-{os.getpid()}.log"
        ctx.start_logging(log_file, at_least="info")
    else:
        ctx.start_logging()
    # Imported here: only a listener that runs needs it, not --help or a rejected flag.
    # uvloop's event loop does the per-request socket and scheduling work in C: more
    # acknowledged batches per second on the same cores (docs/performance.md).
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_session_main(ctx, options, connection))
    except Exception as exc:
        if child:
            detach.report_failed(str(getattr(exc, "message", exc)))
        raise
    if child:
        detach.remove_own_record(ctx.config_dir)


async def _session_main(ctx: CliContext, options: ListenOptions, connection: Any) -> None:
    from kongctl.auditlogs.session import ListenSession, SessionIO
    from kongctl.auditlogs.store import profile_store_dir
    from kongctl.konnect.auditlogs import AuditLogsAPI
    from kongctl.processes import detach

    output = ctx.output
    printer = _make_printer(options) if options.tail else None
    async with connection.client() as client:
        api = AuditLogsAPI(client)
        session = ListenSession(
            options=options,
            api=api,
            store_dir=profile_store_dir(ctx.config_dir, ctx.profile),
            profile=ctx.profile,
            region_label=connection.region_label,
            io=SessionIO(
                summary=lambda info: _print_summary(output, options, info, ctx.log_path),
                notice=lambda text: _notice(options, text),
                finished=lambda report: _print_finished(output, options, report),
                on_ready=detach.report_ready,
            ),
            verification=_verification(options, api),
        )
        if printer is not None:
            session.io.on_records = printer.bind(session)
        await session.run()


def _make_printer(options: ListenOptions) -> Any:
    from kongctl.auditlogs.tail import JqFilter, TailClosed, TailWriter

    jq_filter = JqFilter.compile(options.jq) if options.jq is not None else None
    writer = TailWriter(sys.stdout.buffer, jq_filter, warn=lambda line: click.echo(line, err=True))

    class Printer:
        def bind(self, session: Any) -> Callable[[Sequence[bytes]], None]:
            def on_records(records: Sequence[bytes]) -> None:
                try:
                    writer.write_records(records)
                except TailClosed:
                    log.info("stdout closed, stopping")
                    session.stop()

            return on_records

    return Printer()


def _verification(options: ListenOptions, api: Any) -> Any:
    if not options.verify_signatures:
        return None
    from kongctl.auditlogs.signatures import SignatureVerifier
    from kongctl.auditlogs.verification import RecordVerification

    warn = (lambda line: click.echo(line, err=True)) if options.tail else None
    return RecordVerification(SignatureVerifier(api.get_jwks), warn=warn)


def _print_finished(output: str, options: ListenOptions, report: Mapping[str, Any]) -> None:
    from kongctl.auditlogs.verification import summary_line

    if output != "text" and not options.tail:
        emit(output, dict(report), "")
        return
    deleted = report["deleted_destination_id"]
    lines = [
        f"Listener stopped. Deleted audit-log destination: {deleted}"
        if deleted
        else "Listener stopped."
    ]
    if "signatures" in report:
        lines.append(summary_line(report["signatures"]))
    for line in lines:
        _notice(options, line)


def _notice(options: ListenOptions, text: str) -> None:
    # In tail mode stdout carries records only.
    click.echo(text, err=options.tail)


def _print_summary(
    output: str, options: ListenOptions, info: Mapping[str, Any], log_path: Path | None
) -> None:
    document = {
        **info,
        "tail": options.tail,
        "verify_signatures": options.verify_signatures,
        "log_file": str(log_path) if log_path else None,
    }
    if options.tail:
        log.info("listener started %s", document)
        click.echo(f"Listening on {info['local_endpoint']} (Ctrl-C to stop)", err=True)
        return
    emit(output, document, lambda: _summary_text(options, info, log_path))


def _summary_text(options: ListenOptions, info: Mapping[str, Any], log_path: Path | None) -> str:
    webhook = "bound and enabled" if info["webhook_configured"] else "not configured (by request)"
    rows = [
        ("profile", info["profile"]),
        ("listening on", info["local_endpoint"]),
        ("konnect delivers to", info["destination_endpoint"]),
        ("destination", f"{info['destination_id']} ({info['destination_name']})"),
        ("log format", info["log_format"]),
        ("regional webhook", f"{webhook}{' in ' + info['region'] if info['region'] else ''}"),
        ("events file", info["events_file"]),
        ("log file", str(log_path) if log_path else "-"),
        (
            "signatures",
            "checked against Konnect's keys (counts at stop)"
            if options.verify_signatures
            else "not checked (--verify-signatures)",
        ),
    ]
    width = max(len(label) for label, _ in rows) + 1
    lines = ["Konnect audit-log listener started."]
    lines += [f"  {(label + ':').ljust(width)} {value}" for label, value in rows]
    lines.append("Press Ctrl-C to stop; the destination and webhook are removed from Konnect.")
    return "\n".join(lines)
