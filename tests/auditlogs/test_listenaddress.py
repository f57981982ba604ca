"""The listen address: parsing --listen-address and binding the listener's socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from kongctl.auditlogs.listenaddress import (
    bind_listen_socket,
    format_listen_address,
    parse_listen_address,
)
from kongctl.errors import ExecutionError, UsageError


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:19090", ("127.0.0.1", 19090)),
        ("localhost:8080", ("localhost", 8080)),
        ("[::1]:0", ("::1", 0)),
        ("[::]:65535", ("::", 65535)),
        (":19090", ("", 19090)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("my-host.example.com:443", ("my-host.example.com", 443)),
    ],
)
def test_valid_listen_addresses_are_split_into_host_and_port(
    value: str, expected: tuple[str, int]
) -> None:
    assert parse_listen_address(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "expected host:port"),
        ("127.0.0.1", "expected host:port"),
        ("127.0.0.1:", "port must be a number"),
        ("127.0.0.1:65536", "port must be a number"),
        ("127.0.0.1:-1", "port must be a number"),
        ("127.0.0.1:+80", "port must be a number"),
        ("127.0.0.1: 80", "port must be a number"),
        ("127.0.0.1:８０", "port must be a number"),
        ("::1:8080", "brackets"),
        ("[::1]", "expected :port"),
        ("[::1:8080", "missing ]"),
        ("[example.com]:80", "not an IPv6 address"),
        ("bad host:80", "not a host name"),
        ("-leading:80", "not a host name"),
    ],
)
def test_invalid_listen_addresses_are_usage_errors(value: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason) as raised:
        parse_listen_address(value)
    assert raised.value.message.startswith(f'invalid --listen-address "{value}": ')


@pytest.mark.parametrize(
    ("host", "shown"), [("127.0.0.1", "127.0.0.1:80"), ("::1", "[::1]:80"), ("", ":80")]
)
def test_addresses_are_shown_as_users_write_them(host: str, shown: str) -> None:
    assert format_listen_address(host, 80) == shown


def test_bound_socket_listens_without_blocking(sockets: list[socket.socket]) -> None:
    sock = bind_listen_socket("127.0.0.1", 0)
    sockets.append(sock)
    host, port = sock.getsockname()
    assert host == "127.0.0.1"
    assert port > 0
    assert not sock.getblocking()
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_a_port_in_use_is_named_with_a_hint(sockets: list[socket.socket]) -> None:
    sockets.append(bind_listen_socket("127.0.0.1", 0))
    port = sockets[0].getsockname()[1]
    with pytest.raises(ExecutionError) as raised:
        sockets.append(bind_listen_socket("127.0.0.1", port))
    assert raised.value.message == f"listen address 127.0.0.1:{port} is already in use"
    assert raised.value.hint is not None
    assert "--listen-address" in raised.value.hint
    assert "kongctl ps" in raised.value.hint


def test_an_address_of_no_local_interface_cannot_be_bound() -> None:
    with pytest.raises(ExecutionError, match=r"cannot listen on 192\.0\.2\.1:0: "):
        bind_listen_socket("192.0.2.1", 0)


def test_localhost_binds_ipv4_loopback(sockets: list[socket.socket]) -> None:
    sockets.append(bind_listen_socket("localhost", 0))
    assert sockets[0].getsockname()[0] == "127.0.0.1"


def test_an_empty_host_binds_every_interface(sockets: list[socket.socket]) -> None:
    sockets.append(bind_listen_socket("", 0))
    host, port = sockets[0].getsockname()[:2]
    assert host in ("::", "0.0.0.0")
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
