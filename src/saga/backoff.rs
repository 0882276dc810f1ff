//! How long an order waits before the saga looks at it again: polls that back off while a
//! transaction is pending, a growing pause for a reclaim the chain refuses, and the count of
//! a delegation's failures on chain.

use flashrent_events::OrderId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The longest pause between two tries of a reclaim the chain refuses.
const MAX_REFUSED_RECLAIM_PAUSE: Duration = Duration::from_secs(600);
/// Refusals after which a reclaim is logged as an error (a lock outlasts a few).
const REFUSALS_BEFORE_ALERT: u32 = 8;

pub(super) struct Backoff {
    poll_interval: Duration,
    /// Per waiting order: the next poll interval (it backs off) and failures on chain so far.
    pauses: Mutex<HashMap<OrderId, Pause>>,
}

#[derive(Clone, Copy)]
struct Pause {
    wait: Duration,
    failures: u32,
    /// Reclaims the chain refused so far.
    refusals: u32,
}

impl Backoff {
    pub(super) fn new(poll_interval: Duration) -> Backoff {
        Backoff {
            poll_interval,
            pauses: Mutex::new(HashMap::new()),
        }
    }

    /// How long a parked order waits before its next poll: quick at first, then backing off
    /// to a third of the chain's usual confirmation time, so polls stay few on slow chains.
    /// While the block scanner keeps up, it wakes the order when its transaction lands, and
    /// this is only the fallback, `scanned_fallback`.
    pub(super) fn next_poll(
        &self,
        id: OrderId,
        scanner_keeps_up: bool,
        scanned_fallback: Duration,
        expected_confirmation: Duration,
    ) -> Duration {
        if scanner_keeps_up {
            return scanned_fallback;
        }
        let first = self.poll_interval;
        let ceiling = (expected_confirmation / 3).max(first);
        self.with_pause(id, |pause| {
            let now = pause.wait;
            pause.wait = (pause.wait * 2).min(ceiling);
            now
        })
    }

    /// The order's pause record, started at the first poll interval.
    fn with_pause<T>(&self, id: OrderId, f: impl FnOnce(&mut Pause) -> T) -> T {
        let mut pauses = self.pauses.lock().expect("saga lock");
        f(pauses.entry(id).or_insert(Pause {
            wait: self.poll_interval,
            failures: 0,
            refusals: 0,
        }))
    }

    /// A reclaim the chain will not take yet: the renter's lock has not run out (TRON
    /// extends one lock over every delegation to the same receiver), or the delegation is
    /// gone from chain (undelegated by hand). Only the supplier's energy waits, never money,
    /// so the order is parked with a growing pause rather than retried hot, and said loudly.
    /// Returns the pause.
    pub(super) fn reclaim_refused(&self, id: OrderId, why: &str) -> Duration {
        let refusals = self.with_pause(id, |pause| {
            pause.refusals += 1;
            pause.refusals
        });
        let after = (self.poll_interval * 2u32.saturating_pow(refusals.min(16)))
            .min(MAX_REFUSED_RECLAIM_PAUSE);
        if refusals >= REFUSALS_BEFORE_ALERT {
            tracing::error!(order_id = %id, why, refusals, retry_in = ?after, "the chain keeps refusing this rental's reclaim; the supplier's energy stays delegated until it takes it");
        } else {
            tracing::warn!(order_id = %id, why, retry_in = ?after, "reclaim refused by the chain; trying again later");
        }
        after
    }

    /// Counts a delegation of this order that failed on chain; returns the count so far.
    pub(super) fn failed_on_chain(&self, id: OrderId) -> u32 {
        let first = self.poll_interval;
        self.with_pause(id, |pause| {
            pause.failures += 1;
            pause.wait = first;
            pause.failures
        })
    }

    /// The order left the saga's hands: its pauses start over if it comes back.
    pub(super) fn forget(&self, id: OrderId) {
        self.pauses.lock().expect("saga lock").remove(&id);
    }

    /// Ended rentals whose reclaim the chain refuses for now.
    pub(super) fn reclaims_refused(&self) -> usize {
        let pauses = self.pauses.lock().expect("saga lock");
        pauses.values().filter(|p| p.refusals > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_millis(100);
    const SCANNED: Duration = Duration::from_secs(5);

    fn id(n: u128) -> OrderId {
        OrderId::from_uuid(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn polls_double_up_to_a_third_of_the_confirmation_time_unless_the_scanner_keeps_up() {
        let b = Backoff::new(POLL);
        let block = Duration::from_secs(3);
        let polls: Vec<u128> = (0..6)
            .map(|_| b.next_poll(id(1), false, SCANNED, block).as_millis())
            .collect();
        assert_eq!(polls, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.next_poll(id(1), true, SCANNED, block), SCANNED);
        // Another order starts from the first interval; so does this one once forgotten.
        assert_eq!(b.next_poll(id(2), false, SCANNED, block), POLL);
        b.forget(id(1));
        assert_eq!(b.next_poll(id(1), false, SCANNED, block), POLL);
    }

    #[test]
    fn a_refused_reclaim_waits_longer_each_time_up_to_ten_minutes() {
        let b = Backoff::new(POLL);
        let pauses: Vec<u64> = (0..14)
            .map(|_| b.reclaim_refused(id(1), "locked").as_secs())
            .collect();
        assert_eq!(&pauses[..4], [0, 0, 0, 1]);
        assert_eq!(pauses[11], 409);
        assert_eq!(pauses[12], 600);
        assert_eq!(pauses[13], 600);
        assert_eq!(b.reclaims_refused(), 1);
        b.forget(id(1));
        assert_eq!(b.reclaims_refused(), 0);
    }

    #[test]
    fn failures_on_chain_are_counted_and_start_the_polls_over() {
        let b = Backoff::new(POLL);
        let block = Duration::from_secs(3);
        for _ in 0..3 {
            b.next_poll(id(1), false, SCANNED, block);
        }
        assert_eq!(b.failed_on_chain(id(1)), 1);
        assert_eq!(b.next_poll(id(1), false, SCANNED, block), POLL);
        assert_eq!(b.failed_on_chain(id(1)), 2);
    }
}
