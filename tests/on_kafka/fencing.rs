//! Two instances on one Kafka topic: a paused old owner ("zombie") cannot make a decision
//! that counts once a newer instance has claimed the partitions.

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

    // The old owner wakes up still believing the balance is 20 TRX: its decision is written
    // to the log, found to be under a newer claim, and not acknowledged.
    signal(&old, "CONT");
    let r = old.order("31", 65_000, "1h", "5.85").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    let r = old.credit("31", "100", "d-31-zombie").await;
    assert_eq!(r.status, 503, "{}", r.body);

    // Every reader ignores what the zombie appended: the new owner, the old one's own
    // projector, and a third instance rebuilt from the log.
    let expected = 20_000_000 - 2 * 5_850_000;
    assert_eq!(new.balance_sun("31").await, expected);
    let orders = new.get("/api/users/31/orders").await;
    assert_eq!(orders.body["orders"].as_array().unwrap().len(), 2);
    let third_dir = tempfile::tempdir().unwrap();
    let third = TestApp::spawn_in(third_dir.path(), &env).await;
    assert_eq!(third.balance_sun("31").await, expected);
    let orders = third.get("/api/users/31/orders").await;
    assert_eq!(orders.body["orders"].as_array().unwrap().len(), 2);
    let mut seen = 0;
    for _ in 0..200 {
        seen = old.balance_sun("31").await;
        if seen == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, expected);
}
