//! Who writes a partition: on a shared log a writer claims it with an epoch above every one
//! before, and the claim that counts fences out every earlier writer (ADR 0005).

use super::load::{fold_into, load_partition, LoadedPartition};
use super::snapshot::Pager;
use flashrent_events::{
    encode_record, CommandRecord, EventLog, LogError, OwnedPartitions, PartitionId, RecordMeta,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

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
pub(super) fn partition_key(partition: PartitionId) -> String {
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

/// Takes the partition as `ownership` says: loads it, and on a shared log claims it.
pub(super) async fn take(
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

/// Whether this instance writes a partition now: a flag for the hot path
/// ([`super::Engine::owns`]), kept in step with the same as data for the read side
/// ([`super::Engine::owned_partitions`]). Each hold of the partition has a number of its
/// own, so the appender of an earlier hold, fenced by records it appended late, cannot
/// clear the flag of the hold that came after it.
#[derive(Clone)]
pub(super) struct Owned {
    partition: PartitionId,
    flag: Arc<AtomicBool>,
    /// The number of the current hold.
    hold: Arc<std::sync::atomic::AtomicU64>,
    all: Arc<watch::Sender<OwnedPartitions>>,
}

impl Owned {
    pub(super) fn new(partition: PartitionId, all: Arc<watch::Sender<OwnedPartitions>>) -> Owned {
        Owned {
            partition,
            flag: Arc::new(AtomicBool::new(false)),
            hold: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            all,
        }
    }

    pub(super) fn get(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// A new hold of the partition begins; its number, for [`Owned::lost`].
    pub(super) fn held(&self) -> u64 {
        let mut number = 0;
        self.update(|hold| {
            number = hold.fetch_add(1, Ordering::AcqRel) + 1;
            Some(true)
        });
        number
    }

    /// The writer let go of the partition, whichever hold it was.
    pub(super) fn released(&self) {
        self.update(|_| Some(false));
    }

    /// Hold `number` was fenced: the partition is no longer written here, unless a later
    /// hold has begun since.
    pub(super) fn lost(&self, number: u64) {
        self.update(|hold| (hold.load(Ordering::Acquire) == number).then_some(false));
    }

    /// Under the channel's lock, so the flag and the data never disagree when a writer and
    /// its appender change them at once.
    fn update(&self, to: impl FnOnce(&std::sync::atomic::AtomicU64) -> Option<bool>) {
        self.all.send_if_modified(|all| match to(&self.hold) {
            Some(owned) => {
                self.flag.store(owned, Ordering::Release);
                all.set(self.partition, owned)
            }
            None => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_hold_fenced_late_does_not_clear_the_hold_after_it() {
        let all = Arc::new(watch::channel(OwnedPartitions::none(2)).0);
        let owned = Owned::new(1, all.clone());
        let first = owned.held();
        owned.released();
        let second = owned.held();
        // The first hold's appender finds the claim of the second after its own record.
        owned.lost(first);
        assert!(owned.get());
        assert!(all.borrow().contains(1));
        owned.lost(second);
        assert!(!owned.get());
        assert!(!all.borrow().contains(1));
    }
}
