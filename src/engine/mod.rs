//! The command side. Each partition has exactly one writer task; every command for a key
//! goes to the writer of that key's partition and is decided there, one at a time, against
//! the partition's state. Two concurrent commands on one user are therefore serialized,
//! and no interleaving can break an invariant.
//!
//! A writer does not wait for one append to be durable before deciding the next command:
//! it applies the events to its state at once and hands them to its partition's appender.
//! The appender keeps one record in flight: the commands decided while it waits go out
//! together as the next record (group commit), so the log sees one record per batch of
//! commands rather than per command, and the batches grow with the load. Each caller is
//! answered only when the record holding its events is durable. If an append fails, the
//! writer rebuilds its state from the log before it decides anything else, so a decision
//! never rests on an event the log does not have.

pub mod commands;
mod snapshot;

pub use crate::domain::pool::ReserveOutcome;
pub use snapshot::SNAPSHOT_EVERY;

use crate::domain::{DomainError, PartitionState};
use chrono::{DateTime, Utc};
use flashrent_events::{
    decode_record, encode_record, partition_for_key, Admission, CommandRecord, Envelope,
    EpochFence, Event, EventLog, LogError, Offset, OrderId, PartitionId, RecordMeta, UserId,
};
use flashrent_projections::{LiveApplier, ReadModels};
use snapshot::{Pager, SnapshotError};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the engine is shutting down")]
    Stopped,
    /// The instance that writes the partition refused the command (`code` is its API code).
    #[error("the owning instance refused the command ({code}): {message}")]
    Remote { code: String, message: String },
    /// A decision answered with a reply of another kind than its command's.
    #[error("a command was answered with an unexpected reply: {0}")]
    UnexpectedReply(String),
}

/// Pool commands decided by another instance: on a shared log the wallet pool's partition
/// may be written by another instance than the one whose saga needs a reservation.
#[async_trait::async_trait]
pub trait RemotePool: Send + Sync {
    /// Has the instance that writes `partition` decide `command`; the reply is the
    /// reservation's outcome for `Reserve`.
    async fn execute(
        &self,
        partition: PartitionId,
        meta: CommandMeta,
        command: crate::domain::pool::Command,
    ) -> Result<Executed<Option<ReserveOutcome>>, EngineError>;
}

/// Who asked, and when. "Now" comes from here, never from inside a decision.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct CommandMeta {
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub now: DateTime<Utc>,
}

impl CommandMeta {
    pub fn new(correlation_id: Uuid) -> CommandMeta {
        CommandMeta {
            command_id: Uuid::now_v7(),
            correlation_id,
            now: Utc::now(),
        }
    }
}

/// A decided and durable command.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Executed<R> {
    pub reply: R,
    pub partition: PartitionId,
    /// The record's offset; `None` when the command decided nothing new.
    pub offset: Option<Offset>,
    pub events: Vec<Event>,
}

impl<R> Executed<R> {
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Executed<S> {
        Executed {
            reply: f(self.reply),
            partition: self.partition,
            offset: self.offset,
            events: self.events,
        }
    }
}

type Reply = Box<dyn FnOnce(Result<Option<Offset>, LogError>) + Send>;
/// Decides on the partition's state, or (given none) answers that the writer cannot.
type JobFn = Box<dyn FnOnce(Option<&PartitionState>) -> (Vec<Event>, Reply) + Send>;

struct Job {
    key: String,
    touches: Touches,
    meta: CommandMeta,
    decide: JobFn,
}

/// The account and order a command reads (besides the partition's pool): its writer reads
/// them back from its snapshot before deciding.
#[derive(Debug, Clone, Copy, Default)]
pub struct Touches {
    pub user: Option<UserId>,
    pub order: Option<OrderId>,
}

#[derive(Clone)]
pub struct Engine {
    log: Arc<dyn EventLog>,
    writers: Arc<Vec<mpsc::Sender<Job>>>,
    assignments: Arc<Vec<watch::Sender<Assignment>>>,
    owned: Arc<Vec<Arc<AtomicBool>>>,
    taken: broadcast::Sender<(PartitionId, Offset)>,
    remote: Arc<OnceLock<Arc<dyn RemotePool>>>,
}

/// Where writers keep their state between snapshots, and how often they write one.
pub struct WriterSnapshots<'a> {
    pub store: &'a ReadModels,
    /// Events between two snapshots of a partition.
    pub every: u64,
}

/// Whether this instance may write a partition. Every change of owner bumps `generation`,
/// so a writer that was revoked and given the partition back claims it anew.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Assignment {
    assigned: bool,
    generation: u64,
}

impl Engine {
    /// Starts a writer per partition. With [`Ownership::Sole`] every partition is loaded and
    /// written at once; with [`Ownership::Claim`] a partition is claimed only once
    /// [`Engine::assign`] gives it to this instance. With `applier`, each writer hands its
    /// own records to the live applier as soon as they are durable and count, so the read
    /// models (and the saga) see them without reading them back from the log. With `snapshots`, each
    /// writer keeps its state in that store (see [`snapshot`]); without, in memory.
    pub async fn start(
        log: Arc<dyn EventLog>,
        ownership: Ownership,
        applier: Option<Applier>,
        snapshots: Option<WriterSnapshots<'_>>,
    ) -> Result<Engine, LogError> {
        let (taken, _) = broadcast::channel(1024);
        let mut writers = Vec::new();
        let mut assignments = Vec::new();
        let mut owned = Vec::new();
        let applier = applier.map(Arc::new);
        let sole = matches!(ownership, Ownership::Sole);
        for partition in 0..log.partition_count() {
            let (assignment, watched) = watch::channel(Assignment {
                assigned: sole,
                generation: 0,
            });
            let pager = match &snapshots {
                Some(s) => Pager::on_disk(
                    s.store
                        .derived_tree(&format!("writer-{partition}"))
                        .map_err(|e| LogError::Failed(e.to_string()))?,
                    s.every,
                ),
                None => Pager::in_memory(),
            };
            let mut w = Writer {
                log: log.clone(),
                pager,
                partition,
                ownership: ownership.clone(),
                applier: applier.clone(),
                seen_end: Arc::new(AtomicU64::new(0)),
                owned: Arc::new(AtomicBool::new(false)),
                taken: taken.clone(),
                held: None,
                last_failure: None,
            };
            if sole {
                let loaded = load_partition(log.as_ref(), partition, &mut w.pager).await?;
                w.hold(loaded, 0);
            }
            let (tx, rx) = mpsc::channel(4096);
            owned.push(w.owned.clone());
            tokio::spawn(w.run(rx, watched));
            writers.push(tx);
            assignments.push(assignment);
        }
        Ok(Engine {
            log,
            writers: Arc::new(writers),
            assignments: Arc::new(assignments),
            owned: Arc::new(owned),
            taken,
            remote: Arc::default(),
        })
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    pub fn partition_of(&self, key: &str) -> PartitionId {
        partition_for_key(key.as_bytes(), self.writers.len() as u32)
    }

    /// Gives partitions to this instance (`true`) or takes them away, as the consumer group
    /// decided. A partition given is claimed at once; one taken away decides nothing more.
    pub fn assign(&self, partitions: &[PartitionId], assigned: bool) {
        for p in partitions {
            if let Some(a) = self.assignments.get(*p as usize) {
                a.send_modify(|a| {
                    a.assigned = assigned;
                    a.generation += 1;
                });
            }
        }
    }

    /// Whether this instance writes `partition` now (claimed, and not fenced out).
    pub fn owns(&self, partition: PartitionId) -> bool {
        self.owned
            .get(partition as usize)
            .is_some_and(|o| o.load(Ordering::Acquire))
    }

    /// Whether the group gave `partition` to this instance (it may not have claimed it yet).
    pub fn assigned(&self, partition: PartitionId) -> bool {
        self.assignments
            .get(partition as usize)
            .is_some_and(|a| a.borrow().assigned)
    }

    /// Each partition this instance claims from now on, with the offset after its claim:
    /// once the read models reach it, they hold everything the previous owner left.
    pub fn taken(&self) -> broadcast::Receiver<(PartitionId, Offset)> {
        self.taken.subscribe()
    }

    /// Where pool commands go when another instance writes the pool's partition.
    pub fn set_remote_pool(&self, remote: Arc<dyn RemotePool>) {
        let _ = self.remote.set(remote);
    }

    pub(crate) fn remote_pool(&self) -> Option<&Arc<dyn RemotePool>> {
        self.remote.get()
    }

    /// Decides `decide` on the state of `key`'s partition, appends what it decided as one
    /// record, and answers once that record is durable.
    pub async fn execute<R: Send + 'static>(
        &self,
        key: &str,
        touches: Touches,
        meta: CommandMeta,
        decide: impl FnOnce(&PartitionState) -> Result<(Vec<Event>, R), DomainError> + Send + 'static,
    ) -> Result<Executed<R>, EngineError> {
        let partition = self.partition_of(key);
        let (tx, rx) = oneshot::channel::<Result<Executed<R>, EngineError>>();
        let job: JobFn = Box::new(move |state| match state.map(decide) {
            None => (
                vec![],
                Box::new(move |res: Result<Option<Offset>, LogError>| {
                    let e = res.err().map_or(EngineError::Stopped, EngineError::Log);
                    drop(tx.send(Err(e)))
                }),
            ),
            Some(Ok((events, reply))) => {
                let evs = events.clone();
                let answer: Reply = Box::new(move |res| {
                    let _ = tx.send(
                        res.map(|offset| Executed {
                            reply,
                            partition,
                            offset,
                            events: evs,
                        })
                        .map_err(EngineError::Log),
                    );
                });
                (events, answer)
            }
            Some(Err(e)) => (
                vec![],
                Box::new(move |_| drop(tx.send(Err(EngineError::Domain(e))))),
            ),
        });
        self.writers[partition as usize]
            .send(Job {
                key: key.to_owned(),
                touches,
                meta,
                decide: job,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }
}

/// A partition's state as its writer decides against it, and where the log stood.
struct LoadedPartition {
    state: PartitionState,
    fence: EpochFence,
    /// The offset after the last record read.
    next: Offset,
}

fn snapshot_failed(partition: PartitionId, e: SnapshotError) -> LogError {
    LogError::Failed(format!("partition {partition}: {e}"))
}

/// Folds a partition's history (what the log holds now) into the state its writer decides
/// against, from its snapshot on when there is one, counting only the records the epoch
/// fence admits.
async fn load_partition(
    log: &dyn EventLog,
    partition: PartitionId,
    pager: &mut Pager,
) -> Result<LoadedPartition, LogError> {
    let end = log.end_offset(partition).await?;
    let restored = pager.restore().unwrap_or_else(|e| {
        tracing::warn!(partition, error = %e, "writer snapshot unreadable; folding the partition from offset 0");
        None
    });
    let mut loaded = match restored {
        Some(r) if r.next > end => {
            // The snapshot saw records the log no longer has: a broker that lost
            // acknowledged data, or a data directory of another log.
            tracing::error!(
                partition,
                snapshot = r.next,
                log_end = end,
                "the event log ends before this instance's snapshot of it; this partition takes no commands"
            );
            return Err(LogError::Failed(format!(
                "partition {partition} ends at {end} but this data directory's snapshot of it is at {}",
                r.next
            )));
        }
        Some(r) => LoadedPartition {
            state: r.state,
            fence: r.fence,
            next: r.next,
        },
        None => LoadedPartition {
            state: PartitionState::default(),
            fence: EpochFence::default(),
            next: 0,
        },
    };
    fold_into(log, partition, &mut loaded, end, pager).await?;
    Ok(loaded)
}

/// Records folded between two chances to write a snapshot while loading.
const FOLD_CHUNK: Offset = 256;

/// Reads `[loaded.next, end)` into `loaded`. Fails if the log cannot give all of it: a
/// writer must never decide on a state that misses records.
async fn fold_into(
    log: &dyn EventLog,
    partition: PartitionId,
    loaded: &mut LoadedPartition,
    end: Offset,
    pager: &mut Pager,
) -> Result<(), LogError> {
    let LoadedPartition { state, fence, next } = loaded;
    while *next < end {
        let upto = end.min(*next + FOLD_CHUNK);
        read_fenced(log, partition, fence, next, upto, |record| {
            for env in &record.events {
                pager
                    .evolve(state, &env.event)
                    .map_err(|e| snapshot_failed(partition, e))?;
            }
            Ok(())
        })
        .await?;
        if pager.due() {
            pager
                .save(state, *fence, *next)
                .map_err(|e| snapshot_failed(partition, e))?;
        }
    }
    Ok(())
}

/// Reads `[*next, end)` through the fence and hands every record it admits to `admitted`.
/// Fails if the log cannot give all of it.
async fn read_fenced(
    log: &dyn EventLog,
    partition: PartitionId,
    fence: &mut EpochFence,
    next: &mut Offset,
    end: Offset,
    mut admitted: impl FnMut(&CommandRecord) -> Result<(), LogError>,
) -> Result<(), LogError> {
    while *next < end {
        let max = (end - *next).min(4096) as usize;
        let batch = log
            .read(partition, *next, max, Duration::from_secs(15))
            .await?;
        if batch.is_empty() {
            return Err(LogError::Unavailable(format!(
                "partition {partition}: no record at {next} though the log ends at {end}"
            )));
        }
        for rec in batch.iter().take_while(|r| r.offset < end) {
            // Offsets of an event topic are dense (no compaction, no transactions): a gap is
            // a record the log lost, and a state folded without it would be wrong.
            if rec.offset != *next {
                tracing::error!(
                    partition,
                    expected = *next,
                    found = rec.offset,
                    "the event log lost acknowledged records; this partition takes no commands"
                );
                return Err(LogError::Failed(format!(
                    "partition {partition}: record {next} is missing from the log"
                )));
            }
            let record = decode_record(&rec.bytes).map_err(|e| {
                LogError::Failed(format!("partition {partition} offset {}: {e}", rec.offset))
            })?;
            if fence.admit(&record) == Admission::Events {
                admitted(&record)?;
            }
            *next = rec.offset + 1;
        }
    }
    Ok(())
}

/// How a writer holds its partition.
#[derive(Debug, Clone)]
pub enum Ownership {
    /// The only process on this log (the embedded log): nothing to claim.
    Sole,
    /// A shared log: claim the partition with a new epoch, advertising this HTTP base.
    Claim { owner: String },
}

/// The record key of what belongs to the partition rather than to one aggregate: claims, and
/// records of several keys.
fn partition_key(partition: PartitionId) -> String {
    format!("partition-{partition}")
}

/// Appends a claim with an epoch above every one before it and returns the state to decide
/// against, once the claim is known to be the one that counts.
async fn claim(
    log: &dyn EventLog,
    partition: PartitionId,
    owner: &str,
    pager: &mut Pager,
) -> Result<LoadedPartition, LogError> {
    let mut loaded = load_partition(log, partition, pager).await?;
    let epoch = loaded.fence.epoch + 1;
    let record = CommandRecord {
        command_id: Uuid::now_v7(),
        key: partition_key(partition),
        writer_epoch: epoch,
        events: vec![],
        owner: Some(owner.to_owned()),
    };
    let meta = RecordMeta {
        key: &record.key,
        events: "",
    };
    let at = log
        .append_with(partition, meta, encode_record(&record))
        .await?;
    // Records that landed before the claim (another writer's, or a racing claim) count.
    fold_into(log, partition, &mut loaded, at + 1, pager).await?;
    if loaded.fence.epoch != epoch {
        return Err(LogError::Fenced(partition));
    }
    Ok(loaded)
}

/// Where a writer hands its records once they are durable and count: the live applier of
/// this process's read models (which also tells the reactors).
#[derive(Clone)]
pub struct Applier {
    pub live: LiveApplier,
}

/// How often a writer whose log is down tries to reload.
const RELOAD_BACKOFF: Duration = Duration::from_secs(1);

/// What a writer and its appender share.
struct Flags {
    /// An append failed: reload before deciding again.
    poisoned: Arc<AtomicBool>,
    /// A newer claim took the partition: decide nothing more.
    fenced: Arc<AtomicBool>,
    /// The end of the partition as far as this writer has seen it durable.
    seen_end: Arc<AtomicU64>,
    /// Cleared with `fenced`: what [`Engine::owns`] reads.
    owned: Arc<AtomicBool>,
}

/// What a writer hands its appender.
enum ToAppender {
    Decided(Decided),
    /// Answered with where the log stands once everything handed over before it is
    /// durable and still counts; dropped unanswered if an append failed or was fenced.
    Barrier(oneshot::Sender<(EpochFence, Offset)>),
}

/// A decided command on its way to the log, and who waits for it.
struct Decided {
    key: String,
    command_id: Uuid,
    events: Vec<Envelope>,
    /// `Type@version` of each event, comma-separated, for the record's header.
    names: String,
    reply: Reply,
}

/// Most commands one record holds. A record must stay well below the broker's largest
/// fetch (1 MiB by default; Tansu cannot hand out a record larger than the fetch at all):
/// a command's events are a few KiB at most.
const MAX_BATCH: usize = 128;

async fn take(
    log: &dyn EventLog,
    partition: PartitionId,
    ownership: &Ownership,
    pager: &mut Pager,
) -> Result<LoadedPartition, LogError> {
    match ownership {
        Ownership::Sole => load_partition(log, partition, pager).await,
        Ownership::Claim { owner } => claim(log, partition, owner, pager).await,
    }
}

/// A partition this writer holds: the state it decides against, and its appender.
struct Held {
    state: PartitionState,
    /// The assignment it was taken under.
    generation: u64,
    appender: mpsc::UnboundedSender<ToAppender>,
    poisoned: Arc<AtomicBool>,
    fenced: Arc<AtomicBool>,
}

/// The one task that decides the commands of a partition.
struct Writer {
    log: Arc<dyn EventLog>,
    /// Where the state lives between snapshots; it outlives each hold of the partition.
    pager: Pager,
    partition: PartitionId,
    ownership: Ownership,
    applier: Option<Arc<Applier>>,
    seen_end: Arc<AtomicU64>,
    owned: Arc<AtomicBool>,
    taken: broadcast::Sender<(PartitionId, Offset)>,
    held: Option<Held>,
    /// The last failed (re)load: while the log is down, one attempt a second, and the
    /// commands queued behind a failed attempt fail at once instead of each waiting it out.
    last_failure: Option<(std::time::Instant, LogError)>,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Job>,
        mut assignment: watch::Receiver<Assignment>,
    ) {
        loop {
            tokio::select! {
                biased;
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

    fn hold(&mut self, loaded: LoadedPartition, generation: u64) {
        let poisoned = Arc::new(AtomicBool::new(false));
        let fenced = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::unbounded_channel();
        let flags = Flags {
            poisoned: poisoned.clone(),
            fenced: fenced.clone(),
            seen_end: self.seen_end.clone(),
            owned: self.owned.clone(),
        };
        self.seen_end.fetch_max(loaded.next, Ordering::AcqRel);
        let at = (self.partition, loaded.fence, loaded.next);
        tokio::spawn(append_batches(
            self.log.clone(),
            at,
            rx,
            flags,
            self.applier.clone(),
        ));
        self.held = Some(Held {
            state: loaded.state,
            generation,
            appender: tx,
            poisoned,
            fenced,
        });
        self.owned.store(true, Ordering::Release);
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
        self.owned.store(false, Ordering::Release);
        self.held.take().is_some()
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
                return Err(LogError::Failed(format!(
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
        if let Err(e) = self.ensure_held(assignment).await {
            let (_, reply) = (job.decide)(None);
            reply(Err(e));
            return;
        }
        let held = self.held.as_mut().expect("held after ensure_held");
        let Touches { user, order } = job.touches;
        if let Err(e) = self.pager.touch(&mut held.state, user, order) {
            let (_, reply) = (job.decide)(None);
            reply(Err(self.unreadable(e)));
            return;
        }
        let (events, reply) = (job.decide)(Some(&held.state));
        if events.is_empty() {
            reply(Ok(None));
            return;
        }
        let mut envelopes = Vec::with_capacity(events.len());
        let mut names = String::new();
        for event in events {
            let (aggregate, aggregate_id) = event.aggregate();
            let sequence = match self.pager.evolve(&mut held.state, &event) {
                Ok(sequence) => sequence,
                Err(e) => {
                    // Nothing of this command was handed to the log: it failed whole.
                    reply(Err(self.unreadable(e)));
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
                occurred_at: job.meta.now,
                schema_version: event.schema_version(),
                correlation_id: job.meta.correlation_id,
                causation_id: job.meta.command_id,
                event,
            });
        }
        let decided = Decided {
            key: job.key,
            command_id: job.meta.command_id,
            events: envelopes,
            names,
            reply,
        };
        if let Err(mpsc::error::SendError(ToAppender::Decided(d))) =
            held.appender.send(ToAppender::Decided(decided))
        {
            (d.reply)(Err(LogError::Failed(
                "the writer's appender stopped".into(),
            )));
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

/// One record of the commands `first` and those queued behind it (up to [`MAX_BATCH`]),
/// and their callers in record order.
/// A barrier met on the way ends the batch and is returned, to be answered after it.
fn batch(
    first: Decided,
    queued: &mut mpsc::UnboundedReceiver<ToAppender>,
    partition: PartitionId,
    epoch: u64,
) -> (CommandRecord, String, Vec<Reply>, Option<Barrier>) {
    let mut record = CommandRecord {
        command_id: first.command_id,
        key: first.key,
        writer_epoch: epoch,
        events: first.events,
        owner: None,
    };
    let mut names = first.names;
    let mut replies = vec![first.reply];
    while replies.len() < MAX_BATCH {
        let next = match queued.try_recv() {
            Ok(ToAppender::Decided(next)) => next,
            Ok(ToAppender::Barrier(barrier)) => return (record, names, replies, Some(barrier)),
            Err(_) => break,
        };
        // Kafka's record key says whose record it is; a batch of several keys is the
        // partition's.
        if next.key != record.key {
            record.key = partition_key(partition);
        }
        record.events.extend(next.events);
        names.push(',');
        names.push_str(&next.names);
        replies.push(next.reply);
    }
    (record, names, replies, None)
}

type Barrier = oneshot::Sender<(EpochFence, Offset)>;

/// Appends the decided commands, a batch per record with one record in flight, and
/// answers each command's caller once its record is durable *and* still counts: the next
/// offset after this writer's own last record means nobody wrote in between; otherwise the
/// records in between are read, and a newer claim among them means this writer was fenced
/// out (its record is ignored by every reader, so it must not be acknowledged). An append
/// that fails poisons the writer, which reloads before deciding again, so a decision never
/// rests on an event the log does not have.
async fn append_batches(
    log: Arc<dyn EventLog>,
    (partition, mut fence, mut next): (PartitionId, EpochFence, Offset),
    mut rx: mpsc::UnboundedReceiver<ToAppender>,
    flags: Flags,
    applier: Option<Arc<Applier>>,
) {
    let Flags {
        poisoned,
        fenced,
        seen_end,
        owned,
    } = flags;
    let mine = fence.epoch;
    let counts = |poisoned: &AtomicBool, fenced: &AtomicBool| {
        !poisoned.load(Ordering::Acquire) && !fenced.load(Ordering::Acquire)
    };
    while let Some(first) = rx.recv().await {
        let first = match first {
            ToAppender::Decided(first) => first,
            ToAppender::Barrier(barrier) => {
                if counts(&poisoned, &fenced) {
                    let _ = barrier.send((fence, next));
                }
                continue;
            }
        };
        let (record, names, replies, barrier) = batch(first, &mut rx, partition, mine);
        let meta = RecordMeta {
            key: &record.key,
            events: &names,
        };
        let durable = log.append_with(partition, meta, encode_record(&record));
        let record = Arc::new(record);
        let result = match durable.await {
            Err(e) => {
                poisoned.store(true, Ordering::Release);
                Err(e)
            }
            Ok(_) if fenced.load(Ordering::Acquire) => Err(LogError::Fenced(partition)),
            Ok(at) if at == next => {
                next = at + 1;
                Ok(Some(at))
            }
            Ok(at) => {
                // Only the fence matters for the records in between: read them for it alone.
                let mut gap = next;
                let between = read_fenced(
                    log.as_ref(),
                    partition,
                    &mut fence,
                    &mut gap,
                    at,
                    |_| Ok(()),
                );
                match between.await {
                    Ok(()) if fence.epoch == mine => {
                        next = at + 1;
                        Ok(Some(at))
                    }
                    Ok(()) => {
                        tracing::error!(
                            partition,
                            epoch = mine,
                            newer = fence.epoch,
                            "another instance claimed this partition; this writer stops deciding"
                        );
                        fenced.store(true, Ordering::Release);
                        owned.store(false, Ordering::Release);
                        Err(LogError::Fenced(partition))
                    }
                    Err(e) => {
                        poisoned.store(true, Ordering::Release);
                        Err(e)
                    }
                }
            }
        };
        seen_end.fetch_max(next, Ordering::AcqRel);
        if let (Ok(Some(at)), Some(applier)) = (&result, &applier) {
            applier.live.offer(partition, *at, record);
        }
        for reply in replies {
            reply(result.clone());
        }
        if let Some(barrier) = barrier {
            if counts(&poisoned, &fenced) {
                let _ = barrier.send((fence, next));
            }
        }
        if poisoned.load(Ordering::Acquire) {
            // Everything queued behind a failed append fails too: the writer reloads.
            while let Ok(queued) = rx.try_recv() {
                if let ToAppender::Decided(d) = queued {
                    (d.reply)(Err(LogError::Unavailable(
                        "an earlier append failed; retry".into(),
                    )));
                }
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests;
