//! The server certificate rotates without a restart: a client that connects
//! after the files change sees the new certificate, calls running across the
//! swap (on connections open before it and on new ones) all succeed, and a
//! corrupt replacement keeps the old certificate with one ERROR line naming
//! the file and a metric. The files are published the way a Kubernetes
//! Secret mount does it: a new directory, then the `..data` symlink swapped.

use crate::{common, rotation};
use common::tenant;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rotation::{SecretDir, captured_logs, metric, wait_for_metric};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

/// A CA and two server certificates for `localhost` it signed.
fn pki() -> (String, Leaf, Leaf) {
    let ca_key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "rotation test CA");
    let ca_pem = params.self_signed(&ca_key).expect("self-signed").pem();
    let issuer = Issuer::new(params, ca_key);
    let leaf = || {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![SanType::DnsName("localhost".try_into().expect("ia5"))];
        let cert = params.signed_by(&key, &issuer).expect("signed");
        Leaf { cert: cert.pem(), key: key.serialize_pem(), der: cert.der().to_vec() }
    };
    (ca_pem, leaf(), leaf())
}

/// The leaf certificate a new TLS connection to `addr` is shown.
async fn served_certificate(addr: SocketAddr, ca_pem: &str) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA")).expect("root");
    let config = common::h2_tls_client(roots);
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

async fn tls_channel(addr: SocketAddr, ca_pem: &str) -> Result<Channel, tonic::transport::Error> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name("localhost");
    Channel::from_shared(format!("https://{addr}")).expect("uri").tls_config(tls)?.connect().await
}

async fn check(channel: Channel) -> Result<(), tonic::Status> {
    HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.map(|_| ())
}

/// A gateway serving TLS from the `tls.crt` and `tls.key` of `secret`.
async fn gateway(secret: &SecretDir) -> common::Gateway {
    let mut settings = common::settings(vec![tenant("acme", "http://127.0.0.1:9")], Duration::from_secs(5));
    settings.caller_files.tls_cert = Some(secret.path("tls.crt"));
    settings.caller_files.tls_key = Some(secret.path("tls.key"));
    settings.tls = settings.caller_files.read_tls().expect("TLS files");
    common::spawn_app(settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_reaches_new_connections_and_no_call_fails_across_the_swap() {
    mtr_sso::upstream::install_crypto_provider();
    let (ca, old, new) = pki();
    let mut secret = SecretDir::new(&[("tls.crt", old.cert.as_bytes()), ("tls.key", old.key.as_bytes())]);
    let gateway = gateway(&secret).await;
    let addr = gateway.addr;
    assert_eq!(served_certificate(addr, &ca).await, old.der);

    // Calls in a loop across the swap: on a connection opened before it, and on a new one each time.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (stop, ca) = (stop.clone(), ca.clone());
        async move {
            let kept = tls_channel(addr, &ca).await.expect("connects");
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                for result in [
                    check(kept.clone()).await,
                    async {
                        let fresh =
                            tls_channel(addr, &ca).await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                        check(fresh).await
                    }
                    .await,
                ] {
                    match result {
                        Ok(()) => ok += 1,
                        Err(status) => failed.push(status.to_string()),
                    }
                }
            }
            (ok, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let changed = Instant::now();
    secret.publish(&[("tls.crt", new.cert.as_bytes()), ("tls.key", new.key.as_bytes())]);
    while served_certificate(addr, &ca).await != new.der {
        assert!(changed.elapsed() < Duration::from_secs(3), "the new certificate is served within 3 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = changed.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.await.expect("load");
    println!(
        "figure: new certificate served {} ms after the ..data swap; {ok} calls across it, {} failed",
        took.as_millis(),
        failed.len()
    );
    assert!(failed.is_empty(), "no call fails during the swap: {failed:?}");
    assert!(ok >= 10, "calls ran across the swap: {ok}");
    assert_eq!(metric(&gateway, "mtr_sso_reloads_total{source=\"tls\"}").await, Some(1.0), "one swap, one reload");
    assert_eq!(metric(&gateway, "mtr_sso_reload_failures_total{source=\"tls\"}").await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_certificate_keeps_the_old_one_with_one_error_line_and_a_metric() {
    let logs = captured_logs();
    mtr_sso::upstream::install_crypto_provider();
    let (ca, old, new) = pki();
    // Plain files this time, rewritten in place.
    let secret = SecretDir::plain(&[("tls.crt", old.cert.as_bytes()), ("tls.key", old.key.as_bytes())]);
    let gateway = gateway(&secret).await;
    let addr = gateway.addr;

    let garbage = "-----BEGIN CERTIFICATE-----\nnot-a-certificate-at-all\n-----END CERTIFICATE-----\n";
    std::fs::write(secret.path("tls.crt"), garbage).expect("corrupt");
    let took = wait_for_metric(&gateway, "mtr_sso_reload_failures_total{source=\"tls\"}", 1.0).await;
    println!("figure: corrupt certificate refused {} ms after the write", took.as_millis());
    assert_eq!(metric(&gateway, "mtr_sso_reload_failing{source=\"tls\"}").await, Some(1.0));
    assert_eq!(served_certificate(addr, &ca).await, old.der, "the old certificate stays");
    check(tls_channel(addr, &ca).await.expect("connects")).await.expect("and serves");

    tokio::time::sleep(Duration::from_millis(800)).await;
    let cert_path = secret.path("tls.crt").display().to_string();
    let text = logs.text();
    let errors: Vec<_> = text.lines().filter(|line| line.contains("ERROR") && line.contains(&cert_path)).collect();
    assert_eq!(errors.len(), 1, "one ERROR line naming the file: {text}");
    assert!(errors[0].contains("--tls-cert"), "{}", errors[0]);
    assert!(!text.contains("not-a-certificate-at-all"), "never the content");
    assert!(!text.contains(old.key.lines().nth(1).expect("key line")), "never a key");

    // Fixed: the next version applies, and the failure clears.
    std::fs::write(secret.path("tls.key"), &new.key).expect("key");
    std::fs::write(secret.path("tls.crt"), &new.cert).expect("cert");
    wait_for_metric(&gateway, "mtr_sso_reload_failing{source=\"tls\"}", 0.0).await;
    assert_eq!(served_certificate(addr, &ca).await, new.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_ca_bundle_admits_the_callers_it_signs_on_new_connections() {
    mtr_sso::upstream::install_crypto_provider();
    let (ca, server, _) = pki();
    let (other_ca, caller, _) = pki();
    let mut secret = SecretDir::new(&[
        ("tls.crt", server.cert.as_bytes()),
        ("tls.key", server.key.as_bytes()),
        ("ca.crt", ca.as_bytes()),
    ]);
    let mut settings = common::settings(vec![tenant("acme", "http://127.0.0.1:9")], Duration::from_secs(5));
    settings.caller_files.tls_cert = Some(secret.path("tls.crt"));
    settings.caller_files.tls_key = Some(secret.path("tls.key"));
    settings.caller_files.tls_client_ca = Some(secret.path("ca.crt"));
    settings.tls = settings.caller_files.read_tls().expect("TLS files");
    let gateway = common::spawn_app(settings).await;
    let admitted = || async {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca))
            .identity(tonic::transport::Identity::from_pem(&caller.cert, &caller.key))
            .domain_name("localhost");
        let endpoint = Channel::from_shared(format!("https://{}", gateway.addr)).expect("uri");
        match endpoint.tls_config(tls).expect("tls").connect().await {
            Ok(channel) => check(channel).await.is_ok(),
            Err(_) => false,
        }
    };
    assert!(!admitted().await, "a certificate from a CA outside the bundle is refused");

    let changed = Instant::now();
    let bundle = format!("{ca}{other_ca}");
    secret.publish(&[
        ("tls.crt", server.cert.as_bytes()),
        ("tls.key", server.key.as_bytes()),
        ("ca.crt", bundle.as_bytes()),
    ]);
    while !admitted().await {
        assert!(changed.elapsed() < Duration::from_secs(3), "the new bundle applies within 3 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("figure: a caller of the new CA admitted {} ms after the ..data swap", changed.elapsed().as_millis());
}
