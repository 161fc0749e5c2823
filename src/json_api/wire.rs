//! The JSON side's copy of the `matchtrader.sso.v1` messages: generated from
//! the same descriptors as the gRPC types, with pbjson's serde impls for
//! protobuf's canonical JSON mapping (unknown fields refused). A message
//! crosses between the two copies through the protobuf wire format, so the
//! service code only ever sees the gRPC types and the conversion needs no
//! code per message.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

use prost::Message;
use std::fmt;

include!(concat!(env!("OUT_DIR"), "/json/matchtrader.sso.v1.rs"));
include!(concat!(env!("OUT_DIR"), "/json/matchtrader.sso.v1.serde.rs"));

/// `message` as the other copy of the same proto message. Both copies come
/// from one descriptor, so decoding cannot fail; if it ever did, the caller
/// gets INTERNAL, not a panic.
pub fn transcode<From: Message, To: Message + Default>(message: &From) -> Result<To, tonic::Status> {
    To::decode(message.encode_to_vec().as_slice())
        .map_err(|_| tonic::Status::internal("a message could not be converted between its JSON and gRPC forms"))
}

/// Messages that carry a password or token print only their name: the JSON
/// side has no reason to print them at all.
macro_rules! redacted_debug {
    ($($message:ident),*) => {$(
        impl fmt::Debug for $message {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($message)).finish_non_exhaustive()
            }
        }
    )*};
}

redacted_debug!(CreateAccountRequest, LoginRequest, RefreshRequest, LoginLink, Session, BrowserCookie);
