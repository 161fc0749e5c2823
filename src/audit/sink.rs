//! Where audit lines go: stdout or an append-only file, written by a thread of
//! their own so that a slow disk never stalls the runtime's workers. Lines
//! wait in a bounded queue; a full queue loses the line rather than blocking
//! an RPC. A line sent with a receipt learns whether it was written, which is
//! what fail-closed waits for. Every line written or lost is counted; a
//! written line is also copied to OTLP when that is set up ([`super::otlp`]).

use std::{
    fs::OpenOptions,
    io::{self, Write},
    path::Path,
    sync::{
        Arc,
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread::JoinHandle,
};
use tokio::sync::oneshot;

use super::otlp::OtlpCopy;
use crate::metrics::Metrics;

/// Lines that may wait for the writer. At a few hundred bytes each this bounds
/// the memory of a stalled sink to about a megabyte.
pub const QUEUE_LINES: usize = 4096;

/// How long a fail-closed RPC waits for its line to be written.
pub const CONFIRM_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the end of the service waits for queued lines to be written.
const DRAIN_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(2);

/// One line for the writer, with its type for the count and, for fail-closed,
/// where to report whether it was written.
struct Job {
    line: Vec<u8>,
    event_type: &'static str,
    receipt: Option<oneshot::Sender<bool>>,
}

/// The writer's end: a queue into its thread. Dropping the last clone lets
/// the thread write what is queued and end.
#[derive(Debug, Clone)]
pub struct Sink {
    queue: SyncSender<Job>,
    metrics: Arc<Metrics>,
    /// Joined when the last clone goes, so queued lines are written before exit.
    _writer: Arc<WriterThread>,
}

#[derive(Debug)]
struct WriterThread(Option<JoinHandle<()>>);

impl Drop for WriterThread {
    fn drop(&mut self) {
        // By now every sender is gone (this is dropped after the queue in
        // each Sink), so the thread ends once the queue is written. A writer
        // stuck on a stdout nobody reads must not hold the exit forever.
        let Some(thread) = self.0.take() else { return };
        let until = std::time::Instant::now() + DRAIN_AT_EXIT;
        while !thread.is_finished() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("event_type", &self.event_type).finish_non_exhaustive()
    }
}

impl Sink {
    /// Lines to stdout.
    pub fn stdout(otlp: Option<OtlpCopy>, metrics: Arc<Metrics>) -> io::Result<Self> {
        Self::start(Box::new(StdoutLines), otlp, metrics)
    }

    /// Lines appended to `path`, created if missing; opened now, so a path
    /// that cannot be written stops the start.
    pub fn file(path: &Path, otlp: Option<OtlpCopy>, metrics: Arc<Metrics>) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Self::start(Box::new(file), otlp, metrics)
    }

    /// Lines to any writer (tests use one that fails), copied to `otlp`.
    pub fn start(out: Box<dyn Write + Send>, otlp: Option<OtlpCopy>, metrics: Arc<Metrics>) -> io::Result<Self> {
        let (queue, jobs) = mpsc::sync_channel(QUEUE_LINES);
        let counts = metrics.clone();
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_all(out, otlp, jobs, &counts))?;
        Ok(Self { queue, metrics, _writer: Arc::new(WriterThread(Some(writer))) })
    }

    /// Queues `line` and goes on; a full queue loses it (counted).
    pub fn send(&self, event_type: &'static str, line: Vec<u8>) {
        self.enqueue(Job { line, event_type, receipt: None });
    }

    /// Queues `line` and waits until it is written: `false` when it was lost,
    /// or not written within [`CONFIRM_WITHIN`] (a stalled disk or an unread
    /// pipe must not hold the RPC forever; the line may still be written later).
    pub async fn send_and_confirm(&self, event_type: &'static str, line: Vec<u8>) -> bool {
        let (receipt, written) = oneshot::channel();
        if !self.enqueue(Job { line, event_type, receipt: Some(receipt) }) {
            return false;
        }
        matches!(tokio::time::timeout(CONFIRM_WITHIN, written).await, Ok(Ok(true)))
    }

    fn enqueue(&self, job: Job) -> bool {
        match self.queue.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.metrics.audit_event_lost("queue_full");
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.audit_event_lost("write_failed");
                false
            }
        }
    }
}

/// The writer thread: each line in one write, flushed, then counted and
/// copied; the OTLP copy is flushed when the queue closes and it is dropped.
fn write_all(mut out: Box<dyn Write + Send>, otlp: Option<OtlpCopy>, jobs: Receiver<Job>, metrics: &Metrics) {
    for job in jobs {
        let written = out.write_all(&job.line).and_then(|()| out.flush()).is_ok();
        if written {
            metrics.audit_event_written(job.event_type);
            if let Some(otlp) = &otlp {
                otlp.emit(job.event_type, &job.line);
            }
        } else {
            metrics.audit_event_lost("write_failed");
        }
        if let Some(receipt) = job.receipt {
            let _ = receipt.send(written);
        }
    }
}

/// Stdout, locked for each line so that a log line written at the same time
/// never lands inside it.
struct StdoutLines;

impl Write for StdoutLines {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes).map(|()| bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Refusing;

    impl Write for Refusing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_refused_write_is_reported_to_the_waiting_call_and_counted_as_lost() {
        let metrics = Arc::new(Metrics::new());
        assert!(
            metrics.render().contains("mtr_sso_audit_events_lost_total{cause=\"write_failed\"} 0"),
            "0 from the start"
        );
        let sink = Sink::start(Box::new(Refusing), None, metrics.clone()).expect("thread");
        assert!(!sink.send_and_confirm("t", b"x\n".to_vec()).await);
        sink.send("t", b"y\n".to_vec());
        drop(sink);
        assert!(metrics.render().contains("mtr_sso_audit_events_lost_total{cause=\"write_failed\"} 2"));
    }

    /// A writer that never returns, like a pipe nobody reads.
    struct Stalled(std::sync::mpsc::Receiver<()>);

    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Err(io::Error::other("closed"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_writer_fails_the_confirmation_in_bounded_time() {
        let (release, stalled) = std::sync::mpsc::channel();
        let sink = Sink::start(Box::new(Stalled(stalled)), None, Arc::new(Metrics::new())).expect("thread");
        let started = tokio::time::Instant::now();
        assert!(!sink.send_and_confirm("t", b"x\n".to_vec()).await, "not confirmed");
        assert_eq!(started.elapsed(), CONFIRM_WITHIN);
        drop(release);
    }

    #[test]
    fn lines_beyond_a_full_queue_are_lost_at_once_and_counted() {
        let (release, stalled) = std::sync::mpsc::channel();
        let metrics = Arc::new(Metrics::new());
        let sink = Sink::start(Box::new(Stalled(stalled)), None, metrics.clone()).expect("thread");
        let started = std::time::Instant::now();
        // One line is taken by the stalled writer, QUEUE_LINES wait, the rest are lost.
        for _ in 0..QUEUE_LINES + 11 {
            sink.send("t", b"x\n".to_vec());
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "sending never blocks");
        let lost = metrics.render();
        let counted = lost
            .lines()
            .find(|line| line.starts_with("mtr_sso_audit_events_lost_total{cause=\"queue_full\"}"))
            .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok());
        assert!(matches!(counted, Some(10..=11)), "{lost}");
        drop(release);
    }

    #[tokio::test]
    async fn a_written_line_is_confirmed_and_counted_by_type() {
        let metrics = Arc::new(Metrics::new());
        let sink = Sink::start(Box::new(io::sink()), None, metrics.clone()).expect("thread");
        assert!(sink.send_and_confirm("mtr-sso.token.created.v1", b"x\n".to_vec()).await);
        drop(sink);
        assert!(metrics.render().contains("mtr_sso_audit_events_total{type=\"mtr-sso.token.created.v1\"} 1"));
    }
}
