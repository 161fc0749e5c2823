//! A throwaway redis-server (Debian's package) for tests, on a free loopback
//! port: plain, or as managed services run it, TLS only (a test CA made here)
//! with a password. It hands out the gateway flags that reach it and runs
//! redis-cli against it, and can freeze it (SIGSTOP) to show an outage.
//! [`cluster`] builds a Redis Cluster of three such servers.
#![allow(dead_code)]

pub mod cluster;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The password of the TLS server.
pub const PASSWORD: &str = "s3cret-redis-pass";

/// How a test server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    TlsWithPassword,
}

/// A running redis-server; stops when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub mode: Mode,
    dir: PathBuf,
    /// The certificates' directory: `dir`, or one shared by the nodes of a cluster.
    certs: PathBuf,
    /// What it was started with, to start it again on the same port.
    args: Vec<String>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A CA and a server certificate for `localhost` and 127.0.0.1, written as
/// PEM files into `dir`: `ca.pem`, `server.pem`, `server.key`.
pub fn write_certificates(dir: &Path) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "redis test CA");
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).expect("self-signed").pem()).expect("write");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    server.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    std::fs::write(dir.join("server.pem"), server.signed_by(&key, &issuer).expect("signed").pem()).expect("write");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
}

impl RedisServer {
    pub fn start(mode: Mode) -> Self {
        Self::start_with(mode, None, &[])
    }

    /// A server whose TLS certificates are those in `certs` (made there when
    /// `None`), started with `extra` arguments too.
    pub fn start_with(mode: Mode, certs: Option<&Path>, extra: &[String]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("mtr-sso-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let certs = certs.map_or_else(|| dir.clone(), Path::to_path_buf);
        let port_text = port.to_string();
        // Uncompressed dumps: a value compressed by the dump could hide a token from a search in it.
        let mut args: Vec<String> =
            ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--rdbcompression", "no", "--dir"]
                .map(String::from)
                .to_vec();
        args.push(dir.to_str().expect("utf8").into());
        match mode {
            Mode::Plain => args.extend(["--port".into(), port_text]),
            Mode::TlsWithPassword => {
                if !certs.join("ca.pem").exists() {
                    write_certificates(&certs);
                }
                let file = |name: &str| certs.join(name).to_str().expect("utf8").to_string();
                args.extend([
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port_text,
                    "--tls-cert-file".into(),
                    file("server.pem"),
                    "--tls-key-file".into(),
                    file("server.key"),
                    "--tls-ca-cert-file".into(),
                    file("ca.pem"),
                    "--tls-auth-clients".into(),
                    "no".into(),
                    "--requirepass".into(),
                    PASSWORD.into(),
                    "--masterauth".into(),
                    PASSWORD.into(),
                ]);
                std::fs::write(certs.join("password"), format!("{PASSWORD}\n")).expect("write");
            }
        }
        args.extend(extra.iter().cloned());
        let child = spawn(&args);
        let server = Self { child, port, mode, dir, certs, args };
        server.wait_until_it_answers();
        server
    }

    fn wait_until_it_answers(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.try_cli(&["PING"]).is_none_or(|answer| answer != "PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server as an orchestrator does (SIGTERM), and waits until it is gone:
    /// connections are refused until [`Self::restart`].
    pub fn stop(&mut self) {
        self.signal("-TERM");
        let _ = self.child.wait();
    }

    /// Starts the server again on its port, with what it had persisted (if anything).
    pub fn restart(&mut self) {
        self.child = spawn(&self.args);
        self.wait_until_it_answers();
    }

    /// This server's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT), with all it held.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill {signal}");
    }

    /// `rediss://localhost:PORT` or `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match self.mode {
            Mode::Plain => format!("redis://127.0.0.1:{}", self.port),
            Mode::TlsWithPassword => format!("rediss://localhost:{}", self.port),
        }
    }

    /// The process's connection to this server, as the service makes it.
    pub async fn shared(&self) -> mtr_sso::redis_connection::SharedRedis {
        shared_at(&self.url()).await
    }

    /// A file of the server's certificates' directory (`ca.pem`, `password`).
    pub fn file(&self, name: &str) -> String {
        self.certs.join(name).to_str().expect("utf8").to_string()
    }

    /// The gateway flags that reach this server.
    pub fn gateway_args(&self) -> Vec<String> {
        let mut args = vec!["--redis-url".to_string(), self.url()];
        if self.mode == Mode::TlsWithPassword {
            args.extend(["--redis-ca-file".into(), self.file("ca.pem")]);
            args.extend(["--redis-password-file".into(), self.file("password")]);
        }
        args
    }

    pub fn cli_command(&self) -> Command {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.mode == Mode::TlsWithPassword {
            command.args(["--tls", "--cacert", &self.file("ca.pem"), "--no-auth-warning", "-a", PASSWORD]);
        }
        command
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let output = self.cli_command().args(args).stderr(Stdio::null()).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim_end().to_string())
    }

    /// redis-cli's answer to `args`.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    /// Every key.
    pub fn keys(&self) -> Vec<String> {
        self.cli(&["--scan"]).lines().map(str::to_string).collect()
    }

    /// The server's whole dataset as an RDB file, as a replica would receive it.
    pub fn dump(&self) -> Vec<u8> {
        let path = self.dir.join("dump-for-test.rdb");
        let output =
            self.cli_command().arg("--rdb").arg(&path).stdout(Stdio::null()).output().expect("redis-cli --rdb");
        assert!(output.status.success(), "redis-cli --rdb: {}", String::from_utf8_lossy(&output.stderr));
        std::fs::read(&path).expect("the dump")
    }
}

/// The service's connection to a plain Redis at `url`.
pub async fn shared_at(url: &str) -> mtr_sso::redis_connection::SharedRedis {
    use mtr_sso::redis_connection::{CONNECT_TIMEOUT, RedisSettings, connect};
    let settings = RedisSettings::new(url.to_string(), None, None, None).expect("a Redis URL");
    connect(&settings, CONNECT_TIMEOUT).await.expect("Redis is up")
}

fn spawn(args: &[String]) -> Child {
    Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/setup installs it)")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A frozen server ignores nothing but SIGKILL; thawing first is harmless.
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
