<?php
// The web hand-off: signs the user in, sets the platform's session cookies in
// the browser with setcookie() and sends it on to the platform. Serve it with
// any PHP web server, e.g. `MTR_SSO_URL=http://127.0.0.1:50051 php -S 127.0.0.1:8080`,
// then open http://127.0.0.1:8080/login.php. The email and password come from
// your own sign-in form; here from the query string, for the demo only.

declare(strict_types=1);

require __DIR__ . '/SsoClient.php';

$client = new SsoClient(getenv('MTR_SSO_URL') ?: 'http://127.0.0.1:50051', getenv('MTR_SSO_TOKEN') ?: null);
try {
    $session = $client->login((string) ($_GET['email'] ?? ''), (string) ($_GET['password'] ?? ''))['session'];
} catch (SsoError $error) {
    // Branch on the reason, never on the message.
    http_response_code($error->reason === 'UPSTREAM_REJECTED_CREDENTIALS' ? 401 : 502);
    header('Content-Type: text/plain');
    echo $error->reason === 'UPSTREAM_REJECTED_CREDENTIALS'
        ? "Wrong email or password.\n"
        : "Signing in is not possible right now ({$error->reason}).\n";
    exit;
}
SsoClient::setSessionCookies($session);
header('Location: ' . $session['redirectUrl'], true, 303);
