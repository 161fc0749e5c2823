//! The figures of a quota burst, computed from what the vendor saw (the
//! sandbox's record of arrivals) and from what the callers saw (each call's
//! outcome and latency). Pure functions, so they are tested on their own.

use std::time::Duration;

/// One request as the vendor saw it: when (since the sandbox started) and
/// whether its rate limit refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub at: Duration,
    pub refused: bool,
}

/// The most requests the vendor saw within any `window` (half-open, starting
/// at any request), refused ones included.
pub fn most_in_any_window(seen: &[Seen], window: Duration) -> usize {
    let mut times: Vec<Duration> = seen.iter().map(|s| s.at).collect();
    times.sort();
    let mut most = 0;
    let mut end = 0;
    for (start, &from) in times.iter().enumerate() {
        while end < times.len() && times[end] < from + window {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

/// Requests the vendor accepted within `span` of the first request it saw.
pub fn accepted_within(seen: &[Seen], span: Duration) -> usize {
    let Some(first) = seen.iter().map(|s| s.at).min() else { return 0 };
    seen.iter().filter(|s| !s.refused && s.at < first + span).count()
}

/// The `q` quantile (0 to 1) of `values` by nearest rank; zero when empty.
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The `count` longest of `latencies`: the calls that waited for a quota
/// slot are those the gateway counted as waiting, and they are the slowest,
/// since a call that did not wait answers in about a millisecond.
pub fn longest(latencies: &[Duration], count: usize) -> Vec<Duration> {
    let mut sorted = latencies.to_vec();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.truncate(count);
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn seen(at_ms: &[u64]) -> Vec<Seen> {
        at_ms.iter().map(|&at| Seen { at: ms(at), refused: false }).collect()
    }

    #[test]
    fn the_busiest_window_is_found_wherever_it_starts() {
        let arrivals = seen(&[0, 100, 900, 1000, 1050, 1999, 3000]);
        // [100, 1100) holds 100, 900, 1000 and 1050; [1000, 2000) holds 1000, 1050 and 1999.
        assert_eq!(most_in_any_window(&arrivals, ms(1000)), 4);
        assert_eq!(most_in_any_window(&arrivals, ms(1)), 1);
        assert_eq!(most_in_any_window(&[], ms(1000)), 0);
    }

    #[test]
    fn a_request_exactly_one_window_later_is_in_the_next_window() {
        assert_eq!(most_in_any_window(&seen(&[0, 1000, 2000]), ms(1000)), 1);
    }

    #[test]
    fn accepted_requests_are_counted_from_the_first_one_seen_and_refused_ones_are_not() {
        let mut arrivals = seen(&[500, 600, 1400, 1500]);
        arrivals.push(Seen { at: ms(700), refused: true });
        assert_eq!(accepted_within(&arrivals, ms(1000)), 3, "500, 600 and 1400, not 1500");
    }

    #[test]
    fn quantiles_take_the_nearest_rank_and_the_longest_are_the_slowest() {
        let values: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(quantile(&values, 0.5), ms(50));
        assert_eq!(quantile(&values, 0.99), ms(99));
        assert_eq!(quantile(&values, 1.0), ms(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
        assert_eq!(longest(&[ms(3), ms(1), ms(7), ms(5)], 2), vec![ms(7), ms(5)]);
    }
}
