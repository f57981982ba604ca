"""kongctl delete audit-logs: destinations (guarded by the webhook) and the regional webhook."""

from __future__ import annotations

from tests import commands
from tests.commands import bind_webhook, configure_in_place, create_destination, destination_ids
from tests.listen import conftest as listen_fixtures

emulator_url = commands.emulator_url
konnect = commands.konnect
kongctl = commands.kongctl
start_listener = listen_fixtures.start_listener

UNCONFIGURED_V2 = {"enabled": False, "endpoint": "unconfigured"}


def webhook_v2(konnect) -> dict:
    return {key: konnect.state()["webhook"]["v2"][key] for key in UNCONFIGURED_V2}


def test_delete_by_id_removes_the_destination(konnect, kongctl):
    created = create_destination(konnect, "laptop")
    deleted = kongctl("delete", "audit-logs", "destination", created["id"])
    assert deleted.code == 0, deleted.err
    assert deleted.out == f"Deleted audit-log destination: {created['id']}\n"
    assert destination_ids(konnect) == []


def test_delete_by_name_removes_only_that_destination(konnect, kongctl):
    kept = create_destination(konnect, "laptop-old")
    created = create_destination(konnect, "laptop")
    deleted = kongctl("delete", "al", "destination", "laptop", "-o", "json")
    assert deleted.json() == {"deleted": created["id"], "webhook_released": False}
    assert destination_ids(konnect) == [kept["id"]]


def test_delete_of_unknown_destination_fails_clearly(konnect, kongctl):
    missing = kongctl("delete", "audit-logs", "destination", "laptop")
    assert missing.code == 1
    assert missing.err.startswith('Error: no audit-log destination named "laptop"')
    assert konnect.requests("DELETE", "/v3/audit-log-destinations") == []


def test_delete_refuses_a_destination_the_webhook_uses(konnect, kongctl):
    created = create_destination(konnect, "laptop")
    bind_webhook(konnect, created["id"])

    refused = kongctl("delete", "audit-logs", "destination", "laptop")
    assert refused.code == 1
    assert refused.err.startswith(
        f'Error: audit-log destination {created["id"]} ("laptop") is used by the regional '
        "audit-log webhook (enabled=true)\n"
    )
    assert "--force" in refused.err
    assert destination_ids(konnect) == [created["id"]]
    assert konnect.requests("DELETE", "/v3/audit-log-destinations") == []
    assert konnect.state()["webhook"]["v3"]["audit_log_destination_id"] == created["id"]


def test_force_releases_the_webhook_and_waits_out_busy_answers(konnect, kongctl):
    created = create_destination(konnect, "laptop")
    bind_webhook(konnect, created["id"])
    konnect.fault(method="DELETE", path="/v3/audit-log-destinations/*", status=409, times=2)

    deleted = kongctl("delete", "audit-logs", "destination", created["id"], "--force")
    assert deleted.code == 0, deleted.err
    assert deleted.out == (
        f"Released the regional audit-log webhook (was bound to destination {created['id']})\n"
        f"Deleted audit-log destination: {created['id']}\n"
    )
    assert "still reports the destination in use" in deleted.err
    assert destination_ids(konnect) == []
    assert webhook_v2(konnect) == UNCONFIGURED_V2
    assert konnect.state()["webhook"]["v3"] is None
    attempts = konnect.requests("DELETE", f"/v3/audit-log-destinations/{created['id']}")
    assert [attempt["status"] for attempt in attempts] == [409, 409, 204]


def test_force_json_says_the_webhook_was_released(konnect, kongctl):
    created = create_destination(konnect, "laptop")
    bind_webhook(konnect, created["id"], enabled=False)
    deleted = kongctl("delete", "audit-logs", "destination", "laptop", "--force", "-o", "json")
    assert deleted.json() == {"deleted": created["id"], "webhook_released": True}


def test_delete_webhook_releases_a_bound_webhook_and_keeps_the_destination(konnect, kongctl):
    created = create_destination(konnect, "laptop")
    bind_webhook(konnect, created["id"])

    released = kongctl("delete", "audit-logs", "webhook")
    assert released.code == 0, released.err
    assert released.out == (
        f"Released the regional audit-log webhook (was bound to destination {created['id']})\n"
    )
    assert webhook_v2(konnect) == UNCONFIGURED_V2
    assert konnect.state()["webhook"]["v3"] is None
    assert destination_ids(konnect) == [created["id"]]


def test_delete_webhook_when_nothing_is_configured_changes_nothing(konnect, kongctl):
    released = kongctl("delete", "audit-logs", "webhook")
    assert released.code == 0
    assert released.out == "The regional audit-log webhook was not configured\n"
    assert konnect.requests("PATCH", "/audit-log-webhook") == []
    assert konnect.requests("DELETE", "/audit-log-webhook") == []


def test_delete_webhook_json_describes_what_was_released(konnect, kongctl):
    created = create_destination(konnect, "laptop")
    bind_webhook(konnect, created["id"])
    document = kongctl("delete", "audit-logs", "webhook", "-o", "json").json()
    assert document == {
        "released": True,
        "was_enabled": True,
        "destination_id": created["id"],
        "endpoint": "https://laptop.example/audit-logs",
    }


def test_delete_webhook_clears_a_legacy_setup_so_listen_can_start(konnect, kongctl, start_listener):
    configure_in_place(konnect, "https://legacy.example/hook")

    released = kongctl("delete", "audit-logs", "webhook")
    assert released.code == 0, released.err
    assert released.out == (
        "Released the regional audit-log webhook "
        "(was configured in place for https://legacy.example/hook)\n"
    )
    status, webhook = konnect.api("GET", "/v2/audit-log-webhook")
    assert status == 200
    assert (webhook["enabled"], webhook["endpoint"]) == (False, "unconfigured")

    listener = start_listener()
    listener.wait_ready()  # the startup guard let it through
    assert konnect.state()["webhook"]["v2"]["enabled"] is True
    assert listener.stop() == 0


def test_delete_webhook_failure_is_rendered(konnect, kongctl):
    created = create_destination(konnect, "laptop")
    bind_webhook(konnect, created["id"])
    konnect.fault(method="DELETE", path="/v3/audit-log-webhook", status=400, times=1)
    failed = kongctl("delete", "audit-logs", "webhook")
    assert failed.code == 1
    assert failed.err.startswith("Error: Konnect API 400 Bad Request")
    assert "Traceback" not in failed.err
