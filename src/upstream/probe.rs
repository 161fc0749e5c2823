//! The preflight's reads: a GET of any path of a tenant's Broker-API (with
//! its key) or platform (without), admitted by the tenant's gates like any
//! call, whose answer comes back whatever its status. The preflight judges
//! a refusal itself, so it needs what a flow never keeps: the status as it
//! came, a `cf-mitigated` header (bot protection in front of the host) and
//! the problem's title.

use http::{
    HeaderValue,
    header::{ACCEPT, AUTHORIZATION},
};
use std::sync::Arc;
use url::Url;

use super::{
    authorization::Authorization,
    error::{Endpoint, UpstreamError},
    exchange::exchange_any_status,
    gate::{GateContext, UpstreamGate},
    http_client::HttpClient,
    json::Problem,
    outgoing::{Outgoing, endpoint_url},
};
use crate::{deadline::Deadline, tenant::TenantSettings};

/// One tenant's reads, on the shared HTTP client.
#[derive(Debug)]
pub struct Prober {
    http: HttpClient,
    broker_api_url: Url,
    platform_url: Url,
    authorization: Authorization,
    broker_gate: UpstreamGate,
    platform_gate: UpstreamGate,
}

/// An answer as it came, reduced to what the preflight judges. Never holds
/// the body's text, so nothing the vendor wrote can leak beyond its title.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeAnswer {
    pub status: u16,
    /// The `cf-mitigated` header (Cloudflare's bot protection), when present.
    pub bot_challenge: Option<String>,
    /// The body as JSON, when it is JSON.
    pub json: Option<serde_json::Value>,
    /// The title of a problem body, when the body is one and has a title.
    pub problem_title: Option<String>,
    /// Whether the body is a problem (the API's error shape, not a proxy's page).
    pub is_problem: bool,
}

impl ProbeAnswer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The answer's items when it is a page (`{"content": [...]}`) or a list.
    pub fn items(&self) -> Option<&Vec<serde_json::Value>> {
        match self.json.as_ref()? {
            serde_json::Value::Array(items) => Some(items),
            serde_json::Value::Object(map) => map.get("content")?.as_array(),
            _ => None,
        }
    }
}

impl Prober {
    /// The reads of `tenant`, admitted by gates of its own under `gates`.
    pub fn new(http: HttpClient, tenant: &TenantSettings, gates: Arc<GateContext>) -> Result<Self, String> {
        Ok(Self {
            http,
            broker_api_url: tenant.broker_api_url.clone(),
            platform_url: tenant.platform_url.clone(),
            authorization: Authorization::new(&tenant.api_key, tenant.auth_scheme)?,
            broker_gate: UpstreamGate::new(&tenant.name, "broker-api", gates.clone()),
            platform_gate: UpstreamGate::new(&tenant.name, "platform", gates),
        })
    }

    /// `GET {broker_api_url}{path}?{query}` with the tenant's key.
    pub async fn broker_api(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &[(&str, &str)],
        deadline: Deadline,
    ) -> Result<ProbeAnswer, UpstreamError> {
        let url = probe_url(endpoint, &self.broker_api_url, path, query)?;
        let request = Outgoing::get(&url).header(AUTHORIZATION, self.authorization.current());
        self.read(endpoint, &self.broker_gate, request, deadline).await
    }

    /// `GET {platform_url}{path}` without credentials.
    pub async fn platform(&self, path: &str, deadline: Deadline) -> Result<ProbeAnswer, UpstreamError> {
        let endpoint = Endpoint::PlatformDetails;
        let url = probe_url(endpoint, &self.platform_url, path, &[])?;
        self.read(endpoint, &self.platform_gate, Outgoing::get(&url), deadline).await
    }

    async fn read(
        &self,
        endpoint: Endpoint,
        gate: &UpstreamGate,
        request: Outgoing,
        deadline: Deadline,
    ) -> Result<ProbeAnswer, UpstreamError> {
        let request = request.header(ACCEPT, HeaderValue::from_static("application/json"));
        let answer = exchange_any_status(endpoint, gate, &self.http, request, deadline).await?;
        let problem = Problem::parse(&answer.body);
        Ok(ProbeAnswer {
            status: answer.status,
            bot_challenge: answer
                .headers
                .get("cf-mitigated")
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
            json: serde_json::from_slice(&answer.body).ok(),
            is_problem: problem.is_some(),
            problem_title: problem.and_then(|problem| problem.title).map(|title| printable(&title)),
        })
    }
}

/// Longest title printed: the vendor's text goes into a one-line table.
const MAX_TITLE_CHARS: usize = 120;

/// `text` on one line (control characters as spaces) and at most [`MAX_TITLE_CHARS`] long.
fn printable(text: &str) -> String {
    let mut line: String = text.chars().take(MAX_TITLE_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > MAX_TITLE_CHARS {
        line.push('…');
    }
    line
}

fn probe_url(endpoint: Endpoint, base: &Url, path: &str, query: &[(&str, &str)]) -> Result<Url, UpstreamError> {
    let mut url = endpoint_url(base, path).map_err(|_| {
        let fault = super::UpstreamFault::Protocol { problem: "the request URL could not be built" };
        UpstreamError::new(endpoint, None, fault)
    })?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: serde_json::Value) -> ProbeAnswer {
        ProbeAnswer { status: 200, bot_challenge: None, json: Some(json), problem_title: None, is_problem: false }
    }

    #[test]
    fn a_page_or_a_list_has_items_and_anything_else_has_none() {
        let page = answer(serde_json::json!({"content": [{"uuid": "u"}], "totalElements": 1}));
        assert_eq!(page.items().map(Vec::len), Some(1));
        assert_eq!(answer(serde_json::json!([])).items().map(Vec::len), Some(0));
        assert_eq!(answer(serde_json::json!({"uuid": "u"})).items(), None);
    }

    #[test]
    fn a_title_is_printed_on_one_short_line() {
        assert_eq!(printable("Bad\nRequest\t!"), "Bad Request !");
        let long = "x".repeat(500);
        assert_eq!(printable(&long).chars().count(), MAX_TITLE_CHARS + 1);
    }

    #[test]
    fn the_query_is_appended_to_the_path_below_the_base() {
        let base = Url::parse("https://host.example/broker-api-v2").expect("url");
        let url = probe_url(Endpoint::ServiceInfo, &base, "/v1/user-accounts", &[("page", "0"), ("size", "1")]);
        assert_eq!(url.expect("url").as_str(), "https://host.example/broker-api-v2/v1/user-accounts?page=0&size=1");
    }
}
