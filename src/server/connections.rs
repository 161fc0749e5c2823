//! The main listener's connections, bounded. Without bounds a caller that
//! connects and sends nothing holds a descriptor for ever (the protocol is
//! sniffed from the first bytes, and neither TLS nor HTTP/2 has a deadline
//! of its own for a first request), so one misbehaving caller could exhaust
//! the process's descriptors. Here:
//!
//! - at most `max_connections` are held at once: beyond that, accepting
//!   pauses and new connections wait in the kernel's backlog until one closes;
//! - a connection that has not carried a request within
//!   `first_request_timeout` of its accept (TLS handshake included) is closed,
//!   whatever it sent: nothing, half a handshake, a preface, part of a header.
//!
//! A request is seen above TLS and HTTP, by [`FirstRequests::mark`] in the
//! router, so it finds its connection by the addresses both sides share.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{AcquireError, OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

use crate::config::ConnectionLimits;

/// Both ends of a connection: unique among the connections open at one time.
type Ends = (Option<SocketAddr>, Option<SocketAddr>);

/// The connections still waiting for their first request, by their ends.
#[derive(Debug, Default)]
pub(super) struct FirstRequests {
    waiting: Mutex<HashMap<Ends, Arc<AtomicBool>>>,
}

impl FirstRequests {
    /// Notes that the connection a request came on has carried one: it is no
    /// longer bounded by the first-request timeout.
    pub(super) fn mark(&self, extensions: &http::Extensions) {
        let info = extensions
            .get::<TcpConnectInfo>()
            .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().map(TlsConnectInfo::get_ref));
        let Some(info) = info else { return };
        let ends = (info.local_addr(), info.remote_addr());
        if let Some(served) = self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&ends) {
            served.store(true, Ordering::Release);
        }
    }

    fn register(&self, ends: Ends) -> Arc<AtomicBool> {
        let served = Arc::new(AtomicBool::new(false));
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).insert(ends, served.clone());
        served
    }

    fn forget(&self, ends: &Ends, served: &Arc<AtomicBool>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        // A later connection with the same ends may have registered since: leave it.
        if waiting.get(ends).is_some_and(|entry| Arc::ptr_eq(entry, served)) {
            waiting.remove(ends);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

type SlotFuture = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// How long accepting pauses after an error (out of descriptors, most likely)
/// instead of trying again at once and spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The listener's accepted connections, each holding one of the slots.
pub(super) struct BoundedIncoming {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    slot: Option<OwnedSemaphorePermit>,
    waiting_for_slot: Option<SlotFuture>,
    paused: Option<Pin<Box<Sleep>>>,
    first_request_timeout: Duration,
    first_requests: Arc<FirstRequests>,
}

impl BoundedIncoming {
    pub(super) fn new(listener: TcpListener, limits: ConnectionLimits, first_requests: Arc<FirstRequests>) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            slot: None,
            waiting_for_slot: None,
            paused: None,
            first_request_timeout: limits.first_request_timeout,
            first_requests,
        }
    }
}

impl tokio_stream::Stream for BoundedIncoming {
    type Item = io::Result<BoundedStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(pause) = &mut this.paused {
            ready!(pause.as_mut().poll(cx));
            this.paused = None;
        }
        if this.slot.is_none() {
            let slots = this.slots.clone();
            let waiting = this.waiting_for_slot.get_or_insert_with(|| Box::pin(slots.acquire_owned()));
            let acquired = ready!(waiting.as_mut().poll(cx));
            this.waiting_for_slot = None;
            // The semaphore is never closed; should it be, stop serving.
            let Ok(slot) = acquired else { return Poll::Ready(None) };
            this.slot = Some(slot);
        }
        match ready!(this.listener.poll_accept(cx)) {
            Ok((io, _)) => {
                // Nagle's algorithm would hold back the later frames of an answer
                // (headers, data and trailers go out as separate writes) until the client ACKs.
                let _ = io.set_nodelay(true);
                let ends = (io.local_addr().ok(), io.peer_addr().ok());
                let served = this.first_requests.register(ends);
                let Some(slot) = this.slot.take() else { unreachable!("a slot is held before accepting") };
                Poll::Ready(Some(Ok(BoundedStream {
                    io,
                    _slot: slot,
                    first_request: Some(Box::pin(tokio::time::sleep(this.first_request_timeout))),
                    served,
                    ends,
                    first_requests: this.first_requests.clone(),
                })))
            }
            Err(error) => {
                tracing::warn!(%error, "cannot accept a connection; pausing");
                let mut pause = Box::pin(tokio::time::sleep(ACCEPT_ERROR_PAUSE));
                // Registers the wake-up; the pause is checked on the next poll.
                let _ = pause.as_mut().poll(cx);
                this.paused = Some(pause);
                Poll::Pending
            }
        }
    }
}

/// An accepted connection: its slot, and its first-request deadline until a
/// request comes.
pub(super) struct BoundedStream {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
    first_request: Option<Pin<Box<Sleep>>>,
    served: Arc<AtomicBool>,
    ends: Ends,
    first_requests: Arc<FirstRequests>,
}

impl BoundedStream {
    /// An error once the first-request deadline has passed without a
    /// request; `wait` registers for a wake-up at the deadline.
    fn check_first_request(&mut self, cx: &mut Context<'_>, wait: bool) -> io::Result<()> {
        let Some(deadline) = &mut self.first_request else { return Ok(()) };
        if self.served.load(Ordering::Acquire) {
            self.first_request = None;
            return Ok(());
        }
        let passed = if wait { deadline.as_mut().poll(cx).is_ready() } else { deadline.is_elapsed() };
        if passed {
            tracing::debug!(peer = ?self.ends.1, "closing a connection that carried no request in time");
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no request within the first-request timeout"));
        }
        Ok(())
    }
}

impl Drop for BoundedStream {
    fn drop(&mut self) {
        if self.first_request.is_some() {
            self.first_requests.forget(&self.ends, &self.served);
        }
    }
}

impl Connected for BoundedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for BoundedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.check_first_request(cx, true)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.check_first_request(cx, false)?;
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_first_request(cx, false)?;
        Pin::new(&mut self.io).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The process's soft limit of open descriptors, from `/proc/self/limits`
/// (Linux); `None` where it cannot be read or is unlimited.
pub(super) fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests;
