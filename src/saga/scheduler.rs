//! Which order the saga's workers drive next: the queues of orders kicked and woken, the
//! orders in flight, the orders parked until they are due again, the refill of the queue
//! from an index of unfinished orders, and the pace of starts. It knows nothing of the chain
//! or the engine: an order is an id, with what the saga holds of it (`P`) while it is queued
//! or parked.

use flashrent_events::OrderId;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub(super) struct Scheduler<P> {
    /// Orders queued at most (kicks beyond it are turned away).
    queue_max: usize,
    poll_interval: Duration,
    held: Mutex<Held<P>>,
    queue: mpsc::UnboundedSender<OrderId>,
    /// Orders the chain has answered for: taken before any of `queue`, so orders already on
    /// chain finish first rather than behind every new order of a burst.
    urgent: mpsc::UnboundedSender<OrderId>,
    queued: tokio::sync::Mutex<Queues>,
    /// Orders in `queue` (at most `queue_max`).
    queued_len: AtomicUsize,
    /// Kicks turned away by a full queue, ever: while any came after the refill last went
    /// through the whole index, the index has orders the queue does not.
    turned_away: AtomicU64,
    /// Orders waiting on the chain, by when to ask again. A worker never sits on a pending
    /// transaction: it parks the order here and takes the next one.
    parked: Mutex<Parked>,
    shutdown: watch::Receiver<bool>,
}

struct Queues {
    urgent: mpsc::UnboundedReceiver<OrderId>,
    normal: mpsc::UnboundedReceiver<OrderId>,
}

/// Orders queued or being driven, those of them woken or made stale meanwhile, and what the
/// saga holds of the orders queued or parked. One lock: an order handed over with what is
/// known of it is never driven without it.
struct Held<P> {
    ids: HashSet<OrderId>,
    /// Woken while driven: driven again at once instead of parked, since what woke them (the
    /// block scan finding their transaction) may have come after their driver last looked.
    woken: HashSet<OrderId>,
    /// Changed by someone else while driven: driven again at once, from the read models.
    stale: HashSet<OrderId>,
    known: HashMap<OrderId, P>,
}

/// Orders waiting on the chain, by when to come back, and the same orders by id (a refill
/// of the queue leaves them be).
#[derive(Default)]
struct Parked {
    by_time: BTreeSet<(Instant, OrderId)>,
    ids: HashSet<OrderId>,
}

/// How a drive of an order ended.
#[derive(Debug)]
pub(super) enum End<P> {
    /// Waiting on the chain: back after this long, with what the drive knew of it.
    Park { after: Duration, known: P },
    /// Nothing to do until an event or an index brings the order back.
    Release,
}

/// Where an order went after its drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finished {
    /// Queued again at once (woken or made stale meanwhile).
    Again,
    Parked,
    /// Out of the saga's hands.
    Released,
}

impl<P> Scheduler<P> {
    pub(super) fn new(
        queue_max: usize,
        poll_interval: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Scheduler<P> {
        let (queue, normal) = mpsc::unbounded_channel();
        let (urgent, urgent_rx) = mpsc::unbounded_channel();
        Scheduler {
            queue_max: queue_max.max(1),
            poll_interval,
            held: Mutex::new(Held {
                ids: HashSet::new(),
                woken: HashSet::new(),
                stale: HashSet::new(),
                known: HashMap::new(),
            }),
            queue,
            urgent,
            queued: tokio::sync::Mutex::new(Queues {
                urgent: urgent_rx,
                normal,
            }),
            queued_len: AtomicUsize::new(0),
            // The index holds what a previous run left: the first refill goes through it.
            turned_away: AtomicU64::new(1),
            parked: Mutex::new(Parked::default()),
            shutdown,
        }
    }

    /// Makes sure the order is being driven, or queued to be, with `known` if it is queued
    /// now. A kick while it is queued or driven changes nothing: kicks come from the
    /// order's own events, which its driver has anyway.
    pub(super) fn kick(&self, id: OrderId, known: Option<P>) {
        if *self.shutdown.borrow() {
            return;
        }
        let mut held = self.held.lock().expect("saga lock");
        if !held.ids.insert(id) {
            return;
        }
        if self.queued_len.fetch_add(1, Ordering::AcqRel) >= self.queue_max {
            self.queued_len.fetch_sub(1, Ordering::AcqRel);
            held.ids.remove(&id);
            self.turned_away.fetch_add(1, Ordering::AcqRel);
            return;
        }
        if let Some(known) = known {
            held.known.entry(id).or_insert(known);
        }
        let _ = self.queue.send(id);
    }

    /// As [`Scheduler::kick`], for an order changed by someone other than the saga: what is
    /// held of it is dropped, and one being driven is driven again once its drive ends.
    pub(super) fn kick_stale(&self, id: OrderId) {
        {
            let mut held = self.held.lock().expect("saga lock");
            held.known.remove(&id);
            if held.ids.contains(&id) {
                held.stale.insert(id);
                return;
            }
        }
        self.kick(id, None);
    }

    /// As [`Scheduler::kick`], ahead of the orders kicked: for an order whose wait on the
    /// chain is over.
    pub(super) fn wake(&self, id: OrderId) {
        if *self.shutdown.borrow() {
            return;
        }
        let mut held = self.held.lock().expect("saga lock");
        if !held.ids.insert(id) {
            // A wake-up may come after the driver last looked.
            held.woken.insert(id);
            return;
        }
        let _ = self.urgent.send(id);
    }

    /// The next order to drive (woken ones first), with what is known of it; `None` once
    /// the scheduler is dropped.
    pub(super) async fn next(&self) -> Option<(OrderId, Option<P>)> {
        let mut shutdown = self.shutdown.clone();
        let id = {
            let mut q = self.queued.lock().await;
            let q = &mut *q;
            tokio::select! {
                biased;
                // A stop ends the workers waiting here (one driving ends after its step).
                _ = shutdown.wait_for(|stop| *stop) => None,
                Some(id) = q.urgent.recv() => Some(id),
                id = q.normal.recv() => {
                    self.queued_len.fetch_sub(1, Ordering::AcqRel);
                    id
                }
            }
        }?;
        let known = self.held.lock().expect("saga lock").known.remove(&id);
        Some((id, known))
    }

    /// Files the order after its drive.
    pub(super) fn finish(&self, id: OrderId, end: End<P>) -> Finished {
        let parked_at = {
            let mut held = self.held.lock().expect("saga lock");
            let woken = held.woken.remove(&id);
            if held.stale.remove(&id) {
                let _ = self.urgent.send(id);
                return Finished::Again;
            }
            match end {
                End::Park { after, known } => {
                    // Known before it can be taken up again, by a wake-up or by this.
                    held.known.insert(id, known);
                    if woken {
                        let _ = self.urgent.send(id);
                        return Finished::Again;
                    }
                    // Out of the in-flight set first, then parked: a wake-up after this
                    // finds the order out of flight and queues it; one before it is
                    // honoured above.
                    held.ids.remove(&id);
                    Instant::now() + after
                }
                End::Release => {
                    held.ids.remove(&id);
                    held.known.remove(&id);
                    return Finished::Released;
                }
            }
        };
        let mut parked = self.parked.lock().expect("saga lock");
        parked.by_time.insert((parked_at, id));
        parked.ids.insert(id);
        Finished::Parked
    }

    /// Orders queued or being driven.
    pub(super) fn in_flight(&self) -> usize {
        self.held.lock().expect("saga lock").ids.len()
    }

    /// Has the next refill go through the whole index (orders it holds that the queue may
    /// not, such as those of partitions taken over).
    pub(super) fn rescan(&self) {
        self.turned_away.fetch_add(1, Ordering::AcqRel);
    }

    /// Parked orders whose time has come, out of the parked set.
    fn due_parked(&self) -> Vec<OrderId> {
        let mut parked = self.parked.lock().expect("saga lock");
        let now = Instant::now();
        let mut due = Vec::new();
        while parked.by_time.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, id)) = parked.by_time.pop_first() {
                parked.ids.remove(&id);
                due.push(id);
            }
        }
        due
    }

    /// Refills the queue from the index of unfinished orders (`index(after, limit)`: up to
    /// `limit` ids after `after`, oldest first) whenever kicks were turned away, a queue's
    /// worth at a time, until one whole pass over the index turned none away.
    pub(super) async fn refill<E: std::fmt::Display>(
        &self,
        mut index: impl FnMut(Option<OrderId>, usize) -> Result<Vec<OrderId>, E>,
    ) {
        let mut shutdown = self.shutdown.clone();
        // Where the pass under way stands, and the count of kicks turned away when it began.
        let mut pass: Option<(Option<OrderId>, u64)> = None;
        // Kicks turned away before the last whole pass began: all found by it.
        let mut covered = 0;
        loop {
            let wait = self.poll_interval.max(Duration::from_millis(10));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            let turned_away = self.turned_away.load(Ordering::Acquire);
            if pass.is_none() && turned_away == covered {
                continue;
            }
            let max = self.queue_max;
            let room = max.saturating_sub(self.queued_len.load(Ordering::Acquire));
            if room < max.div_ceil(2) {
                continue;
            }
            let (after, began) = pass.unwrap_or((None, turned_away));
            let ids = match index(after, room) {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::error!(error = %e, "saga cannot read the index of unfinished orders");
                    continue;
                }
            };
            for id in &ids {
                if !self.parked.lock().expect("saga lock").ids.contains(id) {
                    self.kick(*id, None);
                }
            }
            if ids.len() < room {
                pass = None;
                covered = began;
            } else {
                pass = Some((ids.last().copied(), began));
            }
        }
    }

    /// Kicks the orders `due()` names (rental ends, from their index) and wakes the parked
    /// orders whose time has come, every poll interval (at most every second). An ended
    /// rental that is parked (its reclaim refused for now, waiting out a growing pause) stays
    /// parked: it stays in the index until its reclaim lands, and kicking it every poll
    /// would ask the chain every poll.
    pub(super) async fn run_timers(&self, mut due: impl FnMut() -> Vec<OrderId>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let due = due();
            let not_parked: Vec<OrderId> = {
                let parked = self.parked.lock().expect("saga lock");
                due.into_iter()
                    .filter(|id| !parked.ids.contains(id))
                    .collect()
            };
            not_parked.into_iter().for_each(|id| self.kick(id, None));
            self.due_parked().into_iter().for_each(|id| self.wake(id));
            let wait = self
                .poll_interval
                .max(Duration::from_millis(10))
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Evenly spaced starts under a rate, so a backlog is worked off at a steady pace rather
/// than in bursts.
pub(super) struct Pacer {
    /// Starts per second at most; 0: no limit.
    rate: u32,
    /// When the next order may be started.
    next: Mutex<Instant>,
}

impl Pacer {
    pub(super) fn new(rate: u32) -> Pacer {
        Pacer {
            rate,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this start's turn.
    pub(super) async fn start(&self) {
        if self.rate == 0 {
            return;
        }
        let slot = {
            let mut next = self.next.lock().expect("saga lock");
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + Duration::from_secs(1) / self.rate;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn id(n: u128) -> OrderId {
        OrderId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn scheduler(queue: usize) -> (Arc<Scheduler<&'static str>>, watch::Sender<bool>) {
        let (stop, shutdown) = watch::channel(false);
        let s = Scheduler::new(queue, Duration::from_millis(100), shutdown);
        (Arc::new(s), stop)
    }

    async fn next_now<P>(s: &Scheduler<P>) -> Option<(OrderId, Option<P>)> {
        tokio::time::timeout(Duration::from_millis(1), s.next())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn what_is_known_of_an_order_reaches_its_driver_and_comes_back_with_it_when_parked() {
        let (s, _stop) = scheduler(8);
        s.kick(id(1), Some("placed"));
        // Kicked again while queued: the first word stands.
        s.kick(id(1), Some("again"));
        assert_eq!(next_now(&s).await, Some((id(1), Some("placed"))));
        assert!(next_now(&s).await.is_none());
        let end = End::Park {
            after: Duration::from_secs(2),
            known: "signed",
        };
        assert_eq!(s.finish(id(1), end), Finished::Parked);
        assert_eq!(s.in_flight(), 0);
        let timers = tokio::spawn({
            let s = s.clone();
            async move { s.run_timers(Vec::new).await }
        });
        assert!(next_now(&s).await.is_none(), "parked for two seconds");
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert_eq!(next_now(&s).await, Some((id(1), Some("signed"))));
        assert_eq!(s.finish(id(1), End::Release), Finished::Released);
        timers.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_order_woken_while_it_is_driven_is_driven_again_at_once_instead_of_parked() {
        let (s, _stop) = scheduler(8);
        s.kick(id(1), None);
        s.kick(id(2), None);
        assert_eq!(next_now(&s).await, Some((id(1), None)));
        s.wake(id(1));
        let end = End::Park {
            after: Duration::from_secs(60),
            known: "awaiting",
        };
        assert_eq!(s.finish(id(1), end), Finished::Again);
        // Ahead of the order kicked before it.
        assert_eq!(next_now(&s).await, Some((id(1), Some("awaiting"))));
        assert_eq!(next_now(&s).await, Some((id(2), None)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_order_changed_elsewhere_while_driven_is_driven_again_from_scratch() {
        let (s, _stop) = scheduler(8);
        s.kick(id(1), Some("unpaid"));
        assert_eq!(next_now(&s).await, Some((id(1), Some("unpaid"))));
        s.kick_stale(id(1));
        assert_eq!(s.finish(id(1), End::Release), Finished::Again);
        assert_eq!(next_now(&s).await, Some((id(1), None)));
        // Queued with what was known of it: that is dropped.
        assert_eq!(s.finish(id(1), End::Release), Finished::Released);
        s.kick(id(1), Some("unpaid"));
        s.kick_stale(id(1));
        assert_eq!(next_now(&s).await, Some((id(1), None)));
    }

    #[tokio::test(start_paused = true)]
    async fn orders_a_full_queue_turned_away_are_found_by_the_refill_and_parked_ones_left_be() {
        let (s, _stop) = scheduler(2);
        for n in 1..=4 {
            s.kick(id(n), Some("placed"));
        }
        assert_eq!(s.in_flight(), 2, "two turned away");
        assert_eq!(next_now(&s).await, Some((id(1), Some("placed"))));
        assert_eq!(next_now(&s).await, Some((id(2), Some("placed"))));
        let end = End::Park {
            after: Duration::from_secs(600),
            known: "awaiting",
        };
        s.finish(id(1), end);
        s.finish(id(2), End::Release);
        // The index holds every unfinished order, the parked one too.
        let index = [id(1), id(2), id(3), id(4)];
        let refill = tokio::spawn({
            let s = s.clone();
            async move {
                s.refill(|after: Option<OrderId>, limit| {
                    let from = index
                        .iter()
                        .position(|i| Some(*i) == after)
                        .map_or(0, |p| p + 1);
                    Ok::<_, String>(index[from..].iter().take(limit).copied().collect())
                })
                .await
            }
        });
        let mut refilled = Vec::new();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            while let Some((n, known)) = next_now(&s).await {
                assert_eq!(known, None, "turned away, nothing of it was kept");
                refilled.push(n);
                s.finish(n, End::Release);
            }
        }
        assert_eq!(refilled, [id(2), id(3), id(4)]);
        refill.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_rental_parked_after_a_refused_reclaim_waits_out_its_pause() {
        let (s, _stop) = scheduler(8);
        s.kick(id(1), None);
        assert_eq!(next_now(&s).await, Some((id(1), None)));
        let end = End::Park {
            after: Duration::from_secs(30),
            known: "reclaim refused",
        };
        assert_eq!(s.finish(id(1), end), Finished::Parked);
        // The rental-end index names it at every poll until its reclaim lands.
        let timers = tokio::spawn({
            let s = s.clone();
            async move { s.run_timers(|| vec![id(1)]).await }
        });
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(
                next_now(&s).await.is_none(),
                "kicked before its pause ran out"
            );
        }
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(next_now(&s).await, Some((id(1), Some("reclaim refused"))));
        timers.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_queued_once_the_saga_stops() {
        let (s, stop) = scheduler(8);
        stop.send(true).unwrap();
        s.kick(id(1), Some("placed"));
        s.wake(id(2));
        assert!(next_now(&s).await.is_none());
        assert_eq!(s.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn starts_under_a_rate_are_evenly_spaced() {
        let pacer = Pacer::new(4);
        let began = Instant::now();
        let mut at = Vec::new();
        for _ in 0..5 {
            pacer.start().await;
            at.push(began.elapsed().as_millis());
        }
        assert_eq!(at, [0, 250, 500, 750, 1000]);
        // Without a rate, no wait.
        Pacer::new(0).start().await;
        assert_eq!(began.elapsed().as_millis(), 1000);
    }
}
