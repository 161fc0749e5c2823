//! HTTPS to the vendor: the gateway verifies the vendor's certificate against
//! the platform's trust store (here a test CA named by `SSL_CERT_FILE`, as the
//! platform's store honours it) and refuses a certificate it cannot verify.

mod common;

use common::Running;
use mtr_sso::proto::{IssueOneTimeTokenRequest, sso_service_client::SsoServiceClient};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};

/// A CA (as PEM) and a server certificate it signed for 127.0.0.1.
fn certificates() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "vendor test CA");
    let ca_pem = ca.self_signed(&ca_key).expect("self-signed").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut server = CertificateParams::new(Vec::<String>::new()).expect("params");
    server.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().expect("ip"))];
    let certificate = server.signed_by(&key, &issuer).expect("signed");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (ca_pem, certificate.der().clone(), key)
}

/// An HTTPS vendor on 127.0.0.1 that answers every request with a token and
/// counts the requests that reached it.
async fn start_vendor(
    certificate: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    mtr_sso::upstream::install_crypto_provider();
    let mut config =
        ServerConfig::builder().with_no_client_auth().with_single_cert(vec![certificate], key).expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("https://{}", listener.local_addr().expect("addr"));
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(socket).await else { return };
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then the JSON body, arrive within a few reads.
                while !String::from_utf8_lossy(&request).contains("\"email\"") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&chunk[..read]),
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = r#"{"token":"over-tls"}"#;
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.flush().await;
            });
        }
    });
    (base, served)
}

fn gateway(vendor: &str, ca_file: &str) -> Running {
    Running::start_with_env(
        &[
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--broker-api-url",
            vendor,
            "--api-key",
            "k",
            "--platform-url",
            vendor,
            "--upstream-timeout",
            "5s",
        ],
        &[("SSL_CERT_FILE", ca_file)],
    )
}

fn issue() -> IssueOneTimeTokenRequest {
    IssueOneTimeTokenRequest { email: "a@example.com".into(), ..Default::default() }
}

#[tokio::test]
async fn the_vendors_certificate_is_verified_against_the_trust_store() {
    let (ca_pem, certificate, key) = certificates();
    let (vendor, served) = start_vendor(certificate, key).await;
    let dir = std::env::temp_dir().join(format!("mtr-sso-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let trusted = dir.join("trusted.pem");
    std::fs::write(&trusted, &ca_pem).expect("write");
    // Another CA, which did not sign the vendor's certificate.
    let (other_ca_pem, _, _) = certificates();
    let untrusted = dir.join("untrusted.pem");
    std::fs::write(&untrusted, other_ca_pem).expect("write");

    let running = gateway(&vendor, trusted.to_str().expect("utf8"));
    let mut client = SsoServiceClient::new(common::channel(running.grpc_addr()).await);
    let issued = client.issue_one_time_token(issue()).await.expect("issued over TLS").into_inner();
    assert_eq!(issued.login_link.expect("link").one_time_token, "over-tls");
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);

    let running = gateway(&vendor, untrusted.to_str().expect("utf8"));
    let mut client = SsoServiceClient::new(common::channel(running.grpc_addr()).await);
    let refused = client.issue_one_time_token(issue()).await.expect_err("an unverifiable certificate");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(common::reason(&refused), "UPSTREAM_UNAVAILABLE", "{refused:?}");
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1, "nothing was sent over the refused connection");
}
