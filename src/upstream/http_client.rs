//! The one HTTP client all upstream calls share: reqwest's pooled client over
//! TCP, TLS (rustls with ring, trusting the platform's certificate store, HTTP/2
//! when the vendor offers it by ALPN) and, when the environment names a proxy
//! for a host, that proxy (http, https or socks).
//!
//! A call's URL is parsed once, when its client is built; a request is then
//! assembled from it and sent as is: redirects are never followed and
//! reqwest's own retries are off, so every attempt is one the exchange decided.

use http::HeaderValue;
use std::{fmt, future::Future, time::Duration};

use super::outgoing::Outgoing;
use crate::config::{HttpSettings, Proxies};

/// Installs the process-wide TLS crypto provider (ring). Idempotent.
pub fn install_crypto_provider() {
    // A second install fails harmlessly: the first provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("the upstream HTTP client could not be built: {0}")]
pub struct HttpClientError(String);

/// The shared, pooled HTTP client. Cloning shares the pool.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client's proxy settings may hold a proxy's credentials.
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the client with the process-wide TLS provider installed. With
    /// [`Proxies::FromEnvironment`], a proxy variable this client cannot use
    /// is refused here rather than silently bypassed.
    pub fn new(settings: &HttpSettings) -> Result<Self, HttpClientError> {
        install_crypto_provider();
        let user_agent = HeaderValue::from_str(&settings.user_agent)
            .map_err(|_| HttpClientError("the user agent is not a valid header value".into()))?;
        let builder = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(settings.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            // No client-wide timeout: every exchange runs under its RPC's
            // deadline (at most --upstream-timeout). Redirects are never
            // followed: from these APIs they mean a login page or bot wall.
            .redirect(reqwest::redirect::Policy::none())
            // Only the exchange decides what is sent again (and counts it);
            // with no retries of its own the client keeps no copy of each request.
            .retry(reqwest::retry::never().max_retries_per_request(0));
        let builder = match settings.proxies {
            Proxies::FromEnvironment => {
                if let Some(variable) = unusable_proxy_variable(|name| std::env::var(name).ok()) {
                    return Err(HttpClientError(format!(
                        "{variable} does not name a proxy this client can use \
                         (an http://, https://, socks4://, socks4a://, socks5:// or socks5h:// URL)"
                    )));
                }
                builder
            }
            Proxies::None => builder.no_proxy(),
        };
        let client = builder.build().map_err(|e| HttpClientError(e.to_string()))?;
        Ok(Self { client })
    }

    /// Sends one attempt of `request`.
    pub fn send(
        &self,
        request: &Outgoing,
    ) -> impl Future<Output = Result<reqwest::Response, reqwest::Error>> + Send + 'static {
        self.client.execute(request.to_request())
    }
}

/// The proxy variables as the client reads them: per kind, the uppercase
/// name wins over the lowercase one.
const PROXY_VARIABLES: [[&str; 2]; 3] =
    [["ALL_PROXY", "all_proxy"], ["HTTPS_PROXY", "https_proxy"], ["HTTP_PROXY", "http_proxy"]];

/// The first proxy variable whose value the client would ignore (it cannot
/// parse it, or cannot speak its scheme), so that calls meant to go through
/// a proxy never go direct instead. The value is never shown: it may hold
/// the proxy's credentials.
fn unusable_proxy_variable(lookup: impl Fn(&str) -> Option<String>) -> Option<&'static str> {
    PROXY_VARIABLES.iter().find_map(|names| {
        let (name, value) = names.iter().find_map(|name| lookup(name).map(|value| (*name, value)))?;
        (!value.is_empty() && !is_usable_proxy(&value)).then_some(name)
    })
}

fn is_usable_proxy(value: &str) -> bool {
    let Ok(uri) = value.parse::<http::Uri>() else {
        return false;
    };
    let scheme_known = match uri.scheme_str() {
        // Without a scheme a proxy is taken to be http.
        None => true,
        Some(scheme) => matches!(scheme, "http" | "https" | "socks4" | "socks4a" | "socks5" | "socks5h"),
    };
    scheme_known && uri.authority().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unusable(variables: &[(&str, &str)]) -> Option<&'static str> {
        unusable_proxy_variable(|name| {
            variables.iter().find(|(variable, _)| *variable == name).map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn every_proxy_scheme_the_client_speaks_is_accepted() {
        assert_eq!(unusable(&[]), None);
        for proxy in [
            "http://user:pw@proxy.example:3128",
            "https://proxy.example",
            "socks5://127.0.0.1:1080",
            "socks5h://proxy.example:1080",
            "socks4a://proxy.example:1080",
            "proxy.example:3128",
            "",
        ] {
            assert_eq!(unusable(&[("HTTPS_PROXY", proxy)]), None, "{proxy}");
        }
    }

    #[test]
    fn a_proxy_the_client_would_ignore_is_named_by_its_variable() {
        assert_eq!(unusable(&[("HTTP_PROXY", "ftp://proxy.example:21")]), Some("HTTP_PROXY"));
        assert_eq!(unusable(&[("all_proxy", "http://pro xy")]), Some("all_proxy"));
        assert_eq!(unusable(&[("ALL_PROXY", "http://ok.example"), ("HTTPS_PROXY", "gopher://x")]), Some("HTTPS_PROXY"));
    }

    #[test]
    fn the_uppercase_variable_wins_over_the_lowercase_one() {
        let both = [("HTTPS_PROXY", "socks5://127.0.0.1:1080"), ("https_proxy", "ftp://ignored.example")];
        assert_eq!(unusable(&both), None);
    }
}
