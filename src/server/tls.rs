//! TLS on the main listener through a configuration that can be replaced
//! while serving (see `reload`): each new connection's handshake takes the
//! configuration current at its accept, so a new certificate applies to new
//! connections, while connections already open, and the calls on them, keep
//! the session they negotiated.
//!
//! Handshakes run concurrently, each bounded by the handshake timeout, so a
//! caller that stalls its handshake holds only its own connection (and its
//! slot, see [`super::connections`]), never the accepting of others.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use super::connections::{BoundedIncoming, BoundedStream};
use crate::reloadable::Reloadable;

/// The server's TLS configuration, replaced when its files change.
pub type ServerTls = Reloadable<rustls::ServerConfig>;

/// The bounded connections of the main listener, after their TLS handshake.
pub(super) struct TlsIncoming {
    plain: BoundedIncoming,
    plain_ended: bool,
    config: ServerTls,
    handshake_timeout: Duration,
    handshakes: JoinSet<Option<TlsStream<BoundedStream>>>,
}

impl TlsIncoming {
    pub(super) fn new(plain: BoundedIncoming, config: ServerTls, handshake_timeout: Duration) -> Self {
        Self { plain, plain_ended: false, config, handshake_timeout, handshakes: JoinSet::new() }
    }

    fn start_handshake(&mut self, stream: BoundedStream) {
        let acceptor = TlsAcceptor::from(self.config.current());
        let timeout = self.handshake_timeout;
        self.handshakes.spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some(tls),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!("closing a connection whose TLS handshake took too long");
                    None
                }
            }
        });
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = io::Result<TlsStream<BoundedStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        while !this.plain_ended {
            match Pin::new(&mut this.plain).poll_next(cx) {
                Poll::Ready(Some(Ok(stream))) => this.start_handshake(stream),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => this.plain_ended = true,
                Poll::Pending => break,
            }
        }
        loop {
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(tls)))) => return Poll::Ready(Some(Ok(tls))),
                // A failed handshake closed its connection already.
                Poll::Ready(Some(_)) => {}
                Poll::Ready(None) if this.plain_ended => return Poll::Ready(None),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}
