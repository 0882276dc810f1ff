//! Order-to-completed latency against the in-process devnet, with a block per broadcast
//! and with 3 s blocks. Ignored by default (it takes a while); run it with
//!
//! ```sh
//! cargo test --release --test latency -- --ignored --nocapture
//! ```
//!
//! `LATENCY_ORDERS` (default 40) orders are placed at random moments over a few seconds,
//! so they meet the block timer at random phases; each is polled every 5 ms until completed.

mod common;

use common::TestApp;
use std::time::{Duration, Instant};

async fn measure(block_ms: &str, poll_ms: &str) -> Vec<Duration> {
    let n: usize = std::env::var("LATENCY_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let app = TestApp::spawn_with(&[
        ("FLASHRENT_DEVNET_BLOCK_MS", block_ms),
        ("FLASHRENT_POLL_MS", poll_ms),
        ("RUST_LOG", "warn"),
    ])
    .await;
    app.credit("1", "100000", "lat").await;
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..n {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((i as u64 * 7919) % 6000)).await;
            let t0 = Instant::now();
            let r = app.order("1", 65000, "1h", "5.85").await;
            let id = r.body["order_id"].as_str().unwrap().to_owned();
            loop {
                let o = app.get(&format!("/api/orders/{id}")).await.body;
                if o["status"] == "completed" {
                    return t0.elapsed();
                }
                assert_ne!(o["status"], "refunded", "{o}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out.sort();
    let log = std::fs::read_to_string(app.data_dir.join("server.log")).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("WARN")).take(5) {
        println!("  server warning: {line}");
    }
    out
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn order_to_completed_latency_against_the_devnet() {
    for (label, block_ms, poll_ms) in [
        ("immediate blocks, poll 100 ms (default)", "0", "100"),
        ("immediate blocks, poll 20 ms", "0", "20"),
        ("3 s blocks, poll 100 ms (default)", "3000", "100"),
    ] {
        let v = measure(block_ms, poll_ms).await;
        println!(
            "{label}: n={} p50={:?} p99={:?} min={:?} max={:?}",
            v.len(),
            pct(&v, 0.50),
            pct(&v, 0.99),
            v[0],
            v[v.len() - 1]
        );
    }
}
