"""kongctl listen and tail end to end: a real subprocess, the emulator as Konnect."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request

from tests.listen.conftest import AUTH, Konnect, free_port, listener_flags, wait_for


def destinations(konnect: Konnect) -> list[dict]:
    return konnect.state()["destinations"]


def region_webhook(konnect: Konnect) -> dict:
    return konnect.state()["webhook"]["v2"]


def test_listen_stores_delivered_records_byte_exact_and_cleans_up(konnect, start_listener):
    listener = start_listener()
    listener.wait_ready()
    [destination] = destinations(konnect)
    assert destination["endpoint"] == listener.url
    assert destination["log_format"] == "json"
    assert destination["authorization"] == AUTH
    assert region_webhook(konnect)["enabled"] is True

    delivered = konnect.deliver(7)
    assert delivered["status"] == 202

    events = (listener.store / "events.jsonl").read_bytes()
    assert events == b"".join(line.encode() + b"\n" for line in delivered["records"])
    assert listener.stop() == 0
    assert f"Listener stopped. Deleted audit-log destination: {destination['id']}" in (
        listener.stdout
    )
    assert destinations(konnect) == []
    assert region_webhook(konnect)["endpoint"] == "unconfigured"
    assert region_webhook(konnect)["enabled"] is False
    assert not (listener.store / "destination.json").exists()


def test_startup_summary_names_destination_and_files(konnect, start_listener):
    listener = start_listener()
    listener.wait_ready()
    [destination] = destinations(konnect)
    summary = listener.stdout
    assert "Konnect audit-log listener started." in summary
    assert destination["id"] in summary
    assert str(listener.store / "events.jsonl") in summary
    state = json.loads((listener.store / "destination.json").read_text())
    assert state["destination_id"] == destination["id"]
    assert state["authorization_configured"] is True
    assert AUTH not in (listener.store / "destination.json").read_text()
    listener.stop()


def test_json_output_prints_the_summary_as_a_document(konnect, start_listener):
    listener = start_listener("-o", "json")
    listener.wait_ready()
    wait_for(lambda: listener.stdout.strip().endswith("}"))
    document = json.loads(listener.stdout)
    assert document["destination_id"] == destinations(konnect)[0]["id"]
    assert document["listen_address"] == f"127.0.0.1:{listener.port}"
    assert document["webhook_configured"] is True
    listener.stop()


def test_state_files_are_private(konnect, start_listener):
    listener = start_listener()
    listener.wait_ready()
    konnect.deliver(1)
    assert listener.store.stat().st_mode & 0o777 == 0o700
    for name in ("events.jsonl", "listener.json", "destination.json"):
        assert (listener.store / name).stat().st_mode & 0o777 == 0o600
    listener.stop()


def test_configured_region_webhook_stops_startup_before_any_create(konnect, start_listener):
    status, _ = konnect.api(
        "PATCH",
        "/v2/audit-log-webhook",
        {"endpoint": "https://other.example/hook", "authorization": "x", "enabled": True},
    )
    assert status == 200
    listener = start_listener()
    assert listener.process.wait(timeout=30) == 1
    assert "regional audit-log webhook is already configured (enabled=true, " in listener.stderr
    assert "kongctl delete audit-logs webhook" in listener.stderr
    assert destinations(konnect) == []


def test_configure_webhook_false_skips_guard_and_binding(konnect, start_listener):
    konnect.api(
        "PATCH",
        "/v2/audit-log-webhook",
        {"endpoint": "https://other.example/hook", "authorization": "x", "enabled": True},
    )
    listener = start_listener("--configure-webhook=false")
    listener.wait_ready()
    assert len(destinations(konnect)) == 1
    assert konnect.state()["webhook"]["v2"]["endpoint"] == "https://other.example/hook"
    assert listener.stop() == 0
    assert destinations(konnect) == []
    assert konnect.state()["webhook"]["v2"]["endpoint"] == "https://other.example/hook"


def test_taken_name_on_a_later_page_is_found_before_create(konnect, start_listener):
    for index in range(120):
        status, _ = konnect.api(
            "POST",
            "/v3/audit-log-destinations",
            {
                "name": f"existing-{index}",
                "endpoint": "https://e.example/a",
                "log_format": "json",
                "authorization": "x",
            },
        )
        assert status == 201
    listener = start_listener("--name", "existing-119")
    assert listener.process.wait(timeout=30) == 1
    assert 'destination name "existing-119" already exists' in listener.stderr
    assert len(destinations(konnect)) == 120


def test_failed_webhook_bind_deletes_the_new_destination(konnect, start_listener):
    konnect.fault(
        method="PATCH",
        path="/v3/audit-log-webhook",
        status=400,
        detail="Could not parse destination id",
    )
    listener = start_listener()
    assert listener.process.wait(timeout=30) == 1
    assert "Konnect API 400" in listener.stderr
    assert destinations(konnect) == []
    assert region_webhook(konnect)["endpoint"] == "unconfigured"


def test_failed_state_file_write_deletes_the_new_destination(konnect, start_listener, config_home):
    store = config_home / "audit-logs" / "default"
    (store / "listener.json").mkdir(parents=True)
    listener = start_listener()
    assert listener.process.wait(timeout=30) == 1
    assert "Error:" in listener.stderr
    assert "Traceback" not in listener.stderr
    assert destinations(konnect) == []
    assert region_webhook(konnect)["enabled"] is False


def test_busy_destination_is_retried_until_deleted(konnect, start_listener):
    listener = start_listener()
    listener.wait_ready()
    konnect.fault(
        method="DELETE",
        path="/v3/audit-log-destinations/*",
        status=409,
        detail="Destination is in use",
        times=2,
    )
    assert listener.stop() == 0
    assert destinations(konnect) == []
    assert len(konnect.requests("DELETE", "/v3/audit-log-destinations/")) == 3


def test_cleanup_survives_konnect_5xx(konnect, start_listener):
    listener = start_listener()
    listener.wait_ready()
    konnect.fault(method="PATCH", path="/v2/audit-log-webhook", status=503, times=2)
    konnect.fault(method="DELETE", path="/v3/audit-log-webhook", status=502, times=1)
    assert listener.stop() == 0
    assert destinations(konnect) == []
    assert region_webhook(konnect)["endpoint"] == "unconfigured"


def test_second_interrupt_during_cleanup_says_what_is_left(konnect, start_listener):
    listener = start_listener()
    listener.wait_ready()
    [destination] = destinations(konnect)
    konnect.fault(
        method="DELETE",
        path="/v3/audit-log-destinations/*",
        status=409,
        detail="Destination is in use",
    )
    listener.process.send_signal(signal.SIGINT)
    wait_for(lambda: konnect.requests("DELETE", "/v3/audit-log-destinations/"))
    listener.process.send_signal(signal.SIGINT)
    assert listener.process.wait(timeout=10) != 0
    assert destination["id"] in listener.stderr
    assert "left in Konnect" in listener.stderr
    assert "Traceback" not in listener.stderr


def test_sigterm_stops_and_cleans_up(konnect, start_listener):
    listener = start_listener()
    listener.wait_ready()
    assert listener.stop(signal.SIGTERM) == 0
    assert destinations(konnect) == []


def test_tail_prints_stored_records_in_order(konnect, start_listener):
    listener = start_listener(verb="tail")
    listener.wait_ready()
    delivered = konnect.deliver(5)
    wait_for(lambda: listener.stdout.count("\n") >= 5)
    assert listener.stdout.splitlines() == delivered["records"]
    assert listener.stop() == 0
    assert "Listener stopped" in listener.stderr
    assert "Listener stopped" not in listener.stdout


def test_tail_jq_keeps_big_trace_ids_exact(konnect, start_listener):
    listener = start_listener("--jq", "{t: .trace_id, name}", verb="tail")
    listener.wait_ready()
    delivered = konnect.deliver(3)
    wait_for(lambda: listener.stdout.count("\n") >= 3)
    for line, record in zip(listener.stdout.splitlines(), delivered["records"], strict=True):
        trace_id = record.split('"trace_id":', 1)[1].split(",", 1)[0].rstrip("}")
        assert line.startswith(f'{{"t":{trace_id},')
    listener.stop()


def test_tail_jq_select_filters_records(konnect, start_listener):
    listener = start_listener("--jq", "select(false)", verb="tail")
    listener.wait_ready()
    konnect.deliver(3)
    assert listener.stop() == 0
    assert listener.stdout == ""
    assert len((listener.store / "events.jsonl").read_bytes().splitlines()) == 3


def test_tail_jq_on_cef_records_warns_and_goes_on(konnect, start_listener):
    listener = start_listener("--jq", ".name", "--log-format", "cef", verb="tail")
    listener.wait_ready()
    konnect.deliver(2)
    wait_for(lambda: listener.stderr.count("skipped record") >= 2)
    assert listener.process.poll() is None
    assert listener.stop() == 0


def test_tail_into_a_closed_pipe_stops_quietly_and_cleans_up(konnect, tmp_path):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "kongctl",
        "tail",
        *listener_flags(konnect.url, port),
    ]
    tail = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: destinations(konnect) and region_webhook(konnect)["enabled"], 20)
    head = subprocess.Popen(["head", "-n", "1"], stdin=tail.stdout, stdout=subprocess.PIPE)
    assert tail.stdout is not None
    tail.stdout.close()
    konnect.deliver(2)
    head.communicate(timeout=10)
    konnect.deliver(2)
    _, err = tail.communicate(timeout=60)
    assert tail.returncode == 0, err
    assert b"Traceback" not in err
    assert destinations(konnect) == []


def test_wrong_authorization_is_refused_and_nothing_stored(konnect, start_listener):
    listener = start_listener()
    listener.wait_ready()
    request = urllib.request.Request(
        listener.url, data=b'{"a":1}\n', method="POST", headers={"Authorization": "Bearer wrong"}
    )
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("expected 401")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    assert (listener.store / "events.jsonl").read_bytes() == b""
    listener.stop()
