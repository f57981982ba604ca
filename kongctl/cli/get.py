"""``kongctl get audit-logs``: destinations, the regional webhook, its status, the replay job.

This module also holds what the audit-log verbs (get, delete, replay) share: the group that
answers to ``audit-logs``, ``audit-log`` and ``al``, the Konnect flags, one Konnect
conversation per command, and finding a destination by id or name. It imports no HTTP
library, so that ``kongctl get --help`` stays quick.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kongctl.cli import konnect as konnect_flags
from kongctl.cli.render import emit, table
from kongctl.cli.root import cli_context, global_options
from kongctl.errors import ExecutionError, KonnectAPIError

if TYPE_CHECKING:
    from kongctl.cli.konnect import Connection
    from kongctl.konnect.auditlogs import AuditLogsAPI, Destination

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
RESOURCE = "audit-logs"
RESOURCE_ALIASES = {"audit-log": RESOURCE, "al": RESOURCE}
UNCONFIGURED = "unconfigured"
# Konnect's value for "never": the replay job and webhook status start with it.
ZERO_TIME = "0001-01-01T00:00:00Z"
EVENTS_MODULE = "kongctl.cli.events"
LIST_HINT = "`kongctl get audit-logs destinations` lists them"


class AliasGroup(click.Group):
    """A click group whose subcommands also answer to other names (``al`` for ``audit-logs``)."""

    def __init__(self, *args: Any, aliases: Mapping[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.aliases = dict(aliases or {})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))


class AuditLogsGroup(AliasGroup):
    """``get audit-logs``; its ``events`` command lives in its own module, loaded on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        if _events_available():
            names.add("events")
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "events" and "events" not in self.commands and _events_available():
            command = getattr(importlib.import_module(EVENTS_MODULE), "events", None)
            if not isinstance(command, click.Command):
                raise ExecutionError(f"{EVENTS_MODULE} does not define the events command")
            return command
        return super().get_command(ctx, cmd_name)


def _events_available() -> bool:
    # The events command is built separately; until its module exists, the group goes without.
    return importlib.util.find_spec(EVENTS_MODULE) is not None


def add_resource(verb: click.Group, resource: click.Command) -> None:
    """Register ``resource`` as ``<verb> audit-logs`` (or audit-log, al), with or without konnect.

    ``kongctl get konnect audit-logs ...`` is accepted like ``kongctl listen konnect audit-logs``.
    """
    verb.add_command(resource, RESOURCE)
    if isinstance(verb, AliasGroup):
        verb.aliases.update(RESOURCE_ALIASES)

    @click.group("konnect", cls=AliasGroup, hidden=True, context_settings=HELP_OPTIONS)
    @global_options
    def konnect() -> None:
        """Konnect resources (the word konnect may be left out)."""

    assert isinstance(konnect, AliasGroup)
    konnect.aliases.update(RESOURCE_ALIASES)
    konnect.add_command(resource, RESOURCE)
    verb.add_command(konnect)


def konnect_options(func: F) -> F:
    """The Konnect connection flags and the global flags, for one command."""
    for option in reversed([*konnect_flags.options(), global_options]):
        func = option(func)
    return func


def call_konnect(flags: Mapping[str, Any], work: Callable[[AuditLogsAPI], Awaitable[T]]) -> T:
    """Check the connection flags, open the log file, then run ``work`` against Konnect."""
    ctx = cli_context()
    connection = konnect_flags.resolve(ctx, flags)
    ctx.start_logging()
    return asyncio.run(_with_api(connection, work))


async def _with_api(connection: Connection, work: Callable[[AuditLogsAPI], Awaitable[T]]) -> T:
    from kongctl.konnect.auditlogs import AuditLogsAPI

    async with connection.client() as client:
        return await work(AuditLogsAPI(client))


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


async def find_destination(api: AuditLogsAPI, reference: str) -> Destination:
    """The destination whose id (a UUID) or exact name is ``reference``; ExecutionError if none."""
    if is_uuid(reference):
        try:
            return await api.get_destination(reference)
        except KonnectAPIError as exc:
            if exc.status != 404:
                raise
        raise ExecutionError(f"no audit-log destination with id {reference}", hint=LIST_HINT)
    found = await api.find_destination_by_name(reference)
    if found is None:
        raise ExecutionError(f'no audit-log destination named "{reference}"', hint=LIST_HINT)
    return found


async def read_webhook(api: AuditLogsAPI) -> dict[str, Any]:
    """The regional webhook as one document: the v2 settings and the v3 destination binding."""
    settings = await api.get_webhook()
    binding = await api.get_webhook_binding()
    destination_id = binding.get("audit_log_destination_id") if binding else None
    endpoint = settings.get("endpoint")
    if destination_id:
        configuration = "destination"
    elif endpoint and str(endpoint).lower() != UNCONFIGURED:
        configuration = "in-place"
    else:
        configuration = "none"
    return {
        "configured": configuration != "none",
        "configuration": configuration,
        "enabled": bool(settings.get("enabled")),
        "endpoint": endpoint,
        "destination_id": destination_id,
        "log_format": settings.get("log_format"),
        "skip_ssl_verification": settings.get("skip_ssl_verification"),
        "updated_at": settings.get("updated_at"),
    }


def fields_text(rows: Sequence[tuple[str, Any]]) -> str:
    """Aligned ``label: value`` lines; empty values and Konnect's zero time print as ``-``."""
    width = max(len(label) for label, _ in rows) + 1
    return "\n".join(f"{(label + ':').ljust(width)} {cell(value)}" for label, value in rows)


def cell(value: Any) -> str:
    if value is None or value == "" or value == ZERO_TIME:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# The commands.


@click.group(cls=AliasGroup, context_settings=HELP_OPTIONS)
@global_options
def get() -> None:
    """Show Konnect audit-log resources: destinations, the webhook, the replay job."""


@click.group("audit-logs", cls=AuditLogsGroup, context_settings=HELP_OPTIONS)
@global_options
def audit_logs() -> None:
    """Audit-log destinations, the webhook, the replay job.

    Also spelled audit-log or al.
    """


add_resource(get, audit_logs)


@audit_logs.command("destinations", context_settings=HELP_OPTIONS)
@konnect_options
def destinations(**flags: Any) -> None:
    """List every audit-log destination of the organization."""
    output = cli_context().output

    async def work(api: AuditLogsAPI) -> list[Destination]:
        return [destination async for destination in api.iter_destinations()]

    found = call_konnect(flags, work)
    emit(output, found, lambda: destinations_text(found))


def destinations_text(found: Sequence[Destination]) -> str:
    if not found:
        return "No audit-log destinations found."
    headers = ("ID", "NAME", "ENDPOINT", "FORMAT", "SKIP-TLS", "CREATED")
    rows = [
        (
            item.get("id"),
            item.get("name"),
            item.get("endpoint"),
            item.get("log_format"),
            cell(item.get("skip_ssl_verification")),
            item.get("created_at"),
        )
        for item in found
    ]
    return table(headers, rows)


@audit_logs.command("destination", context_settings=HELP_OPTIONS)
@click.argument("reference", metavar="ID|NAME")
@konnect_options
def destination(reference: str, **flags: Any) -> None:
    """Show one audit-log destination, by id or by exact name."""
    output = cli_context().output
    found = call_konnect(flags, lambda api: find_destination(api, reference))
    emit(output, found, lambda: destination_text(found))


def destination_text(found: Destination) -> str:
    return fields_text(
        [
            ("id", found.get("id")),
            ("name", found.get("name")),
            ("endpoint", found.get("endpoint")),
            ("log format", found.get("log_format")),
            ("skip TLS verification", found.get("skip_ssl_verification")),
            ("created", found.get("created_at")),
            ("updated", found.get("updated_at")),
        ]
    )


@audit_logs.command("webhook", context_settings=HELP_OPTIONS)
@konnect_options
def webhook(**flags: Any) -> None:
    """Show the regional webhook and the destination it is bound to."""
    output = cli_context().output
    document = call_konnect(flags, read_webhook)
    emit(output, document, lambda: webhook_text(document))


def webhook_text(document: Mapping[str, Any]) -> str:
    configuration = {
        "destination": f"bound to destination {document['destination_id']}",
        "in-place": "configured in place (v2, no destination)",
        "none": "not configured",
    }[document["configuration"]]
    return fields_text(
        [
            ("regional webhook", configuration),
            ("enabled", document["enabled"]),
            ("endpoint", document["endpoint"]),
            ("destination", document["destination_id"]),
            ("log format", document["log_format"]),
            ("skip TLS verification", document["skip_ssl_verification"]),
            ("updated", document["updated_at"]),
        ]
    )


@audit_logs.command("webhook-status", context_settings=HELP_OPTIONS)
@konnect_options
def webhook_status(**flags: Any) -> None:
    """Show how the last delivery to the regional webhook went."""
    output = cli_context().output

    async def work(api: AuditLogsAPI) -> dict[str, Any]:
        return await api.get_webhook_status()

    status = call_konnect(flags, work)
    emit(output, status, lambda: webhook_status_text(status))


def webhook_status_text(status: Mapping[str, Any]) -> str:
    code = status.get("last_response_code")
    return fields_text(
        [
            ("status", status.get("webhook_status")),
            ("enabled", status.get("webhook_enabled")),
            ("last attempt", status.get("last_attempt_at")),
            ("last response code", code or None),
            ("last response message", status.get("last_response_message")),
        ]
    )


@audit_logs.command("replay-job", context_settings=HELP_OPTIONS)
@konnect_options
def replay_job(**flags: Any) -> None:
    """Show the replay job: its time range and status."""
    output = cli_context().output

    async def work(api: AuditLogsAPI) -> dict[str, Any]:
        return await api.get_replay_job()

    job = call_konnect(flags, work)
    emit(output, job, lambda: replay_job_text(job))


def replay_job_text(job: Mapping[str, Any]) -> str:
    return fields_text(
        [
            ("status", job.get("status")),
            ("start at", job.get("start_at")),
            ("end at", job.get("end_at")),
            ("updated", job.get("updated_at")),
        ]
    )
