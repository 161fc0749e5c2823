"""The JSON/HTTP side with real tools, against the binary in sandbox mode:
curl calls every RPC (its success and one error), the PHP example signs a
user in (and its web page sets the session cookies), openapi-spec-validator
accepts the document, and schemathesis fuzzes the live API from it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import DEMO_EMAIL, DEMO_PASSWORD, ROOT

PHP_EXAMPLE = ROOT / "examples" / "php"


def curl(gateway, path: str, body: str, *extra: str) -> tuple[int, dict]:
    """POSTs `body` with curl; the HTTP status and the JSON answer."""
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", "-H", "Content-Type: application/json",
         "--data-binary", body, *extra, f"http://{gateway.target}{path}"],
        capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 0, result.stderr
    text, status = result.stdout.rsplit("\n", 1)
    return int(status), json.loads(text)


def reason(body: dict) -> str:
    for detail in body.get("details", []):
        if detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo":
            return detail["reason"]
    return ""


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def vendor_requests(gateway) -> int:
    stats = json.loads(get(gateway.sandbox_url.rstrip("/") + "/_sandbox/stats"))
    return sum(stats["requests"].values())


def test_curl_calls_every_rpc_and_gets_its_success_and_its_error(gateway):
    login = json.dumps({"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
    status, body = curl(gateway, "/v1/sessions:login", login, "-H", "Grpc-Timeout: 5S")
    assert status == 200 and body["session"]["accessToken"], body
    refresh_token = body["session"]["refreshToken"]
    status, body = curl(gateway, "/v1/sessions:login", json.dumps({"email": DEMO_EMAIL, "password": "wrong"}))
    assert (status, reason(body)) == (401, "UPSTREAM_REJECTED_CREDENTIALS"), body

    status, body = curl(gateway, "/v1/sessions:refresh", json.dumps({"refreshToken": refresh_token}))
    assert status == 200 and body["session"]["refreshToken"] != refresh_token, body
    renewed = body["session"]["refreshToken"]
    # A repeat inside the reuse window gets the same renewed session; an unknown token is refused.
    status, body = curl(gateway, "/v1/sessions:refresh", json.dumps({"refreshToken": refresh_token}))
    assert status == 200 and body["session"]["refreshToken"] == renewed, body
    status, body = curl(gateway, "/v1/sessions:refresh", json.dumps({"refreshToken": "never-issued-refresh-token"}))
    assert (status, reason(body)) == (401, "REFRESH_TOKEN_INVALID"), body

    issue = json.dumps({"email": DEMO_EMAIL, "validity": "120s"})
    status, body = curl(gateway, "/v1/oneTimeTokens:issue", issue)
    assert status == 200 and "auth=" in body["loginLink"]["redirectUrl"], body
    status, body = curl(gateway, "/v1/oneTimeTokens:issue", json.dumps({"email": DEMO_EMAIL, "validity": "2d"}))
    assert (status, reason(body)) == (400, "INVALID_JSON"), body

    account = {"email": f"curl-{time.time_ns()}@example.com", "password": "Secret-123",
               "personalDetails": {"firstname": "Ada", "lastname": "Lovelace"}}
    status, body = curl(gateway, "/v1/accounts", json.dumps(account))
    assert status == 200 and body["account"]["email"] == account["email"], body
    status, body = curl(gateway, "/v1/accounts", json.dumps(account))
    assert (status, reason(body)) == (409, "ACCOUNT_ALREADY_EXISTS"), body


def test_curl_without_json_gets_a_4xx_with_a_reason(gateway):
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", "--data", "email=a@b.co",
         f"http://{gateway.target}/v1/sessions:login"],
        capture_output=True, text=True, timeout=20,
    )
    text, status = result.stdout.rsplit("\n", 1)
    assert (int(status), reason(json.loads(text))) == (415, "UNSUPPORTED_MEDIA_TYPE")


def test_the_php_example_walks_every_flow(gateway):
    result = subprocess.run(
        ["php", str(PHP_EXAMPLE / "flows.php"), f"http://{gateway.target}", DEMO_EMAIL, DEMO_PASSWORD],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["login + refresh: ok", "one-time token: ok", "create account: ok", "errors: ok"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture()
def php_site(gateway):
    """The PHP example's pages on PHP's built-in web server."""
    port = free_port()
    env = dict(os.environ, MTR_SSO_URL=f"http://{gateway.target}")
    server = subprocess.Popen(["php", "-S", f"127.0.0.1:{port}", "-t", str(PHP_EXAMPLE)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


def test_the_php_login_page_sets_the_session_cookies_and_sends_the_browser_on(gateway, php_site):
    opener = urllib.request.build_opener(NoRedirect)
    query = urllib.parse.urlencode({"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(f"{php_site}/login.php?{query}", timeout=10)
    assert redirect.value.code == 303
    assert redirect.value.headers["Location"].startswith(gateway.sandbox_url.rstrip("/"))
    cookies = redirect.value.headers.get_all("Set-Cookie")
    assert any(c.startswith("co-auth=") and "HttpOnly" in c for c in cookies), cookies

    wrong = urllib.parse.urlencode({"email": DEMO_EMAIL, "password": "wrong"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(f"{php_site}/login.php?{wrong}", timeout=10)
    assert refused.value.code == 401 and b"Wrong email or password" in refused.value.read()
    assert not refused.value.headers.get_all("Set-Cookie")


def test_openapi_spec_validator_accepts_the_served_document_which_is_the_committed_one(gateway):
    from openapi_spec_validator import validate

    served = json.loads(get(f"http://{gateway.target}/openapi.json"))
    validate(served)
    assert served == json.loads((ROOT / "docs" / "openapi.json").read_text())


def schemathesis(gateway, mode: str, tmp_path) -> subprocess.CompletedProcess:
    """A bounded schemathesis run with every check against the live API;
    fixed seed, so a CI failure can be replayed. The positive run meets the
    deployment's rules through `schemathesis_deployment` (see there)."""
    hooks = "schemathesis_deployment" if mode == "positive" else ""
    return subprocess.run(
        ["st", "run", f"http://{gateway.target}/openapi.json", "--url", f"http://{gateway.target}",
         "--mode", mode, "--checks", "all", "--max-examples", "25", "--seed", "15", "--workers", "2",
         "--request-timeout", "10", "--phases", "examples,coverage,fuzzing",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env=dict(os.environ, SCHEMATHESIS_HOOKS=hooks, NO_COLOR="1",
                 PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))),
    )


def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(gateway, tmp_path):
    result = schemathesis(gateway, "positive", tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_schemathesis_invalid_requests_are_refused_and_reach_no_vendor(gateway, tmp_path):
    before = vendor_requests(gateway)
    result = schemathesis(gateway, "negative", tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert vendor_requests(gateway) == before, "an invalid request reached the vendor"
