//! The generated gRPC types of `matchtrader.sso.v1`, the encoded descriptor
//! set that reflection serves, and redacting `Debug` impls for every message
//! that carries a password or token (their derived `Debug` is skipped in
//! `build.rs`), so that logging a request can never print a secret.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

use std::fmt;

tonic::include_proto!("matchtrader.sso.v1");

/// The gRPC service's full name, as the generated server declares it; the
/// health service and the metrics name the service by it.
pub const SERVICE_NAME: &str = <sso_service_server::SsoServiceServer<()> as tonic::server::NamedService>::NAME;

/// The encoded `FileDescriptorSet` of `proto/`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sso_descriptor.bin"));

const REDACTED: &str = "<redacted>";

impl fmt::Debug for CreateAccountRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateAccountRequest")
            .field("tenant", &self.tenant)
            .field("email", &self.email)
            .field("password", &REDACTED)
            .field("offer_uuid", &self.offer_uuid)
            .field("client_type", &self.client_type)
            .field("start_session", &self.start_session)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("tenant", &self.tenant)
            .field("email", &self.email)
            .field("password", &REDACTED)
            .field("broker_id", &self.broker_id)
            .finish()
    }
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest").field("tenant", &self.tenant).field("refresh_token", &REDACTED).finish()
    }
}

impl fmt::Debug for LoginLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginLink")
            .field("one_time_token", &REDACTED)
            .field("redirect_url", &REDACTED)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("access_token", &REDACTED)
            .field("refresh_token", &REDACTED)
            .field("expires_at", &self.expires_at)
            .field("redirect_url", &self.redirect_url)
            .field("cookies", &self.cookies)
            .finish()
    }
}

impl fmt::Debug for BrowserCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserCookie")
            .field("name", &self.name)
            .field("value", &REDACTED)
            .field("domain", &self.domain)
            .field("path", &self.path)
            .field("max_age", &self.max_age)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .field("same_site", &self.same_site)
            .field("set_cookie_header", &REDACTED)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_of_secret_bearing_messages_hides_every_secret() {
        let session = Session {
            access_token: "access-secret".into(),
            refresh_token: "refresh-secret".into(),
            redirect_url: "https://platform.example".into(),
            cookies: vec![BrowserCookie {
                name: "co-auth".into(),
                value: "access-secret".into(),
                set_cookie_header: "co-auth=access-secret".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let printed = format!(
            "{:?} {:?} {:?} {:?} {:?}",
            LoginRequest { password: "pw-secret".into(), ..Default::default() },
            CreateAccountRequest { password: "pw-secret".into(), ..Default::default() },
            RefreshRequest { refresh_token: "refresh-secret".into(), ..Default::default() },
            LoginLink {
                one_time_token: "ott-secret".into(),
                redirect_url: "https://p/?auth=ott-secret".into(),
                expires_at: None
            },
            LoginResponse { session: Some(session), ..Default::default() },
        );
        for secret in ["pw-secret", "refresh-secret", "access-secret", "ott-secret"] {
            assert!(!printed.contains(secret), "{secret} leaked in {printed}");
        }
        assert!(printed.contains("co-auth"), "non-secret fields still print: {printed}");
    }
}
