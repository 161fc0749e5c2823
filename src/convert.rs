//! Converts gRPC requests into validated commands at the edge. Every rule is
//! checked before any upstream call, all violations are reported together,
//! and no description ever quotes a value (it may be a secret).

use secrecy::SecretString;
use std::time::Duration;
use time::{Date, OffsetDateTime, format_description::well_known::Rfc3339, macros::format_description};

use crate::{
    error::{InvalidReason, SsoError, Violation},
    proto,
    tenant::TenantSettings,
    upstream::{NewAccount, broker_api_form as form},
};

const MAX_TEXT: usize = 256;
const MAX_SECRET: usize = 4096;

/// A validated CreateAccount.
#[derive(Debug)]
pub struct CreateAccountCommand {
    pub account: NewAccount,
    pub start_session: bool,
    pub idempotency_key: Option<String>,
}

/// A validated IssueOneTimeToken.
#[derive(Debug)]
pub struct IssueOneTimeTokenCommand {
    pub email: String,
    pub validity: Duration,
    pub start_session: bool,
}

/// A validated Login.
#[derive(Debug)]
pub struct LoginCommand {
    pub email: String,
    pub password: SecretString,
    pub broker_id: String,
}

/// A validated Refresh.
#[derive(Debug)]
pub struct RefreshCommand {
    pub refresh_token: SecretString,
}

/// Collects violations while reading a request.
#[derive(Default)]
struct Checker {
    violations: Vec<Violation>,
}

impl Checker {
    fn violation(&mut self, field: &str, description: impl Into<String>) {
        self.violations.push(Violation::new(field, description));
    }

    fn finish<T>(self, value: T) -> Result<T, SsoError> {
        if self.violations.is_empty() {
            Ok(value)
        } else {
            Err(SsoError::InvalidArgument { reason: InvalidReason::InvalidRequest, violations: self.violations })
        }
    }

    fn email(&mut self, field: &str, value: String) -> String {
        if value.is_empty() {
            self.violation(field, "is required");
        } else if !is_plausible_email(&value) {
            self.violation(field, "is not a valid email address");
        }
        value
    }

    fn secret(&mut self, field: &str, value: String) -> SecretString {
        if value.is_empty() {
            self.violation(field, "is required");
        } else if value.len() > MAX_SECRET {
            self.violation(field, format!("is longer than {MAX_SECRET} bytes"));
        }
        SecretString::from(value)
    }

    fn required_text(&mut self, field: &str, value: String) -> String {
        if value.trim().is_empty() {
            self.violation(field, "is required");
        } else {
            self.check_text(field, &value);
        }
        value
    }

    /// Empty means absent: the vendor refuses empty strings.
    fn optional_text(&mut self, field: &str, value: String) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        if value.trim().is_empty() {
            self.violation(field, "is blank; leave it empty to omit it");
            return None;
        }
        self.check_text(field, &value);
        Some(value)
    }

    fn check_text(&mut self, field: &str, value: &str) {
        if value.len() > MAX_TEXT {
            self.violation(field, format!("is longer than {MAX_TEXT} bytes"));
        } else if value.chars().any(char::is_control) {
            self.violation(field, "contains control characters");
        }
    }

    fn optional_uuid(&mut self, field: &str, value: String) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        if uuid::Uuid::parse_str(&value).is_err() {
            self.violation(field, "is not a UUID");
        }
        Some(value)
    }

    fn optional_timestamp(&mut self, field: &str, value: Option<prost_types::Timestamp>) -> Option<String> {
        let value = value?;
        let nanos = u32::try_from(value.nanos).ok().filter(|n| *n < 1_000_000_000);
        let formatted = nanos
            .and_then(|nanos| {
                OffsetDateTime::from_unix_timestamp(value.seconds).ok().map(|t| t.replace_nanosecond(nanos))
            })
            .and_then(Result::ok)
            .and_then(|t| t.format(&Rfc3339).ok());
        if formatted.is_none() {
            self.violation(field, "is not a valid timestamp");
        }
        formatted
    }

    fn optional_date(&mut self, field: &str, value: String) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        match Date::parse(&value, format_description!("[year]-[month]-[day]")) {
            Ok(date) if date > OffsetDateTime::now_utc().date() => self.violation(field, "is in the future"),
            Ok(_) => {}
            Err(_) => self.violation(field, "must be a date as YYYY-MM-DD"),
        }
        Some(value)
    }
}

/// A pragmatic check: one `@`, a non-empty local part, a dotted domain, no
/// spaces. The vendor has the final word; this only stops obvious mistakes
/// before they cost an upstream call.
pub fn is_plausible_email(email: &str) -> bool {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = email.rsplit_once('@') else { return false };
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    !local.is_empty() && local.len() <= 64 && !local.contains('@') && domain.contains('.') && labels_ok
}

/// RFC 6265 cookie-octets: what may be sent inside `Cookie: rt=…` without
/// breaking (or injecting into) the header.
fn is_cookie_value(value: &str) -> bool {
    value.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

fn client_type(checker: &mut Checker, value: i32) -> Option<&'static str> {
    match proto::ClientType::try_from(value) {
        Ok(proto::ClientType::Unspecified) => None,
        Ok(proto::ClientType::Retail) => Some("RETAIL"),
        Ok(proto::ClientType::Professional) => Some("PROFESSIONAL"),
        Ok(proto::ClientType::Experienced) => Some("EXPERIENCED"),
        Err(_) => {
            checker.violation("client_type", "is not a known client type");
            None
        }
    }
}

/// Validates CreateAccount. Sections whose fields are all empty are omitted.
pub fn create_account(request: proto::CreateAccountRequest) -> Result<CreateAccountCommand, SsoError> {
    // Named in full so that a new proto field does not compile until handled here.
    let proto::CreateAccountRequest {
        tenant: _,
        email,
        password,
        offer_uuid,
        client_type: client_type_value,
        create_as_deposited_account,
        personal_details,
        contact_details,
        account_configuration,
        address_details,
        banking_details,
        lead_details,
        start_session,
        idempotency_key,
    } = request;
    let mut c = Checker::default();
    let email = c.email("email", email);
    let password = c.secret("password", password);
    let offer_uuid = c.optional_uuid("offer_uuid", offer_uuid);
    let client_type = client_type(&mut c, client_type_value);
    let personal_details = match personal_details {
        Some(details) => personal(&mut c, details),
        None => {
            c.violation("personal_details", "is required (with firstname and lastname)");
            form::PersonalDetails::default()
        }
    };
    let contact_details = contact_details.and_then(|d| contact(&mut c, d));
    let account_configuration = account_configuration.and_then(|d| configuration(&mut c, d));
    let address_details = address_details.and_then(|d| address(&mut c, d));
    let banking_details = banking_details.and_then(|d| banking(&mut c, d));
    let lead_details = lead_details.and_then(|d| lead(&mut c, d));
    let idempotency_key = (!idempotency_key.is_empty()).then_some(idempotency_key);
    if idempotency_key.as_ref().is_some_and(|k| k.len() > 128 || !k.bytes().all(|b| (0x21..=0x7e).contains(&b))) {
        c.violation("idempotency_key", "must be at most 128 printable characters without spaces");
    }
    c.finish(CreateAccountCommand {
        account: NewAccount {
            email,
            password,
            offer_uuid,
            client_type,
            create_as_deposited_account,
            personal_details,
            contact_details,
            account_configuration,
            address_details,
            banking_details,
            lead_details,
        },
        start_session,
        idempotency_key,
    })
}

fn personal(c: &mut Checker, details: proto::PersonalDetails) -> form::PersonalDetails {
    let proto::PersonalDetails {
        firstname,
        lastname,
        date_of_birth,
        citizenship,
        language,
        marital_status,
        passport,
        tax_identification_number,
    } = details;
    let passport = passport.and_then(|proto::Passport { number, country }| {
        let passport = form::Passport {
            number: c.optional_text("personal_details.passport.number", number),
            country: c.optional_text("personal_details.passport.country", country),
        };
        (passport.number.is_some() || passport.country.is_some()).then_some(passport)
    });
    form::PersonalDetails {
        firstname: c.required_text("personal_details.firstname", firstname),
        lastname: c.required_text("personal_details.lastname", lastname),
        date_of_birth: c.optional_date("personal_details.date_of_birth", date_of_birth),
        citizenship: c.optional_text("personal_details.citizenship", citizenship),
        language: c.optional_text("personal_details.language", language),
        marital_status: c.optional_text("personal_details.marital_status", marital_status),
        passport,
        tax_identification_number: c
            .optional_text("personal_details.tax_identification_number", tax_identification_number),
    }
}

fn contact(c: &mut Checker, details: proto::ContactDetails) -> Option<form::ContactDetails> {
    let proto::ContactDetails { phone_number, fax_number, to_contact } = details;
    let to_contact = to_contact.map(|proto::ToContact { to_contact_date, already_contacted }| form::ToContact {
        to_contact_date: c.optional_timestamp("contact_details.to_contact.to_contact_date", to_contact_date),
        already_contacted,
    });
    let details = form::ContactDetails {
        phone_number: c.optional_text("contact_details.phone_number", phone_number),
        fax_number: c.optional_text("contact_details.fax_number", fax_number),
        to_contact,
    };
    (details.phone_number.is_some() || details.fax_number.is_some() || details.to_contact.is_some()).then_some(details)
}

fn configuration(c: &mut Checker, details: proto::AccountConfiguration) -> Option<form::AccountConfiguration> {
    let proto::AccountConfiguration {
        partner_id,
        branch_uuid,
        role_uuid,
        account_manager_uuid,
        ib_parent_trading_account_uuid,
        crm_user_scope,
        account_type_contact,
    } = details;
    let crm_user_scope = crm_user_scope.and_then(|proto::CrmUserScope { branch_scope, manager_pools }| {
        let field = "account_configuration.crm_user_scope";
        if branch_scope.iter().chain(&manager_pools).any(|entry| entry.trim().is_empty()) {
            c.violation(field, "contains an empty entry");
        }
        (!branch_scope.is_empty() || !manager_pools.is_empty())
            .then_some(form::CrmUserScope { branch_scope, manager_pools })
    });
    let details = form::AccountConfiguration {
        partner_id,
        branch_uuid: c.optional_uuid("account_configuration.branch_uuid", branch_uuid),
        role_uuid: c.optional_uuid("account_configuration.role_uuid", role_uuid),
        account_manager_uuid: c.optional_uuid("account_configuration.account_manager_uuid", account_manager_uuid),
        ib_parent_trading_account_uuid: c
            .optional_uuid("account_configuration.ib_parent_trading_account_uuid", ib_parent_trading_account_uuid),
        crm_user_scope,
        account_type_contact,
    };
    let any = details.partner_id.is_some()
        || details.branch_uuid.is_some()
        || details.role_uuid.is_some()
        || details.account_manager_uuid.is_some()
        || details.ib_parent_trading_account_uuid.is_some()
        || details.crm_user_scope.is_some()
        || details.account_type_contact.is_some();
    any.then_some(details)
}

fn address(c: &mut Checker, details: proto::AddressDetails) -> Option<form::AddressDetails> {
    let proto::AddressDetails { country, state, city, post_code, address } = details;
    let details = form::AddressDetails {
        country: c.optional_text("address_details.country", country),
        state: c.optional_text("address_details.state", state),
        city: c.optional_text("address_details.city", city),
        post_code: c.optional_text("address_details.post_code", post_code),
        address: c.optional_text("address_details.address", address),
    };
    let any = [&details.country, &details.state, &details.city, &details.post_code, &details.address]
        .iter()
        .any(|f| f.is_some());
    any.then_some(details)
}

fn banking(c: &mut Checker, details: proto::BankingDetails) -> Option<form::BankingDetails> {
    let proto::BankingDetails { bank_address, bank_swift_code, bank_account, bank_name, account_name } = details;
    let details = form::BankingDetails {
        bank_address: c.optional_text("banking_details.bank_address", bank_address),
        bank_swift_code: c.optional_text("banking_details.bank_swift_code", bank_swift_code),
        bank_account: c.optional_text("banking_details.bank_account", bank_account),
        bank_name: c.optional_text("banking_details.bank_name", bank_name),
        account_name: c.optional_text("banking_details.account_name", account_name),
    };
    let any = [
        &details.bank_address,
        &details.bank_swift_code,
        &details.bank_account,
        &details.bank_name,
        &details.account_name,
    ]
    .iter()
    .any(|f| f.is_some());
    any.then_some(details)
}

fn lead(c: &mut Checker, details: proto::LeadDetails) -> Option<form::LeadDetails> {
    let proto::LeadDetails { status_uuid, source, provider_uuid, become_active_client_time } = details;
    let details = form::LeadDetails {
        status_uuid: c.optional_uuid("lead_details.status_uuid", status_uuid),
        source: c.optional_text("lead_details.source", source),
        provider_uuid: c.optional_uuid("lead_details.provider_uuid", provider_uuid),
        become_active_client_time: c
            .optional_timestamp("lead_details.become_active_client_time", become_active_client_time),
    };
    let any = details.status_uuid.is_some()
        || details.source.is_some()
        || details.provider_uuid.is_some()
        || details.become_active_client_time.is_some();
    any.then_some(details)
}

/// Validates IssueOneTimeToken against the tenant's validity bounds.
pub fn issue_one_time_token(
    request: proto::IssueOneTimeTokenRequest,
    tenant: &TenantSettings,
) -> Result<IssueOneTimeTokenCommand, SsoError> {
    let proto::IssueOneTimeTokenRequest { tenant: _, email, validity, start_session } = request;
    let mut c = Checker::default();
    let email = c.email("email", email);
    let max = tenant.one_time_token_max_validity;
    let validity = match validity {
        None => tenant.one_time_token_validity,
        Some(prost_types::Duration { seconds, nanos }) => {
            if nanos != 0 {
                c.violation("validity", "must be a whole number of seconds");
            }
            if seconds < 1 || seconds as u64 > max.as_secs() {
                c.violation("validity", format!("must be between 1s and {}s", max.as_secs()));
            }
            Duration::from_secs(seconds.max(0) as u64)
        }
    };
    c.finish(IssueOneTimeTokenCommand { email, validity, start_session })
}

/// Validates Login; an empty broker id falls back to the tenant's.
pub fn login(request: proto::LoginRequest, tenant: &TenantSettings) -> Result<LoginCommand, SsoError> {
    let proto::LoginRequest { tenant: _, email, password, broker_id } = request;
    let mut c = Checker::default();
    let email = c.email("email", email);
    let password = c.secret("password", password);
    let broker_id = match (broker_id.is_empty(), &tenant.broker_id) {
        (false, _) => c.required_text("broker_id", broker_id),
        (true, Some(default)) => default.clone(),
        (true, None) => {
            c.violation("broker_id", "is required: this tenant has no default broker id");
            String::new()
        }
    };
    c.finish(LoginCommand { email, password, broker_id })
}

/// Validates Refresh.
pub fn refresh(request: proto::RefreshRequest) -> Result<RefreshCommand, SsoError> {
    let proto::RefreshRequest { tenant: _, refresh_token } = request;
    let mut c = Checker::default();
    if !refresh_token.is_empty() && !is_cookie_value(&refresh_token) {
        c.violation("refresh_token", "contains characters a cookie value cannot hold");
    }
    let refresh_token = c.secret("refresh_token", refresh_token);
    c.finish(RefreshCommand { refresh_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_emails_pass_and_obvious_mistakes_do_not() {
        for ok in ["a@b.co", "first.last+tag@sub.example.com", "test@match-trade.com"] {
            assert!(is_plausible_email(ok), "{ok}");
        }
        for bad in ["", "plain", "@x.com", "a@", "a@b", "a b@c.com", "a@-x.com", "a@x..com", "a@@x.com"] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
    }

    #[test]
    fn cookie_values_reject_separators_that_could_inject_into_the_header() {
        assert!(is_cookie_value("abc.DEF-123_~"));
        for bad in ["a;b", "a b", "a,b", "a\"b", "a\\b", "a\r\nX: y"] {
            assert!(!is_cookie_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn create_account_reports_every_violation_at_once_without_values() {
        let request = proto::CreateAccountRequest {
            email: "not-an-email".into(),
            password: String::new(),
            offer_uuid: "nope".into(),
            personal_details: Some(proto::PersonalDetails {
                firstname: " ".into(),
                date_of_birth: "1990-13-40".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let Err(SsoError::InvalidArgument { violations, .. }) = create_account(request) else {
            panic!("must be invalid")
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "email",
                "password",
                "offer_uuid",
                "personal_details.firstname",
                "personal_details.lastname",
                "personal_details.date_of_birth"
            ]
        );
        assert!(violations.iter().all(|v| !v.description.contains("not-an-email")));
    }

    #[test]
    fn empty_sections_are_left_out_of_the_account() {
        let request = proto::CreateAccountRequest {
            email: "a@b.co".into(),
            password: "pw".into(),
            personal_details: Some(proto::PersonalDetails {
                firstname: "A".into(),
                lastname: "B".into(),
                ..Default::default()
            }),
            address_details: Some(proto::AddressDetails::default()),
            account_configuration: Some(proto::AccountConfiguration {
                crm_user_scope: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let command = create_account(request).expect("valid");
        assert!(command.account.address_details.is_none());
        assert!(command.account.account_configuration.is_none());
    }
}
