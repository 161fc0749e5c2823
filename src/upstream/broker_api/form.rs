//! The account form of `POST /v1/accounts` (v1 and the CRM-API): the
//! validated account and its sections as the vendor names them, and the wire
//! body that borrows them.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// A validated account to create: the body of `POST /v1/accounts`.
/// Every optional field is `None` rather than empty, so the body never carries
/// an empty string or a null (the vendor refuses both).
#[derive(Debug)]
pub struct NewAccount {
    pub email: String,
    pub password: SecretString,
    pub offer_uuid: Option<String>,
    pub client_type: Option<&'static str>,
    pub create_as_deposited_account: Option<bool>,
    pub personal_details: PersonalDetails,
    pub contact_details: Option<ContactDetails>,
    pub account_configuration: Option<AccountConfiguration>,
    pub address_details: Option<AddressDetails>,
    pub banking_details: Option<BankingDetails>,
    pub lead_details: Option<LeadDetails>,
}

/// `personalDetails`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonalDetails {
    pub firstname: String,
    pub lastname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub citizenship: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marital_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passport: Option<Passport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax_identification_number: Option<String>,
}

/// `personalDetails.passport`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Passport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// `contactDetails`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fax_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_contact: Option<ToContact>,
}

/// `contactDetails.toContact`: `alreadyContacted` is required whenever it is sent.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToContact {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_contact_date: Option<String>,
    pub already_contacted: bool,
}

/// `accountConfiguration`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_manager_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ib_parent_trading_account_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm_user_scope: Option<CrmUserScope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_type_contact: Option<bool>,
}

/// `accountConfiguration.crmUserScope`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmUserScope {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub branch_scope: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub manager_pools: Vec<String>,
}

/// `addressDetails`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `bankingDetails`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BankingDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_swift_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
}

/// `leadDetails`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub become_active_client_time: Option<String>,
}

/// The wire body; borrows the account so the password is exposed only here.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateAccountBody<'a> {
    email: &'a str,
    password: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    offer_uuid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_as_deposited_account: Option<bool>,
    personal_details: &'a PersonalDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_details: Option<&'a ContactDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_configuration: Option<&'a AccountConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address_details: Option<&'a AddressDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    banking_details: Option<&'a BankingDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lead_details: Option<&'a LeadDetails>,
}

impl NewAccount {
    /// The wire body of this account.
    pub(super) fn wire_body(&self) -> CreateAccountBody<'_> {
        CreateAccountBody {
            email: &self.email,
            password: self.password.expose_secret(),
            offer_uuid: self.offer_uuid.as_deref(),
            client_type: self.client_type,
            create_as_deposited_account: self.create_as_deposited_account,
            personal_details: &self.personal_details,
            contact_details: self.contact_details.as_ref(),
            account_configuration: self.account_configuration.as_ref(),
            address_details: self.address_details.as_ref(),
            banking_details: self.banking_details.as_ref(),
            lead_details: self.lead_details.as_ref(),
        }
    }
}
