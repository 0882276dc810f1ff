//! The order saga: a reactor that moves each paid order through the pool and the chain.
//!
//! It keeps no progress of its own. What it does next is computed from the order's read
//! model (itself derived from the log); every step it takes is a command whose events are
//! the record of that step. After a crash, every order the read models mark active is
//! resumed from its last recorded step.
//!
//! Exactly one delegation per order: a transaction is signed and its id recorded in an
//! event *before* it is broadcast. On resume, a recorded transaction is asked about on chain
//! first; a new one is built only after the old one is recorded as expired, which happens
//! only once the chain proves it can never land: the head block's time is past its expiry
//! and the node has no trace of it ([`Saga::never_lands`]). What a node answers to a
//! broadcast (stale, refused) is never that proof: another node may hold the transaction in
//! its pool, or a block may have it already. The same goes for a reclaim.
//!
//! When the pool and the order both change, the pool is told first and the order's event
//! comes last, so an order whose step is recorded never has pool work left undone; and the
//! pool's read model shows the change before the order's does, so a client that sees the
//! order's step sees the pool's too (the two live in different partitions).

pub mod step;

use crate::chain::{Chain, ChainError, Delegation, SignedTransaction, TxStatus};
use crate::domain::order::{Command as OrderCmd, NeverLands};
use crate::domain::pool::Command as PoolCmd;
use crate::engine::{CommandMeta, Engine, EngineError, Executed, ReserveOutcome};
use chrono::Utc;
use flashrent_events::{FailureReason, OrderId};
use flashrent_projections::{OrderView, ProjectedRecord, ReadModels};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use step::Step;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// An unseen transaction is sent again at most this often (a restart sends it at once).
const REBROADCAST_EVERY: Duration = Duration::from_secs(5);
/// The longest pause between two tries of a reclaim the chain refuses.
const MAX_REFUSED_RECLAIM_PAUSE: Duration = Duration::from_secs(600);
/// Refusals after which a reclaim is logged as an error (a lock outlasts a few).
const REFUSALS_BEFORE_ALERT: u32 = 8;
/// Engine commands the saga has under way at once, whatever number of workers waits on the
/// chain: a block that confirms hundreds of delegations wakes as many workers, and their
/// commands, all at once, held up the requests queued behind them in the same writers.
const ENGINE_COMMANDS_AT_ONCE: usize = 32;

/// While the block scanner keeps up, a transaction is also asked about on its own this often:
/// the scanner cannot see one that never lands (to send it again, or find it expired), nor
/// one that landed before the saga started watching it. As often as a rebroadcast is due.
const ASK_DIRECTLY_EVERY: Duration = REBROADCAST_EVERY;
/// A transaction is watched from before its first broadcast, without the direct ask after it,
/// on a chain whose blocks come at least this far apart: no block can hold it by the time
/// the ask would reach the node. (A devnet making a block per broadcast is asked at once.)
const WATCH_AHEAD_FROM_BLOCKS_OF: Duration = Duration::from_secs(1);
/// The scanner counts as keeping up while it reached the chain's head this recently.
const SCAN_STALE_AFTER: Duration = Duration::from_secs(10);
/// Blocks scanned per round at most, so a long way behind is caught up in steps.
const BLOCKS_PER_SCAN: u64 = 100;
/// Receivers known to be activated, and known not to be, at most (then the set starts over).
const MAX_KNOWN_RECEIVERS: usize = 100_000;
/// How often watches nobody renews (their order went to another instance) are let go.
const PRUNE_WATCHES_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct SagaConfig {
    pub poll_interval: Duration,
    /// Rental durations are multiplied by this (tests use 1/60 to turn minutes into seconds).
    pub rental_time_scale: f64,
    /// Delegations that fail on chain are retried this many times before the order fails.
    pub max_delegation_attempts: u32,
    /// Orders driven at once. The rest wait in a queue of ids, so a burst of orders costs
    /// memory per id, not per task, and the saga's share of the CPU stays bounded.
    pub concurrency: usize,
    /// Orders waiting in the queue at most. Orders kicked beyond it are not lost: they are
    /// in the read models' index of unfinished orders, which refills the queue as it drains.
    pub queue: usize,
    /// Orders the saga starts (reserves energy for) per second at most; 0: no limit.
    pub start_rate: u32,
    /// How long the chain's answer that a receiver does not exist is believed (it may be
    /// activated any time); zero: asked again at every order.
    pub inactive_receiver_ttl: Duration,
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
        }
    }
}

struct Inner {
    engine: Engine,
    models: ReadModels,
    chain: Arc<dyn Chain>,
    config: SagaConfig,
    in_flight: Mutex<InFlight>,
    queue: mpsc::UnboundedSender<OrderId>,
    /// Orders in `queue` (at most [`SagaConfig::queue`]).
    queued_len: AtomicUsize,
    /// Kicks turned away by a full queue, ever: while any came after the refill last went
    /// through the whole index, the index has orders the queue does not.
    turned_away: AtomicU64,
    /// Orders the chain has answered for: taken before any of `queue`, so orders already on
    /// chain finish first rather than behind every new order of a burst.
    urgent: mpsc::UnboundedSender<OrderId>,
    queued: tokio::sync::Mutex<Queues>,
    /// When this process last sent each transaction, so an unseen one is sent again now and
    /// then rather than at every poll (a public node rate-limits).
    sent: Mutex<HashMap<String, Instant>>,
    /// Orders waiting on the chain, by when to ask again. A worker never sits on a pending
    /// transaction: it parks the order here and takes the next one.
    parked: Mutex<Parked>,
    /// Per waiting order: the next poll interval (it backs off) and failures on chain so far.
    pauses: Mutex<HashMap<OrderId, Pause>>,
    /// Broadcast transactions the saga waits on, and where the block scanner stands. The
    /// scanner reads each new block's outcomes once and wakes the orders whose transactions
    /// it finds, so waiting costs one request per block rather than one per order and poll.
    watched: Mutex<Watches>,
    /// When the block scanner last reached the chain's head.
    scanned_at: Mutex<Option<Instant>>,
    /// When the next order may be started, under [`SagaConfig::start_rate`].
    next_start: Mutex<Instant>,
    /// Receivers the chain said exist. A TRON account is never deleted once activated, so
    /// an address is asked about once, not at every order (a public node rate-limits).
    activated: Mutex<HashSet<flashrent_events::TronAddress>>,
    /// Receivers the chain said do not exist, and when it said so: believed for
    /// [`SagaConfig::inactive_receiver_ttl`], so a stream of orders to one unactivated
    /// address (each refunded in full) costs the node one question, not one per order.
    inactive: Mutex<HashMap<flashrent_events::TronAddress, Instant>>,
    /// One question at a time per receiver: orders to the same new address that come
    /// together wait for the first one's answer rather than each asking.
    asking: Mutex<HashMap<flashrent_events::TronAddress, Arc<tokio::sync::Mutex<()>>>>,
    /// Transactions a node refused (by id, with its answer), kept until the chain proves
    /// them dead: then the order fails (a delegation) or waits (a reclaim) instead of
    /// signing anew. A refusal from one node does not prove another never took it.
    refused: Mutex<HashMap<String, String>>,
    /// Commands the saga has in the engine at once (see [`ENGINE_COMMANDS_AT_ONCE`]).
    engine_slots: tokio::sync::Semaphore,
    shutdown: watch::Receiver<bool>,
}

#[derive(Clone)]
pub struct Saga(Arc<Inner>);

/// What the driver does after a step.
enum Flow {
    Continue,
    /// Nothing to do until an event or a timer brings the order back.
    Stop,
    /// Waiting on the chain: ask again later.
    Park,
    /// The chain refuses the step for now: try again after this long.
    ParkFor(Duration),
}

struct Queues {
    urgent: mpsc::UnboundedReceiver<OrderId>,
    normal: mpsc::UnboundedReceiver<OrderId>,
}

/// Orders waiting on the chain, by when to come back, and the same orders by id (a refill
/// of the queue leaves them be).
#[derive(Default)]
struct Parked {
    by_time: BTreeSet<(Instant, OrderId)>,
    ids: HashSet<OrderId>,
}

/// Orders queued or being driven, and those of them woken meanwhile: driven again at once
/// instead of parked, since what woke them (the block scan finding their transaction) may
/// have come after their driver last looked.
#[derive(Default)]
struct InFlight {
    ids: HashSet<OrderId>,
    woken: HashSet<OrderId>,
}

#[derive(Default)]
struct Watches {
    by_tx: HashMap<String, Watch>,
    /// The next block the scanner reads, once it has found the head. Kept under the same lock
    /// as the watches: a transaction first sent after it was watched while this was set can
    /// only land in a block the scanner has yet to read.
    scan_next: Option<u64>,
}

struct Watch {
    order: OrderId,
    /// When the chain was last asked about this transaction alone.
    asked: Option<Instant>,
    /// What the block scanner found, not yet taken by the order.
    outcome: Option<TxStatus>,
}

/// What to go on for a watched transaction.
enum Watching {
    Found(TxStatus),
    AskNow,
    Wait,
}

#[derive(Clone, Copy)]
struct Pause {
    wait: Duration,
    failures: u32,
    /// Reclaims the chain refused so far.
    refusals: u32,
}

/// How a broadcast transaction settled on chain.
enum Outcome {
    Confirmed(u64),
    Failed(String),
    /// Never seen and past its expiry: it cannot land any more.
    Expired(NeverLands),
    /// As `Expired`, after a node refused it (with the node's answer).
    Refused(NeverLands, String),
}

/// What came of sending a transaction the saga waits on.
enum Sent {
    /// Out, or known to the node already, or answered stale or refused while the chain
    /// cannot yet prove it dead: waited on either way. `watched_ahead`: watched before it
    /// went out (see [`Saga::watch_ahead`]), so the order waits for the scanner.
    Out { watched_ahead: bool },
    /// The chain proves it can never land; with the node's answer when it refused it.
    Dead {
        proof: NeverLands,
        refused: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Store(#[from] flashrent_projections::StoreError),
}

impl Saga {
    pub fn new(
        engine: Engine,
        models: ReadModels,
        chain: Arc<dyn Chain>,
        config: SagaConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Saga {
        let (queue, normal) = mpsc::unbounded_channel();
        let (urgent, urgent_rx) = mpsc::unbounded_channel();
        Saga(Arc::new(Inner {
            engine,
            models,
            chain,
            config,
            in_flight: Mutex::new(InFlight::default()),
            queue,
            queued_len: AtomicUsize::new(0),
            // The index holds what a previous run left: the first refill goes through it.
            turned_away: AtomicU64::new(1),
            urgent,
            queued: tokio::sync::Mutex::new(Queues {
                urgent: urgent_rx,
                normal,
            }),
            sent: Mutex::new(HashMap::new()),
            parked: Mutex::new(Parked::default()),
            pauses: Mutex::new(HashMap::new()),
            watched: Mutex::new(Watches::default()),
            scanned_at: Mutex::new(None),
            activated: Mutex::new(HashSet::new()),
            inactive: Mutex::new(HashMap::new()),
            asking: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            next_start: Mutex::new(Instant::now()),
            engine_slots: tokio::sync::Semaphore::new(ENGINE_COMMANDS_AT_ONCE),
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
                let mut last = None;
                for env in &r.record.events {
                    if let Some(id) = env.event.order_id().filter(|id| Some(*id) != last) {
                        this.kick(id);
                        last = Some(id);
                    }
                }
            }
        });
        let this = self.clone();
        let timers = tokio::spawn(async move { this.run_timers().await });
        let this = self.clone();
        let taken = tokio::spawn(async move { this.resume_taken().await });
        let this = self.clone();
        let scanner = tokio::spawn(async move { this.scan_blocks().await });
        let this = self.clone();
        let refill = tokio::spawn(async move { this.refill().await });
        let mut tasks = vec![follower, timers, taken, scanner, refill];
        for _ in 0..self.0.config.concurrency.max(1) {
            let this = self.clone();
            tasks.push(tokio::spawn(async move { this.work().await }));
        }
        Ok(tasks)
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
            // elsewhere are dropped by `drive`).
            self.0.turned_away.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Makes sure the order is being driven, or queued to be.
    pub fn kick(&self, id: OrderId) {
        self.enqueue(id, &self.0.queue);
    }

    /// As [`Saga::kick`], ahead of the orders kicked: for an order whose wait on the chain is
    /// over.
    fn wake(&self, id: OrderId) {
        self.enqueue(id, &self.0.urgent);
    }

    fn enqueue(&self, id: OrderId, queue: &mpsc::UnboundedSender<OrderId>) {
        if *self.0.shutdown.borrow() {
            return;
        }
        let normal = queue.same_channel(&self.0.queue);
        {
            let mut in_flight = self.0.in_flight.lock().expect("saga lock");
            if !in_flight.ids.insert(id) {
                // A kick while in flight comes from the order's own events, which its driver
                // reads anyway; a wake-up may not.
                if !normal {
                    in_flight.woken.insert(id);
                }
                return;
            }
        }
        if normal && self.0.queued_len.fetch_add(1, Ordering::AcqRel) >= self.0.config.queue.max(1)
        {
            self.0.queued_len.fetch_sub(1, Ordering::AcqRel);
            self.0.in_flight.lock().expect("saga lock").ids.remove(&id);
            self.0.turned_away.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let _ = queue.send(id);
    }

    /// Refills the queue from the index of unfinished orders whenever kicks were turned
    /// away, a queue's worth at a time, until one whole pass over the index turned none
    /// away. The index is in order-id order, which is time order (UUID v7): oldest first.
    async fn refill(&self) {
        let mut shutdown = self.0.shutdown.clone();
        // Where the pass under way stands, and the count of kicks turned away when it began.
        let mut pass: Option<(Option<OrderId>, u64)> = None;
        // Kicks turned away before the last whole pass began: all found by it.
        let mut covered = 0;
        loop {
            let wait = self.0.config.poll_interval.max(Duration::from_millis(10));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            let turned_away = self.0.turned_away.load(Ordering::Acquire);
            if pass.is_none() && turned_away == covered {
                continue;
            }
            let max = self.0.config.queue.max(1);
            let room = max.saturating_sub(self.0.queued_len.load(Ordering::Acquire));
            if room < max.div_ceil(2) {
                continue;
            }
            let (after, began) = pass.unwrap_or((None, turned_away));
            let ids = match self.0.models.active_orders_after(after, room) {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::error!(error = %e, "saga cannot read the index of unfinished orders");
                    continue;
                }
            };
            for id in &ids {
                if !self.0.parked.lock().expect("saga lock").ids.contains(id) {
                    self.kick(*id);
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

    /// One of the saga's workers: drives queued orders one at a time, until the shutdown
    /// signal (the order it is driving first: [`Saga::drive_order`] stops between steps).
    async fn work(&self) {
        let mut shutdown = self.0.shutdown.clone();
        loop {
            let next = {
                let mut q = self.0.queued.lock().await;
                let q = &mut *q;
                tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => None,
                    Some(id) = q.urgent.recv() => Some(id),
                    id = q.normal.recv() => {
                        self.0.queued_len.fetch_sub(1, Ordering::AcqRel);
                        id
                    }
                }
            };
            let Some(id) = next else { return };
            let park = self.drive(id).await;
            // Out of the in-flight set first, then parked: a wake-up after this finds the
            // order out of flight and queues it; one before it is honoured here.
            let woken = {
                let mut in_flight = self.0.in_flight.lock().expect("saga lock");
                let woken = in_flight.woken.remove(&id) && park.is_some();
                if !woken {
                    in_flight.ids.remove(&id);
                }
                woken
            };
            if woken {
                let _ = self.0.urgent.send(id);
                continue;
            }
            match park {
                Some(after) => {
                    let mut parked = self.0.parked.lock().expect("saga lock");
                    parked.by_time.insert((Instant::now() + after, id));
                    parked.ids.insert(id);
                }
                None => {
                    self.0.pauses.lock().expect("saga lock").remove(&id);
                }
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        self.0.in_flight.lock().expect("saga lock").ids.len()
    }

    /// Ended rentals whose reclaim the chain refuses for now.
    pub fn reclaims_refused(&self) -> usize {
        let pauses = self.0.pauses.lock().expect("saga lock");
        pauses.values().filter(|p| p.refusals > 0).count()
    }

    /// Rental ends come from the read models' index of completed rentals by end time: it is
    /// derived from events (so it survives restarts) and costs no memory per rental.
    async fn run_timers(&self) {
        let mut shutdown = self.0.shutdown.clone();
        loop {
            match self.0.models.due_rentals(Utc::now(), 10_000) {
                Ok(due) => due.into_iter().for_each(|id| self.kick(id)),
                Err(e) => tracing::error!(error = %e, "saga cannot read the rental-end index"),
            }
            let woken: Vec<OrderId> = {
                let mut parked = self.0.parked.lock().expect("saga lock");
                let now = Instant::now();
                let mut due = Vec::new();
                while parked.by_time.first().is_some_and(|(at, _)| *at <= now) {
                    if let Some((_, id)) = parked.by_time.pop_first() {
                        parked.ids.remove(&id);
                        due.push(id);
                    }
                }
                due
            };
            woken.into_iter().for_each(|id| self.wake(id));
            let wait = self
                .0
                .config
                .poll_interval
                .max(Duration::from_millis(10))
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Drives one order; every log line inside carries its order and user ids.
    async fn drive(&self, id: OrderId) -> Option<Duration> {
        let span = tracing::info_span!("order", order_id = %id, user_id = tracing::field::Empty);
        tracing::Instrument::instrument(self.drive_order(id), span).await
    }

    /// Returns when to come back, if the order is waiting on the chain.
    async fn drive_order(&self, id: OrderId) -> Option<Duration> {
        let correlation = Uuid::now_v7();
        let mut backoff = self.0.config.poll_interval;
        // A span field recorded twice is printed twice.
        let mut named = false;
        loop {
            if *self.0.shutdown.borrow() {
                return None;
            }
            let view = match self.0.models.order(&id) {
                Ok(Some(v)) => v,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(order_id = %id, error = %e, "saga cannot read the order");
                    return None;
                }
            };
            if !named {
                // An order is driven by the instance that writes its partition.
                if !self.0.engine.writes_for(view.user_id) {
                    return None;
                }
                tracing::Span::current().record("user_id", tracing::field::display(view.user_id));
                named = true;
            }
            let step = match step::next_step(&view, Utc::now()) {
                // Broadcasts are not recorded (a signed transaction sent twice is the same
                // transaction: the node answers the second with DUP_TRANSACTION_ERROR), so a
                // transaction this process sent lately is waited on, not sent again; after a
                // restart it is sent once more, then waited on.
                Step::BroadcastDelegation(tx) if self.sent_lately(&tx.tx_id) => {
                    Step::AwaitDelegation(tx)
                }
                Step::BroadcastReclaim(tx) if self.sent_lately(&tx.tx_id) => Step::AwaitReclaim(tx),
                step => step,
            };
            match self.take(&view, step, correlation).await {
                Ok(Flow::Continue) => backoff = self.0.config.poll_interval,
                Ok(Flow::Stop) => return None,
                Ok(Flow::Park) => return Some(self.next_poll(id)),
                Ok(Flow::ParkFor(after)) => return Some(after),
                Err(StepError::Engine(EngineError::Log(flashrent_events::LogError::Fenced(p)))) => {
                    // Another instance writes this partition now; its saga drives the order.
                    tracing::info!(order_id = %id, partition = p, "partition written elsewhere; leaving the order to its owner");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(order_id = %id, user_id = %view.user_id, error = %e, "saga step failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Runs one step.
    async fn take(&self, o: &OrderView, step: Step, correlation: Uuid) -> Result<Flow, StepError> {
        let meta = || CommandMeta::new(correlation);
        let e = &self.0.engine;
        let (user, id) = (o.user_id, o.order_id);
        // Most steps end by recording a command of this order.
        let order = |cmd| self.record(e.order_command(meta(), user, id, cmd));
        let delegation = |wallet| Delegation {
            from: wallet,
            to: o.receive_address,
            energy: o.energy_amount,
            lock_seconds: self.rental_seconds(o),
            delegation_tx: o.transaction_hash.clone(),
            order: o.order_id,
        };
        match step {
            Step::Done => return Ok(Flow::Stop),
            Step::Reserve => {
                let pinned = if o.kind == flashrent_events::OrderKind::Manual {
                    o.supplier_wallet
                } else {
                    None
                };
                self.paced_start().await;
                // Reserve before anything else waits: the saga's one thread then sends
                // reservations in the order it took the orders up, first come first served.
                let reserved = self
                    .record(e.reserve(meta(), id, o.energy_amount, pinned))
                    .await?;
                match reserved.reply {
                    ReserveOutcome::Reserved { wallet } => {
                        if !self.activated(&o.receive_address).await? {
                            // Failed, the order's hold is released and its payment given
                            // back (Step::Settle).
                            self.fail(
                                o,
                                FailureReason::ReceiverNotActivated,
                                "the receiving address is not activated on chain",
                                None,
                            )
                            .await?;
                            return Ok(Flow::Continue);
                        }
                        // Sign before recording, and record before broadcasting: a crash
                        // between the two leaves a signature nobody ever sends.
                        let signed = match self.0.chain.sign_delegation(&delegation(wallet)).await {
                            Ok(tx) => Some((tx.tx_id, tx.signed_tx, tx.expires_at)),
                            Err(ChainError::Refused(why)) => {
                                tracing::warn!(order_id = %id, why, "the chain refused to build the delegation");
                                None
                            }
                            Err(err) => return Err(err.into()),
                        };
                        let recorded_signature = signed.is_some();
                        let cmd = OrderCmd::StartProcessing {
                            supplier_wallet: wallet,
                            signed,
                        };
                        order(cmd).await?;
                        if recorded_signature {
                            crash_point("after_sign");
                        }
                    }
                    ReserveOutcome::Rejected => {
                        self.fail(
                            o,
                            FailureReason::InsufficientPoolEnergy,
                            "no supplier wallet has enough energy",
                            None,
                        )
                        .await?;
                    }
                }
            }
            Step::SignDelegation => {
                let wallet = o
                    .supplier_wallet
                    .expect("a processing order has its supplier wallet");
                match self.0.chain.sign_delegation(&delegation(wallet)).await {
                    Ok(tx) => {
                        let cmd = OrderCmd::RecordDelegationSigned {
                            tx_id: tx.tx_id,
                            signed_tx: tx.signed_tx,
                            expires_at: tx.expires_at,
                        };
                        order(cmd).await?;
                        crash_point("after_sign");
                    }
                    Err(ChainError::Refused(why)) => {
                        self.fail(o, FailureReason::DelegationFailed, &why, None)
                            .await?
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            Step::BroadcastDelegation(tx) => match self.broadcast(id, &tx).await? {
                Sent::Out { watched_ahead } => {
                    crash_point("after_broadcast");
                    if watched_ahead {
                        return Ok(Flow::Park);
                    }
                }
                Sent::Dead {
                    proof,
                    refused: None,
                } => {
                    tracing::info!(order_id = %id, tx_id = tx.tx_id, "delegation can never land (the chain is past its expiry and has no trace of it); signing anew");
                    let cmd = OrderCmd::ExpireDelegation {
                        tx_id: tx.tx_id,
                        proof,
                    };
                    order(cmd).await?;
                }
                Sent::Dead {
                    proof,
                    refused: Some(why),
                } => {
                    let failed = Some((tx.tx_id, proof));
                    self.fail(o, FailureReason::DelegationFailed, &why, failed)
                        .await?
                }
            },
            Step::AwaitDelegation(tx) => match self.check(id, &tx).await? {
                None => return Ok(Flow::Park),
                Some(Outcome::Confirmed(block)) => {
                    self.record(e.pool_command(meta(), PoolCmd::MarkDelegated { order_id: id }))
                        .await?;
                    let now = Utc::now();
                    let rental_ends_at =
                        now + chrono::Duration::seconds(self.rental_seconds(o) as i64);
                    let cmd = OrderCmd::Complete {
                        transaction_hash: tx.tx_id,
                        block_number: block,
                        now,
                        rental_ends_at,
                    };
                    order(cmd).await?;
                }
                Some(Outcome::Failed(reason)) => {
                    let failures = self.failed_on_chain(id);
                    if failures >= self.0.config.max_delegation_attempts {
                        let failed = Some((tx.tx_id, NeverLands::FailedOnChain));
                        self.fail(o, FailureReason::DelegationFailed, &reason, failed)
                            .await?;
                    } else {
                        tracing::warn!(order_id = %id, reason, attempt = failures, "delegation failed on chain; trying again");
                        let cmd = OrderCmd::ExpireDelegation {
                            tx_id: tx.tx_id,
                            proof: NeverLands::FailedOnChain,
                        };
                        order(cmd).await?;
                    }
                }
                Some(Outcome::Expired(proof)) => {
                    let cmd = OrderCmd::ExpireDelegation {
                        tx_id: tx.tx_id,
                        proof,
                    };
                    order(cmd).await?;
                }
                Some(Outcome::Refused(proof, why)) => {
                    let failed = Some((tx.tx_id, proof));
                    self.fail(o, FailureReason::DelegationFailed, &why, failed)
                        .await?
                }
            },
            Step::Settle { refund } => {
                self.record(e.pool_command(meta(), PoolCmd::Release { order_id: id }))
                    .await?;
                if !refund {
                    return Ok(Flow::Stop);
                }
                self.record(e.refund(meta(), user, id)).await?;
            }
            // The rental-end index brings the order back when it is due.
            Step::AwaitRentalEnd(_) => return Ok(Flow::Stop),
            Step::SignReclaim => {
                let wallet = o
                    .supplier_wallet
                    .expect("a completed order has its supplier wallet");
                let tx = match self.0.chain.sign_reclaim(&delegation(wallet)).await {
                    Ok(tx) => tx,
                    Err(ChainError::Refused(why)) => return Ok(self.reclaim_refused(id, &why)),
                    Err(err) => return Err(err.into()),
                };
                let cmd = OrderCmd::RecordReclaimSigned {
                    tx_id: tx.tx_id,
                    signed_tx: tx.signed_tx,
                    expires_at: tx.expires_at,
                };
                order(cmd).await?;
            }
            Step::BroadcastReclaim(tx) => match self.broadcast(id, &tx).await? {
                Sent::Out { watched_ahead } => {
                    crash_point("after_reclaim_broadcast");
                    if watched_ahead {
                        return Ok(Flow::Park);
                    }
                }
                Sent::Dead {
                    proof,
                    refused: None,
                } => {
                    tracing::info!(order_id = %id, tx_id = tx.tx_id, "reclaim can never land (the chain is past its expiry and has no trace of it); signing anew");
                    let cmd = OrderCmd::ExpireReclaim {
                        tx_id: tx.tx_id,
                        proof,
                    };
                    order(cmd).await?;
                }
                Sent::Dead {
                    proof,
                    refused: Some(why),
                } => {
                    // Dead: a fresh one is signed once the chain would take it.
                    let cmd = OrderCmd::ExpireReclaim {
                        tx_id: tx.tx_id,
                        proof,
                    };
                    order(cmd).await?;
                    return Ok(self.reclaim_refused(id, &why));
                }
            },
            Step::AwaitReclaim(tx) => match self.check(id, &tx).await? {
                None => return Ok(Flow::Park),
                Some(Outcome::Confirmed(_)) => {
                    self.record(e.pool_command(meta(), PoolCmd::Return { order_id: id }))
                        .await?;
                    let cmd = OrderCmd::EndRental {
                        reclaim_transaction_hash: tx.tx_id,
                        now: Utc::now(),
                    };
                    order(cmd).await?;
                }
                Some(Outcome::Refused(proof, why)) => {
                    let cmd = OrderCmd::ExpireReclaim {
                        tx_id: tx.tx_id,
                        proof,
                    };
                    order(cmd).await?;
                    return Ok(self.reclaim_refused(id, &why));
                }
                Some(Outcome::Failed(reason)) => {
                    tracing::warn!(order_id = %id, reason, "reclaim failed on chain; signing anew");
                    tokio::time::sleep(self.0.config.poll_interval).await;
                    let cmd = OrderCmd::ExpireReclaim {
                        tx_id: tx.tx_id,
                        proof: NeverLands::FailedOnChain,
                    };
                    order(cmd).await?;
                }
                Some(Outcome::Expired(proof)) => {
                    let cmd = OrderCmd::ExpireReclaim {
                        tx_id: tx.tx_id,
                        proof,
                    };
                    order(cmd).await?;
                }
            },
        }
        Ok(Flow::Continue)
    }

    /// How a broadcast transaction stands; `None` while it is pending. The block scanner's
    /// finding first; otherwise the chain is asked, when that is due. A transaction the chain
    /// has never seen goes out again (the same bytes, so harmless) until it expires.
    async fn check(
        &self,
        id: OrderId,
        tx: &SignedTransaction,
    ) -> Result<Option<Outcome>, ChainError> {
        let status = match self.watch(id, &tx.tx_id) {
            Watching::Found(status) => status,
            Watching::Wait => return Ok(None),
            Watching::AskNow => self.0.chain.status(&tx.tx_id).await?,
        };
        let outcome = self.outcome(tx, status).await?;
        if outcome.is_some() {
            self.unwatch(&tx.tx_id);
            self.take_refusal(&tx.tx_id);
        }
        Ok(outcome)
    }

    fn unwatch(&self, tx_id: &str) {
        self.0
            .watched
            .lock()
            .expect("saga lock")
            .by_tx
            .remove(tx_id);
    }

    /// Sends a transaction the saga waits on. A node's answer that it is stale or refused
    /// counts as sent unless the chain proves it dead ([`Saga::never_lands`]): that node
    /// may lag or sit on a fork while another holds the transaction, and java-tron checks the
    /// expiration before duplicates, so one that landed is called expired when sent again
    /// after its expiry (after a restart, say). Errors only for trouble reaching the chain.
    async fn broadcast(&self, order: OrderId, tx: &SignedTransaction) -> Result<Sent, ChainError> {
        let ahead = self.watch_ahead(order, &tx.tx_id);
        let sent = match self.send(tx).await {
            Ok(true) => Ok(Sent::Out {
                watched_ahead: ahead,
            }),
            Ok(false) => match self.never_lands(tx).await {
                Ok(Some(proof)) => Ok(Sent::Dead {
                    proof,
                    refused: self.take_refusal(&tx.tx_id),
                }),
                // Perhaps in an earlier block than the scanner will read: asked about at once.
                Ok(None) => Ok(Sent::Out {
                    watched_ahead: false,
                }),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if ahead
            && !matches!(
                sent,
                Ok(Sent::Out {
                    watched_ahead: true
                })
            )
        {
            // Asked about directly at the next look, as before any watch.
            self.unwatch(&tx.tx_id);
        }
        sent
    }

    /// Sends the same signed bytes (harmless: the same transaction). `true` when the node took
    /// it or knew it already; `false` when it called it stale or refused it, which is logged
    /// and a refusal remembered, nothing more (see [`Saga::broadcast`]). An error when no node
    /// could be asked.
    async fn send(&self, tx: &SignedTransaction) -> Result<bool, ChainError> {
        let taken = match self.0.chain.broadcast(tx).await {
            Ok(()) => true,
            Err(ChainError::Stale(why)) => {
                tracing::info!(tx_id = tx.tx_id, why, "the node calls the transaction stale; waiting until the chain proves it can never land");
                false
            }
            Err(ChainError::Refused(why)) => {
                tracing::warn!(tx_id = tx.tx_id, why, "the node refused the transaction; waiting until the chain proves it can never land");
                let mut refused = self.0.refused.lock().expect("saga lock");
                if refused.len() >= 10_000 {
                    // Forgotten, an order signs anew once its transaction is proven dead, and
                    // that one is refused (or not) in its turn.
                    refused.clear();
                }
                refused.insert(tx.tx_id.clone(), why);
                false
            }
            Err(e) => return Err(e),
        };
        self.note_sent(&tx.tx_id);
        Ok(taken)
    }

    /// The node's answer to a transaction it refused, if one did; forgotten from now on.
    fn take_refusal(&self, tx_id: &str) -> Option<String> {
        self.0.refused.lock().expect("saga lock").remove(tx_id)
    }

    /// Watches a transaction about to go out for the first time, as if just asked about,
    /// when the scanner keeps up and knows its next block: the transaction can then only land
    /// in a block the scanner has yet to read, and asking the node right after sending would
    /// learn nothing (a block every 3 s). One node request per delegation and per reclaim.
    /// Not for a transaction already watched (sent again: it may have landed unseen, and the
    /// direct ask is what finds it), nor on a chain with blocks coming faster than a request.
    fn watch_ahead(&self, order: OrderId, tx_id: &str) -> bool {
        if self.0.chain.expected_confirmation() < WATCH_AHEAD_FROM_BLOCKS_OF
            || !self.scanner_keeps_up()
        {
            return false;
        }
        let mut watched = self.0.watched.lock().expect("saga lock");
        if watched.scan_next.is_none() || watched.by_tx.contains_key(tx_id) {
            return false;
        }
        watched.by_tx.insert(
            tx_id.to_owned(),
            Watch {
                order,
                asked: Some(Instant::now()),
                outcome: None,
            },
        );
        true
    }

    /// Watches the transaction for the order (from now on the scanner reports it), and says
    /// whether the scanner found it, or the chain is to be asked now.
    fn watch(&self, order: OrderId, tx_id: &str) -> Watching {
        let scanning = self.scanner_keeps_up();
        let mut watched = self.0.watched.lock().expect("saga lock");
        let w = watched.by_tx.entry(tx_id.to_owned()).or_insert(Watch {
            order,
            asked: None,
            outcome: None,
        });
        if let Some(found) = w.outcome.take() {
            return Watching::Found(found);
        }
        if scanning && w.asked.is_some_and(|at| at.elapsed() < ASK_DIRECTLY_EVERY) {
            return Watching::Wait;
        }
        w.asked = Some(Instant::now());
        Watching::AskNow
    }

    /// Waits for this order's turn under the start rate: evenly spaced starts, so a backlog
    /// is worked off at a steady pace rather than in bursts.
    async fn paced_start(&self) {
        let rate = self.0.config.start_rate;
        if rate == 0 {
            return;
        }
        let slot = {
            let mut next = self.0.next_start.lock().expect("saga lock");
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + Duration::from_secs(1) / rate;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }

    /// Whether the chain has the receiving account: asked once per address that it has, and
    /// once per [`SagaConfig::inactive_receiver_ttl`] for one that it has not; orders to one
    /// address that come together share one question.
    async fn activated(&self, address: &flashrent_events::TronAddress) -> Result<bool, ChainError> {
        if let Some(known) = self.known_activation(address) {
            return Ok(known);
        }
        let turn = {
            let mut asking = self.0.asking.lock().expect("saga lock");
            asking.entry(*address).or_default().clone()
        };
        let answer = {
            let _turn = turn.lock().await;
            match self.known_activation(address) {
                Some(known) => Ok(known),
                None => self.ask_activation(address).await,
            }
        };
        let mut asking = self.0.asking.lock().expect("saga lock");
        // Only the map's and this one's: nobody else waits on this address.
        if Arc::strong_count(&turn) == 2 {
            asking.remove(address);
        }
        answer
    }

    /// What the chain said of the address, while that is still believed.
    fn known_activation(&self, address: &flashrent_events::TronAddress) -> Option<bool> {
        if self
            .0
            .activated
            .lock()
            .expect("saga lock")
            .contains(address)
        {
            return Some(true);
        }
        let ttl = self.0.config.inactive_receiver_ttl;
        let inactive = self.0.inactive.lock().expect("saga lock");
        inactive
            .get(address)
            .is_some_and(|at| at.elapsed() < ttl)
            .then_some(false)
    }

    async fn ask_activation(
        &self,
        address: &flashrent_events::TronAddress,
    ) -> Result<bool, ChainError> {
        let activated = self.0.chain.is_activated(address).await?;
        if activated {
            self.0.inactive.lock().expect("saga lock").remove(address);
            let mut known = self.0.activated.lock().expect("saga lock");
            if known.len() >= MAX_KNOWN_RECEIVERS {
                known.clear();
            }
            known.insert(*address);
        } else if !self.0.config.inactive_receiver_ttl.is_zero() {
            let ttl = self.0.config.inactive_receiver_ttl;
            let mut inactive = self.0.inactive.lock().expect("saga lock");
            if inactive.len() >= MAX_KNOWN_RECEIVERS {
                inactive.retain(|_, at| at.elapsed() < ttl);
                if inactive.len() >= MAX_KNOWN_RECEIVERS {
                    inactive.clear();
                }
            }
            inactive.insert(*address, Instant::now());
        }
        Ok(activated)
    }

    fn scanner_keeps_up(&self) -> bool {
        self.0
            .scanned_at
            .lock()
            .expect("saga lock")
            .is_some_and(|at| at.elapsed() < SCAN_STALE_AFTER)
    }

    /// Reads every new block's outcomes once and wakes the orders waiting on them, while any
    /// order waits. It starts at the head: what settled before, the first direct ask of each
    /// order finds. A chain that cannot list a block's outcomes leaves every order asking on
    /// its own, as before.
    async fn scan_blocks(&self) {
        let mut shutdown = self.0.shutdown.clone();
        let mut pruned = Instant::now();
        let mut failing = false;
        loop {
            let idle = {
                let mut watched = self.0.watched.lock().expect("saga lock");
                let idle = watched.by_tx.is_empty();
                if idle {
                    // Nothing waits on the chain: no requests to the node. The next scan
                    // starts at the head again; until then, a transaction watched is asked
                    // about first.
                    watched.scan_next = None;
                }
                idle
            };
            if idle {
                *self.0.scanned_at.lock().expect("saga lock") = Some(Instant::now());
            } else {
                match self.scan_to_head().await {
                    Ok(at_head) => {
                        failing = false;
                        if at_head {
                            *self.0.scanned_at.lock().expect("saga lock") = Some(Instant::now());
                        }
                    }
                    Err(e) => {
                        // Said once per outage, not at every poll.
                        if !failing {
                            tracing::warn!(error = %e, "saga cannot read new blocks; asking about each transaction instead");
                        }
                        failing = true;
                    }
                }
            }
            if pruned.elapsed() > PRUNE_WATCHES_EVERY {
                let mut watched = self.0.watched.lock().expect("saga lock");
                watched
                    .by_tx
                    .retain(|_, w| w.asked.is_none_or(|at| at.elapsed() < PRUNE_WATCHES_EVERY));
                pruned = Instant::now();
            }
            let wait = self.0.config.poll_interval.max(Duration::from_millis(10));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Scans from its next block (or the head) towards the head; `true` once it got there.
    async fn scan_to_head(&self) -> Result<bool, ChainError> {
        let head = self.0.chain.head_block().await?.number;
        let next = self.0.watched.lock().expect("saga lock").scan_next;
        let from = next.unwrap_or(head);
        let to = head.min(from.saturating_add(BLOCKS_PER_SCAN - 1));
        for number in from..=to {
            let outcomes = self.0.chain.block_outcomes(number).await?;
            let found: Vec<OrderId> = {
                let mut watched = self.0.watched.lock().expect("saga lock");
                let found = outcomes
                    .into_iter()
                    .filter_map(|(tx_id, status)| {
                        let w = watched.by_tx.get_mut(&tx_id)?;
                        w.outcome = Some(status);
                        Some(w.order)
                    })
                    .collect();
                watched.scan_next = Some(number + 1);
                found
            };
            found.into_iter().for_each(|order| self.wake(order));
        }
        Ok(to == head)
    }

    /// What a transaction's status means for the order.
    async fn outcome(
        &self,
        tx: &SignedTransaction,
        status: TxStatus,
    ) -> Result<Option<Outcome>, ChainError> {
        Ok(match status {
            TxStatus::Confirmed { block } => Some(Outcome::Confirmed(block)),
            TxStatus::Failed { reason } => Some(Outcome::Failed(reason)),
            TxStatus::Unknown => match self.never_lands(tx).await? {
                Some(proof) => Some(match self.take_refusal(&tx.tx_id) {
                    Some(why) => Outcome::Refused(proof, why),
                    None => Outcome::Expired(proof),
                }),
                None => {
                    self.rebroadcast(tx).await;
                    None
                }
            },
            TxStatus::Pending => None,
        })
    }

    /// The chain's proof that the transaction can never land, if it has one: the head
    /// block's time is past its expiry (which has the grace in it), and the node has no
    /// trace of it. A block past the expiry can no longer include it, whatever any node
    /// answered to a broadcast; a slow or stalled chain (or a fast local clock) just keeps
    /// the order waiting. The head is read first, then the transaction: any block that could
    /// hold it is then at or below a head the node had already, so the node would know it.
    /// The order's writer checks the head's time against the expiry it recorded.
    async fn never_lands(&self, tx: &SignedTransaction) -> Result<Option<NeverLands>, ChainError> {
        if Utc::now() <= tx.expires_at {
            return Ok(None);
        }
        let head_time = self.0.chain.head_block().await?.time;
        if head_time <= tx.expires_at || !self.unseen(&tx.tx_id).await? {
            return Ok(None);
        }
        Ok(Some(NeverLands::PastExpiry { head_time }))
    }

    /// How long a parked order waits before its next poll: quick at first, then backing off
    /// to a third of the chain's usual confirmation time, so polls stay few on slow chains.
    fn next_poll(&self, id: OrderId) -> Duration {
        if self.scanner_keeps_up() {
            // The scanner wakes the order when its transaction lands; this is the fallback.
            return ASK_DIRECTLY_EVERY;
        }
        let first = self.0.config.poll_interval;
        let ceiling = (self.0.chain.expected_confirmation() / 3).max(first);
        self.with_pause(id, |pause| {
            let now = pause.wait;
            pause.wait = (pause.wait * 2).min(ceiling);
            now
        })
    }

    /// The order's pause record, started at the first poll interval.
    fn with_pause<T>(&self, id: OrderId, f: impl FnOnce(&mut Pause) -> T) -> T {
        let mut pauses = self.0.pauses.lock().expect("saga lock");
        f(pauses.entry(id).or_insert(Pause {
            wait: self.0.config.poll_interval,
            failures: 0,
            refusals: 0,
        }))
    }

    /// A reclaim the chain will not take yet: the renter's lock has not run out (TRON
    /// extends one lock over every delegation to the same receiver), or the delegation is
    /// gone from chain (undelegated by hand). Only the supplier's energy waits, never money,
    /// so the order is parked with a growing pause rather than retried hot, and said loudly.
    fn reclaim_refused(&self, id: OrderId, why: &str) -> Flow {
        let refusals = self.with_pause(id, |pause| {
            pause.refusals += 1;
            pause.refusals
        });
        let after = (self.0.config.poll_interval * 2u32.saturating_pow(refusals.min(16)))
            .min(MAX_REFUSED_RECLAIM_PAUSE);
        if refusals >= REFUSALS_BEFORE_ALERT {
            tracing::error!(order_id = %id, why, refusals, retry_in = ?after, "the chain keeps refusing this rental's reclaim; the supplier's energy stays delegated until it takes it");
        } else {
            tracing::warn!(order_id = %id, why, retry_in = ?after, "reclaim refused by the chain; trying again later");
        }
        Flow::ParkFor(after)
    }

    /// Counts a delegation of this order that failed on chain; returns the count so far.
    fn failed_on_chain(&self, id: OrderId) -> u32 {
        let first = self.0.config.poll_interval;
        self.with_pause(id, |pause| {
            pause.failures += 1;
            pause.wait = first;
            pause.failures
        })
    }

    /// Sends an unseen transaction again, at most every [`REBROADCAST_EVERY`] (harmless: the
    /// same bytes, the same id), in case the node lost it. Whatever the answer, the order
    /// keeps waiting until the chain settles it or proves it dead.
    async fn rebroadcast(&self, tx: &SignedTransaction) {
        if self.sent_lately(&tx.tx_id) {
            return;
        }
        if let Err(e) = self.send(tx).await {
            tracing::debug!(tx_id = tx.tx_id, error = %e, "rebroadcast failed");
        }
    }

    /// Whether the chain has no trace of the transaction.
    async fn unseen(&self, tx_id: &str) -> Result<bool, ChainError> {
        Ok(matches!(
            self.0.chain.status(tx_id).await?,
            TxStatus::Unknown
        ))
    }

    /// Whether this process sent the transaction within the last [`REBROADCAST_EVERY`].
    fn sent_lately(&self, tx_id: &str) -> bool {
        self.0
            .sent
            .lock()
            .expect("saga lock")
            .get(tx_id)
            .is_some_and(|at| at.elapsed() < REBROADCAST_EVERY)
    }

    fn note_sent(&self, tx_id: &str) {
        let mut sent = self.0.sent.lock().expect("saga lock");
        if sent.len() > 10_000 {
            // An entry only matters while it can still hold back a rebroadcast.
            sent.retain(|_, at| at.elapsed() < REBROADCAST_EVERY);
        }
        sent.insert(tx_id.to_owned(), Instant::now());
    }

    fn rental_seconds(&self, o: &OrderView) -> u64 {
        (o.duration.seconds() as f64 * self.0.config.rental_time_scale).ceil() as u64
    }

    async fn fail(
        &self,
        o: &OrderView,
        reason: FailureReason,
        detail: &str,
        failed_tx: Option<(String, NeverLands)>,
    ) -> Result<(), StepError> {
        tracing::warn!(order_id = %o.order_id, user_id = %o.user_id, reason = reason.code(), detail, "order failed");
        let cmd = OrderCmd::Fail {
            reason,
            detail: detail.to_owned(),
            failed_tx,
        };
        let meta = CommandMeta::new(Uuid::now_v7());
        self.record(
            self.0
                .engine
                .order_command(meta, o.user_id, o.order_id, cmd),
        )
        .await?;
        Ok(())
    }

    /// Runs an engine command in one of the saga's slots, then waits until the read models
    /// show what it recorded, so the next step sees it; hands the command's result back.
    async fn record<R>(
        &self,
        command: impl std::future::Future<Output = Result<Executed<R>, EngineError>>,
    ) -> Result<Executed<R>, StepError> {
        let done = {
            let _slot = self.0.engine_slots.acquire().await;
            command.await?
        };
        crate::consistency::projected(&self.0.models, &done).await;
        Ok(done)
    }
}

/// Test hook: `FLASHRENT_CRASH_AT=after_sign|after_broadcast` aborts the process at that point
/// of a delegation, so the crash tests can restart the engine between two recorded steps.
fn crash_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("FLASHRENT_CRASH_AT").ok());
    if at.as_deref() == Some(name) {
        eprintln!("FLASHRENT_CRASH_AT={name}: aborting");
        std::process::abort();
    }
}
