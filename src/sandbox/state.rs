//! The sandbox's memory of the vendor: accounts, one-time tokens, sessions and
//! refresh tokens, with the vendor's rules (a new token voids the previous
//! one, tokens work once and expire, a used refresh token is void).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};
use time::OffsetDateTime;

/// How long the platform's session token lives (the vendor documents 15 minutes).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Validity of the token that comes with a created account.
pub const ACCOUNT_TOKEN_VALIDITY: Duration = Duration::from_secs(15 * 60);

/// A stored account.
#[derive(Debug, Clone)]
pub struct Account {
    pub uuid: String,
    pub email: String,
    pub password: String,
    pub client_type: String,
    pub created: OffsetDateTime,
    /// The request as received, minus the password, echoed in answers.
    pub sections: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug)]
struct OneTimeToken {
    email: String,
    expires: Instant,
    spent: bool,
    /// A newer token for the same user replaced it.
    voided: bool,
}

#[derive(Debug)]
struct SessionEntry {
    email: String,
    expires: Instant,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Spent,
    Expired,
    Voided,
}

impl TokenRefusal {
    /// What the browser landing says: the sandbox knows which it is.
    pub fn explanation(self) -> &'static str {
        match self {
            TokenRefusal::Unknown => {
                "This login link is not valid: its token is unknown (never issued, or replaced twice since)."
            }
            TokenRefusal::Spent => "This login link was already used: each link signs in once. Ask for a new one.",
            TokenRefusal::Expired => "This login link has expired. Ask for a new one.",
            TokenRefusal::Voided => {
                "This login link was replaced by a newer one for the same user: only the newest link works."
            }
        }
    }
}

/// A granted platform session.
#[derive(Debug, Clone)]
pub struct Grant {
    pub email: String,
    pub access_token: String,
    /// The `rt` valid at the refresh path.
    pub refresh_token: String,
    /// A second `rt` the platform sets for its web backend's path; not valid for refresh.
    pub backend_refresh_token: String,
}

/// All sandbox state.
#[derive(Debug, Default)]
pub struct State {
    accounts: HashMap<String, Account>,
    one_time_tokens: HashMap<String, OneTimeToken>,
    latest_token: HashMap<String, String>,
    /// The token each user's latest one replaced, kept so that its refusal
    /// says so; the one before it is forgotten, bounding memory per user.
    replaced_token: HashMap<String, String>,
    sessions: HashMap<String, SessionEntry>,
    refresh_tokens: HashMap<String, String>,
    /// v2 trading accounts, by the UUID of the user account they belong to.
    trading_accounts: HashMap<String, Vec<serde_json::Value>>,
    /// The last trading account login handed out.
    last_login: u64,
}

/// A random, URL- and cookie-safe token.
pub fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key(email: &str) -> String {
    email.to_ascii_lowercase()
}

impl State {
    /// Stores an account; `None` if the email is taken.
    pub fn add_account(&mut self, account: Account) -> Option<Account> {
        let k = key(&account.email);
        if self.accounts.contains_key(&k) {
            return None;
        }
        self.accounts.insert(k, account.clone());
        Some(account)
    }

    pub fn account(&self, email: &str) -> Option<&Account> {
        self.accounts.get(&key(email))
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The account with this UUID.
    pub fn account_by_uuid(&self, uuid: &str) -> Option<&Account> {
        self.accounts.values().find(|account| account.uuid == uuid)
    }

    /// Stores a trading account for a user account, with the next login
    /// number; `on_paper_only` marks it `missingInTradingSystem`.
    pub fn open_trading_account(
        &mut self,
        user_uuid: &str,
        mut account: serde_json::Value,
        on_paper_only: bool,
    ) -> serde_json::Value {
        self.last_login = self.last_login.max(700_000) + 1;
        account["login"] = serde_json::json!(self.last_login);
        account["uuid"] = serde_json::json!(uuid::Uuid::new_v4().to_string());
        account["created"] = serde_json::json!(
            OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
        );
        account["missingInTradingSystem"] = serde_json::json!(on_paper_only);
        account["version"] = serde_json::json!(1);
        self.trading_accounts.entry(user_uuid.to_string()).or_default().push(account.clone());
        account
    }

    /// Dates a trading account's `created` back (or forward), as a test seeds it.
    pub fn set_trading_account_created(&mut self, user_uuid: &str, uuid: &str, created: &str) {
        let accounts = self.trading_accounts.get_mut(user_uuid).into_iter().flatten();
        for account in accounts.filter(|account| account["uuid"] == uuid) {
            account["created"] = serde_json::json!(created);
        }
    }

    /// The trading accounts of a user account, oldest first.
    pub fn trading_accounts_of(&self, user_uuid: &str) -> Vec<serde_json::Value> {
        self.trading_accounts.get(user_uuid).cloned().unwrap_or_default()
    }

    /// The accounts ordered by creation (then email), `size` from the
    /// zero-based `page`, and how many there are in all.
    pub fn accounts_page(&self, page: usize, size: usize) -> (Vec<&Account>, usize) {
        let mut all: Vec<&Account> = self.accounts.values().collect();
        all.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.email.cmp(&b.email)));
        let total = all.len();
        (all.into_iter().skip(page.saturating_mul(size)).take(size).collect(), total)
    }

    /// Number of v2 trading accounts.
    pub fn trading_account_count(&self) -> usize {
        self.trading_accounts.values().map(Vec::len).sum()
    }

    /// Mints a token for an existing account, voiding the previous one.
    pub fn issue_token(&mut self, email: &str, validity: Duration) -> Option<String> {
        let account_email = self.account(email)?.email.clone();
        let token = random_token();
        self.one_time_tokens.insert(
            token.clone(),
            OneTimeToken { email: account_email, expires: Instant::now() + validity, spent: false, voided: false },
        );
        // The replaced token is kept, marked, so that its refusal can say why.
        if let Some(previous) = self.latest_token.insert(key(email), token.clone()) {
            if let Some(entry) = self.one_time_tokens.get_mut(&previous) {
                entry.voided = true;
            }
            if let Some(forgotten) = self.replaced_token.insert(key(email), previous) {
                self.one_time_tokens.remove(&forgotten);
            }
        }
        Some(token)
    }

    /// Spends a one-time token and opens a session for its user.
    pub fn redeem_token(&mut self, token: &str) -> Result<Grant, TokenRefusal> {
        let entry = self.one_time_tokens.get_mut(token).ok_or(TokenRefusal::Unknown)?;
        if entry.spent {
            return Err(TokenRefusal::Spent);
        }
        if entry.voided {
            return Err(TokenRefusal::Voided);
        }
        if Instant::now() >= entry.expires {
            return Err(TokenRefusal::Expired);
        }
        entry.spent = true;
        let email = entry.email.clone();
        Ok(self.open_session(&email))
    }

    /// Checks a password login.
    pub fn check_password(&self, email: &str, password: &str) -> Option<String> {
        let account = self.account(email)?;
        (account.password == password).then(|| account.email.clone())
    }

    /// Opens a session: a new access token and a new pair of refresh tokens.
    pub fn open_session(&mut self, email: &str) -> Grant {
        let expires = OffsetDateTime::now_utc() + SESSION_LIFETIME;
        let grant = Grant {
            email: email.to_string(),
            access_token: super::session_token::session_token(email, expires),
            refresh_token: random_token(),
            backend_refresh_token: random_token(),
        };
        self.sessions.insert(
            grant.access_token.clone(),
            SessionEntry { email: email.to_string(), expires: Instant::now() + SESSION_LIFETIME },
        );
        self.refresh_tokens.insert(grant.refresh_token.clone(), email.to_string());
        grant
    }

    /// Spends a refresh token and opens a new session; `None` if unknown or spent.
    pub fn refresh(&mut self, refresh_token: &str) -> Option<Grant> {
        let email = self.refresh_tokens.remove(refresh_token)?;
        Some(self.open_session(&email))
    }

    /// The user of a live session.
    pub fn session_user(&self, access_token: &str) -> Option<&str> {
        let entry = self.sessions.get(access_token)?;
        (Instant::now() < entry.expires).then_some(entry.email.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(email: &str) -> Account {
        Account {
            uuid: "u".into(),
            email: email.into(),
            password: "pw".into(),
            client_type: "RETAIL".into(),
            created: OffsetDateTime::now_utc(),
            sections: Default::default(),
        }
    }

    #[test]
    fn a_new_token_voids_the_previous_one_and_tokens_work_once() {
        let mut state = State::default();
        state.add_account(account("a@b.co")).expect("added");
        let first = state.issue_token("a@b.co", Duration::from_secs(60)).expect("token");
        let second = state.issue_token("A@b.co", Duration::from_secs(60)).expect("token");
        assert_eq!(state.redeem_token(&first).map(|_| ()), Err(TokenRefusal::Voided));
        assert!(state.redeem_token(&second).is_ok());
        assert_eq!(state.redeem_token(&second).map(|_| ()), Err(TokenRefusal::Spent));
        assert_eq!(state.redeem_token("never-issued").map(|_| ()), Err(TokenRefusal::Unknown));
        let short = state.issue_token("a@b.co", Duration::ZERO).expect("token");
        assert_eq!(state.redeem_token(&short).map(|_| ()), Err(TokenRefusal::Expired));
        // Only the latest replaced token is remembered: memory stays bounded per user.
        for _ in 0..10 {
            state.issue_token("a@b.co", Duration::from_secs(60)).expect("token");
        }
        assert_eq!(state.one_time_tokens.len(), 2, "the latest, and the one it replaced");
    }

    #[test]
    fn refresh_tokens_rotate() {
        let mut state = State::default();
        let grant = state.open_session("a@b.co");
        let renewed = state.refresh(&grant.refresh_token).expect("first use works");
        assert!(state.refresh(&grant.refresh_token).is_none(), "the old token is void");
        assert!(state.refresh(&grant.backend_refresh_token).is_none(), "the backend-path token does not refresh");
        assert!(state.session_user(&renewed.access_token).is_some());
    }

    #[test]
    fn duplicate_emails_are_refused_case_insensitively() {
        let mut state = State::default();
        assert!(state.add_account(account("a@b.co")).is_some());
        assert!(state.add_account(account("A@B.CO")).is_none());
    }
}
