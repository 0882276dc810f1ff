//! The live applier: the one task that applies the records this process's writers make
//! durable, all partitions together.
//!
//! One task for every partition: each step takes everything made durable since the last
//! one, so steps grow with the load, and a record is never read back from the log and
//! decoded again.
//!
//! Writers hand over their records in offset order, as soon as they are durable (and, on a
//! shared log, known to count). A record that does not follow its partition's checkpoint
//! (another instance wrote in between, or a claim) is preceded by what the log holds in
//! between, read and decoded here, so the read models never skip a record.

use crate::projector::{read_decoded, ProjectError, ProjectedRecord, Projector, Run};
use crate::{ReactorSink, ReadModels};
use flashrent_events::{CommandRecord, EventLog, Offset, PartitionId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Most records one step takes.
const MAX_RECORDS_PER_BATCH: usize = 4096;

/// Hands durable records to the live applier. Shared by every writer.
#[derive(Clone)]
pub struct LiveApplier {
    tx: mpsc::UnboundedSender<ProjectedRecord>,
}

impl LiveApplier {
    /// Starts the applier. Each record whose events it applied is then offered to the
    /// reactors (the saga, the metrics), in the order applied. Told to stop, it applies what
    /// it was handed before it returns: stopped after the writers, it leaves nothing they
    /// made durable to the next start's catch-up.
    pub fn spawn(
        log: Arc<dyn EventLog>,
        models: ReadModels,
        reactors: ReactorSink,
        shutdown: watch::Receiver<bool>,
    ) -> (LiveApplier, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(log, Projector::new(models), rx, reactors, shutdown));
        (LiveApplier { tx }, task)
    }

    /// A record that is durable and counts. Records of one partition must come in offset
    /// order; a caller that waits for it waits on [`ReadModels::wait_applied`].
    pub fn offer(&self, partition: PartitionId, offset: Offset, record: Arc<CommandRecord>) {
        let _ = self.tx.send(ProjectedRecord {
            partition,
            offset,
            record,
        });
    }
}

async fn run(
    log: Arc<dyn EventLog>,
    projector: Projector,
    mut rx: mpsc::UnboundedReceiver<ProjectedRecord>,
    reactors: ReactorSink,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut stopping = false;
    loop {
        let first = if stopping {
            rx.try_recv().ok()
        } else {
            tokio::select! {
                r = rx.recv() => r,
                _ = shutdown.wait_for(|stop| *stop) => {
                    stopping = true;
                    rx.try_recv().ok()
                }
            }
        };
        let Some(first) = first else { return };
        let mut taken = vec![first];
        while taken.len() < MAX_RECORDS_PER_BATCH {
            let Ok(next) = rx.try_recv() else { break };
            taken.push(next);
        }
        let mut by_partition = BTreeMap::<PartitionId, Vec<_>>::new();
        for r in taken {
            by_partition
                .entry(r.partition)
                .or_default()
                .push((r.offset, r.record));
        }
        let mut runs: Vec<_> = by_partition.into_iter().collect();
        let mut applied = Vec::new();
        loop {
            match apply(log.as_ref(), &projector, &mut runs, &mut applied).await {
                Ok(()) => break,
                Err(e) => {
                    // Never skip: the same records again after a pause (the log or sled
                    // may be back), with whatever the log holds before them.
                    tracing::error!(error = %flashrent_events::ErrorChain(&e), "live applier step failed; retrying");
                    applied.clear();
                    // Stopping: what is left is in the log, for the next start's catch-up.
                    if stopping {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                }
            }
        }
        for projected in &applied {
            reactors.offer(projected).await;
        }
    }
}

/// Fills every gap before the runs from the log, then applies them in one batch.
async fn apply(
    log: &dyn EventLog,
    projector: &Projector,
    runs: &mut [Run],
    applied: &mut Vec<ProjectedRecord>,
) -> Result<(), ProjectError> {
    for (partition, records) in runs.iter_mut() {
        let from = projector.models.checkpoint(projector.name, *partition)?;
        let first = records.first().map_or(from, |(o, _)| *o);
        if first <= from {
            continue;
        }
        let mut missing = Vec::new();
        while from + (missing.len() as Offset) < first {
            let at = from + missing.len() as Offset;
            let read = read_decoded(log, *partition, at, Duration::from_secs(10)).await?;
            if read.is_empty() {
                return Err(ProjectError::Gap {
                    partition: *partition,
                    expected: at,
                    found: first,
                });
            }
            missing.extend(read.into_iter().take_while(|(o, _)| *o < first));
        }
        missing.append(records);
        *records = missing;
    }
    projector.step_many(runs, |partition, offset, record| {
        applied.push(ProjectedRecord {
            partition,
            offset,
            record: record.clone(),
        })
    })
}
