//! The command side. Each partition has exactly one writer task; every command for a key
//! goes to the writer of that key's partition and is decided there, one at a time, against
//! the partition's state. Two concurrent commands on one user are therefore serialized,
//! and no interleaving can break an invariant.
//!
//! A writer does not wait for one append to be durable before deciding the next command:
//! it applies the events to its state at once and hands the record to the log, which makes
//! many records durable with one sync. Each caller is answered only when its own record is
//! durable. If an append fails, the writer rebuilds its state from the log before it
//! decides anything else, so a decision never rests on an event the log does not have.

pub mod commands;

pub use commands::ReserveOutcome;

use crate::domain::{DomainError, PartitionState};
use chrono::{DateTime, Utc};
use flashrent_events::{
    decode_record, encode_record, partition_for_key, CommandRecord, Envelope, Event, EventLog,
    LogError, Offset, PartitionId,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the engine is shutting down")]
    Stopped,
}

/// Who asked, and when. "Now" comes from here, never from inside a decision.
#[derive(Debug, Clone, Copy)]
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
#[derive(Debug)]
pub struct Executed<R> {
    pub reply: R,
    pub partition: PartitionId,
    /// The record's offset; `None` when the command decided nothing new.
    pub offset: Option<Offset>,
    pub events: Vec<Event>,
}

type Reply = Box<dyn FnOnce(Result<Option<Offset>, LogError>) + Send>;
type JobFn = Box<dyn FnOnce(&PartitionState) -> (Vec<Event>, Reply) + Send>;

struct Job {
    key: String,
    meta: CommandMeta,
    decide: JobFn,
}

#[derive(Clone)]
pub struct Engine {
    log: Arc<dyn EventLog>,
    writers: Arc<Vec<mpsc::Sender<Job>>>,
}

impl Engine {
    /// Loads every partition's state from the log and starts its writer.
    pub async fn start(log: Arc<dyn EventLog>) -> Result<Engine, LogError> {
        let mut writers = Vec::new();
        for partition in 0..log.partition_count() {
            let state = load_partition(log.as_ref(), partition).await?;
            let (tx, rx) = mpsc::channel(4096);
            tokio::spawn(writer(log.clone(), partition, state, rx));
            writers.push(tx);
        }
        Ok(Engine {
            log,
            writers: Arc::new(writers),
        })
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    pub fn partition_of(&self, key: &str) -> PartitionId {
        partition_for_key(key.as_bytes(), self.writers.len() as u32)
    }

    /// Decides `decide` on the state of `key`'s partition, appends what it decided as one
    /// record, and answers once that record is durable.
    pub async fn execute<R: Send + 'static>(
        &self,
        key: &str,
        meta: CommandMeta,
        decide: impl FnOnce(&PartitionState) -> Result<(Vec<Event>, R), DomainError> + Send + 'static,
    ) -> Result<Executed<R>, EngineError> {
        let partition = self.partition_of(key);
        let (tx, rx) = oneshot::channel::<Result<Executed<R>, EngineError>>();
        let job: JobFn = Box::new(move |state| match decide(state) {
            Ok((events, reply)) => {
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
            Err(e) => (
                vec![],
                Box::new(move |_| drop(tx.send(Err(EngineError::Domain(e))))),
            ),
        });
        self.writers[partition as usize]
            .send(Job {
                key: key.to_owned(),
                meta,
                decide: job,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }
}

/// Folds a partition's whole history into the state its writer decides against.
pub async fn load_partition(
    log: &dyn EventLog,
    partition: PartitionId,
) -> Result<PartitionState, LogError> {
    let mut state = PartitionState::default();
    let mut from = 0;
    loop {
        let batch = log.read(partition, from, 4096, Duration::ZERO).await?;
        if batch.is_empty() {
            return Ok(state);
        }
        for rec in &batch {
            let record = decode_record(&rec.bytes).map_err(|e| {
                LogError::Failed(format!("partition {partition} offset {}: {e}", rec.offset))
            })?;
            for env in &record.events {
                state.evolve(&env.event);
            }
        }
        from = batch.last().map_or(from, |r| r.offset + 1);
    }
}

async fn writer(
    log: Arc<dyn EventLog>,
    partition: PartitionId,
    mut state: PartitionState,
    mut rx: mpsc::Receiver<Job>,
) {
    let poisoned = Arc::new(AtomicBool::new(false));
    while let Some(job) = rx.recv().await {
        if poisoned.load(Ordering::Acquire) {
            match load_partition(log.as_ref(), partition).await {
                Ok(s) => {
                    state = s;
                    poisoned.store(false, Ordering::Release);
                }
                Err(e) => {
                    let (_, reply) = (job.decide)(&state);
                    reply(Err(e));
                    continue;
                }
            }
        }
        let (events, reply) = (job.decide)(&state);
        if events.is_empty() {
            reply(Ok(None));
            continue;
        }
        let mut envelopes = Vec::with_capacity(events.len());
        for event in events {
            let (aggregate, aggregate_id) = event.aggregate();
            let sequence = state.version_of(&event) + 1;
            state.evolve(&event);
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
        let record = CommandRecord {
            command_id: job.meta.command_id,
            key: job.key,
            writer_epoch: 0,
            events: envelopes,
        };
        let durable = log.append(partition, encode_record(&record));
        let poisoned = poisoned.clone();
        tokio::spawn(async move {
            let result = durable.await;
            if result.is_err() {
                poisoned.store(true, Ordering::Release);
            }
            reply(result.map(Some));
        });
    }
}
