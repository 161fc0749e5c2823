//! Refresh with a reuse window. The platform rotates the refresh token, so of
//! two calls that present the same one, the second is refused and its user
//! signed out. Here, concurrent calls with the same tenant and token share
//! one vendor call (single flight), and its result is kept for the window,
//! sealed with keys only the token yields ([`crate::reuse_store`]): a repeat
//! in the window gets the same rotated session, from every replica when the
//! store is Redis, where a claim lets one replica call while the others wait
//! for its result within their deadlines. A refusal reaches the callers that
//! shared the call and is not remembered. A claim holds a random value and
//! is deleted only by its holder; a replica that wins one has looked for a
//! result once more in the same step; a run that ends without releasing its
//! claim (a panic) releases it on the way out.

use prost::Message as _;
use secrecy::{ExposeSecret as _, SecretString};
use std::{sync::Arc, time::Duration};

use super::{SsoGateway, replies, upstream_failure};
use crate::{
    audit::{self, Obtained},
    deadline::Deadline,
    error::SsoError,
    proto,
    reuse_store::{Claim, ClaimTicket, ReuseStore, SealingKeys},
    single_flight::{Role, SingleFlight},
    upstream::{Endpoint, Tenant, UpstreamError, UpstreamFault},
};

/// How often a replica waiting for another's result looks for it.
const POLL: Duration = Duration::from_millis(25);
/// How long a claim outlives its holder's deadline, should the holder die mid-call.
const CLAIM_MARGIN: Duration = Duration::from_secs(1);

/// Where a shared answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Vendor,
    Store,
}

type SharedAnswer = Result<(Arc<proto::RefreshResponse>, Source), UpstreamError>;

/// The refresh calls in flight in this process, and the remembered results.
#[derive(Debug)]
pub(super) struct RefreshReuse {
    store: ReuseStore,
    flights: SingleFlight<String, SharedAnswer>,
}

impl RefreshReuse {
    pub(super) fn new(store: ReuseStore) -> Self {
        Self { store, flights: SingleFlight::default() }
    }
}

impl SsoGateway {
    /// The session for `refresh_token`: shared with concurrent calls, or
    /// remembered from a call in the window, or from the vendor.
    pub(super) async fn shared_refresh(
        &self,
        reuse: &Arc<RefreshReuse>,
        tenant: &Arc<Tenant>,
        refresh_token: SecretString,
        deadline: Deadline,
    ) -> Result<proto::RefreshResponse, SsoError> {
        let keys = Arc::new(SealingKeys::derive(&tenant.settings.name, refresh_token.expose_secret().as_bytes()));
        let work = {
            let (reuse, tenant, keys) = (reuse.clone(), tenant.clone(), keys.clone());
            move || resolve(reuse, tenant, keys, refresh_token, deadline)
        };
        let shared = reuse.flights.run(keys.lookup().to_string(), deadline.instant(), work).await;
        let Some((answer, role)) = shared else {
            let gave_up = UpstreamError::new(Endpoint::Refresh, None, UpstreamFault::Timeout);
            return Err(upstream_failure(tenant)(gave_up));
        };
        let saved = match (role, &answer) {
            (Role::Joined, _) => Some("coalesced"),
            (Role::Led, Ok((_, Source::Store))) => Some("reused"),
            (Role::Led, _) => None,
        };
        if let Some(how) = saved {
            audit::note(if how == "reused" { Obtained::ReuseWindow } else { Obtained::SharedCall });
            self.metrics.vendor_call_saved(&tenant.settings.name, Endpoint::Refresh.name(), how);
        }
        let (response, _) = answer.map_err(upstream_failure(tenant))?;
        Ok(Arc::unwrap_or_clone(response))
    }
}

/// One replica's way to the answer: the store, else the claim and the vendor
/// call, else (another replica holds the claim) the store again until its
/// result is there, the claim is free, or the deadline passes.
async fn resolve(
    reuse: Arc<RefreshReuse>,
    tenant: Arc<Tenant>,
    keys: Arc<SealingKeys>,
    refresh_token: SecretString,
    deadline: Deadline,
) -> SharedAnswer {
    let remembered = |stored: Vec<u8>| {
        proto::RefreshResponse::decode(stored.as_slice()).ok().map(|response| Ok((Arc::new(response), Source::Store)))
    };
    let ticket = loop {
        if let Some(stored) = reuse.store.get(&keys).await
            && let Some(answer) = remembered(stored)
        {
            return answer;
        }
        match reuse.store.claim(&keys, deadline.remaining() + CLAIM_MARGIN).await {
            Claim::Ours(ticket) => break ticket,
            Claim::Stored(stored) => match remembered(stored) {
                Some(answer) => return answer,
                None => continue,
            },
            Claim::Taken if tokio::time::Instant::now() + POLL < deadline.instant() => {
                tokio::time::sleep(POLL).await;
            }
            Claim::Taken => return Err(UpstreamError::new(Endpoint::Refresh, None, UpstreamFault::Timeout)),
        }
    };
    let mut claim = HeldClaim { reuse: reuse.clone(), keys: keys.clone(), ticket: Some(ticket) };
    let answer = match tenant.platform.refresh(&refresh_token, deadline).await {
        Ok(granted) => {
            let response = replies::refreshed(&tenant.settings, &granted);
            reuse.store.put(&keys, &response.encode_to_vec()).await;
            Ok((Arc::new(response), Source::Vendor))
        }
        Err(refused) => Err(refused),
    };
    claim.release().await;
    answer
}

/// A claim this replica holds; dropped unreleased (the run panicked or was
/// cancelled), it is released on a task of its own rather than left to expire.
struct HeldClaim {
    reuse: Arc<RefreshReuse>,
    keys: Arc<SealingKeys>,
    ticket: Option<ClaimTicket>,
}

impl HeldClaim {
    async fn release(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.reuse.store.release(&self.keys, &ticket).await;
        }
    }
}

impl Drop for HeldClaim {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else { return };
        let (reuse, keys) = (self.reuse.clone(), self.keys.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { reuse.store.release(&keys, &ticket).await });
        }
    }
}
