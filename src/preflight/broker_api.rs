//! The preflight's Broker-API rows, each saying only what its reads proved:
//!
//! - `broker-api`: the key, proven only by a 2xx from a read that needs it
//!   (v2: a one-item page of user accounts; v1: `GET /service-info`; the
//!   CRM-API: `GET /service-info`, or `GET /v1/offers`, its documented
//!   connection test, when `/service-info` is 404). A 404 proves nothing
//!   about a key: many hosts answer an unknown path before they check it.
//! - `generation`: a path that only the configured generation has answers
//!   (v2: the page of user accounts); on v1 and the CRM-API, their read
//!   answers and v2's is 404. A v1 host under a v2 setting, or the reverse,
//!   is named as such.
//! - `lookup`: the lookup by email that resolves a create whose answer was
//!   lost answers a made-up address the way that lookup reads as "no
//!   account"; a 400 there is inconclusive, with the answer's title.
//!
//! A 403 with `cf-mitigated` is bot protection in front of the host, not a
//! key problem, and says what to ask the vendor.

use super::{Verdict, bot_protection};
use crate::{
    deadline::Deadline,
    tenant::{Generation, TenantSettings, paths},
    upstream::{
        Endpoint, UpstreamError,
        probe::{ProbeAnswer, Prober},
    },
};

/// An address under a reserved top-level domain (RFC 2606): no account can have it.
pub const PROBE_EMAIL: &str = "mtr-sso-preflight@no-such-user.invalid";
/// v2's collection of user accounts, which no other generation has.
const V2_USER_ACCOUNTS: &str = "/v1/user-accounts";
/// The CRM-API's documented connection test.
const CRM_OFFERS: &str = "/v1/offers";
/// One item is enough to prove the read; the names are the vendor's paging parameters.
const ONE_ITEM_PAGE: [(&str, &str); 2] = [("page", "0"), ("size", "1")];

/// One read and what it answered.
struct Read {
    /// `GET <path>` as the rows print it.
    what: String,
    answer: Result<ProbeAnswer, UpstreamError>,
}

impl Read {
    fn status(&self) -> Option<u16> {
        self.answer.as_ref().ok().map(|answer| answer.status)
    }

    /// A 2xx with the JSON the API answers (not a proxy's HTML page); for
    /// a page of user accounts, a page.
    fn answered_as_api(&self, page: bool) -> bool {
        self.answer.as_ref().is_ok_and(|answer| {
            answer.is_success() && if page { answer.items().is_some() } else { answer.json.is_some() }
        })
    }
}

/// The rows' verdicts and details, in the order key, generation, lookup.
pub(super) struct BrokerRows {
    pub key: (Verdict, String),
    pub generation: (Verdict, String),
    pub lookup: (Verdict, String),
}

/// Runs the reads of `settings`' Broker-API and judges them.
pub(super) async fn check(
    prober: &Prober,
    settings: &TenantSettings,
    user_agent: &str,
    deadline: impl Fn() -> Deadline,
) -> BrokerRows {
    let read = |endpoint: Endpoint, path: String, query: &'static [(&'static str, &'static str)]| {
        let deadline = deadline();
        async move {
            let shown = if query.is_empty() { path.clone() } else { format!("{path}?page=0&size=1") };
            Read { what: format!("GET {shown}"), answer: prober.broker_api(endpoint, &path, query, deadline).await }
        }
    };
    let host = settings.broker_api_url.host_str().unwrap_or_default().to_string();
    let judge = Judge { host, user_agent, generation: settings.generation };
    let v2_path = match settings.generation {
        Generation::V2 => settings.paths.create_account.clone(),
        Generation::V1 | Generation::Crm => V2_USER_ACCOUNTS.to_string(),
    };
    let v2_page = read(Endpoint::ServiceInfo, v2_path, &ONE_ITEM_PAGE).await;
    let service_info = read(Endpoint::ServiceInfo, settings.paths.service_info.clone(), &[]).await;
    let (key, generation) = match settings.generation {
        Generation::V2 => (judge.v2_key(&v2_page, &service_info), judge.v2_generation(&v2_page, &service_info)),
        Generation::V1 | Generation::Crm => {
            let offers = if settings.generation == Generation::Crm && service_info.status() == Some(404) {
                Some(read(Endpoint::ServiceInfo, CRM_OFFERS.to_string(), &[]).await)
            } else {
                None
            };
            let key_read = offers.as_ref().unwrap_or(&service_info);
            (judge.v1_key(&service_info, offers.as_ref(), &v2_page), judge.v1_generation(key_read, &v2_page))
        }
    };
    let lookup_path = settings.paths.account_by_email.replace(paths::EMAIL, PROBE_EMAIL);
    let lookup = judge.lookup(&read(Endpoint::AccountByEmail, lookup_path, &[]).await);
    BrokerRows { key, generation, lookup }
}

struct Judge<'a> {
    host: String,
    user_agent: &'a str,
    generation: Generation,
}

impl Judge<'_> {
    /// A read that did not answer 2xx, when its status says nothing more specific.
    fn refused(&self, read: &Read, about: &str) -> (Verdict, String) {
        let what = &read.what;
        let answer = match &read.answer {
            Err(error) => return (Verdict::Fail, format!("{what}: {error}")),
            Ok(answer) => answer,
        };
        let title = answer.problem_title.as_deref().map(|t| format!(" (\"{t}\")")).unwrap_or_default();
        match answer.status {
            403 if answer.bot_challenge.is_some() => {
                (Verdict::Fail, bot_protection(what, answer, &self.host, self.user_agent))
            }
            401 => (Verdict::Fail, format!("the key is refused: {what} answered 401")),
            403 => (
                Verdict::Fail,
                format!(
                    "{what} answered 403: the key lacks the permission for this read, or this IP is not whitelisted; {about} is not proven"
                ),
            ),
            400 => (Verdict::Inconclusive, format!("{what} answered 400{title}: {about} is not proven")),
            429 => (
                Verdict::Inconclusive,
                format!("{what} answered 429: over the vendor's rate limit; run it again in a minute"),
            ),
            status @ 500..=599 => (Verdict::Fail, format!("{what} answered {status}: the host failed")),
            status @ 200..=299 => (
                Verdict::Fail,
                format!(
                    "{what} answered {status}, but not with the API's JSON: something else answered; {about} is not proven"
                ),
            ),
            status => (Verdict::Fail, format!("{what} answered {status}{title}: {about} is not proven")),
        }
    }

    fn v2_key(&self, page: &Read, service_info: &Read) -> (Verdict, String) {
        let what = &page.what;
        if page.answered_as_api(true) {
            return (
                Verdict::Pass,
                format!("{what} answered a page of user accounts, a read that needs the key: key accepted"),
            );
        }
        if page.status() != Some(404) {
            return self.refused(page, "the key");
        }
        let info = &service_info.what;
        match service_info.status() {
            Some(401) => (
                Verdict::Fail,
                format!("the key is refused: {info} answered 401 (and v2's {what} does not exist here: 404)"),
            ),
            _ if service_info.answered_as_api(false) => (
                Verdict::Inconclusive,
                format!(
                    "not proven for v2: {what} does not exist here (404); {info} accepts the key, so it is a key of the v1 or CRM-API host this URL points at"
                ),
            ),
            _ => (
                Verdict::Inconclusive,
                format!("not proven: {what} does not exist here (404), and a 404 proves nothing about a key"),
            ),
        }
    }

    fn v2_generation(&self, page: &Read, service_info: &Read) -> (Verdict, String) {
        let what = &page.what;
        if page.answered_as_api(true) {
            return (Verdict::Pass, format!("{what}, a path only Broker-API v2 has, answered a page: a v2 host"));
        }
        if page.status() != Some(404) {
            return (Verdict::Inconclusive, format!("not proven: {what} did not answer a page (see broker-api)"));
        }
        let info = &service_info.what;
        let found = match service_info.status() {
            _ if service_info.answered_as_api(false) => format!("{info} answers with this key"),
            Some(status @ (401 | 403)) => format!("{info} answers {status}, not 404, so it exists"),
            _ => {
                return (
                    Verdict::Fail,
                    format!("no Broker-API v2 here: {what} answered 404, and so does {info}: check broker_api_url"),
                );
            }
        };
        (
            Verdict::Fail,
            format!(
                "a v1 or CRM-API host under a v2 setting: {what} answered 404, {found}; point broker_api_url at the v2 host, or set broker_api_generation"
            ),
        )
    }

    /// v1 and the CRM-API: `/service-info`, or for the CRM-API `offers` when it is 404.
    fn v1_key(&self, service_info: &Read, offers: Option<&Read>, v2_page: &Read) -> (Verdict, String) {
        let generation = self.generation.name();
        let info = &service_info.what;
        if service_info.answered_as_api(false) {
            return (
                Verdict::Pass,
                format!("{generation}: {info} answered 2xx, a read that needs the key: key accepted"),
            );
        }
        if let Some(offers) = offers {
            let what = &offers.what;
            if offers.answered_as_api(false) {
                return (
                    Verdict::Pass,
                    format!(
                        "{generation}: {info} does not exist here (404), as the CRM-API's pages say; {what}, its connection test, answered 2xx: key accepted"
                    ),
                );
            }
            if offers.status() == Some(404) {
                return (Verdict::Fail, format!("neither {info} nor {what} exists here (404): check broker_api_url"));
            }
            return self.refused(offers, "the key");
        }
        if service_info.status() == Some(404) {
            let page = &v2_page.what;
            return match v2_page.status() {
                _ if v2_page.answered_as_api(true) => (
                    Verdict::Inconclusive,
                    format!(
                        "not proven for {generation}: {info} does not exist here (404), {page} answers: the key is a v2 key"
                    ),
                ),
                _ => (
                    Verdict::Fail,
                    format!(
                        "{info} does not exist here (404): the key cannot be proven; check broker_api_url and paths.service_info"
                    ),
                ),
            };
        }
        self.refused(service_info, "the key")
    }

    fn v1_generation(&self, key_read: &Read, v2_page: &Read) -> (Verdict, String) {
        let generation = self.generation.name();
        let (what, page) = (&key_read.what, &v2_page.what);
        if v2_page.answered_as_api(true) {
            return (
                Verdict::Fail,
                format!(
                    "a Broker-API v2 host under a {generation} setting: {page} answered a page; set broker_api_generation = \"v2\" with a v2 key"
                ),
            );
        }
        if !key_read.answered_as_api(false) {
            return match v2_page.status() {
                Some(401) if key_read.status() == Some(404) => (
                    Verdict::Fail,
                    format!(
                        "likely a Broker-API v2 host under a {generation} setting: {what} is 404, {page} exists (401)"
                    ),
                ),
                _ => (Verdict::Inconclusive, format!("not proven: {what} did not answer (see broker-api)")),
            };
        }
        match v2_page.status() {
            Some(404) => (
                Verdict::Pass,
                format!(
                    "{what} answers and v2's {page} is 404: a v1 or CRM-API host (they share their read paths, so which of the two rests on the setting)"
                ),
            ),
            Some(status) => (
                Verdict::Inconclusive,
                format!("{what} answers, {page} answered {status}: v1 and v2 are not told apart here"),
            ),
            None => (
                Verdict::Inconclusive,
                format!("{what} answers, {page} got no answer: v1 and v2 are not told apart here"),
            ),
        }
    }

    fn lookup(&self, lookup: &Read) -> (Verdict, String) {
        let what = &lookup.what;
        let Ok(answer) = &lookup.answer else { return self.refused(lookup, "the lookup") };
        let title = answer.problem_title.as_deref().unwrap_or("no title");
        match answer.status {
            404 if answer.is_problem => (
                Verdict::Pass,
                format!(
                    "{what} answered 404 with a problem body, which CreateAccount reads as \"no account\" (by itself this proves neither key nor generation)"
                ),
            ),
            404 => (
                Verdict::Fail,
                format!(
                    "{what} answered 404 without a problem body: the lookup path does not exist here; check paths.account_by_email"
                ),
            ),
            400 | 422 => (
                Verdict::Inconclusive,
                format!(
                    "{what} answered {} (\"{title}\"): this host dislikes the made-up address; a lookup of a real one is not proven",
                    answer.status
                ),
            ),
            200..=299 => (Verdict::Pass, format!("{what} answered {}: the lookup path answers", answer.status)),
            _ => self.refused(lookup, "the lookup"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(what: &str, status: u16, json: Option<serde_json::Value>) -> Read {
        let answer = ProbeAnswer { status, bot_challenge: None, json, problem_title: None, is_problem: false };
        Read { what: format!("GET {what}"), answer: Ok(answer) }
    }

    fn judge(generation: Generation) -> Judge<'static> {
        Judge { host: "broker.example".into(), user_agent: "mtr-sso/1", generation }
    }

    #[test]
    fn a_v2_host_under_a_v1_setting_is_named_as_such() {
        let page = read("/v1/user-accounts", 200, Some(serde_json::json!({"content": []})));
        let info = read("/service-info", 404, None);
        let (verdict, detail) = judge(Generation::V1).v1_generation(&info, &page);
        assert_eq!(verdict, Verdict::Fail);
        assert!(detail.contains("a Broker-API v2 host under a v1 setting"), "{detail}");
        let (verdict, detail) = judge(Generation::V1).v1_key(&info, None, &page);
        assert_eq!(verdict, Verdict::Inconclusive, "{detail}");
    }

    #[test]
    fn a_2xx_that_is_not_the_apis_json_proves_nothing() {
        let html = read("/v1/user-accounts", 200, None);
        let info = read("/service-info", 404, None);
        let (verdict, detail) = judge(Generation::V2).v2_key(&html, &info);
        assert_eq!(verdict, Verdict::Fail);
        assert!(detail.contains("not with the API's JSON"), "{detail}");
        let not_a_page = read("/v1/user-accounts", 200, Some(serde_json::json!({"uuid": "u"})));
        assert_eq!(judge(Generation::V2).v2_generation(&not_a_page, &info).0, Verdict::Inconclusive);
    }

    #[test]
    fn rate_limits_are_inconclusive_and_server_errors_fail() {
        let info = read("/v1/user-accounts", 404, None);
        let limited = read("/v1/user-accounts", 429, None);
        assert_eq!(judge(Generation::V2).v2_key(&limited, &info).0, Verdict::Inconclusive);
        let failed = read("/v1/user-accounts", 503, None);
        let (verdict, detail) = judge(Generation::V2).v2_key(&failed, &info);
        assert_eq!(verdict, Verdict::Fail);
        assert!(detail.contains("503"), "{detail}");
    }

    #[test]
    fn a_lookup_404_without_a_problem_body_is_a_missing_path() {
        let (verdict, detail) = judge(Generation::V2).lookup(&read("/v1/user-accounts/email/x", 404, None));
        assert_eq!(verdict, Verdict::Fail);
        assert!(detail.contains("paths.account_by_email"), "{detail}");
    }
}
