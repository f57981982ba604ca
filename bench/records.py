"""Benchmark inputs: realistic Konnect JSON audit records, and gzip batches tagged for checking.

Records come from the emulator's event factory (the same shapes, field order and 63-bit trace
ids Konnect sends). Rendering one costs ~15 µs, too slow for tens of thousands of batches, so a
few thousand distinct records are rendered once and batches cycle through them; each record of
a batch starts with the batch number and its index, so the record file can be checked batch by
batch afterwards.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from kongctl.emulator.records import EventFactory, render

DISTINCT_RECORDS = 4999  # prime, so consecutive batches start at different records
_TAG = re.compile(rb'^\{"bench_batch":(\d+),"bench_index":(\d+),')


def distinct_records(count: int = DISTINCT_RECORDS, seed: int = 7) -> list[bytes]:
    """``count`` rendered JSON records, a few milliseconds of events apart."""
    factory = EventFactory(seed=seed)
    start = datetime(2025, 5, 1, tzinfo=UTC)
    return [
        render(factory.next_event(start + timedelta(milliseconds=37 * i)), "json").encode()
        for i in range(count)
    ]


def records(count: int, seed: int = 7) -> list[bytes]:
    """``count`` records for filter benchmarks: the distinct ones, cycled."""
    pool = distinct_records(min(count, DISTINCT_RECORDS), seed)
    return [pool[i % len(pool)] for i in range(count)]


def tagged_batch(pool: list[bytes], batch: int, size: int) -> list[bytes]:
    """Batch number ``batch``: ``size`` records of the pool, each tagged with batch and index."""
    first = batch * size
    return [
        b'{"bench_batch":%d,"bench_index":%d,%s'
        % (batch, index, pool[(first + index) % len(pool)][1:])
        for index in range(size)
    ]


def gzip_body(batch: list[bytes]) -> bytes:
    """A delivery body as Konnect sends it: newline-separated records, gzip-compressed."""
    return gzip.compress(b"\n".join(batch) + b"\n", compresslevel=6, mtime=0)


def batch_tags(lines: Iterator[bytes]) -> Iterator[tuple[int, int]]:
    """(batch, index) of each stored line; (-1, -1) for a line the benchmark did not send."""
    for line in lines:
        tag = _TAG.match(line)
        yield (int(tag[1]), int(tag[2])) if tag else (-1, -1)
