use clap::{Parser, Subcommand};
use flashrent::config::{ServeArgs, StoreArgs};
use flashrent::startup::{self, Application};

/// flashrent — an event-sourced order engine for renting TRON energy.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (embedded event log and simulated chain by default).
    Serve(Box<ServeArgs>),
    /// Drop the read models and rebuild them from the event log (stop `serve` first).
    Rebuild {
        #[command(flatten)]
        store: StoreArgs,
        /// Compare the rebuilt read models with the ones they replace; exit 1 on any difference.
        #[arg(long)]
        verify: bool,
    },
}

// A multi-threaded runtime for the engine (partition writers, projectors, saga); actix-web
// runs its HTTP workers on threads of their own. Under `actix_web::main` every engine task
// would share the one system thread.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_json);
            let app = Application::build(*args).await?;
            // Tests and scripts read this line to learn the port when listening on port 0.
            println!("flashrent listening on http://127.0.0.1:{}", app.port());
            app.run_until_stopped().await
        }
        Command::Rebuild { store, verify } => {
            init_tracing(false);
            let report = startup::rebuild(&store, verify).await?;
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
    }
}

fn init_tracing(json: bool) {
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
