//! Instances on one Kafka topic: a paused old owner ("zombie") cannot make a decision that
//! counts once a newer instance has claimed the partitions, and commands sent to an instance
//! that no longer writes their partition are forwarded to the one that does.

#[path = "../common/mod.rs"]
mod common;

use common::{kafka_brokers, TestApp};
use std::process::Command;

fn signal(app: &TestApp, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(app.pid().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

#[tokio::test]
async fn a_frozen_old_owner_that_wakes_up_is_fenced_and_the_books_stay_right() {
    if kafka_brokers().is_none() {
        return;
    }
    let prefix = format!("fencing-{}.", uuid::Uuid::now_v7().simple());
    let env = [("FLASHRENT_KAFKA_TOPIC_PREFIX", prefix.as_str())];
    let old = TestApp::spawn_with(&env).await;
    assert_eq!(old.credit("31", "20", "d-31").await.status, 201);

    // Freeze the owner; a new instance takes every partition over.
    signal(&old, "STOP");
    let dir = tempfile::tempdir().unwrap();
    let new = TestApp::spawn_in(dir.path(), &env).await;
    assert_eq!(new.balance_sun("31").await, 20_000_000);
    for _ in 0..2 {
        assert_eq!(new.order("31", 65_000, "1h", "5.85").await.status, 201);
    }

    // The old owner wakes up still believing the balance is 20 TRX. Its decision is written
    // to the log, found to be under a newer claim, counts for no one, and is not
    // acknowledged: the request goes on to the new owner, which decides it on the real books.
    signal(&old, "CONT");
    let r = old.order("31", 65_000, "1h", "5.85").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = old.credit("31", "100", "d-31-later").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let expected = 20_000_000 - 3 * 5_850_000 + 100_000_000;
    // Read your writes on the instance that forwarded.
    assert_eq!(old.balance_sun("31").await, expected);

    // Every reader agrees, and none counts the zombie's own record (a fourth debit): the new
    // owner, the old one, and a third instance rebuilt from the log.
    assert_eq!(new.balance_sun("31").await, expected);
    let orders = new.get("/api/users/31/orders").await;
    assert_eq!(orders.body["orders"].as_array().unwrap().len(), 3);
    let third_dir = tempfile::tempdir().unwrap();
    let third = TestApp::spawn_in(third_dir.path(), &env).await;
    assert_eq!(third.balance_sun("31").await, expected);
    let orders = third.get("/api/users/31/orders").await;
    assert_eq!(orders.body["orders"].as_array().unwrap().len(), 3);
    // The third instance claimed everything last: the second now forwards to it.
    let r = new.credit("31", "1", "d-31-via-second").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let expected = expected + 1_000_000;
    assert_eq!(third.balance_sun("31").await, expected);
    let mut seen = 0;
    for _ in 0..200 {
        seen = old.balance_sun("31").await;
        if seen == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, expected);

    // The audit reads the same topic and proves the same books: the zombie's order and
    // credit are not in them.
    let out = Command::new(env!("CARGO_BIN_EXE_flashrent"))
        .args(["audit", "--no-compare", "--format", "json", "--user", "31"])
        .env("FLASHRENT_KAFKA_BROKERS", kafka_brokers().unwrap())
        .env("FLASHRENT_KAFKA_TOPIC_PREFIX", &prefix)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["summary"]["balances_sun"].as_u64(), Some(expected));
}
