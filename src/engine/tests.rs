//! The writer's group commit, on the real embedded log with its appends held back at will.

use super::load::load_partition;
use super::*;
use crate::log::held_back::HeldBack;
use crate::log::EmbeddedLog;
use flashrent_events::{decode_record, Sun};
use flashrent_store::AtomicTree;
use std::time::Duration;
use tokio::sync::Semaphore;

fn credit(engine: &Engine, user: UserId, n: u64) -> Credit {
    let engine = engine.clone();
    tokio::spawn(async move {
        let meta = CommandMeta::new(Uuid::now_v7());
        engine
            .credit(meta, user, Sun::from_sun(1_000_000), format!("ref-{n}"))
            .await
    })
}

type Credit = tokio::task::JoinHandle<Result<Executed<Sun>, EngineError>>;

/// A one-partition engine whose first credit of `user` is in flight, held back, while
/// `more` credits are decided behind it.
struct OneInFlight {
    _dir: tempfile::TempDir,
    gate: Arc<Semaphore>,
    log: Arc<HeldBack>,
    first: Credit,
    rest: Vec<Credit>,
}

async fn one_in_flight(user: &str, more: u64) -> OneInFlight {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let log = Arc::new(HeldBack::open(dir.path(), gate.clone()));
    let engine = Engine::start(log.clone(), Ownership::Sole, None, None)
        .await
        .unwrap();
    let user = UserId::parse(user).unwrap();
    let first = credit(&engine, user, 0);
    while log.log.end_offset(0).await.unwrap() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rest = (1..=more).map(|n| credit(&engine, user, n)).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    OneInFlight {
        _dir: dir,
        gate,
        log,
        first,
        rest,
    }
}

#[tokio::test]
async fn commands_decided_while_a_record_is_in_flight_share_the_next_record() {
    let OneInFlight {
        _dir,
        gate,
        log,
        first,
        rest,
    } = one_in_flight("42", 10).await;
    assert!(
        !first.is_finished(),
        "answered before its record was durable"
    );
    gate.add_permits(2);

    let first = first.await.unwrap().unwrap();
    assert_eq!(first.offset, Some(0));
    assert_eq!(first.reply, Sun::from_sun(1_000_000));
    let mut balances = Vec::new();
    for r in rest {
        let done = r.await.unwrap().unwrap();
        assert_eq!(done.offset, Some(1), "all ten in the second record");
        assert_eq!(done.events.len(), 1, "each caller gets its own events");
        balances.push(done.reply.as_sun());
    }
    balances.sort_unstable();
    let expected: Vec<u64> = (2..=11).map(|n| n * 1_000_000).collect();
    assert_eq!(balances, expected, "decided one after the other");

    let records = log.read(0, 0, 10, Duration::ZERO).await.unwrap();
    assert_eq!(records.len(), 2);
    let second = decode_record(&records[1].bytes).unwrap();
    assert_eq!(second.events.len(), 10);
    let causes: std::collections::HashSet<_> =
        second.events.iter().map(|e| e.causation_id).collect();
    assert_eq!(causes.len(), 10, "each event names its own command");
    let sequences: Vec<u64> = second.events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (2..=11).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_failed_append_fails_every_command_of_its_record() {
    let OneInFlight {
        _dir,
        gate,
        first,
        rest,
        ..
    } = one_in_flight("7", 5).await;
    // The log fails the in-flight record, and then the next.
    gate.close();
    assert!(first.await.unwrap().is_err());
    for r in rest {
        assert!(
            r.await.unwrap().is_err(),
            "no command of a lost record is acknowledged"
        );
    }
}

fn place_order(id: OrderId, price: Sun, idempotency: Option<&str>) -> account::PlaceOrder {
    account::PlaceOrder {
        order_id: id,
        kind: flashrent_events::OrderKind::Rental,
        energy: EnergyAmount::new(65_000).unwrap(),
        duration: flashrent_events::RentalDuration::parse("1h").unwrap(),
        receive_address: TronAddress::parse("TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2").unwrap(),
        price,
        pinned_wallet: None,
        idempotency: idempotency.map(|k| (k.to_owned(), format!("fingerprint-{k}"))),
        estimated_completion: chrono::Utc::now(),
        callback: Default::default(),
    }
}

/// What a partition's writer decides against, with everything its snapshot holds read
/// back, so states folded different ways compare whole.
async fn full_state(
    log: &dyn EventLog,
    partition: PartitionId,
    mut pager: Pager,
    users: &[UserId],
    orders: &[OrderId],
) -> PartitionState {
    let mut loaded = load_partition(log, partition, &mut pager).await.unwrap();
    for u in users {
        pager.touch(&mut loaded.state, Some(*u), None).unwrap();
    }
    for o in orders {
        pager.touch(&mut loaded.state, None, Some(*o)).unwrap();
    }
    loaded.state
}

fn state_eq(a: &PartitionState, b: &PartitionState) -> bool {
    a.accounts == b.accounts && a.orders == b.orders && a.pool == b.pool
}

use crate::domain::{account, pool};
use flashrent_events::{EnergyAmount, OrderId, TronAddress};

/// User `i`'s one deposit of 20 TRX (a repeat credits nothing).
async fn deposit(engine: &Engine, user: UserId, i: usize) -> Executed<Sun> {
    let meta = CommandMeta::new(Uuid::now_v7());
    let amount = Sun::from_sun(20_000_000);
    engine
        .credit(meta, user, amount, format!("deposit-{i}"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_writer_that_snapshots_decides_as_one_that_folds_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("log"), 3).unwrap());
    let store = SledStore::open(&dir.path().join("models"), 1 << 20).unwrap();
    let snapshots = || WriterSnapshots {
        store: &store,
        every: 2,
    };
    let engine = Engine::start(log.clone(), Ownership::Sole, None, Some(snapshots()))
        .await
        .unwrap();
    let meta = || CommandMeta::new(Uuid::now_v7());
    let supplier = TronAddress::parse("TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1").unwrap();
    engine
        .register_supplier(meta(), supplier, EnergyAmount::new(10_000_000).unwrap())
        .await
        .unwrap();
    let users: Vec<UserId> = (1..=4)
        .map(|u| UserId::parse(&u.to_string()).unwrap())
        .collect();
    let price = Sun::from_sun(5_850_000);
    let mut orders = vec![];
    for (i, user) in users.iter().enumerate() {
        assert!(deposit(&engine, *user, i).await.offset.is_some());
        for n in 0..3 {
            let id = OrderId::new_v7();
            let key = format!("key-{i}-{n}");
            engine
                .place_order(meta(), *user, place_order(id, price, Some(&key)))
                .await
                .unwrap();
            orders.push((*user, id, key));
        }
    }
    for (n, (_, id, _)) in orders.iter().enumerate() {
        let energy = EnergyAmount::new(65_000).unwrap();
        let reserved = engine.reserve(meta(), *id, energy, None).await.unwrap();
        assert!(matches!(reserved.reply, ReserveOutcome::Reserved { .. }));
        let settle = match n % 3 {
            0 => pool::Command::MarkDelegated { order_id: *id },
            1 => pool::Command::Release { order_id: *id },
            _ => continue,
        };
        engine.pool_command(meta(), settle).await.unwrap();
    }

    // Long paged out by now, every account and order still decides as it should.
    for (i, user) in users.iter().enumerate() {
        let again = deposit(&engine, *user, i).await;
        assert_eq!(again.offset, None, "a credit reference is used once");
        assert_eq!(again.reply, Sun::from_sun(20_000_000 - 3 * 5_850_000));
    }
    let (user, id, key) = orders[0].clone();
    let replayed = engine
        .place_order(
            meta(),
            user,
            place_order(OrderId::new_v7(), price, Some(&key)),
        )
        .await
        .unwrap();
    assert_eq!(replayed.reply, account::Placed::Replayed(id));
    let paid = engine.deduct(meta(), user, id, price).await.unwrap();
    assert!(!paid.reply, "the order was paid when it was placed");
    let repeat = engine
        .pool_command(
            meta(),
            pool::Command::MarkDelegated {
                order_id: orders[0].1,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        repeat.offset, None,
        "the reservation was read back as delegated"
    );

    let order_ids: Vec<OrderId> = orders.iter().map(|(_, id, _)| *id).collect();
    let mut orders_folded = 0;
    for p in 0..log.partition_count() {
        let folded = full_state(log.as_ref(), p, Pager::in_memory(), &users, &order_ids).await;
        let tree = snapshot::tree(&store, p).unwrap();
        assert!(
            written(&tree, b"at").await.is_some(),
            "partition {p} has a snapshot"
        );
        let pager = Pager::on_disk(tree, 2);
        let restored = full_state(log.as_ref(), p, pager, &users, &order_ids).await;
        assert!(
            state_eq(&folded, &restored),
            "partition {p}: the snapshot and the log's tail fold to the whole log's state"
        );
        orders_folded += folded.orders.len();
    }
    assert_eq!(orders_folded, orders.len());

    // A restart takes up from the snapshots and decides the same.
    drop(engine);
    let engine = Engine::start(log.clone(), Ownership::Sole, None, Some(snapshots()))
        .await
        .unwrap();
    assert_eq!(deposit(&engine, users[1], 1).await.offset, None);
    let overdrawn = engine
        .place_order(
            meta(),
            users[1],
            place_order(OrderId::new_v7(), Sun::from_sun(20_000_000), None),
        )
        .await;
    assert!(matches!(
        overdrawn,
        Err(EngineError::Domain(DomainError::InsufficientBalance { .. }))
    ));
}

/// What `look` finds, asked up to `attempts` times `every` apart (`None`: never found).
async fn polled<T>(
    attempts: u32,
    every: Duration,
    mut look: impl FnMut() -> Option<T>,
) -> Option<T> {
    for _ in 0..attempts {
        if let Some(found) = look() {
            return Some(found);
        }
        tokio::time::sleep(every).await;
    }
    None
}

/// `key` of a snapshot tree once sled holds it: snapshots reach sled in the background.
async fn written(tree: &AtomicTree, key: &[u8]) -> Option<sled::IVec> {
    polled(500, Duration::from_millis(10), || {
        tree.data().get(key).unwrap()
    })
    .await
}

#[tokio::test]
async fn a_snapshot_that_does_not_read_back_is_dropped_and_the_log_folded_again() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("log"), 1).unwrap());
    let store = SledStore::open(&dir.path().join("models"), 1 << 20).unwrap();
    let snapshots = || WriterSnapshots {
        store: &store,
        every: 1,
    };
    let engine = Engine::start(log.clone(), Ownership::Sole, None, Some(snapshots()))
        .await
        .unwrap();
    let user = UserId::parse("7").unwrap();
    assert!(deposit(&engine, user, 0).await.offset.is_some());
    drop(engine);
    let tree = snapshot::tree(&store, 0).unwrap();
    let account = format!("a{user}").into_bytes();
    assert!(
        written(&tree, &account).await.is_some(),
        "the account is in the snapshot"
    );
    // And the write that put it there is over: until its journal is emptied, opening the
    // tree makes that write again, over the damage below.
    let journal = dir.path().join("models").join("writer-snapshots-0.journal");
    let emptied = polled(500, Duration::from_millis(10), || {
        std::fs::metadata(&journal).ok().filter(|m| m.len() == 0)
    });
    assert!(
        emptied.await.is_some(),
        "the snapshot's journal never emptied"
    );
    tree.data()
        .insert(&account, &b"not an account"[..])
        .unwrap();

    // A restart takes up from the snapshot: the account is read back from it first.
    let engine = Engine::start(log.clone(), Ownership::Sole, None, Some(snapshots()))
        .await
        .unwrap();
    let meta = CommandMeta::new(Uuid::now_v7());
    let refused = engine
        .credit(meta, user, Sun::from_sun(20_000_000), "deposit-0".into())
        .await;
    assert!(
        matches!(refused, Err(EngineError::Log(LogError::Failed { .. }))),
        "{refused:?}"
    );
    // Reloaded from the log: the deposit is still known, and credited only once.
    assert_eq!(deposit(&engine, user, 0).await.offset, None);
    let rewritten = deposit(&engine, user, 1).await;
    assert_eq!(rewritten.reply, Sun::from_sun(40_000_000));
    let valid = written(&tree, &account).await.unwrap();
    assert_ne!(valid.as_ref(), b"not an account", "snapshots written anew");
}

#[tokio::test]
async fn a_snapshot_ahead_of_its_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("models"), 1 << 20).unwrap();
    let snapshots = || WriterSnapshots {
        store: &store,
        every: 1,
    };
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("a"), 1).unwrap());
    let engine = Engine::start(log, Ownership::Sole, None, Some(snapshots()))
        .await
        .unwrap();
    deposit(&engine, UserId::parse("7").unwrap(), 0).await;
    deposit(&engine, UserId::parse("8").unwrap(), 1).await;
    drop(engine);
    // Once sled has the snapshot of both records.
    let tree = snapshot::tree(&store, 0).unwrap();
    let mut at = None;
    for _ in 0..500 {
        at = written(&tree, b"at").await;
        if at.as_deref() == Some(br#"{"next":2,"epoch":0}"#.as_slice()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(at.as_deref(), Some(br#"{"next":2,"epoch":0}"#.as_slice()));

    // Another, shorter log under the same snapshots: a broker that lost records, say.
    let other: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("b"), 1).unwrap());
    let refused = Engine::start(other, Ownership::Sole, None, Some(snapshots())).await;
    assert!(
        matches!(&refused, Err(LogError::Failed { context, .. }) if context.contains("snapshot")),
        "{:?}",
        refused.err()
    );
}

/// Waits until `owned` says `partition` is written here (`true`) or not.
async fn owned_becomes(
    owned: &mut watch::Receiver<OwnedPartitions>,
    partition: PartitionId,
    written: bool,
) {
    let told = owned.wait_for(|o| o.contains(partition) == written);
    let told = tokio::time::timeout(Duration::from_secs(10), told).await;
    assert!(
        matches!(told, Ok(Ok(_))),
        "never told that partition {partition} is written here: {written}"
    );
}

#[tokio::test]
async fn the_partitions_an_engine_writes_are_told_as_data_as_it_claims_loses_and_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(dir.path(), 1).unwrap());
    let claim = |owner: &str| Ownership::Claim {
        owner: owner.to_owned(),
    };
    let a = Engine::start(log.clone(), claim("http://a"), None, None)
        .await
        .unwrap();
    let mut owned = a.owned_partitions();
    assert!(
        !owned.borrow().contains(0),
        "nothing is written before it is assigned"
    );
    a.assign(&[0], true);
    owned_becomes(&mut owned, 0, true).await;
    assert!(a.owns(0));
    let user = UserId::parse("7").unwrap();
    credit(&a, user, 0).await.unwrap().unwrap();

    a.assign(&[0], false);
    owned_becomes(&mut owned, 0, false).await;
    assert!(!a.owns(0));
    a.assign(&[0], true);
    owned_becomes(&mut owned, 0, true).await;

    // Another instance claims the partition; this one learns it at its next append.
    let b = Engine::start(log.clone(), claim("http://b"), None, None)
        .await
        .unwrap();
    let mut owned_by_b = b.owned_partitions();
    b.assign(&[0], true);
    owned_becomes(&mut owned_by_b, 0, true).await;
    let fenced = credit(&a, user, 1).await.unwrap();
    assert!(
        matches!(fenced, Err(EngineError::Log(LogError::Fenced(0)))),
        "{fenced:?}"
    );
    owned_becomes(&mut owned, 0, false).await;
    assert!(!a.owns(0));
    assert!(b.owns(0));
}

#[tokio::test]
async fn snapshots_an_older_format_kept_among_the_read_models_are_dropped_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("models"), 1 << 20).unwrap();
    let former = store.tree("derived/writer-0").unwrap();
    former
        .data()
        .insert("format", &b"writer-snapshot-1"[..])
        .unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("log"), 1).unwrap());
    let snapshots = WriterSnapshots {
        store: &store,
        every: 1,
    };
    let engine = Engine::start(log, Ownership::Sole, None, Some(snapshots))
        .await
        .unwrap();
    deposit(&engine, UserId::parse("7").unwrap(), 0).await;
    let names = store.tree_names();
    assert!(
        !names.iter().any(|n| n.starts_with("derived/")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "writer-snapshots/0"), "{names:?}");
}

#[tokio::test]
async fn dropping_the_snapshots_leaves_a_restart_nothing_to_take_up_from() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("models"), 1 << 20).unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("log"), 1).unwrap());
    let snapshots = || WriterSnapshots {
        store: &store,
        every: 1,
    };
    let engine = Engine::start(log.clone(), Ownership::Sole, None, Some(snapshots()))
        .await
        .unwrap();
    let user = UserId::parse("7").unwrap();
    deposit(&engine, user, 0).await;
    drop(engine);
    let tree = snapshot::tree(&store, 0).unwrap();
    assert!(
        written(&tree, b"at").await.is_some(),
        "a snapshot was written"
    );
    // Until its journal is emptied, the write that put it there is not over.
    let journal = dir.path().join("models").join("writer-snapshots-0.journal");
    let emptied = polled(500, Duration::from_millis(10), || {
        std::fs::metadata(&journal).ok().filter(|m| m.len() == 0)
    });
    assert!(
        emptied.await.is_some(),
        "the snapshot's journal never emptied"
    );

    drop_snapshots(&store).unwrap();
    let tree = snapshot::tree(&store, 0).unwrap();
    assert!(tree.data().is_empty());
    let mut pager = Pager::on_disk(tree, 1);
    assert!(pager.restore().unwrap().is_none());
    // A restart folds the log from offset 0 and decides as before.
    let engine = Engine::start(log, Ownership::Sole, None, Some(snapshots()))
        .await
        .unwrap();
    assert_eq!(deposit(&engine, user, 0).await.offset, None);
}

#[tokio::test]
async fn an_order_folded_past_a_retired_broadcast_event_numbers_its_next_event_after_it() {
    use crate::domain::order::{self, Leg, NeverLands, TxId, TxProgress};
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(dir.path(), 1).unwrap());
    let user = UserId::parse("7").unwrap();
    let order_id = OrderId::new_v7();
    let tx_id = TxId::parse(&"ab".repeat(32)).unwrap();
    let engine = Engine::start(log.clone(), Ownership::Sole, None, None)
        .await
        .unwrap();
    deposit(&engine, user, 0).await;
    let meta = || CommandMeta::new(Uuid::now_v7());
    engine
        .place_order(meta(), user, place_order(order_id, Sun::from_sun(1), None))
        .await
        .unwrap();
    let start = order::Command::StartProcessing {
        supplier_wallet: TronAddress::parse("TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1").unwrap(),
        signed: Some(TxProgress {
            tx_id,
            signed_tx: "0a02".into(),
            expires_at: chrono::Utc::now(),
        }),
    };
    engine
        .order_command(meta(), user, order_id, start)
        .await
        .unwrap();
    drop(engine);
    // An earlier version recorded the broadcast, as the order's fourth event.
    let broadcast = format!(
        r#"{{"command_id":"{c}","key":"7","writer_epoch":0,"events":[{{"event_id":"{e}",
        "aggregate":"order","aggregate_id":"{order_id}","sequence":4,
        "occurred_at":"2026-01-01T00:00:00Z","schema_version":1,"correlation_id":"{c}",
        "causation_id":"{c}","type":"DelegationBroadcast",
        "payload":{{"order_id":"{order_id}","tx_id":"{tx_id}"}}}}]}}"#,
        c = Uuid::now_v7(),
        e = Uuid::now_v7(),
    );
    log.append(0, broadcast.into_bytes()).await.unwrap();

    let engine = Engine::start(log.clone(), Ownership::Sole, None, None)
        .await
        .unwrap();
    let expire = order::Command::Expire {
        leg: Leg::Delegation,
        tx_id,
        proof: NeverLands::FailedOnChain,
    };
    let done = engine
        .order_command(meta(), user, order_id, expire)
        .await
        .unwrap();
    let records = log.read(0, done.offset.unwrap(), 1, Duration::ZERO).await;
    let record = decode_record(&records.unwrap()[0].bytes).unwrap();
    let sequences: Vec<u64> = record.events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [5], "placed, processing, signed, broadcast, expired");
}
