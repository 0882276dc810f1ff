//! Settings of `flashrent serve`, from flags or `FLASHRENT_*` environment variables.

use crate::domain::pricing::PriceTable;
use clap::Args;
use std::fmt;
use std::path::PathBuf;

/// The read models' sled page cache, in MiB, unless `--sled-cache-mb` says otherwise.
pub const DEFAULT_SLED_CACHE_MB: u64 = 16;

/// A secret (token, API key). Its `Debug` and `Display` print nothing of it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Lets clap read a secret straight from a flag or the environment.
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Where the event log and the read models live.
    #[arg(long, env = "FLASHRENT_DATA_DIR", default_value = "flashrent-data")]
    pub data_dir: PathBuf,
    /// Partitions of the event log (fixed when the log is created).
    #[arg(long, env = "FLASHRENT_PARTITIONS", default_value_t = 8)]
    pub partitions: u32,
    /// Page cache of the sled read models, in MiB. Recent orders and balances are served
    /// from the write-behind table and this cache; the operating system's file cache holds
    /// the rest of sled's files outside the process (64 MiB here held 48 MiB more at 1M
    /// orders for the same POST and GET rates: `bench/RESULTS.md`, run Q).
    #[arg(long, env = "FLASHRENT_SLED_CACHE_MB", default_value_t = DEFAULT_SLED_CACHE_MB)]
    pub sled_cache_mb: u64,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Where the event log lives when it is on Kafka.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers: the event log lives in Kafka instead of the data dir.
    #[arg(long = "kafka", env = "FLASHRENT_KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Prefix of the Kafka topic names (the log is `<prefix>events`).
    #[arg(
        long,
        env = "FLASHRENT_KAFKA_TOPIC_PREFIX",
        default_value = "flashrent."
    )]
    pub kafka_topic_prefix: String,
    /// Replication factor of the topic when flashrent creates it (3 on a real cluster).
    #[arg(long, env = "FLASHRENT_KAFKA_REPLICATION", default_value_t = 1)]
    pub kafka_replication: i32,
    /// librdkafka settings passed as they are, comma-separated `key=value` (SASL, TLS, …),
    /// e.g. `security.protocol=SASL_SSL,sasl.mechanisms=SCRAM-SHA-512,sasl.username=u`.
    #[arg(long, env = "FLASHRENT_KAFKA_CONFIG", value_delimiter = ',', value_parser = parse_kv, hide_env_values = true)]
    pub kafka_config: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// A factor above 1 (and finite).
fn rate_change(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f > 1.0 => Ok(f),
        _ => Err(format!("{s:?} is not a factor above 1 (e.g. 2)")),
    }
}

impl KafkaArgs {
    /// The settings for a log of `partitions` partitions, when brokers are configured.
    pub fn settings(&self, partitions: u32) -> Option<crate::log::KafkaSettings> {
        self.brokers
            .as_ref()
            .map(|brokers| crate::log::KafkaSettings {
                brokers: brokers.clone(),
                topic_prefix: self.kafka_topic_prefix.clone(),
                partitions,
                replication: self.kafka_replication,
                extra: self.kafka_config.clone(),
            })
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at startup).
    #[arg(long, env = "FLASHRENT_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Admin bearer token. Without one, a token is generated once and kept in the data dir.
    #[arg(long, env = "FLASHRENT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Comma-separated API keys; when set, client routes require one (X-API-Key header).
    #[arg(
        long,
        env = "FLASHRENT_API_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub api_keys: Vec<String>,
    /// Price table: DURATION=SUN_PER_ENERGY entries.
    #[arg(
        long,
        env = "FLASHRENT_PRICES",
        default_value = "1h=90,3h=100,1d=120,3d=330,7d=700,30d=2700"
    )]
    pub prices: String,
    #[arg(long, env = "FLASHRENT_MIN_ENERGY", default_value_t = 10_000)]
    pub min_energy: u64,
    #[arg(long, env = "FLASHRENT_MAX_ENERGY", default_value_t = 10_000_000)]
    pub max_energy: u64,
    /// java-tron full-node URLs, primary first (e.g. `https://api.trongrid.io`). None: an
    /// in-process devnet is started and used.
    #[arg(long, env = "FLASHRENT_TRON_NODES", value_delimiter = ',')]
    pub tron_nodes: Vec<String>,
    /// Sent as the `TRON-PRO-API-KEY` header (TronGrid).
    #[arg(long, env = "FLASHRENT_TRON_API_KEY", hide_env_values = true)]
    pub tron_api_key: Option<Secret>,
    /// Supplier private keys: comma-separated hex, or the path of a file with one per line.
    #[arg(long, env = "FLASHRENT_SUPPLIER_KEYS", hide_env_values = true)]
    pub supplier_keys: Option<Secret>,
    /// Delegate with TRON's lock for the rental's duration.
    #[arg(long, env = "FLASHRENT_TRON_LOCK")]
    pub tron_lock: bool,
    /// Timeout of one call to a TRON node, in milliseconds.
    #[arg(long, env = "FLASHRENT_TRON_TIMEOUT_MS", default_value_t = 5000)]
    pub tron_timeout_ms: u64,
    /// The most the SUN-per-energy rate (TotalEnergyWeight / TotalEnergyLimit) may change
    /// between two readings of the chain's energy totals, as a factor (above 1): a reading
    /// beyond it is refused and nothing is signed with it until an operator restarts the
    /// service, which takes the first reading after the start as it is.
    #[arg(long, env = "FLASHRENT_TRON_MAX_RATE_CHANGE", default_value_t = 2.0, value_parser = rate_change)]
    pub tron_max_rate_change: f64,
    /// The largest answer read from a TRON node, in bytes; a larger one is a failed call on
    /// that node (the next node is tried). The default holds a full mainnet block's
    /// `gettransactioninfobyblocknum`.
    #[arg(long, env = "FLASHRENT_TRON_MAX_ANSWER_BYTES", default_value_t = 16 << 20)]
    pub tron_max_answer_bytes: usize,
    /// How long the chain's answer that a receiving address is not activated is believed, in
    /// seconds (an activated one is believed for good: TRON accounts are never deleted); 0:
    /// asked again at every order.
    #[arg(
        long,
        env = "FLASHRENT_INACTIVE_RECEIVER_CACHE_SECS",
        default_value_t = 60
    )]
    pub inactive_receiver_cache_secs: u64,
    /// With configured nodes: how often the pool's capacities are refreshed from the chain
    /// (getcandelegatedmaxsize), in seconds; 0 only reads them at startup.
    #[arg(long, env = "FLASHRENT_INVENTORY_REFRESH_SECS", default_value_t = 60)]
    pub inventory_refresh_secs: u64,
    /// In-process devnet: block interval in milliseconds (0: a block per broadcast).
    #[arg(long, env = "FLASHRENT_DEVNET_BLOCK_MS", default_value_t = 3000)]
    pub devnet_block_ms: u64,
    /// In-process devnet: probability that a transaction fails in its block.
    #[arg(long, env = "FLASHRENT_DEVNET_FAILURE_RATE", default_value_t = 0.0)]
    pub devnet_failure_rate: f64,
    /// Energy of the demo supplier wallet of the in-process devnet, registered in the pool on
    /// first start (0: register none).
    #[arg(
        long,
        env = "FLASHRENT_DEMO_SUPPLIER_ENERGY",
        default_value_t = 1_000_000_000_000
    )]
    pub demo_supplier_energy: u64,
    /// Multiplies rental durations (1/60 turns minutes into seconds, for tests and demos).
    #[arg(long, env = "FLASHRENT_RENTAL_TIME_SCALE", default_value_t = 1.0)]
    pub rental_time_scale: f64,
    /// How often the saga asks the chain about a pending transaction, in milliseconds.
    #[arg(long, env = "FLASHRENT_POLL_MS", default_value_t = 100)]
    pub poll_ms: u64,
    /// The URL other instances reach this one at, named in its partition claims on Kafka
    /// (default: http:// and the address it listens on).
    #[arg(long, env = "FLASHRENT_ADVERTISED_URL")]
    pub advertised_url: Option<String>,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "FLASHRENT_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,
    /// Orders the saga works on at once (the rest wait in its queue; an order waiting for
    /// its block is parked and holds no worker).
    #[arg(long, env = "FLASHRENT_SAGA_CONCURRENCY", default_value_t = 512)]
    pub saga_concurrency: usize,
    /// Orders waiting for a saga worker in memory at most; the rest are found again in the
    /// read models' index of unfinished orders as the queue drains.
    #[arg(long, env = "FLASHRENT_SAGA_QUEUE", default_value_t = 8_192)]
    pub saga_queue: usize,
    /// Orders the saga starts per second at most (0: as fast as it can): the pace of
    /// delegations the chain and the supplier wallets are to see.
    #[arg(long, env = "FLASHRENT_SAGA_RATE", default_value_t = 0)]
    pub saga_rate: u32,
    /// Scheduling priority (nice, 0 to 19) of the saga's thread: above 0, taking orders and
    /// money goes first when the CPU is short, and fulfilment uses what is left. 0: the
    /// same as the rest.
    #[arg(long, env = "FLASHRENT_SAGA_NICE", default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=19))]
    pub saga_nice: u8,
    /// Events a partition's writer decides between two snapshots of its state; it holds in
    /// memory only what it touched since the last one.
    #[arg(long, env = "FLASHRENT_WRITER_SNAPSHOT_EVERY", default_value_t = crate::engine::SNAPSHOT_EVERY)]
    pub writer_snapshot_every: u64,
    /// Log as JSON lines.
    #[arg(long, env = "FLASHRENT_LOG_JSON")]
    pub log_json: bool,
}

impl ServeArgs {
    pub fn price_table(&self) -> anyhow::Result<PriceTable> {
        Ok(PriceTable::parse(
            &self.prices,
            self.min_energy,
            self.max_energy,
        )?)
    }
}
