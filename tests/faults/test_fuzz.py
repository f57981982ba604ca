"""Property tests where tests/auditlogs has none, and a fuzz target for the HTTP body path.

The fuzz target posts generated requests (paths, methods, credentials, encodings, framings,
corrupted gzip, random bytes) to a real receiver on loopback and checks after each one: the
status is one the receiver may give, never 500, and the record file grew by exactly the
records of the batch when it answered 202, and not at all otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kongctl.auditlogs.decoding import (
    GZIP_MAGIC,
    BadPayload,
    PayloadTooLarge,
    UnsupportedEncoding,
    decode_body,
    split_records,
)
from kongctl.auditlogs.receiver import Receiver, ReceiverConfig, bind_listen_socket
from kongctl.auditlogs.store import EventStore
from tests.faults.conftest import AUTH, Figures

LIMIT = 1024
ALLOWED = {202, 400, 401, 404, 405, 408, 411, 413, 415}
GZIP_NAMES = ["gzip", "x-gzip", "application/gzip", "GZIP", " gzip "]
WHITESPACE = b" \t\x0b\x0c"

# A record as a sender makes one: no line break inside, no whitespace at either end.
records_st = (
    st.binary(min_size=1, max_size=80)
    .map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"").strip())
    .filter(bool)
)
separator_st = st.lists(
    st.sampled_from([b"\n", b"\r\n", b"\r", b"\n \t", b"\r\n\r\n"]), min_size=1, max_size=3
).map(b"".join)
padding_st = st.text(alphabet=WHITESPACE.decode(), max_size=3).map(str.encode)


@st.composite
def framed_payload(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    """Records, and a payload that frames them with any mix of line ends and padding."""
    records = draw(st.lists(records_st, max_size=20))
    parts = [draw(padding_st)]
    for record in records:
        parts += [draw(padding_st), record, draw(padding_st), draw(separator_st)]
    if records and draw(st.booleans()):
        parts.pop()  # no line end after the last record
    return records, b"".join(parts)


@st.composite
def gzip_members(draw: st.DrawFn, payload: bytes) -> bytes:
    """``payload`` gzipped in one or more members, cut at any points, records included."""
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    level = draw(st.sampled_from([1, 6, 9]))
    return b"".join(gzip.compress(piece, level, mtime=0) for piece in pieces)


@given(framed_payload(), st.data())
def test_records_survive_any_framing_and_member_split(
    framed: tuple[list[bytes], bytes], data: st.DataObject
) -> None:
    records, payload = framed
    body = data.draw(gzip_members(payload))
    assert split_records(decode_body(body, data.draw(st.sampled_from(GZIP_NAMES)), 1 << 20)) == (
        records
    )
    # Uncompressed, the same payload is read as is, unless it starts like gzip (see README).
    if not payload.startswith(GZIP_MAGIC):
        assert split_records(decode_body(payload, None, 1 << 20)) == records


@st.composite
def damaged_gzip(draw: st.DrawFn) -> bytes:
    body = bytearray(gzip.compress(draw(st.binary(max_size=2000)), mtime=0))
    damage = draw(st.sampled_from(["truncate", "flip", "append", "prepend-magic"]))
    if damage == "truncate":
        del body[draw(st.integers(0, len(body) - 1)) :]
    elif damage == "flip":
        body[draw(st.integers(0, len(body) - 1))] ^= draw(st.integers(1, 255))
    elif damage == "append":
        body += draw(st.binary(min_size=1, max_size=40))
    else:
        body[:0] = b"\x1f\x8b" + draw(st.binary(max_size=40))
    return bytes(body)


@given(
    st.one_of(damaged_gzip(), st.binary(max_size=3000)),
    st.sampled_from([None, "", "identity", *GZIP_NAMES, "br", "deflate"]),
    st.integers(0, 5000),
)
def test_decoding_any_bytes_fails_only_in_the_named_ways(
    body: bytes, encoding: str | None, limit: int
) -> None:
    try:
        payload = decode_body(body, encoding, limit)
    except (BadPayload, PayloadTooLarge, UnsupportedEncoding):
        return
    assert len(payload) <= limit


# The store across restarts and torn tails.

line_st = st.binary(min_size=1, max_size=60).filter(lambda b: b"\n" not in b)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.lists(line_st, max_size=5), max_size=6),
            st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_the_store_gives_back_every_appended_record_across_restarts_and_torn_tails(
    runs: list[tuple[list[list[bytes]], bytes]],
) -> None:
    """What goes in comes out byte-exact; a torn tail left by a crash is all that is dropped."""

    async def run(directory: Path, appends: list[list[bytes]]) -> None:
        store = EventStore(directory)
        store.open()
        for batch in appends:
            await store.append(batch)
        await store.close()

    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        expected = b""
        for appends, torn in runs:
            asyncio.run(run(directory, appends))
            expected += b"".join(record + b"\n" for batch in appends for record in batch)
            with (directory / "events.jsonl").open("ab") as events:
                events.write(torn)  # a crash mid-line
        asyncio.run(run(directory, []))
        assert (directory / "events.jsonl").read_bytes() == expected


# The HTTP body path.


@dataclass
class ThreadedReceiver:
    """A receiver on loopback, served by an event loop in its own thread."""

    directory: Path
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    port: int = 0

    def __post_init__(self) -> None:
        self.store = EventStore(self.directory)
        self.receiver = Receiver(
            self.store,
            ReceiverConfig(
                authorization=AUTH, max_body_bytes=LIMIT, header_timeout=5, body_timeout=5
            ),
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedReceiver:
        self.thread.start()
        self.store.open()
        self._run(self.receiver.start(bind_listen_socket("127.0.0.1", 0)))
        self.port = self.receiver.bound_address[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._run(self.receiver.stop())
        self._run(self.store.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def _run(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)  # type: ignore[arg-type]


@dataclass
class Attempt:
    """One generated request and what it must lead to."""

    raw: bytes
    # None: any allowed status; else the one status the receiver must answer.
    status: int | None
    # The records a 202 must add; None when only self-consistency can be checked.
    records: list[bytes] | None
    body: bytes
    encoding: str | None


@st.composite
def attempts(draw: st.DrawFn) -> Attempt:
    # At most one thing is wrong with the envelope, so each refusal has one expected status.
    flaw = draw(st.one_of(st.none(), st.sampled_from(["path", "method", "authorization"])))
    path = draw(st.sampled_from(["/audit-logs", "/audit-logs?from=konnect"]))
    method, authorization = "POST", AUTH
    if flaw == "path":
        path = draw(st.sampled_from(["/", "/audit-logs/", "/AUDIT-LOGS", "/audit-logsx"]))
    elif flaw == "method":
        method = draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH"]))
    elif flaw == "authorization":
        authorization = draw(
            st.sampled_from(
                [None, "", AUTH[:-1], AUTH + "x", AUTH.upper(), AUTH.replace(" ", "  ")]
            )
        )
    kind = draw(st.sampled_from(["records", "near the limit", "damaged gzip", "random bytes"]))
    encoding: str | None
    if kind in ("records", "near the limit"):
        if kind == "records":
            records, payload = draw(framed_payload())
        else:
            records = [b"r" * draw(st.integers(LIMIT - 3, LIMIT + 2))]
            payload = records[0] + draw(st.sampled_from([b"", b"\n", b"\r\n"]))
        compress = draw(st.sampled_from(["no", "declared", "undeclared"]))
        if compress == "no":
            encoding = draw(st.sampled_from([None, "identity", "br"]))
            body = payload
        else:
            body = draw(gzip_members(payload))
            encoding = draw(st.sampled_from(GZIP_NAMES)) if compress == "declared" else None
        expected: list[bytes] | None = records
        # The raw size is checked while reading, the encoding and decoded size after.
        if len(body) > LIMIT:
            content_status: int | None = 413
        elif encoding == "br":
            content_status = 415
        elif body.startswith(GZIP_MAGIC):
            # Documented: a body that starts with gzip's magic bytes is decoded as gzip, so
            # an uncompressed record that begins with them is refused (JSON and CEF never do).
            expected, content_status = None, None
        elif len(payload) > LIMIT:
            content_status = 413
        else:
            content_status = 202
    elif kind == "damaged gzip":
        body = draw(damaged_gzip())
        encoding = draw(st.sampled_from([None, *GZIP_NAMES]))
        expected, content_status = None, 413 if len(body) > LIMIT else None
    else:
        body = draw(st.binary(max_size=6000))
        encoding = None
        assume(not body.startswith(GZIP_MAGIC))
        expected = [r for r in map(bytes.strip, body.splitlines()) if r]
        content_status = 413 if len(body) > LIMIT else 202

    headers = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    if authorization is not None:
        headers.append(b"Authorization: " + authorization.encode())
    if encoding is not None:
        headers.append(b"Content-Encoding: " + encoding.encode())
    if draw(st.booleans()):
        headers.append(b"Expect: 100-continue")
    if draw(st.booleans()):
        headers.append(b"Content-Length: %d" % len(body))
        framed = body
    else:
        headers.append(b"Transfer-Encoding: chunked")
        size = draw(st.integers(1, 700))
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    raw = b"\r\n".join(headers) + b"\r\n\r\n" + framed

    if path.partition("?")[0] != "/audit-logs":
        status: int | None = 404
    elif method != "POST":
        status = 405
    elif authorization != AUTH:
        status = 401
    else:
        status = content_status
    return Attempt(raw, status, expected, body, encoding)


def send(port: int, raw: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # A request refused early may meet a closed socket; its answer is already on its way.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        answer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    # Skip a "100 Continue" before the final answer.
    while answer.startswith(b"HTTP/1.1 1"):
        answer = answer.partition(b"\r\n\r\n")[2]
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer.split(b" ", 2)[1])


def test_fuzzed_requests_get_allowed_answers_and_store_exactly_the_accepted_records(
    tmp_path: Path, figures: Figures, soak: bool
) -> None:
    counts = {"requests": 0, "accepted": 0, "records": 0}
    statuses: dict[int, int] = {}

    with ThreadedReceiver(tmp_path / "store") as running:
        events = running.store.path

        @settings(
            max_examples=3000 if soak else 200,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(attempts())
        def one(attempt: Attempt) -> None:
            before = events.stat().st_size
            status = send(running.port, attempt.raw)
            with events.open("rb") as stored:
                stored.seek(before)
                added = stored.read()

            assert status in ALLOWED
            if attempt.status is not None:
                assert status == attempt.status
            if status != 202:
                assert added == b""
            else:
                records = attempt.records
                if records is None:
                    payload = decode_body(attempt.body, attempt.encoding, LIMIT)
                    records = split_records(payload)
                assert added == b"".join(record + b"\n" for record in records)
                counts["accepted"] += 1
                counts["records"] += len(records)
            counts["requests"] += 1
            statuses[status] = statuses.get(status, 0) + 1

        one()
        stored_lines = events.read_bytes().count(b"\n")

    assert 500 not in statuses
    assert stored_lines == counts["records"]
    figures.record(
        "HTTP fuzzing",
        f"{counts['requests']} generated requests (paths, methods, credentials, encodings,"
        " framings, damaged gzip, random bytes)",
        "answers "
        + ", ".join(f"{s}x{n}" for s, n in sorted(statuses.items()))
        + "; no 500; the file holds exactly the accepted batches",
        sent=None,
        acknowledged=counts["records"],
        stored=stored_lines,
        lost=counts["records"] - stored_lines,
    )
