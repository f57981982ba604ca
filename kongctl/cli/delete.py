"""``kongctl delete audit-logs``: delete a destination, or release the regional webhook."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from kongctl.cli.get import (
    HELP_OPTIONS,
    UNCONFIGURED,
    AliasGroup,
    add_resource,
    call_konnect,
    find_destination,
    konnect_options,
    read_webhook,
)
from kongctl.cli.render import emit
from kongctl.cli.root import cli_context, global_options
from kongctl.errors import ExecutionError

if TYPE_CHECKING:
    from kongctl.konnect.auditlogs import AuditLogsAPI

log = logging.getLogger(__name__)

# As long as a listener's shutdown waits: Konnect frees a released destination asynchronously.
IN_USE_BUDGET = 60.0


@dataclass(frozen=True)
class DeletedDestination:
    destination_id: str
    name: str
    webhook_released: bool


async def release_webhook(api: AuditLogsAPI) -> bool:
    """Disable the regional webhook, then remove its binding; False when nothing was bound.

    Disabling first stops deliveries even if the unbind fails, the order a listener's
    shutdown uses too.
    """
    await api.disable_webhook()
    released = await api.unbind_webhook()
    log.info("webhook released binding_removed=%s", released)
    return released


async def delete_destination(
    api: AuditLogsAPI,
    reference: str,
    *,
    force: bool,
    on_wait: Callable[[float], None] | None = None,
) -> DeletedDestination:
    """Delete a destination by id or name; refuse one the webhook uses unless ``force``."""
    destination = await find_destination(api, reference)
    destination_id = str(destination["id"])
    name = str(destination.get("name", ""))
    binding = await api.get_webhook_binding() or {}
    in_use = binding.get("audit_log_destination_id") == destination_id
    if in_use and not force:
        enabled = "true" if binding.get("enabled") else "false"
        raise ExecutionError(
            f'audit-log destination {destination_id} ("{name}") is used by the regional '
            f"audit-log webhook (enabled={enabled})",
            hint="stop the listener that uses it, or pass --force to release the webhook "
            "and delete the destination",
        )
    if in_use:
        await release_webhook(api)
    await api.delete_destination_when_free(destination_id, budget=IN_USE_BUDGET, on_wait=on_wait)
    log.info("destination deleted id=%s name=%s", destination_id, name)
    return DeletedDestination(destination_id, name, webhook_released=in_use)


async def release_regional_webhook(api: AuditLogsAPI) -> dict[str, Any]:
    """Free the region's webhook, however it was configured; returns what it was."""
    before = await read_webhook(api)
    if before["configured"] or before["enabled"]:
        await release_webhook(api)
        after = await api.get_webhook()
        endpoint = str(after.get("endpoint", ""))
        # Konnect may keep an in-place (v2) endpoint after the binding is gone; `listen`
        # would then still refuse the region, so say so instead of claiming success.
        if after.get("enabled") or endpoint.lower() != UNCONFIGURED:
            enabled = "true" if after.get("enabled") else "false"
            raise ExecutionError(
                "the regional audit-log webhook was released, but Konnect still shows it "
                f"configured (enabled={enabled}, endpoint={endpoint})",
                hint="clear the webhook in Konnect's organization settings",
            )
    return {
        "released": bool(before["configured"] or before["enabled"]),
        "was_enabled": before["enabled"],
        "destination_id": before["destination_id"],
        "endpoint": before["endpoint"] if before["configured"] else None,
    }


# The commands.


@click.group(cls=AliasGroup, context_settings=HELP_OPTIONS)
@global_options
def delete() -> None:
    """Delete an audit-log destination or release the regional webhook."""


@click.group("audit-logs", cls=AliasGroup, context_settings=HELP_OPTIONS)
@global_options
def audit_logs() -> None:
    """Audit-log destinations and the regional webhook.

    Also spelled audit-log or al.
    """


add_resource(delete, audit_logs)


@audit_logs.command("destination", context_settings=HELP_OPTIONS)
@click.argument("reference", metavar="ID|NAME")
@click.option(
    "--force",
    is_flag=True,
    help="Release the regional webhook first when it is bound to the destination.",
)
@konnect_options
def destination(reference: str, force: bool, **flags: Any) -> None:
    """Delete an audit-log destination, by id or by exact name.

    A destination the regional webhook is bound to is kept unless --force is given, which
    disables and unbinds the webhook first: a listener using it stops receiving events.
    """
    output = cli_context().output
    waiting = _WaitNotice()
    deleted = call_konnect(
        flags, lambda api: delete_destination(api, reference, force=force, on_wait=waiting)
    )
    document = {"deleted": deleted.destination_id, "webhook_released": deleted.webhook_released}
    emit(output, document, lambda: _deleted_text(deleted))


class _WaitNotice:
    """Tells the user once that Konnect still holds the destination, so a pause is explained."""

    def __init__(self) -> None:
        self.told = False

    def __call__(self, delay: float) -> None:
        if not self.told:
            self.told = True
            click.echo(
                "Konnect still reports the destination in use; retrying for up to "
                f"{IN_USE_BUDGET:g} s",
                err=True,
            )


def _deleted_text(deleted: DeletedDestination) -> str:
    lines = []
    if deleted.webhook_released:
        lines.append(
            "Released the regional audit-log webhook "
            f"(was bound to destination {deleted.destination_id})"
        )
    lines.append(f"Deleted audit-log destination: {deleted.destination_id}")
    return "\n".join(lines)


@audit_logs.command("webhook", context_settings=HELP_OPTIONS)
@konnect_options
def webhook(**flags: Any) -> None:
    """Release the regional audit-log webhook: disable it and remove its configuration.

    Frees a region left configured by a listener that crashed, so that `kongctl listen` can
    start. Destinations are kept.
    """
    output = cli_context().output
    outcome = call_konnect(flags, release_regional_webhook)
    emit(output, outcome, lambda: _released_text(outcome))


def _released_text(outcome: Mapping[str, Any]) -> str:
    if not outcome["released"]:
        return "The regional audit-log webhook was not configured"
    if outcome["destination_id"]:
        was = f"was bound to destination {outcome['destination_id']}"
    elif outcome["endpoint"]:
        was = f"was configured in place for {outcome['endpoint']}"
    else:
        was = "was enabled without an endpoint"
    return f"Released the regional audit-log webhook ({was})"
