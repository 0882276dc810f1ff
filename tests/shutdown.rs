//! A graceful stop: every long-lived task is told to stop and awaited, in the order the
//! service depends on them (what makes commands, the writers, the read side), so what was
//! under way is finished, not cut off; a restart then takes up exactly where it stopped.

mod common;

use common::{spawn_app_in, DevnetProc, TestApp, RENTER, SUPPLIER_KEY};
use flashrent_projections::{ReadModels, READ_MODELS};
use flashrent_store::SledStore;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRICE_SUN: i64 = 5_850_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_stopped_by_sigterm_mid_flow_stops_promptly_and_resumes_with_nothing_lost_or_doubled(
) {
    // Blocks 400 ms apart: delegations wait on the chain when the stop comes.
    let devnet = DevnetProc::standard(400);
    let temp = tempfile::tempdir().unwrap();
    let env = [
        ("FLASHRENT_TRON_NODES", devnet.base.as_str()),
        ("FLASHRENT_SUPPLIER_KEYS", SUPPLIER_KEY),
    ];
    let mut app = TestApp::spawn_in(temp.path(), &env).await;
    let users: Vec<String> = (1..=8).map(|u| (3000 + u).to_string()).collect();
    for u in &users {
        assert_eq!(app.credit(u, "50", "start").await.status, 201);
    }
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut load = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let (acked, base, u) = (acked.clone(), app.base.clone(), u.clone());
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for n in 0..6 {
                let body = format!(r#"{{"user_id":"{u}","energy_amount":65000,"duration":"1h","receive_address":"{RENTER}","cost_trx":5.85}}"#);
                let r = http
                    .post(format!("{base}/api/orders"))
                    .header("content-type", "application/json")
                    .header("Idempotency-Key", format!("{i}-{n}"))
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let v: Value = r.json().await.unwrap();
                        let id = v["order_id"].as_str().unwrap().to_owned();
                        acked.lock().unwrap().push((u.clone(), id));
                    }
                    _ => break,
                }
            }
        }));
    }
    // The stop comes while orders are acknowledged and the saga is busy with them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 16 || app.saga_in_flight().await == 0 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = app.stop_within(60);
    let status = stopped.expect("the server did not stop within a minute of SIGTERM");
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
    let log = std::fs::read_to_string(temp.path().join("server.log")).unwrap();
    assert!(
        log.contains("stopped: every task finished its work")
            && !log.contains("did not stop in time"),
        "{}",
        app.log_tail(30)
    );
    for l in load {
        let _ = l.await;
    }
    let acked = acked.lock().unwrap().clone();

    let app = TestApp::spawn_in(temp.path(), &env).await;
    let mut hashes = HashSet::new();
    let mut completed = 0;
    for u in &users {
        let orders = app
            .get(&format!("/api/users/{u}/orders?limit=200"))
            .await
            .body["orders"]
            .as_array()
            .unwrap()
            .clone();
        let ids: HashSet<String> = orders
            .iter()
            .map(|o| o["order_id"].as_str().unwrap().to_owned())
            .collect();
        // Every acknowledged order is there after the restart.
        for (_, id) in acked.iter().filter(|(owner, _)| owner == u) {
            assert!(ids.contains(id), "acknowledged order {id} of {u} was lost");
        }
        let mut paid = 0;
        let mut refunded = 0;
        for id in &ids {
            let o = app.wait_final(id).await;
            if o["status"] == "completed" {
                paid += 1;
                let hash = o["transaction_hash"].as_str().unwrap().to_owned();
                assert!(hashes.insert(hash), "two orders with one delegation: {o}");
            } else {
                refunded += 1;
            }
        }
        completed += paid;
        // Paid once per completed order, refunded once per failed one, never doubled.
        let balance = app.balance_sun(u).await as i64;
        assert_eq!(balance, 50_000_000 - paid * PRICE_SUN, "user {u}");
        let ledger = app
            .get(&format!("/api/users/{u}/ledger?limit=500"))
            .await
            .body["entries"]
            .as_array()
            .unwrap()
            .clone();
        let causes: HashMap<String, i64> = ledger.iter().fold(HashMap::new(), |mut m, e| {
            *m.entry(e["cause"].as_str().unwrap().to_owned())
                .or_default() += 1;
            m
        });
        assert_eq!(causes.get("credit"), Some(&1), "{causes:?}");
        assert_eq!(
            causes.get("order_payment").copied().unwrap_or(0),
            ids.len() as i64,
            "{causes:?}"
        );
        assert_eq!(
            causes.get("refund").copied().unwrap_or(0),
            refunded,
            "{causes:?}"
        );
        let sum: i64 = ledger
            .iter()
            .map(|e| e["delta_sun"].as_i64().unwrap())
            .sum();
        assert_eq!(sum, balance);
    }
    assert!(completed > 0);
    // Each completed order was delegated once on the chain, and nothing else was.
    app.until_saga_idle(30).await;
    let state = devnet.state().await;
    assert_eq!(state["delegations_applied"], completed, "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_in_process_leaves_the_read_models_on_disk_at_the_end_of_the_log() {
    let temp = tempfile::tempdir().unwrap();
    let app = spawn_app_in(temp.path(), |_| {}).await;
    assert_eq!(app.credit("3101", "100", "start").await.status, 201);
    let placed =
        futures_util::future::join_all((0..10).map(|_| app.order("3101", 65000, "1h", "5.85")))
            .await;
    assert!(placed.iter().all(|r| r.status == 201));
    // Stopped while the saga drives them: its last steps, and the writers' last records,
    // are applied before the read side stops, and written to disk before the stop returns.
    let log = app.log().clone();
    app.stop().await.expect("a graceful stop");
    let mut ends = Vec::new();
    for p in 0..log.partition_count() {
        ends.push(log.end_offset(p).await.unwrap());
    }
    drop(log);
    let models = reopen(&temp.path().join("read-models"), ends.len() as u32).await;
    let applied: Vec<u64> = (0..ends.len() as u32)
        .map(|p| models.checkpoint(READ_MODELS, p).unwrap())
        .collect();
    assert_eq!(applied, ends);
}

/// The read models of a stopped server, once sled has let go of its files.
async fn reopen(dir: &std::path::Path, partitions: u32) -> ReadModels {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SledStore::open(dir, 1 << 20) {
            Ok(sled) => return ReadModels::open_in(&sled, partitions).unwrap(),
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the read models stay locked: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
