"""The error hierarchy: every failure a user can cause or meet is one of these.

The CLI renders them in one place as ``Error: <message>`` and exits with ``exit_code``.
Domain code raises them; it never exits the process itself.
"""

from __future__ import annotations

# typing.TYPE_CHECKING without importing typing, which `kongctl ps` would pay for at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXIT_FAILURE = 1
EXIT_USAGE = 2


class KongctlError(Exception):
    """A failure kongctl explains to the user; exit status 1."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(KongctlError):
    """Bad flags, arguments or configuration; exit status 2."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration file or value that cannot be used."""


class ExecutionError(KongctlError):
    """Something went wrong while doing the work; exit status 1."""


class KonnectError(ExecutionError):
    """Konnect could not be reached or answered with an error."""


class KonnectConnectionError(KonnectError):
    """The Konnect API could not be reached (DNS, refused, reset, timeout)."""


class KonnectAPIError(KonnectError):
    """Konnect answered with an HTTP error, usually ``application/problem+json``."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        invalid_parameters: list[dict[str, Any]] | None = None,
        *,
        method: str = "",
        path: str = "",
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.invalid_parameters = invalid_parameters or []
        self.method = method
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"Konnect API {self.status} {self.title}".rstrip()
        reasons = [
            f"{p.get('field', '?')}: {p.get('reason', '')}".rstrip(": ")
            for p in self.invalid_parameters
            if isinstance(p, dict)
        ]
        if reasons:
            return f"{head}: {'; '.join(reasons)}"
        if self.detail and self.detail != self.title:
            return f"{head}: {self.detail}"
        return head
