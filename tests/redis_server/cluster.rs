//! A throwaway Redis Cluster of three primaries (Debian's redis-server,
//! joined by `redis-cli --cluster create`), plain or TLS with a password on
//! every node and on the cluster bus, as managed cluster services run it.

use super::{Mode, PASSWORD, RedisServer, free_port};
use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

/// Three primaries sharing the 16384 slots; stops when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    pub mode: Mode,
    certs: PathBuf,
}

impl RedisCluster {
    pub fn start(mode: Mode) -> Self {
        let certs = std::env::temp_dir().join(format!("mtr-sso-redis-cluster-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&certs).expect("dir");
        if mode == Mode::TlsWithPassword {
            super::write_certificates(&certs);
        }
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let mut extra: Vec<String> =
                    ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"].map(String::from).to_vec();
                // The bus port is named: the default (port + 10000) may not exist above 55535.
                extra.extend(["--cluster-port".into(), free_port().to_string()]);
                if mode == Mode::TlsWithPassword {
                    extra.extend(["--tls-cluster".into(), "yes".into()]);
                }
                RedisServer::start_with(mode, Some(&certs), &extra)
            })
            .collect();
        let mut create = nodes[0].cli_command();
        create.arg("--cluster").arg("create");
        create.args(nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)));
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let output = create.stdin(Stdio::null()).output().expect("redis-cli --cluster create");
        assert!(output.status.success(), "cluster create: {}", String::from_utf8_lossy(&output.stdout));
        let cluster = Self { nodes, mode, certs };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.nodes.iter().all(|node| node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "the cluster did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `redis+cluster://127.0.0.1:PORT` or `rediss+cluster://localhost:PORT` of the first node.
    pub fn url(&self) -> String {
        let port = self.nodes[0].port;
        match self.mode {
            Mode::Plain => format!("redis+cluster://127.0.0.1:{port}"),
            Mode::TlsWithPassword => format!("rediss+cluster://localhost:{port}"),
        }
    }

    /// The gateway flags that reach the cluster.
    pub fn gateway_args(&self) -> Vec<String> {
        let mut args = vec!["--redis-url".to_string(), self.url()];
        if self.mode == Mode::TlsWithPassword {
            args.extend(["--redis-ca-file".into(), self.nodes[0].file("ca.pem")]);
            args.extend(["--redis-password-file".into(), self.nodes[0].file("password")]);
        }
        args
    }

    /// Every key, each with the port of the node that holds it.
    pub fn keys(&self) -> Vec<(u16, String)> {
        self.nodes.iter().flat_map(|node| node.keys().into_iter().map(|key| (node.port, key))).collect()
    }

    /// The password every node asks for, when TLS is on.
    pub fn password(&self) -> Option<&'static str> {
        (self.mode == Mode::TlsWithPassword).then_some(PASSWORD)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.certs);
    }
}
