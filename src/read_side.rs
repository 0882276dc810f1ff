//! Where the write side's output enters the read side. The engine hands each durable record
//! to a sink it defines ([`DurableRecords`]), which the live applier is; and it says which
//! partitions it writes ([`crate::engine::Engine::owned_partitions`]), which the projectors
//! leave to the live applier. Neither side imports the other: this is where they meet.

use crate::engine::DurableRecords;
use flashrent_events::{CommandRecord, Offset, PartitionId};
use flashrent_projections::LiveApplier;
use std::sync::Arc;

impl DurableRecords for LiveApplier {
    fn durable(&self, partition: PartitionId, offset: Offset, record: Arc<CommandRecord>) {
        self.offer(partition, offset, record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CommandMeta, Engine, EngineError, Executed, Ownership};
    use crate::log::held_back::HeldBack;
    use chrono::Utc;
    use flashrent_events::OwnedPartitions;
    use flashrent_events::{encode_record, Envelope, Event, EventLog, Sun, UserId};
    use flashrent_projections::{
        spawn_projectors, PartitionProjector, Projector, ReactorSink, ReadModels, StepOutcome,
    };
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    use tokio::sync::{watch, Semaphore};
    use uuid::Uuid;

    fn credit(
        engine: &Engine,
        user: UserId,
        n: u64,
    ) -> tokio::task::JoinHandle<Result<Executed<Sun>, EngineError>> {
        let engine = engine.clone();
        tokio::spawn(async move {
            let meta = CommandMeta::new(Uuid::now_v7());
            engine
                .credit(meta, user, Sun::from_sun(1_000_000), format!("ref-{n}"))
                .await
        })
    }

    async fn balance_reaches(models: &ReadModels, user: UserId, sun: u64) {
        let mut reached = false;
        for _ in 0..200 {
            reached = models.balance(user).unwrap().map(|b| b.balance.as_sun()) == Some(sun);
            if reached {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            reached,
            "the read models never showed a balance of {sun} SUN"
        );
    }

    #[tokio::test]
    async fn a_held_partitions_projector_fetches_nothing_the_live_applier_was_given_but_what_it_was_not(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
        let log = Arc::new(HeldBack::open(&dir.path().join("log"), gate));
        let models = ReadModels::open(&dir.path().join("models"), 1, 1 << 20).unwrap();
        let (_stop, shutdown) = watch::channel(false);
        let (live, _applier) = LiveApplier::spawn(
            log.clone(),
            models.clone(),
            ReactorSink::none(),
            shutdown.clone(),
        );
        let live: Arc<dyn DurableRecords> = Arc::new(live);
        let engine = Engine::start(log.clone(), Ownership::Sole, Some(live), None)
            .await
            .unwrap();
        let _projectors = spawn_projectors(
            log.clone(),
            models.clone(),
            ReactorSink::none(),
            engine.owned_partitions(),
            shutdown,
        );
        let user = UserId::parse("42").unwrap();
        credit(&engine, user, 0).await.unwrap().unwrap();
        // The projector read while the partition was not held yet; it stops once it is.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = log.reads.load(Ordering::Acquire);
        for n in 1..6 {
            credit(&engine, user, n).await.unwrap().unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        balance_reaches(&models, user, 6_000_000).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            log.reads.load(Ordering::Acquire),
            before,
            "the projector fetched records the live applier had applied"
        );

        // A record that landed without reaching the live applier (an append whose
        // confirmation was lost): the projector finds it.
        let record = CommandRecord {
            command_id: Uuid::now_v7(),
            key: "42".into(),
            writer_epoch: 0,
            owner: None,
            events: vec![Envelope {
                event_id: Uuid::now_v7(),
                aggregate: flashrent_events::AggregateKind::UserAccount,
                aggregate_id: "42".into(),
                sequence: 7,
                occurred_at: Utc::now(),
                schema_version: 1,
                correlation_id: Uuid::now_v7(),
                causation_id: Uuid::now_v7(),
                event: Event::BalanceCredited {
                    user_id: user,
                    amount: Sun::from_sun(1_000_000),
                    reference: "landed".into(),
                    balance_after: Sun::from_sun(7_000_000),
                },
            }],
        };
        log.log.append(0, encode_record(&record)).await.unwrap();
        balance_reaches(&models, user, 7_000_000).await;
        assert!(log.reads.load(Ordering::Acquire) > before);
    }

    #[tokio::test]
    async fn a_projector_step_applies_what_the_log_holds_and_reads_nothing_while_the_partition_is_held(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> =
            Arc::new(crate::log::EmbeddedLog::open(&dir.path().join("log"), 1).unwrap());
        let models = ReadModels::open(&dir.path().join("models"), 1, 1 << 20).unwrap();
        // No sink: the read models learn the engine's records only from the projector.
        let engine = Engine::start(log.clone(), Ownership::Sole, None, None)
            .await
            .unwrap();
        let user = UserId::parse("42").unwrap();
        for n in 0..2 {
            credit(&engine, user, n).await.unwrap().unwrap();
        }
        let (owned, owned_rx) = watch::channel(OwnedPartitions::none(1));
        let mut projector = PartitionProjector::new(
            Projector::new(models.clone()),
            log.clone(),
            0,
            ReactorSink::none(),
            owned_rx,
        );
        assert_eq!(
            projector.step().await.unwrap(),
            StepOutcome::Applied { next: 2 }
        );
        balance_reaches(&models, user, 2_000_000).await;
        assert_eq!(projector.step().await.unwrap(), StepOutcome::CaughtUp);

        owned.send_modify(|o| {
            o.set(0, true);
        });
        assert_eq!(projector.step().await.unwrap(), StepOutcome::Held);
        // Held, but the log holds a record the read models were not handed: read it.
        credit(&engine, user, 2).await.unwrap().unwrap();
        assert_eq!(
            projector.step().await.unwrap(),
            StepOutcome::Applied { next: 3 }
        );
        balance_reaches(&models, user, 3_000_000).await;
    }
}
