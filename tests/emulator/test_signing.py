"""Record signatures: Ed25519 over the line without its sig, checkable against the JWKS."""

from __future__ import annotations

import base64
import re

import aiohttp
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kongctl.emulator.signing import Signer
from tests.emulator_support import api_session, deliver, running_emulator, webhook_to

JSON_SIG = re.compile(r',"sig":"([A-Za-z0-9_-]+)"}$')
CEF_SIG = re.compile(r" sig=([A-Za-z0-9_-]+)$")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def public_key(api: aiohttp.ClientSession) -> tuple[Ed25519PublicKey, dict[str, str]]:
    async with api.get("/v2/audit-log-webhook/jwks.json") as answer:
        jwks = await answer.json()
    [key] = jwks["keys"]
    return Ed25519PublicKey.from_public_bytes(b64url_decode(key["x"])), key


def split_signature(line: str, log_format: str) -> tuple[bytes, bytes]:
    """The signed bytes and the signature, removed exactly as a verifier would."""
    pattern = CEF_SIG if log_format == "cef" else JSON_SIG
    match = pattern.search(line)
    assert match is not None, line
    signed = line[: match.start()] + ("" if log_format == "cef" else "}")
    return signed.encode(), b64url_decode(match.group(1))


async def test_jwks_publishes_one_ed25519_key(api: aiohttp.ClientSession) -> None:
    _, key = await public_key(api)
    assert key["kty"] == "OKP"
    assert key["alg"] == "EdDSA"
    assert key["crv"] == "Ed25519"
    assert re.fullmatch(r"[0-9a-f]{40}", key["kid"])
    assert len(b64url_decode(key["x"])) == 32


@pytest.mark.parametrize("log_format", ["json", "cps", "cef"])
async def test_every_delivered_record_verifies_against_the_jwks(
    api: aiohttp.ClientSession, receiver_url: str, log_format: str
) -> None:
    await webhook_to(api, receiver_url, log_format=log_format)
    records = (await deliver(api, 10))["records"]
    key, _ = await public_key(api)
    for line in records:
        signed, signature = split_signature(line, log_format)
        key.verify(signature, signed)


async def test_a_tampered_record_fails_verification(
    api: aiohttp.ClientSession, receiver_url: str
) -> None:
    await webhook_to(api, receiver_url, log_format="json")
    [line] = (await deliver(api, 1))["records"]
    key, _ = await public_key(api)
    signed, signature = split_signature(line, "json")
    with pytest.raises(InvalidSignature):
        key.verify(signature, signed.replace(b'"event_vendor":"KongInc"', b'"event_vendor":"Evil"'))


async def test_no_sign_leaves_records_unsigned(receiver_url: str) -> None:
    async with running_emulator(sign=False) as konnect, api_session(konnect.url) as api:
        await webhook_to(api, receiver_url, log_format="json")
        [line] = (await deliver(api, 1))["records"]
    assert '"sig"' not in line


def test_same_seed_gives_same_key() -> None:
    assert Signer(3).jwks() == Signer(3).jwks()
    assert Signer(3).kid != Signer(4).kid


def test_without_seed_every_key_is_new() -> None:
    assert Signer().kid != Signer().kid


def test_json_signature_goes_before_the_closing_brace() -> None:
    signer = Signer(1)
    signed = signer.sign_json_line('{"a":1}')
    assert signed.startswith('{"a":1,"sig":"')
    assert signed.endswith('"}')


def test_cef_signature_is_the_last_field() -> None:
    signer = Signer(1)
    signed = signer.sign_cef_line("2025-01-01T00:00:00Z konghq.com CEF:0|a|b|c|d|e|1|rt=1")
    assert re.search(r"\|rt=1 sig=[A-Za-z0-9_-]+$", signed)
