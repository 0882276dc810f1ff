//! The projector loop: one step function that applies a run of records and stores the
//! new position in the same atomic batch, and a task per partition that drives it.

use crate::apply::Staged;
use crate::keys;
use crate::store::{ReadModels, StoreError};
use crate::ReactorSink;
use flashrent_events::{
    decode_record, Admission, CommandRecord, EventLog, LogError, Offset, OwnedPartitions,
    PartitionId,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A record whose events the read models have just applied (once, and only if the epoch fence
/// counted them), passed on to reactors (the saga, the metrics) that act on events.
#[derive(Debug, Clone)]
pub struct ProjectedRecord {
    pub partition: PartitionId,
    pub offset: Offset,
    pub record: Arc<CommandRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("partition {partition}: record {found} came before {expected}")]
    Gap {
        partition: PartitionId,
        expected: Offset,
        found: Offset,
    },
    #[error("partition {partition} offset {offset} cannot be decoded: {why}")]
    Decode {
        partition: PartitionId,
        offset: Offset,
        why: String,
    },
}

/// Records of one partition, by offset, ready to apply.
pub type Run = (PartitionId, Vec<(Offset, Arc<CommandRecord>)>);

#[derive(Clone)]
pub struct Projector {
    pub name: &'static str,
    pub models: ReadModels,
}

pub const READ_MODELS: &str = "read_models";

impl Projector {
    pub fn new(models: ReadModels) -> Projector {
        Projector {
            name: READ_MODELS,
            models,
        }
    }

    /// Applies the records (which must start at this partition's checkpoint or before it)
    /// and advances the checkpoint, atomically. Records below the checkpoint are skipped,
    /// so applying a record twice changes nothing.
    pub fn step(
        &self,
        partition: PartitionId,
        records: &[(Offset, Arc<CommandRecord>)],
    ) -> Result<Offset, ProjectError> {
        let _one_applier = self.one_applier(partition);
        self.step_locked(partition, records, |_, _| {})
    }

    /// Applies runs of records of several partitions (each sorted by offset, starting at its
    /// partition's checkpoint or before it) as one step with every partition's new
    /// checkpoint. `counted` is told of each record whose events were applied.
    pub fn step_many(
        &self,
        runs: &[Run],
        mut counted: impl FnMut(PartitionId, Offset, &Arc<CommandRecord>),
    ) -> Result<(), ProjectError> {
        // Ascending partitions: the one lock order of every applier.
        let mut sorted: Vec<_> = runs.iter().filter(|(_, r)| !r.is_empty()).collect();
        sorted.sort_by_key(|(p, _)| *p);
        let _one_applier: Vec<_> = sorted.iter().map(|(p, _)| self.one_applier(*p)).collect();
        let mut staged = Staged::new(&self.models);
        let mut advanced = Vec::with_capacity(sorted.len());
        for (partition, records) in sorted {
            let next = self.stage(&mut staged, *partition, records, |o, r| {
                counted(*partition, o, r)
            })?;
            advanced.push((*partition, next));
        }
        self.write(staged, &advanced)
    }

    /// Held while a partition's records are applied: by its projector task, or the live applier.
    fn one_applier(&self, partition: PartitionId) -> Option<std::sync::MutexGuard<'_, ()>> {
        self.models
            .stepping
            .get(partition as usize)
            .map(|m| m.lock().expect("stepping lock"))
    }

    /// `counted` is told of each record whose events this step applied (not of those
    /// below the checkpoint, claims, or records the fence refused).
    fn step_locked(
        &self,
        partition: PartitionId,
        records: &[(Offset, Arc<CommandRecord>)],
        counted: impl FnMut(Offset, &Arc<CommandRecord>),
    ) -> Result<Offset, ProjectError> {
        if records.is_empty() {
            // Nothing to apply: writing the unchanged position would only create a `0`
            // checkpoint for an empty partition, which a rebuild (that never steps an empty
            // partition) does not have, and `rebuild --verify` would count as a difference.
            return Ok(self.models.checkpoint(self.name, partition)?);
        }
        let mut staged = Staged::new(&self.models);
        let next = self.stage(&mut staged, partition, records, counted)?;
        self.write(staged, &[(partition, next)])?;
        Ok(next)
    }

    /// Stages one partition's records and its new position (and epoch, if a claim moved it);
    /// returns the position. Records below the checkpoint are skipped; a record past the
    /// next expected offset is a gap, and nothing of the step is written.
    fn stage(
        &self,
        staged: &mut Staged<'_>,
        partition: PartitionId,
        records: &[(Offset, Arc<CommandRecord>)],
        mut counted: impl FnMut(Offset, &Arc<CommandRecord>),
    ) -> Result<Offset, ProjectError> {
        let mut next = self.models.checkpoint(self.name, partition)?;
        let mut fence = self.models.fence(self.name, partition)?;
        for (offset, record) in records {
            if *offset < next {
                continue;
            }
            if *offset > next {
                return Err(ProjectError::Gap {
                    partition,
                    expected: next,
                    found: *offset,
                });
            }
            match fence.admit(record) {
                Admission::Events => {
                    for env in &record.events {
                        staged.apply(env)?;
                    }
                    counted(*offset, record);
                }
                Admission::Claim => {
                    if let Some(owner) = &record.owner {
                        staged.put_raw(keys::owner(partition), owner.as_bytes().to_vec());
                    }
                }
                Admission::Fenced => {}
            }
            next = offset + 1;
        }
        staged.put_raw(
            keys::checkpoint(self.name, partition),
            next.to_be_bytes().to_vec(),
        );
        // Written at every step, though it rarely changes: the next step then finds it in
        // memory rather than asking sled for a key that is not there.
        staged.put_raw(
            keys::fence(self.name, partition),
            fence.epoch.to_be_bytes().to_vec(),
        );
        Ok(next)
    }

    /// Writes a step atomically, then tells the readers waiting on each partition.
    fn write(
        &self,
        staged: Staged<'_>,
        advanced: &[(PartitionId, Offset)],
    ) -> Result<(), ProjectError> {
        self.models.stage(staged.into_writes())?;
        for (partition, next) in advanced {
            if let Some(a) = self.models.applied.get(*partition as usize) {
                a.send_replace(*next);
            }
        }
        Ok(())
    }

    /// Reads and applies everything the partition has now; returns its new position.
    pub async fn catch_up(
        &self,
        log: &dyn EventLog,
        partition: PartitionId,
    ) -> Result<Offset, ProjectError> {
        // The end once, then fetches until it is reached: a shared log answers a fetch only
        // after a round trip, and asking for its end at every batch would double those.
        let end = log.end_offset(partition).await?;
        loop {
            let from = self.models.checkpoint(self.name, partition)?;
            if from >= end {
                if let Some(a) = self.models.applied.get(partition as usize) {
                    a.send_replace(from);
                }
                return Ok(from);
            }
            let batch = read_decoded(log, partition, from, Duration::from_secs(10)).await?;
            if batch.is_empty() {
                return Err(ProjectError::Log(LogError::unavailable(format!(
                    "partition {partition}: no record at {from} though the log ends at {end}"
                ))));
            }
            self.step(partition, &batch)?;
        }
    }
}

pub(crate) async fn read_decoded(
    log: &dyn EventLog,
    partition: PartitionId,
    from: Offset,
    wait: Duration,
) -> Result<Vec<(Offset, Arc<CommandRecord>)>, ProjectError> {
    read_decoded_past(log, partition, from, wait, || from).await
}

/// As [`read_decoded`], decoding only the records at or past `past()` once the read is back:
/// records applied meanwhile (the live applier's, on a shared log) are not decoded again.
async fn read_decoded_past(
    log: &dyn EventLog,
    partition: PartitionId,
    from: Offset,
    wait: Duration,
    past: impl FnOnce() -> Offset,
) -> Result<Vec<(Offset, Arc<CommandRecord>)>, ProjectError> {
    let raw = log.read(partition, from, 1024, wait).await?;
    let past = past();
    raw.into_iter()
        .filter(|r| r.offset >= past)
        .map(|r| {
            decode_record(&r.bytes)
                .map(|rec| (r.offset, Arc::new(rec)))
                .map_err(|e| ProjectError::Decode {
                    partition,
                    offset: r.offset,
                    why: e.to_string(),
                })
        })
        .collect()
}

/// How long a partition this process's writer holds may keep its checkpoint while the log
/// holds more before its projector reads the log itself.
const HELD_CHECK: Duration = Duration::from_secs(1);
/// How long a read waits for a record past the checkpoint.
const READ_WAIT: Duration = Duration::from_millis(500);
/// The pause before a failed step is tried again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What one step of a partition's projector did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Records were read and applied; the checkpoint is now `next`.
    Applied { next: Offset },
    /// The log had nothing past the checkpoint that was not applied meanwhile.
    CaughtUp,
    /// This process writes the partition and the live applier is handed its records:
    /// nothing was read.
    Held,
}

/// One partition of the log, followed into the read models by its own task.
pub struct PartitionProjector {
    projector: Projector,
    log: Arc<dyn EventLog>,
    partition: PartitionId,
    reactors: ReactorSink,
    owned: watch::Receiver<OwnedPartitions>,
}

impl PartitionProjector {
    /// Follows `partition` of `log`, leaving it to the live applier while `owned` has it.
    /// Each record whose events it applied is then offered to the reactors.
    pub fn new(
        projector: Projector,
        log: Arc<dyn EventLog>,
        partition: PartitionId,
        reactors: ReactorSink,
        owned: watch::Receiver<OwnedPartitions>,
    ) -> PartitionProjector {
        PartitionProjector {
            projector,
            log,
            partition,
            reactors,
            owned,
        }
    }

    /// Steps until `shutdown` turns true. A step that fails is tried again from the same
    /// position after a pause: the projector never skips a record.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let stepped = tokio::select! {
                stepped = self.step() => stepped,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            if let Err(e) = stepped {
                tracing::error!(partition = self.partition, error = %flashrent_events::ErrorChain(&e), "projector step failed; retrying from the same position");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_PAUSE) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        }
    }

    /// Reads what the log holds past the checkpoint and applies it with the new checkpoint,
    /// atomically, then offers the reactor each record whose events it applied (not claims,
    /// fenced records or records the live applier applied meanwhile). A step that fails
    /// wrote nothing.
    ///
    /// While this process writes the partition, the live applier is handed every record of
    /// it that counts as soon as it is durable, and reads what lies between from the log
    /// itself; the step then reads nothing, unless the checkpoint stood still for
    /// [`HELD_CHECK`] while the log holds more (a record whose append was not confirmed yet
    /// landed, the claim, a stale writer's records at the end). Reading back every record
    /// this process wrote would cost the broker and the consumer as much as appending it.
    pub async fn step(&mut self) -> Result<StepOutcome, ProjectError> {
        let partition = self.partition;
        let mut from = self.checkpoint()?;
        if self.held() {
            if self.still_held_after(HELD_CHECK).await {
                let still = self.checkpoint().ok() == Some(from);
                if !still || !self.log_holds_past(from).await {
                    return Ok(StepOutcome::Held);
                }
            } else {
                from = self.checkpoint()?;
            }
        }
        let projector = &self.projector;
        let applied_now = || {
            projector
                .models
                .checkpoint(projector.name, partition)
                .unwrap_or(from)
        };
        let batch =
            read_decoded_past(self.log.as_ref(), partition, from, READ_WAIT, applied_now).await?;
        if batch.is_empty() {
            return Ok(StepOutcome::CaughtUp);
        }
        let mut applied = Vec::new();
        let next = {
            let _one_applier = projector.one_applier(partition);
            projector.step_locked(partition, &batch, |offset, record| {
                applied.push(ProjectedRecord {
                    partition,
                    offset,
                    record: record.clone(),
                })
            })?
        };
        for projected in &applied {
            self.reactors.offer(projected).await;
        }
        Ok(StepOutcome::Applied { next })
    }

    fn checkpoint(&self) -> Result<Offset, StoreError> {
        self.projector
            .models
            .checkpoint(self.projector.name, self.partition)
    }

    fn held(&self) -> bool {
        self.owned.borrow().contains(self.partition)
    }

    /// Waits up to `limit` for this process to stop writing the partition (fenced, or the
    /// group moved it); whether it still writes it. The projector reads at once when it
    /// stops, as a fenced command's forward waits for the claim that fenced it to be
    /// applied here.
    async fn still_held_after(&mut self, limit: Duration) -> bool {
        let partition = self.partition;
        let released = self.owned.wait_for(|owned| !owned.contains(partition));
        // A closed channel: the writers are gone, and nothing here writes the partition.
        tokio::time::timeout(limit, released).await.is_err()
    }

    /// Whether the log ends past `from`.
    async fn log_holds_past(&self, from: Offset) -> bool {
        match self.log.end_offset(self.partition).await {
            Ok(end) => end > from,
            Err(e) => {
                tracing::debug!(partition = self.partition, error = %e, "projector cannot learn where the log ends");
                false
            }
        }
    }
}

/// Runs a [`PartitionProjector`] task per partition until `shutdown` turns true; `owned`
/// says which partitions this process writes (their records reach the read models through
/// the live applier).
pub fn spawn_projectors(
    log: Arc<dyn EventLog>,
    models: ReadModels,
    reactors: ReactorSink,
    owned: watch::Receiver<OwnedPartitions>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..log.partition_count())
        .map(|partition| {
            let projector = PartitionProjector::new(
                Projector::new(models.clone()),
                log.clone(),
                partition,
                reactors.clone(),
                owned.clone(),
            );
            tokio::spawn(projector.run(shutdown.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use flashrent_events::{AggregateKind, Envelope, Event, Sun, UserId};
    use uuid::Uuid;

    fn credit(n: u64) -> Arc<CommandRecord> {
        let user_id = UserId::parse("5").unwrap();
        Arc::new(CommandRecord {
            command_id: Uuid::now_v7(),
            key: "5".into(),
            writer_epoch: 0,
            owner: None,
            events: vec![Envelope {
                event_id: Uuid::now_v7(),
                aggregate: AggregateKind::UserAccount,
                aggregate_id: "5".into(),
                sequence: n,
                occurred_at: Utc::now(),
                schema_version: 1,
                correlation_id: Uuid::now_v7(),
                causation_id: Uuid::now_v7(),
                event: Event::BalanceCredited {
                    user_id,
                    amount: Sun::from_sun(1_000_000),
                    reference: format!("r{n}"),
                    balance_after: Sun::from_sun(n * 1_000_000),
                },
            }],
        })
    }

    #[test]
    fn applying_a_record_twice_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let models = ReadModels::open(dir.path(), 1, 1 << 20).unwrap();
        let p = Projector::new(models.clone());
        let records: Vec<_> = (1..=3).map(|n| (n - 1, credit(n))).collect();
        assert_eq!(p.step(0, &records[..2]).unwrap(), 2);
        let once = models.dump().unwrap();
        // A restart that re-reads from before the checkpoint: the overlap is skipped.
        assert_eq!(p.step(0, &records[..2]).unwrap(), 2);
        assert_eq!(models.dump().unwrap(), once);
        assert_eq!(p.step(0, &records).unwrap(), 3);
        let bal = models
            .balance(UserId::parse("5").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!((bal.balance.as_sun(), bal.ledger_entries), (3_000_000, 3));
    }
}
