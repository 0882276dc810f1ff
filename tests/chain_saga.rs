//! The engine against a TRON devnet over HTTP: activation, exactly one delegation through
//! crashes at the saga's two dangerous points, and rental expiry across a restart.

mod common;

use common::{DevnetProc, TestApp, SUPPLIER_KEY};
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::Duration;

fn chain_env(devnet: &DevnetProc) -> Vec<(&'static str, String)> {
    vec![
        ("FLASHRENT_TRON_NODES", devnet.base.clone()),
        ("FLASHRENT_SUPPLIER_KEYS", SUPPLIER_KEY.to_owned()),
    ]
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Returns once the order's rental has ended by the clock (the engine is down meanwhile,
/// so its end is due when it comes back).
async fn until_rental_ended(order: &Value) {
    let ends: chrono::DateTime<chrono::Utc> = order["rental_ends_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no rental end: {order}"))
        .parse()
        .unwrap();
    let left = (ends - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(100)).await;
}

async fn place(app: &TestApp, user: &str, duration: &str, cost: &str) -> String {
    assert_eq!(app.credit(user, "10", "start").await.status, 201);
    let r = app.order(user, 65000, duration, cost).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["order_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_unactivated_receiver_fails_the_order_and_gives_its_energy_and_payment_back() {
    let app = TestApp::spawn().await;
    app.credit("71", "10", "c").await;
    // Vector B's address (private key 1) exists nowhere on the in-process devnet.
    let body = r#"{"user_id": "71", "energy_amount": 65000, "duration": "1h", "receive_address": "TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC", "cost_trx": 5.85}"#;
    let id = app.post_raw("/api/orders", body, &[]).await.body["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = app.wait_final(&id).await;
    assert_eq!(o["status"], "refunded");
    assert_eq!(o["failure_reason"], "receiver_not_activated");
    assert_eq!(o["supplier_wallet"], Value::Null);
    assert_eq!(app.balance_sun("71").await, 10_000_000);
    let pool = app.pool().await;
    assert_eq!(pool["wallets"][0]["reserved_energy"], 0);
    assert_eq!(pool["wallets"][0]["delegated_energy"], 0);
}

#[tokio::test]
async fn orders_a_full_saga_queue_turned_away_are_found_again_and_all_complete() {
    // A queue of two and one worker: nearly every order is turned away when it is placed,
    // and only the index of unfinished orders brings it back.
    let app = TestApp::spawn_with(&[
        ("FLASHRENT_SAGA_QUEUE", "2"),
        ("FLASHRENT_SAGA_CONCURRENCY", "1"),
    ])
    .await;
    assert_eq!(app.credit("91", "200", "c").await.status, 201);
    let mut ids = Vec::new();
    for _ in 0..24 {
        let r = app.order("91", 65000, "1h", "5.85").await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.body["order_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert_eq!(app.wait_final(id).await["status"], "completed", "{id}");
    }
    assert_eq!(app.balance_sun("91").await, 200_000_000 - 24 * 5_850_000);
}

/// Kills the server at `crash_at`, and starts it again, after the delegation's transaction
/// has expired when `tx_expiration_ms` is given (the devnet's builders make transactions
/// that live that long).
async fn crash_and_resume(crash_at: &str, tx_expiration_ms: Option<u64>) {
    let devnet = match tx_expiration_ms {
        None => DevnetProc::standard(50),
        Some(ms) => DevnetProc::standard_with(json!({
            "block_interval_ms": 50,
            "tx_expiration_ms": ms,
        })),
    };
    let temp = tempfile::tempdir().unwrap();
    let env = chain_env(&devnet);
    let mut crashing = env.clone();
    crashing.push(("FLASHRENT_CRASH_AT", crash_at.to_owned()));
    let mut app = TestApp::spawn_in(temp.path(), &refs(&crashing)).await;
    let id = place(&app, "81", "1h", "5.85").await;
    assert!(app.wait_exit(30), "the server did not stop at {crash_at}");
    // After a broadcast the delegation lands while the engine is down; after a mere signature
    // nothing does.
    let expected = u64::from(crash_at == "after_broadcast");
    let mut before = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        before = devnet.state().await["delegations_applied"]
            .as_u64()
            .unwrap();
        if before == 1 {
            break;
        }
    }
    assert_eq!(before, expected);
    if let Some(ms) = tx_expiration_ms {
        // Blocks come every 50 ms: the chain's clock passes the expiration with the wall's.
        tokio::time::sleep(Duration::from_millis(ms + 500)).await;
        let sent = devnet.requests("/wallet/broadcasthex").await;
        assert_eq!(sent, 1, "the transaction went out once before the restart");
    }

    let app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    let o = app.wait_final(&id).await;
    assert_eq!(o["status"], "completed", "{o}");
    // Any stray second delegation has landed before counting: the saga has nothing left to
    // do, and the devnet has made a block after that.
    app.until_saga_idle(30).await;
    just_after_a_block(&devnet).await;
    just_after_a_block(&devnet).await;
    let state = devnet.state().await;
    assert_eq!(state["delegations_applied"], 1, "{state}");
    assert_eq!(state["delegated_resources"].as_array().unwrap().len(), 1);
    let info = devnet
        .wallet(
            "/wallet/gettransactioninfobyid",
            json!({"value": o["transaction_hash"]}),
        )
        .await;
    assert!(info["blockNumber"].is_u64(), "{info}");
    // Paid once, never refunded, completed once.
    assert_eq!(app.balance_sun("81").await, 10_000_000 - 5_850_000);
    let causes: Vec<Value> = app.get("/api/users/81/ledger").await.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cause"].clone())
        .collect();
    assert_eq!(causes, vec![json!("credit"), json!("order_payment")]);
    let log = std::fs::read_to_string(temp.path().join("server.log")).unwrap();
    assert!(log.contains("using TRON full nodes"));
    assert!(!log.contains(SUPPLIER_KEY), "a private key reached the log");
}

#[tokio::test]
async fn killed_between_signed_and_broadcast_the_order_still_delegates_exactly_once() {
    crash_and_resume("after_sign", None).await;
}

#[tokio::test]
async fn killed_between_broadcast_and_confirmed_the_order_still_delegates_exactly_once() {
    crash_and_resume("after_broadcast", None).await;
}

#[tokio::test]
async fn restarted_after_its_landed_delegation_expired_the_order_still_delegates_exactly_once() {
    // Sent again after the restart, the landed transaction is answered "expired" (java-tron
    // checks the expiration before duplicates): the order must find it landed, not sign a
    // second delegation.
    crash_and_resume("after_broadcast", Some(2_000)).await;
}

#[tokio::test]
async fn restarted_after_its_landed_reclaim_expired_the_rental_still_ends_once() {
    let devnet = DevnetProc::standard_with(json!({
        "block_interval_ms": 50,
        "tx_expiration_ms": 2_000,
    }));
    let temp = tempfile::tempdir().unwrap();
    let mut env = chain_env(&devnet);
    env.push(("FLASHRENT_PRICES", "1m=10,1h=90".to_owned()));
    env.push(("FLASHRENT_RENTAL_TIME_SCALE", "0.05".to_owned()));
    let mut crashing = env.clone();
    crashing.push(("FLASHRENT_CRASH_AT", "after_reclaim_broadcast".to_owned()));
    let mut app = TestApp::spawn_in(temp.path(), &refs(&crashing)).await;
    let id = place(&app, "92", "1m", "0.65").await;
    assert!(
        app.wait_exit(30),
        "the server did not stop after the reclaim"
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let state = devnet.state().await;
    assert_eq!(state["undelegations_applied"], 1, "{state}");

    // Sent again, the landed reclaim is answered "expired": a fresh one would be refused
    // (nothing is delegated any more) and the rental would never end.
    let app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    let o = app
        .wait_order(&id, 30, |o| o["rental_ended_at"].is_string())
        .await;
    let state = devnet.state().await;
    assert_eq!(state["undelegations_applied"], 1, "{state}");
    assert_eq!(state["delegated_resources"], json!([]));
    assert_eq!(
        devnet.requests("/wallet/undelegateresource").await,
        1,
        "one reclaim built: {o}"
    );
}

#[tokio::test]
async fn a_rental_that_ends_while_the_engine_is_down_is_reclaimed_after_restart() {
    let devnet = DevnetProc::standard(50);
    let temp = tempfile::tempdir().unwrap();
    let mut env = chain_env(&devnet);
    env.push(("FLASHRENT_PRICES", "1m=10,1h=90".to_owned()));
    // One minute lasts 3 seconds.
    env.push(("FLASHRENT_RENTAL_TIME_SCALE", "0.05".to_owned()));
    let mut app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    let capacity = app.pool().await["wallets"][0]["energy_capacity"].clone();
    assert_eq!(
        capacity,
        json!(7_464_146),
        "pool inventory is read from the chain"
    );
    let id = place(&app, "91", "1m", "0.65").await;
    let o = app
        .wait_order(&id, 30, |o| o["status"] == "completed")
        .await;
    assert!(o["rental_ended_at"].is_null());
    app.kill();
    assert_eq!(devnet.state().await["delegations_applied"], 1);
    until_rental_ended(&o).await;

    let app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    let o = app
        .wait_order(&id, 30, |o| o["rental_ended_at"].is_string())
        .await;
    assert_eq!(o["reclaim_transaction_hash"].as_str().unwrap().len(), 64);
    let state = devnet.state().await;
    assert_eq!(state["undelegations_applied"], 1, "{state}");
    assert_eq!(state["delegated_resources"], json!([]));
    let supplier = flashrent::chain::tron::SecretKey::from_hex(SUPPLIER_KEY)
        .unwrap()
        .address()
        .to_hex();
    let max = devnet
        .wallet(
            "/wallet/getcandelegatedmaxsize",
            json!({"owner_address": supplier, "type": 1}),
        )
        .await;
    assert_eq!(max["max_size"], json!(100_000_000_000u64));
    let pool = app.pool().await;
    assert_eq!(pool["wallets"][0]["delegated_energy"], 0);
    assert_eq!(pool["wallets"][0]["available_energy"], capacity);
}

#[tokio::test]
async fn the_in_process_devnet_keeps_its_chain_across_a_restart() {
    let temp = tempfile::tempdir().unwrap();
    let env = [
        ("FLASHRENT_PRICES", "1m=10,1h=90"),
        ("FLASHRENT_RENTAL_TIME_SCALE", "0.05"),
    ];
    let mut app = TestApp::spawn_in(temp.path(), &env).await;
    let id = place(&app, "95", "1m", "0.65").await;
    let o = app
        .wait_order(&id, 30, |o| o["status"] == "completed")
        .await;
    assert!(o["rental_ended_at"].is_null());
    app.kill();
    assert!(temp.path().join("devnet").join("conf").exists());
    until_rental_ended(&o).await;
    let app = TestApp::spawn_in(temp.path(), &env).await;
    // The reclaim needs the delegation the first devnet confirmed.
    let o = app
        .wait_order(&id, 30, |o| o["rental_ended_at"].is_string())
        .await;
    assert_eq!(o["reclaim_transaction_hash"].as_str().unwrap().len(), 64);
    assert_eq!(app.pool().await["wallets"][0]["delegated_energy"], 0);
}

#[tokio::test]
async fn the_pool_capacity_follows_the_chain() {
    use flashrent::chain::tron::{EnergyTotals, SecretKey};
    let devnet = DevnetProc::standard(0);
    let temp = tempfile::tempdir().unwrap();
    let mut env = chain_env(&devnet);
    env.push(("FLASHRENT_INVENTORY_REFRESH_SECS", "1".to_owned()));
    let app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    let id = place(&app, "97", "1h", "5.85").await;
    assert_eq!(app.wait_final(&id).await["status"], "completed");
    // The supplier stakes another 100,000 TRX on chain.
    let supplier = SecretKey::from_hex(SUPPLIER_KEY).unwrap().address();
    let r = devnet
        .http
        .post(format!("{}/admin/accounts", devnet.base))
        .json(&json!({"address": supplier.to_base58(), "energy_stake_sun": 100_000_000_000u64}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let nile = EnergyTotals {
        limit: 180_000_000_000,
        weight: 2_411_528_185,
    };
    let expected = nile.sun_to_energy(200_000_000_000 - 870_829_623) + 65_000;
    let mut capacity = json!(null);
    for _ in 0..100 {
        capacity = app.pool().await["wallets"][0]["energy_capacity"].clone();
        if capacity == json!(expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(capacity, json!(expected));
    assert_eq!(app.pool().await["wallets"][0]["delegated_energy"], 65_000);
}

#[tokio::test]
async fn orders_complete_through_a_busy_node_a_lost_broadcast_and_a_failure_on_chain() {
    let devnet = DevnetProc::standard(0);
    let temp = tempfile::tempdir().unwrap();
    let env = chain_env(&devnet);
    let app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    let mut applied = 0;
    for (user, fault) in [
        (
            "101",
            json!({"refuse": {"code": "SERVER_BUSY", "count": 2}}),
        ),
        ("102", json!({"drop_broadcasts": 1})),
        (
            "103",
            json!({"refuse": {"code": "TAPOS_ERROR", "count": 1}}),
        ),
        ("104", json!({"fail_on_chain": 1})),
    ] {
        devnet.faults(fault.clone()).await;
        let id = place(&app, user, "1h", "5.85").await;
        let o = app.wait_final(&id).await;
        assert_eq!(o["status"], "completed", "{fault}: {o}");
        applied += 1;
        let state = devnet.state().await;
        assert_eq!(state["delegations_applied"], applied, "{fault}: {state}");
        let info = devnet
            .wallet(
                "/wallet/gettransactioninfobyid",
                json!({"value": o["transaction_hash"]}),
            )
            .await;
        assert!(info["result"].is_null(), "{fault}: completed with {info}");
    }
}

#[tokio::test]
async fn with_tron_locks_the_renter_is_protected_until_the_rental_ends_then_reclaimed() {
    let devnet = DevnetProc::standard(0);
    let temp = tempfile::tempdir().unwrap();
    let mut env = chain_env(&devnet);
    env.push(("FLASHRENT_TRON_LOCK", "true".to_owned()));
    env.push(("FLASHRENT_PRICES", "1m=10,1h=90".to_owned()));
    env.push(("FLASHRENT_RENTAL_TIME_SCALE", "0.1".to_owned()));
    let app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    let id = place(&app, "111", "1m", "0.65").await;
    app.wait_order(&id, 30, |o| o["status"] == "completed")
        .await;
    // 6 s of rental: a lock of 2 blocks on the pair.
    let record = devnet.state().await["delegated_resources"][0].clone();
    assert_eq!(record["locked"], 870_829_623, "{record}");
    assert_eq!(record["unlocked"], 0);
    let o = app
        .wait_order(&id, 30, |o| o["rental_ended_at"].is_string())
        .await;
    let ended = chrono::DateTime::parse_from_rfc3339(o["rental_ended_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(ended >= record["expire_time_for_energy"].as_i64().unwrap());
    assert_eq!(devnet.state().await["delegated_resources"], json!([]));
}

#[tokio::test]
async fn waiting_orders_learn_of_their_delegations_from_each_new_block_not_by_asking_each() {
    // Blocks every 3 s: an order asking on its own would ask several times before its
    // transaction lands; the block scan finds them all with one request per block.
    let devnet = DevnetProc::standard(3000);
    let temp = tempfile::tempdir().unwrap();
    let env = chain_env(&devnet);
    let app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    let mut ids = Vec::new();
    for user in 111..131 {
        ids.push(place(&app, &user.to_string(), "1h", "5.85").await);
    }
    for id in &ids {
        assert_eq!(app.wait_final(id).await["status"], "completed");
    }
    let state = devnet.state().await;
    assert_eq!(state["delegations_applied"], ids.len());
    let asked = devnet.requests("/wallet/gettransactioninfobyid").await;
    let scanned = devnet
        .requests("/wallet/gettransactioninfobyblocknum")
        .await;
    // At most one ask per transaction when the saga starts watching it (none for one watched
    // before it went out, see the next test), a second for one still waiting 5 s later;
    // without the scan, about six each.
    assert!(
        asked <= 2 * ids.len() as u64,
        "{asked} asks for {} orders",
        ids.len()
    );
    assert!(scanned > 0, "{state}");
}

#[tokio::test]
async fn transactions_watched_before_they_go_out_are_found_by_the_scan_with_a_block_per_broadcast()
{
    // The client takes TRON's 3 s blocks for granted, so while the scan knows its next block
    // the saga watches each transaction before its first broadcast and does not ask about it
    // right after. This devnet puts it in a block before the broadcast even returns: the scan
    // must still find every one, rather than the direct ask 5 s later, also in a second wave
    // after the scan went idle and started again at the head.
    let devnet = DevnetProc::standard(0);
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(temp.path(), &refs(&chain_env(&devnet))).await;
    let mut watched_ahead = 0;
    for wave in 0..2 {
        // An order whose broadcast the devnet drops keeps the scan going (it is sent again
        // 5 s later) while the others come, 10 ms apart.
        devnet.faults(json!({"drop_broadcasts": 1})).await;
        let anchor = place(&app, &(400 + wave * 10).to_string(), "1h", "5.85").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked_before = devnet.requests("/wallet/gettransactioninfobyid").await;
        let placed = join_all((1..10).map(|i| {
            let app = &app;
            async move {
                tokio::time::sleep(Duration::from_millis(10 * i)).await;
                let started = std::time::Instant::now();
                let id = place(app, &(400 + wave * 10 + i).to_string(), "1h", "5.85").await;
                let o = app
                    .wait_order(&id, 30, |o| o["status"] == "completed")
                    .await;
                (started.elapsed(), o)
            }
        }))
        .await;
        for (took, o) in placed {
            assert!(
                took < Duration::from_secs(4),
                "wave {wave}: an order waited {took:?}, for the direct ask: {o}"
            );
            watched_ahead += 1;
        }
        let asked = devnet.requests("/wallet/gettransactioninfobyid").await - asked_before;
        assert_eq!(
            asked, 0,
            "wave {wave}: orders sent while the scan ran were asked about"
        );
        app.wait_order(&anchor, 30, |o| o["status"] == "completed")
            .await;
        // Nothing waits on the chain for a while: the scan goes idle.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        devnet.state().await["delegations_applied"],
        watched_ahead + 2
    );
}

/// Returns once the devnet has just made a block: the next one is a whole interval away.
async fn just_after_a_block(devnet: &DevnetProc) {
    let head = devnet.state().await["head"].clone();
    while devnet.state().await["head"] == head {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Returns once the devnet's pool holds `n` transactions waiting for a block.
async fn until_pending(devnet: &DevnetProc, n: u64) {
    for _ in 0..1500 {
        if devnet.state().await["pending"] == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the devnet never held {n} pending transactions");
}

/// An order's first transaction waits in the pool for the next block (20 s away), and the
/// saga's rebroadcasts meanwhile are answered `code` (a node that lags, sits on a fork, or
/// judges the state differently): the order must complete with that transaction and no other.
async fn rebroadcasts_answered_while_it_waits_for_a_block(code: &str, user: &str) {
    let devnet = DevnetProc::standard(20_000);
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(temp.path(), &refs(&chain_env(&devnet))).await;
    just_after_a_block(&devnet).await;
    let id = place(&app, user, "1h", "5.85").await;
    until_pending(&devnet, 1).await;
    let first = app.get(&format!("/api/orders/{id}")).await.body["pending_transaction"].clone();
    assert!(first.is_string());
    devnet
        .faults(json!({"refuse": {"code": code, "count": 3}}))
        .await;
    let o = app
        .wait_order(&id, 60, |o| o["status"] == "completed")
        .await;
    assert!(
        devnet.requests("/wallet/broadcasthex").await >= 2,
        "no rebroadcast was answered before the block"
    );
    // A second transaction would have been built, and would have gone into the same block.
    let state = devnet.state().await;
    assert_eq!(state["delegations_applied"], 1, "{code}: {state}");
    assert_eq!(
        state["delegated_resources"][0]["unlocked"],
        json!(870_829_623),
        "{code}: {state}"
    );
    assert_eq!(o["transaction_hash"], first, "{o}");
    assert_eq!(devnet.requests("/wallet/delegateresource").await, 1);
}

#[tokio::test]
async fn a_delegation_whose_rebroadcasts_are_answered_tapos_error_while_it_waits_for_a_block_lands_once(
) {
    // The issue's reproduction: TAPOS_ERROR proves nothing; a second transaction signed on
    // the strength of it landed beside the first (1,741,659,246 SUN for one order).
    rebroadcasts_answered_while_it_waits_for_a_block("TAPOS_ERROR", "141").await;
}

#[tokio::test]
async fn a_delegation_whose_rebroadcasts_are_refused_while_it_waits_for_a_block_completes_and_is_not_refunded(
) {
    // A refusal from one node proves nothing either: failing the order on it refunded a
    // payment whose energy was delegated all the same.
    rebroadcasts_answered_while_it_waits_for_a_block("CONTRACT_VALIDATE_ERROR", "144").await;
}

#[tokio::test]
async fn a_reclaim_whose_rebroadcasts_are_answered_tapos_error_while_it_waits_for_a_block_takes_back_only_its_own_energy(
) {
    // Two rentals to one receiver from one supplier: a second reclaim for the first, signed
    // on the strength of a TAPOS_ERROR answer, would land beside the first and take back
    // the other rental's energy.
    let devnet = DevnetProc::standard(20_000);
    let temp = tempfile::tempdir().unwrap();
    let mut env = chain_env(&devnet);
    env.push(("FLASHRENT_PRICES", "1m=10,1h=90,1d=120".to_owned()));
    // One minute lasts 1.2 s, a day about 29 minutes.
    env.push(("FLASHRENT_RENTAL_TIME_SCALE", "0.02".to_owned()));
    let app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    let long = place(&app, "142", "1d", "7.8").await;
    let short = place(&app, "143", "1m", "0.65").await;
    for id in [&long, &short] {
        app.wait_order(id, 60, |o| o["status"] == "completed").await;
    }
    assert_eq!(devnet.state().await["delegations_applied"], 2);
    // The short rental's reclaim went out just after the block that held the delegations.
    until_pending(&devnet, 1).await;
    devnet
        .faults(json!({"refuse": {"code": "TAPOS_ERROR", "count": 3}}))
        .await;
    let o = app
        .wait_order(&short, 60, |o| o["rental_ended_at"].is_string())
        .await;
    // A second reclaim would have been built, and would have gone into the same block.
    let state = devnet.state().await;
    assert_eq!(state["undelegations_applied"], 1, "{state}");
    assert_eq!(
        state["delegated_resources"][0]["unlocked"],
        json!(870_829_623),
        "the long rental's energy is still delegated: {state}"
    );
    assert_eq!(
        devnet.requests("/wallet/undelegateresource").await,
        1,
        "{o}"
    );
    let long = app.get(&format!("/api/orders/{long}")).await.body;
    assert!(long["rental_ended_at"].is_null(), "{long}");
}

#[tokio::test]
async fn orders_to_one_unactivated_receiver_cost_the_node_one_question_and_are_all_refunded() {
    let devnet = DevnetProc::standard(0);
    let temp = tempfile::tempdir().unwrap();
    let mut env = chain_env(&devnet);
    env.push(("FLASHRENT_INACTIVE_RECEIVER_CACHE_SECS", "4".to_owned()));
    let app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    assert_eq!(app.credit("151", "100", "c").await.status, 201);
    // Vector B's address (private key 1) does not exist on the devnet.
    let nobody = "TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC";
    let body = format!(
        r#"{{"user_id": "151", "energy_amount": 65000, "duration": "1h", "receive_address": "{nobody}", "cost_trx": 5.85}}"#
    );
    let order = || async {
        let r = app.post_raw("/api/orders", &body, &[]).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["order_id"].as_str().unwrap().to_owned()
    };
    // Several at once, then one more after they are refunded.
    let mut ids = join_all((0..6).map(|_| order())).await;
    for id in &ids {
        assert_eq!(app.wait_final(id).await["status"], "refunded");
    }
    ids.push(order().await);
    for id in &ids {
        let o = app.wait_final(id).await;
        assert_eq!(o["status"], "refunded", "{o}");
        assert_eq!(o["failure_reason"], "receiver_not_activated");
    }
    assert_eq!(devnet.requests("/wallet/getaccount").await, 1);
    assert_eq!(app.balance_sun("151").await, 100_000_000);

    // The address is activated; once the negative answer is no longer believed, orders to
    // it go through.
    let r = devnet
        .http
        .post(format!("{}/admin/accounts", devnet.base))
        .json(&json!({"address": nobody, "balance_sun": 1_000_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let id = order().await;
    assert_eq!(app.wait_final(&id).await["status"], "completed");
    assert_eq!(devnet.requests("/wallet/getaccount").await, 2);
}

/// The value of a counter in the server's `/metrics`.
async fn counter(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.body;
    let text = text.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_jump_in_the_nodes_energy_rate_signs_nothing_until_an_operator_restarts_to_adopt_it() {
    use flashrent::chain::tron::{EnergyTotals, SecretKey};
    let devnet = DevnetProc::standard(50);
    let temp = tempfile::tempdir().unwrap();
    let env = chain_env(&devnet);
    let mut app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    let id = place(&app, "161", "1h", "5.85").await;
    assert_eq!(app.wait_final(&id).await["status"], "completed");
    // The node now says a unit of energy takes four times the stake.
    let jumped = EnergyTotals {
        limit: 180_000_000_000,
        weight: 4 * 2_411_528_185,
    };
    let r = devnet
        .http
        .post(format!("{}/admin/energy-totals", devnet.base))
        .json(&json!({"total_energy_limit": jumped.limit, "total_energy_weight": jumped.weight}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let supplier = SecretKey::from_hex(SUPPLIER_KEY).unwrap().address();
    let resource = json!({"address": supplier.to_hex()});
    while devnet
        .wallet("/wallet/getaccountresource", resource.clone())
        .await["TotalEnergyWeight"]
        != jumped.weight
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The client takes the totals it read at the head it saw last as the node's for up to
    // a second (a block changes them): the order must come after it can have read the new.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let built = devnet.requests("/wallet/delegateresource").await;
    let second = place(&app, "162", "1h", "5.85").await;
    let name = "flashrent_chain_energy_rate_refused_total";
    for _ in 0..500 {
        if counter(&app, name).await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(counter(&app, name).await >= 1.0, "{}", app.log_tail(20));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let o = app.get(&format!("/api/orders/{second}")).await.body;
    assert_ne!(o["status"], "completed", "{o}");
    assert_eq!(devnet.requests("/wallet/delegateresource").await, built);
    assert_eq!(devnet.state().await["delegations_applied"], 1);
    assert!(app.log_tail(200).contains("beyond the allowed factor"));

    // The operator checks the new rate against the chain and restarts: the first reading
    // after the start is the new reference.
    app.stop();
    let app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    assert_eq!(app.wait_final(&second).await["status"], "completed");
    let state = devnet.state().await;
    assert_eq!(state["delegations_applied"], 2);
    assert_eq!(
        state["delegated_resources"][0]["unlocked"],
        json!(870_829_623 + jumped.energy_to_sun(65_000).unwrap()),
        "{state}"
    );
}

#[tokio::test]
async fn restarted_while_its_delegation_waits_for_a_block_and_the_node_answers_tapos_error_it_still_delegates_once(
) {
    // After a restart the recorded transaction goes out again at once: a stale answer then
    // proves no more than during a run.
    let devnet = DevnetProc::standard(20_000);
    let temp = tempfile::tempdir().unwrap();
    let env = chain_env(&devnet);
    let mut crashing = env.clone();
    crashing.push(("FLASHRENT_CRASH_AT", "after_broadcast".to_owned()));
    let mut app = TestApp::spawn_in(temp.path(), &refs(&crashing)).await;
    just_after_a_block(&devnet).await;
    let id = place(&app, "171", "1h", "5.85").await;
    assert!(
        app.wait_exit(30),
        "the server did not stop after the broadcast"
    );
    assert_eq!(devnet.state().await["pending"], 1);
    devnet
        .faults(json!({"refuse": {"code": "TAPOS_ERROR", "count": 3}}))
        .await;
    let app = TestApp::spawn_in(temp.path(), &refs(&env)).await;
    let o = app
        .wait_order(&id, 60, |o| o["status"] == "completed")
        .await;
    let state = devnet.state().await;
    assert_eq!(state["delegations_applied"], 1, "{state}: {o}");
    assert_eq!(devnet.requests("/wallet/delegateresource").await, 1);
}

#[tokio::test]
async fn a_delegation_the_node_keeps_refusing_is_refunded_only_once_the_chain_is_past_its_expiry() {
    // Transactions live 2 s (plus the client's 6 s of grace): until then a refused one might
    // still be in another node's pool, so the order waits rather than refunding at once.
    let devnet = DevnetProc::standard_with(json!({
        "block_interval_ms": 50,
        "tx_expiration_ms": 2_000,
    }));
    devnet
        .faults(json!({"refuse": {"code": "BANDWITH_ERROR", "count": 1000}}))
        .await;
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(temp.path(), &refs(&chain_env(&devnet))).await;
    let id = place(&app, "181", "1h", "5.85").await;
    let o = app.wait_final(&id).await;
    assert_eq!(o["status"], "refunded", "{o}");
    assert_eq!(o["failure_reason"], "delegation_failed");
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(o[k].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    assert!(
        at("failed_at") - at("created_at") > 8_000,
        "failed before the transaction expired: {o}"
    );
    assert_eq!(app.balance_sun("181").await, 10_000_000);
    assert_eq!(devnet.state().await["delegations_applied"], 0);
    assert_eq!(devnet.requests("/wallet/delegateresource").await, 1);
}
