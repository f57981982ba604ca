"""Ed25519 record signatures and the JWKS that publishes the public key.

Konnect signs each audit record line and appends the signature: a JSON record gets a
``"sig"`` member before its closing brace, a CEF record a trailing `` sig=...`` field.
Removing exactly that text gives back the bytes that were signed.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64url(data: bytes) -> str:
    """Base64url without padding, the encoding of both the signature and the JWK ``x``."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Signer:
    """One Ed25519 key: deterministic from a seed, random without one."""

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            secret = os.urandom(32)
        else:
            secret = hashlib.sha256(f"konnect-emulator-signing-key:{seed}".encode()).digest()
        self._key = Ed25519PrivateKey.from_private_bytes(secret)
        self.public_bytes = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        # Konnect's kids look like 40 hex digits; a SHA-1 of the public key has that shape.
        self.kid = hashlib.sha1(self.public_bytes).hexdigest()

    def signature(self, payload: bytes) -> str:
        """The base64url signature of ``payload``."""
        return b64url(self._key.sign(payload))

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JSON Web Key Set served at ``/v2/audit-log-webhook/jwks.json``."""
        key = {
            "kty": "OKP",
            "alg": "EdDSA",
            "kid": self.kid,
            "crv": "Ed25519",
            "x": b64url(self.public_bytes),
        }
        return {"keys": [key]}

    def sign_json_line(self, line: str) -> str:
        """Insert ``,"sig":"..."`` before the closing brace of a compact JSON object line."""
        if not line.endswith("}"):
            raise ValueError("a JSON record line must end with '}'")
        sig = self.signature(line.encode("utf-8"))
        return f'{line[:-1]},"sig":"{sig}"}}'

    def sign_cef_line(self, line: str) -> str:
        """Append `` sig=...`` to a CEF record line."""
        return f"{line} sig={self.signature(line.encode('utf-8'))}"
