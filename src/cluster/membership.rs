//! Which partitions this instance writes, as a Kafka consumer group decides: every instance
//! subscribes to the event topic in the group `<prefix>writers`, and the partitions the group
//! assigns to it are the ones it claims. Nothing is consumed through the group; it is only
//! the group's membership, heartbeats and rebalancing that matter. The cooperative-sticky
//! assignor moves only the partitions that must move when an instance joins or leaves.
//!
//! The group only says who *should* write. Safety does not rest on it: a member that was
//! paused past its session still believes it owns its partitions until librdkafka tells it
//! otherwise, and the epoch fence is what keeps its decisions from counting.

use crate::log::kafka::Quiet;
use crate::log::KafkaSettings;
use flashrent_events::PartitionId;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Told of each change: the partitions, and whether they are now this instance's.
pub type OnAssignment = Arc<dyn Fn(&[PartitionId], bool) + Send + Sync>;

/// How long the group waits for a silent member before giving its partitions to others.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// An instance the group leaves without partitions this long joins it again (more
/// instances than partitions make this happen every so often, harmlessly).
const REJOIN_WHEN_EMPTY: Duration = Duration::from_secs(15);

struct Group {
    on_assignment: OnAssignment,
    /// How many partitions the group gives this instance now.
    held: AtomicUsize,
    /// Set once the first rebalance has given this member its share (possibly none).
    joined: watch::Sender<bool>,
    quiet: Quiet,
}

impl ClientContext for Group {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.quiet.log(level, fac, log_message)
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.quiet.error(error, reason)
    }
}

impl ConsumerContext for Group {
    /// The group's assignment is taken as ownership, but never handed to the consumer to
    /// fetch: the consumer's own assignment stays empty. Nothing is read through the group,
    /// and no fetcher is ever started or stopped, which also keeps clear of a librdkafka
    /// 2.12 race that aborts the process when a lost assignment's fetchers are stopped
    /// (confluentinc/librdkafka#5573, seen here when the broker went away).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions = partitions_of(tpl);
        let nothing = TopicPartitionList::new();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let applied = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!(
                    ?partitions,
                    "the writers' group gives partitions to this instance"
                );
                (self.on_assignment)(&partitions, true);
                self.held.fetch_add(partitions.len(), Ordering::AcqRel);
                self.joined.send_replace(true);
                if cooperative {
                    consumer.incremental_assign(&nothing)
                } else {
                    consumer.assign(&nothing)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(
                    ?partitions,
                    "the writers' group takes partitions from this instance"
                );
                (self.on_assignment)(&partitions, false);
                let _ = self
                    .held
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        Some(n.saturating_sub(partitions.len()))
                    });
                if cooperative {
                    consumer.incremental_unassign(&nothing)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!(error = ?other, "writers' group rebalance failed");
                (self.on_assignment)(&partitions, false);
                consumer.unassign()
            }
        };
        if let Err(e) = applied {
            tracing::warn!(error = %e, "writers' group: cannot acknowledge the rebalance");
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<PartitionId> {
    tpl.elements()
        .iter()
        .map(|e| e.partition() as PartitionId)
        .collect()
}

/// This instance's membership of the writers' group; leaving it (drop) hands its partitions
/// to the other members at once instead of after the session timeout.
pub struct Membership {
    stop: Arc<AtomicBool>,
    joined: watch::Receiver<bool>,
    /// The thread that polls the group, until it has left it.
    polling: Option<std::thread::JoinHandle<()>>,
}

impl Membership {
    /// Joins the group. `on_assignment` runs on the group's own thread and must be quick.
    pub fn join(
        settings: &KafkaSettings,
        on_assignment: OnAssignment,
    ) -> anyhow::Result<Membership> {
        let (joined_tx, joined) = watch::channel(false);
        let session = SESSION_TIMEOUT.as_millis().to_string();
        let consumer: BaseConsumer<Group> = settings
            .client_config_with(&[
                ("partition.assignment.strategy", "cooperative-sticky"),
                ("session.timeout.ms", &session),
                ("heartbeat.interval.ms", "1000"),
                // The thread below polls every 100 ms; a member stuck longer than this is
                // as good as dead.
                ("max.poll.interval.ms", "10000"),
            ])
            .set("group.id", format!("{}writers", settings.topic_prefix))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            .create_with_context(Group {
                on_assignment,
                held: AtomicUsize::new(0),
                joined: joined_tx,
                quiet: Quiet::after_connect(),
            })?;
        let topic = settings.topic();
        consumer.subscribe(&[&topic])?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let polling = std::thread::Builder::new()
            .name("writers-group".into())
            .spawn(move || {
                let mut empty_since = Instant::now();
                while !stopping.load(Ordering::Acquire) {
                    if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                        tracing::debug!(error = %e, "writers' group poll");
                    }
                    if consumer.context().held.load(Ordering::Acquire) > 0 {
                        empty_since = Instant::now();
                    } else if empty_since.elapsed() > REJOIN_WHEN_EMPTY {
                        // Tansu 0.6.0 does not always rebalance when a member's session
                        // expires: an instance that joined beside a dead one may be left with
                        // nothing while the dead one keeps its partitions. Joining again
                        // makes the broker compute the assignment among the live members.
                        tracing::info!(
                            "no partition from the writers' group for a while; joining it again"
                        );
                        consumer.unsubscribe();
                        if let Err(e) = consumer.subscribe(&[&topic]) {
                            tracing::warn!(error = %e, "cannot rejoin the writers' group");
                        }
                        empty_since = Instant::now();
                    }
                }
                // Dropping the consumer leaves the group (its partitions are revoked here).
                drop(consumer);
            })?;
        Ok(Membership {
            stop,
            joined,
            polling: Some(polling),
        })
    }

    /// Waits (at most `timeout`) for the group's first assignment to this instance.
    pub async fn joined(&self, timeout: Duration) -> bool {
        let mut joined = self.joined.clone();
        tokio::time::timeout(timeout, joined.wait_for(|j| *j))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Runs `then` once the group's first assignment to this instance has come (at once if
    /// it has). A small task of its own, which ends with the membership.
    pub fn when_joined(&self, then: impl FnOnce() + Send + 'static) {
        let mut joined = self.joined.clone();
        tokio::spawn(async move {
            if joined.wait_for(|j| *j).await.is_ok() {
                then();
            }
        });
    }

    pub fn leave(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Leaves the group and waits, up to `limit`, until the group's thread has (its
    /// partitions revoked): with the broker gone, librdkafka's close may take its time.
    pub async fn leave_and_wait(mut self, limit: Duration) {
        self.leave();
        if let Some(polling) = self.polling.take() {
            let left = tokio::task::spawn_blocking(move || polling.join());
            if tokio::time::timeout(limit, left).await.is_err() {
                tracing::warn!(?limit, "the writers' group was not left in time; going on");
            }
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.leave();
    }
}
