//! The writer of a partition: the one task that decides its commands, one at a time,
//! against the partition's state, and hands what it decided to the partition's appender.

use super::appender::{append_batches, Decided, Flags, ToAppender};
use super::claim::{take, Owned, Ownership};
use super::load::{load_partition, snapshot_failed, LoadedPartition};
use super::snapshot::{Pager, SnapshotError};
use super::{Assignment, Caller, DurableRecords, EngineError, Job};
use crate::domain::PartitionState;
use crate::domain::Touches;
use flashrent_events::{Envelope, EventLog, LogError, Offset, PartitionId};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use uuid::Uuid;

/// How often a writer whose log is down tries to reload.
const RELOAD_BACKOFF: Duration = Duration::from_secs(1);

/// A partition this writer holds: the state it decides against, and its appender.
struct Held {
    state: PartitionState,
    /// The assignment it was taken under.
    generation: u64,
    appender: mpsc::UnboundedSender<ToAppender>,
    /// The appender's task: it returns once its channel is closed and drained.
    appending: tokio::task::JoinHandle<()>,
    poisoned: Arc<AtomicBool>,
    fenced: Arc<AtomicBool>,
}

/// The one task that decides the commands of a partition.
pub(super) struct Writer {
    log: Arc<dyn EventLog>,
    /// Where the state lives between snapshots; it outlives each hold of the partition.
    pager: Pager,
    partition: PartitionId,
    ownership: Ownership,
    records: Option<Arc<dyn DurableRecords>>,
    seen_end: Arc<AtomicU64>,
    owned: Owned,
    taken: broadcast::Sender<(PartitionId, Offset)>,
    held: Option<Held>,
    /// Appenders of earlier holds, still confirming what was handed to them.
    letting_go: Vec<tokio::task::JoinHandle<()>>,
    /// The last failed (re)load: while the log is down, one attempt a second, and the
    /// commands queued behind a failed attempt fail at once instead of each waiting it out.
    last_failure: Option<(std::time::Instant, LogError)>,
}

impl Writer {
    pub(super) fn new(
        log: Arc<dyn EventLog>,
        pager: Pager,
        partition: PartitionId,
        ownership: Ownership,
        records: Option<Arc<dyn DurableRecords>>,
        owned: Owned,
        taken: broadcast::Sender<(PartitionId, Offset)>,
    ) -> Writer {
        Writer {
            log,
            pager,
            partition,
            ownership,
            records,
            seen_end: Arc::new(AtomicU64::new(0)),
            owned,
            taken,
            held: None,
            letting_go: Vec::new(),
            last_failure: None,
        }
    }

    /// Loads the partition and holds it at once: the only writer of the log has nothing to
    /// claim, and a log it cannot read stops the start.
    pub(super) async fn hold_sole(&mut self) -> Result<(), LogError> {
        let loaded = load_partition(self.log.as_ref(), self.partition, &mut self.pager).await?;
        self.hold(loaded, 0);
        Ok(())
    }

    /// Decides commands until `stop` says stop, then finishes ([`Writer::finish`]).
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Job>,
        mut assignment: watch::Receiver<Assignment>,
        mut stop: crate::shutdown::Token,
    ) {
        loop {
            tokio::select! {
                biased;
                _ = crate::shutdown::stopped(&mut stop) => {
                    self.finish(&mut rx, &assignment).await;
                    return;
                }
                changed = assignment.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *assignment.borrow_and_update();
                    if now.assigned {
                        self.last_failure = None;
                        // Claim at once, so the log names the new owner before any request.
                        if let Err(e) = self.ensure_held(now).await {
                            tracing::warn!(partition = self.partition, error = %e, "cannot claim an assigned partition yet");
                        }
                    } else {
                        self.release();
                    }
                }
                job = rx.recv() => {
                    let Some(job) = job else { return };
                    let now = *assignment.borrow();
                    self.handle(job, now).await;
                }
            }
        }
    }

    /// Takes no more commands, decides those already queued, and returns once its appenders
    /// have made everything decided durable and answered every caller; then writes what is
    /// pending of its snapshot. Commands sent after this are refused ([`EngineError::Stopped`]).
    async fn finish(
        &mut self,
        rx: &mut mpsc::Receiver<Job>,
        assignment: &watch::Receiver<Assignment>,
    ) {
        rx.close();
        let mut decided = 0;
        while let Some(job) = rx.recv().await {
            let now = *assignment.borrow();
            self.handle(job, now).await;
            decided += 1;
        }
        // Its channel closed, the appender confirms what it was handed and returns.
        if let Some(held) = self.held.take() {
            drop(held.appender);
            let _ = held.appending.await;
        }
        for appending in self.letting_go.drain(..) {
            let _ = appending.await;
        }
        self.pager.close();
        tracing::debug!(partition = self.partition, decided, "writer stopped");
    }

    fn hold(&mut self, loaded: LoadedPartition, generation: u64) {
        let poisoned = Arc::new(AtomicBool::new(false));
        let fenced = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::unbounded_channel();
        // Owned from here: nothing awaits before the state is held below.
        let hold = self.owned.held();
        let flags = Flags {
            poisoned: poisoned.clone(),
            fenced: fenced.clone(),
            seen_end: self.seen_end.clone(),
            owned: self.owned.clone(),
            hold,
        };
        self.seen_end.fetch_max(loaded.next, Ordering::AcqRel);
        let at = (self.partition, loaded.fence, loaded.next);
        let appending = tokio::spawn(append_batches(
            self.log.clone(),
            at,
            rx,
            flags,
            self.records.clone(),
        ));
        if let Some(earlier) = self.held.take() {
            self.letting_go.push(earlier.appending);
        }
        self.held = Some(Held {
            state: loaded.state,
            generation,
            appender: tx,
            appending,
            poisoned,
            fenced,
        });
        let _ = self.taken.send((self.partition, loaded.next));
    }

    /// Stops deciding; records already handed to the log are still confirmed.
    fn release(&mut self) {
        if self.let_go() {
            tracing::info!(partition = self.partition, "partition released");
        }
    }

    /// Stops deciding; whether it held the partition.
    fn let_go(&mut self) -> bool {
        self.owned.released();
        self.letting_go.retain(|a| !a.is_finished());
        match self.held.take() {
            Some(held) => {
                self.letting_go.push(held.appending);
                true
            }
            None => false,
        }
    }

    /// Makes sure this writer holds its partition under `assignment`, claiming or reloading
    /// it when it does not.
    async fn ensure_held(&mut self, assignment: Assignment) -> Result<(), LogError> {
        if !assignment.assigned {
            return Err(LogError::Fenced(self.partition));
        }
        if let Some(h) = &self.held {
            if h.generation == assignment.generation {
                // Fenced under the assignment it holds: another instance claimed since, and
                // the group has not told this one yet. Claiming back would fight over it.
                if h.fenced.load(Ordering::Acquire) {
                    return Err(LogError::Fenced(self.partition));
                }
                if !h.poisoned.load(Ordering::Acquire) {
                    return Ok(());
                }
            }
        }
        if let Some((at, e)) = &self.last_failure {
            if at.elapsed() < RELOAD_BACKOFF {
                return Err(e.clone());
            }
        }
        let partition = self.partition;
        if self.let_go() {
            tracing::info!(
                partition,
                "reloading the partition (an append failed, or it was given anew)"
            );
        }
        let retaken = take(
            self.log.as_ref(),
            partition,
            &self.ownership,
            &mut self.pager,
        )
        .await
        .and_then(|loaded| {
            // A log shorter than what this writer already saw durable has lost
            // acknowledged records (a broker that dropped data): deciding on what is left
            // would spend money twice. Refuse until an operator looks.
            let seen = self.seen_end.load(Ordering::Acquire);
            if loaded.next < seen {
                tracing::error!(
                    partition,
                    log_end = loaded.next,
                    seen,
                    "the event log lost acknowledged records; this partition takes no commands"
                );
                return Err(LogError::failed(format!(
                    "partition {partition} ends at {} but held records up to {seen}",
                    loaded.next
                )));
            }
            Ok(loaded)
        });
        match retaken {
            Ok(loaded) => {
                if matches!(self.ownership, Ownership::Claim { .. }) {
                    tracing::info!(partition, epoch = loaded.fence.epoch, "partition claimed");
                }
                self.last_failure = None;
                self.hold(loaded, assignment.generation);
                Ok(())
            }
            Err(e) => {
                self.last_failure = Some((std::time::Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    async fn handle(&mut self, job: Job, assignment: Assignment) {
        let Job {
            key,
            command,
            meta,
            caller,
        } = job;
        let refuse = |caller: oneshot::Sender<_>, e: EngineError| drop(caller.send(Err(e)));
        if let Err(e) = self.ensure_held(assignment).await {
            return refuse(caller, EngineError::Log(e));
        }
        let held = self.held.as_mut().expect("held after ensure_held");
        let Touches { user, order } = command.touches();
        if let Err(e) = self.pager.touch(&mut held.state, user, order) {
            return refuse(caller, EngineError::Log(self.unreadable(e)));
        }
        let decision = match held.state.decide(&command) {
            Ok(d) => d,
            Err(e) => return refuse(caller, EngineError::Domain(e)),
        };
        let caller = Caller {
            tx: caller,
            partition: self.partition,
            reply: decision.reply,
            events: decision.events.clone(),
        };
        if decision.events.is_empty() {
            caller.answer(Ok(None));
            return;
        }
        let mut envelopes = Vec::with_capacity(decision.events.len());
        let mut names = String::new();
        for event in decision.events {
            let (aggregate, aggregate_id) = event.aggregate();
            let sequence = match self.pager.evolve(&mut held.state, &event) {
                Ok(sequence) => sequence,
                Err(e) => {
                    // Nothing of this command was handed to the log: it failed whole.
                    caller.answer(Err(self.unreadable(e)));
                    return;
                }
            };
            if !names.is_empty() {
                names.push(',');
            }
            let _ = write!(names, "{}@{}", event.event_type(), event.schema_version());
            envelopes.push(Envelope {
                event_id: Uuid::now_v7(),
                aggregate,
                aggregate_id,
                sequence,
                occurred_at: meta.now,
                schema_version: event.schema_version(),
                correlation_id: meta.correlation_id,
                causation_id: meta.command_id,
                event,
            });
        }
        let decided = Decided {
            key,
            command_id: meta.command_id,
            events: envelopes,
            names,
            caller,
        };
        if let Err(mpsc::error::SendError(ToAppender::Decided(d))) =
            held.appender.send(ToAppender::Decided(decided))
        {
            d.caller
                .answer(Err(LogError::failed("the writer's appender stopped")));
        }
        if self.pager.due() {
            self.snapshot().await;
        }
    }

    /// A snapshot that failed (the pager dropped it): the state, which may now lack an
    /// aggregate, is reloaded from the log before the next command.
    fn unreadable(&self, e: SnapshotError) -> LogError {
        tracing::error!(partition = self.partition, error = %e, "writer snapshot unreadable; reloading the partition from the log");
        if let Some(h) = &self.held {
            h.poisoned.store(true, Ordering::Release);
        }
        snapshot_failed(self.partition, e)
    }

    /// Writes a snapshot once everything decided so far is durable. Commands wait meanwhile
    /// (one append's time): the snapshot must be exactly the log up to its offset.
    async fn snapshot(&mut self) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        if held.appender.send(ToAppender::Barrier(tx)).is_err() {
            return;
        }
        // Unanswered: an append failed or was fenced, and the writer reloads or stops.
        let Ok((fence, next)) = rx.await else {
            return;
        };
        if let Err(e) = self.pager.save(&mut held.state, fence, next) {
            self.unreadable(e);
        }
    }
}
