"""``konnect-emulator``: run a local stand-in for Konnect's audit-log API until a signal.

On start it prints exactly one line to stdout, ``konnect-emulator listening on <url>``; logs
go to stderr. SIGINT and SIGTERM stop it cleanly with exit status 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import click

from kongctl.emulator.app import EMULATOR_TOKEN, EmulatorConfig, start_emulator

logger = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any."
)
@click.option("--token", default=EMULATOR_TOKEN, show_default=True, help="The accepted PAT.")
@click.option(
    "--event-rate",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="New audit records per second; 0 makes records only on POST /_emulator/deliver.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Most records in one webhook request.",
)
@click.option("--seed", type=int, default=None, help="Make the signing key and records repeat.")
@click.option(
    "--content-encoding",
    type=click.Choice(["gzip", "application/gzip"]),
    default="gzip",
    show_default=True,
    help="Content-Encoding header of webhook requests.",
)
@click.option("--sign/--no-sign", default=True, show_default=True, help="Ed25519-sign records.")
@click.option(
    "--retry-base",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds before the first delivery retry; doubles each retry.",
)
@click.option(
    "--retry-max",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Longest pause between delivery retries, in seconds.",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Retries of a batch after connection errors, 429 and 5xx.",
)
@click.option(
    "--replay-delay",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Seconds a replay job spends in each of its accepted and running states.",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Extra CA certificates (PEM) trusted for HTTPS webhook endpoints.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default="info",
    show_default=True,
    help="Diagnostics on stderr.",
)
def main(
    host: str,
    port: int,
    token: str,
    event_rate: float,
    batch_size: int,
    seed: int | None,
    content_encoding: str,
    sign: bool,
    retry_base: float,
    retry_max: float,
    max_retries: int,
    replay_delay: float,
    ca_file: str | None,
    log_level: str,
) -> None:
    """Serve a local Konnect audit-log API (v2 and v3) and deliver audit records."""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    config = EmulatorConfig(
        token=token,
        event_rate=event_rate,
        batch_size=batch_size,
        seed=seed,
        content_encoding="gzip" if content_encoding == "gzip" else "application/gzip",
        sign=sign,
        retry_base=retry_base,
        retry_max=retry_max,
        max_retries=max_retries,
        replay_delay=replay_delay,
        ca_file=ca_file,
    )
    try:
        asyncio.run(_serve(config, host, port))
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc


async def _serve(config: EmulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    running = await start_emulator(config, host, port)
    try:
        click.echo(f"konnect-emulator listening on {running.url}")
        sys.stdout.flush()
        await stop.wait()
        logger.info("signal received, stopping")
    finally:
        await running.stop()


if __name__ == "__main__":
    main()
