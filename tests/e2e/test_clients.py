"""The example callers in other languages, run end to end against the sandbox."""

from __future__ import annotations

import subprocess

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


def test_python_deadline_is_enforced(gateway, python_stubs):
    from sso_client import SsoClient, SsoError

    client = SsoClient(gateway.target)
    try:
        with pytest.raises(SsoError) as caught:
            client.login(DEMO_EMAIL, DEMO_PASSWORD, timeout_s=0.000_001)
        assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
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
