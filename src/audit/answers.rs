//! What the audit reads from the RPCs' requests (the email, before the flow
//! consumes the request) and answers (the event type, what was handed over,
//! the account), never a token, cookie or password.

use super::event::{EventType, Minted};
use crate::proto;

/// A request that may name the user by email.
pub trait AuditedRequest {
    fn email(&self) -> Option<&str>;
}

impl AuditedRequest for proto::CreateAccountRequest {
    fn email(&self) -> Option<&str> {
        Some(&self.email)
    }
}

impl AuditedRequest for proto::IssueOneTimeTokenRequest {
    fn email(&self) -> Option<&str> {
        Some(&self.email)
    }
}

impl AuditedRequest for proto::LoginRequest {
    fn email(&self) -> Option<&str> {
        Some(&self.email)
    }
}

/// A refresh token names no email: the session it renews is the subject.
impl AuditedRequest for proto::RefreshRequest {
    fn email(&self) -> Option<&str> {
        None
    }
}

/// What an OK answer gave.
pub trait AuditedAnswer {
    fn event_type(&self) -> EventType;
    fn minted(&self) -> Vec<Minted>;
    /// The vendor's uuid of the user's account, where the answer has it.
    fn account_uuid(&self) -> Option<&str> {
        None
    }
}

impl AuditedAnswer for proto::CreateAccountResponse {
    fn event_type(&self) -> EventType {
        EventType::AccountCreated
    }

    fn minted(&self) -> Vec<Minted> {
        [
            (self.account.is_some(), Minted::Account),
            (self.trading_account.is_some(), Minted::TradingAccount),
            (self.login_link.is_some(), Minted::LoginLink),
            (self.session.is_some(), Minted::Session),
        ]
        .into_iter()
        .filter_map(|(given, minted)| given.then_some(minted))
        .collect()
    }

    fn account_uuid(&self) -> Option<&str> {
        self.account.as_ref().map(|account| account.uuid.as_str()).filter(|uuid| !uuid.is_empty())
    }
}

impl AuditedAnswer for proto::IssueOneTimeTokenResponse {
    fn event_type(&self) -> EventType {
        if self.session.is_some() { EventType::SessionCreated } else { EventType::TokenCreated }
    }

    fn minted(&self) -> Vec<Minted> {
        if self.session.is_some() { vec![Minted::Session] } else { vec![Minted::LoginLink] }
    }
}

impl AuditedAnswer for proto::LoginResponse {
    fn event_type(&self) -> EventType {
        EventType::SessionCreated
    }

    fn minted(&self) -> Vec<Minted> {
        vec![Minted::Session]
    }
}

impl AuditedAnswer for proto::RefreshResponse {
    fn event_type(&self) -> EventType {
        EventType::SessionRefreshed
    }

    fn minted(&self) -> Vec<Minted> {
        vec![Minted::Session]
    }
}
