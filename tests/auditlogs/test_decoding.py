"""Decoding request bodies into records: gzip detection, size limits, line splitting."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kongctl.auditlogs.decoding import (
    BadPayload,
    PayloadTooLarge,
    UnsupportedEncoding,
    decode_body,
    split_records,
)

LIMIT = 1 << 20
GZIP_HEADERS = ["gzip", "x-gzip", "application/gzip", " GZip ", "X-GZIP\t"]


def repeated_member_bomb(expanded_bytes: int) -> bytes:
    """A gzip stream of zeros built block by block, so the test never holds the expansion."""
    block = bytes(1 << 20)
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = deflater.compress(block) + deflater.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the deflater starts afresh, so every later block compresses the same.
    body = deflater.compress(block) + deflater.flush(zlib.Z_FULL_FLUSH)
    return head + body * (expanded_bytes // len(block) - 1) + deflater.flush()


@pytest.mark.parametrize("encoding", GZIP_HEADERS)
def test_gzip_content_encodings_are_decoded(encoding: str) -> None:
    assert decode_body(gzip.compress(b'{"a":1}\n'), encoding, LIMIT) == b'{"a":1}\n'


@pytest.mark.parametrize("encoding", [None, "", "identity"])
def test_gzip_magic_bytes_are_decoded_without_a_header(encoding: str | None) -> None:
    assert decode_body(gzip.compress(b"record\n"), encoding, LIMIT) == b"record\n"


@pytest.mark.parametrize("encoding", [None, "", " identity "])
def test_plain_bodies_are_returned_unchanged(encoding: str | None) -> None:
    assert decode_body(b'{"a":1}\n', encoding, LIMIT) == b'{"a":1}\n'


def test_empty_body_is_an_empty_payload_whatever_the_encoding() -> None:
    assert decode_body(b"", "gzip", LIMIT) == b""


def test_concatenated_gzip_members_are_all_decoded() -> None:
    body = gzip.compress(b"one\n") + gzip.compress(b"") + gzip.compress(b"two\n")
    assert decode_body(body, "gzip", LIMIT) == b"one\ntwo\n"


@pytest.mark.parametrize(
    "body",
    [
        b"not gzip at all",
        gzip.compress(b"record\n")[:-6],
        gzip.compress(b"record\n") + b"trailing garbage",
        gzip.compress(b"record\n") + b"\x00\x00",
        b"\x1f\x8b",
    ],
    ids=["not-gzip", "truncated", "trailing-garbage", "trailing-zeros", "magic-only"],
)
def test_broken_gzip_is_a_bad_payload(body: bytes) -> None:
    with pytest.raises(BadPayload):
        decode_body(body, "gzip", LIMIT)


def test_corrupted_gzip_checksum_is_a_bad_payload() -> None:
    body = bytearray(gzip.compress(b"record\n"))
    body[-8] ^= 0xFF
    with pytest.raises(BadPayload):
        decode_body(bytes(body), "gzip", LIMIT)


@pytest.mark.parametrize("encoding", ["deflate", "br", "gzip, gzip", "compress"])
def test_other_content_encodings_are_unsupported(encoding: str) -> None:
    with pytest.raises(UnsupportedEncoding):
        decode_body(b"record\n", encoding, LIMIT)


def test_plain_body_over_the_limit_is_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_body(b"x" * 11, None, 10)


def test_decoded_payload_of_exactly_the_limit_is_accepted() -> None:
    assert decode_body(gzip.compress(b"x" * 10), "gzip", 10) == b"x" * 10


def test_decoded_payload_one_byte_over_the_limit_is_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_body(gzip.compress(b"x" * 11), "gzip", 10)


def test_zip_bomb_stops_at_the_limit_quickly_and_in_little_memory() -> None:
    bomb = repeated_member_bomb(1 << 30)
    assert len(bomb) < 1_100_000

    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(PayloadTooLarge):
            decode_body(bomb, "gzip", LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert time.perf_counter() - started < 1.0
    assert peak < 4 * LIMIT


def test_many_tiny_members_over_the_limit_are_too_large() -> None:
    body = gzip.compress(b"x" * 1000) * 2000
    with pytest.raises(PayloadTooLarge):
        decode_body(body, "gzip", LIMIT)


def test_records_are_split_on_newlines_and_trimmed() -> None:
    payload = b'  {"a":1}  \r\n\n{"b":2}\t\n   \n{"c":3}'
    assert split_records(payload) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_a_bare_carriage_return_ends_a_record() -> None:
    assert split_records(b"one\rtwo\r\nthree\n") == [b"one", b"two", b"three"]


def test_records_keep_inner_bytes_exactly() -> None:
    record = '{"name":"zoë ✓","nul":"\x00","bad":"'.encode() + b"\xff\xfe" + b' x"}'
    assert split_records(record + b"\n" + record) == [record, record]


def test_whitespace_only_payload_has_no_records() -> None:
    assert split_records(b" \r\n\t\n\x0b\x0c\n") == []


# Records as a sender would produce them: no line breaks, no whitespace at either end.
record_bytes = (
    st.binary(min_size=1, max_size=200)
    .map(lambda b: b.strip())
    .filter(lambda b: b and b"\n" not in b and b"\r" not in b)
)


@given(st.binary(max_size=4096), st.sampled_from([*GZIP_HEADERS, None]))
def test_gzip_round_trip_returns_the_original_bytes(data: bytes, encoding: str | None) -> None:
    assert decode_body(gzip.compress(data), encoding, LIMIT) == data


@given(st.lists(st.binary(max_size=512), min_size=1, max_size=5))
def test_concatenated_members_round_trip(parts: list[bytes]) -> None:
    body = b"".join(gzip.compress(part) for part in parts)
    assert decode_body(body, "gzip", LIMIT) == b"".join(parts)


@given(st.lists(record_bytes, max_size=50), st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_split_records_round_trips_joined_records(records: list[bytes], newline: bytes) -> None:
    assert split_records(newline.join(records)) == records
    assert split_records(newline.join(records) + newline) == records


@given(st.binary(max_size=2048))
def test_split_records_never_yields_line_breaks_or_padding(payload: bytes) -> None:
    for record in split_records(payload):
        assert record
        assert b"\n" not in record
        assert b"\r" not in record
        assert record == record.strip()


@given(st.binary(max_size=2048), st.integers(min_value=0, max_value=4096))
def test_decoding_never_exceeds_the_limit(data: bytes, limit: int) -> None:
    try:
        decoded = decode_body(gzip.compress(data), "gzip", limit)
    except PayloadTooLarge:
        assert len(data) > limit
    else:
        assert decoded == data
        assert len(decoded) <= limit
