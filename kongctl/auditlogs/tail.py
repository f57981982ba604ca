"""Printing stored records to stdout for ``kongctl tail``, optionally through a jq filter.

Records are printed exactly as stored, one per line. With ``--jq`` each record goes through
libjq and its results are printed like ``jq -c``: one compact JSON text per line.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from kongctl.errors import UsageError

logger = logging.getLogger(__name__)

# Each input ends with this empty string: jq texts are never empty, so counting them tells
# whether libjq saw exactly one input per record (a torn line can merge with the next one).
_END_OF_INPUT = ""
# Runtime errors come back as this byte and the error value as JSON; no JSON text starts so.
_ERROR_MARK = "\x00"

_NOT_JSON_PREVIEW = 60
_TAIL_BLOCK_SIZE = 64 * 1024


class TailClosed(Exception):
    """The reader of stdout went away (a closed pipe); tailing should stop quietly."""


class JqFilter:
    """A compiled ``--jq`` expression that keeps the numbers it does not change intact.

    libjq keeps number literals as written, but handing results to Python goes through
    doubles (6891110586028963295 would print as 6891110586028962816). The program therefore
    ends in ``tojson`` and jq's own text is printed.
    """

    def __init__(self, expression: str, program: Any) -> None:
        self.expression = expression
        self._program = program

    @classmethod
    def compile(cls, expression: str) -> JqFilter:
        """Compile ``expression``; raise UsageError with jq's message when it is not valid."""
        if not expression.strip():
            raise UsageError("invalid --jq expression: it is empty")
        if "\x00" in expression:
            raise UsageError("invalid --jq expression: it contains a NUL character")

        import jq  # here, not at the top: only commands that filter should load libjq

        try:
            program = jq.compile(_wrap(expression))
        except ValueError as wrapped_error:
            raise UsageError(
                f"invalid --jq expression: {_explain(jq, expression, wrapped_error)}"
            ) from None
        return cls(expression, program)

    def filter_batch(self, records: Sequence[bytes]) -> tuple[list[str], list[str]]:
        """Run the filter over ``records``; return (output lines, warning lines), in order."""
        # The published jq wheels compile libjq without optimisation, which makes this about
        # 2.7 times slower; `make` builds jq from source (bench/tail_jq.py measures both).
        if not records:
            return [], []
        results = self._run_batch(records)
        if results is not None and results.count(_END_OF_INPUT) == len(records):
            outputs: list[str] = []
            warnings: list[str] = []
            _collect(results, outputs, warnings)
            return outputs, warnings
        return self._filter_one_by_one(records)

    def _run_batch(self, records: Sequence[bytes]) -> list[str] | None:
        # One call over the whole batch: libjq parses the records as a stream of inputs.
        text = b"\n".join(records).decode("utf-8", errors="replace")
        try:
            results: list[str] = self._program.input_text(text).all()
        except ValueError:
            # A record that is not JSON stops the stream. Never resume a failed iterator:
            # libjq asserts (and aborts the process) when asked for more after an error.
            return None
        return results

    def _filter_one_by_one(self, records: Sequence[bytes]) -> tuple[list[str], list[str]]:
        # The slow path for a batch with a bad record: each record alone, so one bad record
        # costs only its own output and every good output keeps its place.
        outputs: list[str] = []
        warnings: list[str] = []
        for record in records:
            self._filter_one(record, outputs, warnings)
        return outputs, warnings

    def _filter_one(self, record: bytes, outputs: list[str], warnings: list[str]) -> None:
        text = record.decode("utf-8", errors="replace")
        if not text.strip():
            warnings.append(_not_json_warning(text))
            return
        results: list[str] = []
        try:
            for result in self._program.input_text(text):
                results.append(result)
        except ValueError as exc:
            message = str(exc)
            if message.startswith("parse error"):
                warnings.append(_not_json_warning(text))
            else:
                warnings.append(f"warning: jq error on record: {_first_line(message)}")
            return
        if results.count(_END_OF_INPUT) > 1:
            # Two JSON texts on one line: not one record, so not a JSON record either.
            warnings.append(_not_json_warning(text))
            return
        # No end marker at all means the filter called halt: print what came before it.
        _collect(results, outputs, warnings)


class TailWriter:
    """Prints batches of records (or their jq results) to a stream, one flush per batch."""

    def __init__(
        self,
        stream: BinaryIO | TextIO,
        jq_filter: JqFilter | None,
        warn: Callable[[str], None],
    ) -> None:
        self._stream = stream
        self._binary = _binary_stream(stream)
        self._jq_filter = jq_filter
        self._warn = warn

    def write_records(self, records: Sequence[bytes]) -> None:
        """Print ``records``; raise TailClosed when the reader went away."""
        if not records:
            return
        if self._jq_filter is None:
            data = b"\n".join(records) + b"\n"
        else:
            outputs, warnings = self._jq_filter.filter_batch(records)
            for warning in warnings:
                self._warn(warning)
            if not outputs:
                return
            data = ("\n".join(outputs) + "\n").encode("utf-8", errors="replace")
        self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            if self._binary is None:
                text_stream: Any = self._stream
                text_stream.write(data.decode("utf-8", errors="replace"))
                text_stream.flush()
                return
            if self._binary is not self._stream:
                self._stream.flush()  # text written before through the wrapper comes first
            self._binary.write(data)
            self._binary.flush()
        except BrokenPipeError:
            self._silence()
            raise TailClosed("stdout was closed by its reader") from None

    def _silence(self) -> None:
        # With the pipe gone, every later write to stdout fails again: a message printed
        # during cleanup raises, and the flush Python does at exit prints "Exception ignored
        # ... BrokenPipeError". Pointing the descriptor at /dev/null lets those writes (and
        # anything left in the buffer) drain into nothing instead.
        try:
            fd = self._stream.fileno()
        except (OSError, ValueError, io.UnsupportedOperation):
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        logger.debug("stdout reader gone fd=%s", fd)


def last_records(path: Path, n: int, *, block_size: int = _TAIL_BLOCK_SIZE) -> list[bytes]:
    """The last ``n`` complete lines of ``path``, read backwards; [] when it does not exist.

    Memory follows ``n`` and the line length, not the file size.
    """
    if n <= 0:
        return []
    try:
        with path.open("rb") as file:
            data, at_start = _read_tail(file, n, block_size)
    except FileNotFoundError:
        return []

    # Bytes after the last newline are a record still being written (or a torn one).
    end = data.rfind(b"\n")
    if end < 0:
        return []
    lines = data[:end].split(b"\n")
    if not at_start:
        lines = lines[1:]  # the first piece starts somewhere inside a line
    return lines[-n:]


def _read_tail(file: BinaryIO, n: int, block_size: int) -> tuple[bytes, bool]:
    """Enough bytes from the end of ``file`` to hold its last ``n`` complete lines."""
    position = file.seek(0, os.SEEK_END)
    blocks: list[bytes] = []
    newlines = 0
    # n complete lines need n + 1 newlines: one before the first of them, one ending each.
    while position > 0 and newlines <= n:
        size = min(block_size, position)
        position -= size
        file.seek(position)
        block = file.read(size)
        blocks.append(block)
        newlines += block.count(b"\n")
    blocks.reverse()
    return b"".join(blocks), position == 0


def _wrap(expression: str) -> str:
    # A blank line ends the user's text: a trailing "# comment" (even one continued with a
    # backslash) cannot swallow the closing parenthesis. try/catch turns a runtime error into
    # a marked result so one bad record does not stop the others.
    return (
        f"(try (({expression}\n\n) | tojson) catch "
        f'("{_json_escape(_ERROR_MARK)}" + tojson)), "{_END_OF_INPUT}"'
    )


def _json_escape(text: str) -> str:
    return json.dumps(text)[1:-1]


def _explain(jq: Any, expression: str, wrapped_error: ValueError) -> str:
    """jq's own words for why ``expression`` does not compile, without jq's decorations."""
    try:
        jq.compile(expression)
    except ValueError as exc:
        return _clean_compile_error(str(exc))
    # Only the wrapped program fails: module directives must open a program, not a term.
    logger.debug("jq expression compiles only unwrapped error=%s", wrapped_error)
    return "only a filter is supported (no module, import or include directives)"


def _clean_compile_error(message: str) -> str:
    reasons = [
        line.removeprefix("jq: error:").strip().rstrip(":")
        for line in message.splitlines()
        if line.startswith("jq: error")
    ]
    reasons = [reason for reason in reasons if reason]
    if not reasons:
        return _first_line(message) or "it does not compile"
    return "; ".join(reasons)


def _collect(results: list[str], outputs: list[str], warnings: list[str]) -> None:
    """Sort jq results into printable lines and warnings, dropping the end markers."""
    for result in results:
        if not result:
            continue
        if result[0] == _ERROR_MARK:
            warnings.append(f"warning: jq error on record: {_error_text(result[1:])}")
        else:
            outputs.append(result)


def _error_text(error_json: str) -> str:
    error = json.loads(error_json)
    if isinstance(error, str):
        return _first_line(error)
    return f"{error_json} (not a string)"


def _not_json_warning(text: str) -> str:
    preview = text[:_NOT_JSON_PREVIEW].replace("\r", " ")
    return f"warning: skipped record (not JSON): {preview}..."


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]


def _binary_stream(stream: BinaryIO | TextIO) -> BinaryIO | None:
    """The byte stream under ``stream``, or None when only text can be written to it."""
    if isinstance(stream, io.TextIOBase):
        return getattr(stream, "buffer", None)
    return stream  # type: ignore[return-value]
