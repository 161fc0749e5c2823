//! How a CreateAccount outcome is kept for its idempotency key: which
//! request a key belongs to, which outcomes a retry must see again, and how
//! a stored outcome is replayed.

use prost::Message as _;
use tonic::{Code, Status};

use crate::{
    audit::{self, Obtained},
    error::SsoError,
    hex,
    idempotency::{Outcome, RequestIdentity},
    proto,
    upstream::UpstreamFault,
};

/// What identifies a CreateAccount request for its idempotency key: the
/// request without its key and tenant. The store keeps only a keyed hash of
/// it (HMAC under a key the idempotency key yields), so the password in it
/// can be neither read nor guessed from the store.
pub(super) fn request_fingerprint(request: &proto::CreateAccountRequest) -> RequestIdentity {
    let mut essence = request.clone();
    essence.idempotency_key.clear();
    essence.tenant.clear();
    RequestIdentity::new(essence.encode_to_vec())
}

/// The outcomes a retry must see again: an account (also one found by the
/// lookup after a lost answer), or a definite refusal by the vendor. Anything else means nothing was created, so a retry runs anew
/// (and if the vendor did create the account, it then says it already exists).
pub(super) fn recordable(result: &Result<proto::CreateAccountResponse, SsoError>) -> Option<Outcome> {
    match result {
        Ok(response) => Some(Outcome::Created(hex::encode(&response.encode_to_vec()))),
        Err(SsoError::Upstream { tenant, error })
            if matches!(error.fault, UpstreamFault::AccountAlreadyExists | UpstreamFault::RequestRejected) =>
        {
            let status = Status::from(SsoError::Upstream { tenant: tenant.clone(), error: error.clone() });
            Some(Outcome::Failed {
                code: status.code() as i32,
                message: status.message().to_string(),
                details: hex::encode(status.details()),
            })
        }
        Err(_) => None,
    }
}

/// The stored outcome, as the first call answered it.
pub(super) fn replay(outcome: Outcome) -> Result<proto::CreateAccountResponse, SsoError> {
    audit::note(Obtained::IdempotentReplay);
    match outcome {
        Outcome::Created(hex) => hex::decode(&hex)
            .ok()
            .and_then(|bytes| proto::CreateAccountResponse::decode(bytes.as_slice()).ok())
            .ok_or(SsoError::IdempotencyUnavailable),
        Outcome::Failed { code, message, details } => {
            let details = hex::decode(&details).map_err(|_| SsoError::IdempotencyUnavailable)?;
            Err(SsoError::Replayed(Box::new(Status::with_details(Code::from(code), message, details.into()))))
        }
    }
}
