//! The appender of a partition (group commit): it keeps one record in flight, and the
//! commands its writer decided meanwhile go out together as the next record. Each caller is
//! answered once the record holding its events is durable and still counts.

use super::claim::{partition_key, Owned};
use super::load::read_fenced;
use super::{Caller, DurableRecords};
use flashrent_events::{
    encode_record, CommandRecord, Envelope, EpochFence, EventLog, LogError, Offset, PartitionId,
    RecordMeta,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// What a writer and its appender share.
pub(super) struct Flags {
    /// An append failed: reload before deciding again.
    pub(super) poisoned: Arc<AtomicBool>,
    /// A newer claim took the partition: decide nothing more.
    pub(super) fenced: Arc<AtomicBool>,
    /// The end of the partition as far as this writer has seen it durable.
    pub(super) seen_end: Arc<AtomicU64>,
    /// Cleared with `fenced`: what [`super::Engine::owns`] reads.
    pub(super) owned: Owned,
    /// The number of the hold this appender serves.
    pub(super) hold: u64,
}

/// What a writer hands its appender.
pub(super) enum ToAppender {
    Decided(Decided),
    /// Answered with where the log stands once everything handed over before it is
    /// durable and still counts; dropped unanswered if an append failed or was fenced.
    Barrier(oneshot::Sender<(EpochFence, Offset)>),
}

/// A decided command on its way to the log, and who waits for it.
pub(super) struct Decided {
    pub(super) key: String,
    pub(super) command_id: Uuid,
    pub(super) events: Vec<Envelope>,
    /// `Type@version` of each event, comma-separated, for the record's header.
    pub(super) names: String,
    pub(super) caller: Caller,
}

/// Most commands one record holds. A record must stay well below the broker's largest
/// fetch (1 MiB by default; Tansu cannot hand out a record larger than the fetch at all):
/// a command's events are a few KiB at most.
const MAX_BATCH: usize = 128;

/// One record of the commands `first` and those queued behind it (up to [`MAX_BATCH`]),
/// and their callers in record order.
/// A barrier met on the way ends the batch and is returned, to be answered after it.
fn batch(
    first: Decided,
    queued: &mut mpsc::UnboundedReceiver<ToAppender>,
    partition: PartitionId,
    epoch: u64,
) -> (CommandRecord, String, Vec<Caller>, Option<Barrier>) {
    let mut record = CommandRecord {
        command_id: first.command_id,
        key: first.key,
        writer_epoch: epoch,
        events: first.events,
        owner: None,
    };
    let mut names = first.names;
    let mut callers = vec![first.caller];
    while callers.len() < MAX_BATCH {
        let next = match queued.try_recv() {
            Ok(ToAppender::Decided(next)) => next,
            Ok(ToAppender::Barrier(barrier)) => return (record, names, callers, Some(barrier)),
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
        callers.push(next.caller);
    }
    (record, names, callers, None)
}

type Barrier = oneshot::Sender<(EpochFence, Offset)>;

/// Appends the decided commands, a batch per record with one record in flight, and
/// answers each command's caller once its record is durable *and* still counts: the next
/// offset after this writer's own last record means nobody wrote in between; otherwise the
/// records in between are read, and a newer claim among them means this writer was fenced
/// out (its record is ignored by every reader, so it must not be acknowledged). An append
/// that fails poisons the writer, which reloads before deciding again, so a decision never
/// rests on an event the log does not have.
pub(super) async fn append_batches(
    log: Arc<dyn EventLog>,
    (partition, mut fence, mut next): (PartitionId, EpochFence, Offset),
    mut rx: mpsc::UnboundedReceiver<ToAppender>,
    flags: Flags,
    records: Option<Arc<dyn DurableRecords>>,
) {
    let Flags {
        poisoned,
        fenced,
        seen_end,
        owned,
        hold,
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
        let (record, names, callers, barrier) = batch(first, &mut rx, partition, mine);
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
                        owned.lost(hold);
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
        if let (Ok(Some(at)), Some(records)) = (&result, &records) {
            records.durable(partition, *at, record);
        }
        for caller in callers {
            caller.answer(result.clone());
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
                    d.caller.answer(Err(LogError::unavailable(
                        "an earlier append failed; retry",
                    )));
                }
            }
            return;
        }
    }
}
