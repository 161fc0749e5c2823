//! One request to the vendor, kept whole so that an attempt can be made
//! again, and the helpers every API client builds its requests with: an
//! endpoint's URL from a base URL and a path, a path template filled with
//! one percent-encoded value, the API key's `Authorization` value, and a
//! JSON body.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header::HeaderName};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use url::Url;

use super::error::{Endpoint, UpstreamError, UpstreamFault};
use crate::tenant::AuthScheme;

/// The two methods the vendor is called with; a byte, where `http::Method` takes 24.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorMethod {
    /// Every call that does something.
    Post,
    /// The preflight's reads.
    Get,
}

/// A request to the vendor (a POST, or the preflight's GETs), kept whole so
/// that an attempt can be made again.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: VendorMethod,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Outgoing {
    /// A POST of `body` to `url`, with no headers yet.
    pub fn post(url: &Url, body: impl Into<Bytes>) -> Self {
        Self { method: VendorMethod::Post, url: url.clone(), headers: HeaderMap::with_capacity(6), body: body.into() }
    }

    /// A GET of `url`, with no headers yet.
    pub fn get(url: &Url) -> Self {
        Self { method: VendorMethod::Get, url: url.clone(), headers: HeaderMap::with_capacity(4), body: Bytes::new() }
    }

    /// With `name` set to `value` (replacing any earlier value).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub(super) fn to_request(&self) -> reqwest::Request {
        let method = match self.method {
            VendorMethod::Post => Method::POST,
            VendorMethod::Get => Method::GET,
        };
        let mut request = reqwest::Request::new(method, self.url.clone());
        *request.headers_mut() = self.headers.clone();
        if self.method == VendorMethod::Post {
            *request.body_mut() = Some(self.body.clone().into());
        }
        request
    }
}

/// Base URL plus configured path, keeping any path prefix the base URL has;
/// checked once that requests can be sent to it.
pub(crate) fn endpoint_url(base: &Url, path: &str) -> Result<Url, String> {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    match url.as_str().parse::<http::Uri>() {
        Ok(_) => Ok(url),
        Err(e) => Err(format!("the upstream URL {url} cannot be requested: {e}")),
    }
}

/// `base` plus `template` with `hole` replaced by `value`, percent-encoded
/// as one path segment.
pub(crate) fn filled_url(
    endpoint: Endpoint,
    base: &Url,
    template: &str,
    hole: &str,
    value: &str,
) -> Result<Url, UpstreamError> {
    endpoint_url(base, &template.replace(hole, &path_segment(value))).map_err(|_| {
        UpstreamError::new(endpoint, None, UpstreamFault::Protocol { problem: "the request URL could not be built" })
    })
}

/// Every byte outside the characters a path segment may hold as they are, percent-encoded.
fn path_segment(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@+!$&'()*,;=:".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The API key as the `Authorization` header value of `scheme`.
pub(crate) fn authorization(api_key: &SecretString, scheme: AuthScheme) -> Result<HeaderValue, String> {
    let key = api_key.expose_secret();
    let text = match scheme {
        AuthScheme::Raw => key.to_string(),
        AuthScheme::Bearer => format!("Bearer {key}"),
    };
    let mut value =
        HeaderValue::from_str(&text).map_err(|_| "the API key is not a valid HTTP header value".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

/// `body` as JSON for a call to `endpoint`.
pub(crate) fn json_body(endpoint: Endpoint, body: &impl Serialize) -> Result<Vec<u8>, UpstreamError> {
    serde_json::to_vec(body).map_err(|_| {
        UpstreamError::new(endpoint, None, UpstreamFault::Protocol { problem: "the request could not be encoded" })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_keep_a_base_path_prefix() {
        let base = Url::parse("https://host.example/broker-api/").expect("url");
        let url = endpoint_url(&base, "/v1/accounts").expect("requestable");
        assert_eq!(url.as_str(), "https://host.example/broker-api/v1/accounts");
        let bare = Url::parse("https://host.example").expect("url");
        let url = endpoint_url(&bare, "/v1/accounts").expect("requestable");
        assert_eq!(url.as_str(), "https://host.example/v1/accounts");
    }

    #[test]
    fn path_values_are_encoded_as_one_segment() {
        assert_eq!(path_segment("a.b+c@x.com"), "a.b+c@x.com");
        assert_eq!(path_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
    }
}
