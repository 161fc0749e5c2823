//! The CreateAccount form: every section of the vendor's create-account body,
//! validated field by field. Sections whose fields are all empty are omitted,
//! because the vendor refuses empty strings and nulls.

use super::{account_v2::TradingAccountRequest, checker::Checker, limits::MAX_IDEMPOTENCY_KEY_CHARS};
use crate::{
    error::SsoError,
    proto,
    upstream::{NewAccount, broker_api_form as form},
};

/// A validated CreateAccount.
#[derive(Debug)]
pub struct CreateAccountCommand {
    pub account: NewAccount,
    pub start_session: bool,
    pub idempotency_key: Option<String>,
    /// The trading account asked for (Broker-API v2 only), as given.
    pub trading_account: Option<TradingAccountRequest>,
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
        trading_account,
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
    let trading_account = trading_account.map(|settings| TradingAccountRequest::read(&mut c, settings));
    let idempotency_key = (!idempotency_key.is_empty()).then_some(idempotency_key);
    let printable = |k: &String| k.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if idempotency_key.as_ref().is_some_and(|k| k.len() > MAX_IDEMPOTENCY_KEY_CHARS || !printable(k)) {
        c.violation(
            "idempotency_key",
            format!("must be at most {MAX_IDEMPOTENCY_KEY_CHARS} printable characters without spaces"),
        );
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
        trading_account,
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
