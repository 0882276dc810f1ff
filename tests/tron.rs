//! The TRON client against a `flashrent devnet` process, over HTTP: delegate, confirm,
//! undelegate, activation, each error class, a lying node, a dead primary node.

mod common;

use common::{DevnetProc, RENTER, SUPPLIER_KEY};
use flashrent::chain::tron::{proto, SecretKey, TronClient, TronConfig};
use flashrent::chain::{Chain, ChainError, Delegation, TxStatus};
use flashrent_events::{EnergyAmount, OrderId, TronAddress, TxId};
use serde_json::json;
use std::time::Duration;

fn client(nodes: Vec<String>) -> TronClient {
    let mut config = TronConfig::new(nodes);
    config.retry_backoff = Duration::from_millis(10);
    config.request_timeout = Duration::from_secs(2);
    TronClient::new(config, vec![SecretKey::from_hex(SUPPLIER_KEY).unwrap()]).unwrap()
}

fn supplier() -> TronAddress {
    SecretKey::from_hex(SUPPLIER_KEY).unwrap().address()
}

fn delegation(energy: u64) -> Delegation {
    Delegation {
        from: supplier(),
        to: TronAddress::parse(RENTER).unwrap(),
        energy: EnergyAmount::new(energy).unwrap(),
        lock_seconds: 3600,
        delegation_tx: None,
        order: OrderId::new_v7(),
    }
}

/// Returns once the wall clock (what the devnet judges expiry by) is past `at`.
async fn until_past(at: chrono::DateTime<chrono::Utc>) {
    let left = (at - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(20)).await;
    assert!(chrono::Utc::now() > at);
}

async fn until_final(c: &TronClient, id: &TxId) -> TxStatus {
    for _ in 0..200 {
        match c.status(id).await.unwrap() {
            TxStatus::Unknown | TxStatus::Pending => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            s => return s,
        }
    }
    panic!("{id} never landed");
}

#[tokio::test]
async fn the_client_delegates_confirms_and_undelegates_on_the_devnet() {
    let devnet = DevnetProc::standard(100);
    let c = client(vec![devnet.base.clone()]);
    assert!(c
        .is_activated(&TronAddress::parse(RENTER).unwrap())
        .await
        .unwrap());
    let nobody = TronAddress::parse("TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC").unwrap();
    assert!(!c.is_activated(&nobody).await.unwrap());
    // 100,000 TRX at the Nile rate (74.64 energy per TRX).
    assert_eq!(c.delegatable_energy(&supplier()).await.unwrap(), 7_464_146);

    let tx = c.sign_delegation(&delegation(65_000)).await.unwrap();
    c.broadcast(&tx).await.unwrap();
    // The same bytes again: already known, which is success.
    c.broadcast(&tx).await.unwrap();
    let TxStatus::Confirmed { block } = until_final(&c, &tx.tx_id).await else {
        panic!("the delegation did not land");
    };
    assert!(block > 0);
    // The block scan the saga waits with: the block lists the transaction, as confirmed.
    assert!(c.head_block().await.unwrap().number >= block);
    assert_eq!(
        c.block_outcomes(block).await.unwrap(),
        vec![(tx.tx_id, TxStatus::Confirmed { block })]
    );
    assert_eq!(c.block_outcomes(0).await.unwrap(), vec![]);
    let state = devnet.state().await;
    assert_eq!(state["delegations_applied"], 1);
    // ceil(65,000 · W · 10⁶ / L): the renter gets at least the energy paid for.
    assert_eq!(
        state["delegated_resources"][0]["unlocked"],
        json!(870_829_623)
    );

    let reclaim = Delegation {
        delegation_tx: Some(tx.tx_id),
        ..delegation(65_000)
    };
    let back = c.sign_reclaim(&reclaim).await.unwrap();
    c.broadcast(&back).await.unwrap();
    assert!(matches!(
        until_final(&c, &back.tx_id).await,
        TxStatus::Confirmed { .. }
    ));
    let state = devnet.state().await;
    assert_eq!(state["undelegations_applied"], 1);
    assert_eq!(state["delegated_resources"], json!([]));
    assert_eq!(c.delegatable_energy(&supplier()).await.unwrap(), 7_464_146);
}

#[tokio::test]
async fn a_node_that_answers_with_a_tampered_transaction_gets_no_signature() {
    let devnet = DevnetProc::standard(0);
    devnet.faults(json!({"tamper_build": true})).await;
    let c = client(vec![devnet.base.clone()]);
    match c.sign_delegation(&delegation(65_000)).await {
        Err(ChainError::Refused(why)) => assert!(why.contains("will not sign"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(devnet.state().await["delegations_applied"], 0);
}

#[tokio::test]
async fn each_tron_error_class_maps_to_what_the_saga_expects() {
    let devnet = DevnetProc::spawn(json!({
        "block_interval_ms": 0,
        "tx_expiration_ms": 1500,
        "accounts": [
            {"private_key": SUPPLIER_KEY, "balance_sun": 1_000_000_000, "energy_stake_sun": 100_000_000_000u64},
            {"address": RENTER, "balance_sun": 1},
        ]
    }));
    let c = client(vec![devnet.base.clone()]);

    // Retryable: the node is busy (and still is after the client's own retries).
    let tx = c.sign_delegation(&delegation(65_000)).await.unwrap();
    devnet
        .faults(json!({"refuse": {"code": "SERVER_BUSY", "count": 1}}))
        .await;
    assert!(matches!(
        c.broadcast(&tx).await,
        Err(ChainError::Retryable(_))
    ));
    // Stale: the reference block is unknown to this node (not proof that it can never land).
    devnet
        .faults(json!({"refuse": {"code": "TAPOS_ERROR", "count": 1}}))
        .await;
    assert!(matches!(c.broadcast(&tx).await, Err(ChainError::Stale(_))));
    // Done: the busy node never took it, the next broadcast does, the one after is a dup.
    c.broadcast(&tx).await.unwrap();
    c.broadcast(&tx).await.unwrap();

    // Stale: really expired.
    let late = c.sign_delegation(&delegation(20_000)).await.unwrap();
    until_past(late.expires_at).await;
    match c.broadcast(&late).await {
        Err(ChainError::Stale(why)) => assert!(why.contains("TRANSACTION_EXPIRATION_ERROR")),
        other => panic!("expected stale, got {other:?}"),
    }

    // Final: signed by a key that does not own the wallet (a real signature check).
    let built = devnet
        .wallet(
            "/wallet/delegateresource",
            json!({"owner_address": supplier().to_hex(), "receiver_address": TronAddress::parse(RENTER).unwrap().to_hex(),
                   "balance": 2_000_000, "resource": "ENERGY"}),
        )
        .await;
    let raw = hex::decode(built["raw_data_hex"].as_str().unwrap()).unwrap();
    let stranger = SecretKey::from_hex(&format!("{:064x}", 7)).unwrap();
    let sig = stranger.sign_tx_id(&proto::tx_id(&raw));
    let answer = devnet
        .wallet(
            "/wallet/broadcasthex",
            json!({"transaction": hex::encode(proto::encode_signed(&raw, &[sig]))}),
        )
        .await;
    assert_eq!(answer["code"], "SIGERROR", "{answer}");
    let forged = flashrent::chain::SignedTransaction {
        tx_id: TxId::from_bytes(proto::tx_id(&raw)),
        signed_tx: hex::encode(proto::encode_signed(&raw, &[sig])),
        expires_at: chrono::Utc::now() + chrono::Duration::seconds(60),
    };
    assert!(matches!(
        c.broadcast(&forged).await,
        Err(ChainError::Refused(_))
    ));

    // Final: contract validation (more than the wallet has staked), refused at build time.
    match c.sign_delegation(&delegation(9_000_000)).await {
        Err(ChainError::Refused(why)) => assert!(why.contains("FreezeEnergyV2"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Failed on chain: in a block, result FAILED.
    devnet.faults(json!({"fail_on_chain": 1})).await;
    let doomed = c.sign_delegation(&delegation(30_000)).await.unwrap();
    c.broadcast(&doomed).await.unwrap();
    let failed = until_final(&c, &doomed.tx_id).await;
    assert!(matches!(failed, TxStatus::Failed { .. }));
    let info = devnet
        .wallet(
            "/wallet/gettransactioninfobyid",
            json!({"value": doomed.tx_id}),
        )
        .await;
    let outcomes = c
        .block_outcomes(info["blockNumber"].as_u64().unwrap())
        .await
        .unwrap();
    assert!(outcomes.contains(&(doomed.tx_id, failed)), "{outcomes:?}");
    // A dropped broadcast: accepted, never seen — the saga's expiry path.
    devnet.faults(json!({"drop_broadcasts": 1})).await;
    let lost = c.sign_delegation(&delegation(30_000)).await.unwrap();
    c.broadcast(&lost).await.unwrap();
    assert_eq!(c.status(&lost.tx_id).await.unwrap(), TxStatus::Unknown);
    assert_eq!(devnet.state().await["delegations_applied"], 1);
}

#[tokio::test]
async fn a_dead_or_failing_primary_node_falls_back_to_the_backup() {
    let devnet = DevnetProc::standard(0);
    let broken = DevnetProc::standard(0);
    broken.faults(json!({"down": true})).await;
    // Nothing listens on port 1; the second node answers 503; the third works.
    let c = client(vec![
        "http://127.0.0.1:1".into(),
        broken.base.clone(),
        devnet.base.clone(),
    ]);
    let tx = c.sign_delegation(&delegation(65_000)).await.unwrap();
    c.broadcast(&tx).await.unwrap();
    assert!(matches!(
        until_final(&c, &tx.tx_id).await,
        TxStatus::Confirmed { .. }
    ));
    assert_eq!(devnet.state().await["delegations_applied"], 1);
    // A node that times out is passed over the same way.
    let slow = DevnetProc::standard(0);
    slow.faults(json!({"delay_ms": 5000})).await;
    let mut config = TronConfig::new(vec![slow.base.clone(), devnet.base.clone()]);
    config.retry_backoff = Duration::from_millis(10);
    config.request_timeout = Duration::from_millis(200);
    let c = TronClient::new(config, vec![SecretKey::from_hex(SUPPLIER_KEY).unwrap()]).unwrap();
    assert!(c.is_activated(&supplier()).await.unwrap());
}

#[tokio::test]
async fn identical_delegations_signed_at_once_are_distinct_transactions_and_both_land() {
    let devnet = DevnetProc::standard(0);
    let c = client(vec![devnet.base.clone()]);
    // The same supplier, receiver, amount and lock, asked for together: the node builds the
    // same bytes for both within one millisecond.
    let d = delegation(65_000);
    let (a, b) = tokio::join!(c.sign_delegation(&d), c.sign_delegation(&d));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.tx_id, b.tx_id);
    c.broadcast(&a).await.unwrap();
    c.broadcast(&b).await.unwrap();
    assert!(matches!(
        until_final(&c, &a.tx_id).await,
        TxStatus::Confirmed { .. }
    ));
    assert!(matches!(
        until_final(&c, &b.tx_id).await,
        TxStatus::Confirmed { .. }
    ));
    assert_eq!(devnet.state().await["delegations_applied"], 2);
}

#[tokio::test]
async fn two_instances_sign_different_transactions_for_two_orders_of_the_same_delegation() {
    // Two processes share no timestamps: what keeps their transactions apart is the order
    // each one carries, so two orders can never be served by one delegation.
    let devnet = DevnetProc::standard(0);
    let (one, two) = (
        client(vec![devnet.base.clone()]),
        client(vec![devnet.base.clone()]),
    );
    let (da, db) = (delegation(65_000), delegation(65_000));
    let (a, b) = tokio::join!(one.sign_delegation(&da), two.sign_delegation(&db));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.tx_id, b.tx_id);
    for (tx, d) in [(&a, &da), (&b, &db)] {
        let (raw, _) = proto::decode_signed(&hex::decode(&tx.signed_tx).unwrap()).unwrap();
        let raw = proto::RawTransaction::decode(&raw).unwrap();
        assert_eq!(raw.data, d.order.to_string().into_bytes());
        one.broadcast(tx).await.unwrap();
    }
    for tx in [&a, &b] {
        assert!(matches!(
            until_final(&one, &tx.tx_id).await,
            TxStatus::Confirmed { .. }
        ));
    }
    assert_eq!(devnet.state().await["delegations_applied"], 2);
}

#[tokio::test]
async fn the_api_key_goes_to_the_node_in_its_header() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut headers = Vec::new();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            headers.push(line.trim().to_ascii_lowercase());
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            .unwrap();
        headers
    });
    let mut config = TronConfig::new(vec![base]);
    config.api_key = Some(flashrent::config::Secret::new("k-0123".into()));
    let c = TronClient::new(config, vec![]).unwrap();
    let renter = TronAddress::parse(RENTER).unwrap();
    assert!(!c.is_activated(&renter).await.unwrap());
    let headers = server.join().unwrap();
    assert!(
        headers.iter().any(|h| h == "tron-pro-api-key: k-0123"),
        "{headers:?}"
    );
}

#[tokio::test]
async fn energy_totals_are_read_once_per_head_block_seen() {
    // No block of its own for ten minutes: blocks come only when the test asks for one.
    let devnet = DevnetProc::standard(600_000);
    let c = client(vec![devnet.base.clone()]);
    let reads = || devnet.requests("/wallet/getaccountresource");
    // No head seen yet: every signature asks.
    c.sign_delegation(&delegation(65_000)).await.unwrap();
    c.sign_delegation(&delegation(65_000)).await.unwrap();
    assert_eq!(reads().await, 2);
    // Within one head block, once.
    c.head_block().await.unwrap();
    c.sign_delegation(&delegation(65_000)).await.unwrap();
    c.sign_delegation(&delegation(65_000)).await.unwrap();
    assert_eq!(reads().await, 3);
    // A new head block, once more.
    devnet.wallet("/admin/produce-block", json!({})).await;
    c.head_block().await.unwrap();
    c.sign_delegation(&delegation(65_000)).await.unwrap();
    c.sign_delegation(&delegation(65_000)).await.unwrap();
    assert_eq!(reads().await, 4);
    // A head seen too long ago is not trusted to still be the head.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    c.sign_delegation(&delegation(65_000)).await.unwrap();
    assert_eq!(reads().await, 5);
}

#[tokio::test]
async fn the_head_is_read_without_its_transactions_and_from_getnowblock_on_older_nodes() {
    let devnet = DevnetProc::standard(600_000);
    devnet.wallet("/admin/produce-block", json!({})).await;
    let c = client(vec![devnet.base.clone()]);
    let head = c.head_block().await.unwrap();
    let now = devnet.wallet("/wallet/getnowblock", json!({})).await;
    assert_eq!(now["block_header"]["raw_data"]["number"], head.number);
    assert_eq!(devnet.requests("/wallet/getblock").await, 1);
    assert_eq!(
        devnet.requests("/wallet/getnowblock").await,
        1,
        "only the test's own"
    );
    // The endpoint as java-tron serves it: by number, by id, `{}` for a block it lacks.
    let by_number = devnet
        .wallet(
            "/wallet/getblock",
            json!({"id_or_num": head.number.to_string()}),
        )
        .await;
    assert_eq!(by_number, now);
    let by_id = devnet
        .wallet("/wallet/getblock", json!({"id_or_num": now["blockID"]}))
        .await;
    assert_eq!(by_id, now);
    let beyond = json!({"id_or_num": (head.number + 1).to_string(), "detail": false});
    assert_eq!(devnet.wallet("/wallet/getblock", beyond).await, json!({}));

    // A node without getblock is asked once, then getnowblock.
    let old = DevnetProc::standard(600_000);
    old.faults(json!({"no_getblock": true})).await;
    let c = client(vec![old.base.clone()]);
    assert_eq!(c.head_block().await.unwrap().number, 0);
    assert_eq!(c.head_block().await.unwrap().number, 0);
    assert_eq!(old.requests("/wallet/getblock").await, 1);
    assert_eq!(old.requests("/wallet/getnowblock").await, 2);
}

/// A node that answers every request with `bytes` of JSON saying the account exists: with a
/// `content-length` on even connections, chunked (no length up front) on odd ones.
fn oversized_node(bytes: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
            }
            let body = format!(
                r#"{{"address": "{}", "pad": "{}"}}"#,
                TronAddress::parse(RENTER).unwrap().to_hex(),
                "x".repeat(bytes)
            );
            // The client may hang up halfway: that is the point.
            let _ = if n % 2 == 0 {
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                let mut r = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                );
                for piece in body.as_bytes().chunks(64 << 10) {
                    r = r
                        .and_then(|()| write!(stream, "{:x}\r\n", piece.len()))
                        .and_then(|()| stream.write_all(piece))
                        .and_then(|()| stream.write_all(b"\r\n"));
                }
                r.and_then(|()| stream.write_all(b"0\r\n\r\n"))
            };
        }
    });
    base
}

#[tokio::test]
async fn a_node_answer_over_the_size_limit_is_not_read_and_the_next_node_answers() {
    // The devnet does not know this address; the oversized node says it exists.
    let devnet = DevnetProc::standard(0);
    let nobody = TronAddress::parse("TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC").unwrap();
    let big = oversized_node(3 << 20);
    let mut config = TronConfig::new(vec![big.clone(), devnet.base.clone()]);
    config.retry_backoff = Duration::from_millis(10);
    config.max_answer_bytes = 1 << 20;
    let c = TronClient::new(config, vec![]).unwrap();
    // Twice: with the size announced, then streamed without it.
    for _ in 0..2 {
        assert!(!c.is_activated(&nobody).await.unwrap());
    }
    assert_eq!(devnet.requests("/wallet/getaccount").await, 2);
    // Alone, the oversized node is a failed call, never an answer.
    let mut config = TronConfig::new(vec![big]);
    config.retry_backoff = Duration::from_millis(10);
    config.max_answer_bytes = 1 << 20;
    let alone = TronClient::new(config, vec![]).unwrap();
    match alone.is_activated(&nobody).await {
        Err(ChainError::Retryable(why)) => assert!(why.contains("larger than"), "{why}"),
        other => panic!("expected a failed call, got {other:?}"),
    }
    // Under the limit, the same node is believed.
    let small = oversized_node(1 << 10);
    let mut config = TronConfig::new(vec![small]);
    config.max_answer_bytes = 1 << 20;
    let c = TronClient::new(config, vec![]).unwrap();
    assert!(c.is_activated(&nobody).await.unwrap());
}
