//! The sandbox's memory of the vendor: accounts, one-time tokens, sessions and
//! refresh tokens, with the vendor's rules (a new token voids the previous
//! one, tokens work once and expire, a used refresh token is void). Sessions,
//! refresh tokens and one-time tokens are forgotten once they expire, a few
//! at each insert (see `expiry`), so a sandbox left running stays flat.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};
use time::OffsetDateTime;

use super::expiry::ExpiryQueue;
pub use super::expiry::{Lifetimes, TOKEN_MEMORY};
use super::session_token::{random_token, session_token};

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

/// A session or a refresh token: whose, and until when.
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
    /// How long the session and the refresh token live (the cookies' Max-Age).
    pub lifetimes: Lifetimes,
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
    refresh_tokens: HashMap<String, SessionEntry>,
    lifetimes: Lifetimes,
    session_expiry: ExpiryQueue,
    refresh_expiry: ExpiryQueue,
    token_expiry: ExpiryQueue,
    /// v2 trading accounts, by the UUID of the user account they belong to.
    trading_accounts: HashMap<String, Vec<serde_json::Value>>,
    /// The last trading account login handed out.
    last_login: u64,
}

fn key(email: &str) -> String {
    email.to_ascii_lowercase()
}

impl State {
    /// Empty, with these lifetimes.
    pub fn new(lifetimes: Lifetimes) -> Self {
        Self { lifetimes, ..Self::default() }
    }

    /// Forgets a bounded number of sessions, refresh tokens and one-time
    /// tokens whose time has come; called at each insert.
    fn sweep(&mut self, now: Instant) {
        for access_token in self.session_expiry.pop_due(now) {
            self.sessions.remove(&access_token);
        }
        for refresh_token in self.refresh_expiry.pop_due(now) {
            self.refresh_tokens.remove(&refresh_token);
        }
        for token in self.token_expiry.pop_due(now) {
            let Some(forgotten) = self.one_time_tokens.remove(&token) else { continue };
            let user = key(&forgotten.email);
            for newest in [&mut self.latest_token, &mut self.replaced_token] {
                if newest.get(&user) == Some(&token) {
                    newest.remove(&user);
                }
            }
        }
    }

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
        let now = Instant::now();
        self.sweep(now);
        let expires = now + validity;
        self.token_expiry.push(expires + self.lifetimes.token_memory, token.clone());
        self.one_time_tokens
            .insert(token.clone(), OneTimeToken { email: account_email, expires, spent: false, voided: false });
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
        let lifetimes = self.lifetimes;
        let grant = Grant {
            email: email.to_string(),
            access_token: session_token(email, OffsetDateTime::now_utc() + lifetimes.session),
            refresh_token: random_token(),
            backend_refresh_token: random_token(),
            lifetimes,
        };
        let now = Instant::now();
        self.sweep(now);
        let (session_ends, refresh_ends) = (now + lifetimes.session, now + lifetimes.refresh_token);
        self.session_expiry.push(session_ends, grant.access_token.clone());
        self.sessions
            .insert(grant.access_token.clone(), SessionEntry { email: email.to_string(), expires: session_ends });
        self.refresh_expiry.push(refresh_ends, grant.refresh_token.clone());
        self.refresh_tokens
            .insert(grant.refresh_token.clone(), SessionEntry { email: email.to_string(), expires: refresh_ends });
        grant
    }

    /// Spends a refresh token and opens a new session; `None` if unknown, spent or expired.
    pub fn refresh(&mut self, refresh_token: &str) -> Option<Grant> {
        let entry = self.refresh_tokens.remove(refresh_token)?;
        (Instant::now() < entry.expires).then(|| self.open_session(&entry.email))
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
    fn sessions_refresh_tokens_and_one_time_tokens_are_forgotten_after_they_expire() {
        let lifetimes = Lifetimes {
            session: Duration::from_millis(40),
            refresh_token: Duration::from_millis(300),
            token_memory: Duration::from_millis(40),
        };
        let mut state = State::new(lifetimes);
        state.add_account(account("a@b.co")).expect("added");
        let token = state.issue_token("a@b.co", Duration::from_millis(40)).expect("token");
        let grant = state.redeem_token(&token).expect("redeemed");
        for _ in 0..20 {
            state.open_session("a@b.co");
        }
        assert_eq!((state.sessions.len(), state.refresh_tokens.len(), state.one_time_tokens.len()), (21, 21, 1));
        std::thread::sleep(Duration::from_millis(60));
        assert!(state.session_user(&grant.access_token).is_none(), "the session has expired");
        assert!(state.refresh(&grant.refresh_token).is_some(), "the refresh token lives longer");
        std::thread::sleep(Duration::from_millis(350));
        assert!(state.refresh(&grant.refresh_token).is_none(), "spent, and would have expired");
        // Each insert forgets a few expired entries: a handful of logins clears the backlog.
        for _ in 0..5 {
            state.open_session("a@b.co");
        }
        assert_eq!((state.sessions.len(), state.refresh_tokens.len()), (5, 5), "only the live ones are left");
        assert!(state.one_time_tokens.is_empty() && state.latest_token.is_empty(), "the spent token is forgotten");
        assert_eq!((state.session_expiry.len(), state.refresh_expiry.len(), state.token_expiry.len()), (5, 5, 0));
        let late = state.issue_token("a@b.co", Duration::ZERO).expect("token");
        assert_eq!(state.redeem_token(&late).map(|_| ()), Err(TokenRefusal::Expired), "remembered a while");
    }

    #[test]
    fn an_expired_refresh_token_is_refused() {
        let lifetimes = Lifetimes { refresh_token: Duration::ZERO, ..Lifetimes::default() };
        let mut state = State::new(lifetimes);
        let grant = state.open_session("a@b.co");
        assert!(state.refresh(&grant.refresh_token).is_none());
    }

    #[test]
    fn duplicate_emails_are_refused_case_insensitively() {
        let mut state = State::default();
        assert!(state.add_account(account("a@b.co")).is_some());
        assert!(state.add_account(account("A@B.CO")).is_none());
    }
}
