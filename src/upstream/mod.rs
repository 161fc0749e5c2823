//! The vendor's two HTTP APIs: one shared HTTP client, one client struct per
//! API with one method per endpoint, each call admitted by its tenant API's
//! gate, and one error type that says what went wrong upstream in terms the
//! gRPC layer can map. [`Upstreams::start`] builds every tenant's clients
//! (starting the sandbox first with `--sandbox`); [`Tenants`] looks them up.

pub(crate) mod authorization;
pub(crate) mod broker_api;
pub(crate) mod classify;
pub(crate) mod cookies;
pub(crate) mod error;
pub(crate) mod exchange;
pub(crate) mod gate;
pub mod http_client;
pub(crate) mod json;
pub(crate) mod outgoing;
pub(crate) mod platform_api;
pub mod probe;
pub mod resilience;
pub mod start;
pub mod tenants;

pub use crate::config::Proxies;
pub use broker_api::{
    BrokerApi, CreatedAccount, FoundAccount, IssuedToken, Lookup,
    form::NewAccount,
    v2::{
        AccountDetails, ListedTradingAccount, NewTradingAccount, OpenedTradingAccount, TradingAccountList,
        V2AddressDetails,
    },
};
pub use cookies::{SameSitePolicy, UpstreamCookie};
pub use error::{Endpoint, UpstreamError, UpstreamFault};
pub use gate::GateContext;
pub use http_client::{HttpClient, HttpClientError, install_crypto_provider};
pub use outgoing::Outgoing;
pub use platform_api::{PlatformApi, PlatformDetails, PlatformSession, TradingAccountInfo};
pub use start::Upstreams;
pub use tenants::{Tenant, Tenants};

/// The sections of the Broker-API create-account form.
pub use broker_api::form as broker_api_form;
