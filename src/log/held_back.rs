//! A log for tests of what waits on appends: the embedded log, whose appends complete only
//! as the test lets them.

use super::EmbeddedLog;
use flashrent_events::{AppendFuture, EventLog, LogError, Offset, PartitionId, StoredRecord};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The embedded log, whose appends complete only as the test lets them, counting the reads
/// made of it.
pub struct HeldBack {
    pub log: EmbeddedLog,
    gate: Arc<Semaphore>,
    /// Reads made of it so far.
    pub reads: AtomicU64,
}

impl HeldBack {
    pub fn open(dir: &std::path::Path, gate: Arc<Semaphore>) -> HeldBack {
        HeldBack {
            log: EmbeddedLog::open(dir, 1).unwrap(),
            gate,
            reads: AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl EventLog for HeldBack {
    fn partition_count(&self) -> u32 {
        self.log.partition_count()
    }

    fn append(&self, partition: PartitionId, record: Vec<u8>) -> AppendFuture {
        let durable = self.log.append(partition, record);
        let gate = self.gate.clone();
        Box::pin(async move {
            match gate.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return Err(LogError::unavailable("the log went away")),
            }
            durable.await
        })
    }

    async fn read(
        &self,
        partition: PartitionId,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<StoredRecord>, LogError> {
        self.reads.fetch_add(1, Ordering::AcqRel);
        self.log.read(partition, from, max, wait).await
    }

    async fn end_offset(&self, partition: PartitionId) -> Result<Offset, LogError> {
        self.log.end_offset(partition).await
    }
}
