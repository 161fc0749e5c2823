//! The limits that keep the fleet inside the vendor's quota (500 requests a
//! minute per API key, for all replicas together) and stop bursts per caller
//! and per email, all counted with one algorithm: a **sliding log**. Each key
//! keeps the instants of its calls; a call is let through only while fewer
//! than the limit hold a slot, and a call holds its slot for the window (60 s)
//! plus [`SLOT_MARGIN`]. So no 60-second window, wherever it starts, ever
//! holds more than the limit, which is safe whether the vendor counts fixed
//! minutes or a sliding minute. A refusal says exactly when the next slot
//! frees. For the vendor's quota, a call whose slot frees within a short wait
//! may reserve it and wait, in order of arrival (see [`SlidingWindows::reserve`]).
//!
//! Logs live in memory for one process ([`log`]), or in Redis (one atomic
//! script on the Redis server's clock, [`redis_log`]) so that every replica
//! shares them. With Redis, each replica also keeps in memory the slots it
//! took itself; while Redis is out, those decide, at each limit divided by
//! the number of replicas, so the fleet stays near the limit without Redis
//! and never stops signing users in (RELIABILITY.md gives the bound).

mod log;
mod redis_log;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

use crate::redis_connection::SharedRedis;
use log::{Decision, Logs};
use redis_log::RedisLog;

/// The window every limit counts over: the limits are "per minute".
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// How much longer than the window a call keeps its slot. The guard counts a
/// call when it lets it through; the vendor counts it when it arrives, a
/// moment later and not always the same moment later (a fresh TLS
/// connection, a Redis round trip, a slow network). Without the margin, a call
/// let through as the oldest slot frees could reach the vendor before that
/// oldest call's own arrival has left the vendor's window.
pub const SLOT_MARGIN: Duration = Duration::from_secs(1);

/// Calls of one process that may wait for a slot at once; beyond it calls are
/// refused at once, so a flood cannot pile up waiting calls. Half the default
/// `--max-in-flight`: waiting calls never crowd out all other RPCs.
pub const MAX_WAITING_CALLS: usize = 512;

enum Store {
    Memory(Mutex<Logs>),
    /// `own` holds the slots this replica took, the guard while Redis is out.
    Redis {
        connection: SharedRedis,
        log: RedisLog,
        own: Mutex<Logs>,
    },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Store::Memory(_) => "Store::Memory",
            Store::Redis { .. } => "Store::Redis",
        })
    }
}

/// The sliding logs of every limited key, and the calls waiting for a slot.
#[derive(Debug)]
pub struct SlidingWindows {
    store: Store,
    window: Duration,
    waiting: Arc<AtomicUsize>,
}

/// A slot a call took: free now, or reserved for a moment within the wait it
/// was allowed.
#[derive(Debug)]
pub struct Slot {
    left: u32,
    at: Instant,
    /// Counts this call among the waiting ones until it is dropped.
    _waiting: Option<WaitingCall>,
}

impl Slot {
    /// Slots of the key still free after this one.
    pub fn left(&self) -> u32 {
        self.left
    }

    /// How long until the slot is free: zero unless the call must wait.
    pub fn wait(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Waits until the slot is free (at once when it already is).
    pub async fn until_free(self) {
        tokio::time::sleep_until(self.at).await;
    }
}

/// One call counted among the waiting ones, until dropped.
#[derive(Debug)]
struct WaitingCall(Arc<AtomicUsize>);

impl Drop for WaitingCall {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SlidingWindows {
    /// Logs for this process alone.
    pub fn in_memory() -> Self {
        Self::new(Store::Memory(Mutex::new(Logs::default())))
    }

    /// Logs shared through Redis by every replica that uses the same server.
    pub fn redis(connection: SharedRedis) -> Self {
        Self::new(Store::Redis { connection, log: RedisLog::new(), own: Mutex::new(Logs::default()) })
    }

    fn new(store: Store) -> Self {
        Self { store, window: DEFAULT_WINDOW, waiting: Arc::new(AtomicUsize::new(0)) }
    }

    /// The same logs counting over another window. Only tests and the quota
    /// benchmark use one, to show in seconds what takes minutes at 60 s.
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long a call holds its slot: the window plus [`SLOT_MARGIN`].
    pub fn hold(&self) -> Duration {
        self.window + SLOT_MARGIN
    }

    /// Calls of this process waiting for a reserved slot now.
    pub fn waiting_calls(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Takes one of `key`'s `limit` slots now: the slots left, or on refusal
    /// the exact time until one frees. A limit of 0 means no limit (and
    /// `u32::MAX` left).
    pub async fn take(&self, key: &str, limit: u32) -> Result<u32, Duration> {
        self.reserve(key, limit, Duration::ZERO).await.map(|slot| slot.left)
    }

    /// Takes one of `key`'s `limit` slots now or, when none is free but one
    /// frees within `max_wait`, reserves the first such slot not reserved yet:
    /// calls that wait are served in order of arrival, across replicas with
    /// Redis. The caller then waits with [`Slot::until_free`]; a call that
    /// gives up while waiting keeps its slot unused, which errs on the safe
    /// side. Beyond [`MAX_WAITING_CALLS`] waiting in this process, calls are
    /// refused at once. On refusal, the exact time until the next slot frees.
    pub async fn reserve(&self, key: &str, limit: u32, max_wait: Duration) -> Result<Slot, Duration> {
        if limit == 0 {
            return Ok(Slot { left: u32::MAX, at: Instant::now(), _waiting: None });
        }
        let waiting = if max_wait.is_zero() { None } else { self.join_waiting() };
        let max_wait = if waiting.is_some() { max_wait } else { Duration::ZERO };
        let decision = match &self.store {
            Store::Memory(logs) => {
                let mut logs = logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                logs.decide(key, limit, self.hold(), max_wait, Instant::now())
            }
            Store::Redis { connection, log, own } => {
                self.decide_shared(connection, log, own, key, limit, max_wait).await
            }
        };
        match decision {
            Decision::Admitted { at, left } => {
                let waits = at > Instant::now();
                Ok(Slot { left, at, _waiting: waiting.filter(|_| waits) })
            }
            Decision::Refused { retry_after } => Err(retry_after),
        }
    }

    /// A decision with Redis. Each call Redis admits is also recorded in this
    /// replica's own log, at its share of the limit. While Redis is out, and
    /// for one hold time after (what was admitted meanwhile is not in Redis),
    /// that own log decides first: a replica never sends more than its share
    /// then, beyond what it had sent through Redis before the outage.
    async fn decide_shared(
        &self,
        connection: &SharedRedis,
        log: &RedisLog,
        own: &Mutex<Logs>,
        key: &str,
        limit: u32,
        max_wait: Duration,
    ) -> Decision {
        let share = own_share(limit, connection.replicas());
        let hold = self.hold();
        let own_log = || own.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let guarded = connection.out_within(hold).then(|| own_log().decide(key, share, hold, max_wait, Instant::now()));
        if let Some(refused @ Decision::Refused { .. }) = guarded {
            return refused;
        }
        match (log.decide(connection, key, limit, hold, max_wait).await, guarded) {
            (Ok(Decision::Admitted { at, left }), Some(Decision::Admitted { at: own_at, .. })) => {
                Decision::Admitted { at: at.max(own_at), left }
            }
            (Ok(decision), guarded) => {
                if let (Decision::Admitted { at, .. }, None) = (decision, guarded) {
                    own_log().record(key, share, hold, at, Instant::now());
                }
                decision
            }
            // Redis is out (the connection logs that once): the own log decided.
            (Err(_), Some(admitted)) => admitted,
            (Err(_), None) => own_log().decide(key, share, hold, max_wait, Instant::now()),
        }
    }

    /// Counts one more waiting call, unless [`MAX_WAITING_CALLS`] already wait.
    fn join_waiting(&self) -> Option<WaitingCall> {
        let before = self.waiting.fetch_add(1, Ordering::Relaxed);
        let call = WaitingCall(self.waiting.clone());
        (before < MAX_WAITING_CALLS).then_some(call)
    }
}

/// One replica's share of `limit` while Redis is out: rounded up, so a
/// limit smaller than the fleet still lets each replica make a call.
pub fn own_share(limit: u32, replicas: u32) -> u32 {
    limit.div_ceil(replicas.max(1)).max(1)
}

/// The limits that apply, per minute (0 switches one off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls to one tenant's Broker-API (one API key), and separately to its platform.
    pub upstream_per_minute: u32,
    /// IssueOneTimeToken and Login calls of one caller.
    pub caller_per_minute: u32,
    /// IssueOneTimeToken and Login calls for one email.
    pub email_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { upstream_per_minute: 450, caller_per_minute: 600, email_per_minute: 20 }
    }
}

/// A stable, non-reversible key for an email: emails never appear in Redis.
pub fn email_key(tenant: &str, email: &str) -> String {
    let digest = sha1_smol::Sha1::from(format!("{tenant}\u{0}{}", email.to_lowercase())).digest().to_string();
    format!("email:{digest}")
}

#[cfg(test)]
mod tests;
