//! Every fault on every RPC: each call ends in time with its mapped code, and
//! nothing is left behind.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_on_every_rpc_ends_in_time_with_its_code_and_leaves_nothing_behind() {
    use Code::*;
    mtr_sso::upstream::install_crypto_provider();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (sockets_before, tasks_before) =
        (open_sockets(), tokio::runtime::Handle::current().metrics().num_alive_tasks());

    let unknown = "ACCOUNT_CREATION_OUTCOME_UNKNOWN";
    // Per fault: CreateAccount, IssueOneTimeToken, Login, Refresh. A CreateAccount
    // that got a 200 has created the account: OK, with the sign-in problem.
    let matrix: Vec<(Fault, [(Code, &str); 4])> = vec![
        (
            Fault::Slow,
            [
                (DeadlineExceeded, unknown),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
            ],
        ),
        (
            Fault::Hang,
            [
                (DeadlineExceeded, unknown),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
                (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
            ],
        ),
        (
            Fault::ResetMidBody,
            [
                (Unavailable, unknown),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
            ],
        ),
        (
            Fault::Html(500),
            [
                (Unavailable, unknown),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
            ],
        ),
        (
            Fault::Html(502),
            [
                (Unavailable, unknown),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
            ],
        ),
        (
            Fault::Html(503),
            [
                (Unavailable, unknown),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
                (Unavailable, "UPSTREAM_UNAVAILABLE"),
            ],
        ),
        (
            Fault::TooManyRequests,
            [
                (ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
                (ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
                (ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
                (ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
            ],
        ),
        (
            Fault::MalformedJson,
            [
                (Ok, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
            ],
        ),
        (
            Fault::Oversize,
            [
                (Internal, unknown),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
            ],
        ),
        (
            Fault::WrongContentType,
            [
                (Ok, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
                (Internal, "UPSTREAM_PROTOCOL_ERROR"),
            ],
        ),
    ];
    let mut cells = 0;
    for (fault, expected) in matrix {
        let server = FaultServer::start(fault).await;
        let mut gateway = gateway_for(&server.url(), ResilienceSettings::default()).await;
        for (rpc, (code, expected_reason)) in RPCS.iter().zip(expected) {
            assert_eq!(call(&mut gateway, rpc).await, (code, expected_reason.to_string()), "{fault:?} × {rpc}");
            cells += 1;
        }
        assert_eq!(server.hits("/v1/accounts"), 1, "{fault:?}: CreateAccount reached the vendor once");
    }

    // Connection refused: nothing listens. Retried, never sent, not "outcome unknown".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let mut gateway = gateway_for(&format!("http://{closed}"), ResilienceSettings::default()).await;
    for rpc in RPCS {
        assert_eq!(call(&mut gateway, rpc).await, (Unavailable, "UPSTREAM_UNAVAILABLE".to_string()), "refused × {rpc}");
        cells += 1;
    }
    assert!(
        gateway.metrics_text().await.contains("mtr_sso_upstream_retries_total"),
        "refused connections were retried"
    );
    drop(gateway);

    // Everything the matrix opened is closed again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (sockets, tasks) = (open_sockets(), tokio::runtime::Handle::current().metrics().num_alive_tasks());
        if sockets <= sockets_before && tasks <= tasks_before {
            eprintln!(
                "figure: {cells} cells, each within 500 ms + 250 ms; sockets {sockets_before} → {sockets}, tasks {tasks_before} → {tasks}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "sockets {sockets_before} → {sockets}, tasks {tasks_before} → {tasks}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
