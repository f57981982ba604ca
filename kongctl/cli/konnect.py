"""Konnect connection flags (--pat, --base-url, --region) and the client they describe."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from kongctl.cli.root import CliContext
from kongctl.config import env_var_name
from kongctl.errors import UsageError

if TYPE_CHECKING:
    from kongctl.konnect.client import KonnectClient


def options() -> list[Callable[..., Any]]:
    return [
        click.option("--pat", help="Konnect personal access token (prefer env or config)."),
        click.option("--base-url", help="Konnect API base URL; every call goes there."),
        click.option("--region", help="Konnect region, e.g. us, eu, au (default: us)."),
    ]


@dataclass(frozen=True)
class Connection:
    """Where and how to reach Konnect, already validated."""

    token: str
    base_url: str | None
    region: str | None

    @property
    def region_label(self) -> str:
        return "" if self.base_url else (self.region or "us")

    def client(self) -> KonnectClient:
        from kongctl.konnect.client import KonnectClient

        return KonnectClient(self.token, base_url=self.base_url, region=self.region)


def resolve(ctx: CliContext, flags: Mapping[str, Any]) -> Connection:
    """Token, base URL and region from flag > env > config; checked before any call."""
    from kongctl.konnect.client import resolve_base_urls
    from kongctl.logs import register_secret

    settings = ctx.settings
    token = settings.get("konnect.pat", flags.get("pat"))
    if not token or not str(token).strip():
        raise UsageError(
            "no Konnect token: pass --pat, set "
            f"{env_var_name(ctx.profile, 'konnect.pat')}, or add konnect.pat to profile "
            f'"{ctx.profile}" in {settings.file_path}'
        )
    base_url = settings.get("konnect.base-url", flags.get("base_url"))
    region = settings.get("konnect.region", flags.get("region"))
    resolve_base_urls(base_url, region)
    register_secret(str(token))
    return Connection(token=str(token).strip(), base_url=base_url, region=region)
