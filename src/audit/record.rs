//! One RPC's audit record, from the envelope's first facts to its event. It
//! is closed with the answer (granted or refused); dropped unclosed, because
//! the caller went away or its deadline cut the RPC off, it writes the event
//! as abandoned. Either way, exactly one event per RPC.

use super::{
    Audit,
    event::{self, Data, EventType, Minted, Obtained, Outcome},
};

/// What the envelope knows of an RPC before its flow runs.
#[derive(Debug)]
pub struct Opening<'a> {
    pub method: &'static str,
    pub protocol: &'static str,
    pub caller: Option<String>,
    /// The tenant as requested; [`Pending::admitted_to`] replaces it with
    /// the resolved name.
    pub tenant: &'a str,
    pub email: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub trace_id: String,
    pub peer: String,
}

/// The longest tenant or request id an event repeats from a request: both
/// come from the caller and are cut so a hostile one cannot fill the stream.
const LONGEST_ECHO: usize = 128;

/// An RPC's record, open until its answer.
#[derive(Debug)]
pub struct Pending {
    audit: Audit,
    data: Option<Data>,
}

impl Audit {
    /// Opens the record of an RPC; the email is hashed here, before the flow
    /// takes the request.
    pub fn open(&self, opening: Opening<'_>) -> Pending {
        let echo = |text: &str| Some(text.chars().take(LONGEST_ECHO).collect::<String>()).filter(|t| !t.is_empty());
        let data = Data {
            method: opening.method,
            protocol: opening.protocol,
            caller: opening.caller,
            tenant: echo(opening.tenant),
            subject: self.inner.emails.subject(opening.email),
            outcome: Outcome::Abandoned,
            code: "Canceled",
            reason: None,
            minted: Vec::new(),
            obtained: None,
            request_id: opening.request_id.and_then(echo),
            trace_id: opening.trace_id,
            peer: opening.peer,
        };
        Pending { audit: self.clone(), data: Some(data) }
    }
}

impl Pending {
    /// The tenant the request was resolved to.
    pub fn admitted_to(&mut self, tenant: &str) {
        if let Some(data) = &mut self.data {
            data.tenant = Some(tenant.to_string());
        }
    }

    /// Closes the record of an OK answer. `false` when the event could not be
    /// written and the service fails closed: the answer must then not be given.
    pub async fn granted(
        mut self,
        event_type: EventType,
        minted: Vec<Minted>,
        account_uuid: Option<&str>,
        obtained: Obtained,
    ) -> bool {
        let Some(mut data) = self.data.take() else { return true };
        data.outcome = Outcome::Granted;
        data.code = "OK";
        data.minted = minted;
        data.subject.account_uuid = account_uuid.map(str::to_string);
        data.obtained = Some(obtained);
        let line = event::line(&self.audit.inner.source, event_type, &data);
        let sink = &self.audit.inner.sink;
        if self.audit.inner.fail_closed {
            return sink.send_and_confirm(event_type.name(), line).await;
        }
        sink.send(event_type.name(), line);
        true
    }

    /// Closes the record of a refusal with gRPC `code` and ErrorInfo `reason`.
    /// A refusal is given whether or not its event was written: failing it
    /// for that would only hide why it was refused.
    pub fn refused(mut self, code: &'static str, reason: &'static str, obtained: Option<Obtained>) {
        let Some(mut data) = self.data.take() else { return };
        data.outcome = Outcome::Refused;
        data.code = code;
        data.reason = Some(reason);
        data.obtained = obtained;
        self.write(EventType::of_refusal(reason), &data);
    }

    fn write(&self, event_type: EventType, data: &Data) {
        let line = event::line(&self.audit.inner.source, event_type, data);
        self.audit.inner.sink.send(event_type.name(), line);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            self.write(EventType::RequestRefused, &data);
        }
    }
}
