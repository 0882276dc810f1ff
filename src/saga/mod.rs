//! The order saga: a reactor that moves each paid order through the pool and the chain.
//!
//! What it knows of an order comes from the log: the events of its placement, which the saga
//! is handed, then the events its own commands record (it evolves an [`OrderProgress`] with
//! them). Every step it takes is a command whose events are the record of that step. An
//! order it has no events for (after a restart, when it takes over a partition, when an
//! index brings the order back) is read from its read model; after a crash, every order the
//! read models mark active is resumed from its last recorded step.
//!
//! Exactly one delegation per order: a transaction is signed and its id recorded in an
//! event *before* it is broadcast. On resume, a recorded transaction is asked about on chain
//! first; a new one is built only after the old one is recorded as expired, which happens
//! only once the chain proves it can never land: the head block's time is past its expiry
//! and the node has no trace of it (`TxTracker::never_lands`). What a node answers to a
//! broadcast (stale, refused) is never that proof: another node may hold the transaction in
//! its pool, or a block may have it already. The same goes for a reclaim.
//!
//! When the pool and the order both change, the pool is told first and the order's event
//! comes last, so an order whose step is recorded never has pool work left undone; and the
//! pool's read model shows the change before the order's does, so a client that sees the
//! order's step sees the pool's too (the two live in different partitions; the driver's
//! `wait_visible`).
//!
//! The parts: `scheduler.rs` (which order is driven next: queues, orders in flight and
//! parked, the refill from the index of unfinished orders, timers, the pace of starts),
//! `steps.rs` (the driver: one order's steps, both legs alike), `step.rs` (what the saga
//! knows of an order and the step that follows from it), `tracker.rs` (the transactions
//! waited on, the block scan, the proof that one never lands), `backoff.rs` (how long an
//! order waits), `receivers.rs` (which receiving addresses exist), `faults.rs` (the crash
//! tests' stopping points).

mod backoff;
mod faults;
mod receivers;
mod scheduler;
pub mod step;
mod steps;
mod tracker;

pub use faults::{FaultPoint, FaultPoints, UnknownFaultPoint};
pub use step::OrderProgress;

use crate::chain::Chain;
use crate::engine::Engine;
use chrono::Utc;
use flashrent_events::{Envelope, Event, OrderId};
use flashrent_projections::{ProjectedRecord, ReadModels};
use scheduler::{Finished, Scheduler};
use std::sync::Arc;
use std::time::Duration;
use step::News;
use steps::Driver;
use tokio::sync::{mpsc, watch};

#[derive(Debug, Clone)]
pub struct SagaConfig {
    pub poll_interval: Duration,
    /// Rental durations are multiplied by this (tests use 1/60 to turn minutes into seconds).
    pub rental_time_scale: f64,
    /// Delegations that fail on chain are retried this many times before the order fails.
    pub max_delegation_attempts: u32,
    /// Orders driven at once. The rest wait in a queue of ids, so a burst of orders costs
    /// memory per id (and what is known of it), not per task, and the saga's share of the
    /// CPU stays bounded.
    pub concurrency: usize,
    /// Orders waiting in the queue at most. Orders kicked beyond it are not lost: they are
    /// in the read models' index of unfinished orders, which refills the queue as it drains.
    pub queue: usize,
    /// Orders the saga starts (reserves energy for) per second at most; 0: no limit.
    pub start_rate: u32,
    /// How long the chain's answer that a receiver does not exist is believed (it may be
    /// activated any time); zero: asked again at every order.
    pub inactive_receiver_ttl: Duration,
    /// Where the crash tests stop the process; none by default.
    pub faults: FaultPoints,
}

impl Default for SagaConfig {
    fn default() -> Self {
        SagaConfig {
            poll_interval: Duration::from_millis(100),
            rental_time_scale: 1.0,
            max_delegation_attempts: 3,
            concurrency: 512,
            queue: 8_192,
            start_rate: 0,
            inactive_receiver_ttl: Duration::from_secs(60),
            faults: FaultPoints::default(),
        }
    }
}

struct Inner {
    scheduler: Scheduler<OrderProgress>,
    driver: Driver,
    engine: Engine,
    models: ReadModels,
    concurrency: usize,
    shutdown: watch::Receiver<bool>,
}

#[derive(Clone)]
pub struct Saga(Arc<Inner>);

impl Saga {
    pub fn new(
        engine: Engine,
        models: ReadModels,
        chain: Arc<dyn Chain>,
        config: SagaConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Saga {
        let scheduler = Scheduler::new(config.queue, config.poll_interval, shutdown.clone());
        let concurrency = config.concurrency.max(1);
        let driver = Driver::new(
            engine.clone(),
            models.clone(),
            chain,
            config,
            shutdown.clone(),
        );
        Saga(Arc::new(Inner {
            scheduler,
            driver,
            engine,
            models,
            concurrency,
            shutdown,
        }))
    }

    /// Resumes every unfinished order, then follows the projected records for new work. Each
    /// task returns once the shutdown signal given to [`Saga::new`] says stop (a worker
    /// after the step it is taking), so a stop can await them all.
    pub fn spawn(
        &self,
        mut records: mpsc::Receiver<ProjectedRecord>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, flashrent_projections::StoreError> {
        // Unfinished orders of a previous run come from the index, a queue's worth at a time
        // (`refill`), however many there are.
        tracing::info!("saga resuming unfinished orders");
        let this = self.clone();
        let mut shutdown = self.0.shutdown.clone();
        let follower = tokio::spawn(async move {
            loop {
                let r = tokio::select! {
                    r = records.recv() => r,
                    _ = shutdown.wait_for(|stop| *stop) => None,
                };
                let Some(r) = r else { return };
                for (id, events) in by_order(&r.record.events) {
                    this.hand(id, events);
                }
            }
        });
        let this = self.clone();
        let timers = tokio::spawn(async move {
            let models = this.0.models.clone();
            let due = move || match models.due_rentals(Utc::now(), 10_000) {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(error = %e, "saga cannot read the rental-end index");
                    vec![]
                }
            };
            this.0.scheduler.run_timers(due).await
        });
        let this = self.clone();
        let taken = tokio::spawn(async move { this.resume_taken().await });
        let this = self.clone();
        let scanner = tokio::spawn(async move {
            let wake = |id| this.0.scheduler.wake(id);
            let shutdown = this.0.shutdown.clone();
            this.0.driver.tracker.scan_blocks(shutdown, wake).await
        });
        let this = self.clone();
        let refill = tokio::spawn(async move {
            let models = this.0.models.clone();
            let index = move |after, limit| models.active_orders_after(after, limit);
            this.0.scheduler.refill(index).await
        });
        let mut tasks = vec![follower, timers, taken, scanner, refill];
        for _ in 0..self.0.concurrency {
            let this = self.clone();
            tasks.push(tokio::spawn(async move { this.work().await }));
        }
        Ok(tasks)
    }

    /// What a record says of one order: a placement is the whole order so far, handed to the
    /// driver with it; a payment made elsewhere outdates what the saga holds; the saga's own
    /// steps its driver has already.
    fn hand<'a>(&self, id: OrderId, events: impl Iterator<Item = &'a Event>) {
        match step::news(events) {
            News::Placed(order) => self.0.scheduler.kick(id, Some(*order)),
            News::Paid => self.0.scheduler.kick_stale(id),
            News::Own => {}
        }
    }

    /// On a shared log: when this instance claims a partition, the unfinished orders the
    /// previous owner left in it are resumed here, once the read models hold all of them.
    async fn resume_taken(&self) {
        let mut taken = self.0.engine.taken();
        let mut shutdown = self.0.shutdown.clone();
        loop {
            use tokio::sync::broadcast::error::RecvError;
            let claim = tokio::select! {
                c = taken.recv() => c,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let mut claims = match claim {
                Ok(t) => vec![t],
                // Claims were missed: scan anyway (without knowing what to wait for).
                Err(RecvError::Lagged(_)) => vec![],
                Err(RecvError::Closed) => return,
            };
            // Partitions are given several at a time: one scan of the unfinished orders for
            // all the claims already made, not one per partition.
            while let Ok(t) = taken.try_recv() {
                claims.push(t);
            }
            for (partition, next) in &claims {
                if let Some(last) = next.checked_sub(1) {
                    self.0.models.wait_applied(*partition, last).await;
                }
            }
            let partitions: Vec<_> = claims.iter().map(|(p, _)| *p).collect();
            tracing::info!(
                ?partitions,
                "saga resuming the unfinished orders of claimed partitions"
            );
            // The next refill goes through the whole index (orders of partitions written
            // elsewhere are dropped by the driver).
            self.0.scheduler.rescan();
        }
    }

    /// Makes sure the order is being driven, or queued to be (read from its read model).
    pub fn kick(&self, id: OrderId) {
        self.0.scheduler.kick(id, None);
    }

    /// One of the saga's workers: drives queued orders one at a time.
    async fn work(&self) {
        while let Some((id, known)) = self.0.scheduler.next().await {
            let end = self.0.driver.drive(id, known).await;
            if self.0.scheduler.finish(id, end) == Finished::Released {
                self.0.driver.backoff.forget(id);
            }
        }
    }

    /// Orders queued or being driven.
    pub fn in_flight(&self) -> usize {
        self.0.scheduler.in_flight()
    }

    /// Ended rentals whose reclaim the chain refuses for now.
    pub fn reclaims_refused(&self) -> usize {
        self.0.driver.backoff.reclaims_refused()
    }
}

/// A record's events, a run of one order's at a time, in the order recorded (a record of
/// several commands may name an order twice: each run is read on its own).
fn by_order(events: &[Envelope]) -> impl Iterator<Item = (OrderId, impl Iterator<Item = &Event>)> {
    let mut rest = events;
    std::iter::from_fn(move || loop {
        let (first, tail) = rest.split_first()?;
        let Some(id) = first.event.order_id() else {
            rest = tail;
            continue;
        };
        let run = rest
            .iter()
            .take_while(|e| e.event.order_id() == Some(id))
            .count();
        let (this, after) = rest.split_at(run);
        rest = after;
        return Some((id, this.iter().map(|e| &e.event)));
    })
}
