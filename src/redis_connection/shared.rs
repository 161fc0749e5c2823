//! The process's Redis connection as every user of shared state sees it: one
//! endpoint or a Redis Cluster behind one type, every command bounded by
//! `--redis-command-timeout`, and a health state that says when Redis is out
//! and when it is back.
//!
//! Once a command fails because Redis is unreachable (no answer in time, the
//! connection refused or dropped, a cluster that is down or failing over),
//! Redis counts as out: every later command fails at once instead of waiting
//! for its timeout, so each user falls back to what it does without Redis
//! (see RELIABILITY.md) without slowing a single call. One task pings Redis a
//! few times a second until it answers, and then every command goes to Redis
//! again. Each change logs one line and moves the `mtr_sso_redis_up` gauge.

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use redis::{
    Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
};
use std::{
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// How often an outage is probed: service returns within this (plus a
/// round trip) of Redis coming back.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// One endpoint, or a cluster routed by key slot.
#[derive(Clone)]
pub(super) enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The connection shared by the limits, the idempotency keys and the reuse
/// window; cheap to clone (every clone shares the connection and its health).
#[derive(Clone)]
pub struct SharedRedis {
    link: Link,
    health: Arc<Health>,
}

impl std::fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRedis")
            .field("cluster", &matches!(self.link, Link::Cluster(_)))
            .field("up", &self.is_up())
            .field("replicas", &self.health.replicas)
            .finish()
    }
}

/// Whether Redis answers, and the series that show it.
struct Health {
    up: AtomicBool,
    probing: AtomicBool,
    down_since: Mutex<Option<Instant>>,
    /// When the last outage ended.
    back_at: Mutex<Option<Instant>>,
    command_timeout: Duration,
    replicas: u32,
    /// The link the probe pings: a clone of the one commands use.
    link: Link,
    /// `mtr_sso_redis_up` and `mtr_sso_redis_outages`, once the metrics take them.
    series: OnceLock<(Gauge, Counter)>,
}

impl SharedRedis {
    pub(super) fn new(link: Link, command_timeout: Duration, replicas: u32) -> Self {
        let health = Health {
            up: AtomicBool::new(true),
            probing: AtomicBool::new(false),
            down_since: Mutex::new(None),
            back_at: Mutex::new(None),
            command_timeout,
            replicas: replicas.max(1),
            link: link.clone(),
            series: OnceLock::new(),
        };
        Self { link, health: Arc::new(health) }
    }

    /// Whether Redis answered the last command (or the probe since).
    pub fn is_up(&self) -> bool {
        self.health.up.load(Ordering::Acquire)
    }

    /// Whether Redis is out now, or was within the last `period`: what was
    /// decided without it during an outage is not in Redis, so for a while
    /// after one a replica's own records must still be consulted.
    pub fn out_within(&self, period: Duration) -> bool {
        !self.is_up()
            || self
                .health
                .back_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some_and(|back| back.elapsed() < period)
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(_))
    }

    /// How many replicas share this Redis (`--replicas`): while it is out,
    /// each replica's own guards allow each limit divided by this.
    pub fn replicas(&self) -> u32 {
        self.health.replicas
    }

    /// Shows the health on `up` (1 while Redis answers, 0 while it is out)
    /// and counts each outage on `outages`, from now on.
    pub fn report_to(&self, up: Gauge, outages: Counter) {
        up.set(i64::from(self.is_up()));
        let _ = self.health.series.set((up, outages));
    }

    /// Runs one command (or pipeline) through the link within the command timeout.
    async fn guarded<T>(&self, answer: impl std::future::Future<Output = RedisResult<T>>) -> RedisResult<T> {
        if !self.is_up() {
            return Err(out_error());
        }
        let timeout = self.health.command_timeout;
        let answer = match tokio::time::timeout(timeout, answer).await {
            Ok(answer) => answer,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("Redis did not answer within {}", humantime::format_duration(timeout)),
            ))),
        };
        if let Err(error) = &answer
            && is_outage(error)
        {
            self.health.clone().went_out(error);
        }
        answer
    }
}

/// The error every command gets at once while Redis is out.
fn out_error() -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::NotConnected, "Redis is out; waiting for it to come back"))
}

/// Whether `error` says Redis cannot be reached (rather than that it refused
/// one command, as for a script error).
pub fn is_outage(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::ClusterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::BusyLoading
                        | ServerErrorKind::ReadOnly
                )
        )
}

impl Health {
    /// Marks Redis out (once per outage: one log line, one count) and starts the probe.
    fn went_out(self: Arc<Self>, error: &RedisError) {
        if !self.up.swap(false, Ordering::AcqRel) {
            return;
        }
        *self.down_since.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        if let Some((up, outages)) = self.series.get() {
            up.set(0);
            outages.inc();
        }
        tracing::warn!(
            %error,
            "Redis is out: quota and limits fall back to this replica's guards at each limit divided by {}, \
             the refresh reuse window to this replica, and idempotent creates are refused until it is back",
            self.replicas
        );
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        // Without a runtime (never in the service) nothing probes; commands keep failing fast.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(self.probe());
        } else {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// Pings until Redis answers (a cluster: until it serves every slot), then marks it back.
    async fn probe(self: Arc<Self>) {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            let mut link = self.link.clone();
            // A cluster is back when a node says it serves every slot again:
            // a PING answered by a healthy shard says nothing about the others.
            let answered = tokio::time::timeout(self.command_timeout, async {
                match &mut link {
                    Link::Single(connection) => {
                        redis::cmd("PING").query_async::<String>(connection).await.map(|_| true)
                    }
                    Link::Cluster(connection) => redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async::<String>(connection)
                        .await
                        .map(|info| info.contains("cluster_state:ok")),
                }
            })
            .await;
            if matches!(answered, Ok(Ok(true))) {
                break;
            }
        }
        let since = self.down_since.lock().unwrap_or_else(PoisonError::into_inner).take();
        // Whole milliseconds: the log line says "10s 213ms", not nanoseconds.
        let lasted = since.map_or(0, |since| u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX));
        *self.back_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.probing.store(false, Ordering::Release);
        self.up.store(true, Ordering::Release);
        if let Some((up, _)) = self.series.get() {
            up.set(1);
        }
        let lasted = humantime::format_duration(Duration::from_millis(lasted));
        tracing::info!(outage = %lasted, "Redis is back: shared state is in use again");
    }
}

impl ConnectionLike for SharedRedis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut link = self.link.clone();
            let answer = async {
                match &mut link {
                    Link::Single(connection) => connection.req_packed_command(cmd).await,
                    Link::Cluster(connection) => connection.req_packed_command(cmd).await,
                }
            };
            self.guarded(answer).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut link = self.link.clone();
            let answer = async {
                match &mut link {
                    Link::Single(connection) => connection.req_packed_commands(pipeline, offset, count).await,
                    Link::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count).await,
                }
            };
            self.guarded(answer).await
        })
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(connection) => connection.get_db(),
            Link::Cluster(connection) => connection.get_db(),
        }
    }
}
