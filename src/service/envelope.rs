//! The envelope every RPC passes through, in this order: shed when full,
//! authenticate the caller, resolve the tenant (once), apply the policy, then
//! run the flow inside its span and trace, within its deadline; count it and
//! log one self-contained line with method, protocol, tenant, caller, code,
//! reason, latency and trace id. Every RPC also writes one audit event
//! ([`crate::audit`]): opened before shedding and authentication, so refusals
//! of the caller are recorded too, and closed with the answer. gRPC and
//! JSON/HTTP calls both come through here; the JSON side marks its requests
//! with [`Protocol::Http`].

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;

use super::SsoGateway;
use crate::{
    audit::{self, AnswerNote, AuditedAnswer, AuditedRequest, Obtained, Opening},
    deadline::Deadline,
    error::SsoError,
    metrics::{self, Protocol},
    proto,
    trace_context::{self, TraceContext},
    upstream::Tenant,
};

/// What a flow is given: its tenant, its deadline, and the authenticated
/// caller (`None` when callers are not authenticated).
#[derive(Debug)]
pub(super) struct Call {
    pub tenant: Arc<Tenant>,
    pub deadline: Deadline,
    pub caller: Option<String>,
}

/// A flow's future, boxed: it holds the whole upstream exchange, and moving it
/// by value through the envelope, the trace scope and the span would copy it
/// at every layer and make every in-flight RPC several times its size.
pub(super) type FlowFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SsoError>> + Send + 'a>>;

/// A request that names its tenant.
pub(super) trait NamesTenant {
    fn tenant(&self) -> &str;
}

macro_rules! names_tenant {
    ($($request:ty),*) => {$(
        impl NamesTenant for $request {
            fn tenant(&self) -> &str {
                &self.tenant
            }
        }
    )*};
}

names_tenant!(proto::CreateAccountRequest, proto::IssueOneTimeTokenRequest, proto::LoginRequest, proto::RefreshRequest);

/// What an answer adds to its RPC's log line, beyond code and reason.
pub(super) trait LogNote {
    /// `Some(true)` when a CreateAccount was resolved by a lookup; `None`
    /// leaves the field out of the line.
    fn resolved_by_lookup(&self) -> Option<bool> {
        None
    }
}

impl LogNote for proto::CreateAccountResponse {
    fn resolved_by_lookup(&self) -> Option<bool> {
        self.resolved_by_lookup.then_some(true)
    }
}

impl LogNote for proto::IssueOneTimeTokenResponse {}
impl LogNote for proto::LoginResponse {}
impl LogNote for proto::RefreshResponse {}

impl SsoGateway {
    /// Runs `flow` for `request` inside the envelope.
    pub(super) async fn envelope<'a, Req: NamesTenant + AuditedRequest, Resp: LogNote + AuditedAnswer>(
        &'a self,
        method: &'static str,
        request: Request<Req>,
        flow: impl FnOnce(Call, Req) -> FlowFuture<'a, Resp>,
    ) -> Result<Response<Resp>, Status> {
        // The caller is named before shedding, so that even a shed call's log line says whose it was.
        let caller = match &self.callers {
            Some(callers) => callers.authenticate(&request).ok_or(SsoError::CallerUnauthenticated),
            None => Ok("anonymous".to_string()),
        };
        let caller_label = caller.as_deref().unwrap_or("unauthenticated");
        let tenant_field = request.get_ref().tenant();
        let tenant_label = if tenant_field.is_empty() { "(default)" } else { tenant_field }.to_string();
        let peer = request.remote_addr().map_or_else(|| "unknown".to_string(), socket_address_text);
        let trace = TraceContext::from_metadata(request.metadata());
        let protocol = request.extensions().get::<Protocol>().copied().unwrap_or(Protocol::Grpc);
        let deadline = Deadline::for_request(request.metadata(), self.upstream_timeout);
        let request_id = request.metadata().get("x-request-id").and_then(|id| id.to_str().ok());
        // Fields are passed as `&str`, so the log line copies them instead of
        // running each through the formatting machinery.
        let span = tracing::info_span!(
            "rpc",
            rpc.method = method,
            protocol = protocol.label(),
            tenant = tenant_label.as_str(),
            caller = caller_label,
            peer = peer.as_str(),
            trace_id = tracing::field::Empty,
        );
        let trace = trace.attach(&span);
        let trace_id = trace.trace_id();
        span.record("trace_id", trace_id.as_str());
        let mut audit_record = self.audit.open(Opening {
            method,
            protocol: protocol.label(),
            caller: caller.as_ref().ok().cloned(),
            tenant: tenant_field,
            email: request.get_ref().email(),
            request_id,
            trace_id: trace_id.clone(),
            peer: peer.clone(),
        });
        let answer_note = AnswerNote::default();
        self.metrics.rpc_started(method, protocol);
        let started = std::time::Instant::now();
        // A full service answers at once: an unbounded queue would only turn
        // overload into timeouts for everyone.
        let result = match self.in_flight.clone().try_acquire_owned() {
            Err(_) => Err(SsoError::Overloaded { limit: self.max_in_flight }),
            Ok(_permit) => match self.admit(method, &caller, tenant_field) {
                Ok(tenant) => {
                    audit_record.admitted_to(&tenant.settings.name);
                    let authenticated = self.callers.as_ref().and(caller.as_ref().ok().cloned());
                    let call = Call { tenant, deadline, caller: authenticated };
                    let flow = answer_note.scope(flow(call, request.into_inner()));
                    trace_context::scope(trace, flow).instrument(span).await
                }
                Err(refused) => {
                    // A refused caller's event still names the tenant it asked for, as resolved.
                    if let Some(tenant) = self.tenants.get(tenant_field) {
                        audit_record.admitted_to(&tenant.settings.name);
                    }
                    Err(refused)
                }
            },
        };
        let looked_up = result.as_ref().ok().and_then(LogNote::resolved_by_lookup);
        let result = self.audited(audit_record, result, answer_note.read(), looked_up).await;
        // An answer withheld for its audit event was not given, looked up or not.
        let resolved_by_lookup = looked_up.filter(|_| result.is_ok());
        let elapsed = started.elapsed();
        let (code, reason, outcome) = match result {
            Ok(response) => (Code::Ok, None, Ok(Response::new(response))),
            Err(error) => {
                let (code, reason) = error.code_and_reason();
                (code, Some(reason), Err(Status::from(error)))
            }
        };
        self.metrics.rpc_handled(method, protocol, code, reason, elapsed);
        // One self-contained line per RPC, whatever the log pipeline does with spans.
        tracing::info!(
            rpc.method = method,
            protocol = protocol.label(),
            tenant = tenant_label.as_str(),
            caller = caller_label,
            peer = peer.as_str(),
            code = metrics::code_name(code),
            reason = reason.unwrap_or(""),
            resolved_by_lookup,
            latency_us = elapsed.as_micros() as u64,
            trace_id = trace_id.as_str(),
            "rpc finished"
        );
        outcome
    }

    /// Closes the RPC's audit record with its result. A grant whose event
    /// cannot be written becomes AUDIT_UNAVAILABLE when the audit fails closed.
    async fn audited<Resp: AuditedAnswer>(
        &self,
        record: audit::Pending,
        result: Result<Resp, SsoError>,
        noted: Option<Obtained>,
        resolved_by_lookup: Option<bool>,
    ) -> Result<Resp, SsoError> {
        match result {
            Ok(answer) => {
                let obtained = match (noted, resolved_by_lookup) {
                    (Some(noted), _) => noted,
                    (None, Some(true)) => Obtained::Lookup,
                    (None, _) => Obtained::Vendor,
                };
                let written =
                    record.granted(answer.event_type(), answer.minted(), answer.account_uuid(), obtained).await;
                if written { Ok(answer) } else { Err(SsoError::AuditUnavailable) }
            }
            Err(error) => {
                let (code, reason) = error.code_and_reason();
                record.refused(metrics::code_name(code), reason, noted);
                Err(error)
            }
        }
    }

    /// Authentication first, then the tenant, then the policy.
    fn admit(
        &self,
        method: &'static str,
        caller: &Result<String, SsoError>,
        tenant_field: &str,
    ) -> Result<Arc<Tenant>, SsoError> {
        // Without a policy anyone may use every tenant, so may know their names;
        // with one, a caller learns only the names it may use for this call.
        let Some(callers) = &self.callers else { return self.tenant_or_list(tenant_field, |_| true) };
        let Ok(caller) = caller else { return Err(SsoError::CallerUnauthenticated) };
        let tenant = self.tenant_or_list(tenant_field, |name| callers.authorize(caller, method, name))?;
        if !callers.authorize(caller, method, &tenant.settings.name) {
            return Err(SsoError::CallerNotPermitted { caller: caller.clone() });
        }
        Ok(tenant)
    }

    /// The tenant a request names; empty selects the default. A refusal
    /// lists the tenants for which `may_know` holds.
    fn tenant_or_list(&self, name: &str, may_know: impl Fn(&str) -> bool) -> Result<Arc<Tenant>, SsoError> {
        self.tenants.get(name).ok_or_else(|| {
            let names = self.tenants.names();
            let known: Vec<&str> = names.iter().map(String::as_str).filter(|name| may_know(name)).collect();
            SsoError::unknown_tenant(&known)
        })
    }
}

/// `ip:port` for the log line. IPv4 is written digit by digit: through
/// `Display` it took over a thousand instructions, once per RPC.
fn socket_address_text(address: SocketAddr) -> String {
    let SocketAddr::V4(v4) = address else {
        return address.to_string();
    };
    fn push_decimal(text: &mut String, value: u16) {
        let mut digits = [0u8; 5];
        let mut count = 0;
        let mut rest = value;
        loop {
            digits[count] = b'0' + (rest % 10) as u8;
            count += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        text.extend(digits[..count].iter().rev().map(|&digit| char::from(digit)));
    }
    let mut text = String::with_capacity(21);
    for (index, octet) in v4.ip().octets().into_iter().enumerate() {
        if index > 0 {
            text.push('.');
        }
        push_decimal(&mut text, octet.into());
    }
    text.push(':');
    push_decimal(&mut text, v4.port());
    text
}

#[cfg(test)]
mod tests {
    use super::socket_address_text;

    #[test]
    fn socket_addresses_read_as_display_writes_them() {
        for text in ["127.0.0.1:0", "10.200.3.45:65535", "0.0.0.0:8080", "255.255.255.255:1", "[::1]:50051"] {
            let address: std::net::SocketAddr = text.parse().expect("an address");
            assert_eq!(socket_address_text(address), address.to_string());
        }
    }
}
