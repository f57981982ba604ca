"""Printing records for ``kongctl tail``: the jq filter, the stdout writer, ``tail -n``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kongctl.auditlogs.tail import JqFilter, TailClosed, TailWriter, last_records
from kongctl.errors import UsageError

CEF_LINE = b"CEF:0|KongInc|Konnect|1.0|konnect|Authorize|1|rt=1714565000000 sig=AAAA"
BIG_NUMBERS = (
    b'{"trace_id":6891110586028963295,"a":1.000000000000000000001,"b":100000000000000000000000}'
)


def run(expression: str, records: list[bytes]) -> tuple[list[str], list[str]]:
    return JqFilter.compile(expression).filter_batch(records)


# Compiling


def test_invalid_expression_is_a_usage_error_with_jqs_message() -> None:
    with pytest.raises(UsageError) as caught:
        JqFilter.compile(".a |")

    message = caught.value.message
    assert message.startswith("invalid --jq expression: syntax error")
    assert "jq: error" not in message
    assert "\n" not in message


def test_undefined_function_is_named_in_the_usage_error() -> None:
    with pytest.raises(UsageError, match=r"nosuchfunction/0 is not defined"):
        JqFilter.compile("nosuchfunction")


def test_empty_expression_is_rejected() -> None:
    with pytest.raises(UsageError, match="invalid --jq expression"):
        JqFilter.compile("  ")


def test_module_directive_is_rejected_with_a_reason() -> None:
    with pytest.raises(UsageError, match="only a filter is supported"):
        JqFilter.compile('module {"name": "mine"}; .')


@pytest.mark.parametrize("expression", [".a # the answer", ".a # continued \\"])
def test_trailing_comment_does_not_swallow_the_filter(expression: str) -> None:
    assert run(expression, [b'{"a":42}']) == (["42"], [])


# Output


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (".", BIG_NUMBERS.decode()),
        ("{t:.trace_id}", '{"t":6891110586028963295}'),
        (".a", "1.000000000000000000001"),
        (".b", "100000000000000000000000"),
        (
            "[.trace_id, .a, .b]",
            "[6891110586028963295,1.000000000000000000001,100000000000000000000000]",
        ),
    ],
)
def test_numbers_the_filter_does_not_change_keep_their_digits(
    expression: str, expected: str
) -> None:
    assert run(expression, [BIG_NUMBERS]) == ([expected], [])


def test_each_result_is_one_compact_line() -> None:
    outputs, _ = run(".items[]", [b'{"items": [1, {"b": [2, 3]}, "x y"]}'])

    assert outputs == ["1", '{"b":[2,3]}', '"x y"']


def test_filter_that_yields_nothing_prints_nothing() -> None:
    records = [b'{"name":"Login"}', b'{"name":"Authorize"}', b'{"name":"Login"}']

    outputs, warnings = run('select(.name == "Authorize") | .name', records)

    assert outputs == ['"Authorize"']
    assert warnings == []


def test_invalid_utf8_is_replaced_in_the_output() -> None:
    assert run(".a", [b'{"a":"caf\xe9"}']) == (['"caf\ufffd"'], [])


# Bad records


def test_record_that_is_not_json_is_skipped_with_one_warning() -> None:
    records = [b'{"n":1}', CEF_LINE, b'{"n":3}']

    outputs, warnings = run(".n", records)

    assert outputs == ["1", "3"]
    assert warnings == [f"warning: skipped record (not JSON): {CEF_LINE[:60].decode()}..."]


def test_jq_runtime_error_skips_only_that_record() -> None:
    records = [b'{"n":1}', b'{"n":"two"}', b'{"n":3}']

    outputs, warnings = run(".n + 1", records)

    assert outputs == ["2", "4"]
    assert warnings == [
        'warning: jq error on record: string ("two") and number (1) cannot be added'
    ]


def test_results_before_a_runtime_error_are_kept() -> None:
    outputs, warnings = run('.n, error("boom")', [b'{"n":1}', b'{"n":2}'])

    assert outputs == ["1", "2"]
    assert warnings == ["warning: jq error on record: boom"] * 2


def test_error_value_that_is_not_a_string_is_shown_as_json() -> None:
    _, warnings = run("error({code: 7})", [b"{}"])

    assert warnings == ['warning: jq error on record: {"code":7} (not a string)']


def test_torn_record_does_not_merge_with_the_next_one() -> None:
    # Joined with newlines, '{"a":' and '1}' would parse as one value: each must fail alone.
    outputs, warnings = run(".", [b'{"a":', b"1}", b'{"b":2}'])

    assert outputs == ['{"b":2}']
    assert len(warnings) == 2


def test_two_json_texts_on_one_line_are_not_a_record() -> None:
    outputs, warnings = run(".", [b'{"a":1} {"b":2}', b'{"c":3}'])

    assert outputs == ['{"c":3}']
    assert len(warnings) == 1


def test_blank_record_is_skipped_with_a_warning() -> None:
    outputs, warnings = run(".", [b'{"a":1}', b"", b'{"b":2}'])

    assert outputs == ['{"a":1}', '{"b":2}']
    assert warnings == ["warning: skipped record (not JSON): ..."]


def test_filter_keeps_working_after_a_batch_with_a_bad_record() -> None:
    jq_filter = JqFilter.compile(".n")

    jq_filter.filter_batch([CEF_LINE, b'{"n":1}'])

    assert jq_filter.filter_batch([b'{"n":2}', b'{"n":3}']) == (["2", "3"], [])


def test_halt_ends_a_record_and_keeps_what_came_before() -> None:
    assert run(".n, halt, .n", [b'{"n":1}', b'{"n":2}']) == (["1", "2"], [])


GOOD = st.dictionaries(
    st.sampled_from(["name", "trace_id", "event_ts"]),
    st.one_of(st.integers(), st.text(max_size=5)),
    min_size=1,
).map(lambda d: ("good", json.dumps({"n": 1, **d}).encode()))
BAD = st.sampled_from([CEF_LINE, b'{"a":', b"1}", b"nope", b'{"a":1}}', b""]).map(
    lambda line: ("bad", line)
)


@given(st.lists(st.one_of(GOOD, BAD), max_size=30))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_every_good_record_prints_in_order_and_every_bad_one_warns_once(
    records: list[tuple[str, bytes]],
) -> None:
    outputs, warnings = run(".", [line for _, line in records])

    assert [json.loads(output) for output in outputs] == [
        json.loads(line) for kind, line in records if kind == "good"
    ]
    assert len(warnings) == sum(kind == "bad" for kind, _ in records)


# The writer


def test_records_are_printed_raw_one_per_line() -> None:
    out = io.BytesIO()
    writer = TailWriter(out, None, warn=lambda line: None)

    writer.write_records([b'{"a":1}', CEF_LINE])

    assert out.getvalue() == b'{"a":1}\n' + CEF_LINE + b"\n"


def test_jq_results_are_printed_and_warnings_go_to_warn() -> None:
    out = io.BytesIO()
    warned: list[str] = []
    writer = TailWriter(out, JqFilter.compile(".n"), warn=warned.append)

    writer.write_records([b'{"n":6891110586028963295}', CEF_LINE])

    assert out.getvalue() == b"6891110586028963295\n"
    assert len(warned) == 1


def test_a_batch_is_readable_as_soon_as_it_is_written() -> None:
    read_fd, write_fd = os.pipe()
    with open(read_fd, "rb", buffering=0) as reader, open(write_fd, "wb", buffering=1 << 20) as out:
        TailWriter(out, None, warn=lambda line: None).write_records([b"one", b"two"])

        os.set_blocking(read_fd, False)
        assert reader.read(100) == b"one\ntwo\n"


def test_text_stream_is_written_through_its_byte_buffer() -> None:
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="ascii")
    text.write("before\n")

    TailWriter(text, None, warn=lambda line: None).write_records([b"caf\xc3\xa9"])

    assert raw.getvalue() == b"before\ncaf\xc3\xa9\n"


CHILD = textwrap.dedent(
    """
    import sys
    from kongctl.auditlogs.tail import TailClosed, TailWriter

    writer = TailWriter(sys.stdout, None, warn=print)
    sys.stdout.write("started\\n")
    try:
        while True:
            writer.write_records([b'{"record":"%s"}' % (b"x" * 50)] * 10)
    except TailClosed:
        sys.stderr.write("tail closed\\n")
    print("a goodbye written during cleanup")  # must not fail now, nor at exit
    """
)


def test_closed_pipe_stops_the_tail_quietly() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        assert child.stdout.readline() == b"started\n"
        child.stdout.read(1000)
        child.stdout.close()  # like `kongctl tail | head`

        stderr = child.stderr.read().decode()
        assert child.wait(timeout=10) == 0

    assert stderr == "tail closed\n"


def test_tail_closed_is_raised_on_a_closed_pipe() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    with open(write_fd, "wb") as out:
        with pytest.raises(TailClosed):
            TailWriter(out, None, warn=lambda line: None).write_records([b"x"])
        out.write(b"more")  # the descriptor now leads to /dev/null, so nothing fails


# tail -n


def test_last_records_are_the_last_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"one\ntwo\nthree\nfour\n")

    assert last_records(path, 2) == [b"three", b"four"]
    assert last_records(path, 10) == [b"one", b"two", b"three", b"four"]
    assert last_records(path, 0) == []


def test_line_still_being_written_is_not_a_record(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'one\ntwo\n{"half":')

    assert last_records(path, 1) == [b"two"]


def test_missing_record_file_has_no_records(tmp_path: Path) -> None:
    assert last_records(tmp_path / "events.jsonl", 5) == []


def test_last_records_do_not_read_the_whole_file(tmp_path: Path) -> None:
    # A sparse file of 8 GiB: reading it all would take far longer than the test timeout.
    path = tmp_path / "events.jsonl"
    with path.open("wb") as file:
        file.truncate(8 << 30)
        file.seek(0, os.SEEK_END)
        file.write(b"\nold\nnew\n")

    assert last_records(path, 2) == [b"old", b"new"]


@given(
    st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"")),
    st.integers(min_value=0, max_value=25),
    st.integers(min_value=1, max_value=16),
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_last_records_match_splitting_the_whole_file(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    torn: bytes,
    n: int,
    block_size: int,
) -> None:
    path = tmp_path_factory.mktemp("tail") / "events.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines) + torn)

    expected = lines[-n:] if n else []
    assert last_records(path, n, block_size=block_size) == expected
