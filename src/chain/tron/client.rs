//! The java-tron full-node HTTP client behind the chain port.
//!
//! Hex addresses on the wire (`visible: false`, docs/tron-protocol.md §1). Transactions are built
//! by the node, checked against what we asked for (§5) and signed locally; the signed
//! protobuf goes out through `/wallet/broadcasthex`, so the node hashes the exact bytes we
//! verified (§3.10).

use super::keys::SecretKey;
use super::proto::{self, RawTransaction, ResourceContract};
use crate::chain::{BlockHead, Chain, ChainError, Delegation, SignedTransaction, TxStatus};
use chrono::{DateTime, TimeZone, Utc};
use flashrent_events::{EnergyAmount, OrderId, TronAddress, TxId};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Retries of one call on one node before the next node is tried.
const RETRIES_PER_NODE: u32 = 3;
/// The saga treats a transaction as dead only this long after its expiration, so a block
/// produced just before the expiry (and a little clock skew) is still seen.
const EXPIRY_GRACE: Duration = Duration::from_secs(6);
/// A node-built transaction must not be valid longer than this (java-tron builds +60 s).
const MAX_EXPIRATION_AHEAD: Duration = Duration::from_secs(10 * 60);
/// Energy totals read while the head seen last was the same block are used again, if that
/// head was seen this recently (the saga's block scanner reads it every poll interval).
const TOTALS_REUSE_WITHIN: Duration = Duration::from_secs(1);
/// Why one request to one node failed.
#[derive(Debug)]
enum Attempt {
    /// HTTP 404: the node does not serve the path (an older java-tron, for a newer endpoint).
    NotServed,
    /// The answer is larger than [`TronConfig::max_answer_bytes`]: not read further, and not
    /// asked of this node again for this call (it would answer the same).
    TooLarge(usize),
    Failed(String),
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::NotServed => {
                f.write_str("HTTP 404 Not Found: the node does not serve this path")
            }
            Attempt::TooLarge(cap) => write!(f, "answer larger than {cap} bytes; not read"),
            Attempt::Failed(why) => f.write_str(why),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TronConfig {
    /// Primary first, then backups.
    pub nodes: Vec<String>,
    /// Sent as `TRON-PRO-API-KEY` (TronGrid).
    pub api_key: Option<crate::config::Secret>,
    pub request_timeout: Duration,
    /// How long a node that failed all its retries is passed over.
    pub skip_failed_node_for: Duration,
    /// Delegate with TRON's lock (lock_period = the rental). Off by default: java-tron keeps
    /// one lock per (owner, receiver) pair and refuses a shorter lock while a longer one runs.
    pub use_lock: bool,
    pub retry_backoff: Duration,
    /// How often the chain makes a block: TRON's 3 s slot, or an in-process devnet's own.
    pub block_interval: Duration,
    /// The most the SUN-per-energy rate may change between two readings of the energy
    /// totals (a factor above 1); a reading beyond it is refused (see
    /// [`TronClient::energy_totals`]).
    pub max_rate_change: f64,
    /// The largest answer read from a node, in bytes.
    pub max_answer_bytes: usize,
}

impl TronConfig {
    pub fn new(nodes: Vec<String>) -> TronConfig {
        TronConfig {
            nodes,
            api_key: None,
            request_timeout: Duration::from_secs(5),
            skip_failed_node_for: Duration::from_secs(30),
            use_lock: false,
            retry_backoff: Duration::from_millis(100),
            block_interval: Duration::from_secs(3),
            max_rate_change: 2.0,
            // A full mainnet block's `gettransactioninfobyblocknum` is a few MiB.
            max_answer_bytes: 16 << 20,
        }
    }
}

struct Node {
    url: String,
    skipped_until: Mutex<Option<Instant>>,
}

pub struct TronClient {
    http: reqwest::Client,
    nodes: Vec<Node>,
    keys: HashMap<TronAddress, SecretKey>,
    config: TronConfig,
    last_timestamp: Mutex<i64>,
    /// The head block this client read last, and when.
    head_seen: Mutex<Option<(u64, Instant)>>,
    /// The energy totals accepted last, and those refused since.
    totals: Mutex<TotalsSeen>,
    /// Set once a node said it has no `/wallet/getblock` (added in java-tron 4.5.2).
    getblock_missing: AtomicBool,
}

#[derive(Default)]
struct TotalsSeen {
    /// The reading accepted last, with the head seen last when it was read (none seen yet:
    /// it is not used again).
    accepted: Option<(Option<u64>, EnergyTotals)>,
    /// The reading refused last: said once in the log, not at every signature.
    refused: Option<EnergyTotals>,
}

/// The chain's energy totals (`/wallet/getaccountresource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnergyTotals {
    pub limit: u64,
    pub weight: u64,
}

impl EnergyTotals {
    /// Whether the SUN-per-energy rate of `newer` (weight / limit) is more than `factor`
    /// times this one's, or less than its `1/factor`. A ratio of rates, never an amount:
    /// floats are fine here, and a NaN (a zero total) counts as beyond.
    pub fn rate_changed_beyond(&self, newer: &EnergyTotals, factor: f64) -> bool {
        let rate = |t: &EnergyTotals| t.weight as f64 / t.limit as f64;
        let ratio = rate(newer) / rate(self);
        !(ratio <= factor && ratio * factor >= 1.0)
    }

    /// SUN of stake whose energy is at least `energy`: ceil(energy·W·10⁶ / L), at least 1 TRX.
    pub fn energy_to_sun(&self, energy: u64) -> Result<u64, ChainError> {
        if self.limit == 0 {
            return Err(ChainError::Retryable("TotalEnergyLimit is 0".into()));
        }
        let num = u128::from(energy) * u128::from(self.weight) * 1_000_000;
        let sun = num.div_ceil(u128::from(self.limit)).max(1_000_000);
        u64::try_from(sun).map_err(|_| ChainError::Refused("energy too large".into()))
    }

    /// Energy of `sun` staked SUN: floor(sun/10⁶ · L/W), as java-tron computes it.
    pub fn sun_to_energy(&self, sun: u64) -> u64 {
        if self.weight == 0 {
            return 0;
        }
        (u128::from(sun) * u128::from(self.limit) / (u128::from(self.weight) * 1_000_000)) as u64
    }
}

/// What a broadcast answer means for the saga (docs/tron-protocol.md §3.9, §7).
pub fn classify_broadcast(code: &str, message: &str) -> Result<(), ChainError> {
    match code {
        "SUCCESS" | "DUP_TRANSACTION_ERROR" => Ok(()),
        "SERVER_BUSY"
        | "NO_CONNECTION"
        | "NOT_ENOUGH_EFFECTIVE_CONNECTION"
        | "BLOCK_UNSOLIDIFIED" => Err(ChainError::Retryable(format!("{code}: {message}"))),
        "TAPOS_ERROR" | "TRANSACTION_EXPIRATION_ERROR" => {
            Err(ChainError::Stale(format!("{code}: {message}")))
        }
        _ => Err(ChainError::Refused(format!("{code}: {message}"))),
    }
}

/// The answer's body, read only up to `cap` bytes: a node cannot make us hold more.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, Attempt> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(Attempt::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Attempt::Failed(format!("body: {e}")))?
    {
        if body.len() + chunk.len() > cap {
            return Err(Attempt::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A `{"Error": …}` answer of a builder endpoint.
fn classify_error(text: &str) -> ChainError {
    if text.contains("lack of computing resources") || text.contains("IllegalAccessException") {
        ChainError::Retryable(text.to_owned())
    } else {
        ChainError::Refused(text.to_owned())
    }
}

/// `message` fields are hex of UTF-8 when `visible` is false.
fn text_of(v: &Value) -> String {
    let s = v.as_str().unwrap_or_default();
    hex::decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| s.to_owned())
}

/// Why a [`TronClient`] cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no TRON node configured")]
    NoNode,
    /// Says nothing of the key.
    #[error("the TRON API key (FLASHRENT_TRON_API_KEY / --tron-api-key-file) is not a valid HTTP header value")]
    BadApiKey,
    #[error("cannot set up the HTTP client for the TRON nodes")]
    Http(#[source] reqwest::Error),
}

impl TronClient {
    pub fn new(config: TronConfig, keys: Vec<SecretKey>) -> Result<TronClient, ClientError> {
        if config.nodes.is_empty() {
            return Err(ClientError::NoNode);
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(k) = &config.api_key {
            let mut v = reqwest::header::HeaderValue::from_str(k.expose())
                .map_err(|_| ClientError::BadApiKey)?;
            v.set_sensitive(true);
            headers.insert("TRON-PRO-API-KEY", v);
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .default_headers(headers)
            .build()
            .map_err(ClientError::Http)?;
        Ok(TronClient {
            http,
            nodes: config
                .nodes
                .iter()
                .map(|u| Node {
                    url: u.trim_end_matches('/').to_owned(),
                    skipped_until: Mutex::new(None),
                })
                .collect(),
            keys: keys.into_iter().map(|k| (k.address(), k)).collect(),
            config,
            last_timestamp: Mutex::new(0),
            head_seen: Mutex::new(None),
            totals: Mutex::new(TotalsSeen::default()),
            getblock_missing: AtomicBool::new(false),
        })
    }

    pub fn supplier_addresses(&self) -> Vec<TronAddress> {
        let mut v: Vec<_> = self.keys.keys().copied().collect();
        v.sort();
        v
    }

    /// POSTs to the first node that answers: ≤3 retries with backoff per node, then the next
    /// node; a node that used up its retries is passed over for a while.
    async fn call(&self, path: &str, body: Value) -> Result<Value, ChainError> {
        self.call_nodes(path, &body, false)
            .await?
            .ok_or_else(|| ChainError::Retryable(format!("no TRON node serves {path}")))
    }

    /// [`Self::call`] for an endpoint older nodes lack: `None` once a node answers that it
    /// does not serve `path` (HTTP 404), which is neither retried nor held against the node.
    async fn call_if_served(&self, path: &str, body: Value) -> Result<Option<Value>, ChainError> {
        self.call_nodes(path, &body, true).await
    }

    async fn call_nodes(
        &self,
        path: &str,
        body: &Value,
        may_be_missing: bool,
    ) -> Result<Option<Value>, ChainError> {
        let now = Instant::now();
        let mut order: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| {
                n.skipped_until
                    .lock()
                    .expect("node lock")
                    .is_none_or(|t| t <= now)
            })
            .collect();
        if order.is_empty() {
            order = self.nodes.iter().collect();
        }
        let mut last = String::new();
        'nodes: for node in order {
            let mut backoff = self.config.retry_backoff;
            for attempt in 0..=RETRIES_PER_NODE {
                if attempt > 0 {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                match self.try_once(node, path, body).await {
                    Ok(v) => {
                        *node.skipped_until.lock().expect("node lock") = None;
                        return Ok(Some(v));
                    }
                    Err(Attempt::NotServed) if may_be_missing => return Ok(None),
                    Err(e @ Attempt::TooLarge(_)) => {
                        // Not held against the node's other calls: a block can be large.
                        tracing::warn!(node = %node.url, path, error = %e, "TRON node answer too large; trying the next node");
                        last = e.to_string();
                        continue 'nodes;
                    }
                    Err(e) => {
                        tracing::debug!(node = %node.url, path, attempt, error = %e, "TRON node call failed");
                        last = e.to_string();
                    }
                }
            }
            tracing::warn!(node = %node.url, path, error = %last, "TRON node failing; trying the next one");
            *node.skipped_until.lock().expect("node lock") =
                Some(Instant::now() + self.config.skip_failed_node_for);
        }
        Err(ChainError::Retryable(format!(
            "no TRON node answered {path}: {last}"
        )))
    }

    async fn try_once(&self, node: &Node, path: &str, body: &Value) -> Result<Value, Attempt> {
        let failed = Attempt::Failed;
        let resp = self
            .http
            .post(format!("{}{path}", node.url))
            .json(body)
            .send()
            .await
            .map_err(|e| failed(format!("transport: {e}")))?;
        let status = resp.status();
        let body = read_capped(resp, self.config.max_answer_bytes).await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Attempt::NotServed);
        }
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        let v: Value =
            serde_json::from_slice(&body).map_err(|_| failed("answer is not JSON".to_owned()))?;
        if let Some(e) = v.get("Error").and_then(Value::as_str) {
            if e.contains("lack of computing resources") {
                return Err(failed(e.to_owned()));
            }
        }
        Ok(v)
    }

    /// The totals change only as a block is applied, so while no newer head has been seen
    /// the last answer is the node's answer: at most a scanner poll behind the head, where
    /// any answer is at least a block behind the one its delegation will land in.
    ///
    /// A reading whose SUN-per-energy rate is beyond [`TronConfig::max_rate_change`] of the
    /// one accepted last is refused (a retryable error: nothing is signed with it), logged
    /// and counted: the chain's rate drifts slowly, so a jump is a node's fault (or a lie),
    /// and delegating by it would give away stake or short the renter. The first reading of
    /// the process is taken as it is.
    pub async fn energy_totals(
        &self,
        any_account: &TronAddress,
    ) -> Result<EnergyTotals, ChainError> {
        let head = *self.head_seen.lock().expect("head lock");
        let head = head
            .filter(|(_, at)| at.elapsed() < TOTALS_REUSE_WITHIN)
            .map(|(number, _)| number);
        if let (Some(head), Some((Some(read_at), totals))) =
            (head, self.totals.lock().expect("totals lock").accepted)
        {
            if read_at == head {
                return Ok(totals);
            }
        }
        let reading = self.read_energy_totals(any_account).await?;
        self.accept_totals(reading, head)
    }

    /// Holds a new reading to the one accepted last (see [`Self::energy_totals`]).
    fn accept_totals(
        &self,
        reading: EnergyTotals,
        head: Option<u64>,
    ) -> Result<EnergyTotals, ChainError> {
        if reading.limit == 0 || reading.weight == 0 {
            return Err(ChainError::Retryable(format!(
                "the node's energy totals are not usable: TotalEnergyLimit {}, TotalEnergyWeight {}",
                reading.limit, reading.weight
            )));
        }
        let mut seen = self.totals.lock().expect("totals lock");
        match seen.accepted {
            Some((_, last)) if last.rate_changed_beyond(&reading, self.config.max_rate_change) => {
                crate::metrics::METRICS.energy_rate_refused.inc();
                if seen.refused != Some(reading) {
                    tracing::error!(
                        accepted_limit = last.limit,
                        accepted_weight = last.weight,
                        limit = reading.limit,
                        weight = reading.weight,
                        max_change = self.config.max_rate_change,
                        "the node's energy totals change the SUN-per-energy rate beyond the allowed factor; nothing is signed with them (restart to adopt a new rate)"
                    );
                    seen.refused = Some(reading);
                }
                return Err(ChainError::Retryable(format!(
                    "energy totals refused: the rate of TotalEnergyWeight {} / TotalEnergyLimit {} is beyond {}x the accepted {} / {}",
                    reading.weight, reading.limit, self.config.max_rate_change, last.weight, last.limit
                )));
            }
            Some(_) => {}
            None => {
                tracing::info!(
                    limit = reading.limit,
                    weight = reading.weight,
                    "energy totals read; later readings are held to this rate"
                );
            }
        }
        seen.accepted = Some((head, reading));
        seen.refused = None;
        Ok(reading)
    }

    async fn read_energy_totals(
        &self,
        any_account: &TronAddress,
    ) -> Result<EnergyTotals, ChainError> {
        let v = self
            .call(
                "/wallet/getaccountresource",
                json!({"address": any_account.to_hex(), "visible": false}),
            )
            .await?;
        if let Some(e) = v.get("Error").and_then(Value::as_str) {
            return Err(classify_error(e));
        }
        Ok(EnergyTotals {
            limit: v["TotalEnergyLimit"].as_u64().unwrap_or(0),
            weight: v["TotalEnergyWeight"].as_u64().unwrap_or(0),
        })
    }

    /// Energy a supplier can still delegate (`/wallet/getcandelegatedmaxsize`, type ENERGY).
    pub async fn delegatable_energy(&self, owner: &TronAddress) -> Result<u64, ChainError> {
        let v = self
            .call(
                "/wallet/getcandelegatedmaxsize",
                json!({"owner_address": owner.to_hex(), "type": 1, "visible": false}),
            )
            .await?;
        if let Some(e) = v.get("Error").and_then(Value::as_str) {
            return Err(classify_error(e));
        }
        let sun = v["max_size"].as_u64().unwrap_or(0);
        Ok(self.energy_totals(owner).await?.sun_to_energy(sun))
    }

    fn key(&self, owner: &TronAddress) -> Result<&SecretKey, ChainError> {
        self.keys
            .get(owner)
            .ok_or_else(|| ChainError::Refused(format!("no key for supplier wallet {owner}")))
    }

    /// The SUN a confirmed delegation moved, from `/wallet/gettransactionbyid`; the bytes must
    /// hash to the id, so a node cannot make us reclaim a different amount.
    async fn delegated_sun(&self, tx_id: &TxId, d: &Delegation) -> Result<u64, ChainError> {
        let v = self
            .call(
                "/wallet/gettransactionbyid",
                json!({"value": tx_id.to_string(), "visible": false}),
            )
            .await?;
        let bytes = v["raw_data_hex"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| {
                ChainError::Retryable(format!("node does not know delegation {tx_id}"))
            })?;
        if proto::tx_id(&bytes) != *tx_id.as_bytes() {
            return Err(ChainError::Retryable(format!(
                "node returned other bytes for {tx_id}"
            )));
        }
        let raw = RawTransaction::decode(&bytes)
            .map_err(|e| ChainError::Refused(format!("delegation {tx_id} does not decode: {e}")))?;
        let c = raw.contract;
        if c.contract_type != proto::DELEGATE_RESOURCE
            || c.owner != d.from.as_bytes()
            || c.receiver != d.to.as_bytes()
        {
            return Err(ChainError::Refused(format!(
                "{tx_id} is not this order's delegation"
            )));
        }
        Ok(c.balance as u64)
    }

    /// Builds on the node, verifies, signs.
    async fn build_and_sign(
        &self,
        path: &str,
        request: Value,
        expected: ResourceContract,
        order: OrderId,
    ) -> Result<SignedTransaction, ChainError> {
        let owner = TronAddress::from_bytes(&expected.owner)
            .map_err(|_| ChainError::Refused("bad owner".into()))?;
        let key = self.key(&owner)?;
        let v = self.call(path, request).await?;
        if let Some(e) = v.get("Error").and_then(Value::as_str) {
            return Err(classify_error(e));
        }
        let verified = verify_built(&v, &expected, Utc::now())?;
        // Two orders asking for the same delegation (same supplier, receiver, amount, lock)
        // in the same millisecond get byte-identical transactions from the node, hence one
        // id: the second broadcast answers DUP_TRANSACTION_ERROR, which reads as "already
        // sent", and two orders would share one delegation. The order's id as the memo keeps
        // the transactions of two orders distinct, even when two instances sign them; a
        // timestamp no other signature of this process uses keeps an order's successive
        // transactions distinct (as tronweb's extendExpiration edits a built transaction
        // before signing). The memo costs its 38 bytes of bandwidth.
        let mut raw = verified.raw;
        raw.data = order.to_string().into_bytes();
        raw.timestamp = self.unique_timestamp(raw.timestamp);
        let bytes = raw.encode();
        let id = proto::tx_id(&bytes);
        let sig = key.sign_tx_id(&id);
        Ok(SignedTransaction {
            tx_id: TxId::from_bytes(id),
            signed_tx: hex::encode(proto::encode_signed(&bytes, &[sig])),
            expires_at: verified.expires_at + EXPIRY_GRACE,
        })
    }

    /// The node's timestamp, or one past the last one this process signed with.
    fn unique_timestamp(&self, node_timestamp: i64) -> i64 {
        let mut last = self.last_timestamp.lock().expect("timestamp lock");
        *last = node_timestamp.max(*last + 1);
        *last
    }
}

/// A node-built transaction that says exactly what was asked, in canonical form.
pub struct VerifiedRaw {
    pub raw: RawTransaction,
    pub expires_at: DateTime<Utc>,
}

/// docs/tron-protocol.md §5: the node's `raw_data_hex` must hash to its `txID` and be, byte for
/// byte, what we would encode from our own intent and the node's ref block, expiration and
/// timestamp. Anything else is refused (never signed).
pub fn verify_built(
    v: &Value,
    expected: &ResourceContract,
    now: DateTime<Utc>,
) -> Result<VerifiedRaw, ChainError> {
    let refuse = |why: &str| {
        tracing::error!(
            why,
            "the node's transaction does not match the request; not signing"
        );
        Err(ChainError::Refused(format!(
            "node returned a transaction we will not sign: {why}"
        )))
    };
    let Some(bytes) = v["raw_data_hex"].as_str().and_then(|h| hex::decode(h).ok()) else {
        return refuse("no raw_data_hex");
    };
    let Some(tx_id) = v["txID"].as_str() else {
        return refuse("no txID");
    };
    if !tx_id.eq_ignore_ascii_case(&hex::encode(proto::tx_id(&bytes))) {
        return refuse("txID is not the SHA-256 of raw_data_hex");
    }
    let raw = match RawTransaction::decode(&bytes) {
        Ok(r) => r,
        Err(e) => return refuse(&format!("raw_data_hex does not decode: {e}")),
    };
    let c = &raw.contract;
    if c.contract_type != expected.contract_type {
        return refuse("contract type");
    }
    if c.owner != expected.owner {
        return refuse("owner");
    }
    if c.receiver != expected.receiver {
        return refuse("receiver");
    }
    if c.resource != proto::ENERGY {
        return refuse("resource is not ENERGY");
    }
    if c.balance != expected.balance {
        return refuse("balance");
    }
    if c.lock != expected.lock || c.lock_period != expected.lock_period {
        return refuse("lock");
    }
    if !raw.data.is_empty() || raw.permission_id != 0 {
        return refuse("memo or permission");
    }
    let expires_at = Utc.timestamp_millis_opt(raw.expiration).single();
    let Some(expires_at) = expires_at.filter(|e| {
        *e > now && *e <= now + chrono::Duration::from_std(MAX_EXPIRATION_AHEAD).expect("small")
    }) else {
        return refuse("expiration");
    };
    let canonical = RawTransaction {
        ref_block_bytes: raw.ref_block_bytes.clone(),
        ref_block_hash: raw.ref_block_hash.clone(),
        expiration: raw.expiration,
        timestamp: raw.timestamp,
        data: vec![],
        permission_id: 0,
        contract: expected.clone(),
    };
    if canonical.encode() != bytes {
        return refuse("bytes differ from the canonical encoding");
    }
    Ok(VerifiedRaw {
        raw: canonical,
        expires_at,
    })
}

#[async_trait::async_trait]
impl Chain for TronClient {
    async fn is_activated(&self, address: &TronAddress) -> Result<bool, ChainError> {
        let v = self
            .call(
                "/wallet/getaccount",
                json!({"address": address.to_hex(), "visible": false}),
            )
            .await?;
        if let Some(e) = v.get("Error").and_then(Value::as_str) {
            return Err(classify_error(e));
        }
        Ok(v.get("address").is_some())
    }

    async fn sign_delegation(&self, d: &Delegation) -> Result<SignedTransaction, ChainError> {
        let balance = self
            .energy_totals(&d.from)
            .await?
            .energy_to_sun(d.energy.get())?;
        let lock = self.config.use_lock && d.lock_seconds > 0;
        let lock_period = if lock {
            d.lock_seconds.div_ceil(3) as i64
        } else {
            0
        };
        let request = json!({
            "owner_address": d.from.to_hex(), "receiver_address": d.to.to_hex(),
            "balance": balance, "resource": "ENERGY", "lock": lock, "lock_period": lock_period,
            "visible": false,
        });
        let expected = ResourceContract {
            contract_type: proto::DELEGATE_RESOURCE,
            owner: d.from.as_bytes().to_vec(),
            receiver: d.to.as_bytes().to_vec(),
            resource: proto::ENERGY,
            balance: balance as i64,
            lock,
            lock_period,
        };
        self.build_and_sign("/wallet/delegateresource", request, expected, d.order)
            .await
    }

    async fn sign_reclaim(&self, d: &Delegation) -> Result<SignedTransaction, ChainError> {
        // Take back exactly the SUN the delegation moved, read from its own (hash-checked)
        // bytes; the energy↔SUN rate has drifted since.
        let balance = match &d.delegation_tx {
            Some(id) => self.delegated_sun(id, d).await?,
            None => self
                .energy_totals(&d.from)
                .await?
                .energy_to_sun(d.energy.get())?,
        };
        let request = json!({
            "owner_address": d.from.to_hex(), "receiver_address": d.to.to_hex(),
            "balance": balance, "resource": "ENERGY", "visible": false,
        });
        let expected = ResourceContract {
            contract_type: proto::UNDELEGATE_RESOURCE,
            owner: d.from.as_bytes().to_vec(),
            receiver: d.to.as_bytes().to_vec(),
            resource: proto::ENERGY,
            balance: balance as i64,
            lock: false,
            lock_period: 0,
        };
        self.build_and_sign("/wallet/undelegateresource", request, expected, d.order)
            .await
    }

    async fn broadcast(&self, tx: &SignedTransaction) -> Result<(), ChainError> {
        let v = self
            .call("/wallet/broadcasthex", json!({"transaction": tx.signed_tx}))
            .await?;
        if let Some(e) = v.get("Error").and_then(Value::as_str) {
            return Err(classify_error(e));
        }
        if v["result"].as_bool() == Some(true) {
            return Ok(());
        }
        let code = v["code"].as_str().unwrap_or("OTHER_ERROR");
        classify_broadcast(code, &text_of(&v["message"]))
    }

    async fn status(&self, tx_id: &TxId) -> Result<TxStatus, ChainError> {
        let v = self
            .call(
                "/wallet/gettransactioninfobyid",
                json!({"value": tx_id.to_string(), "visible": false}),
            )
            .await?;
        if let Some(e) = v.get("Error").and_then(Value::as_str) {
            return Err(classify_error(e));
        }
        Ok(status_of(&v))
    }

    /// The head's header from `/wallet/getblock` without transactions: `getnowblock` lists
    /// all of the head block's transactions (hundreds on mainnet), and the saga's scanner asks
    /// for the head every poll. A node too old to serve `getblock` is asked `getnowblock`
    /// from then on.
    async fn head_block(&self) -> Result<BlockHead, ChainError> {
        let header_only = if self.getblock_missing.load(Ordering::Relaxed) {
            None
        } else {
            let asked = json!({"id_or_num": "", "detail": false});
            let v = self.call_if_served("/wallet/getblock", asked).await?;
            if v.is_none() {
                tracing::info!("the TRON node does not serve /wallet/getblock; asking /wallet/getnowblock for the head");
                self.getblock_missing.store(true, Ordering::Relaxed);
            }
            v
        };
        let v = match header_only {
            Some(v) => v,
            None => self.call("/wallet/getnowblock", json!({})).await?,
        };
        let raw = &v["block_header"]["raw_data"];
        let time = raw["timestamp"]
            .as_i64()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
        match (raw["number"].as_u64(), time) {
            (Some(number), Some(time)) => {
                *self.head_seen.lock().expect("head lock") = Some((number, Instant::now()));
                Ok(BlockHead { number, time })
            }
            _ => Err(ChainError::Retryable(
                "the node's head block has no number or timestamp".into(),
            )),
        }
    }

    async fn block_outcomes(&self, number: u64) -> Result<Vec<(TxId, TxStatus)>, ChainError> {
        let v = self
            .call(
                "/wallet/gettransactioninfobyblocknum",
                json!({"num": number}),
            )
            .await?;
        if let Some(e) = v.get("Error").and_then(Value::as_str) {
            return Err(classify_error(e));
        }
        // A block without transactions comes back as `[]` or `{}`. An id that is not one
        // (java-tron writes lowercase hex) names no transaction the saga waits on.
        let infos = v.as_array().map(Vec::as_slice).unwrap_or_default();
        Ok(infos
            .iter()
            .filter_map(|info| {
                let id = TxId::parse(&info["id"].as_str()?.to_ascii_lowercase()).ok()?;
                Some((id, status_of(info)))
            })
            .collect())
    }

    fn expected_confirmation(&self) -> Duration {
        self.config.block_interval
    }

    async fn supplier_inventory(&self) -> Result<Vec<(TronAddress, EnergyAmount)>, ChainError> {
        let mut out = Vec::new();
        for a in self.supplier_addresses() {
            if let Some(e) = EnergyAmount::new(self.delegatable_energy(&a).await?) {
                out.push((a, e));
            }
        }
        Ok(out)
    }
}

/// How a transaction settled, from its `TransactionInfo` (`{}` while it is in no block).
fn status_of(info: &Value) -> TxStatus {
    let Some(block) = info["blockNumber"].as_u64() else {
        return TxStatus::Unknown;
    };
    if info["result"].as_str() == Some("FAILED") {
        return TxStatus::Failed {
            reason: text_of(&info["resMessage"]),
        };
    }
    match info["receipt"]["result"].as_str() {
        Some(r) if r != "SUCCESS" => TxStatus::Failed {
            reason: r.to_owned(),
        },
        _ => TxStatus::Confirmed { block },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_to_sun_rounds_so_the_renter_gets_at_least_what_was_paid() {
        let nile = EnergyTotals {
            limit: 180_000_000_000,
            weight: 2_411_528_185,
        };
        assert_eq!(nile.energy_to_sun(65_000).unwrap(), 870_829_623);
        assert_eq!(nile.sun_to_energy(870_829_623), 65_000);
        assert_eq!(nile.sun_to_energy(870_829_622), 64_999);
        assert_eq!(nile.energy_to_sun(1).unwrap(), 1_000_000);
    }

    #[test]
    fn a_rate_change_within_the_factor_is_accepted_and_one_beyond_it_either_way_is_not() {
        // A weight that halves exactly.
        let nile = EnergyTotals {
            limit: 180_000_000_000,
            weight: 2_411_528_000,
        };
        let scaled = |num: u64, den: u64| EnergyTotals {
            limit: nile.limit,
            weight: nile.weight * num / den,
        };
        assert!(!nile.rate_changed_beyond(&nile, 2.0));
        // Up to twice or half the rate: accepted; further either way: refused.
        assert!(!nile.rate_changed_beyond(&scaled(2, 1), 2.0));
        assert!(!nile.rate_changed_beyond(&scaled(1, 2), 2.0));
        assert!(nile.rate_changed_beyond(&scaled(201, 100), 2.0));
        assert!(nile.rate_changed_beyond(&scaled(99, 200), 2.0));
        // The limit counts as much as the weight.
        let limit_halved = EnergyTotals {
            limit: nile.limit / 3,
            weight: nile.weight,
        };
        assert!(nile.rate_changed_beyond(&limit_halved, 2.0));
        assert!(!nile.rate_changed_beyond(&limit_halved, 3.5));
        // Nonsense is beyond any factor.
        let zero = EnergyTotals {
            limit: 0,
            weight: 0,
        };
        assert!(nile.rate_changed_beyond(&zero, 1e9));
    }

    #[test]
    fn readings_are_held_to_the_last_accepted_one_and_a_refused_one_changes_nothing() {
        let c =
            TronClient::new(TronConfig::new(vec!["http://127.0.0.1:1".into()]), vec![]).unwrap();
        let nile = EnergyTotals {
            limit: 180_000_000_000,
            weight: 2_411_528_185,
        };
        let drift = EnergyTotals {
            weight: nile.weight + nile.weight / 2,
            ..nile
        };
        let jump = EnergyTotals {
            weight: nile.weight * 4,
            ..nile
        };
        let refused_before = crate::metrics::METRICS.energy_rate_refused.get();
        assert_eq!(c.accept_totals(nile, None).unwrap(), nile);
        assert!(matches!(
            c.accept_totals(jump, None),
            Err(ChainError::Retryable(_))
        ));
        assert!(crate::metrics::METRICS.energy_rate_refused.get() > refused_before);
        // A slow drift moves the reference along: 1.5x, then 1.5x of that.
        assert_eq!(c.accept_totals(drift, None).unwrap(), drift);
        let further = EnergyTotals {
            weight: drift.weight + drift.weight / 2,
            ..nile
        };
        assert_eq!(c.accept_totals(further, None).unwrap(), further);
        let zero = EnergyTotals { weight: 0, ..nile };
        assert!(c.accept_totals(zero, None).is_err());
    }

    fn intent() -> ResourceContract {
        ResourceContract {
            contract_type: proto::DELEGATE_RESOURCE,
            owner: hex::decode("41c8599111f29c1e1e061265b4af93ea1f274ad78a").unwrap(),
            receiver: hex::decode("41b6e708a39781c96bd399c7657780ff9fe9f052a8").unwrap(),
            resource: proto::ENERGY,
            balance: 5_000_000,
            lock: true,
            lock_period: 28_800,
        }
    }

    fn node_answer(c: ResourceContract, now: DateTime<Utc>, extra: &[u8]) -> Value {
        let mut bytes = RawTransaction {
            ref_block_bytes: vec![0x4f, 0x16],
            ref_block_hash: hex::decode("4f8a4770d0ae6bef").unwrap(),
            expiration: now.timestamp_millis() + 60_000,
            timestamp: now.timestamp_millis(),
            data: vec![],
            permission_id: 0,
            contract: c,
        }
        .encode();
        bytes.extend_from_slice(extra);
        json!({"txID": hex::encode(proto::tx_id(&bytes)), "raw_data_hex": hex::encode(&bytes)})
    }

    #[test]
    fn only_the_transaction_that_was_asked_for_is_accepted_for_signing() {
        let now = Utc::now();
        assert!(verify_built(&node_answer(intent(), now, &[]), &intent(), now).is_ok());
        let lies: [fn(&mut ResourceContract); 7] = [
            |c| c.balance += 1,
            |c| c.receiver[20] ^= 1,
            |c| c.owner[20] ^= 1,
            |c| c.resource = 0,
            |c| c.lock = false,
            |c| c.lock_period = 1,
            |c| c.contract_type = proto::UNDELEGATE_RESOURCE,
        ];
        for lie in lies {
            let mut c = intent();
            lie(&mut c);
            assert!(verify_built(&node_answer(c, now, &[]), &intent(), now).is_err());
        }
        // An extra field (fee_limit) the decoder would otherwise have to ignore.
        let extra = node_answer(intent(), now, &[0x90, 0x01, 0x05]);
        assert!(verify_built(&extra, &intent(), now).is_err());
        // A txID that is not the hash of the bytes.
        let mut wrong_id = node_answer(intent(), now, &[]);
        wrong_id["txID"] = json!("00".repeat(32));
        assert!(verify_built(&wrong_id, &intent(), now).is_err());
        // Expired, or valid for far too long.
        let old = node_answer(intent(), now - chrono::Duration::minutes(5), &[]);
        assert!(verify_built(&old, &intent(), now).is_err());
        let far = node_answer(intent(), now + chrono::Duration::hours(2), &[]);
        assert!(verify_built(&far, &intent(), now).is_err());
    }

    #[test]
    fn broadcast_codes_are_classified() {
        assert!(classify_broadcast("DUP_TRANSACTION_ERROR", "").is_ok());
        assert!(matches!(
            classify_broadcast("SERVER_BUSY", ""),
            Err(ChainError::Retryable(_))
        ));
        assert!(matches!(
            classify_broadcast("TAPOS_ERROR", ""),
            Err(ChainError::Stale(_))
        ));
        assert!(matches!(
            classify_broadcast("TRANSACTION_EXPIRATION_ERROR", ""),
            Err(ChainError::Stale(_))
        ));
        assert!(matches!(
            classify_broadcast("SIGERROR", ""),
            Err(ChainError::Refused(_))
        ));
        assert!(matches!(
            classify_broadcast("CONTRACT_VALIDATE_ERROR", ""),
            Err(ChainError::Refused(_))
        ));
    }
}
