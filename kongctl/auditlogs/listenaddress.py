"""The listen address: parsing ``--listen-address`` and binding the listener's socket."""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
from typing import Any

from kongctl.errors import ExecutionError, UsageError

BACKLOG = 1024
_PORT = re.compile(r"[0-9]{1,5}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
# Errors that mean "this address family is not available here", so the next one is tried.
_FAMILY_UNAVAILABLE = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)
_INET_FAMILIES = (socket.AF_INET, socket.AF_INET6)
# A socket address as socket.bind takes it: (host, port) or (host, port, flowinfo, scope_id).
SockAddr = tuple[Any, ...]


def parse_listen_address(value: str) -> tuple[str, int]:
    """Split ``host:port``, ``[ipv6]:port`` or ``:port`` into host and port (0 to 65535).

    An empty host, as in ``:19090``, means every interface (IPv4 and IPv6), as in Go's
    net.Listen. Port 0 asks the system for a free port.
    """

    def invalid(reason: str) -> UsageError:
        return UsageError(f'invalid --listen-address "{value}": {reason}')

    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket:
            raise invalid("missing ] after the IPv6 address")
        if not rest.startswith(":"):
            raise invalid("expected :port after the bracketed IPv6 address")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise invalid(f"{host!r} is not an IPv6 address") from None
    else:
        host, colon, port_text = value.rpartition(":")
        if not colon:
            raise invalid("expected host:port, for example 127.0.0.1:19090")
        if ":" in host:
            raise invalid("put an IPv6 address in brackets, for example [::1]:19090")
        if host and not _HOSTNAME.fullmatch(host):
            raise invalid(f"{host!r} is not a host name or IP address")

    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise invalid("the port must be a number from 0 to 65535")
    return host, int(port_text)


def format_listen_address(host: str, port: int) -> str:
    """The address as a user writes it: brackets around IPv6, nothing before : for all."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_listen_socket(host: str, port: int) -> socket.socket:
    """Return a non-blocking TCP socket bound to ``host:port`` and listening.

    An empty host binds every interface. A name that resolves to several addresses binds the
    first IPv4 one, falling back to IPv6: one socket, like the tunnels that forward to it.
    """
    shown = format_listen_address(host, port)
    candidates = _bind_candidates(host, port, shown)
    last_error: OSError | None = None
    for family, address in candidates:
        try:
            return _listen(family, address, dual_stack=host == "")
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ExecutionError(
                    f"listen address {shown} is already in use",
                    hint="choose another one with --listen-address, "
                    "or find the listener holding it with `kongctl ps`",
                ) from exc
            last_error = exc
            if exc.errno not in _FAMILY_UNAVAILABLE:
                break

    reason = last_error.strerror if last_error and last_error.strerror else str(last_error)
    raise ExecutionError(f"cannot listen on {shown}: {reason}") from last_error


def _bind_candidates(host: str, port: int, shown: str) -> list[tuple[int, SockAddr]]:
    if host == "":
        return [(socket.AF_INET6, ("::", port)), (socket.AF_INET, ("0.0.0.0", port))]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ExecutionError(f"cannot resolve listen address {shown}: {reason}") from exc
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return [(info[0], info[4]) for info in infos if info[0] in _INET_FAMILIES]


def _listen(family: int, address: SockAddr, *, dual_stack: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # On POSIX this lets a restarted listener take its port back from connections in
        # TIME_WAIT; SO_REUSEPORT would let two listeners share it, which must fail instead.
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
