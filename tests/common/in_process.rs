//! `spawn_app()`: the service built in the test's own process, as zero2prod's `spawn_app`
//! does: `Application::build` on port 0 with a temp data dir (and on Kafka in the
//! `*_on_kafka` suites), serving on the test's runtime until the test stops it or ends.
//! Being in the process, a test can wait on the service's state itself
//! ([`InProcessApp::project_until_caught_up`]) instead of sleeping.

use super::{kafka_brokers, topic_prefix, Api, ADMIN};
use flashrent::config::{Secret, ServeArgs};
use flashrent::log::KafkaSettings;
use flashrent::settings::Settings;
use flashrent::startup::Application;
use flashrent_events::EventLog;
use flashrent_projections::ReadModels;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

pub struct InProcessApp {
    pub api: Api,
    pub data_dir: PathBuf,
    log: Arc<dyn EventLog>,
    models: ReadModels,
    stop: Option<oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _temp: Option<tempfile::TempDir>,
}

impl std::ops::Deref for InProcessApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// The tests' settings for a server on `dir`: those of [`super::TestApp`]'s processes (fast
/// devnet blocks and saga polls, writers that snapshot every few events, the tests' admin
/// token), then whatever `configure` changes.
pub fn test_settings(dir: &Path, configure: impl FnOnce(&mut Settings)) -> Settings {
    let argv: [&std::ffi::OsStr; 5] = [
        "flashrent".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ];
    let args = ServeArgs::parse_from(argv).expect("the tests' arguments parse");
    let mut settings = Settings::from_args(args).expect("the tests' settings are valid");
    settings.secrets.admin_token = Some(Secret::new(ADMIN.to_owned()));
    settings.chain.demo.block_ms = 50;
    settings.saga.poll_interval = Duration::from_millis(20);
    settings.writer_snapshot_every = 7;
    settings.http.workers = 2;
    if let Some(brokers) = kafka_brokers() {
        settings.store.kafka = Some(KafkaSettings {
            brokers,
            topic_prefix: topic_prefix(dir),
            partitions: settings.store.partitions,
            replication: 1,
            extra: vec![],
        });
    }
    configure(&mut settings);
    settings
}

/// The service in this process, on a temp data dir, with the tests' settings.
pub async fn spawn_app() -> InProcessApp {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut app = spawn_app_in(temp.path(), |_| {}).await;
    app._temp = Some(temp);
    app
}

/// The service in this process on an existing data dir (the caller keeps it alive), with
/// the tests' settings as `configure` changes them.
pub async fn spawn_app_in(dir: &Path, configure: impl FnOnce(&mut Settings)) -> InProcessApp {
    let app = Application::build(test_settings(dir, configure))
        .await
        .expect("the application builds");
    let (log, models) = (app.log(), app.models());
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    InProcessApp {
        api: Api::new(base, None),
        data_dir: dir.to_path_buf(),
        log,
        models,
        stop: Some(stop),
        running: Some(running),
        _temp: None,
    }
}

impl InProcessApp {
    /// Waits until every partition's read models have applied everything the log holds
    /// now (or panics after 30 s).
    pub async fn project_until_caught_up(&self) {
        for p in 0..self.log.partition_count() {
            let end = self.log.end_offset(p).await.expect("the log's end");
            let Some(last) = end.checked_sub(1) else {
                continue;
            };
            tokio::time::timeout(Duration::from_secs(30), self.models.wait_applied(p, last))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "partition {p}: the read models stayed at {} of {end}",
                        self.models.applied(p)
                    )
                });
        }
    }

    pub fn models(&self) -> &ReadModels {
        &self.models
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// Stops the service as a signal would, and waits until it has stopped: what
    /// `run_until` answered.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let running = self.running.take().expect("running until stopped");
        running.await.expect("the application's task")
    }
}

impl Drop for InProcessApp {
    fn drop(&mut self) {
        // Stops in the background, for as long as the test's runtime lives.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
