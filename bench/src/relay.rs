//! A do-nothing TCP relay in its own process: it copies bytes between the
//! load generator and the upstream and understands none of them. Calls made
//! through it show what one more process on the path costs on this machine
//! (two more loopback hops, two more wake-ups), the floor under what any
//! gateway in that position can add.

use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::{TcpListener, TcpStream},
    process::Child,
};

/// Runs the relay to `upstream` on one thread, like the gateway's default,
/// printing its address on the first line of stdout.
pub fn run(upstream: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        loop {
            let (mut inbound, _) = listener.accept().await?;
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(upstream).await else { return };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    })
}

/// The relay as a child process of this benchmark binary.
pub struct Relay {
    _child: Child,
    pub addr: SocketAddr,
}

/// Starts `binary --relay-for upstream` and waits for its address.
pub async fn start(binary: &Path, upstream: SocketAddr) -> anyhow::Result<Relay> {
    let mut child = tokio::process::Command::new(binary)
        .arg("--relay-for")
        .arg(upstream.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), BufReader::new(stdout).read_line(&mut line)).await??;
    Ok(Relay { _child: child, addr: line.trim().parse()? })
}
