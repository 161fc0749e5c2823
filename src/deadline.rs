//! The time an RPC may spend upstream: the caller's `grpc-timeout`, capped by
//! configuration, minus a small margin so that our own, explained
//! DEADLINE_EXCEEDED reaches the caller before tonic cancels the call.

use std::time::Duration;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;

/// The longest margin kept back from the caller's deadline.
const MAX_MARGIN: Duration = Duration::from_millis(50);

/// The instant by which every upstream call of one RPC must have answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline of a request that arrived now with the given metadata.
    pub fn for_request(metadata: &MetadataMap, cap: Duration) -> Self {
        let budget = match metadata.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout) {
            Some(timeout) => {
                let margin = (timeout / 10).min(MAX_MARGIN);
                (timeout - margin).min(cap)
            }
            None => cap,
        };
        Self(Instant::now() + budget)
    }

    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    /// The instant itself.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// Time left before the deadline; zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Parses a `grpc-timeout` header value: at most 8 digits and a unit
/// (`H`ours, `M`inutes, `S`econds, `m`illis, `u`micros, `n`anos).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units_are_all_understood() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for bad in ["", "S", "123456789S", "12x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn caller_deadline_is_capped_and_keeps_a_margin() {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", "300m".parse().expect("ascii"));
        let remaining = Deadline::for_request(&metadata, Duration::from_secs(10)).remaining();
        assert_eq!(remaining, Duration::from_millis(270));

        metadata.insert("grpc-timeout", "60S".parse().expect("ascii"));
        assert_eq!(Deadline::for_request(&metadata, Duration::from_secs(10)).remaining(), Duration::from_secs(10));
        assert_eq!(
            Deadline::for_request(&MetadataMap::new(), Duration::from_secs(3)).remaining(),
            Duration::from_secs(3)
        );
    }
}
