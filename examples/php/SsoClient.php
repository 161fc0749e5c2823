<?php
// A caller of mtr-sso's JSON API in plain PHP with the curl extension: one
// method per RPC, errors as SsoError carrying the ErrorInfo reason to branch
// on, and the session's cookies handed to the browser with setcookie().
// No framework and no gRPC extension needed.

declare(strict_types=1);

/** A failed call: the ErrorInfo reason (e.g. UPSTREAM_REJECTED_CREDENTIALS) and the rest of google.rpc.Status. */
final class SsoError extends RuntimeException
{
    /** @param array<string,string> $metadata */
    public function __construct(
        public readonly int $httpStatus,
        public readonly int $grpcCode,
        public readonly string $reason,
        string $message,
        public readonly array $metadata = [],
        public readonly ?string $retryDelay = null,
        /** @var list<string> */
        public readonly array $fieldViolations = [],
    ) {
        parent::__construct("$reason: $message");
    }
}

final class SsoClient
{
    /**
     * @param string      $baseUrl        e.g. http://127.0.0.1:50051
     * @param string|null $token          the caller's bearer token, when callers authenticate
     * @param int         $timeoutSeconds sent as Grpc-Timeout, so the service gives up in time too
     */
    public function __construct(
        private readonly string $baseUrl,
        private readonly ?string $token = null,
        private readonly int $timeoutSeconds = 10,
    ) {
    }

    /** @param array<string,mixed> $request */
    public function createAccount(array $request): array
    {
        return $this->call('/v1/accounts', $request);
    }

    public function issueOneTimeToken(string $email, bool $startSession = false, ?int $validitySeconds = null): array
    {
        $request = ['email' => $email, 'startSession' => $startSession];
        if ($validitySeconds !== null) {
            $request['validity'] = "{$validitySeconds}s";
        }
        return $this->call('/v1/oneTimeTokens:issue', $request);
    }

    public function login(string $email, string $password): array
    {
        return $this->call('/v1/sessions:login', ['email' => $email, 'password' => $password]);
    }

    public function refresh(string $refreshToken): array
    {
        return $this->call('/v1/sessions:refresh', ['refreshToken' => $refreshToken]);
    }

    /**
     * Sets the session's cookies in the user's browser. Call before any output.
     * The service scopes them to the domain the application and the platform share.
     */
    public static function setSessionCookies(array $session): void
    {
        foreach ($session['cookies'] ?? [] as $cookie) {
            $options = [
                'path' => $cookie['path'] ?? '/',
                'secure' => $cookie['secure'] ?? false,
                'httponly' => $cookie['httpOnly'] ?? false,
            ];
            if (($cookie['domain'] ?? '') !== '') {
                $options['domain'] = $cookie['domain'];
            }
            if (isset($cookie['maxAge'])) {
                // A Duration in JSON: seconds with an "s", e.g. "900s".
                $options['expires'] = time() + (int) rtrim($cookie['maxAge'], 's');
            }
            $sameSite = ['SAME_SITE_STRICT' => 'Strict', 'SAME_SITE_LAX' => 'Lax', 'SAME_SITE_NONE' => 'None'];
            if (isset($sameSite[$cookie['sameSite'] ?? ''])) {
                $options['samesite'] = $sameSite[$cookie['sameSite']];
            }
            setcookie($cookie['name'], $cookie['value'], $options);
        }
    }

    /** POSTs $request as JSON to $path; the decoded answer, or an SsoError. */
    private function call(string $path, array $request): array
    {
        $headers = ['Content-Type: application/json', "Grpc-Timeout: {$this->timeoutSeconds}S"];
        if ($this->token !== null) {
            $headers[] = "Authorization: Bearer {$this->token}";
        }
        $curl = curl_init($this->baseUrl . $path);
        curl_setopt_array($curl, [
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => json_encode($request === [] ? new stdClass() : $request, JSON_THROW_ON_ERROR),
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT => $this->timeoutSeconds + 1,
        ]);
        $body = curl_exec($curl);
        $httpStatus = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        $transportError = curl_error($curl);
        curl_close($curl);
        if ($body === false) {
            throw new SsoError(0, 14, 'UNREACHABLE', "mtr-sso could not be reached: $transportError");
        }
        $answer = json_decode((string) $body, true);
        if (!is_array($answer)) {
            throw new SsoError($httpStatus, 13, 'NOT_JSON', "mtr-sso answered HTTP $httpStatus without JSON");
        }
        if ($httpStatus === 200) {
            return $answer;
        }
        throw self::error($httpStatus, $answer);
    }

    /** The google.rpc.Status body as an SsoError. */
    private static function error(int $httpStatus, array $status): SsoError
    {
        $reason = '';
        $metadata = [];
        $retryDelay = null;
        $fields = [];
        foreach ($status['details'] ?? [] as $detail) {
            switch ($detail['@type'] ?? '') {
                case 'type.googleapis.com/google.rpc.ErrorInfo':
                    $reason = $detail['reason'] ?? '';
                    $metadata = $detail['metadata'] ?? [];
                    break;
                case 'type.googleapis.com/google.rpc.RetryInfo':
                    $retryDelay = $detail['retryDelay'] ?? null;
                    break;
                case 'type.googleapis.com/google.rpc.BadRequest':
                    foreach ($detail['fieldViolations'] ?? [] as $violation) {
                        $fields[] = $violation['field'];
                    }
                    break;
            }
        }
        return new SsoError(
            $httpStatus,
            (int) ($status['code'] ?? 2),
            $reason,
            (string) ($status['message'] ?? ''),
            $metadata,
            $retryDelay,
            $fields,
        );
    }
}
