"""The JSON side speaks protobuf's canonical JSON mapping, held to protobuf's
own implementation (Python's `json_format`, strict: unknown fields refused):

- every answer the service writes, of every response message and every
  message nested in one, parses strictly and is written back by `json_format`
  exactly as the service wrote it (so timestamps are UTC with `Z` and 0, 3, 6
  or 9 fractional digits, durations `"300s"`, enums by name, int64 as strings);
- every request message, every field filled, written by `json_format` in
  canonical form, is read by the service (never `INVALID_JSON`).

Together the two sides cover every message type of the service's proto."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import DEMO_EMAIL, DEMO_PASSWORD

ROUTES = {
    "CreateAccount": "/v1/accounts",
    "IssueOneTimeToken": "/v1/oneTimeTokens:issue",
    "Login": "/v1/sessions:login",
    "Refresh": "/v1/sessions:refresh",
}


def post(gateway, path: str, body: str) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://{gateway.target}{path}", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def set_switches(gateway, switches: dict) -> None:
    request = urllib.request.Request(
        gateway.sandbox_url.rstrip("/") + "/_sandbox/switches", data=json.dumps(switches).encode(), method="PUT",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


def repeated(field) -> bool:
    # protobuf 6 has `is_repeated`; older releases only the label.
    return field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


def message_types_in(message, seen: set[str]) -> None:
    """Adds the full names of `message` and every message set inside it."""
    seen.add(message.DESCRIPTOR.full_name)
    for field, value in message.ListFields():
        if field.message_type is None or field.message_type.full_name.startswith("google.protobuf."):
            continue
        for item in value if repeated(field) else [value]:
            message_types_in(item, seen)


def every_service_type(pb) -> set[str]:
    names: set[str] = set()

    def walk(descriptor):
        names.add(descriptor.full_name)
        for nested in descriptor.nested_types:
            walk(nested)

    for descriptor in pb.DESCRIPTOR.message_types_by_name.values():
        walk(descriptor)
    return names


def filled(message, depth: int = 0):
    """`message` with every field set to a value of its type (one member per oneof)."""
    from google.protobuf import duration_pb2, timestamp_pb2

    for field in message.DESCRIPTOR.fields:
        if field.containing_oneof is not None and message.WhichOneof(field.containing_oneof.name):
            continue
        name = field.name
        if field.message_type is not None:
            full_name = field.message_type.full_name
            if full_name == "google.protobuf.Timestamp":
                value = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=123_456_789)
            elif full_name == "google.protobuf.Duration":
                value = duration_pb2.Duration(seconds=120)
            else:
                value = filled(getattr(message, name).__class__(), depth + 1)
            if repeated(field):
                getattr(message, name).append(value)
            else:
                getattr(message, name).CopyFrom(value)
            continue
        if field.enum_type is not None:
            value = field.enum_type.values[-1].number
        elif field.type == field.TYPE_BOOL:
            value = True
        elif field.type == field.TYPE_STRING:
            value = {
                "email": f"canonical-{uuid.uuid4().hex[:10]}@example.com",
                "password": "Secret-123",
                "tenant": "",
                "date_of_birth": "1990-01-02",
                "idempotency_key": uuid.uuid4().hex,
            }.get(name, str(uuid.uuid4()) if name.endswith("uuid") else f"{name}-value")
        elif field.type in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
            value = 1.5
        else:
            value = 7
        if repeated(field):
            getattr(message, name).append(value)
        else:
            setattr(message, name, value)
    return message


def test_every_message_type_round_trips_through_protobufs_own_json_parser(gateway, python_stubs):
    from google.protobuf import json_format

    from matchtrader.sso.v1 import sso_service_pb2 as pb

    covered: set[str] = set()

    def answered(rpc: str, request: dict, response_type) -> dict:
        status, text = post(gateway, ROUTES[rpc], json.dumps(request))
        assert status == 200, (rpc, status, text)
        parsed = json_format.Parse(text, response_type(), ignore_unknown_fields=False)
        written = json_format.MessageToDict(parsed)
        assert written == json.loads(text), f"{rpc}: protobuf writes it differently:\n{written}\n{text}"
        message_types_in(parsed, covered)
        return json.loads(text)

    login = answered("Login", {"email": DEMO_EMAIL, "password": DEMO_PASSWORD}, pb.LoginResponse)
    assert login["session"]["expiresAt"].endswith("Z")
    answered("Refresh", {"refreshToken": login["session"]["refreshToken"]}, pb.RefreshResponse)
    answered("IssueOneTimeToken", {"email": DEMO_EMAIL, "validity": "300s"}, pb.IssueOneTimeTokenResponse)
    answered("IssueOneTimeToken", {"email": DEMO_EMAIL, "startSession": True}, pb.IssueOneTimeTokenResponse)
    person = {"password": "Secret-123", "personalDetails": {"firstname": "Ada", "lastname": "Lovelace"}}
    for tenant in ("default", "v2"):
        email = f"canonical-{tenant}-{uuid.uuid4().hex[:8]}@example.com"
        answered("CreateAccount", {"tenant": tenant, "email": email, **person}, pb.CreateAccountResponse)
    # The answers a v2 create gives when a later step fails: trading account, then sign-in.
    try:
        for failing in ("/trading-accounts", "/one-time-token"):
            set_switches(gateway, {"fault": "server_error", "fault_path_contains": failing})
            email = f"canonical-{uuid.uuid4().hex[:8]}@example.com"
            answered("CreateAccount", {"tenant": "v2", "email": email, **person}, pb.CreateAccountResponse)
    finally:
        set_switches(gateway, {})

    # Every request, every field filled, as protobuf writes it: the service reads it.
    for rpc, request_type in (
        ("CreateAccount", pb.CreateAccountRequest),
        ("IssueOneTimeToken", pb.IssueOneTimeTokenRequest),
        ("Login", pb.LoginRequest),
        ("Refresh", pb.RefreshRequest),
    ):
        request = filled(request_type())
        message_types_in(request, covered)
        body = json_format.MessageToJson(request)
        assert '.123456789Z"' in body or request_type is not pb.CreateAccountRequest, body
        status, text = post(gateway, ROUTES[rpc], body)
        assert '"INVALID_JSON"' not in text, (rpc, body, text)
        assert status < 500, (rpc, status, text)

    missing = every_service_type(pb) - covered
    assert not missing, f"message types no check reached: {sorted(missing)}"


@pytest.mark.parametrize(
    ("body", "field", "form"),
    [
        ('{"email":"a@example.com","validity":"5m"}', "validity", '"300s"'),
        ('{"email":"a@example.com","validity":300}', "validity", '"300s"'),
        ('{"email":"a@example.com","password":"p","personalDetails":{"firstname":"A","lastname":"B"},'
         '"leadDetails":{"becomeActiveClientTime":"yesterday"}}', "leadDetails.becomeActiveClientTime", "RFC 3339"),
    ],
)
def test_a_well_known_type_in_the_wrong_form_is_refused_naming_the_field_and_the_form(gateway, body, field, form):
    path = ROUTES["CreateAccount"] if "personalDetails" in body else ROUTES["IssueOneTimeToken"]
    status, text = post(gateway, path, body)
    answer = json.loads(text)
    assert status == 400 and answer["details"][0]["reason"] == "INVALID_JSON", text
    assert f"`{field}`" in answer["message"] and form in answer["message"], answer["message"]
    assert "yesterday" not in answer["message"] and "5m" not in answer["message"], "the value is never echoed"
