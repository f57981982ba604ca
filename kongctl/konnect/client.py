"""The HTTP client for the Konnect API: token, base URLs, retries, problem+json -> errors."""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import math
import os
import random
import re
import socket
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from kongctl import __version__
from kongctl.errors import KonnectAPIError, KonnectConnectionError, KonnectError, UsageError

logger = logging.getLogger(__name__)

DEFAULT_REGION = "us"
GLOBAL_URL = "https://global.api.konghq.com"
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE", "HEAD", "OPTIONS"})
# A server asking for a longer pause than this is better answered by failing soon and
# letting the user decide than by hanging a listener's startup or shutdown.
RETRY_AFTER_MAX = 30.0
ERROR_SNIPPET_CHARS = 200

PAT_HINT = (
    "check the Konnect personal access token: pass --pat, set KONGCTL_<PROFILE>_KONNECT_PAT "
    "(for example KONGCTL_DEFAULT_KONNECT_PAT), or set konnect.pat in the profile of config.yaml"
)
FORBIDDEN_HINT = "the personal access token is valid but lacks permission to manage audit logs"

_REGION_RE = re.compile(r"^[a-z0-9-]+$")

Scope = Literal["regional", "global"]


@dataclass(frozen=True)
class KonnectResponse:
    """A Konnect answer the caller accepted: a 2xx, or a status it listed in ``ok``."""

    status: int
    data: Any
    headers: Mapping[str, str]


@dataclass(frozen=True)
class _RawResponse:
    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes


def resolve_base_urls(base_url: str | None, region: str | None) -> tuple[str, str]:
    """Return (regional URL, global URL): an explicit base URL serves both, else the region's."""
    if base_url:
        url = validate_base_url(base_url)
        return url, url
    if region:
        if not _REGION_RE.match(region):
            raise UsageError(
                f"invalid Konnect region {region!r}: use lower-case letters, digits and dashes",
                hint="for example --region eu",
            )
        return f"https://{region}.api.konghq.com", GLOBAL_URL
    return f"https://{DEFAULT_REGION}.api.konghq.com", GLOBAL_URL


def validate_base_url(value: str) -> str:
    """Check that ``value`` is an http(s) URL with a host; return it without a trailing slash."""
    try:
        parts = urlsplit(value.strip())
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
        parts = urlsplit("")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not port_ok
        or parts.query
        or parts.fragment
    ):
        raise UsageError(
            f"invalid Konnect base URL {value!r}: expected http(s)://host[:port][/path]",
            hint="for example --base-url https://eu.api.konghq.com",
        )
    return value.strip().rstrip("/")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait for a ``Retry-After`` value (seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.0, min(cap, base * 2.0 ** min(attempt, 32)))


class KonnectClient:
    """An async Konnect API client; use ``async with`` or call ``close()``."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str | None = None,
        region: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        verify_tls: bool = True,
    ) -> None:
        if timeout <= 0 or max_retries < 0 or backoff_base < 0 or backoff_max < 0:
            raise ValueError("timeout must be positive; retries and backoff not negative")
        self._regional_url, self._global_url = resolve_base_urls(base_url, region)
        self._headers = {
            "Authorization": f"Bearer {_checked_token(token)}",
            "User-Agent": f"kongctl/{__version__}",
            "Accept": "application/json",
        }
        self._timeout = timeout
        self._max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._verify_tls = verify_tls
        self._http: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"KonnectClient(regional_url={self._regional_url!r})"

    @property
    def regional_url(self) -> str:
        """Where regional calls (webhook, replay job, JWKS) go."""
        return self._regional_url

    @property
    def global_url(self) -> str:
        """Where calls Konnect serves globally (audit-log destinations) go."""
        return self._global_url

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session; safe to call more than once."""
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        scope: Scope = "regional",
        json: Any = None,
        params: Mapping[str, str] | None = None,
        ok: Collection[int] = (),
        idempotent: bool | None = None,
    ) -> KonnectResponse:
        """Send one API call, retrying transient failures; raise KonnectError on failure."""
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        base = self._global_url if scope == "global" else self._regional_url
        attempt = 0
        while True:
            try:
                raw = await self._send(method, base + path, json, params)
            except (aiohttp.ClientError, OSError) as exc:
                if not self._may_retry_failure(exc, idempotent, attempt):
                    logger.debug(
                        "konnect unreachable method=%s path=%s error=%r", method, path, exc
                    )
                    raise KonnectConnectionError(
                        f"cannot reach Konnect at {base}: {self._describe_failure(exc)}"
                    ) from None
                delay = backoff_delay(attempt, self.backoff_base, self.backoff_max)
                outcome = f"error:{type(exc).__name__}"
            else:
                if not self._may_retry_status(raw.status, idempotent, attempt):
                    return _settle(raw, ok, method, path)
                delay = self._status_delay(raw, attempt)
                outcome = str(raw.status)

            attempt += 1
            logger.debug(
                "konnect retry method=%s path=%s status=%s attempt=%d delay=%.3f",
                method,
                path,
                outcome,
                attempt,
                delay,
            )
            await asyncio.sleep(delay)

    async def _send(
        self, method: str, url: str, body: Any, params: Mapping[str, str] | None
    ) -> _RawResponse:
        started = time.monotonic()
        async with self._session().request(
            method, url, json=body, params=params, allow_redirects=False
        ) as response:
            payload = await response.read()
            logger.debug(
                "konnect request method=%s url=%s status=%d elapsed_ms=%d",
                method,
                url,
                response.status,
                (time.monotonic() - started) * 1000,
            )
            return _RawResponse(
                status=response.status,
                reason=response.reason or "",
                headers=CIMultiDictProxy(CIMultiDict(response.headers)),
                body=payload,
            )

    def _session(self) -> aiohttp.ClientSession:
        # Created on first use so that it binds to the loop that actually runs the calls.
        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(ssl=self._verify_tls),
                # Proxy variables are honoured for Konnect, but a proxy would never reach a
                # loopback emulator, and NO_PROXY rarely lists 127.0.0.1.
                trust_env=not _is_loopback(self._regional_url),
            )
        return self._http

    def _may_retry_status(self, status: int, idempotent: bool, attempt: int) -> bool:
        if status not in RETRYABLE_STATUSES or attempt >= self._max_retries:
            return False
        # A 429 means Konnect refused the call before acting on it, so even a POST is safe.
        return idempotent or status == 429

    def _may_retry_failure(self, exc: BaseException, idempotent: bool, attempt: int) -> bool:
        # TLS failures do not heal by themselves; every other connect failure may.
        if attempt >= self._max_retries or isinstance(exc, aiohttp.ClientSSLError):
            return False
        # A failed connect means the request never left, so even a POST is safe to repeat.
        return idempotent or isinstance(exc, aiohttp.ClientConnectorError)

    def _status_delay(self, raw: _RawResponse, attempt: int) -> float:
        wanted = parse_retry_after(raw.headers.get("Retry-After"))
        if wanted is None:
            return backoff_delay(attempt, self.backoff_base, self.backoff_max)
        return min(wanted, RETRY_AFTER_MAX)

    def _describe_failure(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"no response within {self._timeout:g} s"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return f"TLS certificate verification failed ({exc.certificate_error})"
        if isinstance(exc, aiohttp.ClientSSLError):
            return f"TLS handshake failed ({exc.os_error})"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return "the server closed the connection"
        if isinstance(exc, aiohttp.ClientPayloadError):
            return "the response was cut off"
        if isinstance(exc, OSError):
            return _describe_os_error(exc)
        return str(exc) or type(exc).__name__


def _checked_token(token: str) -> str:
    cleaned = token.strip()
    if not cleaned:
        raise UsageError("no Konnect personal access token", hint=PAT_HINT)
    if any(ch.isspace() or not ch.isprintable() for ch in cleaned):
        raise UsageError(
            "the Konnect personal access token contains spaces or control characters",
            hint=PAT_HINT,
        )
    return cleaned


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _describe_os_error(exc: OSError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        # aiohttp wraps the socket's own error, which says what went wrong in plain words.
        exc = exc.os_error
    if exc.errno and exc.errno > 0 and not isinstance(exc, socket.gaierror):
        text = os.strerror(exc.errno)
    else:
        text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def _settle(raw: _RawResponse, ok: Collection[int], method: str, path: str) -> KonnectResponse:
    if 200 <= raw.status < 300:
        return KonnectResponse(raw.status, _json_body(raw, method, path), raw.headers)
    if raw.status in ok:
        return KonnectResponse(raw.status, _json_or_none(raw.body), raw.headers)
    raise _api_error(raw, method, path)


def _json_body(raw: _RawResponse, method: str, path: str) -> Any:
    if not raw.body.strip():
        return None
    try:
        return json.loads(raw.body)
    except ValueError:
        content_type = raw.headers.get("Content-Type", "no content type")
        raise KonnectError(
            f"Konnect answered {method} {path} with {raw.status} but the body is not JSON "
            f"({content_type}): {_snippet(raw.body)}"
        ) from None


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body.strip() else None
    except ValueError:
        return None


def _api_error(raw: _RawResponse, method: str, path: str) -> KonnectAPIError:
    reason = raw.reason or _standard_phrase(raw.status)
    problem = _json_or_none(raw.body)
    if isinstance(problem, dict) and (problem.get("title") or problem.get("detail")):
        title = str(problem.get("title") or reason)
        detail = str(problem.get("detail") or "")
        invalid = [p for p in problem.get("invalid_parameters") or [] if isinstance(p, dict)]
    elif isinstance(problem, dict) and problem.get("message"):
        # Some Kong gateways in front of the API answer {"message": ...} instead.
        title, detail, invalid = reason, str(problem["message"]), []
    else:
        title, detail, invalid = reason, _snippet(raw.body), []

    error = KonnectAPIError(raw.status, title, detail, invalid, method=method, path=path)
    if raw.status == 401:
        error.hint = PAT_HINT
    elif raw.status == 403:
        error.hint = FORBIDDEN_HINT
    return error


def _standard_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _snippet(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", errors="replace").split())
    if len(text) <= ERROR_SNIPPET_CHARS:
        return text
    return text[: ERROR_SNIPPET_CHARS - 1] + "…"
