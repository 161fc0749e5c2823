//! The vendor's two HTTP APIs: one shared HTTP client, one client struct per
//! API with one method per endpoint, each call admitted by its tenant API's
//! gate, and one error type that says what went wrong upstream in terms the
//! gRPC layer can map.

pub(crate) mod authorization;
pub(crate) mod broker_api;
pub(crate) mod broker_api_v2;
pub(crate) mod classify;
pub(crate) mod cookies;
pub(crate) mod error;
pub(crate) mod exchange;
pub(crate) mod gate;
pub mod http_client;
pub(crate) mod json;
pub(crate) mod platform_api;
pub mod probe;
pub mod resilience;
pub(crate) mod trading_accounts_v2;

pub use broker_api::{BrokerApi, CreatedAccount, IssuedToken, NewAccount};
pub use broker_api_v2::{
    AccountDetails, FoundAccount, Lookup, NewTradingAccount, OpenedTradingAccount, V2AddressDetails,
};
pub use cookies::{SameSitePolicy, UpstreamCookie};
pub use error::{Endpoint, UpstreamError, UpstreamFault};
pub use gate::GateContext;
pub use http_client::{HttpClient, HttpClientError, Outgoing, Proxies, install_crypto_provider};
pub use platform_api::{PlatformApi, PlatformDetails, PlatformSession, TradingAccountInfo};
pub use trading_accounts_v2::ListedTradingAccount;

/// The sections of the Broker-API create-account form.
pub mod broker_api_form {
    pub use super::broker_api::{
        AccountConfiguration, AddressDetails, BankingDetails, ContactDetails, CrmUserScope, LeadDetails, Passport,
        PersonalDetails, ToContact,
    };
}
