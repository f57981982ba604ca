"""Every listen/tail flag rule, checked before any Konnect call.

The Konnect base URL points at a closed port: a rule that let a call through would end in
"cannot reach Konnect" instead of its own message.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from kongctl.auditlogs.options import endpoint_from_public_url
from kongctl.cli.listen import check_forms
from kongctl.cli.root import run
from kongctl.errors import UsageError


@pytest.fixture
def closed_port() -> Iterator[int]:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    yield port


@pytest.fixture
def base(closed_port: int) -> list[str]:
    return ["--base-url", f"http://127.0.0.1:{closed_port}", "--pat", "kpat_test"]


GOOD = ["--authorization", "Bearer s3cret", "--endpoint", "https://example.com/audit-logs"]


def fails(capsys: pytest.CaptureFixture[str], args: list[str], code: int = 2) -> str:
    assert run(args) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("Error: ") or "\nError: " in err
    return err


@pytest.mark.parametrize(
    "forms",
    [[], ["audit-logs"], ["audit-log"], ["al"], ["konnect", "audit-logs"], ["konnect", "al"]],
)
def test_documented_command_forms_are_accepted(forms: list[str]) -> None:
    check_forms("listen", forms)


@pytest.mark.parametrize("forms", [["foo"], ["konnect"], ["audit-logs", "extra"], ["konnect", "x"]])
def test_other_positional_arguments_are_rejected(forms: list[str]) -> None:
    with pytest.raises(UsageError):
        check_forms("tail", forms)


def test_unexpected_argument_is_a_usage_error(capsys, base) -> None:
    err = fails(capsys, ["listen", "events", *GOOD, *base])
    assert "unexpected argument" in err


def test_missing_authorization_is_rejected(capsys, base) -> None:
    err = fails(capsys, ["listen", "--endpoint", "https://example.com/a", *base])
    assert "--authorization is required" in err


def test_blank_authorization_is_rejected(capsys, base) -> None:
    err = fails(capsys, ["listen", "--authorization", "  ", "--endpoint", "https://e.com/a", *base])
    assert "--authorization is required" in err


def test_detach_with_tail_is_rejected(capsys, base) -> None:
    err = fails(capsys, ["tail", "--detach", *GOOD, *base])
    assert "--detach cannot be used with --tail" in err


def test_short_detach_with_tail_is_rejected(capsys, base) -> None:
    err = fails(capsys, ["listen", "--tail", "-d", *GOOD, *base])
    assert "--detach cannot be used with --tail" in err


def test_jq_without_tail_is_rejected(capsys, base) -> None:
    err = fails(capsys, ["listen", "--jq", ".name", *GOOD, *base])
    assert "--jq requires --tail" in err


def test_tail_false_turns_tail_off_so_jq_is_rejected(capsys, base) -> None:
    err = fails(capsys, ["tail", "--tail=false", "--jq", ".", *GOOD, *base])
    assert "--jq requires --tail" in err


def test_jq_that_does_not_compile_is_rejected(capsys, base) -> None:
    err = fails(capsys, ["tail", "--jq", ".[", *GOOD, *base])
    assert "invalid --jq expression" in err


def test_missing_endpoint_names_both_flags(capsys, base) -> None:
    err = fails(capsys, ["listen", "--authorization", "x", *base])
    assert "--endpoint" in err
    assert "--public-url" in err


def test_public_url_without_scheme_is_rejected(capsys, base) -> None:
    err = fails(capsys, ["listen", "--authorization", "x", "--public-url", "example.com", *base])
    assert "invalid --public-url" in err


def test_endpoint_without_host_is_rejected(capsys, base) -> None:
    err = fails(capsys, ["listen", "--authorization", "x", "--endpoint", "https:///a", *base])
    assert "invalid --endpoint" in err


def test_invalid_log_format_lists_the_allowed_values(capsys, base) -> None:
    err = fails(capsys, ["listen", *GOOD, "--log-format", "xml", *base])
    assert "cef, json, cps" in err


def test_log_format_is_case_insensitive(capsys, base) -> None:
    # Validation passes, so the run reaches Konnect and fails there (the port is closed).
    err = fails(
        capsys,
        ["listen", *GOOD, "--log-format", "JSON", "--listen-address", "127.0.0.1:0", *base],
        code=1,
    )
    assert "cannot reach Konnect" in err


@pytest.mark.parametrize("address", ["nope", "127.0.0.1:99999", "127.0.0.1:http", "[::1:80"])
def test_bad_listen_address_is_rejected(capsys, base, address: str) -> None:
    err = fails(capsys, ["listen", *GOOD, "--listen-address", address, *base])
    assert "--listen-address" in err


def test_port_in_use_fails_before_konnect(capsys, base) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        err = fails(capsys, ["listen", *GOOD, "--listen-address", f"127.0.0.1:{port}", *base], 1)
    finally:
        busy.close()
    assert "already in use" in err


@pytest.mark.parametrize("value", ["0", "-1", "lots"])
def test_max_body_bytes_must_be_positive(capsys, base, value: str) -> None:
    err = fails(capsys, ["listen", *GOOD, "--max-body-bytes", value, *base])
    assert "--max-body-bytes" in err


def test_missing_token_lists_the_three_ways(capsys, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    err = fails(capsys, ["listen", *GOOD, "--listen-address", "127.0.0.1:0", "--base-url", url])
    assert "--pat" in err
    assert "KONGCTL_DEFAULT_KONNECT_PAT" in err
    assert "config.yaml" in err


def test_bad_region_is_rejected(capsys) -> None:
    err = fails(capsys, ["listen", *GOOD, "--pat", "p", "--region", "US East"])
    assert "region" in err


@pytest.mark.parametrize(
    ("public_url", "path", "endpoint"),
    [
        ("https://x.app/forwarded/", "audit-logs", "https://x.app/forwarded/audit-logs"),
        ("https://x.app", "/audit-logs", "https://x.app/audit-logs"),
        ("https://x.app/", "/audit-logs", "https://x.app/audit-logs"),
        ("https://x.app/base?q=1#frag", "/hook", "https://x.app/base/hook"),
        ("http://127.0.0.1:8080", "/a", "http://127.0.0.1:8080/a"),
    ],
)
def test_endpoint_is_public_url_joined_with_path(public_url: str, path: str, endpoint: str) -> None:
    assert endpoint_from_public_url(public_url, path) == endpoint
