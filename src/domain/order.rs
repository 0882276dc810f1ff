//! An order's life: `pending → processing → completed`, `processing → failed → refunded`
//! (and `pending → failed` when the pool cannot serve). Every step the saga takes is a
//! command here; a command whose effect is already recorded decides nothing, so the saga
//! can repeat any step after a crash.

use super::DomainError;
use chrono::{DateTime, Utc};
use flashrent_events::{Event, FailureReason, OrderId, OrderKind, Sun, TronAddress, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OrderStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Processing => "processing",
            OrderStatus::Completed => "completed",
            OrderStatus::Failed => "failed",
            OrderStatus::Refunded => "refunded",
        }
    }
}

/// A transaction the engine signed and has not yet seen settle. The signed bytes live in
/// the events and read models; deciding only needs the id, and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveTx {
    pub tx_id: Box<str>,
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
    pub transaction_hash: Option<Box<str>>,
    pub reclaim: Option<Box<LiveTx>>,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Moves a reserved order to processing; with `signed`, records its first delegation
    /// transaction in the same record.
    StartProcessing {
        supplier_wallet: TronAddress,
        signed: Option<(String, String, DateTime<Utc>)>,
    },
    RecordDelegationSigned {
        tx_id: String,
        signed_tx: String,
        expires_at: DateTime<Utc>,
    },
    ExpireDelegation {
        tx_id: String,
        proof: NeverLands,
    },
    Complete {
        transaction_hash: String,
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
        failed_tx: Option<(String, NeverLands)>,
    },
    RecordReclaimSigned {
        tx_id: String,
        signed_tx: String,
        expires_at: DateTime<Utc>,
    },
    ExpireReclaim {
        tx_id: String,
        proof: NeverLands,
    },
    EndRental {
        reclaim_transaction_hash: String,
        now: DateTime<Utc>,
    },
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::StartProcessing { .. } => "start processing",
            Command::RecordDelegationSigned { .. } => "record a signed delegation",
            Command::ExpireDelegation { .. } => "expire a delegation",
            Command::Complete { .. } => "complete",
            Command::Fail { .. } => "fail",
            Command::RecordReclaimSigned { .. } => "record a signed reclaim",
            Command::ExpireReclaim { .. } => "expire a reclaim",
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
    let unsettled_tx = |tx: &Option<Box<LiveTx>>| tx.is_some();
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
            if let Some((tx_id, signed_tx, expires_at)) = signed {
                events.push(Event::DelegationSigned {
                    order_id,
                    tx_id: tx_id.clone(),
                    signed_tx: signed_tx.clone(),
                    expires_at: *expires_at,
                });
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
        (
            Command::RecordDelegationSigned {
                tx_id,
                signed_tx,
                expires_at,
            },
            Processing,
        ) => {
            if unsettled_tx(&order.delegation) {
                // One live transaction per order: the old one must be expired first.
                return if order
                    .delegation
                    .as_ref()
                    .is_some_and(|t| *t.tx_id == **tx_id)
                {
                    Ok(vec![])
                } else {
                    refuse(command)
                };
            }
            Ok(vec![Event::DelegationSigned {
                order_id,
                tx_id: tx_id.clone(),
                signed_tx: signed_tx.clone(),
                expires_at: *expires_at,
            }])
        }
        (Command::ExpireDelegation { tx_id, proof }, Processing) => match &order.delegation {
            Some(t) if *t.tx_id == **tx_id => {
                if !proof.proves(t) {
                    return not_proven(order, "expire a delegation");
                }
                Ok(vec![Event::DelegationExpired {
                    order_id,
                    tx_id: tx_id.clone(),
                }])
            }
            _ => Ok(vec![]),
        },
        (
            Command::Complete {
                transaction_hash,
                block_number,
                now,
                rental_ends_at,
            },
            Processing,
        ) => {
            if order.delegation.as_ref().map(|t| &*t.tx_id) != Some(transaction_hash.as_str()) {
                return refuse(command);
            }
            Ok(vec![Event::OrderCompleted {
                order_id,
                transaction_hash: transaction_hash.clone(),
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
        ) if order.transaction_hash.as_deref() == Some(transaction_hash.as_str()) => Ok(vec![]),
        (
            Command::Fail {
                reason,
                detail,
                failed_tx,
            },
            Pending | Processing,
        ) => match (&order.delegation, failed_tx) {
            (Some(t), Some((tx_id, proof))) if *t.tx_id == **tx_id => {
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
            Command::RecordReclaimSigned {
                tx_id,
                signed_tx,
                expires_at,
            },
            Completed,
        ) if !order.rental_ended => {
            if unsettled_tx(&order.reclaim) {
                return if order.reclaim.as_ref().is_some_and(|t| *t.tx_id == **tx_id) {
                    Ok(vec![])
                } else {
                    refuse(command)
                };
            }
            Ok(vec![Event::ReclaimSigned {
                order_id,
                tx_id: tx_id.clone(),
                signed_tx: signed_tx.clone(),
                expires_at: *expires_at,
            }])
        }
        (Command::ExpireReclaim { tx_id, proof }, Completed) => match &order.reclaim {
            Some(t) if *t.tx_id == **tx_id && !order.rental_ended => {
                if !proof.proves(t) {
                    return not_proven(order, "expire a reclaim");
                }
                Ok(vec![Event::ReclaimExpired {
                    order_id,
                    tx_id: tx_id.clone(),
                }])
            }
            _ => Ok(vec![]),
        },
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
            if order.reclaim.as_ref().map(|t| &*t.tx_id) != Some(reclaim_transaction_hash.as_str())
            {
                return refuse(command);
            }
            Ok(vec![Event::RentalEnded {
                order_id,
                reclaim_transaction_hash: reclaim_transaction_hash.clone(),
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
    let live = |tx_id: &str, expires_at: &DateTime<Utc>| {
        Some(Box::new(LiveTx {
            tx_id: tx_id.into(),
            expires_at: Some(*expires_at),
        }))
    };
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
        Event::DelegationSigned {
            tx_id, expires_at, ..
        } => order.delegation = live(tx_id, expires_at),
        // Written by earlier versions, which recorded every broadcast; nothing decides on it.
        Event::DelegationBroadcast { .. } | Event::ReclaimBroadcast { .. } => {}
        Event::DelegationExpired { .. } => order.delegation = None,
        Event::OrderCompleted {
            transaction_hash, ..
        } => {
            order.status = OrderStatus::Completed;
            order.transaction_hash = Some(transaction_hash.as_str().into());
            order.delegation = None;
        }
        Event::OrderFailed { .. } => order.status = OrderStatus::Failed,
        Event::OrderRefunded { .. } => {
            order.status = OrderStatus::Refunded;
            order.refunded = true;
        }
        Event::ReclaimSigned {
            tx_id, expires_at, ..
        } => order.reclaim = live(tx_id, expires_at),
        Event::ReclaimExpired { .. } => order.reclaim = None,
        Event::RentalEnded { .. } => {
            order.rental_ended = true;
            order.reclaim = None;
        }
        _ => return order,
    }
    order.version += 1;
    order
}
