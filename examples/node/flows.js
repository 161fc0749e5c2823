// Walks every seed flow against a running mtr-sso (e.g. `--sandbox`):
//   node flows.js [target [demo-email demo-password]]
// The target defaults to $MTR_SSO_TARGET, else 127.0.0.1:50051 (the README's
// sandbox), and the user to the sandbox's demo user. Exits non-zero on the
// first flow that does not behave as documented.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { SsoClient, SsoError, setCookieHeaders, grpcStatus } = require('./sso_client');

async function expectError(reason, call) {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof SsoError, `not an SsoError: ${error}`);
    assert.equal(error.reason, reason, `${error.reason}: ${error.message}`);
    return error;
  }
  assert.fail(`expected ${reason}, the call succeeded`);
}

const DEFAULTS = [process.env.MTR_SSO_TARGET || '127.0.0.1:50051', 'test@match-trade.com', 'abcd1234'];

async function main([target = DEFAULTS[0], demoEmail = DEFAULTS[1], demoPassword = DEFAULTS[2]]) {
  const client = new SsoClient(target, { timeoutMs: 5000 });
  try {
    const login = await client.login(demoEmail, demoPassword);
    assert.ok(login.session.accessToken && login.session.refreshToken);
    assert.ok(setCookieHeaders(login.session).some((h) => h.startsWith('co-auth=')));
    const renewed = await client.refresh(login.session.refreshToken);
    assert.notEqual(renewed.session.refreshToken, login.session.refreshToken);
    // A repeat with the spent token inside the reuse window gets the same session.
    const repeat = await client.refresh(login.session.refreshToken);
    assert.equal(repeat.session.accessToken, renewed.session.accessToken);
    await expectError('REFRESH_TOKEN_INVALID', () => client.refresh('never-issued-refresh-token'));
    console.log('login + refresh: ok');

    const { loginLink } = await client.issueOneTimeToken(demoEmail, { validitySeconds: 120 });
    assert.ok(loginLink.redirectUrl.endsWith(`/?auth=${loginLink.oneTimeToken}`));
    const { session } = await client.issueOneTimeToken(demoEmail, { startSession: true });
    assert.ok(session.accessToken);
    console.log('one-time token: ok');

    const email = `node-${crypto.randomUUID().slice(0, 12)}@example.com`;
    const created = await client.createAccount(email, 'Secret-123', 'Ada', 'Lovelace');
    assert.equal(created.account.email, email);
    assert.ok(created.loginLink.redirectUrl);
    await expectError('ACCOUNT_ALREADY_EXISTS', () => client.createAccount(email, 'Secret-123', 'Ada', 'Lovelace'));
    console.log('create account: ok');

    const wrong = await expectError('UPSTREAM_REJECTED_CREDENTIALS', () => client.login(demoEmail, 'wrong-password'));
    assert.equal(wrong.code, grpcStatus.UNAUTHENTICATED);
    assert.equal(wrong.metadata.upstreamStatus, '401');
    const invalid = await expectError('INVALID_REQUEST', () => client.createAccount('not-an-email', '', 'Ada', ''));
    assert.deepEqual(invalid.fieldViolations, ['email', 'password', 'personal_details.lastname']);
    console.log('errors: ok');
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).catch((error) => {
  console.error(error);
  process.exit(1);
});
