//! Synthetic but valid histories, for the audit's tests and its benchmark: each method
//! returns the record the engine would have appended (right partition, envelope, sequence,
//! `balance_after`), to be written with [`EventLog::append`](flashrent_events::EventLog)
//! and [`encode_record`](flashrent_events::encode_record). Tests corrupt them on purpose.

use chrono::{DateTime, Duration, Utc};
use flashrent_events::{
    partition_for_key, CommandRecord, EnergyAmount, Envelope, Event, OrderId, OrderKind,
    PartitionId, RentalDuration, Sun, TronAddress, UserId, WALLET_POOL_KEY,
};
use std::collections::HashMap;
use uuid::Uuid;

pub const RENTER: &str = "TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2";
pub const SUPPLIER: &str = "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1";

#[derive(Debug, Clone, Copy)]
pub struct SynthOrder {
    pub order_id: OrderId,
    pub user: UserId,
    pub price: Sun,
    pub energy: EnergyAmount,
}

pub struct Synth {
    partitions: u32,
    sequences: HashMap<String, u64>,
    balances: HashMap<UserId, u64>,
    /// The time of the next event; each event moves it on by a millisecond.
    pub now: DateTime<Utc>,
}

impl Synth {
    pub fn new(partitions: u32, start: DateTime<Utc>) -> Synth {
        Synth {
            partitions,
            sequences: HashMap::new(),
            balances: HashMap::new(),
            now: start,
        }
    }

    pub fn balance(&self, user: UserId) -> u64 {
        self.balances.get(&user).copied().unwrap_or(0)
    }

    fn envelope(&mut self, event: Event) -> Envelope {
        let (aggregate, aggregate_id) = event.aggregate();
        let seq = self.sequences.entry(aggregate_id.clone()).or_insert(0);
        *seq += 1;
        self.now += Duration::milliseconds(1);
        Envelope {
            event_id: Uuid::now_v7(),
            aggregate,
            aggregate_id,
            sequence: *seq,
            occurred_at: self.now,
            schema_version: event.schema_version(),
            correlation_id: Uuid::now_v7(),
            causation_id: Uuid::now_v7(),
            event,
        }
    }

    /// A record of `events` for `key`, with the partition Kafka's partitioner gives the key.
    pub fn record(&mut self, key: &str, events: Vec<Event>) -> (PartitionId, CommandRecord) {
        let events = events.into_iter().map(|e| self.envelope(e)).collect();
        (
            partition_for_key(key.as_bytes(), self.partitions),
            CommandRecord {
                command_id: Uuid::now_v7(),
                key: key.to_owned(),
                writer_epoch: 0,
                owner: None,
                events,
            },
        )
    }

    fn user_record(&mut self, user: UserId, events: Vec<Event>) -> (PartitionId, CommandRecord) {
        self.record(&user.to_string(), events)
    }

    fn pool_record(&mut self, events: Vec<Event>) -> (PartitionId, CommandRecord) {
        self.record(WALLET_POOL_KEY, events)
    }

    pub fn credit(&mut self, user: UserId, sun: u64) -> (PartitionId, CommandRecord) {
        let after = self.balance(user) + sun;
        self.balances.insert(user, after);
        let reference = format!("ref-{}", Uuid::now_v7().simple());
        self.user_record(
            user,
            vec![Event::BalanceCredited {
                user_id: user,
                amount: Sun::from_sun(sun),
                reference,
                balance_after: Sun::from_sun(after),
            }],
        )
    }

    pub fn register_supplier(&mut self, energy: u64) -> (PartitionId, CommandRecord) {
        self.pool_record(vec![Event::SupplierWalletRegistered {
            address: TronAddress::parse(SUPPLIER).expect("valid"),
            energy_capacity: EnergyAmount::new(energy).expect("positive"),
        }])
    }

    /// An order placed and paid in one record, as the engine does it.
    pub fn place_paid(
        &mut self,
        user: UserId,
        price: u64,
        energy: u64,
    ) -> (SynthOrder, (PartitionId, CommandRecord)) {
        let order = SynthOrder {
            order_id: OrderId::new_v7(),
            user,
            price: Sun::from_sun(price),
            energy: EnergyAmount::new(energy).expect("positive"),
        };
        let after = self.balance(user).saturating_sub(price);
        self.balances.insert(user, after);
        let due = self.now + Duration::minutes(5);
        let rec = self.user_record(
            user,
            vec![
                Event::OrderPlaced {
                    order_id: order.order_id,
                    user_id: user,
                    kind: OrderKind::Rental,
                    energy: order.energy,
                    duration: RentalDuration::parse("1h").expect("valid"),
                    receive_address: TronAddress::parse(RENTER).expect("valid"),
                    price: order.price,
                    pinned_wallet: None,
                    idempotency_key: None,
                    request_fingerprint: None,
                    estimated_completion: due,
                    callback_url: None,
                    out_trade_no: None,
                },
                Event::BalanceDebited {
                    user_id: user,
                    order_id: order.order_id,
                    amount: order.price,
                    balance_after: Sun::from_sun(after),
                },
            ],
        );
        (order, rec)
    }

    pub fn reserve(&mut self, o: &SynthOrder) -> (PartitionId, CommandRecord) {
        self.pool_record(vec![Event::EnergyReserved {
            order_id: o.order_id,
            wallet: TronAddress::parse(SUPPLIER).expect("valid"),
            energy: o.energy,
        }])
    }

    pub fn processing(&mut self, o: &SynthOrder) -> (PartitionId, CommandRecord) {
        self.user_record(
            o.user,
            vec![Event::OrderProcessing {
                order_id: o.order_id,
                supplier_wallet: TronAddress::parse(SUPPLIER).expect("valid"),
            }],
        )
    }

    pub fn delegate(&mut self, o: &SynthOrder) -> (PartitionId, CommandRecord) {
        self.pool_record(vec![Event::ReservedEnergyDelegated {
            order_id: o.order_id,
            wallet: TronAddress::parse(SUPPLIER).expect("valid"),
            energy: o.energy,
        }])
    }

    pub fn release(&mut self, o: &SynthOrder) -> (PartitionId, CommandRecord) {
        self.pool_record(vec![Event::ReservationReleased {
            order_id: o.order_id,
            wallet: TronAddress::parse(SUPPLIER).expect("valid"),
            energy: o.energy,
        }])
    }

    pub fn give_back(&mut self, o: &SynthOrder) -> (PartitionId, CommandRecord) {
        self.pool_record(vec![Event::DelegatedEnergyReturned {
            order_id: o.order_id,
            wallet: TronAddress::parse(SUPPLIER).expect("valid"),
            energy: o.energy,
        }])
    }

    pub fn complete(&mut self, o: &SynthOrder) -> (PartitionId, CommandRecord) {
        let now = self.now;
        self.user_record(
            o.user,
            vec![Event::OrderCompleted {
                order_id: o.order_id,
                transaction_hash: tx_id(o.order_id.as_uuid().as_u128()),
                block_number: 1,
                completed_at: now,
                rental_ends_at: now + Duration::hours(1),
            }],
        )
    }

    pub fn end_rental(&mut self, o: &SynthOrder) -> (PartitionId, CommandRecord) {
        let now = self.now;
        self.user_record(
            o.user,
            vec![Event::RentalEnded {
                order_id: o.order_id,
                reclaim_transaction_hash: tx_id(o.order_id.as_uuid().as_u128() ^ 1),
                ended_at: now,
            }],
        )
    }

    pub fn fail(&mut self, o: &SynthOrder) -> (PartitionId, CommandRecord) {
        self.user_record(
            o.user,
            vec![Event::OrderFailed {
                order_id: o.order_id,
                reason: flashrent_events::FailureReason::DelegationFailed,
                detail: "synthetic".into(),
            }],
        )
    }

    /// The refund record: `OrderRefunded` and `BalanceRefunded`, as the engine writes them.
    pub fn refund(&mut self, o: &SynthOrder) -> (PartitionId, CommandRecord) {
        let after = self.balance(o.user) + o.price.as_sun();
        self.balances.insert(o.user, after);
        self.user_record(
            o.user,
            vec![
                Event::OrderRefunded {
                    order_id: o.order_id,
                    user_id: o.user,
                    amount: o.price,
                },
                Event::BalanceRefunded {
                    user_id: o.user,
                    order_id: o.order_id,
                    amount: o.price,
                    balance_after: Sun::from_sun(after),
                },
            ],
        )
    }

    /// A whole completed rental: placed and paid, reserved, processing, delegated, completed,
    /// energy given back, rental ended (8 events in 7 records).
    pub fn completed_rental(
        &mut self,
        user: UserId,
        price: u64,
    ) -> Vec<(PartitionId, CommandRecord)> {
        let (o, placed) = self.place_paid(user, price, 65_000);
        vec![
            placed,
            self.reserve(&o),
            self.processing(&o),
            self.delegate(&o),
            self.complete(&o),
            self.give_back(&o),
            self.end_rental(&o),
        ]
    }

    /// A failed rental: placed and paid, reserved, released, failed, refunded (7 events).
    pub fn refunded_rental(
        &mut self,
        user: UserId,
        price: u64,
    ) -> Vec<(PartitionId, CommandRecord)> {
        let (o, placed) = self.place_paid(user, price, 65_000);
        vec![
            placed,
            self.reserve(&o),
            self.release(&o),
            self.fail(&o),
            self.refund(&o),
        ]
    }
}

/// A transaction id of its own for each number.
fn tx_id(n: u128) -> flashrent_events::TxId {
    flashrent_events::TxId::parse(&format!("{n:064x}")).expect("64 hex digits")
}
