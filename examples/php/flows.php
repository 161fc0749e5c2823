<?php
// Walks every RPC against a running mtr-sso (e.g. `mtr-sso --sandbox`):
//
//     php flows.php [base-url [email password]]
//
// The base URL defaults to $MTR_SSO_URL, else http://127.0.0.1:50051 (the
// README's sandbox), and the user to the sandbox's demo user. Prints one line per flow and exits non-zero on the first one that does not
// behave as documented.

declare(strict_types=1);

require __DIR__ . '/SsoClient.php';

function check(bool $holds, string $what): void
{
    if (!$holds) {
        fwrite(STDERR, "FAILED: $what\n");
        exit(1);
    }
}

function expectError(string $reason, callable $call): SsoError
{
    try {
        $call();
    } catch (SsoError $error) {
        check($error->reason === $reason, "expected $reason, got {$error->reason}");
        return $error;
    }
    check(false, "expected $reason, the call succeeded");
}

[$script, $baseUrl, $email, $password] = $argv + [null, getenv('MTR_SSO_URL') ?: 'http://127.0.0.1:50051', 'test@match-trade.com', 'abcd1234'];
$client = new SsoClient($baseUrl, getenv('MTR_SSO_TOKEN') ?: null, 5);

// Existing user with a password: login, then keep the session alive.
$login = $client->login($email, $password);
check(($login['session']['accessToken'] ?? '') !== '', 'login returns a session');
$renewed = $client->refresh($login['session']['refreshToken']);
check($renewed['session']['refreshToken'] !== $login['session']['refreshToken'], 'the refresh token rotates');
// A repeat inside the reuse window (default 10 s) gets the same renewed session, so a retry
// after a timeout or a second tab does not sign the user out; a token the platform never
// issued (or one spent longer ago) is refused.
$again = $client->refresh($login['session']['refreshToken']);
check($again['session']['refreshToken'] === $renewed['session']['refreshToken'], 'a repeat gets the same session');
expectError('REFRESH_TOKEN_INVALID', fn () => $client->refresh('never-issued-refresh-token'));
echo "login + refresh: ok\n";

// Existing user without a password: a one-time link, or a session at once.
$link = $client->issueOneTimeToken($email, false, 120)['loginLink'];
check(str_ends_with($link['redirectUrl'], '/?auth=' . $link['oneTimeToken']), 'the link redeems the token');
check(strtotime($link['expiresAt']) > time(), 'the link expires in the future');
$session = $client->issueOneTimeToken($email, true)['session'];
check(($session['accessToken'] ?? '') !== '', 'start_session returns a session');
echo "one-time token: ok\n";

// New user: an account and its login link; a second time, ACCOUNT_ALREADY_EXISTS.
$newEmail = 'php-' . bin2hex(random_bytes(6)) . '@example.com';
$account = [
    'email' => $newEmail,
    'password' => 'Secret-123',
    'personalDetails' => ['firstname' => 'Ada', 'lastname' => 'Lovelace'],
];
$created = $client->createAccount($account);
check($created['account']['email'] === $newEmail, 'the account is created');
check(($created['loginLink']['redirectUrl'] ?? '') !== '', 'with a login link');
expectError('ACCOUNT_ALREADY_EXISTS', fn () => $client->createAccount($account));
echo "create account: ok\n";

// Errors carry a stable reason, metadata and the invalid fields.
$wrong = expectError('UPSTREAM_REJECTED_CREDENTIALS', fn () => $client->login($email, 'wrong-password'));
check($wrong->httpStatus === 401 && ($wrong->metadata['upstreamStatus'] ?? '') === '401', 'a 401 with metadata');
$invalid = expectError('INVALID_REQUEST', fn () => $client->createAccount(['email' => 'not-an-email']));
check($invalid->httpStatus === 400 && in_array('email', $invalid->fieldViolations, true), 'the email is named');
echo "errors: ok\n";
