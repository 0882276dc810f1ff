//! The writer's group commit, on the real embedded log with its appends held back at will.

use super::*;
use crate::log::EmbeddedLog;
use flashrent_events::{AppendFuture, StoredRecord, Sun, UserId};
use tokio::sync::Semaphore;

/// The embedded log, whose appends complete only as the test lets them.
struct HeldBack {
    log: EmbeddedLog,
    gate: Arc<Semaphore>,
}

#[async_trait::async_trait]
impl EventLog for HeldBack {
    fn partition_count(&self) -> u32 {
        self.log.partition_count()
    }

    fn append(&self, partition: PartitionId, record: Vec<u8>) -> AppendFuture {
        let durable = self.log.append(partition, record);
        let gate = self.gate.clone();
        Box::pin(async move {
            match gate.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return Err(LogError::Unavailable("the log went away".into())),
            }
            durable.await
        })
    }

    async fn read(
        &self,
        partition: PartitionId,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<StoredRecord>, LogError> {
        self.log.read(partition, from, max, wait).await
    }

    async fn end_offset(&self, partition: PartitionId) -> Result<Offset, LogError> {
        self.log.end_offset(partition).await
    }
}

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
    let log = Arc::new(HeldBack {
        log: EmbeddedLog::open(dir.path(), 1).unwrap(),
        gate: gate.clone(),
    });
    let engine = Engine::start(log.clone(), Ownership::Sole, None)
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
