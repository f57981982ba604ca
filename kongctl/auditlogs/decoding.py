"""Turning a request body into records: bounded gzip decoding and line splitting.

Pure functions on bytes, so the hostile-input rules can be pinned without a server.
"""

from __future__ import annotations

import zlib

GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ENCODINGS = frozenset({"gzip", "x-gzip", "application/gzip"})
_IDENTITY_ENCODINGS = frozenset({"", "identity"})
# wbits for zlib: a gzip header and trailer around a deflate stream.
_GZIP_WBITS = 16 + zlib.MAX_WBITS


class BadPayload(ValueError):
    """The body cannot be decoded: broken gzip, trailing garbage, unknown encoding."""


class UnsupportedEncoding(BadPayload):
    """The body uses a Content-Encoding other than gzip or identity."""


class PayloadTooLarge(ValueError):
    """The decoded body would exceed the size limit."""


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Return the payload of a request body, gunzipped when needed, at most ``limit`` bytes.

    A body is gzip when Content-Encoding says so (gzip, x-gzip, application/gzip) or when it
    starts with the gzip magic bytes, since some senders compress without saying so. Any other
    declared encoding is refused rather than stored as unreadable bytes.
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding not in _GZIP_ENCODINGS and encoding not in _IDENTITY_ENCODINGS:
        raise UnsupportedEncoding(f"unsupported content-encoding {encoding!r}")
    if not raw:
        return b""

    if encoding in _GZIP_ENCODINGS or raw.startswith(GZIP_MAGIC):
        return gunzip(raw, limit)
    if len(raw) > limit:
        raise PayloadTooLarge(f"payload exceeds {limit} bytes")
    return raw


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress one or more concatenated gzip members, stopping as soon as ``limit`` is passed.

    Decompression proceeds in steps of at most the remaining allowance, so a small body that
    expands to gigabytes costs no more memory than the limit.
    """
    chunks: list[bytes] = []
    total = 0
    member = data
    while True:
        inflater = zlib.decompressobj(_GZIP_WBITS)
        pending = member
        while not inflater.eof:
            try:
                # max_length 0 would mean "unbounded", hence the + 1 that also detects overflow.
                chunk = inflater.decompress(pending, limit - total + 1)
            except zlib.error as exc:
                raise BadPayload(f"invalid gzip data: {exc}") from exc
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"decoded payload exceeds {limit} bytes")
            pending = inflater.unconsumed_tail
            if chunk:
                chunks.append(chunk)
            elif not pending and not inflater.eof:
                raise BadPayload("truncated gzip data")

        member = inflater.unused_data
        if not member:
            break
        if not member.startswith(GZIP_MAGIC):
            raise BadPayload("trailing garbage after gzip data")

    if len(chunks) == 1:
        return chunks[0]  # the common case: no copy
    return b"".join(chunks)


def split_records(payload: bytes) -> list[bytes]:
    """Split a payload into records: one per line, ASCII whitespace trimmed, empty lines dropped.

    A bare CR ends a line as LF and CRLF do. JSON text never holds a raw CR, and splitting on it
    guarantees that no stored line carries a CR that other tools would read as a line break.
    """
    return [record for record in map(bytes.strip, payload.splitlines()) if record]
