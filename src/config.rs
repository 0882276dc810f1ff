//! The command line of `flashrent serve` (flags, or `FLASHRENT_*` environment variables) and
//! how secrets are read; [`crate::settings::Settings`] is what `serve` is built from.

use clap::Args;
use std::fmt;
use std::path::{Path, PathBuf};

/// The read models' sled page cache, in MiB, unless `--sled-cache-mb` says otherwise.
pub const DEFAULT_SLED_CACHE_MB: u64 = 16;

/// A secret (token, API key, password). Its `Debug` and `Display` print nothing of it.
#[derive(Clone, PartialEq, Eq)]
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

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret's text came from, for errors that must say where and never what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The environment variable of that name.
    Env(&'static str),
    /// A file named by a `--…-file` flag.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(name) => f.write_str(name),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Origin {
    /// How an item of a list is named: its position in a variable, its line in a file.
    fn item(&self, position: usize) -> String {
        match self {
            Origin::Env(name) => format!("{name}: item {position}"),
            Origin::File(path) => format!("{}: line {position}", path.display()),
        }
    }
}

/// Why a secret could not be read. Never holds any of the secret's text.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("both {env} and {flag} are set: give this secret one way")]
    Both {
        env: &'static str,
        flag: &'static str,
    },
    #[error("cannot read {flag} {}: {source}", path.display())]
    Unreadable {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin} is not valid UTF-8")]
    NotUnicode { origin: Origin },
    /// An item of a list (API keys, librdkafka settings) is malformed; `item` says which
    /// by position, the text says what it must be.
    #[error("{item} {why} (the value is not shown)")]
    BadItem { item: String, why: &'static str },
}

/// A secret's text, from the environment variable `env` or the file at `file` (the value of
/// the `flag` option), never both. An empty variable counts as unset. Secrets are never
/// command-line values: those are visible to every user of the machine (`ps`).
pub fn read_secret(
    env: &'static str,
    flag: &'static str,
    file: Option<&Path>,
) -> Result<Option<(Secret, Origin)>, SecretError> {
    let from_env = std::env::var_os(env).filter(|v| !v.is_empty());
    match (from_env, file) {
        (Some(_), Some(_)) => Err(SecretError::Both { env, flag }),
        (Some(v), None) => {
            let text = v.into_string().map_err(|_| SecretError::NotUnicode {
                origin: Origin::Env(env),
            })?;
            Ok(Some((Secret(text), Origin::Env(env))))
        }
        (None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|source| SecretError::Unreadable {
                flag,
                path: path.to_owned(),
                source,
            })?;
            let origin = Origin::File(path.to_owned());
            let text = String::from_utf8(bytes).map_err(|_| SecretError::NotUnicode {
                origin: origin.clone(),
            })?;
            Ok(Some((Secret(text), origin)))
        }
        (None, None) => Ok(None),
    }
}

/// A single-valued secret (a token, a password): the variable's value, or the file's content
/// without surrounding whitespace (the trailing newline of `echo … > file`). Empty: none.
pub fn read_single_secret(
    env: &'static str,
    flag: &'static str,
    file: Option<&Path>,
) -> Result<Option<Secret>, SecretError> {
    Ok(read_secret(env, flag, file)?
        .map(|(s, _)| Secret(s.expose().trim().to_owned()))
        .filter(|s| !s.expose().is_empty()))
}

/// The items of a list secret with their positions (1-based). In a variable, items are
/// separated by commas or any whitespace, and empty items (a trailing comma, blank lines)
/// are skipped; in a file, the position is the line, and blank lines and `#` comment lines
/// are skipped too.
pub fn list_items<'a>(text: &'a str, origin: &Origin) -> Vec<(usize, &'a str)> {
    let split = |s: &'a str| {
        s.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|i| !i.is_empty())
    };
    match origin {
        Origin::Env(_) => split(text).enumerate().map(|(i, k)| (i + 1, k)).collect(),
        Origin::File(_) => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim_start().starts_with('#'))
            .flat_map(|(n, l)| split(l).map(move |k| (n + 1, k)))
            .collect(),
    }
}

/// Names an item of a list secret for an error, by position only.
pub fn item_name(origin: &Origin, position: usize) -> String {
    origin.item(position)
}

/// API keys of client routes: `FLASHRENT_API_KEYS` or `--api-keys-file`.
pub fn api_keys(file: Option<&Path>) -> Result<Vec<Secret>, SecretError> {
    let Some((text, origin)) = read_secret("FLASHRENT_API_KEYS", "--api-keys-file", file)? else {
        return Ok(vec![]);
    };
    Ok(list_items(text.expose(), &origin)
        .into_iter()
        .map(|(_, k)| Secret(k.to_owned()))
        .collect())
}

/// librdkafka settings: in `FLASHRENT_KAFKA_CONFIG`, comma-separated `key=value`; in
/// `--kafka-config-file`, one `key=value` per line (so a value may hold a comma), blank lines
/// and `#` comments skipped. Values are secrets (`sasl.password`).
pub fn kafka_config(file: Option<&Path>) -> Result<Vec<(String, Secret)>, SecretError> {
    let Some((text, origin)) = read_secret("FLASHRENT_KAFKA_CONFIG", "--kafka-config-file", file)?
    else {
        return Ok(vec![]);
    };
    let items: Vec<(usize, &str)> = match origin {
        Origin::Env(_) => text
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .enumerate()
            .map(|(i, k)| (i + 1, k))
            .collect(),
        Origin::File(_) => text
            .expose()
            .lines()
            .enumerate()
            .map(|(n, l)| (n + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .collect(),
    };
    items
        .into_iter()
        .map(|(position, item)| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_owned(), Secret(v.trim().to_owned())))
            }
            _ => Err(SecretError::BadItem {
                item: origin.item(position),
                why: "is not key=value",
            }),
        })
        .collect()
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
    /// A file of librdkafka settings passed as they are (SASL, TLS, …), one `key=value` per
    /// line, e.g. `sasl.password=…`. Or `FLASHRENT_KAFKA_CONFIG`, comma-separated (not both).
    #[arg(long, env = "FLASHRENT_KAFKA_CONFIG_FILE")]
    pub kafka_config_file: Option<PathBuf>,
}

/// A factor above 1 (and finite).
fn rate_change(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f > 1.0 => Ok(f),
        _ => Err(format!("{s:?} is not a factor above 1 (e.g. 2)")),
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at startup).
    #[arg(long, env = "FLASHRENT_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// A file holding the admin bearer token (or `FLASHRENT_ADMIN_TOKEN`; not both). Without
    /// either, a token is generated once and kept in the data dir.
    #[arg(long, env = "FLASHRENT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// A file of API keys, one per line (or `FLASHRENT_API_KEYS`, comma-separated; not
    /// both); when there are any, client routes require one (X-API-Key header).
    #[arg(long, env = "FLASHRENT_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
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
    /// A file holding the key sent as the `TRON-PRO-API-KEY` header (TronGrid), or
    /// `FLASHRENT_TRON_API_KEY` (not both).
    #[arg(long, env = "FLASHRENT_TRON_API_KEY_FILE")]
    pub tron_api_key_file: Option<PathBuf>,
    /// A file of supplier private keys, 64 hex characters each, one per line (`#`
    /// comments), or `FLASHRENT_SUPPLIER_KEYS`, separated by commas or whitespace (not both).
    #[arg(long, env = "FLASHRENT_SUPPLIER_KEYS_FILE")]
    pub supplier_keys_file: Option<PathBuf>,
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
    /// How long a client may take to send a request's head, and then its body, in
    /// milliseconds; a slower one gets 408 and its connection is closed.
    #[arg(long, env = "FLASHRENT_CLIENT_TIMEOUT_MS", default_value_t = 5000)]
    pub client_timeout_ms: u64,
    /// Orders a user may place per minute (a token bucket holding a minute's worth; 0: no
    /// limit). Unset: no limit when listening on a loopback address, else 60.
    #[arg(long, env = "FLASHRENT_ORDER_RATE_PER_USER")]
    pub order_rate_per_user: Option<u32>,
    /// Orders one API key may place per minute, for all the users it acts for (0: no limit).
    /// Unset: no limit when listening on a loopback address, else 6000.
    #[arg(long, env = "FLASHRENT_ORDER_RATE_PER_KEY")]
    pub order_rate_per_key: Option<u32>,
    /// How often the last use of the issued API keys is recorded in the log, in seconds.
    #[arg(long, env = "FLASHRENT_KEY_USAGE_RECORD_SECS", default_value_t = 60)]
    pub key_usage_record_secs: u64,
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
    /// Accept `callback_url`s that name loopback, private or link-local addresses (and
    /// `localhost`): for tests and a notifier on the same private network only.
    #[arg(long, env = "FLASHRENT_WEBHOOK_ALLOW_PRIVATE", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub webhook_allow_private: bool,
    /// Log as JSON lines.
    #[arg(long, env = "FLASHRENT_LOG_JSON")]
    pub log_json: bool,
}

impl ServeArgs {
    /// `serve`'s arguments alone, from `args` (the first is the program's name) and the
    /// `FLASHRENT_*` environment, as the command line would give them: for a server built
    /// in another program (the tests' in-process app).
    pub fn parse_from<I, T>(args: I) -> Result<ServeArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: ServeArgs,
        }
        <Serve as clap::Parser>::try_parse_from(args).map(|s| s.args)
    }
}

/// Whether client routes are open to the network: listening beyond loopback with no API keys
/// configured. `serve` warns at startup when they are.
pub fn client_routes_open(listen: &std::net::SocketAddr, keys_configured: bool) -> bool {
    !listen.ip().is_loopback() && !keys_configured
}

/// Creates `dir` (and its missing parents) with mode 0700 when it does not exist: it holds
/// the admin token, the event log and the read models. An existing one that its group or
/// others can enter gets a warning, and is left as the operator made it.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format!("{mode:03o}"),
                    "the data dir is open to its group or others; it holds the admin token and every event: chmod 700 it"
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_private_dir(dir),
        Err(e) => Err(e),
    }
}

/// Creates `dir` and its missing parents with mode 0700 (a directory inside the data dir,
/// or one of its own: the devnet's chain, the notifier's queues); an existing one is left
/// as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Origin {
        Origin::Env("FLASHRENT_X")
    }

    #[test]
    fn list_items_in_a_variable_skip_empty_items_and_take_any_separator() {
        let items = list_items(" a,b,\n c\td ,, ", &env());
        assert_eq!(items, vec![(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
    }

    #[test]
    fn list_items_in_a_file_are_numbered_by_line_and_skip_comments() {
        let file = Origin::File("/k".into());
        let items = list_items("# suppliers\na\n\n  b  \n# c\nd,e\n", &file);
        assert_eq!(items, vec![(2, "a"), (4, "b"), (6, "d"), (6, "e")]);
    }

    #[test]
    fn a_secret_file_that_cannot_be_read_is_named_and_its_content_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = read_single_secret("FLASHRENT_TEST_UNSET_1", "--x-file", Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--x-file") && err.contains("nope"), "{err}");
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret-token\n").unwrap();
        let s = read_single_secret("FLASHRENT_TEST_UNSET_1", "--x-file", Some(&path))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "s3cret-token");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }

    #[test]
    fn a_secret_given_both_by_variable_and_file_is_an_error() {
        // A variable no other test reads.
        std::env::set_var("FLASHRENT_TEST_BOTH_2", "v");
        let err = read_secret("FLASHRENT_TEST_BOTH_2", "--y-file", Some(Path::new("/f")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("FLASHRENT_TEST_BOTH_2") && err.contains("--y-file"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_kafka_setting_is_named_by_position_without_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kafka");
        std::fs::write(
            &path,
            "# sasl\nsasl.username=u\nsasl.password=p,w\nhunter2\n",
        )
        .unwrap();
        let err = kafka_config(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("line 4") && !err.contains("hunter2"), "{err}");
        std::fs::write(&path, "sasl.username=u\nsasl.password=p,w=x\n").unwrap();
        let kv = kafka_config(Some(&path)).unwrap();
        assert_eq!(kv[1].0, "sasl.password");
        assert_eq!(kv[1].1.expose(), "p,w=x");
    }

    #[test]
    fn client_routes_are_open_only_beyond_loopback_without_keys() {
        let at = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert!(client_routes_open(&at("0.0.0.0:8000"), false));
        assert!(client_routes_open(&at("10.1.2.3:8000"), false));
        assert!(!client_routes_open(&at("0.0.0.0:8000"), true));
        assert!(!client_routes_open(&at("127.0.0.1:8000"), false));
        assert!(!client_routes_open(&at("[::1]:8000"), false));
    }
}
