//! `flashrent notify`: a consumer of the event log that turns order events into signed
//! webhook POSTs, at least once, in order per order and receiver.
//!
//! - **Reader** (a task per partition): reads from its own durable position, and for each
//!   record queues one delivery per receiver (the order's `callback_url`, the global URL)
//!   and advances the position in the same sled batch ([`store::Store::commit`]).
//! - **Receivers** (a task per URL): send their queue's head, oldest first; a 2xx removes it
//!   (acknowledged, never sent again), anything else is retried with exponential backoff and
//!   jitter, and after `max_attempts` it becomes a dead letter. One receiver's backlog or
//!   timeouts hold up only its own queue.
//!
//! The embedded log allows one writer process; the notifier opens it read-only and follows
//! what `serve` appends ([`EmbeddedLog::open_read_only`]), so it runs as its own process.

pub mod message;
pub mod store;
pub mod target;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use flashrent_events::{decode_record, redact_url, Admission, EventLog, OrderId, PartitionId};
use message::OrderInfo;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use tokio::sync::{watch, Notify};

#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub action: Option<NotifyAction>,
    /// The service's data dir: the log is read from DATA_DIR/log, the notifier keeps its
    /// state in DATA_DIR/notify.
    #[arg(
        long,
        env = "FLASHRENT_DATA_DIR",
        default_value = "flashrent-data",
        global = true
    )]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub kafka: crate::config::KafkaArgs,
    /// A URL that gets every order's notifications (besides each order's `callback_url`).
    /// The operator's own configuration: it may name a private address.
    #[arg(long, env = "FLASHRENT_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// A file holding the shared secret of the `X-Flashrent-Signature` HMAC (or
    /// `FLASHRENT_WEBHOOK_SECRET`; not both).
    #[arg(long, env = "FLASHRENT_WEBHOOK_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Deliver to `callback_url`s that resolve to loopback, private or link-local addresses
    /// (tests, or receivers on the operator's own network).
    #[arg(long, env = "FLASHRENT_WEBHOOK_ALLOW_PRIVATE", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_private: bool,
    /// Failed attempts after which a delivery becomes a dead letter.
    #[arg(long, env = "FLASHRENT_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub max_attempts: u32,
    /// Per-request timeout, in milliseconds.
    #[arg(long, env = "FLASHRENT_WEBHOOK_TIMEOUT_MS", default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Wait after the first failure, in milliseconds (doubles per failure, with jitter).
    #[arg(long, env = "FLASHRENT_WEBHOOK_BACKOFF_MS", default_value_t = 1000)]
    pub backoff_ms: u64,
    /// Longest wait between attempts, in milliseconds.
    #[arg(
        long,
        env = "FLASHRENT_WEBHOOK_BACKOFF_MAX_MS",
        default_value_t = 300_000
    )]
    pub backoff_max_ms: u64,
    /// Every few seconds, write the consumer's lag, queue depth and dead letters as
    /// Prometheus metrics to this file (node_exporter's textfile collector).
    #[arg(long, env = "FLASHRENT_NOTIFY_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum NotifyAction {
    /// Dead letters: deliveries given up after too many failures.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum DeadLetterAction {
    /// List them (works while the notifier runs).
    List,
    /// Send them again (the running notifier, or the next one started, picks them up).
    Replay {
        /// Dead letter ids (or event ids, or their prefixes) as `list` shows them.
        ids: Vec<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Clone)]
struct Settings {
    secret: Arc<crate::config::Secret>,
    global_url: Option<String>,
    max_attempts: u32,
    timeout: Duration,
    backoff: Duration,
    backoff_max: Duration,
}

pub fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("notify")
}

/// `flashrent notify dead-letters …`.
pub fn dead_letters(data_dir: &Path, action: &DeadLetterAction) -> anyhow::Result<()> {
    let dir = state_dir(data_dir);
    match action {
        DeadLetterAction::List => {
            let letters = store::list_dead_letters(&dir)?;
            println!(
                "{:<54} {:<20} {:<36} {:>8}  {:<25} url / last error",
                "id", "event", "order", "attempts", "dead at"
            );
            for (id, l) in &letters {
                let d = &l.delivery;
                println!(
                    "{:<54} {:<20} {:<36} {:>8}  {:<25} {} / {}",
                    id,
                    d.event,
                    d.order_id,
                    d.attempts,
                    l.dead_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    redact_url(&d.url),
                    d.last_error.as_deref().unwrap_or("")
                );
            }
            println!("{} dead letters", letters.len());
        }
        DeadLetterAction::Replay { ids, all } => {
            anyhow::ensure!(
                *all || !ids.is_empty(),
                "name dead letters to replay, or --all"
            );
            let n = store::replay_dead_letters(&dir, ids, *all)?;
            println!("{n} dead letters queued for replay");
        }
    }
    Ok(())
}

/// Runs the notifier until `shutdown` turns true.
pub async fn run(args: &NotifyArgs, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let secret = crate::config::read_single_secret(
        "FLASHRENT_WEBHOOK_SECRET",
        "--secret-file",
        args.secret_file.as_deref(),
    )?
    .context("FLASHRENT_WEBHOOK_SECRET or --secret-file is required")?;
    if let Some(u) = &args.webhook_url {
        // Not echoed: the operator's URL may carry credentials.
        reqwest::Url::parse(u)
            .map_err(|_| anyhow::anyhow!("--webhook-url (FLASHRENT_WEBHOOK_URL) is not a URL"))?;
    }
    let settings = Settings {
        secret: Arc::new(secret),
        global_url: args.webhook_url.clone(),
        max_attempts: args.max_attempts.max(1),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        backoff: Duration::from_millis(args.backoff_ms.max(1)),
        backoff_max: Duration::from_millis(args.backoff_max_ms.max(args.backoff_ms.max(1))),
    };
    let log = crate::store::open_follower_log(&args.data_dir, &args.kafka).await?;
    let store = Store::open(&state_dir(&args.data_dir))
        .context("opening the notifier's state (is another notifier running?)")?;
    let clients = Clients {
        callbacks: target::client(settings.timeout, !args.allow_private)?,
        operator: target::client(settings.timeout, false)?,
        allow_private: args.allow_private,
    };
    let receivers = Receivers {
        store: store.clone(),
        http: clients,
        settings: settings.clone(),
        running: Arc::new(Mutex::new(HashMap::new())),
        shutdown: shutdown.clone(),
    };
    for rid in store.receivers()? {
        receivers.wake(&rid);
    }
    let global_url = settings.global_url.as_deref().map(redact_url);
    tracing::info!(partitions = log.partition_count(), global_url = ?global_url, allow_private = args.allow_private, "notifier started");

    let mut tasks = Vec::new();
    for partition in 0..log.partition_count() {
        let (log, store, receivers, settings, mut shutdown) = (
            log.clone(),
            store.clone(),
            receivers.clone(),
            settings.clone(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let step = tokio::select! {
                    s = read_step(log.as_ref(), &store, &settings, partition) => s,
                    _ = shutdown.changed() => break,
                };
                match step {
                    Ok(touched) => touched.iter().for_each(|rid| receivers.wake(rid)),
                    Err(e) => {
                        tracing::error!(partition, error = %e, "notifier read failed; retrying from the same position");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }));
    }
    // Replay requests from `notify dead-letters replay`, possibly made by another process.
    let mut ticks = 0u64;
    loop {
        match store.take_replays(Utc::now().timestamp_millis()) {
            Ok(touched) => touched.iter().for_each(|rid| receivers.wake(rid)),
            Err(e) => tracing::error!(error = %e, "cannot take dead-letter replays"),
        }
        if let Some(path) = args
            .metrics_file
            .as_ref()
            .filter(|_| ticks.is_multiple_of(10))
        {
            if let Err(e) = write_metrics(path, log.as_ref(), &store, &args.data_dir).await {
                tracing::warn!(error = %e, "cannot write the notifier's metrics file");
            }
        }
        ticks += 1;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => break,
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let running: Vec<_> = receivers
        .running
        .lock()
        .expect("receivers lock")
        .drain()
        .map(|(_, (_, h))| h)
        .collect();
    for h in running {
        let _ = h.await;
    }
    store.flush()?;
    tracing::info!("notifier stopped");
    Ok(())
}

/// The consumer's lag per partition, its queued deliveries and its dead letters, as
/// Prometheus text, written atomically.
async fn write_metrics(
    path: &Path,
    log: &dyn EventLog,
    store: &Store,
    data_dir: &Path,
) -> anyhow::Result<()> {
    use std::fmt::Write;
    let mut text = String::from(
        "# HELP flashrent_notify_lag_records Records in the log the notifier has not read yet\n\
         # TYPE flashrent_notify_lag_records gauge\n",
    );
    for p in 0..log.partition_count() {
        let lag = log
            .end_offset(p)
            .await?
            .saturating_sub(store.checkpoint(p)?);
        writeln!(
            text,
            "flashrent_notify_lag_records{{partition=\"{p}\"}} {lag}"
        )?;
    }
    let dead = store::list_dead_letters(&state_dir(data_dir))?.len();
    write!(
        text,
        "# HELP flashrent_notify_queued_deliveries Deliveries waiting for their receiver\n\
         # TYPE flashrent_notify_queued_deliveries gauge\n\
         flashrent_notify_queued_deliveries {}\n\
         # HELP flashrent_notify_dead_letters Deliveries given up, waiting for an operator\n\
         # TYPE flashrent_notify_dead_letters gauge\n\
         flashrent_notify_dead_letters {dead}\n",
        store.queued()?
    )?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

/// Reads what the partition has from the notifier's position and commits its deliveries.
async fn read_step(
    log: &dyn EventLog,
    store: &Store,
    settings: &Settings,
    partition: PartitionId,
) -> anyhow::Result<Vec<String>> {
    let from = store.checkpoint(partition)?;
    let batch = log
        .read(partition, from, 512, Duration::from_millis(500))
        .await?;
    let Some(last) = batch.last() else {
        return Ok(vec![]);
    };
    let next = last.offset + 1;
    let mut new_orders: HashMap<OrderId, OrderInfo> = HashMap::new();
    let mut messages = Vec::new();
    let mut fence = store.fence(partition)?;
    for r in &batch {
        let record = decode_record(&r.bytes).with_context(|| {
            format!(
                "partition {partition} offset {} cannot be decoded",
                r.offset
            )
        })?;
        if fence.admit(&record) != Admission::Events {
            continue;
        }
        for env in &record.events {
            if let Some((id, info)) = OrderInfo::from_placed(&env.event) {
                new_orders.insert(id, info);
                continue;
            }
            let Some(order_id) = env.event.order_id() else {
                continue;
            };
            let info = match new_orders.get(&order_id) {
                Some(i) => Some(i.clone()),
                None => store.order(&order_id)?,
            };
            let Some(info) = info else { continue };
            if let Some(m) = message::for_event(env, &info) {
                let mut urls: Vec<String> = Vec::new();
                for u in [info.callback_url.as_ref(), settings.global_url.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    if !urls.contains(u) {
                        urls.push(u.clone());
                    }
                }
                if !urls.is_empty() {
                    messages.push((m, urls));
                }
            }
        }
    }
    Ok(store.commit(
        partition,
        next,
        fence,
        &new_orders,
        &messages,
        Utc::now().timestamp_millis(),
    )?)
}

type Running = HashMap<String, (Arc<Notify>, tokio::task::JoinHandle<()>)>;

/// The delivery tasks, one per receiver, started on first need.
#[derive(Clone)]
struct Receivers {
    store: Store,
    http: Clients,
    settings: Settings,
    running: Arc<Mutex<Running>>,
    shutdown: watch::Receiver<bool>,
}

impl Receivers {
    fn wake(&self, rid: &str) {
        let mut running = self.running.lock().expect("receivers lock");
        if let Some((notify, _)) = running.get(rid) {
            notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        let task = tokio::spawn(deliver_loop(
            rid.to_owned(),
            self.store.clone(),
            self.http.clone(),
            self.settings.clone(),
            notify.clone(),
            self.shutdown.clone(),
        ));
        running.insert(rid.to_owned(), (notify, task));
    }
}

async fn deliver_loop(
    rid: String,
    store: Store,
    http: Clients,
    settings: Settings,
    notify: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut warned: HashSet<uuid::Uuid> = HashSet::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let head = match store.head(&rid) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(receiver = %rid, error = %e, "cannot read the outbox");
                None
            }
        };
        let Some((key, mut d)) = head else {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        };
        let wait = d.due_ms - Utc::now().timestamp_millis();
        if wait > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let result = post(&http, &settings, &d).await;
        let outcome = match result {
            Ok(()) => store.ack(&key),
            Err(failure) => {
                let (why, final_) = match failure {
                    Failure::Retry(why) => (why, false),
                    // Trying again leads to the same address: no use waiting.
                    Failure::Refused(why) => (why, true),
                };
                d.attempts += 1;
                d.last_error = Some(why.clone());
                if final_ || d.attempts >= settings.max_attempts {
                    tracing::warn!(receiver = %redact_url(&d.url), event_id = %d.event_id, order_id = %d.order_id, attempts = d.attempts, error = %why, "delivery dead-lettered");
                    store.dead_letter(&key, &d)
                } else {
                    let wait = message::backoff(
                        d.attempts,
                        settings.backoff,
                        settings.backoff_max,
                        rand::random::<f64>(),
                    );
                    d.due_ms = message::due_at(Utc::now(), wait);
                    if warned.insert(d.event_id) {
                        tracing::warn!(receiver = %redact_url(&d.url), event_id = %d.event_id, order_id = %d.order_id, error = %why, "delivery failed; retrying with backoff");
                    }
                    store.retry_later(&key, &d)
                }
            }
        };
        if let Err(e) = outcome {
            tracing::error!(receiver = %rid, error = %e, "cannot record a delivery's outcome");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The notifier's HTTP clients. Neither follows redirects (a redirect could lead anywhere,
/// past every check) nor uses a proxy from the environment (the check is on the address
/// connected to). Clients' `callback_url`s go through a resolver that drops forbidden
/// addresses, unless private targets are allowed; the operator's `--webhook-url` is trusted
/// configuration and resolves as it is.
#[derive(Clone)]
struct Clients {
    callbacks: reqwest::Client,
    operator: reqwest::Client,
    allow_private: bool,
}

/// Why an attempt failed: worth retrying, or refused for where it leads (final).
enum Failure {
    Retry(String),
    Refused(String),
}

async fn post(http: &Clients, settings: &Settings, d: &store::Delivery) -> Result<(), Failure> {
    let operator = settings.global_url.as_deref() == Some(d.url.as_str());
    let client = if operator {
        &http.operator
    } else {
        if !http.allow_private {
            // Only names reach the resolver; an address literal is checked here.
            if let Some(why) = target::literal_refusal(&d.url) {
                return Err(Failure::Refused(why));
            }
        }
        &http.callbacks
    };
    let res = client
        .post(&d.url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", d.event_id.to_string())
        .header("X-Flashrent-Event", &d.event)
        .header(
            "X-Flashrent-Signature",
            message::signature(settings.secret.expose().as_bytes(), d.body.as_bytes()),
        )
        .body(d.body.clone())
        .send()
        .await
        .map_err(|e| {
            if let Some(refused) = target::refusal_in(&e) {
                Failure::Refused(refused)
            } else if e.is_timeout() {
                Failure::Retry(format!("timed out after {:?}", settings.timeout))
            } else {
                // reqwest's message names the whole URL; the delivery's URL is known anyway.
                Failure::Retry(format!("request failed: {}", error_chain(&e.without_url())))
            }
        })?;
    let status = res.status();
    if status.is_success() {
        Ok(())
    } else if status.is_redirection() {
        Err(Failure::Retry(format!(
            "receiver answered {status} (redirects are not followed)"
        )))
    } else {
        Err(Failure::Retry(format!("receiver answered {status}")))
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
