//! Caller authentication and per-RPC authorization over real TLS (gRPC, and
//! JSON on the same port): callers named by their client certificate (a
//! SPIFFE id) or by a bearer token, a
//! policy deciding per RPC and tenant, health reachable in plaintext on its own
//! port, and every decision logged with the caller's name, never its credential.
//! One test in this binary, because it owns the process-wide log subscriber.

use crate::common;
use common::{reason, tenant};
use mtr_sso::{
    auth::CallerAuth,
    config::TlsFiles,
    proto::{IssueOneTimeTokenRequest, LoginRequest, sso_service_client::SsoServiceClient},
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::{sync::Arc, time::Duration};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

const SPIFFE_CRM: &str = "spiffe://cluster.local/ns/crm/sa/crm";
const SIGNUP_TOKEN: &str = "signup-token-0123456789abcdef0123456789";

struct Pki {
    ca_pem: String,
    server: (String, String),
    crm: (String, String),
    stranger: (String, String),
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key).expect("self-signed").pem();
    (params, key, pem)
}

fn leaf(issuer: &Issuer<'_, KeyPair>, names: Vec<SanType>) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = names;
    (params.signed_by(&key, issuer).expect("signed").pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let (ca_params, ca_key, ca_pem) = ca("mtr-sso test CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let (other_params, other_key, _) = ca("someone else's CA");
    let other = Issuer::new(other_params, other_key);
    Pki {
        server: leaf(&issuer, vec![SanType::DnsName("localhost".try_into().expect("ia5"))]),
        crm: leaf(&issuer, vec![SanType::URI(SPIFFE_CRM.try_into().expect("ia5"))]),
        stranger: leaf(&other, vec![SanType::URI("spiffe://elsewhere/sa/x".try_into().expect("ia5"))]),
        ca_pem,
    }
}

async fn connect(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}")).expect("uri").tls_config(tls)?.connect().await
}

fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_authenticated_by_certificate_or_token_and_authorized_per_rpc_and_tenant() {
    let captured = common::CapturedLogs::default();
    tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(false).init();
    mtr_sso::upstream::install_crypto_provider();

    let upstream = MockServer::start().await;
    Mock::given(path("/manager/mtr-login"))
        .respond_with(ResponseTemplate::new(200).append_header("set-cookie", "co-auth=s; Path=/; Max-Age=900"))
        .mount(&upstream)
        .await;
    Mock::given(path("/v1/one-time-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t"})))
        .mount(&upstream)
        .await;

    let pki = pki();
    let policy = format!(
        "[callers.\"{SPIFFE_CRM}\"]\nrpcs = [\"Login\", \"Refresh\"]\n\n[callers.signup]\nrpcs = [\"CreateAccount\", \"IssueOneTimeToken\"]\ntenants = [\"acme\"]\n"
    );
    let callers = Arc::new(CallerAuth::parse(&policy, Some(&format!("signup {SIGNUP_TOKEN}\n"))).expect("policy"));
    let mut settings = common::settings(
        vec![tenant("acme", &upstream.uri()), tenant("globex", &upstream.uri())],
        Duration::from_secs(5),
    );
    settings.callers = Some(callers);
    settings.tls = Some(TlsFiles {
        cert_pem: pki.server.0.clone().into_bytes(),
        key_pem: pki.server.1.clone().into_bytes(),
        client_ca_pem: Some(pki.ca_pem.clone().into_bytes()),
    });
    settings.health_listen = Some("127.0.0.1:0".parse().expect("address"));
    let gateway = common::spawn_app(settings).await;
    let (addr, health_addr) = (gateway.addr, gateway.health_addr.expect("a health port"));

    let login = || LoginRequest { email: "a@b.co".into(), password: "pw".into(), ..Default::default() };
    let ott =
        |tenant: &str| IssueOneTimeTokenRequest { tenant: tenant.into(), email: "a@b.co".into(), ..Default::default() };

    // mTLS: the certificate's SPIFFE id is the caller.
    let mut crm = SsoServiceClient::new(connect(addr, &pki.ca_pem, Some(&pki.crm)).await.expect("mTLS"));
    crm.login(login()).await.expect("crm may log users in");
    let denied = crm.issue_one_time_token(ott("")).await.expect_err("crm may not mint tokens");
    assert_eq!((denied.code(), reason(&denied).as_str()), (Code::PermissionDenied, "CALLER_NOT_PERMITTED"));
    assert_eq!(common::error_metadata(&denied, "caller").as_deref(), Some(SPIFFE_CRM));

    // JSON over the same TLS port: the same certificate names the same caller,
    // and the policy refuses it the same way (403 for PERMISSION_DENIED).
    let crm_json = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA")])
        .identity(reqwest::Identity::from_pem(format!("{}{}", pki.crm.0, pki.crm.1).as_bytes()).expect("identity"))
        .resolve("localhost", addr)
        .build()
        .expect("client");
    let answer = crm_json
        .post(format!("https://localhost:{}/v1/oneTimeTokens:issue", addr.port()))
        .json(&serde_json::json!({ "email": "a@b.co" }))
        .send()
        .await
        .expect("JSON over mTLS");
    assert_eq!(answer.status(), 403);
    let body: serde_json::Value = answer.json().await.expect("a JSON body");
    assert_eq!(body["details"][0]["reason"], "CALLER_NOT_PERMITTED");
    assert_eq!(body["details"][0]["metadata"]["caller"], SPIFFE_CRM);

    // TLS without a certificate: a bearer token names the caller.
    let mut anonymous = SsoServiceClient::new(connect(addr, &pki.ca_pem, None).await.expect("TLS"));
    anonymous.issue_one_time_token(bearer(ott("acme"), SIGNUP_TOKEN)).await.expect("signup may mint for acme");
    let other_tenant =
        anonymous.issue_one_time_token(bearer(ott("globex"), SIGNUP_TOKEN)).await.expect_err("not globex");
    assert_eq!(reason(&other_tenant), "CALLER_NOT_PERMITTED");
    // A misspelt tenant names only the tenants this caller may use for this call.
    let misspelt = anonymous.issue_one_time_token(bearer(ott("Acme"), SIGNUP_TOKEN)).await.expect_err("case");
    assert_eq!(reason(&misspelt), "UNKNOWN_TENANT");
    assert!(misspelt.message().contains("case-sensitive") && misspelt.message().contains("`acme`"), "{misspelt:?}");
    assert!(!misspelt.message().contains("globex"), "a tenant it may not use stays unnamed: {misspelt:?}");
    let not_its_rpc = anonymous.login(bearer(login(), SIGNUP_TOKEN)).await.expect_err("signup may not log in");
    assert_eq!(reason(&not_its_rpc), "CALLER_NOT_PERMITTED");

    // No credentials, or wrong ones.
    let none = anonymous.login(login()).await.expect_err("no credentials");
    assert_eq!((none.code(), reason(&none).as_str()), (Code::Unauthenticated, "CALLER_UNAUTHENTICATED"));
    let wrong_token = "wrong-token-0123456789abcdef0123456789";
    let wrong = anonymous.issue_one_time_token(bearer(ott("acme"), wrong_token)).await.expect_err("unknown token");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert!(!wrong.message().contains(wrong_token));

    // A certificate from another CA does not even complete the handshake.
    let stranger = match connect(addr, &pki.ca_pem, Some(&pki.stranger)).await {
        Err(_) => None,
        Ok(channel) => Some(SsoServiceClient::new(channel).login(login()).await),
    };
    assert!(stranger.is_none() || stranger.is_some_and(|r| r.is_err()), "an untrusted certificate is refused");

    // Plaintext reaches only the health port, without credentials.
    let mut health = tonic_health::pb::health_client::HealthClient::new(common::channel(health_addr).await);
    let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.expect("health");
    assert_eq!(answer.into_inner().status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
    let plaintext = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await;
    let plaintext_call = match plaintext {
        Err(_) => None,
        Ok(channel) => Some(SsoServiceClient::new(channel).login(login()).await),
    };
    assert!(plaintext_call.is_none() || plaintext_call.is_some_and(|r| r.is_err()), "no plaintext on the TLS port");

    // Only the permitted calls reached the vendor: one login, one token.
    let requests = upstream.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2, "{:?}", requests.iter().map(|r| r.url.path().to_string()).collect::<Vec<_>>());
    drop(gateway);

    let logs = captured.text();
    let finished: Vec<&str> = logs.lines().filter(|l| l.contains("rpc finished")).collect();
    assert!(finished.iter().any(|l| l.contains(&format!("caller=\"{SPIFFE_CRM}\"")) && l.contains("code=\"OK\"")));
    assert!(
        finished.iter().any(|l| l.contains(&format!("caller=\"{SPIFFE_CRM}\"")) && l.contains("CALLER_NOT_PERMITTED"))
    );
    assert!(finished.iter().any(|l| l.contains("caller=\"signup\"") && l.contains("code=\"OK\"")));
    assert!(finished.iter().any(|l| l.contains("caller=\"unauthenticated\"") && l.contains("CALLER_UNAUTHENTICATED")));
    assert!(!logs.contains(SIGNUP_TOKEN) && !logs.contains(wrong_token), "credentials never logged");
}
