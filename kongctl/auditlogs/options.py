"""ListenOptions: every listen/tail flag validated, with no side effects."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from kongctl.auditlogs.rotation import RotationPolicy
from kongctl.errors import UsageError

LOG_FORMATS = ("cef", "json", "cps")
DEFAULT_PATH = "/audit-logs"
DEFAULT_LISTEN_ADDRESS = "127.0.0.1:19090"
DEFAULT_MAX_BODY_BYTES = 1 << 20
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


@dataclass(frozen=True)
class ListenOptions:
    """What one listener does; built by :func:`build_listen_options`."""

    endpoint: str
    public_url: str | None
    path: str
    listen_host: str
    listen_port: int
    max_body_bytes: int
    name: str
    log_format: str
    skip_ssl_verification: bool
    authorization: str
    configure_webhook: bool
    tail: bool
    jq: str | None
    detach: bool
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    rotation: RotationPolicy = field(default_factory=RotationPolicy)
    # With tail: how many stored records to print before the new ones.
    backlog: int = 0
    verify_signatures: bool = False

    @property
    def listen_address(self) -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{host}:{self.listen_port}"


def default_listener_name(hostname: str | None = None, pid: int | None = None) -> str:
    """``kongctl-<hostname>-<pid>`` with the hostname reduced to letters, digits and dashes."""
    import os

    host = _NAME_UNSAFE.sub("-", hostname or socket.gethostname()).strip("-").lower()
    return f"kongctl-{host or 'host'}-{os.getpid() if pid is None else pid}"


def normalize_path(path: str) -> str:
    path = path.strip()
    if not path or any(c in path for c in "?# "):
        raise UsageError(f'invalid --path "{path}": give a URL path such as /audit-logs')
    return path if path.startswith("/") else "/" + path


def endpoint_from_public_url(public_url: str, path: str) -> str:
    """Join a public base URL and the listen path; query and fragment are dropped."""
    parts = urlsplit(public_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f'invalid --public-url "{public_url}": it needs a scheme and a host, '
            "e.g. https://my-host.ts.net"
        )
    joined = parts.path.rstrip("/") + "/" + path.lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, joined, "", ""))


def check_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip()
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f'invalid --endpoint "{endpoint}": give the full URL Konnect should deliver to, '
            "e.g. https://my-host.ts.net/audit-logs"
        )
    return endpoint


def parse_log_format(value: str) -> str:
    normalized = value.strip().lower()
    if normalized not in LOG_FORMATS:
        raise UsageError(f'invalid --log-format "{value}": use one of {", ".join(LOG_FORMATS)}')
    return normalized


def resolve_endpoint(endpoint: str | None, public_url: str | None, path: str) -> str:
    if endpoint and public_url:
        raise UsageError("use either --endpoint or --public-url (with --path), not both")
    if endpoint:
        return check_endpoint(endpoint)
    if public_url:
        return endpoint_from_public_url(public_url, path)
    raise UsageError(
        "an endpoint is required: give --endpoint (the full public URL Konnect delivers to) "
        "or --public-url (joined with --path)"
    )


def check_authorization(authorization: str | None, *, env_name: str | None = None) -> str:
    if authorization is None or not authorization.strip():
        also = f" (or set {env_name})" if env_name else ""
        raise UsageError(
            f"--authorization is required{also}: the exact Authorization header value Konnect "
            'must send, e.g. --authorization "Bearer $(openssl rand -hex 24)"'
        )
    return authorization


def check_modes(*, tail: bool, detach: bool, jq: str | None) -> None:
    if detach and tail:
        raise UsageError("--detach cannot be used with --tail (tail streams to this terminal)")
    if jq is not None and not tail:
        raise UsageError("--jq requires --tail")


def check_backlog(lines: int | None, *, tail: bool) -> int:
    if lines is not None and not tail:
        raise UsageError("-n/--lines requires --tail (it prints stored records before new ones)")
    return lines or 0


def check_tls(cert: Path | None, key: Path | None) -> None:
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert-file and --tls-key-file must be given together")
    for flag, path in (("--tls-cert-file", cert), ("--tls-key-file", key)):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")
