"""Verifying the Ed25519 signatures Konnect puts on each audit record.

Konnect publishes its public keys as a JWKS and appends a base64url signature to every
record line: a JSON (or CPS) record carries ``,"sig":"..."``, a CEF record a trailing
`` sig=...``. The signed message is the raw line with exactly that text removed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import enum
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

logger = logging.getLogger(__name__)

FetchJWKS = Callable[[], Awaitable[Mapping[str, Any]]]

_SIGNATURE_SIZE = 64
_PUBLIC_KEY_SIZE = 32
# A verification takes tens of microseconds: a large batch goes to a worker thread so the
# event loop keeps answering webhook requests meanwhile.
_INLINE_BATCH = 16

# A sig that is there but is not base64url still counts as a (bad) signature, not a missing one.
_JSON_SIG = re.compile(rb',\s*"sig"\s*:\s*"([^"\\]*)"')
_JSON_FIRST_SIG = re.compile(rb'(?<=\{)\s*"sig"\s*:\s*"([^"\\]*)"\s*,')
_CEF_SIG = re.compile(rb" sig=(\S*)")
_JSON_KID = re.compile(rb'"kid"\s*:\s*"([^"\\]+)"')
_CEF_KID = re.compile(rb"(?:^|[\s|])kid=([^\s|]+)")
_JSON_TRACE_ID = re.compile(rb'"trace_id"\s*:\s*(?:"([^"\\]*)"|(-?\d+))')
_CEF_TRACE_ID = re.compile(rb"(?:^|[\s|])trace_id=([^\s|]+)")


class Verdict(enum.Enum):
    """What checking one record's signature found."""

    VALID = "valid"
    INVALID = "invalid"
    MISSING = "missing"  # the record carries no signature
    UNVERIFIABLE = "unverifiable"  # no keys could be fetched to check it against


@dataclasses.dataclass
class SignatureCounts:
    """How many records got each verdict so far."""

    valid: int = 0
    invalid: int = 0
    missing: int = 0
    unverifiable: int = 0

    def add(self, verdict: Verdict) -> None:
        setattr(self, verdict.value, getattr(self, verdict.value) + 1)


class SignatureVerifier:
    """Checks record signatures against Konnect's JWKS, fetching the keys when needed.

    Keys are fetched on first use, again after ``refetch_interval`` seconds, and early when
    a record does not verify (keys may have rotated) or the last fetch failed. Early fetches
    are rate-limited to one per ``min_refetch_interval`` so a stream of bad records, or a
    Konnect outage, costs one request per interval and not one per record.
    """

    def __init__(
        self,
        fetch_jwks: FetchJWKS,
        *,
        refetch_interval: float = 300.0,
        min_refetch_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_jwks = fetch_jwks
        self._refetch_interval = refetch_interval
        self._min_refetch_interval = min_refetch_interval
        self._clock = clock
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._generation = 0  # counts successful fetches
        self._lock = asyncio.Lock()
        self._counts = SignatureCounts()

    @property
    def counts(self) -> SignatureCounts:
        """A snapshot of the verdicts so far."""
        return dataclasses.replace(self._counts)

    async def verify(self, record: bytes) -> Verdict:
        """Check one raw record line."""
        return (await self.verify_batch([record]))[0]

    async def verify_batch(self, records: Sequence[bytes]) -> list[Verdict]:
        """Check raw record lines; verdicts come back in the same order."""
        if not records:
            return []
        await self._refresh_if_due()
        generation = self._generation
        verdicts = await self._check_all(records, self._keys)

        # A record that does not verify may be signed with a key newer than ours.
        retry = [i for i, verdict in enumerate(verdicts) if verdict is Verdict.INVALID]
        if retry and await self._refetch("record did not verify", generation):
            rechecked = await self._check_all([records[i] for i in retry], self._keys)
            for i, verdict in zip(retry, rechecked, strict=True):
                verdicts[i] = verdict

        for verdict in verdicts:
            self._counts.add(verdict)
        return verdicts

    async def _refresh_if_due(self) -> None:
        if self._attempted_at is None:
            reason = "first use"
        elif not self._keys:
            reason = "no keys yet"
        elif self._age() >= self._refetch_interval:
            reason = "keys are old"
        else:
            return
        await self._refetch(reason, self._generation)

    async def _refetch(self, reason: str, seen_generation: int) -> bool:
        """Fetch the keys unless rate-limited; True when newer keys than seen are in use."""
        async with self._lock:
            if self._generation == seen_generation and self._may_fetch():
                await self._fetch(reason)
            return self._generation != seen_generation

    def _may_fetch(self) -> bool:
        if self._attempted_at is None:
            return True
        return self._clock() - self._attempted_at >= self._min_refetch_interval

    def _age(self) -> float:
        if self._fetched_at is None:
            return float("inf")
        return self._clock() - self._fetched_at

    async def _fetch(self, reason: str) -> None:
        self._attempted_at = self._clock()
        try:
            jwks = await self._fetch_jwks()
        except Exception as exc:
            # Whatever went wrong, records stay unverifiable (or use the old keys): checking
            # signatures must never take the listener down.
            logger.warning("jwks fetch failed reason=%s error=%s", reason, exc)
            return
        keys = public_keys(jwks)
        if not keys:
            logger.warning("jwks has no usable ed25519 keys reason=%s", reason)
            return
        self._keys = keys
        self._fetched_at = self._attempted_at
        self._generation += 1
        logger.info("jwks fetched keys=%s kids=%s reason=%s", len(keys), ",".join(keys), reason)

    async def _check_all(
        self, records: Sequence[bytes], keys: Mapping[str, Ed25519PublicKey]
    ) -> list[Verdict]:
        if len(records) <= _INLINE_BATCH:
            return check_records(records, keys)
        return await asyncio.to_thread(check_records, records, keys)


def check_records(records: Iterable[bytes], keys: Mapping[str, Ed25519PublicKey]) -> list[Verdict]:
    """Check each record against ``keys`` (a pure function: no fetching, no counting)."""
    return [check_record(record, keys) for record in records]


def check_record(record: bytes, keys: Mapping[str, Ed25519PublicKey]) -> Verdict:
    """Check one record against ``keys``, trying the key its ``kid`` names first."""
    candidates = signed_parts(record)
    if not candidates:
        return Verdict.MISSING
    if not keys:
        return Verdict.UNVERIFIABLE
    ordered = _keys_in_order(keys, kid_of(record))
    for message, signature in candidates:
        if signature is None:
            continue
        for key in ordered:
            try:
                key.verify(signature, message)
            except InvalidSignature:
                continue
            return Verdict.VALID
    return Verdict.INVALID


def signed_parts(record: bytes) -> list[tuple[bytes, bytes | None]]:
    """Each way to read ``record`` as (signed message, signature); [] when it has no sig.

    The last ``sig`` is tried first: the record's own comes after any in nested values. A
    signature that is not valid base64url comes back as None.
    """
    if record.lstrip().startswith(b"{"):
        matches = list(_JSON_SIG.finditer(record)) + list(_JSON_FIRST_SIG.finditer(record))
    else:
        matches = list(_CEF_SIG.finditer(record))
    matches.sort(key=lambda match: match.start(), reverse=True)
    return [
        (record[: match.start()] + record[match.end() :], _decode_signature(match.group(1)))
        for match in matches
    ]


def kid_of(record: bytes) -> str | None:
    """The key id a record names, if it names one."""
    pattern = _JSON_KID if record.lstrip().startswith(b"{") else _CEF_KID
    match = pattern.search(record)
    return match.group(1).decode("utf-8", errors="replace") if match else None


def trace_id_of(record: bytes) -> str | None:
    """The record's trace id (a JSON number or string, or CEF ``trace_id=``), for log lines."""
    match = _JSON_TRACE_ID.search(record)
    if match:
        value = match.group(1) if match.group(1) is not None else match.group(2)
        return value.decode("utf-8", errors="replace")
    match = _CEF_TRACE_ID.search(record)
    return match.group(1).decode("utf-8", errors="replace") if match else None


def public_keys(jwks: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS by kid; keys of other types or malformed ones are skipped."""
    keys: dict[str, Ed25519PublicKey] = {}
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        return keys
    for index, entry in enumerate(entries):
        key = _ed25519_key(entry)
        if key is None:
            logger.debug("jwks key skipped index=%s", index)
            continue
        kid = entry.get("kid")
        keys[kid if isinstance(kid, str) and kid else f"#{index}"] = key
    return keys


def _ed25519_key(entry: Any) -> Ed25519PublicKey | None:
    if not isinstance(entry, Mapping):
        return None
    if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        return None
    x = entry.get("x")
    raw = _b64url_decode(x.encode("ascii", errors="replace")) if isinstance(x, str) else None
    if raw is None or len(raw) != _PUBLIC_KEY_SIZE:
        return None
    return Ed25519PublicKey.from_public_bytes(raw)


def _keys_in_order(keys: Mapping[str, Ed25519PublicKey], kid: str | None) -> list[Ed25519PublicKey]:
    if kid is None or kid not in keys:
        return list(keys.values())
    return [keys[kid], *(key for name, key in keys.items() if name != kid)]


def _decode_signature(text: bytes) -> bytes | None:
    signature = _b64url_decode(text)
    if signature is None or len(signature) != _SIGNATURE_SIZE:
        return None
    return signature


def _b64url_decode(text: bytes) -> bytes | None:
    """Base64url with or without padding (plain base64's ``+/`` accepted too)."""
    text = text.rstrip(b"=").replace(b"+", b"-").replace(b"/", b"_")
    try:
        return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
