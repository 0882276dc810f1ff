//! Building and running the service: open the log and the read models, catch up, start
//! the writers, the projectors and the saga, then serve HTTP.

use crate::chain::tron::{parse_keys, EnergyTotals, SecretKey, TronClient, TronConfig};
use crate::chain::Chain;
use crate::cluster::membership::Membership;
use crate::cluster::remote::HttpRemote;
use crate::config::{client_routes_open, private_dir, Secret, ServeArgs, StoreArgs};
use crate::devnet::{AccountSeed, Devnet, DevnetConfig};
use crate::domain::pool::Command as PoolCmd;
use crate::domain::DomainError;
use crate::engine::{CommandMeta, DurableRecords, Engine, EngineError, Ownership, WriterSnapshots};
use crate::http::{self, AppState};
use crate::log::{EmbeddedLog, KafkaLog};
use crate::saga::{FaultPoints, Saga, SagaConfig};
use actix_web::{middleware::from_fn, web, App, HttpServer};
use anyhow::Context;
use flashrent_events::{EnergyAmount, EventLog, TronAddress};
use flashrent_projections::{spawn_projectors, LiveApplier, Projector, ReadModels};
use flashrent_store::SledStore;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// The demo supplier wallet of the in-process devnet (tron-protocol.md §8 vector A's address).
pub const DEMO_SUPPLIER: &str = "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1";
/// Its key: a *published* test key (tronpy's test suite, vector A). Devnet only — never fund
/// it on a real network.
const DEMO_SUPPLIER_KEY: &str = "279ff36d9bf9f305af3280034bb4187c6dd299bac6b26a3c20b999c7c0d50e6e";
/// The renter address of the README's examples, activated on the in-process devnet.
pub const DEMO_RENTER: &str = "TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2";

pub struct Application {
    port: u16,
    /// Where the saga runs: a thread of its own, at the configured priority.
    fulfilment: tokio::runtime::Runtime,
    server: actix_web::dev::Server,
    log: Arc<dyn EventLog>,
    models: ReadModels,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// On Kafka: this instance's place in the writers' group.
    membership: Option<Membership>,
}

/// The log as a follower reads it (audit, notify): on Kafka when brokers are configured
/// (the topic must exist; its partition count is read from it), else the data dir's log,
/// opened read-only beside a running `serve`.
pub async fn open_follower_log(
    data_dir: &Path,
    kafka: &crate::config::KafkaArgs,
) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(match kafka.settings(0)? {
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
pub async fn open_log(store: &StoreArgs) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(match store.kafka.settings(store.partitions)? {
        Some(k) => {
            let brokers = k.brokers.clone();
            let topic = k.topic();
            let log = KafkaLog::open(k)
                .await
                .with_context(|| format!("opening the event log on Kafka at {brokers}"))?;
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
pub async fn open_store(
    store: &StoreArgs,
) -> anyhow::Result<(Arc<dyn EventLog>, SledStore, ReadModels)> {
    private_dir(&store.data_dir)
        .with_context(|| format!("creating the data dir {}", store.data_dir.display()))?;
    let log = open_log(store).await?;
    let sled = SledStore::open(
        &store.data_dir.join("read-models"),
        store.sled_cache_mb << 20,
    )
    .context("opening the read models (is another flashrent using this data dir?)")?;
    let models = ReadModels::open_in(&sled, store.partitions).context("opening the read models")?;
    Ok((log, sled, models))
}

/// Applies everything in the log to the read models.
pub async fn catch_up(log: &dyn EventLog, models: &ReadModels) -> anyhow::Result<u64> {
    let projector = Projector::new(models.clone());
    // One partition after the other: Tansu times out on concurrent watermark requests.
    let mut total = 0;
    for p in 0..log.partition_count() {
        total += projector.catch_up(log, p).await?;
    }
    Ok(total)
}

impl Application {
    pub async fn build(args: ServeArgs) -> anyhow::Result<Application> {
        let prices = args.price_table()?;
        // Every secret first: a bad one stops the start before anything is opened.
        let configured_token = args.admin_token()?;
        let api_keys = args.api_keys()?;
        let tron_api_key = args.tron_api_key()?;
        let supplier_keys = match args.supplier_keys()? {
            Some((text, origin)) => parse_keys(text.expose(), &origin)?,
            None => vec![],
        };
        args.store.kafka.settings(args.store.partitions)?;
        let (log, sled, models) = open_store(&args.store).await?;
        let dyn_log = log.clone();
        let started = std::time::Instant::now();
        let records = catch_up(dyn_log.as_ref(), &models).await?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(records, elapsed_ms, data_dir = %args.store.data_dir.display(), "read models caught up with the event log");
        let listener = std::net::TcpListener::bind(&args.listen)
            .with_context(|| format!("binding {}", args.listen))?;
        let port = listener.local_addr()?.port();
        if args.webhook_allow_private {
            tracing::warn!("FLASHRENT_WEBHOOK_ALLOW_PRIVATE is set: orders may name loopback, private and link-local callback_urls");
        }
        let any_key = !api_keys.is_empty() || models.any_api_key()?;
        if client_routes_open(&listener.local_addr()?, any_key) {
            tracing::warn!(listen = %args.listen, "listening beyond loopback with no API keys: client routes (orders, balances, deductions) are open to anyone who can reach this address; issue keys (POST /api/admin/api-keys) or set FLASHRENT_API_KEYS or --api-keys-file");
        }
        // On a shared log every writer claims its partition (fencing out any earlier one);
        // the claim names where this instance takes requests.
        let instance_url = match &args.advertised_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", listener.local_addr()?),
        };
        let ownership = if args.store.kafka.brokers.is_some() {
            Ownership::Claim {
                owner: instance_url.clone(),
            }
        } else {
            Ownership::Sole
        };
        let shared_log = matches!(ownership, Ownership::Claim { .. });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (reactor_tx, reactor_rx) = mpsc::channel(16_384);
        // Every record this instance writes reaches its read models through the live
        // applier; on a shared log, projector tasks also follow the other instances' records.
        let (live, live_task) = LiveApplier::spawn(
            dyn_log.clone(),
            models.clone(),
            Some(reactor_tx.clone()),
            shutdown_rx.clone(),
        );
        let live: Arc<dyn DurableRecords> = Arc::new(live);
        let snapshots = WriterSnapshots {
            store: &sled,
            every: args.writer_snapshot_every,
        };
        let engine = Engine::start(dyn_log.clone(), ownership, Some(live), Some(snapshots))
            .await
            .context("loading aggregate state from the event log")?;

        let (tron, demo) = tron_client(&args, supplier_keys, tron_api_key)?;
        let chain: Arc<dyn Chain> = tron.clone();
        match tron.head_block().await {
            Ok(head) => {
                tracing::info!(number = head.number, time = %head.time, "TRON node reachable; head block")
            }
            Err(e) => {
                tracing::warn!(error = %e, "TRON node not reachable yet; the saga will keep trying")
            }
        }

        let saga = Saga::new(
            engine.clone(),
            models.clone(),
            chain.clone(),
            SagaConfig {
                poll_interval: Duration::from_millis(args.poll_ms.max(1)),
                rental_time_scale: args.rental_time_scale,
                concurrency: args.saga_concurrency,
                queue: args.saga_queue,
                start_rate: args.saga_rate,
                inactive_receiver_ttl: Duration::from_secs(args.inactive_receiver_cache_secs),
                faults: FaultPoints::from_env()?,
                ..Default::default()
            },
            shutdown_rx.clone(),
        );
        let admin_token = admin_token(&args, configured_token)?;
        let between_instances = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let (observed_tx, observed_rx) = mpsc::channel(16_384);
        let mut tasks = vec![
            crate::metrics::spawn_observer(reactor_rx, observed_tx),
            live_task,
        ];
        if shared_log {
            tasks.extend(spawn_projectors(
                dyn_log.clone(),
                models.clone(),
                Some(reactor_tx),
                engine.owned_partitions(),
                shutdown_rx,
            ));
        }
        let fulfilment = fulfilment_runtime(args.saga_nice)?;
        tasks.extend({
            let _on_it = fulfilment.enter();
            saga.spawn(observed_rx)?
        });
        let membership = match args.store.kafka.settings(args.store.partitions)? {
            Some(kafka) => Some(
                join_writers(
                    &engine,
                    &kafka,
                    &models,
                    &admin_token,
                    &instance_url,
                    &between_instances,
                )
                .await?,
            ),
            None => None,
        };

        let registered: std::collections::HashSet<TronAddress> =
            models.pool_wallets()?.iter().map(|w| w.address).collect();
        if demo {
            if args.demo_supplier_energy > 0 && registered.is_empty() {
                let address = TronAddress::parse(DEMO_SUPPLIER).expect("demo address is valid");
                let energy = EnergyAmount::new(args.demo_supplier_energy).expect("positive");
                // Ready means the quickstart's wallet is in the pool that requests read.
                if register_supplier(&engine, &models, address, energy).await? {
                    tracing::info!(%address, energy = args.demo_supplier_energy, "registered the demo supplier wallet of the in-process devnet");
                }
            }
        } else {
            // Supplier wallets whose keys we hold join the pool with what the chain says they
            // can delegate (getcandelegatedmaxsize).
            match tron.supplier_inventory().await {
                Ok(inventory) => {
                    for (address, energy) in inventory {
                        if !registered.contains(&address)
                            && register_supplier(&engine, &models, address, energy).await?
                        {
                            tracing::info!(%address, energy = energy.get(), "registered a supplier wallet from the chain");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read supplier inventory from the chain")
                }
            }
            if args.inventory_refresh_secs > 0 {
                tasks.push(tokio::spawn(refresh_inventory(
                    tron.clone(),
                    engine.clone(),
                    Duration::from_secs(args.inventory_refresh_secs),
                    shutdown.subscribe(),
                )));
            }
        }

        let ready = Arc::new(AtomicBool::new(true));
        let client_timeout = Duration::from_millis(args.client_timeout_ms.max(1));
        let order_rates = args.order_rates(listener.local_addr()?.ip().is_loopback());
        tracing::info!(per_user = ?order_rates.per_user, per_key = ?order_rates.per_key, "order rate limits (orders per minute)");
        let state = web::Data::new(AppState {
            engine,
            models: models.clone(),
            prices,
            admin_token,
            api_keys,
            allow_private_callbacks: args.webhook_allow_private,
            chain,
            ready: ready.clone(),
            saga,
            instance_url,
            shared_log,
            client_timeout,
            keys_issued: Default::default(),
            key_usage: Default::default(),
            order_limits: http::access::OrderLimits::new(order_rates),
        });
        tasks.push(tokio::spawn(record_key_uses(
            state.clone().into_inner(),
            Duration::from_secs(args.key_usage_record_secs.max(1)),
            shutdown.subscribe(),
        )));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(http::edge))
                .configure(http::configure)
        })
        .workers(if args.http_workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            args.http_workers
        })
        .client_request_timeout(client_timeout)
        .listen(listener)?
        .backlog(4096)
        .shutdown_timeout(5)
        .run();
        Ok(Application {
            port,
            fulfilment,
            server,
            log,
            models,
            shutdown,
            tasks,
            membership,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until a stop signal, then stops every task and syncs the stores.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await?;
        tracing::info!("stopping");
        if let Some(m) = &self.membership {
            // The other instances take the partitions over now, not after the session timeout.
            m.leave();
        }
        self.shutdown.send_replace(true);
        for t in self.tasks {
            t.abort();
        }
        self.fulfilment.shutdown_background();
        self.models.flush()?;
        self.log.close();
        Ok(())
    }
}

/// The saga's runtime: one worker thread, at scheduling priority `nice`. The saga costs
/// several times what taking an order costs (pool, signing, the chain's round trips, five
/// recorded steps), and the chain could not take orders at the rate they can be accepted
/// anyway; so when the CPU is short, new orders and payments go first and fulfilment
/// takes what is left, instead of both slowing down. Its commands still run in the
/// engine's writers, at the normal priority.
fn fulfilment_runtime(nice: u8) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("saga")
        .enable_all()
        .on_thread_start(move || crate::priority::lower_this_thread(nice))
        .build()
        .context("starting the saga's runtime")
}

/// Registers a supplier wallet at startup, wherever the pool is written, and waits until the
/// read models show it. `false` when it was registered already (another instance starting
/// beside this one may have just done it).
async fn register_supplier(
    engine: &Engine,
    models: &ReadModels,
    address: TronAddress,
    energy_capacity: EnergyAmount,
) -> anyhow::Result<bool> {
    let meta = CommandMeta::new(Uuid::now_v7());
    let command = PoolCmd::Register {
        address,
        energy_capacity,
    };
    match engine.pool_command(meta, command).await {
        Ok(done) => {
            crate::consistency::projected(models, &done).await;
            Ok(true)
        }
        Err(EngineError::Domain(DomainError::SupplierWalletExists(_))) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// How long startup waits for the writers' group to give this instance its share.
const GROUP_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// On Kafka: joins the writers' group, whose assignments say which partitions this instance
/// claims and writes, and sends commands for a partition another instance writes to that
/// instance.
async fn join_writers(
    engine: &Engine,
    kafka: &crate::log::KafkaSettings,
    models: &ReadModels,
    admin_token: &Secret,
    instance_url: &str,
    client: &reqwest::Client,
) -> anyhow::Result<Membership> {
    let remote = HttpRemote::new(
        models.clone(),
        client.clone(),
        admin_token.clone(),
        instance_url.to_owned(),
    );
    let _ = remote.engine.set(engine.clone());
    engine.set_remote(remote);
    let assign = engine.clone();
    let membership = Membership::join(kafka, Arc::new(move |ps, mine| assign.assign(ps, mine)))
        .context("joining the writers' consumer group")?;
    if membership.joined(GROUP_JOIN_TIMEOUT).await {
        tracing::info!("joined the writers' group");
    } else {
        tracing::warn!(timeout = ?GROUP_JOIN_TIMEOUT, "the writers' group has not assigned partitions yet; commands go to other instances until it does");
    }
    Ok(membership)
}

/// Keeps the pool's capacities in line with the chain: every `every`, each supplier wallet
/// we hold a key for is asked what it can still delegate (stakes change, and the energy of a
/// staked TRX drifts with the network's totals).
async fn refresh_inventory(
    tron: Arc<TronClient>,
    engine: Engine,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        for address in tron.supplier_addresses() {
            match tron.delegatable_energy(&address).await {
                Ok(energy) => {
                    if let Err(e) = engine
                        .observe_chain_inventory(CommandMeta::new(Uuid::now_v7()), address, energy)
                        .await
                    {
                        tracing::warn!(%address, error = %e, "cannot record the chain's inventory");
                    }
                }
                Err(e) => {
                    tracing::warn!(%address, error = %e, "cannot read a supplier's inventory")
                }
            }
        }
    }
}

/// Records in the log, every `every`, when the issued API keys this instance let in were
/// last used (one event for all of them), and forgets the order rate limits' idle buckets.
/// A key's use is recorded by the instance that writes the keys' partition: on a shared log
/// another instance's uses wait until it writes that partition itself.
async fn record_key_uses(
    state: Arc<AppState>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = shutdown.changed() => true,
        };
        state.order_limits.prune();
        let uses = state.key_usage.take();
        if !uses.is_empty() {
            let command = crate::domain::keys::Command::RecordUses { uses: uses.clone() };
            match state
                .engine
                .api_key_command(CommandMeta::new(Uuid::now_v7()), command)
                .await
            {
                Ok(_) => {}
                Err(EngineError::Log(flashrent_events::LogError::Fenced(_))) => {
                    tracing::debug!(
                        "the API keys' partition is written elsewhere; their uses seen here wait"
                    );
                    state.key_usage.put_back(uses);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record the API keys' last use");
                    state.key_usage.put_back(uses);
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// The TRON client: against the configured nodes, or against an in-process devnet with a
/// funded demo supplier when none is configured (`true` in the second place).
fn tron_client(
    args: &ServeArgs,
    mut keys: Vec<SecretKey>,
    api_key: Option<Secret>,
) -> anyhow::Result<(Arc<TronClient>, bool)> {
    let demo = args.tron_nodes.iter().all(|n| n.trim().is_empty());
    let nodes = if demo {
        let key = SecretKey::from_hex(DEMO_SUPPLIER_KEY).expect("demo key is valid");
        let mut config = DevnetConfig {
            block_interval_ms: args.devnet_block_ms,
            // It stands in for a node on another machine: its work waits like the saga's.
            nice: args.saga_nice,
            ..Default::default()
        };
        config.faults.fail_rate = args.devnet_failure_rate;
        let totals = EnergyTotals {
            limit: config.total_energy_limit,
            weight: config.total_energy_weight,
        };
        // Enough stake for the demo energy, with room for per-delegation rounding.
        let stake = totals
            .energy_to_sun(args.demo_supplier_energy.max(1))
            .map_err(|e| anyhow::anyhow!("demo supplier energy: {e}"))?
            + 1_000_000_000;
        config.accounts = vec![
            AccountSeed {
                address: Some(key.address().to_base58()),
                balance_sun: 1_000_000_000,
                energy_stake_sun: stake as i64,
                ..Default::default()
            },
            AccountSeed {
                address: Some(DEMO_RENTER.to_owned()),
                balance_sun: 1_000_000,
                ..Default::default()
            },
        ];
        keys.push(key);
        let store = crate::devnet::StateStore {
            dir: args.store.data_dir.join("devnet"),
            legacy_json: Some(args.store.data_dir.join("devnet-state.json")),
        };
        let (url, _) = Devnet::start_with(config, "127.0.0.1:0", Some(store))?.spawn();
        tracing::info!(
            node = %url,
            block_ms = args.devnet_block_ms,
            supplier = DEMO_SUPPLIER,
            "no TRON node configured (FLASHRENT_TRON_NODES): started an in-process TRON devnet with a funded demo supplier; orders are delegated on it over HTTP"
        );
        vec![url]
    } else {
        tracing::info!(nodes = ?args.tron_nodes, suppliers = keys.len(), "using TRON full nodes");
        args.tron_nodes.clone()
    };
    let mut config = TronConfig::new(nodes);
    if demo {
        config.block_interval = Duration::from_millis(args.devnet_block_ms);
    }
    config.api_key = api_key;
    config.use_lock = args.tron_lock;
    config.request_timeout = Duration::from_millis(args.tron_timeout_ms.max(1));
    config.max_rate_change = args.tron_max_rate_change;
    config.max_answer_bytes = args.tron_max_answer_bytes.max(1);
    Ok((Arc::new(TronClient::new(config, keys)?), demo))
}

/// The configured admin token, or the one kept in the data dir (created, mode 0600, on first start).
fn admin_token(args: &ServeArgs, configured: Option<Secret>) -> anyhow::Result<Secret> {
    if let Some(t) = configured {
        return Ok(t);
    }
    let path = args.store.data_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        tracing::info!(path = %path.display(), "admin token read from the data dir");
        return Ok(Secret::new(t.trim().to_owned()));
    }
    let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    write_private(&path, &token)?;
    tracing::info!(path = %path.display(), "generated an admin token and stored it (mode 0600)");
    Ok(Secret::new(token))
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

pub struct RebuildReport {
    pub records: u64,
    /// With `verify`: how many keys differ between the old and the rebuilt read models.
    pub differences: Option<usize>,
}

/// `flashrent rebuild`: drops the read models and the writers' snapshots, and rebuilds the
/// read models from offset 0 (the writers fold the log at the next start).
pub async fn rebuild(store: &StoreArgs, verify: bool) -> anyhow::Result<RebuildReport> {
    let (log, sled, mut models) = open_store(store).await?;
    let log_ref = log.as_ref() as &dyn EventLog;
    let before = if verify {
        // Bring the old models up to the end of the log first, so both cover the same records.
        catch_up(log_ref, &models).await?;
        Some(models.dump()?)
    } else {
        None
    };
    models.drop_all()?;
    crate::engine::drop_snapshots(&sled).context("dropping the writers' snapshots")?;
    let records = catch_up(log_ref, &models).await?;
    models.flush()?;
    let differences = match before {
        Some(before) => {
            let after = models.dump()?;
            let old: std::collections::BTreeMap<_, _> = before.into_iter().collect();
            let new: std::collections::BTreeMap<_, _> = after.into_iter().collect();
            let keys: std::collections::BTreeSet<_> = old.keys().chain(new.keys()).collect();
            let diff: Vec<_> = keys
                .into_iter()
                .filter(|k| old.get(*k) != new.get(*k))
                .collect();
            for k in diff.iter().take(20) {
                tracing::error!(key = %String::from_utf8_lossy(k), "read model differs after rebuild");
            }
            Some(diff.len())
        }
        None => None,
    };
    log.close();
    Ok(RebuildReport {
        records,
        differences,
    })
}

pub fn mark_ready(flag: &AtomicBool) {
    flag.store(true, Ordering::Release);
}
