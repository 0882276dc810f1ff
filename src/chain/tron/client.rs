//! The java-tron full-node HTTP client behind the chain port.
//!
//! Hex addresses on the wire (`visible: false`, tron-protocol.md §1). Transactions are built
//! by the node, checked against what we asked for (§5) and signed locally; the signed
//! protobuf goes out through `/wallet/broadcasthex`, so the node hashes the exact bytes we
//! verified (§3.10).

use super::keys::SecretKey;
use super::proto::{self, RawTransaction, ResourceContract};
use crate::chain::{BlockHead, Chain, ChainError, Delegation, SignedTransaction, TxStatus};
use chrono::{DateTime, TimeZone, Utc};
use flashrent_events::{EnergyAmount, OrderId, TronAddress};
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
    Failed(String),
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::NotServed => {
                f.write_str("HTTP 404 Not Found: the node does not serve this path")
            }
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
    /// Energy totals, and the head seen last when they were read.
    totals: Mutex<Option<(u64, EnergyTotals)>>,
    /// Set once a node said it has no `/wallet/getblock` (added in java-tron 4.5.2).
    getblock_missing: AtomicBool,
}

/// The chain's energy totals (`/wallet/getaccountresource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnergyTotals {
    pub limit: u64,
    pub weight: u64,
}

impl EnergyTotals {
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

/// What a broadcast answer means for the saga (tron-protocol.md §3.9, §7).
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

impl TronClient {
    pub fn new(config: TronConfig, keys: Vec<SecretKey>) -> anyhow::Result<TronClient> {
        anyhow::ensure!(!config.nodes.is_empty(), "no TRON node configured");
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(k) = &config.api_key {
            let mut v = reqwest::header::HeaderValue::from_str(k.expose())?;
            v.set_sensitive(true);
            headers.insert("TRON-PRO-API-KEY", v);
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .default_headers(headers)
            .build()?;
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
            totals: Mutex::new(None),
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
        for node in order {
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
        let text = resp
            .text()
            .await
            .map_err(|e| failed(format!("body: {e}")))?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Attempt::NotServed);
        }
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        let v: Value =
            serde_json::from_str(&text).map_err(|_| failed("answer is not JSON".to_owned()))?;
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
    pub async fn energy_totals(
        &self,
        any_account: &TronAddress,
    ) -> Result<EnergyTotals, ChainError> {
        let head = *self.head_seen.lock().expect("head lock");
        let head = head
            .filter(|(_, at)| at.elapsed() < TOTALS_REUSE_WITHIN)
            .map(|(number, _)| number);
        if let (Some(head), Some((read_at, totals))) =
            (head, *self.totals.lock().expect("totals lock"))
        {
            if read_at == head {
                return Ok(totals);
            }
        }
        let totals = self.read_energy_totals(any_account).await?;
        if let Some(head) = head {
            *self.totals.lock().expect("totals lock") = Some((head, totals));
        }
        Ok(totals)
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
    async fn delegated_sun(&self, tx_id: &str, d: &Delegation) -> Result<u64, ChainError> {
        let v = self
            .call(
                "/wallet/gettransactionbyid",
                json!({"value": tx_id, "visible": false}),
            )
            .await?;
        let bytes = v["raw_data_hex"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| {
                ChainError::Retryable(format!("node does not know delegation {tx_id}"))
            })?;
        if !hex::encode(proto::tx_id(&bytes)).eq_ignore_ascii_case(tx_id) {
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
            tx_id: hex::encode(id),
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

/// tron-protocol.md §5: the node's `raw_data_hex` must hash to its `txID` and be, byte for
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

    async fn status(&self, tx_id: &str) -> Result<TxStatus, ChainError> {
        let v = self
            .call(
                "/wallet/gettransactioninfobyid",
                json!({"value": tx_id, "visible": false}),
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

    async fn block_outcomes(&self, number: u64) -> Result<Vec<(String, TxStatus)>, ChainError> {
        let v = self
            .call(
                "/wallet/gettransactioninfobyblocknum",
                json!({"num": number}),
            )
            .await?;
        if let Some(e) = v.get("Error").and_then(Value::as_str) {
            return Err(classify_error(e));
        }
        // A block without transactions comes back as `[]` or `{}`.
        let infos = v.as_array().map(Vec::as_slice).unwrap_or_default();
        Ok(infos
            .iter()
            .filter_map(|info| Some((info["id"].as_str()?.to_owned(), status_of(info))))
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
