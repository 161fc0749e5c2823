//! The in-memory limiter as its users see it, on tokio's paused clock: exact
//! refusals, waits served in order, and the bound on waiting calls.

use super::*;

const HOLD: Duration = Duration::from_secs(61);

#[tokio::test(start_paused = true)]
async fn the_limit_passes_then_a_refusal_says_exactly_when_the_oldest_slot_frees() {
    let windows = SlidingWindows::in_memory();
    assert_eq!(windows.hold(), HOLD, "a slot is held for the window plus the margin");
    for left in [2, 1, 0] {
        assert_eq!(windows.take("k", 3).await, Ok(left));
        tokio::time::advance(Duration::from_secs(5)).await;
    }
    // The first call, 15 s ago, frees its slot 61 s after it was taken.
    assert_eq!(windows.take("k", 3).await, Err(Duration::from_secs(46)));
    assert!(windows.take("other", 3).await.is_ok(), "logs are per key");
    assert_eq!(windows.take("k", 0).await, Ok(u32::MAX), "0 is no limit");
    tokio::time::advance(Duration::from_secs(46)).await;
    assert_eq!(windows.take("k", 3).await, Ok(0), "the oldest slot has freed");
}

#[tokio::test(start_paused = true)]
async fn calls_that_wait_get_the_next_slots_in_order_and_are_counted_while_they_wait() {
    let windows = SlidingWindows::in_memory();
    let max_wait = Duration::from_secs(2);
    windows.reserve("k", 2, max_wait).await.expect("free");
    tokio::time::advance(Duration::from_millis(500)).await;
    windows.reserve("k", 2, max_wait).await.expect("free");
    tokio::time::advance(Duration::from_millis(59_500)).await;
    // 60 s in: the slots free at 61 s and 61.5 s.
    let first = windows.reserve("k", 2, max_wait).await.expect("frees within 2 s");
    let second = windows.reserve("k", 2, max_wait).await.expect("frees within 2 s");
    assert_eq!((first.wait(), second.wait()), (Duration::from_secs(1), Duration::from_millis(1500)));
    assert_eq!(windows.waiting_calls(), 2);
    let refused = windows.reserve("k", 2, max_wait).await.expect_err("the next frees at 122 s");
    assert_eq!(refused, Duration::from_secs(62));
    assert_eq!(windows.take("k", 2).await, Err(Duration::from_secs(62)), "reserved slots are taken");
    let started = Instant::now();
    first.until_free().await;
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(windows.waiting_calls(), 1);
    second.until_free().await;
    assert_eq!(started.elapsed(), Duration::from_millis(1500));
    assert_eq!(windows.waiting_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_gets_a_free_slot_is_not_counted_as_waiting() {
    let windows = SlidingWindows::in_memory();
    let slot = windows.reserve("k", 5, Duration::from_secs(2)).await.expect("free");
    assert_eq!((slot.wait(), windows.waiting_calls()), (Duration::ZERO, 0));
}

#[tokio::test(start_paused = true)]
async fn beyond_the_bound_on_waiting_calls_a_call_is_refused_at_once() {
    let windows = SlidingWindows::in_memory();
    let limit = u32::try_from(MAX_WAITING_CALLS).expect("small") + 10;
    for _ in 0..limit {
        windows.take("k", limit).await.expect("free");
    }
    let mut waiting = Vec::new();
    for _ in 0..MAX_WAITING_CALLS {
        waiting.push(windows.reserve("k", limit, HOLD).await.expect("a slot frees within the wait"));
    }
    assert_eq!(windows.waiting_calls(), MAX_WAITING_CALLS);
    let refused = windows.reserve("k", limit, HOLD).await.expect_err("too many wait already");
    assert_eq!(refused, HOLD, "told when the next slot frees");
    assert_eq!(windows.waiting_calls(), MAX_WAITING_CALLS, "a refused call is not counted");
    waiting.pop();
    assert!(windows.reserve("k", limit, HOLD).await.is_ok(), "room again once one stops waiting");
}

#[tokio::test(start_paused = true)]
async fn a_shorter_window_frees_slots_sooner_by_exactly_the_difference() {
    let windows = SlidingWindows::in_memory().with_window(Duration::from_secs(6));
    windows.take("k", 1).await.expect("free");
    assert_eq!(windows.take("k", 1).await, Err(Duration::from_secs(7)));
}

#[test]
fn email_keys_are_stable_case_insensitive_and_hide_the_email() {
    let key = email_key("acme", "Ada@Example.com");
    assert_eq!(key, email_key("acme", "ada@example.com"));
    assert_ne!(key, email_key("globex", "ada@example.com"));
    assert!(!key.contains("ada") && key.starts_with("email:"));
}

#[test]
fn a_replica_s_share_of_a_limit_rounds_up_and_is_never_zero() {
    assert_eq!(own_share(450, 2), 225);
    assert_eq!(own_share(20, 3), 7);
    assert_eq!(own_share(1, 6), 1, "a limit smaller than the fleet still lets each replica call");
    assert_eq!(own_share(20, 0), 20, "no replica count means one");
}
