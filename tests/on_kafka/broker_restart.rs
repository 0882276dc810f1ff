//! The broker stops and comes back under a running instance: commands fail fast with 503
//! and Retry-After, reads keep working, and afterwards nothing acknowledged is lost and
//! nothing is applied twice. It runs its own broker (kafka/broker.sh on another port), so
//! the other suites' broker is never stopped.

#[path = "../common/mod.rs"]
mod common;

use common::{kafka_brokers, TestApp};
use std::process::Command;
use std::time::{Duration, Instant};

struct Broker {
    port: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    fn run(&self, what: &str) {
        let ok = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/kafka/broker.sh"))
            .arg(what)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_DIR", self.dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kafka/broker.sh {what}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.run("stop");
    }
}

#[tokio::test]
async fn commands_fail_fast_while_the_broker_is_down_and_resume_when_it_is_back() {
    if kafka_brokers().is_none() {
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let broker = Broker {
        port,
        dir: tempfile::tempdir().unwrap(),
    };
    broker.run("start");
    let brokers = format!("127.0.0.1:{port}");
    let env = [("FLASHRENT_KAFKA_BROKERS", brokers.as_str())];
    let app = TestApp::spawn_with(&env).await;
    assert_eq!(app.credit("41", "100", "d-41").await.status, 201);
    let mut acknowledged = 0;
    for _ in 0..3 {
        assert_eq!(app.order("41", 65_000, "1h", "5.85").await.status, 201);
        acknowledged += 1;
    }

    broker.run("stop");
    let started = Instant::now();
    let r = app.order("41", 65_000, "1h", "5.85").await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    eprintln!("a command with the broker down answered 503 in {took:?}");
    assert!(took < Duration::from_secs(8), "a command hung {took:?}");
    // Reads come from sled.
    let b = app.get("/api/users/41/balance").await;
    assert_eq!(b.status, 200);

    broker.run("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = app.order("41", 65_000, "1h", "5.85").await;
        if r.status == 201 {
            acknowledged += 1;
            break;
        }
        // Refused until the writer has reloaded the whole history; never decided without it.
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(
            Instant::now() < deadline,
            "commands never resumed:\n{}",
            app.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for _ in 0..2 {
        assert_eq!(app.order("41", 65_000, "1h", "5.85").await.status, 201);
        acknowledged += 1;
    }

    // A fresh instance built from the log alone agrees with what was acknowledged.
    let dir = tempfile::tempdir().unwrap();
    let prefix = common::topic_prefix(&app.data_dir);
    let fresh = TestApp::spawn_in(
        dir.path(),
        &[
            ("FLASHRENT_KAFKA_BROKERS", brokers.as_str()),
            ("FLASHRENT_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ],
    )
    .await;
    let expected = 100_000_000 - acknowledged * 5_850_000;
    assert_eq!(fresh.balance_sun("41").await, expected);
    assert_eq!(app.balance_sun("41").await, expected);
    let orders = fresh.get("/api/users/41/orders?limit=100").await;
    assert_eq!(
        orders.body["orders"].as_array().unwrap().len() as u64,
        acknowledged
    );
}

fn serve_fails(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_flashrent"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .envs(env.iter().copied())
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn without_a_broker_or_with_a_topic_of_other_partitions_serve_stops_with_a_clear_error() {
    let err = serve_fails(&[("FLASHRENT_KAFKA_BROKERS", "127.0.0.1:1")]);
    assert!(
        err.contains("no Kafka broker answered at 127.0.0.1:1"),
        "{err}"
    );

    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let prefix = format!("partitions-{}.", uuid::Uuid::now_v7().simple());
    let env = [
        ("FLASHRENT_KAFKA_BROKERS", brokers.as_str()),
        ("FLASHRENT_KAFKA_TOPIC_PREFIX", prefix.as_str()),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(TestApp::spawn_with(&env));
    drop(app);
    let mut other = env.to_vec();
    other.push(("FLASHRENT_PARTITIONS", "4"));
    let err = serve_fails(&other);
    assert!(
        err.contains("has 8 partitions but flashrent is configured for 4"),
        "{err}"
    );
}
