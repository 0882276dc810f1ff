//! Reactors: what acts on the records the read models have applied (the saga drives orders,
//! the metrics count outcomes). Unlike the read models they have effects outside the log and
//! are not replayable, so nothing that replays the log takes one: [`crate::Projector`]'s
//! catch-up, a rebuild and an audit apply projections only, and only the live appliers
//! ([`crate::LiveApplier`], [`crate::PartitionProjector`]) are handed a [`ReactorSink`].
//!
//! The sink is one fan-out with a bounded queue per reactor, so reactors are siblings: each
//! reads at its own pace, and how a full queue is met is the reactor's [`Delivery`]. The
//! saga must see every record, so the projection waits for room in its queue; the metrics
//! may miss some, so a lagging or stopped observer never holds up the saga (nor the
//! projection).

use crate::ProjectedRecord;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// A reactor that handles each record at once, in memory (the metrics observer). One with
/// work of its own to schedule (the saga) takes the queue itself ([`Reactors::queue`]).
pub trait Reactor: Send + 'static {
    fn name(&self) -> &'static str;
    fn react(&mut self, record: &ProjectedRecord);
}

/// How the fan-out meets a reactor's full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Wait for room: the reactor sees every record, and a slow one slows the projection.
    Every,
    /// Drop the record and count it: the reactor may lag or stop and nothing waits for it.
    Lossy,
}

struct Queue {
    name: &'static str,
    tx: mpsc::Sender<ProjectedRecord>,
    delivery: Delivery,
    dropped: AtomicU64,
    /// Whether the last record offered to a lossy queue was dropped (a warning is logged
    /// when it starts dropping, not for each record).
    dropping: AtomicBool,
}

/// The reactors of a process, before the projection starts feeding them.
#[derive(Default)]
pub struct Reactors {
    queues: Vec<Queue>,
}

impl Reactors {
    pub fn new() -> Reactors {
        Reactors::default()
    }

    /// A queue of `capacity` records for the reactor `name`, fed as `delivery` says; the
    /// reactor reads its receiving end. Once that end is dropped the reactor is left out.
    pub fn queue(
        &mut self,
        name: &'static str,
        capacity: usize,
        delivery: Delivery,
    ) -> mpsc::Receiver<ProjectedRecord> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.queues.push(Queue {
            name,
            tx,
            delivery,
            dropped: AtomicU64::new(0),
            dropping: AtomicBool::new(false),
        });
        rx
    }

    /// Runs `reactor` on a queue of its own until the queue closes or `shutdown` says stop.
    pub fn spawn(
        &mut self,
        mut reactor: impl Reactor,
        capacity: usize,
        delivery: Delivery,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let mut rx = self.queue(reactor.name(), capacity, delivery);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    r = rx.recv() => r,
                    _ = shutdown.wait_for(|stop| *stop) => None,
                };
                let Some(record) = next else { return };
                reactor.react(&record);
            }
        })
    }

    /// The fan-out that the projection offers each applied record to.
    pub fn sink(self) -> ReactorSink {
        ReactorSink {
            queues: Arc::new(self.queues),
        }
    }
}

/// Where the live appliers offer each record they applied: every reactor's queue.
#[derive(Clone, Default)]
pub struct ReactorSink {
    queues: Arc<Vec<Queue>>,
}

impl ReactorSink {
    /// No reactor: records go nowhere.
    pub fn none() -> ReactorSink {
        ReactorSink::default()
    }

    /// Offers `record` to every reactor: the lossy ones first, never waiting, then the ones
    /// that see every record, waiting for room in each.
    pub async fn offer(&self, record: &ProjectedRecord) {
        for q in self.queues.iter().filter(|q| q.delivery == Delivery::Lossy) {
            match q.tx.try_send(record.clone()) {
                Ok(()) => q.dropping.store(false, Ordering::Relaxed),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    q.dropped.fetch_add(1, Ordering::Relaxed);
                    if !q.dropping.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            reactor = q.name,
                            "a reactor lags: records it has no room for are dropped"
                        );
                    }
                }
                // Stopped: left out.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        for q in self.queues.iter().filter(|q| q.delivery == Delivery::Every) {
            // An error means the reactor stopped (its end was dropped): nothing to wait for.
            let _ = q.tx.send(record.clone()).await;
        }
    }

    /// Records dropped so far, per lossy reactor.
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        self.queues
            .iter()
            .filter(|q| q.delivery == Delivery::Lossy)
            .map(|q| (q.name, q.dropped.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashrent_events::CommandRecord;
    use uuid::Uuid;

    fn record(offset: u64) -> ProjectedRecord {
        ProjectedRecord {
            partition: 0,
            offset,
            record: Arc::new(CommandRecord {
                command_id: Uuid::now_v7(),
                key: "k".into(),
                writer_epoch: 0,
                owner: None,
                events: vec![],
            }),
        }
    }

    struct Counting(Arc<AtomicU64>);

    impl Reactor for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn react(&mut self, _: &ProjectedRecord) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn a_reactor_that_never_reads_holds_up_neither_the_projection_nor_its_siblings() {
        let mut reactors = Reactors::new();
        // Never read, and kept alive: its queue fills after one record.
        let _stuck = reactors.queue("stuck", 1, Delivery::Lossy);
        let mut saga = reactors.queue("saga", 4, Delivery::Every);
        let counted = Arc::new(AtomicU64::new(0));
        let (_stop, shutdown) = watch::channel(false);
        let counter = reactors.spawn(Counting(counted.clone()), 1_000, Delivery::Lossy, shutdown);
        let sink = reactors.sink();
        let feeding = tokio::spawn({
            let sink = sink.clone();
            async move {
                for n in 0..100 {
                    sink.offer(&record(n)).await;
                }
            }
        });
        // Every record reaches the saga, in order, while the stuck reactor holds one.
        for n in 0..100 {
            let r = tokio::time::timeout(std::time::Duration::from_secs(10), saga.recv())
                .await
                .expect("the saga was held up")
                .unwrap();
            assert_eq!(r.offset, n);
        }
        feeding.await.unwrap();
        assert_eq!(sink.dropped(), vec![("stuck", 99), ("counting", 0)]);
        drop(sink);
        counter.await.unwrap();
        assert_eq!(counted.load(Ordering::Relaxed), 100);
    }

    #[tokio::test]
    async fn a_stopped_reactor_that_saw_every_record_is_left_out() {
        let mut reactors = Reactors::new();
        let gone = reactors.queue("gone", 1, Delivery::Every);
        let mut saga = reactors.queue("saga", 1, Delivery::Every);
        let sink = reactors.sink();
        drop(gone);
        let feeding = tokio::spawn(async move {
            for n in 0..10 {
                sink.offer(&record(n)).await;
            }
        });
        for n in 0..10 {
            assert_eq!(saga.recv().await.unwrap().offset, n);
        }
        feeding.await.unwrap();
    }
}
