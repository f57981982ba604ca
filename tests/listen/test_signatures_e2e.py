"""--verify-signatures: records are stored as received and their signatures counted."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.listen.conftest import AUTH, Konnect, Listener, wait_for


def post(listener: Listener, lines: list[str]) -> int:
    body = "".join(line + "\n" for line in lines).encode()
    request = urllib.request.Request(
        listener.url, data=body, method="POST", headers={"Authorization": AUTH}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


def documents(text: str) -> list[Any]:
    decoder, found, index = json.JSONDecoder(), [], 0
    while index < len(text.rstrip()):
        while text[index].isspace():
            index += 1
        value, index = decoder.raw_decode(text, index)
        found.append(value)
    return found


def tampered(record: str) -> str:
    name_at = record.index('"name":"') + len('"name":"')
    return record[:name_at] + "X" + record[name_at:]


def test_signatures_are_counted_and_every_record_kept(
    konnect: Konnect, start_listener: Any, config_home: Any
) -> None:
    listener = start_listener("--verify-signatures", "-o", "json")
    listener.wait_ready()
    delivered = konnect.deliver(4)["records"]
    forged = tampered(delivered[0])
    assert post(listener, [forged, '{"name":"unsigned","trace_id":123}']) == 202

    events = listener.store / "events.jsonl"
    wait_for(lambda: len(events.read_bytes().splitlines()) == 6)
    assert listener.stop() == 0

    start, stop = documents(listener.stdout)
    assert start["verify_signatures"] is True
    assert stop["signatures"] == {"valid": 4, "invalid": 1, "missing": 1, "unverifiable": 0}
    assert stop["records_received"] == 6
    assert events.read_text().splitlines() == [
        *delivered,
        forged,
        '{"name":"unsigned","trace_id":123}',
    ]
    log_text = (config_home / "logs" / "kongctl.log").read_text()
    trace_id = forged.split('"trace_id":', 1)[1].split(",", 1)[0]
    assert f"record signature invalid trace_id={trace_id}" in log_text
    assert "record signature missing trace_id=123" in log_text


def test_tail_warns_about_a_forged_record_on_stderr(konnect: Konnect, start_listener: Any) -> None:
    listener = start_listener("--verify-signatures", verb="tail")
    listener.wait_ready()
    delivered = konnect.deliver(2)["records"]
    assert post(listener, [tampered(delivered[1])]) == 202
    wait_for(lambda: "signature does not verify" in listener.stderr)
    assert listener.stop() == 0
    assert listener.stdout.splitlines() == [*delivered, tampered(delivered[1])]
    assert "Signatures: 2 valid, 1 invalid, 0 missing, 0 unverifiable" in listener.stderr


def test_text_summary_reports_counts_at_stop(konnect: Konnect, start_listener: Any) -> None:
    listener = start_listener("--verify-signatures")
    listener.wait_ready()
    konnect.deliver(3)
    assert listener.stop() == 0
    assert "Signatures: 3 valid, 0 invalid, 0 missing, 0 unverifiable" in listener.stdout
