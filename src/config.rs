//! Settings of `flashrent serve`, from flags or `FLASHRENT_*` environment variables.

use crate::domain::pricing::PriceTable;
use clap::Args;
use std::fmt;
use std::path::PathBuf;

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
    /// Page cache of the sled read models, in MiB.
    #[arg(long, env = "FLASHRENT_SLED_CACHE_MB", default_value_t = 64)]
    pub sled_cache_mb: u64,
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
    /// Simulated chain: time from broadcast to confirmation, in milliseconds.
    #[arg(long, env = "FLASHRENT_SIM_CONFIRM_MS", default_value_t = 300)]
    pub sim_confirm_ms: u64,
    /// Simulated chain: probability that a delegation fails on chain.
    #[arg(long, env = "FLASHRENT_SIM_FAILURE_RATE", default_value_t = 0.0)]
    pub sim_failure_rate: f64,
    /// Energy of the demo supplier wallet registered on first start with the simulated chain
    /// (0: register none).
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
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "FLASHRENT_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,
    /// Orders the saga drives at once (the rest wait in its queue).
    #[arg(long, env = "FLASHRENT_SAGA_CONCURRENCY", default_value_t = 512)]
    pub saga_concurrency: usize,
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
