//! An HTTPS vendor for tests: a test CA, a certificate it signed for
//! 127.0.0.1, and a server that answers every request with a one-time token,
//! counts the requests that reached it and records the protocols each client
//! offered by ALPN.
#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::Acceptor,
};

/// The token the vendor hands out.
pub const TOKEN: &str = "over-tls";

/// A CA (as PEM) and a server certificate it signed for 127.0.0.1.
pub fn certificates() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
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

/// A running HTTPS vendor.
pub struct Vendor {
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub authority: String,
    served: Arc<AtomicUsize>,
    offered_alpn: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Vendor {
    /// How many requests reached the vendor over an established TLS session.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// The ALPN protocols each TLS client offered, in the order offered.
    pub fn offered_alpn(&self) -> Vec<Vec<String>> {
        self.offered_alpn.lock().expect("lock").clone()
    }
}

/// Starts the vendor on 127.0.0.1 with `certificate`; it speaks HTTP/1.1 only.
pub async fn start(certificate: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Vendor {
    mtr_sso::upstream::install_crypto_provider();
    let mut config =
        ServerConfig::builder().with_no_client_auth().with_single_cert(vec![certificate], key).expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let authority = listener.local_addr().expect("addr").to_string();
    let served = Arc::new(AtomicUsize::new(0));
    let offered_alpn = Arc::new(Mutex::new(Vec::new()));
    let (counter, offers) = (served.clone(), offered_alpn.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (config, counter, offers) = (config.clone(), counter.clone(), offers.clone());
            tokio::spawn(async move {
                let Ok(start) = tokio_rustls::LazyConfigAcceptor::new(Acceptor::default(), socket).await else {
                    return;
                };
                let offered = start.client_hello().alpn().into_iter().flatten();
                offers.lock().expect("lock").push(offered.map(|p| String::from_utf8_lossy(p).into_owned()).collect());
                let Ok(mut stream) = start.into_stream(config).await else { return };
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then the JSON body, arrive within a few reads.
                while !String::from_utf8_lossy(&request).contains("\"email\"") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&chunk[..read]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let body = format!(r#"{{"token":"{TOKEN}"}}"#);
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.flush().await;
            });
        }
    });
    Vendor { base: format!("https://{authority}"), authority, served, offered_alpn }
}

/// Writes `pem` to a fresh file named `name` in this test process's
/// directory, for `SSL_CERT_FILE`.
pub fn write_trust_store(name: &str, pem: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mtr-sso-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write");
    path
}
