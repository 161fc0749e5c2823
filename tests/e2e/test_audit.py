"""The audit trail of the binary in sandbox mode: every RPC outcome writes exactly one event
that validates against docs/audit-event.schema.json, and no password, token, cookie, key or
email in clear reaches it. test_every_outcome_writes_one_valid_event drives the outcomes itself;
check_whole_run (called by the gateway fixture once the binary has stopped) holds the whole
run's trail, every other test's RPCs included, against the schema and the RPC counters."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import grpc
import jsonschema

from conftest import DEMO_EMAIL, DEMO_PASSWORD, ROOT

SCHEMA = json.loads((ROOT / "docs" / "audit-event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SANDBOX_API_KEYS = ["sandbox-api-key", "sandbox-v2-api-key"]
NEW_PASSWORD = "E2e-Audit-Pa55!"
WRONG_PASSWORD = "Wr0ng-Audit-Pa55"


def audit_events(gateway) -> list[dict]:
    if not gateway.audit_file.exists():
        return []
    # Split on newlines only: str.splitlines would also split on characters JSON keeps in strings.
    return [json.loads(line) for line in gateway.audit_file.read_text().split("\n") if line]


def events_for(gateway, request_id: str, timeout_s: float = 3.0) -> list[dict]:
    """The events with `request_id`, once at least one is written."""
    until = time.monotonic() + timeout_s
    while True:
        found = [e for e in audit_events(gateway) if e["data"]["request_id"] == request_id]
        if found or time.monotonic() > until:
            return found
        time.sleep(0.02)


def rpc_counts(gateway) -> tuple[float, float]:
    """RPCs started and handled so far, over both protocols, from /metrics."""
    with urllib.request.urlopen(gateway.metrics_url, timeout=5) as answer:
        text = answer.read().decode()

    def total(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))

    return total("grpc_server_started_total"), total("grpc_server_handled_total")


def assert_no_secret(text: str, secrets: list[str]) -> None:
    for secret in filter(None, secrets):
        assert secret not in text, "a secret reached the audit output"


def check_whole_run(gateway, counts: tuple[float, float]) -> None:
    """The trail of the whole run: one event per RPC started (abandoned ones are started but
    never handled), each valid, none with an email in clear or a known secret."""
    started, handled = counts
    events = audit_events(gateway)
    for event in events:
        errors = [error.message for error in VALIDATOR.iter_errors(event)]
        assert not errors, f"{event}: {errors}"
        assert event["data"]["subject"]["email"] is None
    abandoned = sum(1 for e in events if e["data"]["outcome"] == "abandoned")
    assert len(events) == started, f"{len(events)} events for {started} RPCs"
    assert len(events) - abandoned == handled, f"{abandoned} abandoned of {len(events)}; {handled} handled"
    text = gateway.audit_file.read_text()
    assert_no_secret(text, [DEMO_PASSWORD, NEW_PASSWORD, WRONG_PASSWORD, *SANDBOX_API_KEYS])
    assert DEMO_EMAIL not in text.lower()


def test_every_outcome_writes_one_valid_event_and_no_secret(gateway, python_stubs):
    from matchtrader.sso.v1 import sso_service_pb2 as pb
    from matchtrader.sso.v1 import sso_service_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(gateway.target)
    stub = pb_grpc.SsoServiceStub(channel)
    secrets: list[str] = [DEMO_PASSWORD, NEW_PASSWORD, WRONG_PASSWORD, *SANDBOX_API_KEYS]
    expected: dict[str, tuple[str, str | None]] = {}

    def call(method, request, request_id: str):
        return getattr(stub, method)(request, metadata=[("x-request-id", request_id)], timeout=10)

    def refused(method, request, request_id: str) -> grpc.RpcError:
        try:
            call(method, request, request_id)
        except grpc.RpcError as error:
            return error
        raise AssertionError(f"{request_id} was not refused")

    new_email = f"e2e.audit.{time.time_ns()}@example.com"
    created = call("CreateAccount", pb.CreateAccountRequest(
        email=new_email, password=NEW_PASSWORD,
        personal_details=pb.PersonalDetails(firstname="Ada", lastname="Lovelace")), "e2e-create")
    secrets.append(created.login_link.one_time_token)
    expected["e2e-create"] = ("mtr-sso.account.created.v1", None)
    issued = call("IssueOneTimeToken", pb.IssueOneTimeTokenRequest(email=DEMO_EMAIL), "e2e-link")
    secrets.append(issued.login_link.one_time_token)
    expected["e2e-link"] = ("mtr-sso.token.created.v1", None)
    login = call("Login", pb.LoginRequest(email=DEMO_EMAIL, password=DEMO_PASSWORD), "e2e-login")
    secrets += [login.session.access_token, login.session.refresh_token, *[c.value for c in login.session.cookies]]
    expected["e2e-login"] = ("mtr-sso.session.created.v1", None)
    renewed = call("Refresh", pb.RefreshRequest(refresh_token=login.session.refresh_token), "e2e-refresh")
    secrets += [renewed.session.access_token, renewed.session.refresh_token]
    expected["e2e-refresh"] = ("mtr-sso.session.refreshed.v1", None)
    wrong = refused("Login", pb.LoginRequest(email=DEMO_EMAIL, password=WRONG_PASSWORD), "e2e-wrong")
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
    expected["e2e-wrong"] = ("mtr-sso.authn.failed.v1", "UPSTREAM_REJECTED_CREDENTIALS")
    missing = refused("IssueOneTimeToken", pb.IssueOneTimeTokenRequest(email="nobody@example.com"), "e2e-nobody")
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    expected["e2e-nobody"] = ("mtr-sso.request.refused.v1", "ACCOUNT_NOT_FOUND")
    invalid = refused("Login", pb.LoginRequest(email="", password="x"), "e2e-invalid")
    assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT
    expected["e2e-invalid"] = ("mtr-sso.request.refused.v1", "INVALID_REQUEST")
    channel.close()

    # The JSON side writes the same events.
    request = urllib.request.Request(
        f"http://{gateway.target}/v1/sessions:login",
        data=json.dumps({"email": DEMO_EMAIL, "password": DEMO_PASSWORD}).encode(),
        headers={"content-type": "application/json", "x-request-id": "e2e-json-login"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        session = json.loads(answer.read())["session"]
    secrets += [session["accessToken"], session["refreshToken"]]
    expected["e2e-json-login"] = ("mtr-sso.session.created.v1", None)

    for request_id, (event_type, reason) in expected.items():
        events = events_for(gateway, request_id)
        assert len(events) == 1, f"exactly one event for {request_id}: {events}"
        event = events[0]
        assert event["type"] == event_type, event
        assert event["data"]["reason"] == reason, event
        errors = [error.message for error in VALIDATOR.iter_errors(event)]
        assert not errors, f"{event}: {errors}"
    assert events_for(gateway, "e2e-json-login")[0]["data"]["protocol"] == "http"
    text = gateway.audit_file.read_text()
    assert_no_secret(text, secrets)
    for email in (DEMO_EMAIL, new_email, "nobody@example.com"):
        assert email not in text.lower(), "an email in clear reached the audit output"
    assert re.search(r'"email_hmac":"[0-9a-f]{64}"', text)
