//! The step driver: drives one order step by step, each step a command whose events are the
//! record of it, and evolves what it knows of the order with those events. Delegation and
//! reclaim are driven by the same code, parameterised by their [`Leg`].

use super::backoff::Backoff;
use super::faults::FaultPoint;
use super::receivers::Receivers;
use super::scheduler::{End, Pacer};
use super::step::{self, OrderProgress, Step};
use super::tracker::{Outcome, Sent, TxTracker, ASK_DIRECTLY_EVERY};
use super::SagaConfig;
use crate::chain::{Chain, ChainError, Delegation, SignedTransaction};
use crate::domain::order::{Command as OrderCmd, Leg, NeverLands, TxId};
use crate::domain::pool::Command as PoolCmd;
use crate::engine::{CommandMeta, Engine, EngineError, Executed, ReserveOutcome};
use chrono::Utc;
use flashrent_events::{FailureReason, Offset, OrderId, OrderKind, PartitionId, TronAddress};
use flashrent_projections::ReadModels;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Engine commands the saga has under way at once, whatever number of workers waits on the
/// chain: a block that confirms hundreds of delegations wakes as many workers, and their
/// commands, all at once, held up the requests queued behind them in the same writers.
const ENGINE_COMMANDS_AT_ONCE: usize = 32;

pub(super) struct Driver {
    engine: Engine,
    models: ReadModels,
    chain: Arc<dyn Chain>,
    config: SagaConfig,
    pub(super) tracker: TxTracker,
    pub(super) backoff: Backoff,
    receivers: Receivers,
    pacer: Pacer,
    /// Commands the saga has in the engine at once (see [`ENGINE_COMMANDS_AT_ONCE`]).
    engine_slots: tokio::sync::Semaphore,
    shutdown: watch::Receiver<bool>,
}

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

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Store(#[from] flashrent_projections::StoreError),
    /// A command of the order recorded nothing: it was decided against a newer order than
    /// the driver knows (which then reads the order again).
    #[error("the order moved on since the saga last knew it")]
    Stale,
}

/// A leg's transaction given up for good.
enum Dead {
    /// The chain proves it never landed.
    Expired(NeverLands),
    /// As `Expired`, after a node refused it (with the node's answer).
    Refused(NeverLands, String),
    /// In a block, failed (with the chain's reason).
    Failed(String),
}

/// One drive of one order: what the driver knows of the order, the drive's correlation, and
/// the last record it wrote in the order's partition.
struct Run {
    o: OrderProgress,
    correlation: Uuid,
    recorded: Option<(PartitionId, Offset)>,
}

impl Run {
    fn meta(&self) -> CommandMeta {
        CommandMeta::new(self.correlation)
    }
}

impl Driver {
    pub(super) fn new(
        engine: Engine,
        models: ReadModels,
        chain: Arc<dyn Chain>,
        config: SagaConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Driver {
        Driver {
            tracker: TxTracker::new(chain.clone(), config.poll_interval),
            backoff: Backoff::new(config.poll_interval),
            receivers: Receivers::new(config.inactive_receiver_ttl),
            pacer: Pacer::new(config.start_rate),
            engine_slots: tokio::sync::Semaphore::new(ENGINE_COMMANDS_AT_ONCE),
            engine,
            models,
            chain,
            config,
            shutdown,
        }
    }

    /// Drives one order, from what the saga knows of it (its read model when nothing);
    /// every log line inside carries its order and user ids.
    pub(super) async fn drive(
        &self,
        id: OrderId,
        known: Option<OrderProgress>,
    ) -> End<OrderProgress> {
        let span = tracing::info_span!("order", order_id = %id, user_id = tracing::field::Empty);
        tracing::Instrument::instrument(self.drive_order(id, known), span).await
    }

    async fn drive_order(&self, id: OrderId, known: Option<OrderProgress>) -> End<OrderProgress> {
        let Some(o) = known.or_else(|| self.read(id)) else {
            return End::Release;
        };
        // An order is driven by the instance that writes its partition.
        if !self.engine.writes_for(o.user_id) {
            return End::Release;
        }
        tracing::Span::current().record("user_id", tracing::field::display(o.user_id));
        let mut run = Run {
            o,
            correlation: Uuid::now_v7(),
            recorded: None,
        };
        let mut backoff = self.config.poll_interval;
        loop {
            if *self.shutdown.borrow() {
                return End::Release;
            }
            let step = match step::next_step(&run.o, Utc::now()) {
                // Broadcasts are not recorded (a signed transaction sent twice is the same
                // transaction: the node answers the second with DUP_TRANSACTION_ERROR), so a
                // transaction this process sent lately is waited on, not sent again; after a
                // restart it is sent once more, then waited on.
                Step::Broadcast(leg, tx) if self.tracker.sent_lately(&tx.tx_id) => {
                    Step::Await(leg, tx)
                }
                step => step,
            };
            match self.take(&mut run, step).await {
                Ok(Flow::Continue) => backoff = self.config.poll_interval,
                Ok(Flow::Stop) => {
                    self.let_go(&run).await;
                    return End::Release;
                }
                Ok(Flow::Park) => {
                    let after = self.backoff.next_poll(
                        id,
                        self.tracker.keeps_up(),
                        ASK_DIRECTLY_EVERY,
                        self.chain.expected_confirmation(),
                    );
                    return End::Park {
                        after,
                        known: run.o,
                    };
                }
                Ok(Flow::ParkFor(after)) => {
                    return End::Park {
                        after,
                        known: run.o,
                    }
                }
                Err(StepError::Engine(EngineError::Log(flashrent_events::LogError::Fenced(p)))) => {
                    // Another instance writes this partition now; its saga drives the order.
                    tracing::info!(order_id = %id, partition = p, "partition written elsewhere; leaving the order to its owner");
                    return End::Release;
                }
                Err(e) => {
                    if matches!(e, StepError::Stale) {
                        tracing::info!(order_id = %id, user_id = %run.o.user_id, "the order moved on; reading it again");
                    } else {
                        tracing::warn!(order_id = %id, user_id = %run.o.user_id, error = %e, "saga step failed; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    // What the driver knew may miss what the failed command (or another
                    // instance) recorded.
                    match self.read(id) {
                        Some(o) => run.o = o,
                        None => return End::Release,
                    }
                }
            }
        }
    }

    /// The order as its read model shows it.
    fn read(&self, id: OrderId) -> Option<OrderProgress> {
        match self.models.order(&id) {
            Ok(view) => view.map(OrderProgress::from_view),
            Err(e) => {
                tracing::error!(order_id = %id, error = %e, "saga cannot read the order");
                None
            }
        }
    }

    /// Runs one step.
    async fn take(&self, r: &mut Run, step: Step) -> Result<Flow, StepError> {
        match step {
            Step::Done => Ok(Flow::Stop),
            Step::Reserve => self.reserve(r).await,
            Step::Sign(leg) => self.sign(leg, r).await,
            Step::Broadcast(leg, tx) => self.broadcast(leg, r, tx).await,
            Step::Await(leg, tx) => self.await_settled(leg, r, tx).await,
            Step::Settle { refund } => self.settle(r, refund).await,
            // The rental-end index brings the order back when it is due.
            Step::AwaitRentalEnd(_) => Ok(Flow::Stop),
        }
    }

    /// Holds energy in the pool, checks the receiver, and starts processing with the first
    /// delegation signed.
    async fn reserve(&self, r: &mut Run) -> Result<Flow, StepError> {
        let o = &r.o;
        let pinned = (o.kind == OrderKind::Manual)
            .then_some(o.supplier_wallet)
            .flatten();
        self.pacer.start().await;
        // Reserve before anything else waits: the saga's one thread then sends reservations
        // in the order it took the orders up, first come first served.
        let reserve = self.engine.reserve(r.meta(), o.order_id, o.energy, pinned);
        let reserved = self.command(reserve).await?;
        let wallet = match reserved.reply {
            ReserveOutcome::Reserved { wallet } => wallet,
            ReserveOutcome::Rejected => {
                self.wait_visible(&reserved).await;
                let why = "no supplier wallet has enough energy";
                self.fail(r, FailureReason::InsufficientPoolEnergy, why, None)
                    .await?;
                return Ok(Flow::Continue);
            }
        };
        if !self
            .receivers
            .activated(&*self.chain, &o.receive_address)
            .await?
        {
            // Failed, the order's hold is released and its payment given back (Step::Settle).
            self.wait_visible(&reserved).await;
            let why = "the receiving address is not activated on chain";
            self.fail(r, FailureReason::ReceiverNotActivated, why, None)
                .await?;
            return Ok(Flow::Continue);
        }
        // Sign before recording, and record before broadcasting: a crash between the two
        // leaves a signature nobody ever sends.
        let signed = match self
            .chain
            .sign_delegation(&self.delegation(o, wallet))
            .await
        {
            Ok(tx) => Some(tx),
            Err(ChainError::Refused(why)) => {
                tracing::warn!(order_id = %o.order_id, why, "the chain refused to build the delegation");
                None
            }
            Err(err) => return Err(err.into()),
        };
        let recorded_signature = signed.is_some();
        self.wait_visible(&reserved).await;
        let cmd = OrderCmd::StartProcessing {
            supplier_wallet: wallet,
            signed,
        };
        self.order(r, cmd).await?;
        if recorded_signature {
            let point = FaultPoint::after_sign(Leg::Delegation);
            self.config.faults.reached(point);
        }
        Ok(Flow::Continue)
    }

    /// Signs a transaction of the leg and records it, before it is ever sent.
    async fn sign(&self, leg: Leg, r: &mut Run) -> Result<Flow, StepError> {
        let wallet =
            r.o.supplier_wallet
                .expect("an order past its reservation has its supplier wallet");
        let d = self.delegation(&r.o, wallet);
        let signed = match leg {
            Leg::Delegation => self.chain.sign_delegation(&d).await,
            Leg::Reclaim => self.chain.sign_reclaim(&d).await,
        };
        match signed {
            Ok(tx) => {
                self.order(r, OrderCmd::RecordSigned { leg, tx }).await?;
                self.config.faults.reached(FaultPoint::after_sign(leg));
                Ok(Flow::Continue)
            }
            Err(ChainError::Refused(why)) => self.refused(leg, r, &why, None).await,
            Err(err) => Err(err.into()),
        }
    }

    /// Sends the leg's recorded transaction (again).
    async fn broadcast(
        &self,
        leg: Leg,
        r: &mut Run,
        tx: SignedTransaction,
    ) -> Result<Flow, StepError> {
        match self.tracker.broadcast(r.o.order_id, &tx).await? {
            Sent::Out { watched_ahead } => {
                let point = FaultPoint::after_broadcast(leg);
                self.config.faults.reached(Some(point));
                Ok(if watched_ahead {
                    Flow::Park
                } else {
                    Flow::Continue
                })
            }
            Sent::Dead {
                proof,
                refused: None,
            } => {
                tracing::info!(order_id = %r.o.order_id, tx_id = %tx.tx_id, "{} can never land (the chain is past its expiry and has no trace of it); signing anew", leg.noun());
                self.given_up(leg, r, tx.tx_id, Dead::Expired(proof)).await
            }
            Sent::Dead {
                proof,
                refused: Some(why),
            } => {
                self.given_up(leg, r, tx.tx_id, Dead::Refused(proof, why))
                    .await
            }
        }
    }

    /// Waits for the leg's transaction to settle, and records how it did.
    async fn await_settled(
        &self,
        leg: Leg,
        r: &mut Run,
        tx: SignedTransaction,
    ) -> Result<Flow, StepError> {
        let dead = match self.tracker.settled(r.o.order_id, &tx).await? {
            None => return Ok(Flow::Park),
            Some(Outcome::Confirmed(block)) => {
                match leg {
                    Leg::Delegation => self.complete(r, tx.tx_id, block).await?,
                    Leg::Reclaim => self.end_rental(r, tx.tx_id).await?,
                }
                return Ok(Flow::Continue);
            }
            Some(Outcome::Failed(reason)) => Dead::Failed(reason),
            Some(Outcome::Expired(proof)) => Dead::Expired(proof),
            Some(Outcome::Refused(proof, why)) => Dead::Refused(proof, why),
        };
        self.given_up(leg, r, tx.tx_id, dead).await
    }

    /// A leg's transaction that will never land. Its expiry is recorded and a new one signed,
    /// except where the legs differ: a delegation a node refused fails the order (refunded),
    /// as does one failed on chain too often; a reclaim a node refused waits, as only the
    /// supplier's energy is held up, never money.
    async fn given_up(
        &self,
        leg: Leg,
        r: &mut Run,
        tx_id: TxId,
        dead: Dead,
    ) -> Result<Flow, StepError> {
        let id = r.o.order_id;
        let proof = match dead {
            Dead::Expired(proof) => proof,
            Dead::Refused(proof, why) => {
                return self.refused(leg, r, &why, Some((tx_id, proof))).await
            }
            Dead::Failed(reason) => match leg {
                Leg::Delegation => {
                    let failures = self.backoff.failed_on_chain(id);
                    if failures >= self.config.max_delegation_attempts {
                        let failed = Some((tx_id, NeverLands::FailedOnChain));
                        self.fail(r, FailureReason::DelegationFailed, &reason, failed)
                            .await?;
                        return Ok(Flow::Continue);
                    }
                    tracing::warn!(order_id = %id, reason, attempt = failures, "delegation failed on chain; trying again");
                    NeverLands::FailedOnChain
                }
                Leg::Reclaim => {
                    tracing::warn!(order_id = %id, reason, "reclaim failed on chain; signing anew");
                    tokio::time::sleep(self.config.poll_interval).await;
                    NeverLands::FailedOnChain
                }
            },
        };
        self.order(r, OrderCmd::Expire { leg, tx_id, proof })
            .await?;
        Ok(Flow::Continue)
    }

    /// The chain refuses the leg's transaction (to build it, or, with `dead`, to take the
    /// recorded one, proven dead).
    async fn refused(
        &self,
        leg: Leg,
        r: &mut Run,
        why: &str,
        dead: Option<(TxId, NeverLands)>,
    ) -> Result<Flow, StepError> {
        match leg {
            Leg::Delegation => {
                self.fail(r, FailureReason::DelegationFailed, why, dead)
                    .await?;
                Ok(Flow::Continue)
            }
            Leg::Reclaim => {
                // Dead: a fresh one is signed once the chain would take it.
                if let Some((tx_id, proof)) = dead {
                    self.order(r, OrderCmd::Expire { leg, tx_id, proof })
                        .await?;
                }
                Ok(Flow::ParkFor(
                    self.backoff.reclaim_refused(r.o.order_id, why),
                ))
            }
        }
    }

    /// The delegation landed: the pool counts its energy delegated, then the order completes.
    async fn complete(&self, r: &mut Run, tx_id: TxId, block: u64) -> Result<(), StepError> {
        let order_id = r.o.order_id;
        let mark = self
            .engine
            .pool_command(r.meta(), PoolCmd::MarkDelegated { order_id });
        let delegated = self.command(mark).await?;
        self.wait_visible(&delegated).await;
        let now = Utc::now();
        let rental_ends_at = now + chrono::Duration::seconds(self.rental_seconds(&r.o) as i64);
        let cmd = OrderCmd::Complete {
            transaction_hash: tx_id,
            block_number: block,
            now,
            rental_ends_at,
        };
        self.order(r, cmd).await
    }

    /// The reclaim landed: the pool takes its energy back, then the rental ends.
    async fn end_rental(&self, r: &mut Run, tx_id: TxId) -> Result<(), StepError> {
        let order_id = r.o.order_id;
        let back = self
            .engine
            .pool_command(r.meta(), PoolCmd::Return { order_id });
        let returned = self.command(back).await?;
        self.wait_visible(&returned).await;
        let cmd = OrderCmd::EndRental {
            reclaim_transaction_hash: tx_id,
            now: Utc::now(),
        };
        self.order(r, cmd).await
    }

    /// A failed order: the pool's hold released, and its payment given back if it had one.
    async fn settle(&self, r: &mut Run, refund: bool) -> Result<Flow, StepError> {
        let (user, order_id) = (r.o.user_id, r.o.order_id);
        let release = self
            .engine
            .pool_command(r.meta(), PoolCmd::Release { order_id });
        let released = self.command(release).await?;
        if !refund {
            return Ok(Flow::Stop);
        }
        self.wait_visible(&released).await;
        let refunded = self
            .command(self.engine.refund(r.meta(), user, order_id))
            .await?;
        self.evolve(r, refunded)?;
        Ok(Flow::Continue)
    }

    async fn fail(
        &self,
        r: &mut Run,
        reason: FailureReason,
        detail: &str,
        failed_tx: Option<(TxId, NeverLands)>,
    ) -> Result<(), StepError> {
        let (user, order_id) = (r.o.user_id, r.o.order_id);
        tracing::warn!(order_id = %order_id, user_id = %user, reason = reason.code(), detail, "order failed");
        let cmd = OrderCmd::Fail {
            reason,
            detail: detail.to_owned(),
            failed_tx,
        };
        let meta = CommandMeta::new(Uuid::now_v7());
        let done = self
            .command(self.engine.order_command(meta, user, order_id, cmd))
            .await?;
        self.evolve(r, done)
    }

    /// Runs a command of the order and evolves what the driver knows with what it recorded.
    async fn order(&self, r: &mut Run, cmd: OrderCmd) -> Result<(), StepError> {
        let (user, order_id) = (r.o.user_id, r.o.order_id);
        let command = self.engine.order_command(r.meta(), user, order_id, cmd);
        let done = self.command(command).await?;
        self.evolve(r, done)
    }

    /// Evolves the order with the events a command of it recorded. A step always changes an
    /// order the driver knows as it is: a command that recorded nothing found it changed.
    fn evolve<R>(&self, r: &mut Run, done: Executed<R>) -> Result<(), StepError> {
        let Some(offset) = done.offset else {
            return Err(StepError::Stale);
        };
        r.recorded = Some((done.partition, offset));
        for event in &done.events {
            r.o.evolve(event);
        }
        Ok(())
    }

    /// Runs an engine command in one of the saga's slots.
    async fn command<R>(
        &self,
        command: impl Future<Output = Result<Executed<R>, EngineError>>,
    ) -> Result<Executed<R>, StepError> {
        let _slot = self.engine_slots.acquire().await;
        Ok(command.await?)
    }

    /// Waits until the read models show what a pool command recorded, before the order's
    /// step after it is recorded: the pool and the order live in different partitions, and a
    /// client that sees the order's step is to see the pool's too.
    async fn wait_visible<R>(&self, pool_done: &Executed<R>) {
        crate::consistency::projected(&self.models, pool_done).await;
    }

    /// Lets go of the order once the read models show the last record this drive wrote of
    /// it: the saga picks it up next from them (the index of unfinished orders, the
    /// rental-end index), and would otherwise act on a step it had already taken.
    async fn let_go(&self, r: &Run) {
        if let Some((partition, offset)) = r.recorded {
            self.models.wait_applied(partition, offset).await;
        }
    }

    fn delegation(&self, o: &OrderProgress, wallet: TronAddress) -> Delegation {
        Delegation {
            from: wallet,
            to: o.receive_address,
            energy: o.energy,
            lock_seconds: self.rental_seconds(o),
            delegation_tx: o.transaction_hash,
            order: o.order_id,
        }
    }

    fn rental_seconds(&self, o: &OrderProgress) -> u64 {
        (o.duration.seconds() as f64 * self.config.rental_time_scale).ceil() as u64
    }
}
