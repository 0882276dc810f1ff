//! A server killed with SIGKILL in the middle of the flow loses no acknowledged order, and
//! after a restart on the same data dir finishes or refunds every one.

mod common;

use common::TestApp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_server_resumes_every_acknowledged_order_without_losing_or_doubling_money() {
    let temp = tempfile::tempdir().unwrap();
    // A slow chain keeps many orders in flight when the kill comes.
    let env = [
        ("FLASHRENT_DEVNET_BLOCK_MS", "400"),
        ("FLASHRENT_DEMO_SUPPLIER_ENERGY", "6500000"),
    ];
    let mut app = TestApp::spawn_in(temp.path(), &env).await;
    let users: Vec<String> = (1..=10).map(|u| (2000 + u).to_string()).collect();
    for u in &users {
        assert_eq!(app.credit(u, "100", "start").await.status, 201);
    }
    // The pool covers 100 orders; anything beyond fails and must be refunded.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let base = app.base.clone();
    let mut load = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let (acked, base, u) = (acked.clone(), base.clone(), u.clone());
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for n in 0..15 {
                let body = format!(r#"{{"user_id":"{u}","energy_amount":65000,"duration":"1h","receive_address":"{}","cost_trx":5.85}}"#, common::RENTER);
                let r = http.post(format!("{base}/api/orders")).header("content-type", "application/json").header("Idempotency-Key", format!("{i}-{n}")).body(body).send().await;
                match r {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let v: serde_json::Value = r.json().await.unwrap();
                        acked.lock().unwrap().push((u.clone(), v["order_id"].as_str().unwrap().to_owned()));
                    }
                    _ => break,
                }
            }
        }));
    }
    // The kill comes in the middle of the load: once part of it is acknowledged and the
    // saga is driving orders on the slow chain.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 40 || app.saga_in_flight().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the load never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.kill();
    for l in load {
        let _ = l.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 10,
        "the load should have been acknowledged before the kill (got {})",
        acked.len()
    );

    let app = TestApp::spawn_in(temp.path(), &env).await;
    let mut paid: HashMap<String, u64> = HashMap::new();
    for (user, id) in &acked {
        let o = app.wait_final(id).await;
        if o["status"] == "completed" {
            assert_eq!(o["transaction_hash"].as_str().unwrap().len(), 64);
            *paid.entry(user.clone()).or_default() += 5_850_000;
        }
    }
    for u in &users {
        // Every order the user has (acknowledged or cut off by the kill) is final, and the
        // balance is the credit less the completed ones.
        let orders = app
            .get(&format!("/api/users/{u}/orders?limit=200"))
            .await
            .body["orders"]
            .clone();
        let mut completed = 0u64;
        for o in orders.as_array().unwrap() {
            let o = app.wait_final(o["order_id"].as_str().unwrap()).await;
            if o["status"] == "completed" {
                completed += 5_850_000;
            }
        }
        assert!(completed >= *paid.get(u).unwrap_or(&0));
        assert_eq!(
            app.balance_sun(u).await,
            100_000_000 - completed,
            "user {u}"
        );
        let ledger = app
            .get(&format!("/api/users/{u}/ledger?limit=500"))
            .await
            .body["entries"]
            .clone();
        let refunds: Vec<_> = ledger
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["cause"] == "refund")
            .map(|e| e["order_id"].clone())
            .collect();
        let mut unique = refunds.clone();
        unique.dedup();
        assert_eq!(refunds.len(), unique.len(), "no order refunded twice");
    }
}

#[test]
fn a_server_told_to_stop_at_a_point_the_saga_does_not_have_refuses_to_start() {
    let temp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flashrent"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(temp.path())
        .env("FLASHRENT_ADMIN_TOKEN", "crash-test-token")
        .env("FLASHRENT_CRASH_AT", "after_signing")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with a crash point it does not have");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    assert!(!status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FLASHRENT_CRASH_AT"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}
