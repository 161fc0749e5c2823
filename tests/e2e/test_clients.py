"""The example callers in other languages, run end to end against the sandbox."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import grpc
import pytest

from conftest import DEMO_EMAIL, DEMO_PASSWORD, ROOT


def test_python_example_walks_every_seed_flow(gateway, python_stubs):
    import run_flows

    run_flows.main(gateway.target, DEMO_EMAIL, DEMO_PASSWORD)


def test_python_client_decodes_rich_error_details(gateway, python_stubs):
    from sso_client import SsoClient, SsoError

    client = SsoClient(gateway.target, timeout_s=5.0)
    try:
        with pytest.raises(SsoError) as caught:
            client.issue_one_time_token("nobody@example.com")
        assert caught.value.code == grpc.StatusCode.NOT_FOUND
        assert caught.value.reason == "ACCOUNT_NOT_FOUND"
        assert caught.value.metadata["endpoint"] == "issue_one_time_token"
        with pytest.raises(SsoError) as caught:
            client.issue_one_time_token(DEMO_EMAIL, validity_s=86_400)
        assert caught.value.field_violations == ["validity"]
    finally:
        client.close()


def set_sandbox_switches(gateway, switches: dict) -> None:
    request = urllib.request.Request(
        gateway.sandbox_url.rstrip("/") + "/_sandbox/switches",
        data=json.dumps(switches).encode(),
        method="PUT",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


def test_python_deadline_is_enforced(gateway, python_stubs):
    from sso_client import SsoClient, SsoError

    client = SsoClient(gateway.target)
    set_sandbox_switches(gateway, {"latency": 500})
    try:
        started = time.monotonic()
        with pytest.raises(SsoError) as caught:
            client.login(DEMO_EMAIL, DEMO_PASSWORD, timeout_s=0.1)
        assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 0.4, "the deadline, not the slow upstream, ended the call"
    finally:
        set_sandbox_switches(gateway, {})
        client.close()


def test_node_example_walks_every_seed_flow(gateway):
    result = subprocess.run(
        ["node", "flows.js", gateway.target, DEMO_EMAIL, DEMO_PASSWORD],
        cwd=ROOT / "examples" / "node",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["login + refresh: ok", "one-time token: ok", "create account: ok", "errors: ok"]
