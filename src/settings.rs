//! What `serve` runs with: [`Settings`], read once from the command line's arguments
//! ([`ServeArgs`], which clap also fills from `FLASHRENT_*` variables) and the secrets in the
//! environment and the files those arguments name. [`crate::startup::Application::build`]
//! takes these, never the CLI's arguments, so the two can change apart; and an operator's
//! mistake (a missing file, a malformed key, a bad price table) is found here, before
//! anything is opened, and told in one line ([`SettingsError`]).
//!
//! Secrets are [`Secret`]s and [`SecretKey`]s: their `Debug` prints nothing, so a `Settings`
//! can be logged whole.

use crate::chain::tron::{parse_keys, KeyError, SecretKey, TronConfig};
use crate::config::{
    api_keys, kafka_config, read_secret, read_single_secret, KafkaArgs, Secret, SecretError,
    ServeArgs, StoreArgs,
};
use crate::domain::pricing::{PriceTable, PricingError};
use crate::http::access::OrderRates;
use crate::log::KafkaSettings;
use crate::saga::{FaultPoints, SagaConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// Names the variable or file and the item, never the key.
    #[error(transparent)]
    SupplierKeys(KeyError),
    #[error("--prices (FLASHRENT_PRICES): {0}")]
    Prices(#[source] PricingError),
    #[error("FLASHRENT_CRASH_AT: {0}")]
    CrashAt(#[source] crate::saga::UnknownFaultPoint),
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where HTTP is served; port 0 picks a free one.
    pub listen: String,
    /// The URL other instances reach this one at (default: `http://` and the address bound).
    pub advertised_url: Option<String>,
    pub store: StoreSettings,
    pub secrets: Secrets,
    pub prices: PriceTable,
    pub chain: ChainSettings,
    pub saga: SagaConfig,
    /// Scheduling priority of the saga's thread (and of the in-process devnet's).
    pub saga_nice: u8,
    pub http: HttpSettings,
    /// Events a partition's writer decides between two snapshots of its state.
    pub writer_snapshot_every: u64,
}

/// The data dir and the event log.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub data_dir: PathBuf,
    pub partitions: u32,
    /// The read models' sled page cache.
    pub sled_cache_bytes: u64,
    /// The log on Kafka, when brokers are configured (else the embedded log in the data dir).
    pub kafka: Option<KafkaSettings>,
}

#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The admin bearer token; without one, a token kept in the data dir.
    pub admin_token: Option<Secret>,
    /// API keys of client routes given at startup (more are issued through the API).
    pub api_keys: Vec<Secret>,
    /// Sent as `TRON-PRO-API-KEY`.
    pub tron_api_key: Option<Secret>,
    /// Keys of the supplier wallets this instance delegates from.
    pub supplier_keys: Vec<SecretKey>,
}

#[derive(Debug, Clone)]
pub struct ChainSettings {
    /// java-tron full nodes, primary first; none: the in-process devnet ([`crate::chain::demo`]).
    pub nodes: Vec<String>,
    /// Delegate with TRON's lock for the rental's duration.
    pub lock: bool,
    pub request_timeout: Duration,
    pub max_rate_change: f64,
    pub max_answer_bytes: usize,
    /// How often the pool's capacities are read from the chain again; `None`: at startup only.
    pub inventory_refresh: Option<Duration>,
    pub demo: DemoSettings,
}

/// The in-process devnet of demo mode.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// Block interval (0: a block per broadcast).
    pub block_ms: u64,
    /// Probability that a transaction fails in its block.
    pub failure_rate: f64,
    /// Energy of the demo supplier wallet registered on first start (0: none).
    pub supplier_energy: u64,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Worker threads (0: one per core).
    pub workers: usize,
    /// How long a client may take to send a request's head, then its body.
    pub client_timeout: Duration,
    /// Orders per minute per user and per key, as configured (`None`: the default for the
    /// address listened on, see [`HttpSettings::order_rates`]).
    pub order_rate_per_user: Option<u32>,
    pub order_rate_per_key: Option<u32>,
    /// How often the issued API keys' last use is recorded.
    pub key_usage_record_every: Duration,
    /// `callback_url`s may name loopback, private or link-local targets (tests only).
    pub allow_private_callbacks: bool,
}

impl Settings {
    /// Reads every setting and secret of `serve`. Nothing is opened yet.
    pub fn from_args(args: ServeArgs) -> Result<Settings, SettingsError> {
        let prices = PriceTable::parse(&args.prices, args.min_energy, args.max_energy)
            .map_err(SettingsError::Prices)?;
        let supplier_keys = match read_secret(
            "FLASHRENT_SUPPLIER_KEYS",
            "--supplier-keys-file",
            args.supplier_keys_file.as_deref(),
        )? {
            Some((text, origin)) => {
                parse_keys(text.expose(), &origin).map_err(SettingsError::SupplierKeys)?
            }
            None => vec![],
        };
        let secrets = Secrets {
            admin_token: read_single_secret(
                "FLASHRENT_ADMIN_TOKEN",
                "--admin-token-file",
                args.admin_token_file.as_deref(),
            )?,
            api_keys: api_keys(args.api_keys_file.as_deref())?,
            tron_api_key: read_single_secret(
                "FLASHRENT_TRON_API_KEY",
                "--tron-api-key-file",
                args.tron_api_key_file.as_deref(),
            )?,
            supplier_keys,
        };
        let nodes = args
            .tron_nodes
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Settings {
            store: StoreSettings::from_args(&args.store)?,
            listen: args.listen,
            advertised_url: args.advertised_url,
            secrets,
            prices,
            chain: ChainSettings {
                nodes,
                lock: args.tron_lock,
                request_timeout: Duration::from_millis(args.tron_timeout_ms.max(1)),
                max_rate_change: args.tron_max_rate_change,
                max_answer_bytes: args.tron_max_answer_bytes.max(1),
                inventory_refresh: (args.inventory_refresh_secs > 0)
                    .then(|| Duration::from_secs(args.inventory_refresh_secs)),
                demo: DemoSettings {
                    block_ms: args.devnet_block_ms,
                    failure_rate: args.devnet_failure_rate,
                    supplier_energy: args.demo_supplier_energy,
                },
            },
            saga: SagaConfig {
                poll_interval: Duration::from_millis(args.poll_ms.max(1)),
                rental_time_scale: args.rental_time_scale,
                concurrency: args.saga_concurrency,
                queue: args.saga_queue,
                start_rate: args.saga_rate,
                inactive_receiver_ttl: Duration::from_secs(args.inactive_receiver_cache_secs),
                faults: FaultPoints::from_env().map_err(SettingsError::CrashAt)?,
                ..Default::default()
            },
            saga_nice: args.saga_nice,
            http: HttpSettings {
                workers: args.http_workers,
                client_timeout: Duration::from_millis(args.client_timeout_ms.max(1)),
                order_rate_per_user: args.order_rate_per_user,
                order_rate_per_key: args.order_rate_per_key,
                key_usage_record_every: Duration::from_secs(args.key_usage_record_secs.max(1)),
                allow_private_callbacks: args.webhook_allow_private,
            },
            writer_snapshot_every: args.writer_snapshot_every,
        })
    }

    /// The TRON client's settings, against `nodes`.
    pub fn tron_config(&self, nodes: Vec<String>) -> TronConfig {
        let mut config = TronConfig::new(nodes);
        config.api_key = self.secrets.tron_api_key.clone();
        config.use_lock = self.chain.lock;
        config.request_timeout = self.chain.request_timeout;
        config.max_rate_change = self.chain.max_rate_change;
        config.max_answer_bytes = self.chain.max_answer_bytes;
        config
    }
}

impl StoreSettings {
    pub fn from_args(args: &StoreArgs) -> Result<StoreSettings, SecretError> {
        Ok(StoreSettings {
            data_dir: args.data_dir.clone(),
            partitions: args.partitions,
            sled_cache_bytes: args.sled_cache_mb << 20,
            kafka: kafka_settings(&args.kafka, args.partitions)?,
        })
    }
}

/// The log on Kafka for `partitions` partitions, when brokers are configured.
pub fn kafka_settings(
    args: &KafkaArgs,
    partitions: u32,
) -> Result<Option<KafkaSettings>, SecretError> {
    let Some(brokers) = &args.brokers else {
        return Ok(None);
    };
    Ok(Some(KafkaSettings {
        brokers: brokers.clone(),
        topic_prefix: args.kafka_topic_prefix.clone(),
        partitions,
        replication: args.kafka_replication,
        extra: kafka_config(args.kafka_config_file.as_deref())?,
    }))
}

impl HttpSettings {
    /// The order rate limits in force: as configured, else none on a loopback-only server
    /// (its clients are the operator's own) and a default per user and per key otherwise.
    pub fn order_rates(&self, loopback: bool) -> OrderRates {
        let rate = |set: Option<u32>, default: u32| {
            std::num::NonZeroU32::new(set.unwrap_or(if loopback { 0 } else { default }))
        };
        OrderRates {
            per_user: rate(self.order_rate_per_user, 60),
            per_key: rate(self.order_rate_per_key, 6000),
        }
    }

    /// HTTP worker threads: as configured, or one per core.
    pub fn worker_threads(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.workers
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["flashrent"];
        argv.extend_from_slice(extra);
        ServeArgs::parse_from(argv).unwrap()
    }

    #[test]
    fn settings_print_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-admin-token\n").unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(
            &keys,
            "279ff36d9bf9f305af3280034bb4187c6dd299bac6b26a3c20b999c7c0d50e6e\n",
        )
        .unwrap();
        let settings = Settings::from_args(args(&[
            "--admin-token-file",
            token.to_str().unwrap(),
            "--supplier-keys-file",
            keys.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(
            settings.secrets.admin_token.as_ref().map(Secret::expose),
            Some("s3cret-admin-token")
        );
        assert_eq!(settings.secrets.supplier_keys.len(), 1);
        let printed = format!("{settings:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(!printed.contains("279ff36d"), "{printed}");
    }

    #[test]
    fn a_missing_secret_file_is_named() {
        let err = Settings::from_args(args(&["--supplier-keys-file", "/nonexistent/keys"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--supplier-keys-file") && err.contains("/nonexistent/keys"),
            "{err}"
        );
    }
}
