"""Record content and layout in the three log formats."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from kongctl.emulator.records import AuditEvent, EventFactory, render

AT = datetime(2025, 5, 16, 0, 28, 1, 193000, tzinfo=UTC)
COMMON_JSON_KEYS = {
    "cef_version",
    "event_class_id",
    "event_product",
    "event_ts",
    "event_vendor",
    "event_version",
    "name",
    "org_id",
    "principal_id",
    "rt",
    "severity",
    "src",
    "trace_id",
    "user_agent",
}
CEF_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ konghq\.com "
    r"CEF:0\|KongInc\|Konnect\|1\.0\|[^|]+\|[^|]+\|[01]\|rt=\d+ src=\S+ .*trace_id=\d+"
)


def events(count: int, seed: int = 11) -> list[AuditEvent]:
    factory = EventFactory(seed)
    return [factory.next_event(AT) for _ in range(count)]


def test_json_records_carry_konnect_fields() -> None:
    for event in events(50):
        record = json.loads(render(event, "json"))
        assert set(record) >= COMMON_JSON_KEYS
        assert record["event_vendor"] == "KongInc"
        assert record["event_product"] == "Konnect"
        assert record["event_ts"] == "2025-05-16T00:28:01Z"
        assert record["rt"] == "1747355281193"
        assert record["trace_id"] > 2**53


def test_json_keys_are_alphabetical_like_konnect_examples() -> None:
    for event in events(10):
        record = json.loads(render(event, "json"))
        assert list(record) == sorted(record)


def test_cps_has_the_same_fields_as_json_in_header_first_order() -> None:
    for event in events(10):
        as_json = json.loads(render(event, "json"))
        as_cps = json.loads(render(event, "cps"))
        assert as_cps == as_json
        assert list(as_cps)[:2] == ["event_ts", "event_vendor"]


def test_the_three_event_kinds_appear() -> None:
    kinds = {json.loads(render(event, "json"))["event_class_id"] for event in events(200)}
    assert "konnect" in kinds
    assert "KongGateway" in kinds
    assert any(kind.startswith("AUTHENTICATION_TYPE_") for kind in kinds)


def test_kind_specific_fields() -> None:
    for event in events(200):
        record = json.loads(render(event, "json"))
        if record["event_class_id"] == "konnect":
            assert record["name"].startswith("Authz.")
            assert isinstance(record["granted"], bool)
            assert record["action"] in {"retrieve", "list", "edit", "create", "delete"}
        elif record["event_class_id"] == "KongGateway":
            assert record["name"] == "Ingress"
            assert record["act"] in {"POST", "PATCH", "PUT", "DELETE"}
            assert record["request"].startswith("/")
            assert isinstance(record["status"], int)
        else:
            assert record["name"].startswith("AUTHENTICATION_OUTCOME_")
            assert record["success"] in {"true", "false"}


def test_cef_lines_have_konnect_header_and_extensions() -> None:
    for event in events(50):
        line = render(event, "cef")
        assert CEF_LINE.match(line), line
        assert "\n" not in line


def test_same_seed_gives_the_same_records() -> None:
    first = [render(event, "json") for event in events(20, seed=5)]
    second = [render(event, "json") for event in events(20, seed=5)]
    assert first == second


@given(st.text())
def test_cef_extension_values_stay_on_one_line_and_unescape(value: str) -> None:
    event = AuditEvent(AT, "konnect", "Authz.x", 1, (("rt", "1"), ("msg", value), ("end", "1")))
    line = render(event, "cef")
    assert "\n" not in line and "\r" not in line
    raw = line.split(" msg=", 1)[1].rsplit(" end=1", 1)[0]
    unescaped = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), raw)
    assert unescaped == value
