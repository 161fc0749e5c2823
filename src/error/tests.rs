//! Tests of the error contract: codes, reasons, the ErrorInfo metadata keys
//! and the documents that list them.

use super::*;
use crate::upstream::Endpoint;

#[test]
fn status_carries_reason_metadata_and_retry_info() {
    let error = SsoError::Upstream {
        tenant: "default".into(),
        error: UpstreamError {
            endpoint: Endpoint::Login,
            status: Some(429),
            fault: UpstreamFault::RateLimited { retry_after: Some(std::time::Duration::from_secs(3)) },
        },
    };
    let status = Status::from(error);
    assert_eq!(status.code(), Code::ResourceExhausted);
    let details = status.get_error_details();
    let info = details.error_info().expect("error info");
    assert_eq!(info.reason, "UPSTREAM_RATE_LIMITED");
    assert_eq!(info.domain, "mtr-sso");
    assert_eq!(info.metadata.get("upstreamStatus").map(String::as_str), Some("429"));
    assert_eq!(info.metadata.get("upstreamReason").map(String::as_str), Some("UPSTREAM_RATE_LIMITED"));
    assert_eq!(info.metadata.get("tenant").map(String::as_str), Some("default"));
    assert_eq!(info.metadata.get("endpoint").map(String::as_str), Some("login"));
    let retry = details.retry_info().expect("retry info");
    assert_eq!(retry.retry_delay, Some(std::time::Duration::from_secs(3)));
}

#[test]
fn invalid_argument_lists_every_violation() {
    let status = Status::from(SsoError::InvalidArgument {
        reason: InvalidReason::InvalidRequest,
        violations: vec![Violation::new("email", "is required"), Violation::new("password", "is required")],
    });
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad = status.get_details_bad_request().expect("bad request");
    assert_eq!(bad.field_violations.len(), 2);
}

fn metadata_of(error: SsoError) -> HashMap<String, String> {
    let status = Status::from(error);
    let details = status.get_error_details();
    let info = details.error_info().expect("error info");
    assert_eq!(info.domain, ERROR_DOMAIN);
    info.metadata.clone()
}

#[test]
fn every_metadata_key_sent_is_listed_and_lower_camel_case() {
    let failed_create =
        || UpstreamError { endpoint: Endpoint::CreateAccount, status: None, fault: UpstreamFault::Timeout };
    let failed_login =
        UpstreamError { endpoint: Endpoint::Login, status: Some(401), fault: UpstreamFault::CredentialsRejected };
    let mut sent = std::collections::BTreeSet::new();
    for error in [
        SsoError::Upstream { tenant: "acme".into(), error: failed_login },
        SsoError::AccountCreationOutcomeUnknown {
            tenant: "acme".into(),
            error: failed_create(),
            lookup: CreationLookup::NoTime,
        },
        SsoError::CallerNotPermitted { caller: "crm".into() },
    ] {
        sent.extend(metadata_of(error).into_keys());
    }
    let listed: std::collections::BTreeSet<String> = metadata_key::ALL.iter().map(|k| k.to_string()).collect();
    assert_eq!(sent, listed, "the list matches what is sent");
    for key in metadata_key::ALL {
        let mut chars = key.chars();
        let lower_camel =
            chars.next().is_some_and(|c| c.is_ascii_lowercase()) && chars.all(|c| c.is_ascii_alphanumeric());
        assert!(lower_camel && key.len() <= 64, "`{key}` is not lowerCamelCase");
    }
}

#[test]
fn outcome_unknown_keeps_the_upstream_cause_in_its_metadata() {
    let error =
        UpstreamError { endpoint: Endpoint::CreateAccount, status: Some(503), fault: UpstreamFault::ServerError };
    let metadata = metadata_of(SsoError::AccountCreationOutcomeUnknown {
        tenant: "acme".into(),
        error,
        lookup: CreationLookup::NotFound,
    });
    assert_eq!(metadata.get("upstreamReason").map(String::as_str), Some("UPSTREAM_UNAVAILABLE"));
    assert_eq!(metadata.get("lookup").map(String::as_str), Some("not_found"));
    assert_eq!(metadata.get("upstreamStatus").map(String::as_str), Some("503"));
    assert_eq!(metadata.get("endpoint").map(String::as_str), Some("create_account"));
    assert_eq!(metadata.get("tenant").map(String::as_str), Some("acme"));
}

/// `upstreamStatus` as `upstream_status`: the spelling a stale document would use.
fn snake_case(key: &str) -> String {
    key.chars().flat_map(|c| if c.is_ascii_uppercase() { vec!['_', c.to_ascii_lowercase()] } else { vec![c] }).collect()
}

#[test]
fn the_proto_and_the_docs_state_the_domain_and_keys_that_are_sent() {
    let proto = include_str!("../../proto/matchtrader/sso/v1/sso_service.proto");
    let readme = include_str!("../../README.md");
    let callers = include_str!("../../docs/callers.md");
    let contract = proto.split("syntax =").next().expect("header comment");
    assert!(contract.contains(&format!("domain `{ERROR_DOMAIN}`")), "the proto header names the domain");
    assert!(readme.contains(&format!("domain `{ERROR_DOMAIN}`")), "the README names the domain");
    let named = contract.split("domain `").skip(1).chain(readme.split("domain `").skip(1));
    let shown = readme.split("\"domain\":\"").skip(1);
    for rest in named.map(|rest| rest.split('`').next()).chain(shown.map(|rest| rest.split('"').next())) {
        assert_eq!(rest, Some(ERROR_DOMAIN), "every domain the proto and README state is the one sent");
    }
    for key in metadata_key::ALL {
        assert!(contract.contains(&format!("`{key}`")), "the proto header lists `{key}`");
        let stale = snake_case(key);
        if stale != key {
            for (name, text) in [("proto", proto), ("README", readme), ("docs/callers.md", callers)] {
                assert!(!text.contains(&stale), "{name} still spells `{key}` as `{stale}`");
            }
        }
    }
}

#[test]
fn every_lookup_value_sent_is_listed_in_the_proto_the_readme_and_the_callers_guide() {
    let proto = include_str!("../../proto/matchtrader/sso/v1/sso_service.proto");
    let contract = proto.split("syntax =").next().expect("header comment");
    let readme = include_str!("../../README.md");
    let callers = include_str!("../../docs/callers.md");
    for lookup in CreationLookup::ALL {
        let value = format!("`{}`", lookup.name());
        for (name, text) in [("the proto header", contract), ("README", readme), ("docs/callers.md", callers)] {
            assert!(text.contains(&value), "{name} lists the lookup value {value}");
        }
    }
}
