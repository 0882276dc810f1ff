//! The event log on Kafka (rdkafka, i.e. librdkafka): one topic, a partition per embedded-log
//! partition, a record per batch of whole commands (see [`crate::engine`]).
//!
//! - Appends go through an idempotent producer with `acks=all`: a record is acknowledged
//!   once every in-sync replica has it, and retries never duplicate or reorder it. A record
//!   that cannot be written within `message.timeout.ms` fails the command (503), so no
//!   request waits on a broker that is gone.
//! - Records are keyed by the key their partition was chosen from, carry JSON, and name
//!   their events in the `flashrent-events` header (`OrderPlaced@2,BalanceDebited@1`), so
//!   `kcat` or any consumer can read them.
//! - Reads use partition-assigned consumers (no group, no committed offsets): every reader
//!   keeps its own position, the projectors in sled with their read models.
//! - No Kafka transactions (docs/decisions/0005): one record holds all of a command's events,
//!   and stale writers are fenced by epochs every reader checks ([`flashrent_events::fence`]).

use flashrent_events::{
    AppendFuture, EventLog, LogError, Offset, PartitionId, RecordMeta, StoredRecord,
};
use futures_util::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, TopicPartitionList};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long an append may take before the command fails (librdkafka's `message.timeout.ms`).
const APPEND_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a read of records known to exist may take before the log counts as unavailable.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long startup waits for a broker to answer at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long startup waits for the broker to create or describe the topic.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Idle cursors kept per partition.
const IDLE_CURSORS: usize = 4;
/// How long the broker may hold a fetch that finds nothing new. Tansu 0.6.0 holds *every*
/// fetch this long, new records or not, and runs its storage queries for each: shorter
/// adds broker CPU for every follower, longer adds latency to every read.
const FETCH_WAIT_MS: &str = "50";

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic is `<prefix>events`.
    pub topic_prefix: String,
    pub partitions: u32,
    pub replication: i32,
    /// Passed to librdkafka as they are (SASL, TLS, client id, …); values are secrets
    /// (`sasl.password`), so `Debug` shows none of them.
    pub extra: Vec<(String, crate::config::Secret)>,
}

impl KafkaSettings {
    pub fn topic(&self) -> String {
        format!("{}events", self.topic_prefix)
    }

    fn client_config(&self) -> ClientConfig {
        self.client_config_with(&[])
    }

    /// Our defaults for one client, under what the operator passed (which wins).
    pub(crate) fn client_config_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.extra {
            c.set(k, v.expose());
        }
        c
    }
}

/// Why the log on Kafka cannot be opened. Each says what is wrong and, where it is the
/// operator's to fix, what to do.
#[derive(Debug, thiserror::Error)]
pub enum KafkaOpenError {
    #[error("no Kafka broker answered at {brokers} within {waited:?} (start one there, or point --kafka / FLASHRENT_KAFKA_BROKERS at one that runs)")]
    Unreachable {
        brokers: String,
        waited: Duration,
        #[source]
        source: Option<KafkaError>,
    },
    #[error(
        "the Kafka client cannot be set up (check FLASHRENT_KAFKA_CONFIG / --kafka-config-file)"
    )]
    Client(#[source] KafkaError),
    #[error("asking the broker about topic {topic}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot create topic {topic}")]
    CreateTopic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the broker did not create or describe topic {topic} within {waited:?}")]
    TopicTimeout { topic: String, waited: Duration },
    #[error("topic {topic} does not exist (has `serve --kafka` run?)")]
    NoTopic { topic: String },
    #[error(
        "topic {topic} has {found} partitions but flashrent is configured for {configured} \
         (FLASHRENT_PARTITIONS): records are placed by key modulo the partition count, so they \
         must be equal"
    )]
    PartitionCount {
        topic: String,
        found: usize,
        configured: u32,
    },
    #[error(
        "topic {topic} has {key}={value} — an event log must keep every record (set it to -1)"
    )]
    Retention {
        topic: String,
        key: &'static str,
        value: String,
    },
    #[error("topic {topic} has cleanup.policy={policy}: compaction would drop events")]
    Compacted { topic: String, policy: String },
}

/// Where librdkafka's own log lines and errors go: through `tracing`, at debug until the
/// log has reached a broker once (an unreachable broker at startup is reported as one
/// [`KafkaOpenError::Unreachable`], not as librdkafka's retries), at warn at most after it
/// (a broker that goes away is retried, and the appends it fails answer for it).
#[derive(Clone, Default)]
pub(crate) struct Quiet {
    connected: Arc<AtomicBool>,
}

impl Quiet {
    /// For a client of a log that has reached a broker already.
    pub(crate) fn after_connect() -> Quiet {
        let quiet = Quiet::default();
        quiet.connected();
        quiet
    }

    fn connected(&self) {
        self.connected.store(true, Ordering::Release);
    }

    fn note(&self, what: &str, text: &str) {
        if self.connected.load(Ordering::Acquire) {
            tracing::warn!(target: "librdkafka", "{what}: {text}");
        } else {
            tracing::debug!(target: "librdkafka", "{what}: {text}");
        }
    }
}

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => self.note(fac, log_message),
            _ => tracing::debug!(target: "librdkafka", "{fac}: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.note(&error.to_string(), reason);
    }
}

impl ConsumerContext for Quiet {}

struct Cursor {
    consumer: StreamConsumer<Quiet>,
    next: Offset,
    /// Not paused: put back short of the partition's end, so still fetching ahead for the
    /// reader's next read from where it stands.
    fetching: bool,
}

pub struct KafkaLog {
    settings: KafkaSettings,
    topic: String,
    producer: Mutex<Arc<FutureProducer<Quiet>>>,
    /// Set when an append failed: the next append starts a new producer (a new producer id)
    /// rather than have librdkafka bump the old one's epoch, which Tansu 0.6.0 mishandles
    /// after a restart (it panics on the produce).
    producer_failed: Arc<std::sync::atomic::AtomicBool>,
    meta: Arc<BaseConsumer<Quiet>>,
    quiet: Quiet,
    cursors: Vec<Mutex<Vec<Cursor>>>,
    /// Per partition, the furthest end this process has asked for (`end_offset`): a cursor
    /// put back short of it is left fetching, as its reader reads on.
    ends: Vec<AtomicU64>,
}

fn idle_cursors(partitions: u32) -> Vec<Mutex<Vec<Cursor>>> {
    (0..partitions).map(|_| Mutex::new(Vec::new())).collect()
}

fn known_ends(partitions: u32) -> Vec<AtomicU64> {
    (0..partitions).map(|_| AtomicU64::new(0)).collect()
}

fn new_producer(
    settings: &KafkaSettings,
    quiet: &Quiet,
) -> rdkafka::error::KafkaResult<FutureProducer<Quiet>> {
    let timeout = APPEND_TIMEOUT.as_millis().to_string();
    settings
        .client_config_with(&[("linger.ms", "1"), ("message.timeout.ms", &timeout)])
        // Never weakened by configuration: the log's guarantees rest on these two.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create_with_context(quiet.clone())
}

fn unavailable(e: KafkaError) -> LogError {
    LogError::unavailable_by("kafka", e)
}

impl KafkaLog {
    /// Connects, creates the topic if it is missing, and checks it: exactly the configured
    /// partitions (records are placed by key modulo that count) and no retention limit (an
    /// event log is never expired).
    pub async fn open(settings: KafkaSettings) -> Result<KafkaLog, KafkaOpenError> {
        let log = KafkaLog::connect(settings).await?;
        match tokio::time::timeout(STARTUP_TIMEOUT, log.ensure_topic()).await {
            Ok(checked) => checked?,
            Err(_) => {
                return Err(KafkaOpenError::TopicTimeout {
                    topic: log.topic.clone(),
                    waited: STARTUP_TIMEOUT,
                })
            }
        }
        Ok(log)
    }

    /// A log on a topic that must already exist, with as many partitions as it has: for the
    /// log's followers (audit, notify), which never create or write anything.
    pub async fn open_existing(settings: KafkaSettings) -> Result<KafkaLog, KafkaOpenError> {
        let mut log = KafkaLog::connect(settings).await?;
        let partitions = log.topic_partitions().await?;
        if partitions == 0 {
            return Err(KafkaOpenError::NoTopic {
                topic: log.topic.clone(),
            });
        }
        log.settings.partitions = partitions as u32;
        log.cursors = idle_cursors(log.settings.partitions);
        log.ends = known_ends(log.settings.partitions);
        Ok(log)
    }

    /// The clients, once a broker has answered (within [`CONNECT_TIMEOUT`]).
    async fn connect(settings: KafkaSettings) -> Result<KafkaLog, KafkaOpenError> {
        let quiet = Quiet::default();
        let meta: BaseConsumer<Quiet> = settings
            .client_config()
            .set("group.id", "flashrent-metadata")
            .set("enable.auto.commit", "false")
            .create_with_context(quiet.clone())
            .map_err(KafkaOpenError::Client)?;
        let meta = Arc::new(meta);
        let asked = meta.clone();
        let answered = tokio::task::spawn_blocking(move || {
            asked.fetch_metadata(None, CONNECT_TIMEOUT).map(|_| ())
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        if let Err(e) = answered {
            return Err(KafkaOpenError::Unreachable {
                brokers: settings.brokers.clone(),
                waited: CONNECT_TIMEOUT,
                source: Some(e),
            });
        }
        quiet.connected();
        Ok(KafkaLog {
            cursors: idle_cursors(settings.partitions),
            ends: known_ends(settings.partitions),
            topic: settings.topic(),
            producer: Mutex::new(Arc::new(
                new_producer(&settings, &quiet).map_err(KafkaOpenError::Client)?,
            )),
            producer_failed: Arc::default(),
            meta,
            quiet,
            settings,
        })
    }

    /// How many partitions the broker says the topic has (0 when it does not exist).
    async fn topic_partitions(&self) -> Result<usize, KafkaOpenError> {
        let meta = self.meta.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            meta.fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map(|m| m.topics().first().map_or(0, |t| t.partitions().len()))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(|source| KafkaOpenError::Metadata {
            topic: self.topic.clone(),
            source,
        })
    }

    async fn ensure_topic(&self) -> Result<(), KafkaOpenError> {
        let admin: AdminClient<Quiet> = self
            .settings
            .client_config()
            .create_with_context(self.quiet.clone())
            .map_err(KafkaOpenError::Client)?;
        let opts = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        let new = NewTopic::new(
            &self.topic,
            self.settings.partitions as i32,
            TopicReplication::Fixed(self.settings.replication),
        )
        // cleanup.policy is left at Kafka's default (delete, which with no retention limit
        // deletes nothing). Set explicitly, Tansu 0.6.0 deletes every record at its next
        // maintenance: its policy query reads retention.ms=-1 as "older than -1 ms".
        .set("retention.ms", "-1")
        .set("retention.bytes", "-1");
        let create_failed = |source| KafkaOpenError::CreateTopic {
            topic: self.topic.clone(),
            source,
        };
        let created = admin
            .create_topics([&new], &opts)
            .await
            .map_err(create_failed)?;
        for r in created {
            match r {
                Ok(t) => {
                    tracing::info!(topic = %t, partitions = self.settings.partitions, "created the event topic")
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(create_failed(KafkaError::AdminOp(code))),
            }
        }
        let found = self.topic_partitions().await?;
        if found != self.settings.partitions as usize {
            return Err(KafkaOpenError::PartitionCount {
                topic: self.topic.clone(),
                found,
                configured: self.settings.partitions,
            });
        }
        match admin
            .describe_configs([&ResourceSpecifier::Topic(&self.topic)], &opts)
            .await
        {
            Ok(results) => {
                for r in results.into_iter().flatten() {
                    let entries = r.entry_map();
                    for key in ["retention.ms", "retention.bytes"] {
                        let value = entries.get(key).and_then(|e| e.value.as_deref());
                        if value.is_some_and(|v| v != "-1") {
                            return Err(KafkaOpenError::Retention {
                                topic: self.topic.clone(),
                                key,
                                value: value.unwrap_or_default().to_owned(),
                            });
                        }
                    }
                    if let Some(p) = entries
                        .get("cleanup.policy")
                        .and_then(|e| e.value.as_deref())
                    {
                        if p.contains("compact") {
                            return Err(KafkaOpenError::Compacted {
                                topic: self.topic.clone(),
                                policy: p.to_owned(),
                            });
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "the broker does not describe topic configs; retention not checked")
            }
        }
        Ok(())
    }

    fn cursor(&self, partition: PartitionId, from: Offset) -> Result<Cursor, LogError> {
        let pool = self
            .cursors
            .get(partition as usize)
            .ok_or(LogError::NoSuchPartition(partition))?;
        let mut idle = pool.lock().expect("cursor lock");
        let reused = match idle.iter().position(|c| c.next == from) {
            Some(i) => Some(idle.swap_remove(i)),
            None => idle.pop(),
        };
        drop(idle);
        if let Some(c) = reused.as_ref().filter(|c| c.fetching && c.next == from) {
            // What it fetched meanwhile starts at `from`: taken as it is, the next records
            // are there already instead of a broker round trip away.
            tracing::trace!(
                partition,
                from = c.next,
                "reading on with a cursor still fetching"
            );
            return Ok(reused.expect("just matched"));
        }
        // An idle cursor of this partition is moved with a seek, never re-assigned: taking a
        // partition out of a consumer's assignment while an earlier removal is still being
        // served aborts the process in librdkafka 2.12 (confluentinc/librdkafka#5573).
        // It is resumed first, then sought even to where it stands: where librdkafka
        // resumes a paused partition from is its own business.
        if let Some(c) = reused {
            let to = rdkafka::Offset::Offset(from as i64);
            let moved = c
                .consumer
                .resume(&self.one_partition(partition))
                .and_then(|()| {
                    c.consumer
                        .seek(&self.topic, partition as i32, to, Duration::ZERO)
                });
            match moved {
                Ok(()) => {
                    return Ok(Cursor {
                        consumer: c.consumer,
                        next: from,
                        fetching: true,
                    })
                }
                Err(e) => {
                    tracing::debug!(partition, error = %e, "cannot move an idle cursor; opening another")
                }
            }
        }
        let consumer = self
            .settings
            .client_config()
            .set("group.id", "flashrent-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", FETCH_WAIT_MS)
            // Tansu 0.6.0 sums the sizes of *every* record from the fetch offset to the end
            // of the partition for each fetch: a reader catching up pays for the rest of the
            // partition at each fetch, so it should take large bites.
            .set("max.partition.fetch.bytes", "8388608")
            // A cursor left fetching for its reader holds two such fetches ahead at most.
            .set("queued.max.messages.kbytes", "16384")
            .create_with_context::<_, StreamConsumer<Quiet>>(self.quiet.clone())
            .map_err(unavailable)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.topic,
            partition as i32,
            rdkafka::Offset::Offset(from as i64),
        )
        .map_err(unavailable)?;
        consumer.assign(&tpl).map_err(unavailable)?;
        Ok(Cursor {
            consumer,
            next: from,
            fetching: true,
        })
    }

    /// Keeps a cursor for the next read of its partition: paused, unless it stands short of
    /// the partition's end as far as this process knows (a reader catching up, which reads on
    /// at once): fetching ahead meanwhile overlaps the broker's work with the reader's. An
    /// assigned consumer otherwise goes on fetching in the background, and a broker serving
    /// many idle fetchers has less left for the records that matter.
    fn put_back(&self, partition: PartitionId, mut cursor: Cursor) {
        let more = cursor.next < self.ends[partition as usize].load(Ordering::Acquire);
        let mut idle = self.cursors[partition as usize]
            .lock()
            .expect("cursor lock");
        if idle.len() >= IDLE_CURSORS {
            return;
        }
        if more {
            cursor.fetching = true;
            idle.push(cursor);
            return;
        }
        match cursor.consumer.pause(&self.one_partition(partition)) {
            Ok(()) => {
                cursor.fetching = false;
                idle.push(cursor)
            }
            Err(e) => {
                tracing::debug!(partition, error = %e, "cannot pause an idle cursor; dropping it")
            }
        }
    }

    fn saw_end(&self, partition: PartitionId, end: Offset) {
        if let Some(known) = self.ends.get(partition as usize) {
            known.fetch_max(end, Ordering::AcqRel);
        }
    }

    fn one_partition(&self, partition: PartitionId) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition as i32);
        tpl
    }
}

fn stored(partition: PartitionId, m: &impl Message) -> StoredRecord {
    StoredRecord {
        partition,
        offset: m.offset() as Offset,
        bytes: m.payload().unwrap_or_default().to_vec(),
    }
}

#[async_trait::async_trait]
impl EventLog for KafkaLog {
    fn partition_count(&self) -> u32 {
        self.settings.partitions
    }

    fn append(&self, partition: PartitionId, record: Vec<u8>) -> AppendFuture {
        self.append_with(
            partition,
            RecordMeta {
                key: "",
                events: "",
            },
            record,
        )
    }

    fn append_with(
        &self,
        partition: PartitionId,
        meta: RecordMeta<'_>,
        record: Vec<u8>,
    ) -> AppendFuture {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "flashrent-events",
                value: Some(meta.events),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
        let rec = FutureRecord::to(&self.topic)
            .partition(partition as i32)
            .key(meta.key)
            .payload(&record)
            .headers(headers);
        let producer = {
            let mut current = self.producer.lock().expect("producer lock");
            if self.producer_failed.swap(false, Ordering::AcqRel) {
                match new_producer(&self.settings, &self.quiet) {
                    Ok(p) => *current = Arc::new(p),
                    Err(e) => {
                        self.producer_failed.store(true, Ordering::Release);
                        let e = unavailable(e);
                        return Box::pin(async move { Err(e) });
                    }
                }
            }
            current.clone()
        };
        let failed = self.producer_failed.clone();
        match producer.send_result(rec) {
            Ok(delivery) => Box::pin(async move {
                let result = match delivery.await {
                    Ok(Ok(d)) => Ok(d.offset as Offset),
                    Ok(Err((e, _))) => Err(unavailable(e)),
                    Err(_) => Err(LogError::unavailable("kafka: the producer stopped")),
                };
                if result.is_err() {
                    failed.store(true, Ordering::Release);
                }
                drop(producer);
                result
            }),
            Err((e, _)) => {
                self.producer_failed.store(true, Ordering::Release);
                let e = unavailable(e);
                Box::pin(async move { Err(e) })
            }
        }
    }

    async fn read(
        &self,
        partition: PartitionId,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<StoredRecord>, LogError> {
        // "What is durable now" on Kafka is everything below the high watermark: a reader
        // that will not wait must still get those, however long the fetch takes.
        let wait = if wait.is_zero() {
            if from >= self.end_offset(partition).await? {
                return Ok(vec![]);
            }
            FETCH_TIMEOUT
        } else {
            wait
        };
        let mut cursor = self.cursor(partition, from)?;
        let mut out = Vec::new();
        let first = tokio::time::timeout(wait, async {
            loop {
                match cursor.consumer.recv().await {
                    Ok(m) if (m.offset() as Offset) < from => continue,
                    Ok(m) => return Ok(stored(partition, &m)),
                    Err(e) => return Err(unavailable(e)),
                }
            }
        })
        .await;
        match first {
            Err(_elapsed) => {
                self.put_back(partition, cursor);
                if wait == FETCH_TIMEOUT {
                    return Err(LogError::unavailable(format!(
                        "kafka: no record from partition {partition} offset {from} within {FETCH_TIMEOUT:?}"
                    )));
                }
                return Ok(out);
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(r)) => out.push(r),
        }
        // Then whatever the consumer already holds, without waiting.
        while out.len() < max {
            match cursor.consumer.recv().now_or_never() {
                Some(Ok(m)) => out.push(stored(partition, &m)),
                _ => break,
            }
        }
        cursor.next = out.last().map_or(from, |r| r.offset + 1);
        self.put_back(partition, cursor);
        Ok(out)
    }

    async fn end_offset(&self, partition: PartitionId) -> Result<Offset, LogError> {
        let meta = self.meta.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            meta.fetch_watermarks(&topic, partition as i32, Duration::from_secs(3))
                .map(|(_, high)| high.max(0) as Offset)
                .map_err(unavailable)
        })
        .await
        .map_err(|e| LogError::unavailable_by("kafka: asking where the log ends", e))?
        .inspect(|end| self.saw_end(partition, *end))
    }

    fn close(&self) {
        use rdkafka::producer::Producer;
        let producer = self.producer.lock().expect("producer lock").clone();
        if let Err(e) = producer.flush(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "records still in flight to Kafka at shutdown");
        }
    }
}
