//! An order's life: `pending → processing → completed`, `processing → failed → refunded`
//! (and `pending → failed` when the pool cannot serve). Every step the saga takes is a
//! command here; a command whose effect is already recorded decides nothing, so the saga
//! can repeat any step after a crash.

use super::DomainError;
use chrono::{DateTime, Utc};
use flashrent_events::{
    Event, FailureReason, LegChange, OrderId, OrderKind, Sun, TronAddress, UserId,
};

pub use flashrent_events::{Leg, OrderStatus, TxId, TxProgress};

/// A leg's transaction the engine signed and has not yet seen settle, as the writer keeps
/// it: deciding needs only the id and when it stops being valid, so the signed bytes of
/// its [`TxProgress`] live in the events and read models, not in every writer's memory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveTx {
    pub tx_id: TxId,
    /// Its expiry (grace included). Absent in the state of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// What the chain showed of a live transaction that will never land, before another may be
/// signed in its place: a node's answer to a broadcast is no such thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "proof", rename_all = "snake_case")]
pub enum NeverLands {
    /// The chain's head block, of this time, is past the transaction's expiry, and the
    /// chain has no trace of it.
    PastExpiry { head_time: DateTime<Utc> },
    /// It is in a block, failed.
    FailedOnChain,
}

impl NeverLands {
    /// Whether this proves `tx` dead: a head time at or before its expiry does not.
    fn proves(self, tx: &LiveTx) -> bool {
        match self {
            NeverLands::PastExpiry { head_time } => tx.expires_at.is_none_or(|e| head_time > e),
            NeverLands::FailedOnChain => true,
        }
    }
}

/// What the order's writer decides with: only what its rules read. Kept small, because a
/// writer holds every order of its partition in memory; the rest of an order (energy,
/// addresses, times) lives in its events and read model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub kind: OrderKind,
    pub price: Sun,
    pub status: OrderStatus,
    pub paid: bool,
    pub refunded: bool,
    pub rental_ended: bool,
    pub supplier_wallet: Option<TronAddress>,
    pub delegation: Option<Box<LiveTx>>,
    pub transaction_hash: Option<TxId>,
    pub reclaim: Option<Box<LiveTx>>,
    /// The sequence of the order's last event.
    pub version: u64,
}

impl Order {
    /// The leg's live transaction.
    pub fn live(&self, leg: Leg) -> Option<&LiveTx> {
        match leg {
            Leg::Delegation => self.delegation.as_deref(),
            Leg::Reclaim => self.reclaim.as_deref(),
        }
    }

    fn live_mut(&mut self, leg: Leg) -> &mut Option<Box<LiveTx>> {
        match leg {
            Leg::Delegation => &mut self.delegation,
            Leg::Reclaim => &mut self.reclaim,
        }
    }

    /// Whether a transaction of the leg may be signed now: a delegation while the order is
    /// processing, a reclaim once it completed and until its rental ended.
    fn leg_open(&self, leg: Leg) -> bool {
        self.status == leg_status(leg) && !self.rental_ended
    }
}

/// The status an order has while a transaction of the leg is under way.
fn leg_status(leg: Leg) -> OrderStatus {
    match leg {
        Leg::Delegation => OrderStatus::Processing,
        Leg::Reclaim => OrderStatus::Completed,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Moves a reserved order to processing; with `signed`, records its first delegation
    /// transaction in the same record.
    StartProcessing {
        supplier_wallet: TronAddress,
        signed: Option<TxProgress>,
    },
    /// Records a leg's transaction signed, before it is ever broadcast.
    RecordSigned { leg: Leg, tx: TxProgress },
    /// Gives up a leg's live transaction, with the chain's proof that it will never land.
    Expire {
        leg: Leg,
        tx_id: TxId,
        proof: NeverLands,
    },
    Complete {
        transaction_hash: TxId,
        block_number: u64,
        now: DateTime<Utc>,
        rental_ends_at: DateTime<Utc>,
    },
    /// `failed_tx` names the live delegation given up, with the chain's proof that it will
    /// never land; with a live delegation and no such proof the order cannot fail, as the
    /// transaction might still land.
    Fail {
        reason: FailureReason,
        detail: String,
        failed_tx: Option<(TxId, NeverLands)>,
    },
    EndRental {
        reclaim_transaction_hash: TxId,
        now: DateTime<Utc>,
    },
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::StartProcessing { .. } => "start processing",
            Command::RecordSigned {
                leg: Leg::Delegation,
                ..
            } => "record a signed delegation",
            Command::RecordSigned {
                leg: Leg::Reclaim, ..
            } => "record a signed reclaim",
            Command::Expire {
                leg: Leg::Delegation,
                ..
            } => "expire a delegation",
            Command::Expire {
                leg: Leg::Reclaim, ..
            } => "expire a reclaim",
            Command::Complete { .. } => "complete",
            Command::Fail { .. } => "fail",
            Command::EndRental { .. } => "end the rental",
        }
    }
}

pub fn decide(order: &Order, command: &Command) -> Result<Vec<Event>, DomainError> {
    use OrderStatus::*;
    let order_id = order.order_id;
    let refuse = |c: &Command| {
        Err(DomainError::InvalidTransition {
            order: order_id,
            status: order.status.as_str().into(),
            action: c.name().into(),
        })
    };
    match (command, order.status) {
        (
            Command::StartProcessing {
                supplier_wallet,
                signed,
            },
            Pending,
        ) => {
            let mut events = vec![Event::OrderProcessing {
                order_id,
                supplier_wallet: *supplier_wallet,
            }];
            if let Some(tx) = signed {
                events.push(Event::tx_signed(Leg::Delegation, order_id, tx.clone()));
            }
            Ok(events)
        }
        // Already processing: a signature made for a repeat of this step is never recorded,
        // so it is never broadcast.
        (
            Command::StartProcessing {
                supplier_wallet, ..
            },
            Processing,
        ) if order.supplier_wallet == Some(*supplier_wallet) => Ok(vec![]),
        (Command::RecordSigned { leg, tx }, _) if order.leg_open(*leg) => {
            // One live transaction per leg: the old one must be expired first.
            match order.live(*leg) {
                Some(live) if live.tx_id == tx.tx_id => Ok(vec![]),
                Some(_) => refuse(command),
                None => Ok(vec![Event::tx_signed(*leg, order_id, tx.clone())]),
            }
        }
        (Command::Expire { leg, tx_id, proof }, status) if status == leg_status(*leg) => {
            match order.live(*leg) {
                Some(live) if live.tx_id == *tx_id => {
                    if !proof.proves(live) {
                        return not_proven(order, command.name());
                    }
                    Ok(vec![Event::tx_expired(*leg, order_id, *tx_id)])
                }
                _ => Ok(vec![]),
            }
        }
        (
            Command::Complete {
                transaction_hash,
                block_number,
                now,
                rental_ends_at,
            },
            Processing,
        ) => {
            if order.delegation.as_ref().map(|t| t.tx_id) != Some(*transaction_hash) {
                return refuse(command);
            }
            Ok(vec![Event::OrderCompleted {
                order_id,
                transaction_hash: *transaction_hash,
                block_number: *block_number,
                completed_at: *now,
                rental_ends_at: *rental_ends_at,
            }])
        }
        (
            Command::Complete {
                transaction_hash, ..
            },
            Completed,
        ) if order.transaction_hash == Some(*transaction_hash) => Ok(vec![]),
        (
            Command::Fail {
                reason,
                detail,
                failed_tx,
            },
            Pending | Processing,
        ) => match (&order.delegation, failed_tx) {
            (Some(t), Some((tx_id, proof))) if t.tx_id == *tx_id => {
                if !proof.proves(t) {
                    return not_proven(order, "fail with its delegation");
                }
                Ok(vec![Event::OrderFailed {
                    order_id,
                    reason: *reason,
                    detail: detail.clone(),
                }])
            }
            (Some(_), _) => refuse(command),
            (None, _) => Ok(vec![Event::OrderFailed {
                order_id,
                reason: *reason,
                detail: detail.clone(),
            }]),
        },
        (Command::Fail { .. }, Failed | Refunded) => Ok(vec![]),
        (
            Command::EndRental {
                reclaim_transaction_hash,
                now,
            },
            Completed,
        ) => {
            if order.rental_ended {
                return Ok(vec![]);
            }
            if order.reclaim.as_ref().map(|t| t.tx_id) != Some(*reclaim_transaction_hash) {
                return refuse(command);
            }
            Ok(vec![Event::RentalEnded {
                order_id,
                reclaim_transaction_hash: *reclaim_transaction_hash,
                ended_at: *now,
            }])
        }
        _ => refuse(command),
    }
}

/// A live transaction is not given up before the chain's head is past its expiry: it might
/// still land, and the one signed after it would land too.
fn not_proven(order: &Order, what: &'static str) -> Result<Vec<Event>, DomainError> {
    Err(DomainError::InvalidTransition {
        order: order.order_id,
        status: "live on chain until its expiry".into(),
        action: what.into(),
    })
}

/// Builds the order from its first event.
pub fn start(event: &Event) -> Option<Order> {
    match event {
        Event::OrderPlaced {
            order_id,
            user_id,
            kind,
            price,
            ..
        } => Some(Order {
            order_id: *order_id,
            user_id: *user_id,
            kind: *kind,
            price: *price,
            status: OrderStatus::Pending,
            paid: false,
            refunded: false,
            rental_ended: false,
            supplier_wallet: None,
            delegation: None,
            transaction_hash: None,
            reclaim: None,
            version: 1,
        }),
        _ => None,
    }
}

pub fn evolve(mut order: Order, event: &Event) -> Order {
    if let Some((leg, change)) = event.leg_change() {
        *order.live_mut(leg) = match change {
            LegChange::Signed {
                tx_id, expires_at, ..
            } => Some(Box::new(LiveTx {
                tx_id,
                expires_at: Some(expires_at),
            })),
            LegChange::Expired { .. } => None,
        };
        order.version += 1;
        return order;
    }
    match event {
        Event::BalanceDebited { .. } => {
            // The account's event; the order only notes that it is paid.
            order.paid = true;
            return order;
        }
        Event::BalanceRefunded { .. } => return order,
        Event::OrderProcessing {
            supplier_wallet, ..
        } => {
            order.status = OrderStatus::Processing;
            order.supplier_wallet = Some(*supplier_wallet);
        }
        Event::OrderCompleted {
            transaction_hash, ..
        } => {
            order.status = OrderStatus::Completed;
            order.transaction_hash = Some(*transaction_hash);
            order.delegation = None;
        }
        Event::OrderFailed { .. } => order.status = OrderStatus::Failed,
        Event::OrderRefunded { .. } => {
            order.status = OrderStatus::Refunded;
            order.refunded = true;
        }
        Event::RentalEnded { .. } => {
            order.rental_ended = true;
            order.reclaim = None;
        }
        _ => return order,
    }
    order.version += 1;
    order
}
