use clap::{Parser, Subcommand};
use flashrent::config::{ServeArgs, StoreArgs};
use flashrent::devnet::{Devnet, DevnetConfig};
use flashrent::settings::{Settings, StoreSettings};
use flashrent::startup::Application;
use flashrent_events::ErrorChain;
use std::process::ExitCode;

/// flashrent — an event-sourced order engine for renting TRON energy.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (embedded event log; an in-process TRON devnet unless
    /// FLASHRENT_TRON_NODES names real nodes).
    Serve(Box<ServeArgs>),
    /// Run a local TRON devnet: the java-tron HTTP API subset the client uses, in memory.
    Devnet {
        /// Address to listen on; port 0 picks a free one (printed on stdout).
        #[arg(
            long,
            env = "FLASHRENT_DEVNET_LISTEN",
            default_value = "127.0.0.1:8090"
        )]
        listen: String,
        /// JSON seed: block_interval_ms, tx_expiration_ms, total_energy_limit,
        /// total_energy_weight, accounts [{address | private_key, balance_sun, energy_stake_sun}].
        #[arg(long, env = "FLASHRENT_DEVNET_CONFIG")]
        config: Option<std::path::PathBuf>,
        /// Overrides the config's block interval (0: a block per broadcast).
        #[arg(long)]
        block_ms: Option<u64>,
        /// Keep the chain in this directory (restored from it on start when it holds one).
        #[arg(long)]
        state_dir: Option<std::path::PathBuf>,
    },
    /// Drop the read models and rebuild them from the event log (stop `serve` first).
    Rebuild {
        #[command(flatten)]
        store: StoreArgs,
        /// Compare the rebuilt read models with the ones they replace; exit 1 on any difference.
        #[arg(long)]
        verify: bool,
    },
    /// Replay the event log and prove the books (read-only; safe while `serve` runs).
    /// Exits 0 when the books balance and agree with the read models, 1 otherwise.
    Audit(Box<flashrent::audit::AuditArgs>),
    /// Deliver order events as signed webhooks (follows the log read-only), or manage
    /// dead letters (`notify dead-letters list|replay`).
    Notify(Box<flashrent::notify::NotifyArgs>),
}

/// jemalloc rather than the system allocator: sled copies a tree node on every write, and
/// glibc's malloc spent ~15% of a saturating POST run's CPU on those copies (`_int_malloc`,
/// consolidation). In one run each (`bench/RESULTS.md`, runs L and O), jemalloc took 26% more
/// orders/s, and its peak resident memory came to 763 B per order created against glibc's 911.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start (`_RJEM_MALLOC_CONF` in the environment still
/// overrides them). Its defaults suit a process with many cores and memory to spare: eight
/// arenas per two cores, each keeping freed pages for ten seconds. Under a saturating POST
/// run sled copies tree nodes at a high rate, and what those defaults kept came to ~31 MiB
/// of a ~290 MiB peak after 30 s, at the same order rate (`bench/RESULTS.md`, run Q): two
/// arenas, and freed pages given back within a second.
#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_CONF: &[u8; 47] = b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// An error that stops the process is one line on stderr: what went wrong, through each of
/// its causes (the innermost says what was refused, the outer ones where), never a
/// backtrace, whatever `RUST_BACKTRACE` says: most are the operator's to fix (a broker that
/// does not answer, a missing file, a bad flag), and a backtrace would bury the line.
fn main() -> ExitCode {
    // A multi-threaded runtime for the engine (partition writers, projectors, saga);
    // actix-web runs its HTTP workers on threads of their own. Under `actix_web::main`
    // every engine task would share the one system thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let done = match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => Err(anyhow::Error::new(e).context("starting the async runtime")),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", ErrorChain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_json);
            let app = Application::build(Settings::from_args(*args)?).await?;
            // Tests and scripts read this line to learn the port when listening on port 0.
            println!("flashrent listening on http://127.0.0.1:{}", app.port());
            app.run_until_stopped().await
        }
        Command::Devnet {
            listen,
            config,
            block_ms,
            state_dir,
        } => {
            init_tracing(false);
            let mut config = match config {
                Some(path) => DevnetConfig::load(&path)?,
                None => DevnetConfig::default(),
            };
            if let Some(ms) = block_ms {
                config.block_interval_ms = ms;
            }
            let store = state_dir.map(|dir| flashrent::devnet::StateStore {
                dir,
                legacy_json: None,
            });
            let devnet = Devnet::start_with(config, &listen, store)?;
            println!("flashrent devnet listening on {}", devnet.url());
            devnet.run().await
        }
        Command::Rebuild { store, verify } => {
            init_tracing(false);
            let store = StoreSettings::from_args(&store)?;
            let report = flashrent::cli::rebuild::rebuild(&store, verify).await?;
            println!("rebuilt the read models from {} records", report.records);
            match report.differences {
                Some(0) => {
                    println!("verified: the rebuilt read models are identical to the previous ones")
                }
                Some(n) => anyhow::bail!(
                    "the rebuilt read models differ from the previous ones in {n} keys"
                ),
                None => {}
            }
            Ok(())
        }
        Command::Audit(args) => {
            init_tracing(false);
            let run = flashrent::audit::run(&args).await?;
            flashrent::audit::render::write(&run, args.format, &mut std::io::stdout().lock())?;
            if let Some(path) = &args.metrics_file {
                flashrent::audit::write_metrics_file(path, &run)?;
            }
            if !run.ok() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Notify(args) => {
            if let Some(flashrent::notify::NotifyAction::DeadLetters { action }) = &args.action {
                return flashrent::notify::dead_letters(&args.data_dir, action);
            }
            init_tracing(false);
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                stop.send_replace(true);
            });
            flashrent::notify::run(&args, stopped).await
        }
    }
}

fn init_tracing(json: bool) {
    flashrent::http::guard::log_panics();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
