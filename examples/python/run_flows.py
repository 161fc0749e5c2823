"""Walks every seed flow against a running mtr-sso (e.g. `--sandbox`).

    python run_flows.py [target [demo-email demo-password]]

The target defaults to `$MTR_SSO_TARGET`, else 127.0.0.1:50051 (the README's
sandbox), and the user to the sandbox's demo user. Exits non-zero on the first
flow that does not behave as documented.
"""

from __future__ import annotations

import os
import sys
import uuid

from sso_client import SsoClient, SsoError, set_cookie_headers


def expect_error(reason: str, call) -> SsoError:
    try:
        call()
    except SsoError as error:
        assert error.reason == reason, f"expected {reason}, got {error}"
        return error
    raise AssertionError(f"expected {reason}, the call succeeded")


def main(target: str, demo_email: str, demo_password: str) -> None:
    client = SsoClient(target, timeout_s=5.0)
    try:
        # Existing user with a password: login, then keep the session alive.
        login = client.login(demo_email, demo_password)
        assert login.session.access_token and login.session.refresh_token
        assert any(h.startswith("co-auth=") for h in set_cookie_headers(login.session))
        renewed = client.refresh(login.session.refresh_token)
        assert renewed.session.refresh_token != login.session.refresh_token, "the refresh token rotates"
        # A repeat with the spent token inside the reuse window gets the same session.
        repeat = client.refresh(login.session.refresh_token)
        assert repeat.session.access_token == renewed.session.access_token, "reused within the window"
        expect_error("REFRESH_TOKEN_INVALID", lambda: client.refresh("never-issued-refresh-token"))
        print("login + refresh: ok")

        # Existing user without a password: a one-time link, or a session at once.
        link = client.issue_one_time_token(demo_email, validity_s=120).login_link
        assert link.redirect_url.endswith("/?auth=" + link.one_time_token)
        assert link.expires_at.seconds > 0
        session = client.issue_one_time_token(demo_email, start_session=True).session
        assert session.access_token
        print("one-time token: ok")

        # New user: account plus login link; a second time, ALREADY_EXISTS.
        email = f"py-{uuid.uuid4().hex[:12]}@example.com"
        created = client.create_account(email, "Secret-123", "Ada", "Lovelace")
        assert created.account.uuid and created.account.email == email
        assert created.login_link.redirect_url
        expect_error("ACCOUNT_ALREADY_EXISTS", lambda: client.create_account(email, "Secret-123", "Ada", "Lovelace"))
        with_session = client.create_account(f"py-{uuid.uuid4().hex[:12]}@example.com", "Secret-123", "Grace", "Hopper", True)
        assert with_session.session.access_token and not with_session.HasField("login_link")
        print("create account: ok")

        # Errors carry stable reasons and field violations.
        wrong = expect_error("UPSTREAM_REJECTED_CREDENTIALS", lambda: client.login(demo_email, "wrong-password"))
        assert wrong.metadata.get("upstreamStatus") == "401", wrong.metadata
        invalid = expect_error("INVALID_REQUEST", lambda: client.create_account("not-an-email", "", "Ada", ""))
        assert invalid.field_violations == ["email", "password", "personal_details.lastname"], invalid.field_violations
        print("errors: ok")
    finally:
        client.close()


DEFAULTS = [os.environ.get("MTR_SSO_TARGET", "127.0.0.1:50051"), "test@match-trade.com", "abcd1234"]

if __name__ == "__main__":
    arguments = sys.argv[1:4]
    main(*(arguments + DEFAULTS[len(arguments):]))
