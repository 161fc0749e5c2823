//! What the edge (`src/convert`, and pbjson's parser on the JSON side)
//! accepts in each request field, written as JSON Schema keywords for the
//! OpenAPI document: a schema-valid request passes the edge, and a request
//! the schema refuses is refused there, before any vendor call.
//!
//! The rules live in a table keyed by `Message.field` rather than in a custom
//! field option: an option would need its own proto package and extension
//! number, and would copy the code's numbers into the proto, where nothing
//! checks them. Here the numbers come from `src/convert/limits.rs` itself
//! (the build includes that file), the build refuses a request field without
//! a rule, and `src/json_api/contract_tests.rs` holds each pattern to the
//! code's own checks.

use serde_json::{Value as Json, json};

use crate::limits::{
    DEFAULT_MAX_ONE_TIME_TOKEN_VALIDITY_SECS, MAX_DNS_LABEL_CHARS, MAX_EMAIL_CHARS, MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_SECRET_CHARS, MAX_TEXT_CHARS,
};

/// What the edge checks in one field.
#[derive(Clone, Copy)]
pub enum Rule {
    /// Any string; checked against the deployment (the tenant names), which
    /// the document cannot know.
    Deployment,
    /// `convert::is_plausible_email`.
    Email,
    /// A password: non-empty, bounded.
    Secret,
    /// A refresh token: non-empty, bounded, RFC 6265 cookie-octets.
    RefreshToken,
    /// Free text that must be given: not blank, bounded, no control characters.
    RequiredText,
    /// Free text; empty means absent.
    Text,
    /// A hyphenated UUID; empty means absent.
    Uuid,
    /// A calendar date as `YYYY-MM-DD`, not in the future; empty means absent.
    Date,
    /// Printable ASCII without spaces, bounded; empty means absent.
    IdempotencyKey,
    /// Whole seconds from 1 to the tenant's maximum.
    Validity,
    /// Each entry of a list is not blank.
    NonBlankItems,
}

/// Every string (and `Duration`) field of every request message.
const FIELD_RULES: &[(&str, Rule)] = &[
    ("CreateAccountRequest.tenant", Rule::Deployment),
    ("CreateAccountRequest.email", Rule::Email),
    ("CreateAccountRequest.password", Rule::Secret),
    ("CreateAccountRequest.offer_uuid", Rule::Uuid),
    ("CreateAccountRequest.idempotency_key", Rule::IdempotencyKey),
    ("TradingAccountSettings.group", Rule::Text),
    ("PersonalDetails.firstname", Rule::RequiredText),
    ("PersonalDetails.lastname", Rule::RequiredText),
    ("PersonalDetails.date_of_birth", Rule::Date),
    ("PersonalDetails.citizenship", Rule::Text),
    ("PersonalDetails.language", Rule::Text),
    ("PersonalDetails.marital_status", Rule::Text),
    ("PersonalDetails.tax_identification_number", Rule::Text),
    ("Passport.number", Rule::Text),
    ("Passport.country", Rule::Text),
    ("ContactDetails.phone_number", Rule::Text),
    ("ContactDetails.fax_number", Rule::Text),
    ("AccountConfiguration.branch_uuid", Rule::Uuid),
    ("AccountConfiguration.role_uuid", Rule::Uuid),
    ("AccountConfiguration.account_manager_uuid", Rule::Uuid),
    ("AccountConfiguration.ib_parent_trading_account_uuid", Rule::Uuid),
    ("CrmUserScope.branch_scope", Rule::NonBlankItems),
    ("CrmUserScope.manager_pools", Rule::NonBlankItems),
    ("AddressDetails.country", Rule::Text),
    ("AddressDetails.state", Rule::Text),
    ("AddressDetails.city", Rule::Text),
    ("AddressDetails.post_code", Rule::Text),
    ("AddressDetails.address", Rule::Text),
    ("BankingDetails.bank_address", Rule::Text),
    ("BankingDetails.bank_swift_code", Rule::Text),
    ("BankingDetails.bank_account", Rule::Text),
    ("BankingDetails.bank_name", Rule::Text),
    ("BankingDetails.account_name", Rule::Text),
    ("LeadDetails.status_uuid", Rule::Uuid),
    ("LeadDetails.source", Rule::Text),
    ("LeadDetails.provider_uuid", Rule::Uuid),
    ("IssueOneTimeTokenRequest.tenant", Rule::Deployment),
    ("IssueOneTimeTokenRequest.email", Rule::Email),
    ("IssueOneTimeTokenRequest.validity", Rule::Validity),
    ("LoginRequest.tenant", Rule::Deployment),
    ("LoginRequest.email", Rule::Email),
    ("LoginRequest.password", Rule::Secret),
    ("LoginRequest.broker_id", Rule::Text),
    ("RefreshRequest.tenant", Rule::Deployment),
    ("RefreshRequest.refresh_token", Rule::RefreshToken),
];

/// The rule of `message.field`, if the table has one.
pub fn rule_for(message: &str, field: &str) -> Option<Rule> {
    FIELD_RULES.iter().find(|(path, _)| path.split_once('.') == Some((message, field))).map(|(_, rule)| *rule)
}

/// Rust's `char::is_control` (Unicode Cc), as a class body.
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";
/// Rust's `char::is_whitespace` (Unicode White_Space) less the control
/// characters among it, as a class body. Spelled out because `\s` differs
/// between ECMA 262, Python and Rust.
const SPACE: &str = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// RFC 5322's `atext`: what a dot-atom's atoms are made of.
const ATEXT: &str = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]";

/// The schema keywords of `rule`, on top of the field's type.
pub fn keywords(rule: Rule) -> Json {
    let text = format!("[^{CONTROL}]*[^{CONTROL}\\t-\\r\\x85{SPACE}][^{CONTROL}]*");
    let uuid = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}";
    match rule {
        Rule::Deployment => json!({}),
        Rule::Email => {
            // A dot-atom on the left, two or more DNS labels on the right.
            // The local part's 64 characters would need a lookahead, which
            // not every regex engine has; `format: email` carries that bound.
            let inner = MAX_DNS_LABEL_CHARS - 2;
            let label = format!("[A-Za-z0-9](?:[A-Za-z0-9-]{{0,{inner}}}[A-Za-z0-9])?");
            json!({
                "format": "email",
                "maxLength": MAX_EMAIL_CHARS,
                "pattern": format!("^{ATEXT}+(?:\\.{ATEXT}+)*@{label}(?:\\.{label})+$"),
            })
        }
        Rule::Secret => json!({ "minLength": 1, "maxLength": MAX_SECRET_CHARS }),
        Rule::RefreshToken => json!({
            "minLength": 1,
            "maxLength": MAX_SECRET_CHARS,
            "pattern": r"^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$",
            // The session's access token (a JWT) is refused at the edge: the
            // common mix-up of the two tokens of a Login answer.
            "not": { "pattern": r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$" },
        }),
        Rule::RequiredText => json!({ "maxLength": MAX_TEXT_CHARS, "pattern": format!("^{text}$") }),
        Rule::Text => json!({ "maxLength": MAX_TEXT_CHARS, "pattern": format!("^(?:{text})?$") }),
        Rule::Uuid => json!({ "pattern": format!("^(?:{uuid})?$") }),
        Rule::Date => json!({ "pattern": format!("^(?:{})?$", calendar_date()) }),
        Rule::IdempotencyKey => json!({ "maxLength": MAX_IDEMPOTENCY_KEY_CHARS, "pattern": "^[!-~]*$" }),
        Rule::Validity => json!({
            // What the JSON side reads as whole seconds: leading zeros, and
            // a fraction of zeros only (no sign).
            "pattern": format!(
                "^0*(?:{})(?:\\.0{{1,9}})?s$",
                decimal_up_to(DEFAULT_MAX_ONE_TIME_TOKEN_VALIDITY_SECS.into(), false)
            ),
        }),
        // `trim` strips White_Space, some of which are control characters.
        Rule::NonBlankItems => json!({ "pattern": format!("[^\\t-\\r\\x85{SPACE}]") }),
    }
}

/// A date of the proleptic Gregorian calendar, `YYYY-MM-DD`.
fn calendar_date() -> String {
    let leap_year = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)";
    format!(
        "[0-9]{{4}}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)|{leap_year}-02-29"
    )
}

/// A regex alternation for the decimal numbers from 0 (or 1) to `max`,
/// without leading zeros.
pub fn decimal_up_to(max: u128, with_zero: bool) -> String {
    let digits: Vec<u8> = max.to_string().bytes().map(|b| b - b'0').collect();
    let n = digits.len();
    let mut alternatives = Vec::new();
    if with_zero {
        alternatives.push("0".to_string());
    }
    for len in 1..n {
        alternatives.push(if len == 1 { "[1-9]".to_string() } else { format!("[1-9][0-9]{{{}}}", len - 1) });
    }
    for i in 0..n {
        let low = u8::from(i == 0);
        if digits[i] > low {
            let prefix: String = digits[..i].iter().map(|d| char::from(b'0' + d)).collect();
            let rest = n - i - 1;
            let tail = if rest == 0 { String::new() } else { format!("[0-9]{{{rest}}}") };
            alternatives.push(format!("{prefix}[{low}-{}]{tail}", digits[i] - 1));
        }
    }
    if max > 0 {
        alternatives.push(max.to_string());
    }
    alternatives.join("|")
}
