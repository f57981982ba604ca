"""Checking the signatures of stored records in the background, and counting the verdicts.

Records are stored as received whatever their signature says: verification reports, it never
filters, so a key rotation or an outage of the key endpoint costs no record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from kongctl.auditlogs.signatures import SignatureVerifier, Verdict, trace_id_of

log = logging.getLogger(__name__)

_FAILURES = (Verdict.INVALID, Verdict.MISSING, Verdict.UNVERIFIABLE)
_DESCRIPTIONS = {
    Verdict.INVALID: "signature does not verify",
    Verdict.MISSING: "has no signature",
    Verdict.UNVERIFIABLE: "cannot be verified (no signing keys)",
}


class RecordVerification:
    """Verifies each persisted batch in a task of its own, so ingestion never waits."""

    def __init__(
        self, verifier: SignatureVerifier, *, warn: Callable[[str], None] | None = None
    ) -> None:
        self.verifier = verifier
        self._warn = warn
        self._pending: set[asyncio.Task[None]] = set()

    def on_records(self, records: Sequence[bytes]) -> None:
        """A store listener: called on the event loop after each durable group."""
        task = asyncio.get_running_loop().create_task(self._check(list(records)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self, timeout: float) -> None:
        """Let the checks of records already stored finish, for at most ``timeout`` seconds."""
        if not self._pending:
            return
        _done, late = await asyncio.wait(set(self._pending), timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            log.warning("signature checks abandoned at shutdown batches=%d", len(late))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*late, return_exceptions=True)

    def counts(self) -> dict[str, int]:
        counts = self.verifier.counts
        return {
            "valid": counts.valid,
            "invalid": counts.invalid,
            "missing": counts.missing,
            "unverifiable": counts.unverifiable,
        }

    async def _check(self, records: list[bytes]) -> None:
        try:
            verdicts = await self.verifier.verify_batch(records)
        except Exception:  # a bug in verification must not take the listener down
            log.exception("signature check failed records=%d", len(records))
            return
        for record, verdict in zip(records, verdicts, strict=True):
            if verdict in _FAILURES:
                self._report(record, verdict)

    def _report(self, record: bytes, verdict: Verdict) -> None:
        trace_id = trace_id_of(record) or "-"
        log.warning("record signature %s trace_id=%s", verdict.name.lower(), trace_id)
        if self._warn is not None:
            self._warn(f"warning: record {_DESCRIPTIONS[verdict]} (trace_id={trace_id})")


def summary_line(counts: dict[str, Any]) -> str:
    return "Signatures: " + ", ".join(f"{value} {name}" for name, value in counts.items())
