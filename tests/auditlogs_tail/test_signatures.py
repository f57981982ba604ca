"""Checking Konnect's Ed25519 record signatures against its JWKS."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kongctl.auditlogs.signatures import SignatureCounts, SignatureVerifier, Verdict, trace_id_of
from kongctl.emulator.signing import Signer
from kongctl.errors import KonnectConnectionError

JSON_RECORD = {
    "cef_version": "0",
    "event_class_id": "konnect",
    "event_ts": "2024-05-01T12:00:00.000Z",
    "name": "Authorize",
    "org_id": "b6d8a1a4-7c1f-4e59-9a0b-269ef2a74de4",
    "trace_id": 6891110586028963295,
    "request": {"method": "GET", "path": "/v2/control-planes"},
}
CPS_RECORD = {
    "specversion": "1.0",
    "type": "konnect.audit.authorize",
    "source": "konnect",
    "id": "6891110586028963295",
    "data": {"name": "Authorize", "sig_note": "a member named like sig must not confuse"},
}
CEF_LINE = (
    "CEF:0|KongInc|Konnect|1.0|konnect|Authorize|1|rt=1714565000000 src=10.0.0.1 "
    "suser=jane@example.com trace_id=6891110586028963295"
)


def b64url(data: bytes, *, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode("ascii")
    return text if padded else text.rstrip("=")


class Key:
    """A signing key as Konnect holds it, and its JWK as Konnect publishes it."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self._private = Ed25519PrivateKey.generate()

    def jwk(self) -> dict[str, str]:
        public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "kty": "OKP",
            "alg": "EdDSA",
            "kid": self.kid,
            "crv": "Ed25519",
            "x": b64url(public),
        }

    def sign_json(self, record: Mapping[str, Any], *, padded: bool = False) -> bytes:
        line = json.dumps(record, separators=(",", ":")).encode()
        sig = b64url(self._private.sign(line), padded=padded).encode()
        return line[:-1] + b',"sig":"' + sig + b'"}'

    def sign_cef(self, line: str) -> bytes:
        return line.encode() + b" sig=" + b64url(self._private.sign(line.encode())).encode()


class FakeKonnect:
    """Serves a JWKS the way the Konnect API client would, counting requests."""

    def __init__(self, *keys: Key) -> None:
        self.keys = list(keys)
        self.requests = 0
        self.down = False

    async def jwks(self) -> Mapping[str, Any]:
        self.requests += 1
        await asyncio.sleep(0)  # a real request yields to the loop
        if self.down:
            raise KonnectConnectionError("Konnect could not be reached")
        return {"keys": [key.jwk() for key in self.keys]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key() -> Key:
    return Key("key-1")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def verifier_for(konnect: FakeKonnect, clock: Clock) -> SignatureVerifier:
    return SignatureVerifier(
        konnect.jwks, refetch_interval=300, min_refetch_interval=30, clock=clock
    )


def signed_lines(key: Key) -> dict[str, bytes]:
    return {
        "json": key.sign_json(JSON_RECORD),
        "cps": key.sign_json(CPS_RECORD),
        "cef": key.sign_cef(CEF_LINE),
    }


# Verdicts


@pytest.mark.parametrize("kind", ["json", "cps", "cef"])
async def test_signed_record_is_valid(key: Key, clock: Clock, kind: str) -> None:
    verifier = verifier_for(FakeKonnect(key), clock)

    assert await verifier.verify(signed_lines(key)[kind]) is Verdict.VALID


async def test_padded_signature_is_accepted(key: Key, clock: Clock) -> None:
    verifier = verifier_for(FakeKonnect(key), clock)

    assert await verifier.verify(key.sign_json(JSON_RECORD, padded=True)) is Verdict.VALID


@pytest.mark.parametrize("kind", ["json", "cps", "cef"])
async def test_record_with_one_changed_byte_is_invalid(key: Key, clock: Clock, kind: str) -> None:
    line = signed_lines(key)[kind]
    tampered = line.replace(b"Authorize", b"Authorise", 1)
    verifier = verifier_for(FakeKonnect(key), clock)

    assert await verifier.verify(tampered) is Verdict.INVALID


async def test_signature_of_another_record_is_invalid(key: Key, clock: Clock) -> None:
    other_sig = key.sign_json({"name": "other"}).rsplit(b'"sig":', 1)[1]
    line = json.dumps(JSON_RECORD, separators=(",", ":")).encode()[:-1] + b',"sig":' + other_sig
    verifier = verifier_for(FakeKonnect(key), clock)

    assert await verifier.verify(line) is Verdict.INVALID


@pytest.mark.parametrize(
    "line",
    [
        b'{"name":"Authorize","sig":"not*base64"}',
        b'{"name":"Authorize","sig":"c2hvcnQ"}',
        b'{"name":"Authorize","sig":""}',
        CEF_LINE.encode() + b" sig=%%%",
    ],
)
async def test_malformed_signature_is_invalid(key: Key, clock: Clock, line: bytes) -> None:
    verifier = verifier_for(FakeKonnect(key), clock)

    assert await verifier.verify(line) is Verdict.INVALID


@pytest.mark.parametrize(
    "line", [json.dumps(JSON_RECORD).encode(), CEF_LINE.encode(), b"not a record"]
)
async def test_record_without_signature_is_missing(key: Key, clock: Clock, line: bytes) -> None:
    verifier = verifier_for(FakeKonnect(key), clock)

    assert await verifier.verify(line) is Verdict.MISSING


async def test_records_signed_by_the_emulator_verify(clock: Clock) -> None:
    signer = Signer(seed=7)
    json_line = signer.sign_json_line(json.dumps(JSON_RECORD, separators=(",", ":")))
    cef_line = signer.sign_cef_line(CEF_LINE)

    async def fetch() -> Mapping[str, Any]:
        return signer.jwks()

    verifier = SignatureVerifier(fetch, clock=clock)

    verdicts = await verifier.verify_batch([json_line.encode(), cef_line.encode()])
    assert verdicts == [Verdict.VALID, Verdict.VALID]


async def test_batch_verdicts_keep_record_order_and_are_counted(key: Key, clock: Clock) -> None:
    lines = signed_lines(key)
    records = [lines["json"], lines["cef"], b"{}", lines["cps"].replace(b"1.0", b"2.0")] * 10
    verifier = verifier_for(FakeKonnect(key), clock)

    verdicts = await verifier.verify_batch(records)

    assert verdicts[:4] == [Verdict.VALID, Verdict.VALID, Verdict.MISSING, Verdict.INVALID]
    assert verdicts == verdicts[:4] * 10
    assert verifier.counts == SignatureCounts(valid=20, invalid=10, missing=10)


async def test_record_naming_its_kid_is_checked_with_that_key(clock: Clock) -> None:
    keys = [Key(f"key-{i}") for i in range(5)]
    record = keys[3].sign_json({**JSON_RECORD, "kid": "key-3"})
    verifier = verifier_for(FakeKonnect(*keys), clock)

    assert await verifier.verify(record) is Verdict.VALID


# Fetching keys


async def test_keys_are_fetched_once_for_many_records(key: Key, clock: Clock) -> None:
    konnect = FakeKonnect(key)
    verifier = verifier_for(konnect, clock)

    for line in signed_lines(key).values():
        assert await verifier.verify(line) is Verdict.VALID

    assert konnect.requests == 1


async def test_concurrent_checks_share_one_fetch(key: Key, clock: Clock) -> None:
    konnect = FakeKonnect(key)
    verifier = verifier_for(konnect, clock)
    line = signed_lines(key)["json"]

    verdicts = await asyncio.gather(*(verifier.verify(line) for _ in range(20)))

    assert set(verdicts) == {Verdict.VALID}
    assert konnect.requests == 1


async def test_rotated_key_is_fetched_when_a_record_does_not_verify(clock: Clock) -> None:
    old, new = Key("old"), Key("new")
    konnect = FakeKonnect(old)
    verifier = verifier_for(konnect, clock)
    assert await verifier.verify(signed_lines(old)["json"]) is Verdict.VALID

    konnect.keys = [old, new]
    clock.now += 31
    assert await verifier.verify(signed_lines(new)["cef"]) is Verdict.VALID
    assert konnect.requests == 2


async def test_unknown_kid_is_fetched(clock: Clock) -> None:
    old, new = Key("old"), Key("new")
    konnect = FakeKonnect(old)
    verifier = verifier_for(konnect, clock)
    await verifier.verify(signed_lines(old)["json"])

    konnect.keys = [new]
    clock.now += 31
    record = new.sign_json({**JSON_RECORD, "kid": "new"})

    assert await verifier.verify(record) is Verdict.VALID


async def test_refetching_after_failures_is_rate_limited(key: Key, clock: Clock) -> None:
    konnect = FakeKonnect(key)
    verifier = verifier_for(konnect, clock)
    forged = Key("forger").sign_json(JSON_RECORD)

    for _ in range(5):
        assert await verifier.verify(forged) is Verdict.INVALID
        clock.now += 5
    assert konnect.requests == 1  # the first fetch; 25 s later no early refetch yet

    clock.now += 5
    assert await verifier.verify_batch([forged] * 50) == [Verdict.INVALID] * 50
    assert konnect.requests == 2


async def test_keys_are_refreshed_after_the_refetch_interval(key: Key, clock: Clock) -> None:
    konnect = FakeKonnect(key)
    verifier = verifier_for(konnect, clock)
    line = signed_lines(key)["json"]
    await verifier.verify(line)

    clock.now += 299
    await verifier.verify(line)
    assert konnect.requests == 1

    clock.now += 2
    await verifier.verify(line)
    assert konnect.requests == 2


async def test_records_are_unverifiable_while_keys_cannot_be_fetched(
    key: Key, clock: Clock
) -> None:
    konnect = FakeKonnect(key)
    konnect.down = True
    verifier = verifier_for(konnect, clock)
    line = signed_lines(key)["json"]

    assert await verifier.verify(line) is Verdict.UNVERIFIABLE
    assert await verifier.verify(b"{}") is Verdict.MISSING
    clock.now += 10
    assert await verifier.verify(line) is Verdict.UNVERIFIABLE
    assert konnect.requests == 1  # an outage costs one request per interval, not per record

    konnect.down = False
    clock.now += 25
    assert await verifier.verify(line) is Verdict.VALID
    assert konnect.requests == 2
    assert verifier.counts == SignatureCounts(valid=1, missing=1, unverifiable=2)


async def test_failed_refresh_keeps_the_keys_it_had(key: Key, clock: Clock) -> None:
    konnect = FakeKonnect(key)
    verifier = verifier_for(konnect, clock)
    line = signed_lines(key)["json"]
    await verifier.verify(line)

    konnect.down = True
    clock.now += 301

    assert await verifier.verify(line) is Verdict.VALID
    assert konnect.requests == 2


async def test_jwks_without_ed25519_keys_leaves_records_unverifiable(
    key: Key, clock: Clock
) -> None:
    async def fetch() -> Mapping[str, Any]:
        rsa = {"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}
        short = {**key.jwk(), "x": b64url(b"too short")}
        return {"keys": [rsa, short, "junk"]}

    verifier = SignatureVerifier(fetch, clock=clock)

    assert await verifier.verify(signed_lines(key)["json"]) is Verdict.UNVERIFIABLE


# Trace ids for log lines


@pytest.mark.parametrize(
    ("record", "trace_id"),
    [
        (b'{"name":"x","trace_id":6891110586028963295}', "6891110586028963295"),
        (b'{"trace_id": "abc-123","name":"x"}', "abc-123"),
        (CEF_LINE.encode() + b" sig=AAAA", "6891110586028963295"),
        (b'{"name":"x"}', None),
        (b"CEF:0|KongInc|Konnect|1.0|konnect|Authorize|1|rt=1", None),
    ],
)
def test_trace_id_is_found_in_json_and_cef_records(record: bytes, trace_id: str | None) -> None:
    assert trace_id_of(record) == trace_id
