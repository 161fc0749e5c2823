//! HTTPS to the vendor: the gateway verifies the vendor's certificate against
//! the platform's trust store (here a test CA named by `SSL_CERT_FILE`, as the
//! platform's store honours it), refuses a certificate it cannot verify, and
//! offers HTTP/2 by ALPN (falling back to HTTP/1.1 when the vendor picks it).

use crate::{common, tls_vendor};
use common::Running;
use mtr_sso::proto::{IssueOneTimeTokenRequest, sso_service_client::SsoServiceClient};
use tls_vendor::{certificates, write_trust_store};

/// The gateway binary trusting the CA in `ca_file` (as the platform's store honours `SSL_CERT_FILE`).
fn gateway(vendor: &str, ca_file: &str) -> Running {
    common::vendor_gateway(vendor, &["--upstream-timeout", "5s"], &[("SSL_CERT_FILE", ca_file)])
}

fn issue() -> IssueOneTimeTokenRequest {
    IssueOneTimeTokenRequest { email: "a@example.com".into(), ..Default::default() }
}

#[tokio::test]
async fn the_vendors_certificate_is_verified_against_the_trust_store() {
    let (ca_pem, certificate, key) = certificates();
    let vendor = tls_vendor::start(certificate, key).await;
    let trusted = write_trust_store("trusted.pem", &ca_pem);
    // Another CA, which did not sign the vendor's certificate.
    let (other_ca_pem, _, _) = certificates();
    let untrusted = write_trust_store("untrusted.pem", &other_ca_pem);

    let running = gateway(&vendor.base, trusted.to_str().expect("utf8"));
    let mut client = SsoServiceClient::new(common::channel(running.grpc_addr()).await);
    let issued = client.issue_one_time_token(issue()).await.expect("issued over TLS").into_inner();
    assert_eq!(issued.login_link.expect("link").one_time_token, tls_vendor::TOKEN);
    assert_eq!(vendor.served(), 1);
    assert_eq!(vendor.offered_alpn(), [["h2", "http/1.1"]], "HTTP/2 offered, HTTP/1.1 served");

    let running = gateway(&vendor.base, untrusted.to_str().expect("utf8"));
    let mut client = SsoServiceClient::new(common::channel(running.grpc_addr()).await);
    let refused = client.issue_one_time_token(issue()).await.expect_err("an unverifiable certificate");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(common::reason(&refused), "UPSTREAM_UNAVAILABLE", "{refused:?}");
    assert_eq!(vendor.served(), 1, "nothing was sent over the refused connection");
}
