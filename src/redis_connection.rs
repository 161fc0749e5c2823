//! The one Redis connection of a process, shared by the limits, the
//! idempotency keys and the refresh reuse window: `redis://`, or `rediss://`
//! over rustls (ring provider) with the system trust store or a CA file, and a
//! username and password from a secret file; `redis+cluster://` and
//! `rediss+cluster://` reach a Redis Cluster through one of its nodes, with
//! the same TLS and credentials for every node. Connecting checks the server once
//! with a short timeout and names the cause of a failure in one line (password
//! refused, certificate not trusted, no answer), so that `--check-config` and
//! the start fail alike, and at once.

mod shared;

use redis::{IntoConnectionInfo as _, aio::ConnectionManager};
use secrecy::{ExposeSecret as _, SecretString};
use std::time::Duration;

pub use shared::{PROBE_INTERVAL, SharedRedis, is_outage};

/// How long connecting and the first PING may take, at start and in `--check-config`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one Redis command may take by default (`--redis-command-timeout`):
/// far above a healthy round trip (about a millisecond), far below an RPC's deadline.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(250);

/// How many replicas share Redis by default (`--replicas`): the shipped deployment runs 2.
pub const DEFAULT_REPLICAS: u32 = 2;

/// Where Redis is and how to authenticate, checked at start.
#[derive(Clone)]
pub struct RedisSettings {
    /// The URL as the crate reads it: `redis://` or `rediss://`, `+cluster` removed.
    url: String,
    cluster: bool,
    command_timeout: Duration,
    replicas: u32,
    /// PEM of the CA that signs the server's certificate; the system trust store when `None`.
    ca_pem: Option<Vec<u8>>,
    username: Option<String>,
    password: Option<SecretString>,
    /// `host:port`, the only part of the URL ever shown: the URL may hold a password.
    endpoint: String,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.is_tls())
            .field("cluster", &self.cluster)
            .field("command_timeout", &self.command_timeout)
            .field("replicas", &self.replicas)
            .field("ca_file", &self.ca_pem.is_some())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// A Redis setting that cannot be used: which setting, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettingError {
    pub setting: &'static str,
    pub problem: String,
}

impl std::fmt::Display for RedisSettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid setting {}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for RedisSettingError {}

fn refuse(setting: &'static str, problem: impl Into<String>) -> RedisSettingError {
    RedisSettingError { setting, problem: problem.into() }
}

impl RedisSettings {
    /// Checks the URL and how it goes with the CA and the credentials.
    pub fn new(
        url: String,
        ca_pem: Option<Vec<u8>>,
        username: Option<String>,
        password: Option<SecretString>,
    ) -> Result<Self, RedisSettingError> {
        let (url, cluster) = match url.split_once("+cluster://") {
            Some((scheme @ ("redis" | "rediss"), rest)) => (format!("{scheme}://{rest}"), true),
            _ => (url, false),
        };
        let tls = url.starts_with("rediss://");
        if !tls && !url.starts_with("redis://") {
            return Err(refuse(
                "--redis-url",
                "must start with redis://, rediss://, redis+cluster:// or rediss+cluster://",
            ));
        }
        // The crate's parse error may quote the URL, password included: say it in our own words.
        let info = url
            .as_str()
            .into_connection_info()
            .map_err(|_| refuse("--redis-url", "is not a Redis URL like redis://host:6379 or rediss://host:6380"))?;
        if ca_pem.is_some() && !tls {
            return Err(refuse("--redis-ca-file", "needs a rediss:// URL (a CA only matters with TLS)"));
        }
        if password.is_some() && info.redis_settings().password().is_some() {
            return Err(refuse("--redis-password-file", "the Redis URL holds a password too: give it in one place"));
        }
        if username.is_some() && password.is_none() {
            return Err(refuse("--redis-username", "needs --redis-password-file"));
        }
        Ok(Self {
            endpoint: info.addr().to_string(),
            url,
            cluster,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            replicas: DEFAULT_REPLICAS,
            ca_pem,
            username,
            password,
        })
    }

    /// The same settings with another timeout for each command (at least 1 ms).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The same settings for a fleet of `replicas` (at least 1).
    pub fn with_replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Whether the URL names a Redis Cluster (`redis+cluster://`, `rediss+cluster://`).
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// `host:port` of the server.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether the connection uses TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    /// The connection info with the password and user from their own settings.
    fn connection_info(&self) -> Result<redis::ConnectionInfo, RedisSettingError> {
        let info = self.url.as_str().into_connection_info().map_err(|_| refuse("--redis-url", "is not a Redis URL"))?;
        let mut redis_settings = info.redis_settings().clone();
        if let Some(password) = &self.password {
            redis_settings = redis_settings.set_password(password.expose_secret());
        }
        if let Some(username) = &self.username {
            redis_settings = redis_settings.set_username(username);
        }
        Ok(info.set_redis_settings(redis_settings).set_tcp_settings(tcp_settings()))
    }

    fn client(&self) -> Result<redis::Client, RedisSettingError> {
        let info = self.connection_info()?;
        let client = match &self.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) },
            ),
            None => redis::Client::open(info),
        };
        client.map_err(|e| describe(&e, self))
    }

    /// A cluster client that learns every node from this one: the same TLS,
    /// CA and credentials for each, and the command timeout for each answer.
    fn cluster_client(&self) -> Result<redis::cluster::ClusterClient, RedisSettingError> {
        let mut builder = redis::cluster::ClusterClientBuilder::new([self.connection_info()?])
            .tcp_settings(tcp_settings())
            .connection_timeout(self.command_timeout)
            .response_timeout(self.command_timeout)
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(100);
        if let Some(pem) = &self.ca_pem {
            builder = builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) });
        }
        builder.build().map_err(|e| describe(&e, self))
    }
}

/// How long sent data may stay unacknowledged before the kernel drops the
/// connection. Without it, a connection whose peer vanished silently (a pod
/// replaced behind the same name, a dropped NAT or load-balancer flow) would
/// keep timing out each command, and never reconnect, until the kernel gave
/// up retransmitting: about 15 minutes, with Redis reported out throughout.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const DEAD_PEER_AFTER: Duration = Duration::from_secs(2);

/// The sockets' settings: no Nagle delay for small commands, and a dead peer
/// noticed within [`DEAD_PEER_AFTER`] (Linux; elsewhere the kernel's default).
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    let settings = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(DEAD_PEER_AFTER);
    settings
}

/// Connects, checks that the server answers PING as the configured user, and
/// returns the process's (self-reconnecting) connection. The error names the
/// cause and the setting to fix, without the URL or the password.
pub async fn connect(settings: &RedisSettings, timeout: Duration) -> Result<SharedRedis, RedisSettingError> {
    // rustls needs a process-wide provider before the first TLS handshake;
    // `--check-config` connects before anything else installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let endpoint = settings.endpoint();
    let no_answer = || {
        let waited = humantime::format_duration(timeout);
        refuse("--redis-url", format!("Redis at {endpoint} did not answer within {waited}"))
    };
    let link = if settings.cluster {
        let client = settings.cluster_client()?;
        let connect = async {
            let mut connection = client.get_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut connection).await?;
            Ok::<_, redis::RedisError>(connection)
        };
        let connection = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| no_answer())?
            .map_err(|error| describe(&error, settings))?;
        shared::Link::Cluster(connection)
    } else {
        let client = settings.client()?;
        // One plain connection first: the manager below retries a refused
        // password for seconds, while this names it at once.
        let probe = async {
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut connection).await
        };
        match tokio::time::timeout(timeout, probe).await {
            Err(_) => return Err(no_answer()),
            Ok(Err(error)) => return Err(describe(&error, settings)),
            Ok(Ok(_)) => {}
        }
        // Reconnecting quickly: after an outage, the first call must not wait
        // out a long backoff (the health probe decides when Redis is back).
        // A reconnect may take a TLS handshake: at least 500 ms, at most the start's timeout.
        let reconnect_timeout = settings.command_timeout.max(Duration::from_millis(500)).min(timeout);
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(reconnect_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let connection = tokio::time::timeout(timeout, ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|_| no_answer())?
            .map_err(|error| describe(&error, settings))?;
        shared::Link::Single(connection)
    };
    Ok(SharedRedis::new(link, settings.command_timeout, settings.replicas))
}

/// Why Redis could not be used, and the setting to look at.
fn describe(error: &redis::RedisError, settings: &RedisSettings) -> RedisSettingError {
    let endpoint = settings.endpoint();
    let code = error.code().unwrap_or_default();
    let text = error.to_string();
    if error.kind() == redis::ErrorKind::AuthenticationFailed || matches!(code, "WRONGPASS" | "NOAUTH") {
        return match settings.password {
            Some(_) => refuse(
                "--redis-password-file",
                format!("Redis at {endpoint} refused the password (or the --redis-username it belongs to)"),
            ),
            None => refuse("--redis-password-file", format!("Redis at {endpoint} requires a password")),
        };
    }
    if code == "NOPERM" {
        return refuse(
            "--redis-username",
            format!("Redis at {endpoint} does not let this user run the commands needed"),
        );
    }
    if text.contains("certificate") || text.contains("Certificate") {
        let cause = if text.contains("UnknownIssuer") {
            "it is signed by a CA that is not trusted"
        } else if text.contains("NotValidForName") {
            "it is not valid for this host name"
        } else if text.contains("Expired") {
            "it has expired"
        } else {
            "it was refused"
        };
        let hint = if settings.ca_pem.is_some() { "" } else { "; give its CA with --redis-ca-file" };
        return refuse(
            "--redis-ca-file",
            format!("the TLS certificate of Redis at {endpoint} is not trusted: {cause}{hint}"),
        );
    }
    if settings.is_tls() && (text.contains("InvalidContentType") || text.contains("corrupt message")) {
        return refuse(
            "--redis-url",
            format!("Redis at {endpoint} does not speak TLS there: use redis:// or its TLS port"),
        );
    }
    if settings.is_tls() && error.is_timeout() {
        return refuse(
            "--redis-url",
            format!("Redis at {endpoint} did not complete a TLS handshake: is this its TLS port?"),
        );
    }
    if error.is_connection_refusal() {
        return refuse("--redis-url", format!("cannot connect to Redis at {endpoint}: connection refused"));
    }
    refuse("--redis-url", format!("cannot use Redis at {endpoint}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_a_password_is_never_shown_and_settings_that_cannot_go_together_are_named() {
        let settings = RedisSettings::new("redis://:hunter2@cache:6379".into(), None, None, None).expect("a valid URL");
        assert_eq!(settings.endpoint(), "cache:6379");
        assert!(!format!("{settings:?}").contains("hunter2"));
        let refused = |url: &str, ca: bool, user: bool, password: bool| {
            RedisSettings::new(
                url.into(),
                ca.then(Vec::new),
                user.then(|| "svc".to_string()),
                password.then(|| SecretString::from("pw")),
            )
            .expect_err("refused")
            .setting
        };
        assert_eq!(refused("http://cache:6379", false, false, false), "--redis-url");
        assert_eq!(refused("redis://cache:6379", true, false, false), "--redis-ca-file");
        assert_eq!(refused("rediss://:pw@cache:6380", false, false, true), "--redis-password-file");
        assert_eq!(refused("rediss://cache:6380", false, true, false), "--redis-username");
        let password = SecretString::from("pw");
        let settings = RedisSettings::new("rediss://cache:6380".into(), None, Some("svc".into()), Some(password))
            .expect("TLS with a user");
        assert!(settings.is_tls() && !format!("{settings:?}").contains("\"pw\""));
    }

    #[test]
    fn a_cluster_url_keeps_its_endpoint_tls_and_password_rules() {
        let plain = RedisSettings::new("redis+cluster://node-1:7000".into(), None, None, None).expect("a cluster URL");
        assert!(plain.is_cluster() && !plain.is_tls());
        assert_eq!(plain.endpoint(), "node-1:7000");
        let tls = RedisSettings::new("rediss+cluster://:hunter2@cfg:6379".into(), Some(Vec::new()), None, None)
            .expect("TLS cluster with a CA");
        assert!(tls.is_cluster() && tls.is_tls() && !format!("{tls:?}").contains("hunter2"));
        assert!(!RedisSettings::new("redis://cache:6379".into(), None, None, None).expect("single").is_cluster());
        for url in ["http+cluster://node:7000", "redis+sentinel://node:26379"] {
            let refused = RedisSettings::new(url.into(), None, None, None).expect_err("refused");
            assert_eq!(refused.setting, "--redis-url", "{url}");
        }
        let refused = RedisSettings::new("redis+cluster://node:7000".into(), Some(Vec::new()), None, None);
        assert_eq!(refused.expect_err("a CA needs TLS").setting, "--redis-ca-file");
    }
}
