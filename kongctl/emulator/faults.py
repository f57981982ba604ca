"""Fault injection: rules that make matching API requests slow, fail or drop the connection.

Tests add rules through ``POST /_emulator/faults`` to reproduce what a real Konnect does on a
bad day (a busy destination, rate limits, resets) without waiting for it to happen.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

_RULE_KEYS = frozenset(
    {"method", "path", "status", "detail", "delay", "retry_after", "reset", "times"}
)


class FaultRuleError(ValueError):
    """A fault rule in the admin request is malformed."""


@dataclass
class FaultRule:
    """What to do to requests whose method and path match."""

    method: str = "*"
    path: str = "*"
    status: int | None = None
    detail: str | None = None
    delay: float = 0.0
    retry_after: float | None = None
    reset: bool = False
    times: int | None = None

    def matches(self, method: str, path: str) -> bool:
        method_ok = self.method == "*" or self.method.upper() == method.upper()
        return method_ok and fnmatch.fnmatchcase(path, self.path)

    def view(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "detail": self.detail,
            "delay": self.delay,
            "retry_after": self.retry_after,
            "reset": self.reset,
            "times": self.times,
        }


class FaultBook:
    """The active rules, first match wins; a rule with ``times`` wears out."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(self, rules: list[FaultRule]) -> None:
        self.rules.extend(rules)

    def clear(self) -> None:
        self.rules.clear()

    def take(self, method: str, path: str) -> FaultRule | None:
        """The first rule matching the request, counting one use of it."""
        for rule in self.rules:
            if not rule.matches(method, path):
                continue
            if rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    self.rules.remove(rule)
            return rule
        return None


def parse_rules(payload: Any) -> list[FaultRule]:
    """Rules from the admin request body ``{"rules": [...]}``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("rules"), list):
        raise FaultRuleError('the body must be {"rules": [...]}')
    return [_parse_rule(index, raw) for index, raw in enumerate(payload["rules"])]


def _parse_rule(index: int, raw: Any) -> FaultRule:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise FaultRuleError(f"{where} must be an object")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise FaultRuleError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    rule = FaultRule(
        method=_text(raw, "method", where) or "*",
        path=_text(raw, "path", where) or "*",
        status=_status(raw.get("status"), where),
        detail=_text(raw, "detail", where),
        delay=_seconds(raw.get("delay", 0.0), f"{where}.delay") or 0.0,
        retry_after=_seconds(raw.get("retry_after"), f"{where}.retry_after"),
        reset=_flag(raw.get("reset", False), f"{where}.reset"),
        times=_times(raw.get("times"), where),
    )
    if rule.status is None and not rule.reset and not rule.delay:
        raise FaultRuleError(f"{where} does nothing: give status, delay or reset")
    return rule


def _text(raw: dict[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise FaultRuleError(f"{where}.{key} must be a string")
    return value


def _status(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise FaultRuleError(f"{where}.status must be an HTTP status code")
    return value


def _seconds(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultRuleError(f"{where} must be a non-negative number of seconds")
    return float(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise FaultRuleError(f"{where} must be true or false")
    return value


def _times(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FaultRuleError(f"{where}.times must be a positive integer")
    return value
