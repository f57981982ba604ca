"""Rate-limited logging for events that a hostile or broken peer can repeat without end."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class LogThrottle:
    """Logs the first event at once, then at most one line per interval with a suppressed count.

    A full disk or a scanner hammering the public endpoint must not fill the log file; the count
    keeps the volume visible without one line per occurrence.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._next_allowed = float("-inf")
        self._suppressed = 0

    def log(self, level: int, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless the interval has not passed; return whether it was logged."""
        now = self._clock()
        if now < self._next_allowed:
            self._suppressed += 1
            return False

        self._next_allowed = now + self._interval
        if self._suppressed:
            self._logger.log(level, msg + " suppressed=%d", *args, self._suppressed)
            self._suppressed = 0
        else:
            self._logger.log(level, msg, *args)
        return True
