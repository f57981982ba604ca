"""kongctl get audit-logs: destinations, one destination, the webhook, its status, the job."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from kongctl.cli import get as get_module
from tests import commands
from tests.commands import bind_webhook, configure_in_place, create_destination

emulator_url = commands.emulator_url
konnect = commands.konnect
kongctl = commands.kongctl


def test_destinations_lists_every_page(konnect, kongctl):
    created = [create_destination(konnect, f"dest-{index:03d}") for index in range(130)]

    listing = kongctl("get", "audit-logs", "destinations", "-o", "json")
    assert listing.code == 0, listing.err
    assert [d["id"] for d in listing.json()] == [d["id"] for d in created]
    assert len(konnect.requests("GET", "/v3/audit-log-destinations")) == 2  # two pages

    text = kongctl("get", "audit-logs", "destinations")
    lines = text.out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "ENDPOINT", "FORMAT", "SKIP-TLS", "CREATED"]
    assert len(lines) == 131
    assert lines[-1].split()[:5] == [
        created[-1]["id"],
        "dest-129",
        "https://dest-129.example/audit-logs",
        "json",
        "false",
    ]


def test_destinations_yaml_is_a_list(konnect, kongctl):
    created = create_destination(konnect, "laptop", log_format="cef", skip_ssl_verification=True)
    listing = kongctl("get", "audit-logs", "destinations", "-o", "yaml")
    [item] = listing.yaml()
    assert item["id"] == created["id"]
    assert item["log_format"] == "cef"
    assert item["skip_ssl_verification"] is True
    assert "authorization" not in item


def test_no_destinations_says_so(kongctl):
    listing = kongctl("get", "audit-logs", "destinations")
    assert listing.code == 0
    assert listing.out == "No audit-log destinations found.\n"
    assert kongctl("get", "audit-logs", "destinations", "-o", "json").json() == []


def test_destination_by_id_shows_its_fields(konnect, kongctl):
    created = create_destination(konnect, "laptop")
    shown = kongctl("get", "audit-logs", "destination", created["id"])
    assert shown.code == 0, shown.err
    assert f"id:                    {created['id']}\n" in shown.out
    assert "name:                  laptop\n" in shown.out
    assert "endpoint:              https://laptop.example/audit-logs\n" in shown.out
    assert "skip TLS verification: false\n" in shown.out


def test_destination_by_exact_name_is_a_document(konnect, kongctl):
    create_destination(konnect, "laptop-old")
    wanted = create_destination(konnect, "laptop")
    document = kongctl("get", "audit-logs", "destination", "laptop", "-o", "json").json()
    assert document["id"] == wanted["id"]
    assert document["name"] == "laptop"


def test_unknown_destination_name_fails_clearly(konnect, kongctl):
    create_destination(konnect, "laptop")
    missing = kongctl("get", "audit-logs", "destination", "lap")
    assert missing.code == 1
    assert missing.err.startswith('Error: no audit-log destination named "lap"\n')
    assert "Traceback" not in missing.err


def test_unknown_destination_id_fails_clearly(kongctl):
    missing = kongctl("get", "audit-logs", "destination", "0b6c2d7e-1111-2222-3333-444455556666")
    assert missing.code == 1
    assert (
        "Error: no audit-log destination with id 0b6c2d7e-1111-2222-3333-444455556666"
        in missing.err
    )


def test_unconfigured_webhook_reads_not_configured(kongctl):
    document = kongctl("get", "audit-logs", "webhook", "-o", "json").json()
    assert document["configured"] is False
    assert document["configuration"] == "none"
    assert document["enabled"] is False
    assert document["destination_id"] is None
    text = kongctl("get", "audit-logs", "webhook").out
    assert "regional webhook:      not configured\n" in text


def test_bound_webhook_shows_its_destination(konnect, kongctl):
    created = create_destination(konnect, "laptop", log_format="cps")
    bind_webhook(konnect, created["id"])
    document = kongctl("get", "audit-logs", "webhook", "-o", "yaml").yaml()
    assert document["configuration"] == "destination"
    assert document["destination_id"] == created["id"]
    assert document["enabled"] is True
    assert document["endpoint"] == "https://laptop.example/audit-logs"
    assert document["log_format"] == "cps"
    text = kongctl("get", "audit-logs", "webhook").out
    assert f"regional webhook:      bound to destination {created['id']}\n" in text


def test_legacy_webhook_shows_its_endpoint_without_destination(konnect, kongctl):
    configure_in_place(konnect, "https://legacy.example/hook")
    document = kongctl("get", "audit-logs", "webhook", "-o", "json").json()
    assert document["configuration"] == "in-place"
    assert document["endpoint"] == "https://legacy.example/hook"
    assert document["destination_id"] is None
    assert document["enabled"] is True


def test_webhook_status_reports_the_last_delivery(konnect, kongctl):
    # The emulator itself answers 404 at this path: a quick, final delivery failure.
    created = create_destination(konnect, "self", endpoint=f"{konnect.url}/audit-logs")
    bind_webhook(konnect, created["id"])
    konnect.deliver(1)

    status = kongctl("get", "audit-logs", "webhook-status", "-o", "json").json()
    assert status["webhook_status"] == "inactive"
    assert status["last_response_code"] == 404
    text = kongctl("get", "audit-logs", "webhook-status").out
    assert "status:                inactive\n" in text
    assert "last response code:    404\n" in text


def test_unused_webhook_status_shows_dashes_for_never(kongctl):
    text = kongctl("get", "audit-logs", "webhook-status").out
    assert "status:                unconfigured\n" in text
    assert "last attempt:          -\n" in text


def test_replay_job_shows_the_submitted_range(konnect, kongctl):
    assert kongctl("get", "audit-logs", "replay-job", "-o", "json").json()["status"] == (
        "unconfigured"
    )
    submitted = kongctl("replay", "audit-logs", "--since", "1h", "-o", "json").json()
    job = kongctl("get", "audit-logs", "replay-job", "-o", "json").json()
    assert (job["start_at"], job["end_at"]) == (submitted["start_at"], submitted["end_at"])
    text = kongctl("get", "audit-logs", "replay-job").out
    assert f"start at: {submitted['start_at']}\n" in text


@pytest.mark.parametrize(
    "words", [["audit-log"], ["al"], ["konnect", "audit-logs"], ["konnect", "al"]]
)
def test_audit_logs_answers_to_its_other_names(konnect, kongctl, words):
    create_destination(konnect, "laptop")
    listing = kongctl("get", *words, "destinations", "-o", "json")
    assert listing.code == 0, listing.err
    assert [d["name"] for d in listing.json()] == ["laptop"]


def test_konnect_error_is_rendered_without_traceback(konnect, kongctl):
    konnect.fault(method="GET", path="/v3/audit-log-destinations", status=500, times=1)
    failed = kongctl("get", "audit-logs", "destinations")
    assert failed.code == 1
    assert failed.err.startswith("Error: Konnect API 500 Internal Server Error")
    assert "Traceback" not in failed.err


def test_wrong_token_is_explained(konnect, kongctl):
    failed = kongctl(
        "get",
        "audit-logs",
        "webhook",
        "--base-url",
        konnect.url,
        "--pat",
        "kpat_wrong",
        connect=False,
    )
    assert failed.code == 1
    assert "Error: Konnect API 401 Unauthorized" in failed.err
    assert "Hint: check the Konnect personal access token" in failed.err


@pytest.mark.parametrize(
    "command",
    [
        ["get", "audit-logs", "destinations"],
        ["get", "audit-logs", "destination", "laptop"],
        ["get", "audit-logs", "webhook"],
        ["get", "audit-logs", "webhook-status"],
        ["get", "audit-logs", "replay-job"],
        ["delete", "audit-logs", "destination", "laptop"],
        ["delete", "audit-logs", "webhook"],
        ["replay", "audit-logs", "--since", "1h"],
    ],
)
def test_missing_token_names_the_three_ways_to_give_one(konnect, kongctl, command):
    failed = kongctl(*command, "--base-url", konnect.url, connect=False)
    assert failed.code == 2
    assert failed.err.startswith(
        "Error: no Konnect token: pass --pat, set KONGCTL_DEFAULT_KONNECT_PAT, or add "
        'konnect.pat to profile "default"'
    )
    assert konnect.state()["requests"] == []


# A stand-in for the events command another module provides.
@click.command("events")
def events() -> None:
    click.echo("stand-in events")


def test_events_command_loads_from_its_module_on_use(monkeypatch, kongctl):
    monkeypatch.setattr(get_module, "EVENTS_MODULE", __name__)
    assert "events" in kongctl("get", "audit-logs", "--help", connect=False).out
    ran = kongctl("get", "al", "events", connect=False)
    assert (ran.code, ran.out) == (0, "stand-in events\n")


def test_events_command_is_left_out_while_its_module_is_missing(monkeypatch, kongctl):
    monkeypatch.setattr(get_module, "EVENTS_MODULE", "tests.commands.not_there")
    help_text = kongctl("get", "audit-logs", "--help", connect=False).out
    assert "webhook-status" in help_text
    assert "events" not in help_text
    assert kongctl("get", "audit-logs", "events", connect=False).code == 2


def test_importing_get_loads_no_http_library():
    code = (
        "import sys, kongctl.cli.get, kongctl.cli.delete, kongctl.cli.replay;"
        "print([m for m in ('aiohttp', 'yaml', 'kongctl.konnect.client') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "[]", done.stderr
