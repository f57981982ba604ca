"""The one place that orders a listen: bind, set Konnect up, serve, and clean Konnect up.

Whatever happens after the destination exists (a failed webhook update, a crash while writing
state files, a signal during setup), the session releases the webhook and deletes the
destination before it returns, and says exactly what is left behind when it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kongctl.auditlogs.options import ListenOptions
from kongctl.auditlogs.reader import last_stored_records
from kongctl.auditlogs.receiver import Receiver, ReceiverConfig, bind_listen_socket
from kongctl.auditlogs.store import EventStore, write_state_file
from kongctl.auditlogs.verification import RecordVerification
from kongctl.errors import ExecutionError, KongctlError, KonnectConnectionError, KonnectError
from kongctl.konnect.auditlogs import AuditLogsAPI

log = logging.getLogger(__name__)

DESTINATION_DELETE_BUDGET = 60.0
UNCONFIGURED = "unconfigured"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Konnected:
    """What this listener created in Konnect, so cleanup knows what to undo."""

    destination_id: str | None = None
    destination_name: str | None = None
    webhook_bound: bool = False
    create_unanswered: bool = False  # the create call got no answer: it may exist anyway


@dataclass
class SessionIO:
    """Where the session speaks: the summary, the goodbye, and warnings."""

    summary: Callable[[Mapping[str, Any]], None]
    notice: Callable[[str], None]
    on_ready: Callable[[Mapping[str, Any]], None] = lambda _info: None
    on_records: Callable[[Sequence[bytes]], None] | None = None
    finished: Callable[[Mapping[str, Any]], None] = lambda _report: None


@dataclass
class ListenSession:
    options: ListenOptions
    api: AuditLogsAPI
    store_dir: Path
    io: SessionIO
    profile: str = "default"
    region_label: str = ""
    konnect: Konnected = field(default_factory=Konnected)
    drain_timeout: float = 10.0
    delete_budget: float = DESTINATION_DELETE_BUDGET
    verification: RecordVerification | None = None

    def __post_init__(self) -> None:
        self._stop = asyncio.Event()
        self._phase = "setup"
        self._signals = 0
        self._task: asyncio.Task[Any] | None = None
        self._receiver: Receiver | None = None
        self._store = EventStore(self.store_dir, rotation=self.options.rotation)

    @property
    def events_file(self) -> Path:
        return self._store.path

    async def run(self) -> None:
        """Listen until a signal or a closed tail, then clean up; raises on failure."""
        # Past a file-size limit, writes must fail with EFBIG (a 500 and no partial line)
        # instead of the default SIGXFSZ killing the listener.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self._task = asyncio.current_task()
        self._install_signal_handlers()
        try:
            sock = bind_listen_socket(self.options.listen_host, self.options.listen_port)
            try:
                await self._serve(sock)
            finally:
                sock.close()
        except asyncio.CancelledError:
            if self._signals == 0:
                raise
            log.info("listener stopped during setup by signal")
        finally:
            self._remove_signal_handlers()

    async def _serve(self, sock: socket.socket) -> None:
        ssl_context = _tls(self.options)  # a bad certificate fails before Konnect is touched
        self._store.open()
        self._print_backlog()
        failure: BaseException | None = None
        try:
            await self._setup_konnect()
            self._receiver = Receiver(self._store, self._receiver_config(), ssl_context=ssl_context)
            await self._receiver.start(sock)
            if self.io.on_records is not None:
                self._store.add_listener(self.io.on_records)
            if self.verification is not None:
                self._store.add_listener(self.verification.on_records)
            info = self._write_state_files()
            self.io.summary(info)
            self.io.on_ready(info)
            self._phase = "serving"
            await self._stop.wait()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._phase = "cleanup"
            await self._shutdown_after(failure)

    async def _shutdown_after(self, failure: BaseException | None) -> None:
        try:
            await self._shutdown(clean=failure is None)
        except KongctlError as cleanup_error:
            if isinstance(failure, KongctlError):
                raise ExecutionError(
                    f"{failure.message}; then {cleanup_error.message}", hint=cleanup_error.hint
                ) from None
            raise
        if isinstance(failure, KongctlError) and self.konnect.create_unanswered:
            raise ExecutionError(
                f"{failure.message}; {self.left_behind()}", hint=_UNANSWERED_CREATE_HINT
            ) from None

    def _print_backlog(self) -> None:
        # Before the receiver starts nothing else appends, so no record is printed twice
        # or missed between the stored ones and the new ones.
        if self.options.backlog and self.io.on_records is not None:
            stored = last_stored_records(self.store_dir, self.options.backlog)
            if stored:
                self.io.on_records(stored)

    def stop(self) -> None:
        """Ask the listener to stop (used by tail when stdout closes)."""
        self._stop.set()

    async def _setup_konnect(self) -> None:
        if self.options.configure_webhook:
            await self._guard_webhook()
        name = self.options.name
        if await self.api.find_destination_by_name(name) is not None:
            raise ExecutionError(
                f'destination name "{name}" already exists',
                hint="pick another --name, or delete the old destination in Konnect",
            )
        self.konnect.destination_name = name
        try:
            created = await self.api.create_destination(
                name=name,
                endpoint=self.options.endpoint,
                log_format=self.options.log_format,
                authorization=self.options.authorization,
                skip_ssl_verification=self.options.skip_ssl_verification,
            )
        except (KonnectConnectionError, asyncio.CancelledError):
            self.konnect.create_unanswered = True
            raise
        self.konnect.destination_id = str(created["id"])
        log.info("destination created id=%s name=%s", created["id"], name)
        if self.options.configure_webhook:
            self.konnect.webhook_bound = True  # a failed bind may still have bound it
            await self.api.bind_webhook(self.konnect.destination_id)
            log.info("webhook bound destination_id=%s", self.konnect.destination_id)

    async def _guard_webhook(self) -> None:
        webhook = await self.api.get_webhook()
        enabled = bool(webhook.get("enabled"))
        endpoint = str(webhook.get("endpoint", ""))
        if enabled or endpoint.lower() != UNCONFIGURED:
            raise ExecutionError(
                "regional audit-log webhook is already configured "
                f"(enabled={str(enabled).lower()}, endpoint={endpoint})",
                hint="stop the listener that owns it, or release it with "
                "`kongctl delete audit-logs webhook`; --configure-webhook=false skips this check",
            )

    def _receiver_config(self) -> ReceiverConfig:
        return ReceiverConfig(
            path=self.options.path,
            authorization=self.options.authorization,
            max_body_bytes=self.options.max_body_bytes,
            drain_timeout=self.drain_timeout,
        )

    def _write_state_files(self) -> dict[str, Any]:
        assert self._receiver is not None
        host, port = self._receiver.bound_address
        scheme = "https" if self.options.tls_cert_file else "http"
        shown_host = f"[{host}]" if ":" in host else host
        listener = {
            "started_at": utc_now(),
            "profile": self.profile,
            "listen_address": f"{shown_host}:{port}",
            "listen_path": self.options.path,
            "local_endpoint": f"{scheme}://{shown_host}:{port}{self.options.path}",
            "public_url": self.options.public_url or self.options.endpoint,
            "events_file": str(self.events_file),
        }
        destination = {
            "created_at": utc_now(),
            "profile": self.profile,
            "destination_id": self.konnect.destination_id,
            "destination_name": self.konnect.destination_name,
            "destination_endpoint": self.options.endpoint,
            "log_format": self.options.log_format,
            "skip_ssl_verification": self.options.skip_ssl_verification,
            "authorization_configured": True,
            "webhook_configured": self.konnect.webhook_bound,
            "events_file": str(self.events_file),
        }
        write_state_file(self.store_dir / "listener.json", listener)
        write_state_file(self.store_dir / "destination.json", destination)
        return {**listener, **destination, "region": self.region_label}

    async def _shutdown(self, *, clean: bool) -> None:
        try:
            if self._receiver is not None:
                await self._receiver.stop()
                log.info("receiver stopped stats=%s", self._receiver.stats)
            await self._store.close()
            if self.verification is not None:
                await self.verification.drain(timeout=5.0)
        finally:
            deleted = self.konnect.destination_id
            await self._release_konnect()
        if clean:
            self.io.finished(self._final_report(deleted))
        elif deleted is not None:
            self.io.notice(f"Deleted the audit-log destination this run created: {deleted}")

    def _final_report(self, deleted: str | None) -> dict[str, Any]:
        report: dict[str, Any] = {
            "stopped": True,
            "deleted_destination_id": deleted,
            "records_received": self._receiver.stats.records if self._receiver else 0,
        }
        if self.verification is not None:
            report["signatures"] = self.verification.counts()
        return report

    async def _release_konnect(self) -> None:
        try:
            await self._find_interrupted_create()
            await self._release_webhook()
            await self._delete_destination()
        except asyncio.CancelledError:
            raise ExecutionError(
                "cleanup interrupted; " + self.left_behind(), hint=_CLEANUP_HINT
            ) from None
        for name in ("listener.json", "destination.json"):
            with contextlib.suppress(FileNotFoundError):
                (self.store_dir / name).unlink()

    async def _find_interrupted_create(self) -> None:
        # A signal or timeout during the create call may leave a destination we never heard
        # of, and Konnect may finish creating it a moment after we gave up: look a few times.
        if self.konnect.destination_id is not None or self.konnect.destination_name is None:
            return
        delays = _UNANSWERED_CREATE_LOOKUPS if self.konnect.create_unanswered else (0.0,)
        for delay in delays:
            await asyncio.sleep(delay)
            try:
                found = await self.api.find_destination_by_name(self.konnect.destination_name)
            except KonnectError as exc:
                log.warning("lookup after interrupted create failed error=%s", exc)
                return
            if found is not None:
                self.konnect.destination_id = str(found["id"])
                self.konnect.create_unanswered = False
                return

    async def _release_webhook(self) -> None:
        if not self.konnect.webhook_bound:
            return
        try:
            await self.api.disable_webhook()
            await self.api.unbind_webhook()
        except KonnectError as exc:
            log.warning("webhook release failed error=%s", exc)
            raise ExecutionError(
                f"could not release the regional webhook: {exc}; " + self.left_behind(),
                hint=_CLEANUP_HINT,
            ) from None
        self.konnect.webhook_bound = False
        log.info("webhook released")

    async def _delete_destination(self) -> None:
        destination_id = self.konnect.destination_id
        if destination_id is None:
            return
        try:
            await self.api.delete_destination_when_free(
                destination_id, budget=self.delete_budget, on_wait=self._busy_notice
            )
        except KongctlError as exc:
            log.warning("destination delete failed id=%s error=%s", destination_id, exc)
            raise ExecutionError(
                f"could not delete the destination: {exc}; " + self.left_behind(),
                hint=_CLEANUP_HINT,
            ) from None
        self.konnect.destination_id = None
        log.info("destination deleted id=%s", destination_id)

    def _busy_notice(self, delay: float) -> None:
        log.info("destination in use, retrying in %.1fs", delay)

    def left_behind(self) -> str:
        """A sentence naming what this listener leaves in Konnect."""
        parts = []
        if self.konnect.destination_id:
            parts.append(
                f"audit-log destination {self.konnect.destination_id} "
                f'("{self.konnect.destination_name}")'
            )
        if self.konnect.webhook_bound:
            parts.append("the regional audit-log webhook (still bound to it)")
        if self.konnect.create_unanswered and not self.konnect.destination_id:
            parts.append(
                f'possibly an audit-log destination "{self.konnect.destination_name}" '
                "(its create call got no answer)"
            )
        if not parts:
            return "nothing was left in Konnect"
        return "left in Konnect: " + " and ".join(parts)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        log.info("signal received signal=%s phase=%s", signal.Signals(signum).name, self._phase)
        if self._phase == "serving":
            self._stop.set()
        elif self._task is not None:
            # In setup, stop at once (cleanup still runs); in cleanup, a second signal
            # abandons it and the error says what stayed behind.
            self._task.cancel()


# Seconds to wait before each look for a destination whose create call got no answer.
_UNANSWERED_CREATE_LOOKUPS = (0.0, 1.0, 2.0)
_UNANSWERED_CREATE_HINT = (
    "check with `kongctl get audit-logs destination <name>` and delete it with "
    "`kongctl delete audit-logs destination <name>`"
)
_CLEANUP_HINT = (
    "remove leftovers with `kongctl delete audit-logs destination <id> --force` "
    "and `kongctl delete audit-logs webhook`"
)


def _tls(options: ListenOptions) -> ssl.SSLContext | None:
    if options.tls_cert_file is None or options.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(options.tls_cert_file, options.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ExecutionError(f"cannot load the TLS certificate or key: {exc}") from None
    return context
