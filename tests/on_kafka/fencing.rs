//! Instances on one Kafka topic: a paused old owner ("zombie") cannot make a decision that
//! counts once a newer instance has claimed the partitions, and commands sent to an instance
//! that no longer writes their partition are forwarded to the one that does.

#[path = "../common/mod.rs"]
mod common;

use common::{kafka_brokers, DevnetProc, TestApp, SUPPLIER_KEY};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// The partitions of the topic (FLASHRENT_PARTITIONS defaults to 8).
const ALL: u32 = 8;

/// The partitions `app` writes now, by its admin endpoint.
async fn written_here(app: &TestApp) -> BTreeSet<u64> {
    let r = app.get_admin("/api/admin/partitions").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["written_here"] == true)
        .map(|p| p["partition"].as_u64().unwrap())
        .collect()
}

/// Waits until every partition is written by exactly one of `apps`, and each of them writes
/// at least one; returns each one's share.
async fn wait_written_by(apps: &[&TestApp], partitions: u32) -> Vec<BTreeSet<u64>> {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let mut shares = Vec::new();
        for app in apps {
            shares.push(written_here(app).await);
        }
        let total: usize = shares.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<u64> = shares.iter().flatten().copied().collect();
        if total == partitions as usize
            && union.len() == partitions as usize
            && shares.iter().all(|s| !s.is_empty())
        {
            return shares;
        }
        assert!(
            Instant::now() < deadline,
            "partitions not split one writer each: {shares:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `flashrent audit` over the topic: its JSON report (it must find nothing wrong).
fn audit(prefix: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_flashrent"))
        .args(["audit", "--no-compare", "--format", "json"])
        .args(args)
        .env("FLASHRENT_KAFKA_BROKERS", kafka_brokers().unwrap())
        .env("FLASHRENT_KAFKA_TOPIC_PREFIX", prefix)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap()
}

async fn eventually_balance(app: &TestApp, user: &str, expected: u64) {
    let mut seen = 0;
    for _ in 0..200 {
        seen = app.balance_sun(user).await;
        if seen == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, expected, "user {user} on {}", app.base);
}

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

    // Freeze the owner. A new instance joins the writers' group; once the frozen one misses
    // its session, the group gives the new one every partition, and it claims them.
    signal(&old, "STOP");
    let dir = tempfile::tempdir().unwrap();
    let new = TestApp::spawn_in(dir.path(), &env).await;
    wait_written_by(&[&new], ALL).await;
    assert_eq!(new.balance_sun("31").await, 20_000_000);
    for _ in 0..2 {
        assert_eq!(new.order("31", 65_000, "1h", "5.85").await.status, 201);
    }

    // The old owner wakes up still believing the balance is 20 TRX and that it writes every
    // partition. A decision it makes before the group tells it otherwise is written to the
    // log, found to be under a newer claim, counts for no one, and is not acknowledged: the
    // request goes on to the owner, which decides it on the real books.
    signal(&old, "CONT");
    let r = old.order("31", 65_000, "1h", "5.85").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = old.credit("31", "100", "d-31-later").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let expected = 20_000_000 - 3 * 5_850_000 + 100_000_000;
    // Read your writes on the instance that forwarded.
    assert_eq!(old.balance_sun("31").await, expected);

    // Every reader agrees, and none counts the zombie's own record (a fourth debit): the new
    // owner, the old one, and a third instance rebuilt from the log. (The old one may have
    // been given the partition back by now; the others see its writes once they fetch them.)
    eventually_balance(&new, "31", expected).await;
    let orders = new.get("/api/users/31/orders").await;
    assert_eq!(orders.body["orders"].as_array().unwrap().len(), 3);
    let third_dir = tempfile::tempdir().unwrap();
    let third = TestApp::spawn_in(third_dir.path(), &env).await;
    eventually_balance(&third, "31", expected).await;
    let orders = third.get("/api/users/31/orders").await;
    assert_eq!(orders.body["orders"].as_array().unwrap().len(), 3);
    // The old instance rejoined the group, and the third joined it: the three share the
    // partitions, each written by exactly one of them.
    wait_written_by(&[&old, &new, &third], ALL).await;
    let r = new.credit("31", "1", "d-31-via-second").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let expected = expected + 1_000_000;
    assert_eq!(new.balance_sun("31").await, expected);
    for app in [&old, &third] {
        eventually_balance(app, "31", expected).await;
    }

    // The audit reads the same topic and proves the same books: the zombie's order and
    // credit are not in them.
    let doc = audit(&prefix, &["--user", "31"]);
    assert_eq!(doc["summary"]["balances_sun"].as_u64(), Some(expected));
}

#[tokio::test]
async fn partitions_are_split_between_live_instances_and_move_when_one_dies() {
    if kafka_brokers().is_none() {
        return;
    }
    // One chain for both instances, as in production.
    let devnet = DevnetProc::standard(0);
    let prefix = format!("split-{}.", uuid::Uuid::now_v7().simple());
    let env = [
        ("FLASHRENT_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("FLASHRENT_TRON_NODES", devnet.base.as_str()),
        ("FLASHRENT_SUPPLIER_KEYS", SUPPLIER_KEY),
    ];
    let a = TestApp::spawn_with(&env).await;
    let b_dir = tempfile::tempdir().unwrap();
    let mut b = TestApp::spawn_in(b_dir.path(), &env).await;
    let shares = wait_written_by(&[&a, &b], ALL).await;
    println!(
        "partitions written by a: {:?}, by b: {:?}",
        shares[0], shares[1]
    );

    // Users over every partition, each credited through one instance and ordering through
    // the other: every command reaches its partition's writer, and every order completes,
    // whichever instance writes its user and whichever writes the wallet pool.
    let users: Vec<String> = (1..=24).map(|u| (100 + u).to_string()).collect();
    let mut orders = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let (pay, buy) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let r = pay.credit(u, "20", &format!("d-{u}")).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = buy.order(u, 65_000, "1h", "5.85").await;
        assert_eq!(r.status, 201, "{}", r.body);
        orders.push(r.body["order_id"].as_str().unwrap().to_owned());
    }
    for id in &orders {
        let o = a.wait_final(id).await;
        assert_eq!(o["status"], "completed", "{o}");
    }

    // B dies without a word: its partitions move to A once B misses its session.
    b.kill();
    let started = Instant::now();
    wait_written_by(&[&a], ALL).await;
    println!(
        "partitions moved to the survivor in {:?}",
        started.elapsed()
    );
    for u in &users {
        let r = a.order(u, 65_000, "1h", "5.85").await;
        assert_eq!(r.status, 201, "{}", r.body);
        let o = a.wait_final(r.body["order_id"].as_str().unwrap()).await;
        assert_eq!(o["status"], "completed", "{o}");
        assert_eq!(a.balance_sun(u).await, 20_000_000 - 2 * 5_850_000);
    }

    // The books from the topic agree with what the survivor serves.
    let doc = audit(&prefix, &[]);
    let total = users.len() as u64 * (20_000_000 - 2 * 5_850_000);
    assert_eq!(
        doc["summary"]["balances_sun"].as_u64(),
        Some(total),
        "{doc}"
    );
}
