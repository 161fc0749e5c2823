//! How an RPC's answer was obtained, noted by the flow where it knows it (a
//! shared call, the reuse window, an idempotent replay) and read by the
//! envelope for the audit event. A task-local cell, scoped by the envelope
//! around the flow, keeps the flows' signatures free of audit plumbing; a
//! note made outside any scope (a detached task) is simply not seen.

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

use super::event::Obtained;

tokio::task_local! {
    static NOTE: Arc<AtomicU8>;
}

/// The envelope's end of the note: made before the flow, read after it.
#[derive(Debug, Clone, Default)]
pub struct AnswerNote(Arc<AtomicU8>);

impl AnswerNote {
    /// Runs `flow` with this note as the one [`note`] writes to.
    pub fn scope<F: Future>(&self, flow: F) -> impl Future<Output = F::Output> {
        NOTE.scope(self.0.clone(), flow)
    }

    /// What the flow noted, if anything.
    pub fn read(&self) -> Option<Obtained> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(Obtained::Vendor),
            2 => Some(Obtained::SharedCall),
            3 => Some(Obtained::ReuseWindow),
            4 => Some(Obtained::Lookup),
            5 => Some(Obtained::IdempotentReplay),
            _ => None,
        }
    }
}

/// Notes how the current RPC's answer was obtained.
pub fn note(how: Obtained) {
    let value = match how {
        Obtained::Vendor => 1,
        Obtained::SharedCall => 2,
        Obtained::ReuseWindow => 3,
        Obtained::Lookup => 4,
        Obtained::IdempotentReplay => 5,
    };
    let _ = NOTE.try_with(|cell| cell.store(value, Ordering::Relaxed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_note_made_inside_the_scope_is_read_and_one_outside_is_not() {
        let answer = AnswerNote::default();
        answer.scope(async { note(Obtained::ReuseWindow) }).await;
        assert_eq!(answer.read(), Some(Obtained::ReuseWindow));
        let untouched = AnswerNote::default();
        note(Obtained::SharedCall);
        assert_eq!(untouched.read(), None);
    }
}
