//! The one HTTP client all upstream calls share: hyper's pooled client over
//! TCP, TLS (rustls, trusting the platform's certificate store) and, when the
//! environment names a proxy for a host, a CONNECT tunnel through it.
//!
//! Requests are built here from a prepared URI and header map, so a call pays
//! for no URL parsing and no redirect or retry machinery it does not use.

use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, Uri,
    header::{HeaderName, USER_AGENT},
};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::{
        legacy::{
            Client,
            connect::{HttpConnector, proxy::Tunnel},
        },
        proxy::matcher::Matcher,
    },
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::config::HttpSettings;

/// Installs the process-wide TLS crypto provider (ring). Idempotent.
pub fn install_crypto_provider() {
    // A second install fails harmlessly: the first provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Which proxies the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxies {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (or their
    /// lowercase forms), read once, as curl reads them.
    FromEnvironment,
    /// Always connect directly (the in-process sandbox).
    None,
}

/// A POST to the vendor, kept whole so that an attempt can be made again.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Outgoing {
    /// A POST of `body` to `uri`, with no headers yet.
    pub fn post(uri: &Uri, body: impl Into<Bytes>) -> Self {
        Self { uri: uri.clone(), headers: HeaderMap::with_capacity(6), body: body.into() }
    }

    /// With `name` set to `value` (replacing any earlier value).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("the upstream HTTP client could not be built: {0}")]
pub struct HttpClientError(String);

/// The shared, pooled HTTP client. Cloning shares the pool.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<ProxyingConnector>, Full<Bytes>>,
    user_agent: HeaderValue,
    proxies: Arc<Matcher>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The matcher may hold a proxy's credentials.
        f.debug_struct("HttpClient").field("user_agent", &self.user_agent).finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the client with the process-wide TLS provider installed.
    pub fn new(settings: &HttpSettings, proxies: Proxies) -> Result<Self, HttpClientError> {
        install_crypto_provider();
        let user_agent = HeaderValue::from_str(&settings.user_agent)
            .map_err(|_| HttpClientError("the user agent is not a valid header value".into()))?;
        let proxies = Arc::new(match proxies {
            Proxies::FromEnvironment => Matcher::from_env(),
            Proxies::None => Matcher::builder().build(),
        });
        let mut tcp = HttpConnector::new();
        // TLS is layered on top, so https URIs must reach the TCP connector.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(settings.connect_timeout));
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| HttpClientError(format!("the platform's certificate store could not be read: {e}")))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(ProxyingConnector { tcp, proxies: proxies.clone() });
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            // No client-wide timeout: every exchange runs under its RPC's
            // deadline (at most --upstream-timeout). Redirects are never
            // followed: from these APIs they mean a login page or bot wall.
            .build(tls);
        Ok(Self { client, user_agent, proxies })
    }

    /// Checks that the proxy the environment names for `url`, if any, is one
    /// this client can tunnel through (a plain `http://` proxy).
    pub fn check_proxy_for(&self, url: &url::Url) -> Result<(), String> {
        let Ok(uri) = url.as_str().parse::<Uri>() else {
            return Ok(());
        };
        match self.proxies.intercept(&uri) {
            Some(proxy) if proxy.uri().scheme_str() != Some("http") => Err(format!(
                "the proxy set in the environment for {} is not an http:// proxy; only HTTP CONNECT proxies are supported",
                url.host_str().unwrap_or_default()
            )),
            _ => Ok(()),
        }
    }

    /// Sends one attempt of `request`.
    pub fn send(
        &self,
        request: &Outgoing,
    ) -> impl Future<Output = Result<Response<Incoming>, hyper_util::client::legacy::Error>> + Send + 'static {
        let mut outgoing = Request::new(Full::new(request.body.clone()));
        *outgoing.method_mut() = Method::POST;
        *outgoing.uri_mut() = request.uri.clone();
        let headers = outgoing.headers_mut();
        headers.reserve(request.headers.len() + 1);
        headers.insert(USER_AGENT, self.user_agent.clone());
        for (name, value) in &request.headers {
            headers.insert(name, value.clone());
        }
        self.client.request(outgoing)
    }
}

/// TCP to the destination, or a CONNECT tunnel to it through the proxy the
/// environment names for it.
#[derive(Clone)]
struct ProxyingConnector {
    tcp: HttpConnector,
    proxies: Arc<Matcher>,
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, Box<dyn std::error::Error + Send + Sync>>> + Send>>;

impl Service<Uri> for ProxyingConnector {
    type Response = TokioIo<TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both paths use a TCP connector that is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        match self.proxies.intercept(&destination) {
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), self.tcp.clone());
                if let Some(credentials) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(credentials.clone());
                }
                Box::pin(async move { Ok(tunnel.call(destination).await?) })
            }
            None => {
                let mut tcp = self.tcp.clone();
                Box::pin(async move { Ok(tcp.call(destination).await?) })
            }
        }
    }
}
