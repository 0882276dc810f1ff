//! `flashrent audit`: replays the event log through the pure [`fold`] and proves the books,
//! then compares the result with the service's read models (sled when it can be opened,
//! else the HTTP API when `--api` is given).
//!
//! The log is opened read-only ([`EmbeddedLog::open_read_only`]), so the audit runs safely
//! next to a `serve` that is writing: it sees the log as of the moment it opened it.

pub mod compare;
pub mod fold;
pub mod render;
pub mod synth;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use flashrent_events::{decode_record, Admission, EpochFence, EventLog, LogError, UserId};
use fold::{AuditOptions, AuditReport, Books, Position, Window};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// The service's data dir (the log is read from DATA_DIR/log, unless it is on Kafka).
    #[arg(long, env = "FLASHRENT_DATA_DIR", default_value = "flashrent-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub kafka: crate::config::KafkaArgs,
    /// Show only ledger lines and findings of records at or after this offset (every partition).
    #[arg(long, conflicts_with = "since")]
    pub from_offset: Option<u64>,
    /// Show only ledger lines and findings of events at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// Print this user's ledger: every balance change with time, event, delta, balance after,
    /// order and transaction hash.
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Orders paid but without an outcome are errors even when still recent.
    #[arg(long)]
    pub strict: bool,
    /// How long after its estimated completion an unfinished order counts as in flight.
    #[arg(long, default_value_t = 3600)]
    pub in_flight_grace_secs: i64,
    /// Compare with the read models through this running service when sled is locked by it.
    #[arg(long)]
    pub api: Option<String>,
    /// A file holding the API key for `--api`, when the service requires one (or
    /// `FLASHRENT_API_KEY`; not both).
    #[arg(long, env = "FLASHRENT_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Skip the comparison with the read models.
    #[arg(long)]
    pub no_compare: bool,
    /// Also write the result as Prometheus metrics to this file (for node_exporter's
    /// textfile collector): `flashrent_audit_errors` is the payment-accuracy alert's input.
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
}

/// What `audit` found, and how long the replay took.
pub struct AuditRun {
    pub report: AuditReport,
    pub comparison: compare::Comparison,
    pub elapsed: Duration,
}

impl AuditRun {
    /// Exit status 0 only when the books balance and the read models agree.
    pub fn ok(&self) -> bool {
        self.report.balanced() && self.comparison.differences.is_empty()
    }
}

/// The run as Prometheus text (gauges), written atomically (temp file, then rename).
pub fn write_metrics_file(path: &std::path::Path, run: &AuditRun) -> std::io::Result<()> {
    let s = &run.report.summary;
    let in_flight = run
        .report
        .findings
        .iter()
        .filter(|f| f.severity == fold::Severity::InFlight)
        .count();
    let gauges = [
        (
            "audit_errors",
            "Errors the last audit found in the books (0 means payment accuracy is 100%)",
            s.errors,
        ),
        (
            "audit_read_model_differences",
            "Differences between the audited books and the read models",
            run.comparison.differences.len() as u64,
        ),
        (
            "audit_orders_in_flight",
            "Paid orders without an outcome yet, within the grace period",
            in_flight as u64,
        ),
        ("audit_events", "Events the last audit replayed", s.events),
        (
            "audit_last_run_timestamp_seconds",
            "When the last audit ran",
            Utc::now().timestamp() as u64,
        ),
    ];
    let mut text = String::new();
    for (name, help, value) in gauges {
        text.push_str(&format!(
            "# HELP flashrent_{name} {help}\n# TYPE flashrent_{name} gauge\nflashrent_{name} {value}\n"
        ));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// Replays the whole log through the fold. Progress goes to stderr when it is a terminal.
pub async fn replay(log: &dyn EventLog, opts: AuditOptions) -> Result<AuditReport, LogError> {
    // One snapshot of every partition's end, taken at once: the log up to these offsets is
    // a prefix the engine really wrote, so cross-partition facts (the pool is told before
    // the order's own event) hold in it.
    let mut ends = Vec::new();
    for p in 0..log.partition_count() {
        ends.push(log.end_offset(p).await?);
    }
    let total: u64 = ends.iter().sum();
    let bar = if std::io::stderr().is_terminal() && total > 10_000 {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} records ({per_sec}, eta {eta})",
            )
            .expect("valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut books = Books::new(opts);
    for (partition, end) in (0..).zip(ends.iter().copied()) {
        let mut from = 0;
        // A fenced-out writer's records never happened for anyone else: not for us either.
        let mut fence = EpochFence::default();
        while from < end {
            let max = ((end - from) as usize).min(4096);
            let batch = log.read(partition, from, max, Duration::ZERO).await?;
            if batch.is_empty() {
                break;
            }
            for r in &batch {
                let pos = Position {
                    partition,
                    offset: r.offset,
                };
                match decode_record(&r.bytes) {
                    Ok(record) => {
                        if fence.admit(&record) == Admission::Events {
                            books.apply(pos, &record)
                        }
                    }
                    Err(e) => books.undecodable(pos, &e.to_string()),
                }
            }
            from += batch.len() as u64;
            bar.inc(batch.len() as u64);
        }
    }
    bar.finish_and_clear();
    let mut report = books.finish();
    report.log_ends = ends;
    Ok(report)
}

/// `flashrent audit`.
pub async fn run(args: &AuditArgs) -> anyhow::Result<AuditRun> {
    let user = args
        .user
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .context("--user is a user id")?;
    let mut opts = AuditOptions::new(Utc::now());
    opts.strict = args.strict;
    opts.user = user;
    opts.in_flight_grace = chrono::Duration::seconds(args.in_flight_grace_secs);
    opts.window = match (args.from_offset, args.since) {
        (Some(o), _) => Window::FromOffset(o),
        (None, Some(t)) => Window::Since(t),
        _ => Window::All,
    };
    let api_key = crate::config::read_single_secret(
        "FLASHRENT_API_KEY",
        "--api-key-file",
        args.api_key_file.as_deref(),
    )?;
    let log = crate::store::open_follower_log(&args.data_dir, &args.kafka).await?;
    let started = Instant::now();
    let report = replay(log.as_ref(), opts).await?;
    let elapsed = started.elapsed();
    let comparison = if args.no_compare {
        compare::Comparison::skipped("--no-compare")
    } else {
        compare::compare(
            &args.data_dir,
            &report.log_ends,
            &report,
            args.api.as_deref(),
            api_key.as_ref().map(crate::config::Secret::expose),
        )
        .await
    };
    Ok(AuditRun {
        report,
        comparison,
        elapsed,
    })
}
