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
//!
//! Where each part lives: `writer.rs` (the writer task), `appender.rs` (group commit and
//! the check that a record still counts), `load.rs` (folding the log into a writer's
//! state), `claim.rs` (who writes a partition), `snapshot.rs` (a writer's state on disk),
//! `commands.rs` (typed calls that build a [`Command`] and read its reply). The engine knows nothing of
//! the read side: it hands each durable record to a [`DurableRecords`] sink, and says which
//! partitions it writes as data ([`Engine::owned_partitions`]).

mod appender;
mod claim;
pub mod commands;
mod load;
mod snapshot;
mod writer;

pub use crate::domain::pool::ReserveOutcome;
pub use claim::Ownership;
pub use snapshot::{drop_snapshots, SNAPSHOT_EVERY};

use crate::domain::{Command, DomainError, Reply};
use chrono::{DateTime, Utc};
use claim::Owned;
use flashrent_events::{
    partition_for_key, CommandRecord, Event, EventLog, LogError, Offset, OwnedPartitions,
    PartitionId,
};
use flashrent_store::SledStore;
use snapshot::Pager;
use std::sync::{Arc, OnceLock};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use uuid::Uuid;
use writer::Writer;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the engine is shutting down")]
    Stopped,
    /// A decision answered with a reply of another kind than its command's.
    #[error("a command was answered with an unexpected reply: {0}")]
    UnexpectedReply(String),
}

/// Commands decided by another instance: on a shared log, a command for a partition this
/// instance does not write goes to the instance that does.
#[async_trait::async_trait]
pub trait Remote: Send + Sync {
    /// Has the instance that writes `partition` decide `command`.
    async fn execute(
        &self,
        partition: PartitionId,
        meta: CommandMeta,
        command: Command,
    ) -> Result<Executed<Reply>, EngineError>;
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

/// A command for a partition's writer, and who waits for its answer.
struct Job {
    /// The command's partition key (also the record's key on Kafka).
    key: String,
    command: Command,
    meta: CommandMeta,
    caller: oneshot::Sender<Result<Executed<Reply>, EngineError>>,
}

/// A decided command's caller, answered once its record is durable (or not).
pub(super) struct Caller {
    tx: oneshot::Sender<Result<Executed<Reply>, EngineError>>,
    partition: PartitionId,
    reply: Reply,
    events: Vec<Event>,
}

impl Caller {
    fn answer(self, durable: Result<Option<Offset>, LogError>) {
        let Caller {
            tx,
            partition,
            reply,
            events,
        } = self;
        let _ = tx.send(
            durable
                .map(|offset| Executed {
                    reply,
                    partition,
                    offset,
                    events,
                })
                .map_err(EngineError::Log),
        );
    }
}

/// Where the writers hand each record once it is durable and counts, in offset order within
/// a partition, as soon as it is: the read side's live applier, so the read models (and the
/// reactors) see the record without reading it back from the log.
pub trait DurableRecords: Send + Sync {
    fn durable(&self, partition: PartitionId, offset: Offset, record: Arc<CommandRecord>);
}

#[derive(Clone)]
pub struct Engine {
    log: Arc<dyn EventLog>,
    /// The writers' tasks, until [`Engine::stop`].
    writing: Arc<std::sync::Mutex<Option<crate::shutdown::Stage>>>,
    writers: Arc<Vec<mpsc::Sender<Job>>>,
    assignments: Arc<Vec<watch::Sender<Assignment>>>,
    owned: Arc<Vec<Owned>>,
    owned_partitions: Arc<watch::Sender<OwnedPartitions>>,
    taken: broadcast::Sender<(PartitionId, Offset)>,
    remote: Arc<OnceLock<Arc<dyn Remote>>>,
}

/// See [`Engine::partitions`].
#[derive(Clone)]
pub struct Partitions {
    log: Arc<dyn EventLog>,
    owned: Arc<Vec<Owned>>,
}

impl Partitions {
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// As [`Engine::owns`].
    pub fn owns(&self, partition: PartitionId) -> bool {
        self.owned.get(partition as usize).is_some_and(Owned::get)
    }
}

/// Where writers keep their state between snapshots, and how often they write one.
pub struct WriterSnapshots<'a> {
    /// The data dir's sled database: each partition's snapshot is a tree of its own there.
    pub store: &'a SledStore,
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
    /// [`Engine::assign`] gives it to this instance. With `records`, each writer hands its
    /// own records to that sink as soon as they are durable and count. With `snapshots`,
    /// each writer keeps its state in that store (see [`snapshot`]); without, in memory.
    pub async fn start(
        log: Arc<dyn EventLog>,
        ownership: Ownership,
        records: Option<Arc<dyn DurableRecords>>,
        snapshots: Option<WriterSnapshots<'_>>,
    ) -> Result<Engine, LogError> {
        let (taken, _) = broadcast::channel(1024);
        let partitions = log.partition_count();
        let owned_partitions = Arc::new(watch::channel(OwnedPartitions::none(partitions)).0);
        let mut writers = Vec::new();
        let mut assignments = Vec::new();
        let mut owned = Vec::new();
        let sole = matches!(ownership, Ownership::Sole);
        let mut writing = crate::shutdown::Stage::new("writers");
        if let Some(s) = &snapshots {
            snapshot::drop_former(s.store)
                .map_err(|e| LogError::failed_by("dropping the writers' former snapshots", e))?;
        }
        for partition in 0..partitions {
            let (assignment, watched) = watch::channel(Assignment {
                assigned: sole,
                generation: 0,
            });
            let pager = match &snapshots {
                Some(s) => Pager::on_disk(
                    snapshot::tree(s.store, partition).map_err(|e| {
                        LogError::failed_by(format!("opening partition {partition}'s snapshot"), e)
                    })?,
                    s.every,
                ),
                None => Pager::in_memory(),
            };
            let flag = Owned::new(partition, owned_partitions.clone());
            let mut w = Writer::new(
                log.clone(),
                pager,
                partition,
                ownership.clone(),
                records.clone(),
                flag.clone(),
                taken.clone(),
            );
            if sole {
                w.hold_sole().await?;
            }
            let (tx, rx) = mpsc::channel(4096);
            owned.push(flag);
            writing.track("writer", tokio::spawn(w.run(rx, watched, writing.token())));
            writers.push(tx);
            assignments.push(assignment);
        }
        Ok(Engine {
            log,
            writing: Arc::new(std::sync::Mutex::new(Some(writing))),
            writers: Arc::new(writers),
            assignments: Arc::new(assignments),
            owned: Arc::new(owned),
            owned_partitions,
            taken,
            remote: Arc::default(),
        })
    }

    /// Stops every writer, each once it has decided the commands queued for it and its
    /// appender has made them durable and answered their callers (the live applier is handed
    /// each record as usual). A command sent after this is refused with
    /// [`EngineError::Stopped`]. A writer still at it after `grace` is aborted; how many were.
    pub async fn stop(&self, grace: std::time::Duration) -> usize {
        let writing = self.writing.lock().expect("engine lock").take();
        match writing {
            Some(stage) => stage.stop(grace).await,
            None => 0,
        }
    }

    /// Where the log is and which partitions this instance writes, without the rest of
    /// the engine: for what the engine itself holds (its [`Remote`]), which would otherwise
    /// keep the engine alive through a cycle.
    pub fn partitions(&self) -> Partitions {
        Partitions {
            log: self.log.clone(),
            owned: self.owned.clone(),
        }
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
        self.owned.get(partition as usize).is_some_and(Owned::get)
    }

    /// The partitions this instance writes, as [`Engine::owns`] answers for each, from now on.
    pub fn owned_partitions(&self) -> watch::Receiver<OwnedPartitions> {
        self.owned_partitions.subscribe()
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

    /// Where commands go when another instance writes their partition.
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.remote.set(remote);
    }

    /// Decides `command` in its partition's writer, and answers once what it decided is
    /// durable. On a shared log, a command for a partition this instance does not write (or
    /// no longer does: fenced) is decided by the instance that does ([`Remote`]).
    pub async fn execute(
        &self,
        meta: CommandMeta,
        command: Command,
    ) -> Result<Executed<Reply>, EngineError> {
        let key = command.key();
        let partition = self.partition_of(&key);
        let Some(remote) = self.remote.get() else {
            return self.decide_here(key, partition, meta, command).await;
        };
        if !self.assigned(partition) {
            return remote.execute(partition, meta, command).await;
        }
        // Kept for a fence found only at append time; a command is a few hundred bytes.
        let again = command.clone();
        match self.decide_here(key, partition, meta, command).await {
            Err(EngineError::Log(LogError::Fenced(_))) => {
                remote.execute(partition, meta, again).await
            }
            done => done,
        }
    }

    /// Decides `command` in this instance's writer of its partition, never elsewhere
    /// (fenced if this instance does not write it): what another instance asks of this one.
    pub async fn execute_here(
        &self,
        meta: CommandMeta,
        command: Command,
    ) -> Result<Executed<Reply>, EngineError> {
        let key = command.key();
        let partition = self.partition_of(&key);
        self.decide_here(key, partition, meta, command).await
    }

    async fn decide_here(
        &self,
        key: String,
        partition: PartitionId,
        meta: CommandMeta,
        command: Command,
    ) -> Result<Executed<Reply>, EngineError> {
        let (caller, answer) = oneshot::channel();
        self.writers[partition as usize]
            .send(Job {
                key,
                command,
                meta,
                caller,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }
}
