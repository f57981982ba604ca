"""Logging: one log file per process, levels trace..error, secrets never written."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from kongctl.errors import UsageError

TRACE = 5
LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_FORMAT = "%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s"
_REDACTED = "[REDACTED]"

logging.addLevelName(TRACE, "TRACE")


class SecretFilter(logging.Filter):
    """Replaces every registered secret in a record's rendered message."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            # An exception's text can carry a secret too (an error answer echoing a header).
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, _REDACTED)
        return text


_secret_filter = SecretFilter()


def register_secret(value: str | None) -> None:
    """Keep ``value`` (a PAT, an authorization header) out of every log line."""
    if value and len(value) >= 4:
        _secret_filter.secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced, for messages on the terminal."""
    return _secret_filter.redact(text)


def parse_level(name: str) -> int:
    try:
        return LEVELS[name.strip().lower()]
    except KeyError:
        allowed = "|".join(LEVELS)
        raise UsageError(f'invalid log level "{name}": use one of {allowed}') from None


def expand_log_path(template: str | Path) -> Path:
    """``%PID%`` in the path becomes this process's id."""
    return Path(str(template).replace("%PID%", str(os.getpid()))).expanduser()


def setup_logging(level: str, log_file: str | Path) -> Path:
    """Send the ``kongctl`` loggers to ``log_file`` at ``level``; the file opens on first use."""
    path = expand_log_path(log_file)
    numeric = parse_level(level)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UsageError(f"cannot create log directory {path.parent}: {exc.strerror}") from None
    handler = _PrivateFileHandler(path)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_secret_filter)
    root = logging.getLogger("kongctl")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    root.propagate = False
    return path


class _PrivateFileHandler(logging.FileHandler):
    """A file handler that opens lazily and creates the file readable by its owner only."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")
