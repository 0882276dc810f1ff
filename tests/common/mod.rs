//! `TestApp`: the real `flashrent` binary on port 0 with its own data dir, driven over HTTP
//! (for what needs a process of its own: crashes, signals, the binary's output). And
//! `spawn_app()`: the same `Application` built in the test's process ([`in_process`]), whose
//! log and read models a test can wait on. Both are driven through [`Api`].
#![allow(dead_code)]

pub mod in_process;

#[allow(unused_imports)]
pub use in_process::{spawn_app, spawn_app_in, InProcessApp};

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN: &str = "test-admin-token";
pub const RENTER: &str = "TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2";
pub const SUPPLIER: &str = "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1";

/// The test targets named `*_on_kafka` run their suite with the event log on Kafka: the
/// broker at `FLASHRENT_TEST_KAFKA` (default `127.0.0.1:9092`, started by `kafka/broker.sh`).
/// Without a reachable broker they run on the embedded log and say so, unless
/// `FLASHRENT_REQUIRE_KAFKA` is set (CI sets it), which makes a missing broker a failure.
pub fn kafka_brokers() -> Option<String> {
    static BROKERS: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BROKERS
        .get_or_init(|| {
            if !env!("CARGO_CRATE_NAME").ends_with("_on_kafka") {
                return None;
            }
            let brokers =
                std::env::var("FLASHRENT_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
            let reachable = brokers
                .split(',')
                .filter_map(|a| a.parse::<std::net::SocketAddr>().ok())
                .any(|a| {
                    std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok()
                });
            if reachable {
                return Some(brokers);
            }
            assert!(
                std::env::var_os("FLASHRENT_REQUIRE_KAFKA").is_none(),
                "FLASHRENT_REQUIRE_KAFKA is set but no Kafka broker answers at {brokers} (kafka/broker.sh start)"
            );
            eprintln!("no Kafka broker at {brokers}: this suite runs on the embedded log instead (kafka/broker.sh start to run it on Kafka)");
            None
        })
        .clone()
}

/// One topic per data dir, the same across restarts on that dir.
pub fn topic_prefix(dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    std::process::id().hash(&mut h);
    format!("test-{:016x}.", h.finish())
}

pub struct TestApp {
    pub api: Api,
    pub data_dir: PathBuf,
    child: Child,
    _temp: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A server under test, over HTTP: its address, a client, and one helper per common call.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    /// The server's log, for what a failed wait prints.
    log_file: Option<PathBuf>,
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(env: &[(&str, &str)]) -> TestApp {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut app = Self::start(&dir, env);
        app._temp = Some(temp);
        app.wait_healthy().await;
        app
    }

    /// Starts a server on an existing data dir (the caller keeps the dir alive).
    pub async fn spawn_in(dir: &Path, env: &[(&str, &str)]) -> TestApp {
        let app = Self::start(dir, env);
        app.wait_healthy().await;
        app
    }

    fn start(dir: &Path, env: &[(&str, &str)]) -> TestApp {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flashrent"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("FLASHRENT_ADMIN_TOKEN", ADMIN)
            .env("FLASHRENT_DEVNET_BLOCK_MS", "50")
            .env("FLASHRENT_POLL_MS", "20")
            // Writers snapshot (and page their state out) every few events, so every test
            // exercises reading state back from a snapshot.
            .env("FLASHRENT_WRITER_SNAPSHOT_EVERY", "7")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(brokers) = kafka_brokers() {
            cmd.env("FLASHRENT_KAFKA_BROKERS", brokers)
                .env("FLASHRENT_KAFKA_TOPIC_PREFIX", topic_prefix(dir));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("flashrent starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("flashrent listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; see {}/server.log",
                    dir.display()
                )
            })
            .to_owned();
        TestApp {
            api: Api::new(base, Some(dir.join("server.log"))),
            data_dir: dir.to_path_buf(),
            child,
            _temp: None,
        }
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server never became healthy");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server the way an operator does (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        self.terminate();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `secs` for the server to exit; its exit status if it did.
    pub fn stop_within(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Api {
    pub fn new(base: String, log_file: Option<PathBuf>) -> Api {
        Api {
            base,
            http: http_client(),
            log_file,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.expect("request sent");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn post_raw(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    pub async fn get_admin(&self, path: &str) -> Resp {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(ADMIN),
        )
        .await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(ADMIN)
                .json(body),
        )
        .await
    }

    pub async fn credit(&self, user: &str, amount_trx: &str, reference: &str) -> Resp {
        let body: Value = serde_json::from_str(&format!(
            r#"{{"amount_trx": {amount_trx}, "reference": "{reference}"}}"#
        ))
        .unwrap();
        self.admin_post(&format!("/api/admin/users/{user}/credit"), &body)
            .await
    }

    pub async fn order(&self, user: &str, energy: u64, duration: &str, cost: &str) -> Resp {
        let body = format!(
            r#"{{"user_id": "{user}", "energy_amount": {energy}, "duration": "{duration}", "receive_address": "{RENTER}", "cost_trx": {cost}}}"#
        );
        self.post_raw("/api/orders", &body, &[]).await
    }

    pub async fn balance_sun(&self, user: &str) -> u64 {
        self.get(&format!("/api/users/{user}/balance")).await.body["balance_sun"]
            .as_u64()
            .unwrap()
    }

    /// The last `lines` of this server's log (it lives in the temp data dir, gone after the
    /// test); nothing for an in-process server.
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(file) = &self.log_file else {
            return String::new();
        };
        let log = std::fs::read_to_string(file).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Polls the order until `done` holds for it (or panics after `secs`).
    pub async fn wait_order(&self, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.get(&format!("/api/orders/{id}")).await;
            if r.status == 200 && done(&r.body) {
                return r.body;
            }
            assert!(
                Instant::now() < deadline,
                "order {id} did not get there in time: {}\n--- end of the server's log:\n{}",
                r.body,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_final(&self, id: &str) -> Value {
        self.wait_order(id, 30, |o| {
            o["status"] == "completed" || o["status"] == "refunded"
        })
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // The server's side of a failed test.
            eprintln!(
                "--- server log tail of {}:\n{}",
                self.base,
                self.log_tail(30)
            );
        }
    }
}

pub fn seed_order_body() -> Value {
    json!({"user_id": "123", "energy_amount": 65000, "duration": "1h", "receive_address": RENTER, "cost_trx": 5.85})
}

impl TestApp {
    /// Waits for the server to exit by itself (a crash point); `true` if it did.
    pub fn wait_exit(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Api {
    /// The pool's wallets (admin view).
    pub async fn pool(&self) -> Value {
        self.get_admin("/api/admin/wallet-pool/wallets").await.body
    }

    /// Orders the saga is working on now (`/readyz`).
    pub async fn saga_in_flight(&self) -> u64 {
        self.get("/readyz").await.body["saga_in_flight"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until the saga has no order in flight (or panics after `secs`).
    pub async fn until_saga_idle(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.saga_in_flight().await > 0 {
            assert!(Instant::now() < deadline, "the saga never went idle");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A `flashrent devnet` process on port 0, seeded from a JSON config, driven over HTTP.
pub struct DevnetProc {
    pub base: String,
    child: Child,
    _dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// A supplier key of the tests (never a real wallet) and its address.
pub const SUPPLIER_KEY: &str = "0b4d7a2f1c9e8d6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180716f5e4d3c2b1a091";

impl DevnetProc {
    /// `config` is the devnet's JSON seed (see `flashrent devnet --help`).
    pub fn spawn(config: Value) -> DevnetProc {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devnet.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("devnet.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_flashrent"))
            .args(["devnet", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("devnet starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("flashrent devnet listening on ")
            .unwrap_or_else(|| panic!("unexpected devnet line {line:?}"))
            .to_owned();
        DevnetProc {
            base,
            child,
            _dir: dir,
            http: http_client(),
        }
    }

    /// A devnet with one funded supplier (`SUPPLIER_KEY`, 100,000 TRX of ENERGY stake) and
    /// the activated `RENTER`.
    pub fn standard(block_ms: u64) -> DevnetProc {
        Self::standard_with(json!({ "block_interval_ms": block_ms }))
    }

    /// [`DevnetProc::standard`]'s accounts, with these settings of the seed
    /// (`block_interval_ms`, `tx_expiration_ms`, …).
    pub fn standard_with(mut settings: Value) -> DevnetProc {
        settings["accounts"] = json!([
            {"private_key": SUPPLIER_KEY, "balance_sun": 1_000_000_000, "energy_stake_sun": 100_000_000_000u64},
            {"address": RENTER, "balance_sun": 1_000_000},
        ]);
        Self::spawn(settings)
    }

    pub async fn state(&self) -> Value {
        json_of(self.http.get(format!("{}/admin/state", self.base))).await
    }

    /// How many requests to `path` the devnet has answered.
    pub async fn requests(&self, path: &str) -> u64 {
        self.state().await["requests"][path].as_u64().unwrap_or(0)
    }

    pub async fn faults(&self, faults: Value) {
        let r = self
            .http
            .post(format!("{}/admin/faults", self.base))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    pub async fn wallet(&self, path: &str, body: Value) -> Value {
        json_of(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }
}

/// The tests' HTTP client, for the server and the devnet (both actix-web).
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // Below actix's 5 s keep-alive, so an idle pooled connection is never one the server
        // is closing (a test that waits a while would see IncompleteMessage).
        .pool_idle_timeout(Duration::from_millis(1500))
        .build()
        .unwrap()
}

/// Sends `req` and parses its answer as JSON.
async fn json_of(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

impl Drop for DevnetProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
