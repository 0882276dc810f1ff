//! What the saga knows of an order, how the order's events change it, and what the saga does
//! next, decided from that alone.

use chrono::{DateTime, Utc};
use flashrent_events::{
    EnergyAmount, Event, Leg, OrderId, OrderKind, OrderStatus, RentalDuration, TronAddress, TxId,
    TxProgress, UserId,
};
use flashrent_projections::OrderView;

/// An order as the saga drives it: what its steps read, derived from the order's events. It
/// starts from the order's placement (the events the saga is handed) or from its read model
/// (after a restart, or when an index brings the order back), and is evolved with the events
/// the saga's own commands record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderProgress {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub kind: OrderKind,
    pub status: OrderStatus,
    pub paid: bool,
    pub energy: EnergyAmount,
    pub duration: RentalDuration,
    pub receive_address: TronAddress,
    pub supplier_wallet: Option<TronAddress>,
    /// The delegation's transaction, signed and not yet settled.
    pub delegation: Option<TxProgress>,
    /// The confirmed delegation (what a reclaim takes back).
    pub transaction_hash: Option<TxId>,
    pub rental_ends_at: Option<DateTime<Utc>>,
    /// The reclaim's transaction, signed and not yet settled.
    pub reclaim: Option<TxProgress>,
    pub rental_ended: bool,
}

impl OrderProgress {
    pub fn from_view(v: OrderView) -> OrderProgress {
        OrderProgress {
            order_id: v.order_id,
            user_id: v.user_id,
            kind: v.kind,
            status: v.status,
            paid: v.paid,
            energy: v.energy_amount,
            duration: v.duration,
            receive_address: v.receive_address,
            supplier_wallet: v.supplier_wallet,
            delegation: v.delegation,
            transaction_hash: v.transaction_hash,
            rental_ends_at: v.rental_ends_at,
            reclaim: v.reclaim,
            rental_ended: v.rental_ended_at.is_some(),
        }
    }

    /// The order as its placement left it, from the placement's event on.
    fn placed(placed: &Event) -> Option<OrderProgress> {
        match placed {
            Event::OrderPlaced {
                order_id,
                user_id,
                kind,
                energy,
                duration,
                receive_address,
                pinned_wallet,
                ..
            } => Some(OrderProgress {
                order_id: *order_id,
                user_id: *user_id,
                kind: *kind,
                status: OrderStatus::Pending,
                paid: false,
                energy: *energy,
                duration: *duration,
                receive_address: *receive_address,
                supplier_wallet: *pinned_wallet,
                delegation: None,
                transaction_hash: None,
                rental_ends_at: None,
                reclaim: None,
                rental_ended: false,
            }),
            _ => None,
        }
    }

    pub fn leg(&self, leg: Leg) -> Option<&TxProgress> {
        match leg {
            Leg::Delegation => self.delegation.as_ref(),
            Leg::Reclaim => self.reclaim.as_ref(),
        }
    }

    fn leg_mut(&mut self, leg: Leg) -> &mut Option<TxProgress> {
        match leg {
            Leg::Delegation => &mut self.delegation,
            Leg::Reclaim => &mut self.reclaim,
        }
    }

    /// The order after `event` (one of its own, in the order recorded), as its read model
    /// shows it after the same event.
    pub fn evolve(&mut self, event: &Event) {
        if let Some((leg, change)) = event.leg_change() {
            *self.leg_mut(leg) = change.signed();
            return;
        }
        match event {
            Event::BalanceDebited { .. } => self.paid = true,
            Event::OrderProcessing {
                supplier_wallet, ..
            } => {
                self.status = OrderStatus::Processing;
                self.supplier_wallet = Some(*supplier_wallet);
            }
            Event::OrderCompleted {
                transaction_hash,
                rental_ends_at,
                ..
            } => {
                self.status = OrderStatus::Completed;
                self.delegation = None;
                self.transaction_hash = Some(*transaction_hash);
                self.rental_ends_at = Some(*rental_ends_at);
            }
            Event::OrderFailed { .. } => {
                self.status = OrderStatus::Failed;
                self.delegation = None;
            }
            Event::OrderRefunded { .. } => self.status = OrderStatus::Refunded,
            Event::RentalEnded { .. } => {
                self.reclaim = None;
                self.rental_ended = true;
            }
            _ => {}
        }
    }
}

/// What the events of one order in a record handed to the saga tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    /// The order was placed: here is all of it so far.
    Placed(Box<OrderProgress>),
    /// It was paid after its placement (the one step of an order not the saga's own):
    /// whatever the saga holds of it is out of date.
    Paid,
    /// The saga's own steps: its driver has their events from the commands that recorded
    /// them.
    Own,
}

/// Reads the events of one order, in the order recorded. Apart from its placement and a
/// payment, every event of an order is recorded by a saga command: by this saga, whose
/// driver evolved its progress with it already, or by another instance's, for a partition
/// this one takes over only through the read models (`Saga::resume_taken`).
pub fn news<'a>(events: impl IntoIterator<Item = &'a Event>) -> News {
    let mut placed: Option<OrderProgress> = None;
    let mut paid = false;
    for event in events {
        match &mut placed {
            Some(o) => o.evolve(event),
            None => match OrderProgress::placed(event) {
                Some(o) => placed = Some(o),
                None => paid |= matches!(event, Event::BalanceDebited { .. }),
            },
        }
    }
    match (placed, paid) {
        (Some(o), _) => News::Placed(Box::new(o)),
        (None, true) => News::Paid,
        (None, false) => News::Own,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Hold energy in the pool for the order, then check the receiver.
    Reserve,
    /// Sign a transaction of the leg, and record it before it is ever sent.
    Sign(Leg),
    Broadcast(Leg, TxProgress),
    Await(Leg, TxProgress),
    /// Release the pool's hold; give the payment back if there was one.
    Settle {
        refund: bool,
    },
    AwaitRentalEnd(DateTime<Utc>),
    Done,
}

pub fn next_step(o: &OrderProgress, now: DateTime<Utc>) -> Step {
    let leg = |leg| match o.leg(leg) {
        None => Step::Sign(leg),
        // Broadcasts are not recorded: a recorded transaction is sent (again), unless the
        // driver knows it sent it lately.
        Some(tx) => Step::Broadcast(leg, tx.clone()),
    };
    match o.status {
        OrderStatus::Pending if o.paid || o.kind == OrderKind::Manual => Step::Reserve,
        OrderStatus::Processing => leg(Leg::Delegation),
        OrderStatus::Failed => Step::Settle { refund: o.paid },
        OrderStatus::Completed if !o.rental_ended => {
            let ends = o.rental_ends_at.unwrap_or(now);
            if now < ends {
                return Step::AwaitRentalEnd(ends);
            }
            leg(Leg::Reclaim)
        }
        _ => Step::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashrent_events::{Envelope, FailureReason, Sun};
    use flashrent_projections::{Projector, ReadModels};
    use std::sync::Arc;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn tx(digit: char, expires_at: DateTime<Utc>) -> TxProgress {
        TxProgress {
            tx_id: TxId::parse(&digit.to_string().repeat(64)).unwrap(),
            signed_tx: format!("{digit}-bytes"),
            expires_at,
        }
    }

    fn supplier() -> TronAddress {
        TronAddress::parse("TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1").unwrap()
    }

    fn placed(order_id: OrderId, kind: OrderKind) -> Event {
        Event::OrderPlaced {
            order_id,
            user_id: UserId::parse("42").unwrap(),
            kind,
            energy: EnergyAmount::new(65_000).unwrap(),
            duration: RentalDuration::parse("1h").unwrap(),
            receive_address: TronAddress::parse("TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2").unwrap(),
            price: Sun::parse_trx("5.85").unwrap(),
            pinned_wallet: None,
            idempotency_key: None,
            request_fingerprint: None,
            estimated_completion: at(0),
            callback_url: None,
            out_trade_no: None,
        }
    }

    fn paid(order_id: OrderId) -> Event {
        Event::BalanceDebited {
            user_id: UserId::parse("42").unwrap(),
            order_id,
            amount: Sun::parse_trx("5.85").unwrap(),
            balance_after: Sun::ZERO,
        }
    }

    /// A rental's whole story, both legs signed twice: the first of each given up.
    fn rental(order_id: OrderId) -> Vec<Event> {
        let (a, b, r, s) = (
            tx('a', at(60)),
            tx('b', at(120)),
            tx('c', at(3_700)),
            tx('d', at(3_800)),
        );
        vec![
            placed(order_id, OrderKind::Rental),
            paid(order_id),
            Event::OrderProcessing {
                order_id,
                supplier_wallet: supplier(),
            },
            Event::tx_signed(Leg::Delegation, order_id, a.clone()),
            Event::tx_expired(Leg::Delegation, order_id, a.tx_id),
            Event::tx_signed(Leg::Delegation, order_id, b.clone()),
            Event::OrderCompleted {
                order_id,
                transaction_hash: b.tx_id,
                block_number: 7,
                completed_at: at(100),
                rental_ends_at: at(3_600),
            },
            Event::tx_signed(Leg::Reclaim, order_id, r.clone()),
            Event::tx_expired(Leg::Reclaim, order_id, r.tx_id),
            Event::tx_signed(Leg::Reclaim, order_id, s.clone()),
            Event::RentalEnded {
                order_id,
                reclaim_transaction_hash: s.tx_id,
                ended_at: at(3_650),
            },
        ]
    }

    fn envelope(n: u64, event: Event) -> Envelope {
        let (aggregate, aggregate_id) = event.aggregate();
        Envelope {
            event_id: uuid::Uuid::now_v7(),
            aggregate,
            aggregate_id,
            sequence: n,
            occurred_at: at(n as i64),
            schema_version: event.schema_version(),
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: uuid::Uuid::now_v7(),
            event,
        }
    }

    #[test]
    fn the_progress_the_saga_evolves_from_an_orders_events_is_what_its_read_model_shows() {
        let dir = tempfile::tempdir().unwrap();
        let models = ReadModels::open(dir.path(), 1, 1 << 20).unwrap();
        let order_id = OrderId::new_v7();
        let events = rental(order_id);
        let News::Placed(mut progress) = news(&events[..1]) else {
            panic!("a placement is news")
        };
        let projector = Projector::new(models.clone());
        for (n, event) in events.into_iter().enumerate() {
            if n >= 1 {
                progress.evolve(&event);
            }
            let record = flashrent_events::CommandRecord {
                command_id: uuid::Uuid::now_v7(),
                key: "42".into(),
                writer_epoch: 0,
                events: vec![envelope(n as u64 + 1, event)],
                owner: None,
            };
            projector.step(0, &[(n as u64, Arc::new(record))]).unwrap();
            let view = models.order(&order_id).unwrap().unwrap();
            assert_eq!(OrderProgress::from_view(view), *progress, "after event {n}");
        }
    }

    #[test]
    fn a_placed_and_paid_order_is_reserved_first_and_an_unpaid_rental_waits_for_its_payment() {
        let id = OrderId::new_v7();
        let News::Placed(o) = news(&[placed(id, OrderKind::Rental), paid(id)]) else {
            panic!()
        };
        assert_eq!(next_step(&o, at(0)), Step::Reserve);
        let News::Placed(unpaid) = news(&[placed(id, OrderKind::Rental)]) else {
            panic!()
        };
        assert_eq!(next_step(&unpaid, at(0)), Step::Done);
        let News::Placed(manual) = news(&[placed(id, OrderKind::Manual)]) else {
            panic!()
        };
        assert_eq!(next_step(&manual, at(0)), Step::Reserve);
    }

    #[test]
    fn a_payment_alone_is_news_and_the_sagas_own_events_are_not() {
        let id = OrderId::new_v7();
        assert_eq!(news(&[paid(id)]), News::Paid);
        for own in rental(id).into_iter().skip(2) {
            assert_eq!(news([&own]), News::Own, "{own:?}");
        }
    }

    #[test]
    fn each_leg_is_signed_then_its_transaction_sent_until_it_settles() {
        let id = OrderId::new_v7();
        let events = rental(id);
        let News::Placed(mut o) = news(&events[..3]) else {
            panic!()
        };
        assert_eq!(next_step(&o, at(10)), Step::Sign(Leg::Delegation));
        o.evolve(&events[3]);
        assert_eq!(
            next_step(&o, at(10)),
            Step::Broadcast(Leg::Delegation, tx('a', at(60)))
        );
        o.evolve(&events[4]);
        assert_eq!(next_step(&o, at(10)), Step::Sign(Leg::Delegation));
        for e in &events[5..7] {
            o.evolve(e);
        }
        // Completed: nothing until the rental ends, then the reclaim.
        assert_eq!(next_step(&o, at(3_599)), Step::AwaitRentalEnd(at(3_600)));
        assert_eq!(next_step(&o, at(3_600)), Step::Sign(Leg::Reclaim));
        o.evolve(&events[7]);
        assert_eq!(
            next_step(&o, at(3_600)),
            Step::Broadcast(Leg::Reclaim, tx('c', at(3_700)))
        );
        for e in &events[8..] {
            o.evolve(e);
        }
        assert_eq!(next_step(&o, at(3_700)), Step::Done);
    }

    #[test]
    fn a_failed_order_is_settled_with_a_refund_only_if_it_was_paid() {
        let id = OrderId::new_v7();
        let failed = Event::OrderFailed {
            order_id: id,
            reason: FailureReason::InsufficientPoolEnergy,
            detail: String::new(),
        };
        let News::Placed(o) = news(&[placed(id, OrderKind::Rental), paid(id), failed.clone()])
        else {
            panic!()
        };
        assert_eq!(next_step(&o, at(0)), Step::Settle { refund: true });
        let News::Placed(o) = news(&[placed(id, OrderKind::Manual), failed]) else {
            panic!()
        };
        assert_eq!(next_step(&o, at(0)), Step::Settle { refund: false });
    }
}
