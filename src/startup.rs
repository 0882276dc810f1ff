//! The service as one value ([`Application`]): `build` starts its parts in named stages,
//! each a function below, in the order they depend on each other; `run_until_stopped`
//! serves until SIGTERM or SIGINT, then stops the parts the other way round and waits for
//! each ([`crate::shutdown`]).

use crate::chain::demo::{self, DEMO_SUPPLIER};
use crate::chain::tron::TronClient;
use crate::chain::Chain;
use crate::cluster::membership::Membership;
use crate::cluster::remote::HttpRemote;
use crate::config::{client_routes_open, Secret};
use crate::devnet::InProcess;
use crate::domain::pool::Command as PoolCmd;
use crate::domain::DomainError;
use crate::engine::{CommandMeta, DurableRecords, Engine, EngineError, Ownership, WriterSnapshots};
use crate::http::{self, AppState};
use crate::log::KafkaSettings;
use crate::saga::Saga;
use crate::settings::Settings;
use crate::shutdown::{self, Stage};
use crate::store::{catch_up, open_store, Store};
use actix_web::{middleware::from_fn, web, App, HttpServer};
use anyhow::Context;
use flashrent_events::{EnergyAmount, EventLog, TronAddress};
use flashrent_projections::{
    spawn_projectors, Delivery, LiveApplier, ReactorSink, Reactors, ReadModels,
};
use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How long each stage of a stop may take before its remaining tasks are aborted: a saga
/// step waits on the chain for a request's timeout at most, an append on Kafka for its own.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Records a reactor's queue holds.
const REACTOR_QUEUE: usize = 16_384;

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    log: Arc<dyn EventLog>,
    models: ReadModels,
    engine: Engine,
    /// What makes commands: the saga's tasks, the inventory refresh, the key-usage recorder.
    /// Stopped before the writers, which decide their last commands.
    commands: Stage,
    /// What applies and follows the log: the live applier, the projectors, the metrics
    /// observer. Stopped after the writers, so it applies everything they made durable.
    read_side: Stage,
    /// Where the saga runs: a thread of its own, at the configured priority.
    fulfilment: SagaRuntime,
    /// On Kafka: this instance's place in the writers' group.
    membership: Option<Membership>,
    /// Demo mode: the in-process devnet.
    devnet: Option<InProcess>,
    /// What `/readyz` answers: up once this instance takes its share of the writing (on
    /// Kafka, once the writers' group has assigned it), down once it stops.
    ready: Arc<AtomicBool>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let store = open_store_caught_up(&settings).await?;
        let (listener, instance) = bind_http(&settings, &store.models)?;
        let (mut commands, mut read_side) = (Stage::new("commands"), Stage::new("read side"));
        let reactors = start_reactor_queues(&mut read_side);
        let live = start_projection(&store, &reactors.sink, &mut read_side);
        let engine = start_engine(&settings, &store, &instance, live).await?;
        follow_other_writers(&store, &engine, &instance, &reactors.sink, &mut read_side);
        let (tron, devnet) = start_chain(&settings).await?;
        let saga = start_saga(
            &settings,
            &engine,
            &store.models,
            tron.clone(),
            reactors.saga,
            commands.token(),
        )?;
        commands.track_all("saga", saga.tasks);
        let admin_token = admin_token(&settings.store.data_dir, &settings.secrets.admin_token)?;
        let ready = Arc::new(AtomicBool::new(false));
        let membership =
            join_writers(&engine, &store.models, &admin_token, &instance, &ready).await?;
        let demo_mode = devnet.is_some();
        fill_pool(
            &settings,
            &engine,
            &store.models,
            &tron,
            demo_mode,
            &mut commands,
        )
        .await?;
        let parts = Parts {
            engine: engine.clone(),
            models: store.models.clone(),
            tron,
            saga: saga.saga,
            reactors: reactors.sink,
            admin_token,
            ready: ready.clone(),
            instance,
        };
        let port = listener.local_addr()?.port();
        let server = start_http(&settings, listener, parts, &mut commands)?;
        Ok(Application {
            port,
            server,
            log: store.log,
            models: store.models,
            engine,
            commands,
            read_side,
            fulfilment: saga.runtime,
            membership,
            devnet,
            ready,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The event log this instance writes (tests wait on where it ends).
    pub fn log(&self) -> Arc<dyn EventLog> {
        self.log.clone()
    }

    /// The read models (tests wait on where they stand).
    pub fn models(&self) -> ReadModels {
        self.models.clone()
    }

    /// Serves until SIGTERM or SIGINT, then stops as [`Application::run_until`] does.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(stop_signal()).await
    }

    /// Serves until `stop` resolves (or the HTTP server fails), then stops every part, each
    /// stage once the one before has finished:
    ///
    /// 1. HTTP: no new connection; requests under way are answered (within 5 s).
    /// 2. What makes commands: the saga finishes the step it is taking, the timers the round
    ///    they are in, the key-usage recorder records the last uses.
    /// 3. The writers: each decides what is queued for it, and its appender makes that
    ///    durable and answers every caller.
    /// 4. On Kafka, the writers' group is left, so other instances take the partitions now.
    /// 5. The read side: the live applier applies every record the writers handed it.
    /// 6. The in-process devnet, then the read models are written to sled and synced, and
    ///    the log is closed.
    ///
    /// A task still running 10 s into its stage is aborted and named in the log.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Application {
            server,
            log,
            models,
            engine,
            commands,
            read_side,
            fulfilment,
            membership,
            devnet,
            ready,
            ..
        } = self;
        let http = server.handle();
        let mut serving = tokio::spawn(server);
        let served = tokio::select! {
            _ = stop => None,
            served = &mut serving => Some(served),
        };
        tracing::info!("stopping");
        ready.store(false, Ordering::Release);
        let served = match served {
            Some(served) => served,
            None => {
                http.stop(true).await;
                serving.await
            }
        };
        let mut aborted = commands.stop(STOP_GRACE).await;
        // Every saga task has returned (or was aborted): nothing of it runs any more.
        drop(fulfilment);
        aborted += engine.stop(STOP_GRACE).await;
        if let Some(m) = membership {
            // The other instances take the partitions over now, not after the session timeout.
            m.leave_and_wait(STOP_GRACE).await;
        }
        aborted += read_side.stop(STOP_GRACE).await;
        if let Some(devnet) = devnet {
            devnet.stop().await;
        }
        let closed = models.close();
        log.close();
        if aborted == 0 {
            tracing::info!("stopped: every task finished its work");
        } else {
            tracing::warn!(aborted, "stopped; some tasks had to be aborted");
        }
        closed.context("writing the read models to disk")?;
        served
            .context("the HTTP server's task")?
            .context("the HTTP server")?;
        Ok(())
    }
}

/// Resolves at SIGTERM or SIGINT.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for SIGTERM; stop with SIGINT");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Stage: the log, the sled database and the read models, with the read models caught up
/// with the log.
async fn open_store_caught_up(settings: &Settings) -> anyhow::Result<Store> {
    let store = open_store(&settings.store).await?;
    let started = std::time::Instant::now();
    let records = catch_up(store.log.as_ref(), &store.models).await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(records, elapsed_ms, data_dir = %settings.store.data_dir.display(), "read models caught up with the event log");
    Ok(store)
}

/// Where this instance takes requests, and how its writers hold their partitions.
struct Instance {
    url: String,
    ownership: Ownership,
    kafka: Option<KafkaSettings>,
}

impl Instance {
    /// Whether other instances write partitions of this log (Kafka): only then can a command
    /// land on an instance that does not write its partition.
    fn shared_log(&self) -> bool {
        matches!(self.ownership, Ownership::Claim { .. })
    }
}

/// Stage: the HTTP port, bound now so the address other instances are told is the real one.
fn bind_http(settings: &Settings, models: &ReadModels) -> anyhow::Result<(TcpListener, Instance)> {
    let listener = TcpListener::bind(&settings.listen).with_context(|| {
        format!(
            "binding {} (is another flashrent listening there? choose another --listen)",
            settings.listen
        )
    })?;
    let address = listener.local_addr()?;
    if settings.http.allow_private_callbacks {
        tracing::warn!("FLASHRENT_WEBHOOK_ALLOW_PRIVATE is set: orders may name loopback, private and link-local callback_urls");
    }
    let any_key = !settings.secrets.api_keys.is_empty() || models.any_api_key()?;
    if client_routes_open(&address, any_key) {
        tracing::warn!(listen = %settings.listen, "listening beyond loopback with no API keys: client routes (orders, balances, deductions) are open to anyone who can reach this address; issue keys (POST /api/admin/api-keys) or set FLASHRENT_API_KEYS or --api-keys-file");
    }
    let url = match &settings.advertised_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!("http://{address}"),
    };
    // On a shared log every writer claims its partition (fencing out any earlier one); the
    // claim names where this instance takes requests.
    let kafka = settings.store.kafka.clone();
    let ownership = match kafka {
        Some(_) => Ownership::Claim { owner: url.clone() },
        None => Ownership::Sole,
    };
    Ok((
        listener,
        Instance {
            url,
            ownership,
            kafka,
        },
    ))
}

/// The reactors' fan-out, and the saga's queue in it.
struct ReactorQueues {
    sink: ReactorSink,
    saga: tokio::sync::mpsc::Receiver<flashrent_projections::ProjectedRecord>,
}

/// Stage: the reactors' queues, side by side behind one fan-out. The saga sees every
/// record; the metrics observer drops what it has no room for, so a lagging counter never
/// holds up fulfilment. The observer runs from here; the saga takes its queue later.
fn start_reactor_queues(read_side: &mut Stage) -> ReactorQueues {
    let mut reactors = Reactors::new();
    let saga = reactors.queue("saga", REACTOR_QUEUE, Delivery::Every);
    let observer = reactors.spawn(
        crate::metrics::Observer::default(),
        REACTOR_QUEUE,
        Delivery::Lossy,
        read_side.token(),
    );
    read_side.track("metrics observer", observer);
    ReactorQueues {
        sink: reactors.sink(),
        saga,
    }
}

/// Stage: the live applier, through which every record this instance's writers make durable
/// reaches the read models, and then the reactors.
fn start_projection(
    store: &Store,
    reactors: &ReactorSink,
    read_side: &mut Stage,
) -> Arc<dyn DurableRecords> {
    let (live, task) = LiveApplier::spawn(
        store.log.clone(),
        store.models.clone(),
        reactors.clone(),
        read_side.token(),
    );
    read_side.track("live applier", task);
    Arc::new(live)
}

/// Stage: a writer per partition, each with its state loaded (from its snapshot, then the
/// log), handing what it makes durable to the live applier.
async fn start_engine(
    settings: &Settings,
    store: &Store,
    instance: &Instance,
    live: Arc<dyn DurableRecords>,
) -> anyhow::Result<Engine> {
    let snapshots = WriterSnapshots {
        store: &store.sled,
        every: settings.writer_snapshot_every,
    };
    Engine::start(
        store.log.clone(),
        instance.ownership.clone(),
        Some(live),
        Some(snapshots),
    )
    .await
    .context("loading aggregate state from the event log")
}

/// Stage, on a shared log: a projector per partition follows the other instances' records
/// (the partitions this one writes, the live applier has).
fn follow_other_writers(
    store: &Store,
    engine: &Engine,
    instance: &Instance,
    reactors: &ReactorSink,
    read_side: &mut Stage,
) {
    if instance.shared_log() {
        read_side.track_all(
            "projector",
            spawn_projectors(
                store.log.clone(),
                store.models.clone(),
                reactors.clone(),
                engine.owned_partitions(),
                read_side.token(),
            ),
        );
    }
}

/// Stage: the TRON client, against the configured nodes, or against the in-process devnet
/// of demo mode when none is configured.
async fn start_chain(settings: &Settings) -> anyhow::Result<(Arc<TronClient>, Option<InProcess>)> {
    let (tron, devnet) = if settings.chain.nodes.is_empty() {
        let demo = demo::start(settings)?;
        (demo.client, Some(demo.devnet))
    } else {
        tracing::info!(nodes = ?settings.chain.nodes, suppliers = settings.secrets.supplier_keys.len(), "using TRON full nodes");
        let config = settings.tron_config(settings.chain.nodes.clone());
        let client = TronClient::new(config, settings.secrets.supplier_keys.clone())?;
        (Arc::new(client), None)
    };
    match tron.head_block().await {
        Ok(head) => {
            tracing::info!(number = head.number, time = %head.time, "TRON node reachable; head block")
        }
        Err(e) => {
            tracing::warn!(error = %e, "TRON node not reachable yet; the saga will keep trying")
        }
    }
    Ok((tron, devnet))
}

/// The saga, the runtime it runs on, and its tasks.
struct Fulfilment {
    saga: Saga,
    runtime: SagaRuntime,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Stage: the saga, on a runtime of its own, resuming unfinished orders and following its
/// queue of the reactors' fan-out, until `stop` (its tasks are awaited with the stage that
/// signals it).
fn start_saga(
    settings: &Settings,
    engine: &Engine,
    models: &ReadModels,
    chain: Arc<dyn Chain>,
    records: tokio::sync::mpsc::Receiver<flashrent_projections::ProjectedRecord>,
    stop: shutdown::Token,
) -> anyhow::Result<Fulfilment> {
    let runtime = SagaRuntime(Some(fulfilment_runtime(settings.saga_nice)?));
    let saga = Saga::new(
        engine.clone(),
        models.clone(),
        chain,
        settings.saga.clone(),
        stop,
    );
    let tasks = {
        let _on_it = runtime.0.as_ref().expect("running").enter();
        saga.spawn(records)?
    };
    Ok(Fulfilment {
        saga,
        runtime,
        tasks,
    })
}

/// The saga's runtime, let go of without blocking when dropped: a stop drops it from async
/// code (a test's in-process server may even be dropped unstopped), where a runtime's own
/// drop would block.
struct SagaRuntime(Option<tokio::runtime::Runtime>);

impl Drop for SagaRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
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

/// How long startup waits for the writers' group to give this instance its share.
const GROUP_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Stage, on Kafka: joins the writers' group, whose assignments say which partitions this
/// instance claims and writes, and sends commands for a partition another instance writes
/// to that instance. Ready once the group has given this instance its share.
async fn join_writers(
    engine: &Engine,
    models: &ReadModels,
    admin_token: &Secret,
    instance: &Instance,
    ready: &Arc<AtomicBool>,
) -> anyhow::Result<Option<Membership>> {
    let Some(kafka) = &instance.kafka else {
        ready.store(true, Ordering::Release);
        return Ok(None);
    };
    let ready = ready.clone();
    let between_instances = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let remote = HttpRemote::new(
        models.clone(),
        between_instances,
        admin_token.clone(),
        instance.url.clone(),
    );
    let _ = remote.engine.set(engine.partitions());
    engine.set_remote(remote);
    let assign = engine.clone();
    let membership = Membership::join(kafka, Arc::new(move |ps, mine| assign.assign(ps, mine)))
        .context("joining the writers' consumer group")?;
    if membership.joined(GROUP_JOIN_TIMEOUT).await {
        tracing::info!("joined the writers' group");
        ready.store(true, Ordering::Release);
        return Ok(Some(membership));
    } else {
        tracing::warn!(timeout = ?GROUP_JOIN_TIMEOUT, "the writers' group has not assigned partitions yet; commands go to other instances until it does");
        membership.when_joined(move || ready.store(true, Ordering::Release));
    }
    Ok(Some(membership))
}

/// Stage: the supplier wallets in the pool. In demo mode, the devnet's demo supplier on
/// first start; else those whose keys this instance holds, with what the chain says they
/// can delegate, then kept in line with the chain.
async fn fill_pool(
    settings: &Settings,
    engine: &Engine,
    models: &ReadModels,
    tron: &Arc<TronClient>,
    demo_mode: bool,
    commands: &mut Stage,
) -> anyhow::Result<()> {
    let registered: std::collections::HashSet<TronAddress> =
        models.pool_wallets()?.iter().map(|w| w.address).collect();
    if demo_mode {
        let energy = settings.chain.demo.supplier_energy;
        if energy > 0 && registered.is_empty() {
            let address = TronAddress::parse(DEMO_SUPPLIER).expect("demo address is valid");
            let energy = EnergyAmount::new(energy).expect("positive");
            // Ready means the quickstart's wallet is in the pool that requests read.
            if register_supplier(engine, models, address, energy).await? {
                tracing::info!(%address, energy = energy.get(), "registered the demo supplier wallet of the in-process devnet");
            }
        }
        return Ok(());
    }
    match tron.supplier_inventory().await {
        Ok(inventory) => {
            for (address, energy) in inventory {
                if !registered.contains(&address)
                    && register_supplier(engine, models, address, energy).await?
                {
                    tracing::info!(%address, energy = energy.get(), "registered a supplier wallet from the chain");
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read supplier inventory from the chain")
        }
    }
    if let Some(every) = settings.chain.inventory_refresh {
        commands.track(
            "inventory refresh",
            tokio::spawn(refresh_inventory(
                tron.clone(),
                engine.clone(),
                every,
                commands.token(),
            )),
        );
    }
    Ok(())
}

/// What the HTTP layer serves from.
struct Parts {
    engine: Engine,
    models: ReadModels,
    tron: Arc<TronClient>,
    saga: Saga,
    reactors: ReactorSink,
    admin_token: Secret,
    ready: Arc<AtomicBool>,
    instance: Instance,
}

/// Stage: the HTTP server on the bound port (its route table is [`http::configure`]), and
/// the recorder of the API keys' last uses that its requests feed.
fn start_http(
    settings: &Settings,
    listener: TcpListener,
    parts: Parts,
    commands: &mut Stage,
) -> anyhow::Result<actix_web::dev::Server> {
    let rates = settings
        .http
        .order_rates(listener.local_addr()?.ip().is_loopback());
    tracing::info!(per_user = ?rates.per_user, per_key = ?rates.per_key, "order rate limits (orders per minute)");
    let state = web::Data::new(AppState {
        shared_log: parts.instance.shared_log(),
        instance_url: parts.instance.url,
        engine: parts.engine,
        models: parts.models,
        prices: settings.prices.clone(),
        admin_token: parts.admin_token,
        api_keys: settings.secrets.api_keys.clone(),
        allow_private_callbacks: settings.http.allow_private_callbacks,
        chain: parts.tron,
        ready: parts.ready,
        saga: parts.saga,
        reactors: parts.reactors,
        client_timeout: settings.http.client_timeout,
        keys_issued: Default::default(),
        key_usage: Default::default(),
        order_limits: http::access::OrderLimits::new(rates),
    });
    commands.track(
        "key usage recorder",
        tokio::spawn(record_key_uses(
            state.clone().into_inner(),
            settings.http.key_usage_record_every,
            commands.token(),
        )),
    );
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(http::edge))
            .configure(http::configure)
    })
    .workers(settings.http.worker_threads())
    .client_request_timeout(settings.http.client_timeout)
    .listen(listener)?
    .backlog(4096)
    .shutdown_timeout(5)
    // `run_until` watches for the stop and stops the server first, then the rest.
    .disable_signals()
    .run())
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

/// Keeps the pool's capacities in line with the chain: every `every`, each supplier wallet
/// we hold a key for is asked what it can still delegate (stakes change, and the energy of a
/// staked TRX drifts with the network's totals).
async fn refresh_inventory(
    tron: Arc<TronClient>,
    engine: Engine,
    every: Duration,
    mut stop: shutdown::Token,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown::stopped(&mut stop) => return,
        }
        for address in tron.supplier_addresses() {
            match tron.delegatable_energy(&address).await {
                Ok(energy) => {
                    if let Err(e) = engine
                        .observe_chain_inventory(CommandMeta::new(Uuid::now_v7()), address, energy)
                        .await
                    {
                        tracing::warn!(%address, error = %flashrent_events::ErrorChain(&e), "cannot record the chain's inventory");
                    }
                }
                Err(e) => {
                    tracing::warn!(%address, error = %e, "cannot read a supplier's inventory")
                }
            }
        }
    }
}

/// Records in the log, every `every` and once more when stopped, when the issued API keys
/// this instance let in were last used (one event for all of them), and forgets the order
/// rate limits' idle buckets. A key's use is recorded by the instance that writes the keys'
/// partition: on a shared log another instance's uses wait until it writes that partition.
async fn record_key_uses(state: Arc<AppState>, every: Duration, mut stop: shutdown::Token) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = shutdown::stopped(&mut stop) => true,
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
                    tracing::warn!(error = %flashrent_events::ErrorChain(&e), "cannot record the API keys' last use");
                    state.key_usage.put_back(uses);
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// The configured admin token, or the one kept in the data dir (created, mode 0600, on first start).
fn admin_token(data_dir: &Path, configured: &Option<Secret>) -> anyhow::Result<Secret> {
    if let Some(t) = configured {
        return Ok(t.clone());
    }
    let path = data_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        tracing::info!(path = %path.display(), "admin token read from the data dir");
        return Ok(Secret::new(t.trim().to_owned()));
    }
    let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    write_private(&path, &token)
        .with_context(|| format!("writing the admin token to {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated an admin token and stored it (mode 0600)");
    Ok(Secret::new(token))
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
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
