//! Loading a partition: folding what the log holds (from the writer's snapshot on, when
//! there is one) into the state its writer decides against, through the epoch fence.

use super::snapshot::{Pager, SnapshotError};
use crate::domain::PartitionState;
use flashrent_events::{
    decode_record, Admission, CommandRecord, EpochFence, EventLog, LogError, Offset, PartitionId,
};
use std::time::Duration;

/// A partition's state as its writer decides against it, and where the log stood.
pub(super) struct LoadedPartition {
    pub(super) state: PartitionState,
    pub(super) fence: EpochFence,
    /// The offset after the last record read.
    pub(super) next: Offset,
}

pub(super) fn snapshot_failed(partition: PartitionId, e: SnapshotError) -> LogError {
    LogError::failed_by(format!("partition {partition}"), e)
}

/// Folds a partition's history (what the log holds now) into the state its writer decides
/// against, from its snapshot on when there is one, counting only the records the epoch
/// fence admits.
pub(super) async fn load_partition(
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
            return Err(LogError::failed(format!(
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
pub(super) async fn fold_into(
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
                state.count_recorded(&env.event, env.sequence);
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
pub(super) async fn read_fenced(
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
            return Err(LogError::unavailable(format!(
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
                return Err(LogError::failed(format!(
                    "partition {partition}: record {next} is missing from the log"
                )));
            }
            let record = decode_record(&rec.bytes).map_err(|e| {
                LogError::failed_by(format!("partition {partition} offset {}", rec.offset), e)
            })?;
            if fence.admit(&record) == Admission::Events {
                admitted(&record)?;
            }
            *next = rec.offset + 1;
        }
    }
    Ok(())
}
