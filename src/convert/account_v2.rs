//! What a tenant's Broker-API generation makes of a validated CreateAccount.
//! v1 and the CRM-API take the whole form in one call. Broker-API v2 takes
//! only `{email, password}` for the user, with its own password rule, then a
//! trading account whose settings come from the request or the tenant's
//! default and whose `accountDetails` carry the names (and, for a tenant set
//! to `full`, the date of birth, phone and address). Everything is checked
//! here, before anything is sent.

use super::{CreateAccountCommand, checker::Checker};
use crate::{
    error::{SsoError, Violation},
    proto,
    tenant::{AccessRight, Generation, TenantSettings, TradingAccountType, V2AccountDetails},
    upstream::{AccountDetails, NewTradingAccount, V2AddressDetails},
};

/// The trading account a request asks for; unset fields take the tenant's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TradingAccountRequest {
    pub group: Option<String>,
    pub leverage_ratio_percent: Option<u32>,
    pub account_type: Option<TradingAccountType>,
    pub access_right: Option<AccessRight>,
}

impl TradingAccountRequest {
    pub(super) fn read(c: &mut Checker, settings: proto::TradingAccountSettings) -> Self {
        let proto::TradingAccountSettings { group, leverage_ratio_percent, account_type, access_right } = settings;
        let account_type = match proto::TradingAccountType::try_from(account_type) {
            Ok(proto::TradingAccountType::Unspecified) => None,
            Ok(proto::TradingAccountType::Demo) => Some(TradingAccountType::Demo),
            Ok(proto::TradingAccountType::Real) => Some(TradingAccountType::Real),
            Err(_) => {
                c.violation("trading_account.account_type", "is not a known trading account type");
                None
            }
        };
        let access_right = match proto::AccessRight::try_from(access_right) {
            Ok(proto::AccessRight::Unspecified) => None,
            Ok(proto::AccessRight::Full) => Some(AccessRight::Full),
            Ok(proto::AccessRight::CloseOnly) => Some(AccessRight::CloseOnly),
            Ok(proto::AccessRight::TradingDisabled) => Some(AccessRight::TradingDisabled),
            Ok(proto::AccessRight::TradingAndLoginDisabled) => Some(AccessRight::TradingAndLoginDisabled),
            Ok(proto::AccessRight::LockedCloseOnly) => Some(AccessRight::LockedCloseOnly),
            Err(_) => {
                c.violation("trading_account.access_right", "is not a known access right");
                None
            }
        };
        Self {
            group: c.optional_text("trading_account.group", group),
            leverage_ratio_percent: (leverage_ratio_percent > 0).then_some(leverage_ratio_percent),
            account_type,
            access_right,
        }
    }
}

/// The vendor calls a CreateAccount becomes.
#[derive(Debug)]
pub enum AccountSequence {
    /// v1 and the CRM-API: one call with the whole form, which may bring a token.
    OneCall,
    /// Broker-API v2: user account, then trading account, then a token.
    BrokerApiV2(V2Sequence),
}

/// The v2 sequence's own parts.
#[derive(Debug)]
pub struct V2Sequence {
    /// None when neither the request nor the tenant asks for one.
    pub trading_account: Option<NewTradingAccount>,
    /// The request's sections that v2 has no place for, by field name; the
    /// flow logs them, so they are not dropped silently.
    pub ignored_fields: Vec<&'static str>,
}

/// Checks `command` against the rules of `tenant`'s generation.
pub fn account_sequence(command: &CreateAccountCommand, tenant: &TenantSettings) -> Result<AccountSequence, SsoError> {
    match tenant.generation {
        Generation::V1 | Generation::Crm if command.trading_account.is_some() => Err(SsoError::invalid(
            "trading_account",
            format!(
                "applies only to tenants on Broker-API v2; tenant `{}` is on {}",
                tenant.name,
                tenant.generation.name()
            ),
        )),
        Generation::V1 | Generation::Crm => Ok(AccountSequence::OneCall),
        Generation::V2 => v2_sequence(command, tenant).map(AccountSequence::BrokerApiV2),
    }
}

/// v2's documented rule: 8 or more characters with an upper-case letter, a
/// lower-case letter and a digit.
fn meets_v2_password_rule(password: &str) -> bool {
    password.chars().count() >= 8
        && password.chars().any(char::is_uppercase)
        && password.chars().any(char::is_lowercase)
        && password.chars().any(|c| c.is_ascii_digit())
}

fn v2_sequence(command: &CreateAccountCommand, tenant: &TenantSettings) -> Result<V2Sequence, SsoError> {
    use secrecy::ExposeSecret as _;
    let mut violations = Vec::new();
    if !meets_v2_password_rule(command.account.password.expose_secret()) {
        violations.push(Violation::new(
            "password",
            "Broker-API v2 needs at least 8 characters with an upper-case letter, a lower-case letter and a digit",
        ));
    }
    let default = tenant.trading_account.as_ref();
    let trading_account = match (&command.trading_account, default) {
        (None, None) => None,
        (requested, _) => {
            let requested = requested.clone().unwrap_or_default();
            let group = requested.group.or_else(|| default.map(|d| d.group.clone()));
            let leverage = requested.leverage_ratio_percent.or_else(|| default.map(|d| d.leverage_ratio_percent));
            let account_type = requested.account_type.or_else(|| default.map(|d| d.account_type));
            let access_right = requested.access_right.or_else(|| default.and_then(|d| d.access_right));
            let missing = "is required: this tenant has no default trading account";
            if group.is_none() {
                violations.push(Violation::new("trading_account.group", missing));
            }
            if leverage.is_none() {
                violations.push(Violation::new("trading_account.leverage_ratio_percent", missing));
            }
            if account_type.is_none() {
                violations.push(Violation::new("trading_account.account_type", missing));
            }
            match (group, leverage, account_type) {
                (Some(group), Some(leverage_ratio_percent), Some(account_type)) => Some(NewTradingAccount {
                    group,
                    leverage_ratio_percent,
                    account_type: account_type.wire_name(),
                    access_right: access_right.map(AccessRight::wire_name),
                    account_details: account_details(command, tenant.v2_account_details),
                }),
                _ => None,
            }
        }
    };
    if !violations.is_empty() {
        return Err(SsoError::InvalidArgument { reason: crate::error::InvalidReason::InvalidRequest, violations });
    }
    // Without a trading account there is no `accountDetails` to carry the profile.
    let shape = if trading_account.is_some() { tenant.v2_account_details } else { V2AccountDetails::Names };
    Ok(V2Sequence { trading_account, ignored_fields: ignored_fields(command, shape) })
}

/// `accountDetails` for the tenant's `shape`: the names always; with `full`
/// the date of birth, the phone number and the address (v1's `postCode` as
/// v2's `zipCode`), each only when the request has it.
fn account_details(command: &CreateAccountCommand, shape: V2AccountDetails) -> AccountDetails {
    let account = &command.account;
    let personal = &account.personal_details;
    let names = AccountDetails {
        first_name: personal.firstname.clone(),
        last_name: personal.lastname.clone(),
        ..Default::default()
    };
    if shape == V2AccountDetails::Names {
        return names;
    }
    AccountDetails {
        date_of_birth: personal.date_of_birth.clone(),
        phone_number: account.contact_details.as_ref().and_then(|contact| contact.phone_number.clone()),
        address_details: account.address_details.as_ref().map(|address| {
            Box::new(V2AddressDetails {
                address: address.address.clone(),
                country: address.country.clone(),
                state: address.state.clone(),
                city: address.city.clone(),
                zip_code: address.post_code.clone(),
            })
        }),
        ..names
    }
}

/// The fields of the v1 form that Broker-API v2, with the tenant's `shape`
/// of `accountDetails`, has no place for.
fn ignored_fields(command: &CreateAccountCommand, shape: V2AccountDetails) -> Vec<&'static str> {
    let account = &command.account;
    let personal = &account.personal_details;
    let names_only = shape == V2AccountDetails::Names;
    let contact = account.contact_details.as_ref();
    [
        ("offer_uuid", account.offer_uuid.is_some()),
        ("client_type", account.client_type.is_some()),
        ("create_as_deposited_account", account.create_as_deposited_account.is_some()),
        ("personal_details.date_of_birth", names_only && personal.date_of_birth.is_some()),
        ("personal_details.citizenship", personal.citizenship.is_some()),
        ("personal_details.language", personal.language.is_some()),
        ("personal_details.marital_status", personal.marital_status.is_some()),
        ("personal_details.passport", personal.passport.is_some()),
        ("personal_details.tax_identification_number", personal.tax_identification_number.is_some()),
        ("contact_details", names_only && contact.is_some()),
        ("contact_details.fax_number", !names_only && contact.is_some_and(|c| c.fax_number.is_some())),
        ("contact_details.to_contact", !names_only && contact.is_some_and(|c| c.to_contact.is_some())),
        ("account_configuration", account.account_configuration.is_some()),
        ("address_details", names_only && account.address_details.is_some()),
        ("banking_details", account.banking_details.is_some()),
        ("lead_details", account.lead_details.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, given)| given.then_some(field))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_password_rule_wants_length_both_cases_and_a_digit() {
        assert!(meets_v2_password_rule("Abcdefg1"));
        for weak in ["Abcdef1", "abcdefg1", "ABCDEFG1", "Abcdefgh", ""] {
            assert!(!meets_v2_password_rule(weak), "{weak}");
        }
    }
}
