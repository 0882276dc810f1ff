//! The event log as the rest of the engine sees it: partitions, offsets, durable appends.
//! The embedded log and the Kafka log both implement [`EventLog`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type PartitionId = u32;
/// Position of a record inside its partition; the first record is at offset 0.
pub type Offset = u64;

/// The partitions one instance writes now (claimed, and not fenced out): what its writers
/// tell its projectors, which leave those partitions to the records the writers hand over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedPartitions(Vec<bool>);

impl OwnedPartitions {
    /// `partitions` partitions, none of them written here.
    pub fn none(partitions: u32) -> OwnedPartitions {
        OwnedPartitions(vec![false; partitions as usize])
    }

    pub fn contains(&self, partition: PartitionId) -> bool {
        self.0.get(partition as usize).copied().unwrap_or(false)
    }

    /// Marks `partition` as written here or not; whether that changed anything.
    pub fn set(&mut self, partition: PartitionId, owned: bool) -> bool {
        match self.0.get_mut(partition as usize) {
            Some(o) if *o != owned => {
                *o = owned;
                true
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub partition: PartitionId,
    pub offset: Offset,
    pub bytes: Vec<u8>,
}

/// The error under a [`LogError`]: shared, so one failed append can fail every command of
/// its record with the same cause.
pub type ErrorSource = std::sync::Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The log cannot be reached now (a broker down, the log closed): retry later.
    #[error("the event log is unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        source: Option<ErrorSource>,
    },
    /// The log refused or broke (an I/O error, a record that does not decode, a log that
    /// lost records).
    #[error("the event log failed: {context}")]
    Failed {
        context: String,
        #[source]
        source: Option<ErrorSource>,
    },
    #[error("no partition {0}")]
    NoSuchPartition(PartitionId),
    /// Another writer claimed the partition: this one's records no longer count.
    #[error("partition {0} is written by another instance now")]
    Fenced(PartitionId),
}

impl LogError {
    /// Unavailable, for the reason `context` alone.
    pub fn unavailable(context: impl Into<String>) -> LogError {
        LogError::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// Unavailable while doing `context`, because of `source`.
    pub fn unavailable_by(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> LogError {
        LogError::Unavailable {
            context: context.into(),
            source: Some(std::sync::Arc::new(source)),
        }
    }

    /// Failed, for the reason `context` alone.
    pub fn failed(context: impl Into<String>) -> LogError {
        LogError::Failed {
            context: context.into(),
            source: None,
        }
    }

    /// Failed while doing `context`, because of `source`.
    pub fn failed_by(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> LogError {
        LogError::Failed {
            context: context.into(),
            source: Some(std::sync::Arc::new(source)),
        }
    }
}

/// The key and event names of a record, for logs that store them beside the payload.
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta<'a> {
    pub key: &'a str,
    /// `Type@version` of each event, comma-separated (e.g. `OrderPlaced@2,BalanceDebited@1`).
    pub events: &'a str,
}

/// Resolves once the record is durable, with its offset.
pub type AppendFuture = Pin<Box<dyn Future<Output = Result<Offset, LogError>> + Send>>;

#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    fn partition_count(&self) -> u32;

    /// Queues one record. Records appended to a partition keep the order of the calls
    /// to `append` (the call itself enqueues; the returned future only waits).
    fn append(&self, partition: PartitionId, record: Vec<u8>) -> AppendFuture;

    /// `append`, with what a Kafka record carries besides its payload: the key it was
    /// partitioned by and headers naming its events (the embedded log needs neither).
    fn append_with(
        &self,
        partition: PartitionId,
        meta: RecordMeta<'_>,
        record: Vec<u8>,
    ) -> AppendFuture {
        let _ = meta;
        self.append(partition, record)
    }

    /// Up to `max` durable records from `from` on. Waits up to `wait` when none is there yet.
    async fn read(
        &self,
        partition: PartitionId,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<StoredRecord>, LogError>;

    /// The offset the next durable record will get (Kafka's high watermark).
    async fn end_offset(&self, partition: PartitionId) -> Result<Offset, LogError>;

    /// Finishes what is in flight; called once at shutdown.
    fn close(&self) {}
}

/// Kafka's default partitioner (murmur2 of the key, positive, modulo the partition count),
/// so a record lands where any Kafka client would put it.
pub fn partition_for_key(key: &[u8], partitions: u32) -> PartitionId {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_java_client() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
    }
}
