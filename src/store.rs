//! Opening a data dir's stores: the event log (embedded, or on Kafka), the sled database
//! beside it, and the read models in it, for `serve`, `rebuild`, and the log's followers
//! (`audit`, `notify`).

use crate::config::{private_dir, KafkaArgs};
use crate::log::{EmbeddedLog, KafkaLog};
use crate::settings::{kafka_settings, StoreSettings};
use anyhow::Context;
use flashrent_events::EventLog;
use flashrent_projections::{Projector, ReadModels};
use flashrent_store::SledStore;
use std::path::Path;
use std::sync::Arc;

/// A data dir's stores, opened.
pub struct Store {
    pub log: Arc<dyn EventLog>,
    /// The sled database of the read models and the writers' snapshots.
    pub sled: SledStore,
    pub models: ReadModels,
}

/// The log as a follower reads it (audit, notify): on Kafka when brokers are configured
/// (the topic must exist; its partition count is read from it), else the data dir's log,
/// opened read-only beside a running `serve`.
pub async fn open_follower_log(
    data_dir: &Path,
    kafka: &KafkaArgs,
) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(match kafka_settings(kafka, 0)? {
        Some(k) => Arc::new(
            KafkaLog::open_existing(k)
                .await
                .context("opening the event log on Kafka")?,
        ),
        None => {
            let dir = data_dir.join("log");
            Arc::new(EmbeddedLog::open_read_only(&dir).with_context(|| {
                format!(
                    "opening the event log in {} (has `serve` run?)",
                    dir.display()
                )
            })?)
        }
    })
}

/// The event log: Kafka when brokers are configured, else the embedded log in the data dir.
pub async fn open_log(store: &StoreSettings) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(match &store.kafka {
        Some(k) => {
            let (brokers, topic) = (k.brokers.clone(), k.topic());
            let log = KafkaLog::open(k.clone())
                .await
                .context("opening the event log on Kafka")?;
            tracing::info!(%brokers, %topic, "event log: Kafka");
            Arc::new(log)
        }
        None => Arc::new(
            EmbeddedLog::open(&store.data_dir.join("log"), store.partitions)
                .context("opening the event log")?,
        ),
    })
}

/// The log, the data dir's sled database (read models and writers' snapshots) and the read
/// models in it.
pub async fn open_store(store: &StoreSettings) -> anyhow::Result<Store> {
    private_dir(&store.data_dir)
        .with_context(|| format!("creating the data dir {}", store.data_dir.display()))?;
    let log = open_log(store).await?;
    let sled = SledStore::open(&store.data_dir.join("read-models"), store.sled_cache_bytes)
        .context("opening the read models (is another flashrent using this data dir?)")?;
    let models = ReadModels::open_in(&sled, store.partitions).context("opening the read models")?;
    Ok(Store { log, sled, models })
}

/// Applies everything in the log to the read models (a projection only: no reactor runs).
pub async fn catch_up(log: &dyn EventLog, models: &ReadModels) -> anyhow::Result<u64> {
    let projector = Projector::new(models.clone());
    // One partition after the other: Tansu times out on concurrent watermark requests.
    let mut total = 0;
    for p in 0..log.partition_count() {
        total += projector.catch_up(log, p).await?;
    }
    Ok(total)
}
