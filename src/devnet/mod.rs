//! `flashrent devnet`: a local stand-in for a java-tron full node. It serves the subset of
//! the `/wallet/*` HTTP API the TRON client uses, with real transactions (protobuf raw data,
//! SHA-256 ids), real signature checks, expiration, TAPOS and duplicate detection, blocks on
//! a timer (or one per broadcast), and fault switches under `/admin/faults`.
//!
//! State is seeded from a small JSON config naming funded accounts; it lives in memory, or
//! in a sled store (`StateStore`) that outlives restarts.

pub mod known;
pub mod state;

use crate::chain::tron::proto::{self, ResourceContract};
use crate::chain::tron::SecretKey;
use actix_web::dev::Service;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use flashrent_events::TronAddress;
use serde::Deserialize;
use serde_json::{json, Value};
use state::{Addr, ChainState, Faults};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The devnet's seed. Every field has a default; `{}` is a valid config (with no accounts).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DevnetConfig {
    /// Block interval; 0 makes a block at once for every accepted broadcast.
    pub block_interval_ms: u64,
    /// Lifetime of the transactions the builders make (java-tron: 60 s).
    pub tx_expiration_ms: i64,
    /// The chain's energy totals (defaults: a Nile capture, 1 TRX ≈ 74.64 energy).
    pub total_energy_limit: u64,
    pub total_energy_weight: u64,
    pub accounts: Vec<AccountSeed>,
    pub faults: Faults,
    /// Scheduling priority of its threads (not part of the seed: set in process, where it
    /// stands in for a node on another machine and must not take the engine's CPU).
    #[serde(skip)]
    pub nice: u8,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            block_interval_ms: 3000,
            tx_expiration_ms: 60_000,
            total_energy_limit: 180_000_000_000,
            total_energy_weight: 2_411_528_185,
            accounts: vec![],
            faults: Faults::default(),
            nice: 0,
        }
    }
}

/// An account that exists at genesis: named by its address, or by a private key (only its
/// address is kept; the devnet never signs).
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct AccountSeed {
    pub address: Option<String>,
    pub private_key: Option<String>,
    pub balance_sun: i64,
    /// Stake 2.0 ENERGY stake in SUN, all of it delegatable.
    pub energy_stake_sun: i64,
}

impl std::fmt::Debug for AccountSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSeed")
            .field("address", &self.address)
            .field("balance_sun", &self.balance_sun)
            .field("energy_stake_sun", &self.energy_stake_sun)
            .finish_non_exhaustive()
    }
}

impl AccountSeed {
    fn address(&self) -> anyhow::Result<TronAddress> {
        match (&self.address, &self.private_key) {
            (Some(a), _) => parse_address(a).context("account address"),
            (None, Some(k)) => Ok(SecretKey::from_hex(k)?.address()),
            (None, None) => anyhow::bail!("an account needs an address or a private key"),
        }
    }
}

impl DevnetConfig {
    pub fn load(path: &std::path::Path) -> anyhow::Result<DevnetConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

fn parse_address(s: &str) -> anyhow::Result<TronAddress> {
    let s = s.trim();
    if s.len() == 42 {
        Ok(TronAddress::from_bytes(&hex::decode(s)?)?)
    } else {
        Ok(TronAddress::parse(s)?)
    }
}

type Shared = Arc<Mutex<ChainState>>;

pub struct Devnet {
    pub port: u16,
    pub state: Shared,
    server: actix_web::dev::Server,
    /// Tells the block producer to stop, and its thread.
    blocks_stop: Arc<std::sync::atomic::AtomicBool>,
    blocks: std::thread::JoinHandle<()>,
}

/// A devnet serving in the background of this process (`serve`'s demo mode).
pub struct InProcess {
    pub url: String,
    pub state: Shared,
    server: actix_web::dev::ServerHandle,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    blocks_stop: Arc<std::sync::atomic::AtomicBool>,
    blocks: std::thread::JoinHandle<()>,
}

impl InProcess {
    /// Stops serving and making blocks; the chain was saved at its last block.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.served.await;
        self.blocks_stop
            .store(true, std::sync::atomic::Ordering::Release);
        let blocks = self.blocks;
        let _ = tokio::task::spawn_blocking(move || blocks.join()).await;
    }
}

impl Devnet {
    /// Binds `listen` and prepares the server and its block producer; `run` serves.
    pub fn start(config: DevnetConfig, listen: &str) -> anyhow::Result<Devnet> {
        Self::start_with(config, listen, None)
    }

    /// Like `start`, keeping the chain in a store: restored from it when it holds one (the
    /// config's accounts are then ignored), saved after every block that changed something.
    pub fn start_with(
        config: DevnetConfig,
        listen: &str,
        store: Option<StateStore>,
    ) -> anyhow::Result<Devnet> {
        let fresh = || -> anyhow::Result<ChainState> {
            let mut chain = ChainState::new(
                config.total_energy_limit,
                config.total_energy_weight,
                config.tx_expiration_ms,
            );
            for a in &config.accounts {
                let address = a.address()?;
                chain.create_account(*address.as_bytes(), a.balance_sun, a.energy_stake_sun);
            }
            Ok(chain)
        };
        let mut chain = match &store {
            Some(store) => store.open(config.tx_expiration_ms, fresh)?,
            None => fresh()?,
        };
        chain.faults = config.faults.clone();
        let state: Shared = Arc::new(Mutex::new(chain));
        save(&state);
        let interval = config.block_interval_ms;
        let data = web::Data::new(Node {
            state: state.clone(),
            immediate: interval == 0,
            requests: Default::default(),
        });
        let listener =
            std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
        let port = listener.local_addr()?.port();
        let nice = config.nice;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(1 << 20)
                        .content_type_required(false),
                )
                .wrap_fn(move |req, srv| {
                    crate::priority::lower_this_thread_once(nice);
                    if let Some(node) = req.app_data::<web::Data<Node>>() {
                        node.count(req.path());
                    }
                    srv.call(req)
                })
                .configure(routes)
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let blocks_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let blocks = {
            // In immediate mode a broadcast makes its block at once; empty blocks still come
            // every second, since a real chain's time never stops (expiry is judged by it).
            // A thread of its own: a block is made and synced under the chain's lock, which
            // must not hold up a runtime's worker.
            let every = Duration::from_millis(if interval > 0 { interval } else { 1000 });
            let state = state.clone();
            let stop = blocks_stop.clone();
            std::thread::Builder::new()
                .name("devnet-blocks".into())
                .spawn(move || {
                    crate::priority::lower_this_thread(nice);
                    let mut next = std::time::Instant::now() + every;
                    loop {
                        // Sleeps in steps, to see a stop within one.
                        loop {
                            if stop.load(std::sync::atomic::Ordering::Acquire) {
                                return;
                            }
                            let left = next.saturating_duration_since(std::time::Instant::now());
                            if left.is_zero() {
                                break;
                            }
                            std::thread::sleep(left.min(Duration::from_millis(50)));
                        }
                        // Late blocks are not caught up in a burst: the next comes a whole
                        // interval after this one.
                        next = std::time::Instant::now() + every;
                        let mut s = state.lock().expect("devnet lock");
                        s.produce_block();
                        save_locked(&mut s);
                    }
                })?
        };
        tracing::info!(
            port,
            block_interval_ms = interval,
            accounts = config.accounts.len(),
            "TRON devnet started"
        );
        Ok(Devnet {
            port,
            state,
            server,
            blocks_stop,
            blocks,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Serves in the background (the in-process devnet of `serve`).
    pub fn spawn(self) -> InProcess {
        let url = self.url();
        let server = self.server.handle();
        InProcess {
            url,
            state: self.state,
            server,
            served: tokio::spawn(self.server),
            blocks_stop: self.blocks_stop,
            blocks: self.blocks,
        }
    }

    /// Serves until the process is stopped (`flashrent devnet`).
    pub async fn run(self) -> anyhow::Result<()> {
        let stop = self.server.handle();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.stop(true).await;
        });
        self.server.await?;
        Ok(())
    }
}

struct Node {
    state: Shared,
    immediate: bool,
    /// Requests served per wallet API path, shown by `/admin/state`: what a client costs a
    /// node (public nodes rate-limit).
    requests: Mutex<BTreeMap<String, u64>>,
}

impl Node {
    fn count(&self, path: &str) {
        if path.starts_with("/wallet/") {
            let mut requests = self.requests.lock().expect("devnet lock");
            *requests.entry(path.to_owned()).or_default() += 1;
        }
    }

    fn save(&self) {
        save(&self.state);
    }
}

fn save(state: &Shared) {
    save_locked(&mut state.lock().expect("devnet lock"));
}

/// Saves what changed (nothing for a devnet without a store) and syncs it before the lock
/// is let go: what the node answers about its blocks must outlive a crash of the process,
/// as a node's would.
fn save_locked(s: &mut ChainState) {
    if let Err(e) = s.save() {
        tracing::warn!(error = %e, "cannot save the devnet state");
    }
}

/// Where a devnet keeps its chain: a sled store in `dir`.
pub struct StateStore {
    pub dir: PathBuf,
    /// The JSON file an earlier version kept the chain in, moved into the store once.
    pub legacy_json: Option<PathBuf>,
}

impl StateStore {
    fn open(
        &self,
        tx_expiration_ms: i64,
        fresh: impl FnOnce() -> anyhow::Result<ChainState>,
    ) -> anyhow::Result<ChainState> {
        crate::config::create_private_dir(&self.dir)
            .with_context(|| format!("creating the devnet store {}", self.dir.display()))?;
        let store = flashrent_store::SledStore::open_with(
            &self.dir,
            // The transactions are read back rarely (confirmations, lookups by id), and the
            // devnet shares the process (and its memory budget) with the engine it serves.
            sled::Config::new().cache_capacity(4 << 20),
        )
        .with_context(|| format!("opening the devnet store {}", self.dir.display()))?;
        let tree = store.tree("chain")?;
        if let Some(chain) =
            ChainState::open(tree.clone(), tx_expiration_ms).context("reading the devnet state")?
        {
            tracing::info!(dir = %self.dir.display(), "devnet state restored");
            return Ok(chain);
        }
        let mut chain = match self.legacy_json.as_deref().filter(|f| f.exists()) {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let chain = ChainState::import_json(&text, tx_expiration_ms)
                    .context("restoring the devnet state")?;
                tracing::info!(file = %file.display(), dir = %self.dir.display(), "devnet state moved into its store");
                chain
            }
            None => fresh()?,
        };
        chain.keep_in(tree);
        chain.save()?;
        if let Some(file) = self.legacy_json.as_deref().filter(|f| f.exists()) {
            std::fs::rename(file, file.with_extension("json.imported"))?;
        }
        Ok(chain)
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/wallet/getaccount", web::post().to(get_account))
        .route(
            "/wallet/getaccountresource",
            web::post().to(get_account_resource),
        )
        .route(
            "/wallet/getcandelegatedmaxsize",
            web::post().to(get_max_size),
        )
        .route("/wallet/delegateresource", web::post().to(delegate))
        .route("/wallet/undelegateresource", web::post().to(undelegate))
        .route("/wallet/broadcasthex", web::post().to(broadcast_hex))
        .route("/wallet/gettransactioninfobyid", web::post().to(tx_info))
        .route("/wallet/gettransactionbyid", web::post().to(tx_by_id))
        .route(
            "/wallet/gettransactioninfobyblocknum",
            web::post().to(block_infos),
        )
        .route("/wallet/getblock", web::post().to(get_block))
        .route("/wallet/getnowblock", web::post().to(now_block))
        .route("/wallet/getnowblock", web::get().to(now_block))
        .route("/admin/faults", web::post().to(set_faults))
        .route("/admin/state", web::get().to(summary))
        .route("/admin/accounts", web::post().to(create_account))
        .route("/admin/energy-totals", web::post().to(set_energy_totals))
        .route("/admin/produce-block", web::post().to(produce_block));
}

fn error(text: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "Error": text.to_string() }))
}

/// The fault switches every `/wallet` call passes through first.
async fn gate(node: &Node) -> Option<HttpResponse> {
    let (down, delay) = {
        let s = node.state.lock().expect("devnet lock");
        (s.faults.down, s.faults.delay_ms)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    down.then(|| HttpResponse::ServiceUnavailable().body("devnet fault: node down"))
}

fn field_addr(body: &Value, key: &str) -> Result<Addr, String> {
    body[key]
        .as_str()
        .and_then(|s| parse_address(s).ok())
        .map(|a| *a.as_bytes())
        .ok_or_else(|| format!("class java.lang.IllegalArgumentException : Invalid {key}"))
}

fn id_of(body: &Value) -> Option<[u8; 32]> {
    body["value"]
        .as_str()
        .and_then(|v| hex::decode(v).ok())
        .and_then(|b| b.try_into().ok())
}

macro_rules! gated {
    ($node:expr) => {
        if let Some(r) = gate(&$node).await {
            return r;
        }
    };
}

async fn get_account(node: web::Data<Node>, body: web::Json<Value>) -> HttpResponse {
    gated!(node);
    match field_addr(&body, "address") {
        Ok(a) => HttpResponse::Ok().json(node.state.lock().expect("devnet lock").account_json(&a)),
        Err(r) => error(r),
    }
}

async fn get_account_resource(node: web::Data<Node>, body: web::Json<Value>) -> HttpResponse {
    gated!(node);
    match field_addr(&body, "address") {
        Ok(a) => HttpResponse::Ok().json(node.state.lock().expect("devnet lock").resource_json(&a)),
        Err(r) => error(r),
    }
}

async fn get_max_size(node: web::Data<Node>, body: web::Json<Value>) -> HttpResponse {
    gated!(node);
    let a = match field_addr(&body, "owner_address") {
        Ok(a) => a,
        Err(r) => return error(r),
    };
    if body["type"].as_i64() != Some(1) {
        return HttpResponse::Ok().json(json!({}));
    }
    HttpResponse::Ok().json(
        node.state
            .lock()
            .expect("devnet lock")
            .max_delegatable_json(&a),
    )
}

fn contract_of(body: &Value, contract_type: u64) -> Result<ResourceContract, String> {
    let owner = field_addr(body, "owner_address")?;
    let receiver = field_addr(body, "receiver_address")?;
    let resource = match &body["resource"] {
        Value::String(s) if s == "ENERGY" => 1,
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    };
    let lock = contract_type == proto::DELEGATE_RESOURCE && body["lock"].as_bool() == Some(true);
    Ok(ResourceContract {
        contract_type,
        owner: owner.to_vec(),
        receiver: receiver.to_vec(),
        resource,
        balance: body["balance"].as_i64().unwrap_or(0),
        lock,
        lock_period: if lock {
            body["lock_period"].as_i64().unwrap_or(0)
        } else {
            0
        },
    })
}

async fn build(node: web::Data<Node>, body: Value, contract_type: u64) -> HttpResponse {
    gated!(node);
    let c = match contract_of(&body, contract_type) {
        Ok(c) => c,
        Err(r) => return error(r),
    };
    match node.state.lock().expect("devnet lock").build(c) {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(e) => error(e.0),
    }
}

async fn delegate(node: web::Data<Node>, body: web::Json<Value>) -> HttpResponse {
    build(node, body.into_inner(), proto::DELEGATE_RESOURCE).await
}

async fn undelegate(node: web::Data<Node>, body: web::Json<Value>) -> HttpResponse {
    build(node, body.into_inner(), proto::UNDELEGATE_RESOURCE).await
}

async fn broadcast_hex(node: web::Data<Node>, body: web::Json<Value>) -> HttpResponse {
    gated!(node);
    let Some(bytes) = body["transaction"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
    else {
        return error("class java.lang.IllegalArgumentException : transaction is not hex");
    };
    let answer = {
        let mut s = node.state.lock().expect("devnet lock");
        match s.broadcast(&bytes) {
            Ok(id) => {
                if node.immediate && s.has_pending() {
                    s.produce_block();
                    save_locked(&mut s);
                }
                json!({"result": true, "code": "SUCCESS", "message": "", "txid": hex::encode(id)})
            }
            Err(r) => {
                json!({"result": false, "code": r.code, "message": r.message, "txid": r.id.map(hex::encode)})
            }
        }
    };
    HttpResponse::Ok().json(answer)
}

async fn tx_info(node: web::Data<Node>, body: web::Json<Value>) -> HttpResponse {
    gated!(node);
    match id_of(&body) {
        Some(id) => HttpResponse::Ok().json(node.state.lock().expect("devnet lock").info_json(&id)),
        None => HttpResponse::Ok().json(json!({})),
    }
}

async fn tx_by_id(node: web::Data<Node>, body: web::Json<Value>) -> HttpResponse {
    gated!(node);
    match id_of(&body) {
        Some(id) => HttpResponse::Ok().json(
            node.state
                .lock()
                .expect("devnet lock")
                .transaction_json(&id),
        ),
        None => HttpResponse::Ok().json(json!({})),
    }
}

async fn block_infos(node: web::Data<Node>, body: web::Json<Value>) -> HttpResponse {
    gated!(node);
    let Some(number) = body.get("num").and_then(Value::as_u64) else {
        return error("num: a block number is required");
    };
    HttpResponse::Ok().json(
        node.state
            .lock()
            .expect("devnet lock")
            .block_infos_json(number),
    )
}

/// `{"id_or_num": number, block id or "" for the head, "detail": false}`; `{}` for a block
/// it does not have, as java-tron answers.
async fn get_block(node: web::Data<Node>, body: web::Json<Value>) -> HttpResponse {
    gated!(node);
    let s = node.state.lock().expect("devnet lock");
    if s.faults.no_getblock {
        return HttpResponse::NotFound().finish();
    }
    if body.get("detail").and_then(Value::as_bool) == Some(true) {
        return error("detail: the devnet serves block headers only");
    }
    let wanted = body.get("id_or_num").and_then(Value::as_str).unwrap_or("");
    let number = if wanted.is_empty() {
        Some(s.head().0)
    } else if let Ok(n) = wanted.parse::<u64>() {
        Some(n)
    } else {
        match hex::decode(wanted) {
            Ok(id) => s.block_number_of(&id),
            Err(_) => return error("id_or_num: a block number or a block id in hex"),
        }
    };
    HttpResponse::Ok().json(
        number
            .and_then(|n| s.block_json(n))
            .unwrap_or_else(|| json!({})),
    )
}

async fn now_block(node: web::Data<Node>) -> HttpResponse {
    gated!(node);
    HttpResponse::Ok().json(node.state.lock().expect("devnet lock").now_block_json())
}

/// Replaces the fault switches (`{}` clears them all).
async fn set_faults(node: web::Data<Node>, body: web::Json<Faults>) -> HttpResponse {
    node.state.lock().expect("devnet lock").faults = body.into_inner();
    HttpResponse::NoContent().finish()
}

async fn summary(node: web::Data<Node>) -> HttpResponse {
    let mut summary = node.state.lock().expect("devnet lock").summary_json();
    summary["requests"] = json!(*node.requests.lock().expect("devnet lock"));
    HttpResponse::Ok().json(summary)
}

async fn create_account(node: web::Data<Node>, body: web::Json<AccountSeed>) -> HttpResponse {
    match body.address() {
        Ok(a) => {
            node.state.lock().expect("devnet lock").create_account(
                *a.as_bytes(),
                body.balance_sun,
                body.energy_stake_sun,
            );
            node.save();
            HttpResponse::Created().json(json!({"address": a.to_base58()}))
        }
        Err(e) => HttpResponse::BadRequest().json(json!({"Error": e.to_string()})),
    }
}

#[derive(Deserialize)]
struct EnergyTotalsSet {
    total_energy_limit: u64,
    total_energy_weight: u64,
}

/// Sets the chain's energy totals from the next block on (`getaccountresource` shows them
/// once that block is made).
async fn set_energy_totals(
    node: web::Data<Node>,
    body: web::Json<EnergyTotalsSet>,
) -> HttpResponse {
    let t = body.into_inner();
    node.state.lock().expect("devnet lock").next_totals =
        Some((t.total_energy_limit, t.total_energy_weight));
    HttpResponse::NoContent().finish()
}

async fn produce_block(node: web::Data<Node>) -> HttpResponse {
    let mut s = node.state.lock().expect("devnet lock");
    s.produce_block();
    save_locked(&mut s);
    HttpResponse::Ok().json(s.now_block_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUPPLIER: &str = "4194a15629b2b2bbd3a5453e6d6696b2875278633b";

    fn store(dir: &std::path::Path) -> StateStore {
        StateStore {
            dir: dir.join("devnet"),
            legacy_json: Some(dir.join("devnet-state.json")),
        }
    }

    /// Opens the store again in this process: sled lets go of its files only once its last
    /// background write (a thread of its pool) is done, a moment after the state is dropped.
    fn reopen(dir: &std::path::Path) -> ChainState {
        let never = || -> anyhow::Result<ChainState> { panic!("the legacy state exists") };
        for _ in 0..50 {
            if let Ok(chain) = store(dir).open(60_000, never) {
                return chain;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        store(dir).open(60_000, never).unwrap()
    }

    fn balance(chain: &ChainState) -> i64 {
        let a: Addr = hex::decode(SUPPLIER).unwrap().try_into().unwrap();
        chain.accounts[&a].balance
    }

    #[test]
    fn a_legacy_json_state_moves_into_the_store_once() {
        let temp = tempfile::tempdir().unwrap();
        let block = "00".repeat(32);
        std::fs::write(
            temp.path().join("devnet-state.json"),
            format!(
                r#"{{"accounts": [["{SUPPLIER}", {{"balance": 42, "energy_stake": 7, "delegated_out": 0, "acquired": 0, "create_time": 1}}]],
                   "records": [], "known": [], "pending": [], "blocks": [["{block}", 1000], ["{block}", 4000]],
                   "total_energy_limit": 1, "total_energy_weight": 1, "delegations_applied": 3, "undelegations_applied": 0}}"#
            ),
        )
        .unwrap();
        let never = || -> anyhow::Result<ChainState> { panic!("the legacy state exists") };
        let chain = store(temp.path()).open(60_000, never).unwrap();
        assert_eq!(balance(&chain), 42);
        assert_eq!(chain.head().0, 1);
        assert!(!temp.path().join("devnet-state.json").exists());
        drop(chain);

        let mut chain = reopen(temp.path());
        assert_eq!(
            (balance(&chain), chain.head().0, chain.delegations_applied),
            (42, 1, 3)
        );
        chain.produce_block();
        chain.save().unwrap();
        drop(chain);
        let chain = reopen(temp.path());
        assert_eq!(chain.head().0, 2);
    }
}
