"""grpcurl against the gateway in sandbox mode, through server reflection."""

from __future__ import annotations

import json
import re
import subprocess

from conftest import DEMO_EMAIL, DEMO_PASSWORD, ROOT

SERVICE = "matchtrader.sso.v1.SsoService"


def grpcurl(gateway, *args: str, data: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = ["grpcurl", "-plaintext", "-max-time", "10"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    command += [gateway.target, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_list_shows_the_service_health_and_reflection(gateway):
    services = grpcurl(gateway, "list").stdout.split()
    assert SERVICE in services
    assert "grpc.health.v1.Health" in services
    assert "grpc.reflection.v1alpha.ServerReflection" in services


def test_describe_shows_the_four_rpcs_with_their_comments(gateway):
    description = grpcurl(gateway, "describe", SERVICE).stdout
    for rpc in ["CreateAccount", "IssueOneTimeToken", "Login", "Refresh"]:
        assert f"rpc {rpc} ( .matchtrader.sso.v1.{rpc}Request )" in description
    assert "// Mints a one-time login token" in description
    message = grpcurl(gateway, "describe", "matchtrader.sso.v1.BrowserCookie").stdout
    assert "string set_cookie_header = 9 [(.google.api.field_behavior) = OUTPUT_ONLY];" in message


def test_health_check_is_serving(gateway):
    answer = json.loads(grpcurl(gateway, "grpc.health.v1.Health/Check", data={"service": SERVICE}).stdout)
    assert answer == {"status": "SERVING"}


def test_login_then_refresh_rotates_the_refresh_token(gateway):
    login = json.loads(grpcurl(gateway, f"{SERVICE}/Login", data={"email": DEMO_EMAIL, "password": DEMO_PASSWORD}).stdout)
    session = login["session"]
    assert session["accessToken"] and session["refreshToken"]
    assert session["redirectUrl"].startswith(gateway.sandbox_url.rstrip("/"))
    names = sorted(cookie["name"] for cookie in session["cookies"])
    assert names == ["co-auth", "rt", "rt"]
    co_auth = next(c for c in session["cookies"] if c["name"] == "co-auth")
    assert co_auth["maxAge"] == "900s" and co_auth["httpOnly"] is True
    assert login["tradingAccounts"][0]["tradingAccountId"]

    refreshed = json.loads(grpcurl(gateway, f"{SERVICE}/Refresh", data={"refresh_token": session["refreshToken"]}).stdout)
    assert refreshed["session"]["refreshToken"] != session["refreshToken"]


def test_issue_one_time_token_returns_a_link_with_its_expiry(gateway):
    answer = json.loads(
        grpcurl(gateway, f"{SERVICE}/IssueOneTimeToken", data={"email": DEMO_EMAIL, "validity": "300s"}).stdout
    )
    link = answer["loginLink"]
    assert link["redirectUrl"] == f"{gateway.sandbox_url.rstrip('/')}/?auth={link['oneTimeToken']}"
    assert link["expiresAt"].endswith("Z")


def test_create_account_returns_the_account_and_a_link(gateway):
    data = {
        "email": "grpcurl.user@example.com",
        "password": "Secret-123",
        "client_type": "CLIENT_TYPE_PROFESSIONAL",
        "personal_details": {"firstname": "Ada", "lastname": "Lovelace", "date_of_birth": "1990-01-31"},
        "address_details": {"country": "GB", "city": "London"},
    }
    answer = json.loads(grpcurl(gateway, f"{SERVICE}/CreateAccount", data=data).stdout)
    assert answer["account"]["email"] == "grpcurl.user@example.com"
    assert answer["account"]["verificationStatus"] == "VERIFICATION_STATUS_NEW"
    assert answer["account"]["clientType"] == "CLIENT_TYPE_PROFESSIONAL"
    assert "?auth=" in answer["loginLink"]["redirectUrl"]


def test_an_error_call_shows_the_code_and_error_info_details(gateway):
    result = grpcurl(gateway, f"{SERVICE}/Login", data={"email": DEMO_EMAIL, "password": "wrong"}, check=False)
    assert result.returncode != 0
    assert "Code: Unauthenticated" in result.stderr
    assert '"reason":"UPSTREAM_REJECTED_CREDENTIALS"' in result.stderr
    assert "type.googleapis.com/google.rpc.ErrorInfo" in result.stderr

    invalid = grpcurl(gateway, f"{SERVICE}/CreateAccount", data={"email": "nope"}, check=False)
    assert "Code: InvalidArgument" in invalid.stderr
    assert "type.googleapis.com/google.rpc.BadRequest" in invalid.stderr
    assert '"field":"personal_details"' in invalid.stderr


def test_the_readme_create_account_line_of_each_sandbox_tenant_works_as_shown(gateway):
    readme = (ROOT / "README.md").read_text()
    shown = [json.loads(data) for data in re.findall(r"-d '(\{\"tenant\":.*?\})'", readme, flags=re.DOTALL)]
    assert sorted(request["tenant"] for request in shown) == ["default", "v2"]
    for request in shown:
        answer = json.loads(grpcurl(gateway, f"{SERVICE}/CreateAccount", data=request).stdout)
        assert answer["account"]["email"] == request["email"]
        assert "?auth=" in answer["loginLink"]["redirectUrl"]
        if request["tenant"] == "v2":
            assert answer["account"]["brokerId"] == "1"
            assert answer["tradingAccount"]["group"] == "sandbox-retail" and answer["tradingAccount"]["login"]
        else:
            assert "tradingAccount" not in answer
