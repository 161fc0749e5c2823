//! The bounded listener on its own: slots and first-request deadlines.

use super::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_stream::StreamExt as _;

async fn incoming(max_connections: usize, first_request_timeout: Duration) -> (BoundedIncoming, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = ConnectionLimits { max_connections, first_request_timeout, ..ConnectionLimits::default() };
    (BoundedIncoming::new(listener, limits, Arc::new(FirstRequests::default())), addr)
}

#[tokio::test]
async fn beyond_the_cap_a_connection_is_accepted_only_once_another_closes() {
    let (mut incoming, addr) = incoming(2, Duration::from_secs(10)).await;
    let _clients = [TcpStream::connect(addr).await.expect("1"), TcpStream::connect(addr).await.expect("2")];
    let first = incoming.next().await.expect("accepted").expect("ok");
    let _second = incoming.next().await.expect("accepted").expect("ok");
    let _third_client = TcpStream::connect(addr).await.expect("the kernel's backlog takes it");
    let waited = tokio::time::timeout(Duration::from_millis(200), incoming.next()).await;
    assert!(waited.is_err(), "no third connection is accepted while two are held");
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(2), incoming.next()).await;
    assert!(matches!(third, Ok(Some(Ok(_)))), "a freed slot lets the next one in");
}

#[tokio::test]
async fn a_connection_without_a_request_fails_at_its_deadline_and_one_with_a_request_does_not() {
    let (mut incoming, addr) = incoming(10, Duration::from_millis(150)).await;
    let _silent_client = TcpStream::connect(addr).await.expect("connect");
    let mut silent = incoming.next().await.expect("accepted").expect("ok");
    let started = tokio::time::Instant::now();
    let read = silent.read(&mut [0u8; 16]).await;
    assert_eq!(read.expect_err("closed at the deadline").kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(1), "at the deadline, not later: {:?}", started.elapsed());
    drop(silent);

    let mut client = TcpStream::connect(addr).await.expect("connect");
    let mut served = incoming.next().await.expect("accepted").expect("ok");
    assert_eq!(incoming.first_requests.len(), 1, "only the waiting connection is listed");
    let mut extensions = http::Extensions::new();
    extensions.insert(served.connect_info());
    incoming.first_requests.mark(&extensions);
    assert_eq!(incoming.first_requests.len(), 0, "a served connection leaves the list");
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    served.read_exact(&mut buf).await.expect("past the deadline, a served connection still reads");
    assert_eq!(&buf, b"ping");
    drop(served);
    assert_eq!(incoming.first_requests.len(), 0);
}

#[test]
fn the_open_file_limit_is_read_where_the_system_tells_it() {
    if cfg!(target_os = "linux") {
        assert!(open_file_limit().is_some_and(|limit| limit > 0));
    }
}
