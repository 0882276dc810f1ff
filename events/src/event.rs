//! Every fact the engine records, in the past tense. Each event belongs to one aggregate:
//! a user's account, an order (kept in its user's partition, so paying for an order and
//! creating it are one atomic append), or the wallet pool.

use crate::{
    AggregateKind, ApiKeyId, EnergyAmount, Leg, OrderId, RentalDuration, Sun, TronAddress, TxId,
    TxProgress, UserId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The partition key (and aggregate id) of the one wallet pool.
pub const WALLET_POOL_KEY: &str = "wallet-pool";
/// The partition key (and aggregate id) of the API keys.
pub const API_KEYS_KEY: &str = "api-keys";

/// Whom an API key may act for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum KeyScope {
    /// One user's own account only (a platform's API customer).
    User { user_id: UserId },
    /// A trusted front end (the operator's bot) that acts for any user.
    Frontend,
}

/// When a key was last let in, as one instance saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUse {
    pub key_id: ApiKeyId,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// A renter's order, paid from their balance.
    Rental,
    /// An operator's manual delegation from a chosen supplier wallet; nobody pays.
    Manual,
}

/// Where an order stands: `pending → processing → completed`, `processing → failed →
/// refunded` (and `pending → failed` when the pool cannot serve). The API, the read models'
/// counts and the metrics write it as [`OrderStatus::as_str`]; its serde form (the variant's
/// name) is what writers' snapshots hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OrderStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Processing,
        OrderStatus::Completed,
        OrderStatus::Failed,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Processing => "processing",
            OrderStatus::Completed => "completed",
            OrderStatus::Failed => "failed",
            OrderStatus::Refunded => "refunded",
        }
    }

    /// The status written `text` ([`OrderStatus::as_str`]).
    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an order failed: a stable code shown to the renter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// No supplier wallet had the energy.
    InsufficientPoolEnergy,
    /// The receiving address does not exist on chain.
    ReceiverNotActivated,
    /// The chain refused or failed the delegation.
    DelegationFailed,
}

impl FailureReason {
    pub fn code(self) -> &'static str {
        match self {
            FailureReason::InsufficientPoolEnergy => "insufficient_pool_energy",
            FailureReason::ReceiverNotActivated => "receiver_not_activated",
            FailureReason::DelegationFailed => "delegation_failed",
        }
    }

    /// What clients and webhook receivers are told of the failure: our own words, one text
    /// per reason. What a node answered stays in the event's `detail` and the log, for
    /// operators: it is the node's text, not ours to pass on.
    pub fn message(self) -> &'static str {
        match self {
            FailureReason::InsufficientPoolEnergy => {
                "no supplier wallet had enough energy for this order"
            }
            FailureReason::ReceiverNotActivated => {
                "the receiving address is not activated on chain"
            }
            FailureReason::DelegationFailed => "the chain did not take the energy delegation",
        }
    }
}

/// A leg's transaction signed or given up, as [`Event::leg_change`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegChange<'a> {
    Signed {
        tx_id: TxId,
        signed_tx: &'a str,
        expires_at: DateTime<Utc>,
    },
    Expired {
        tx_id: TxId,
    },
}

impl LegChange<'_> {
    /// The transaction a signature recorded, whole.
    pub fn signed(&self) -> Option<TxProgress> {
        match *self {
            LegChange::Signed {
                tx_id,
                signed_tx,
                expires_at,
            } => Some(TxProgress {
                tx_id,
                signed_tx: signed_tx.to_owned(),
                expires_at,
            }),
            LegChange::Expired { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum Event {
    // ---- user account -------------------------------------------------------------
    BalanceCredited {
        user_id: UserId,
        amount: Sun,
        reference: String,
        balance_after: Sun,
    },
    WalletAdded {
        user_id: UserId,
        wallet_id: u32,
        address: TronAddress,
    },
    /// The payment for an order, decided together with the order's creation.
    BalanceDebited {
        user_id: UserId,
        order_id: OrderId,
        amount: Sun,
        balance_after: Sun,
    },
    /// The payment of a failed order given back. At most once per order.
    BalanceRefunded {
        user_id: UserId,
        order_id: OrderId,
        amount: Sun,
        balance_after: Sun,
    },

    // ---- order --------------------------------------------------------------------
    OrderPlaced {
        order_id: OrderId,
        user_id: UserId,
        kind: OrderKind,
        energy: EnergyAmount,
        duration: RentalDuration,
        receive_address: TronAddress,
        price: Sun,
        /// Set for manual delegations: the operator chose the supplier wallet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pinned_wallet: Option<TronAddress>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_fingerprint: Option<String>,
        estimated_completion: DateTime<Utc>,
        /// Where to POST this order's notifications (`flashrent notify`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        callback_url: Option<String>,
        /// The client's own reference for the order, echoed in its notifications.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        out_trade_no: Option<String>,
    },
    OrderProcessing {
        order_id: OrderId,
        supplier_wallet: TronAddress,
    },
    /// A delegation transaction was signed. Recorded before it is broadcast, so that after a
    /// crash the engine asks the chain about this transaction instead of signing another.
    /// (Broadcasts are not recorded: the `DelegationBroadcast` and `ReclaimBroadcast` of
    /// earlier versions are dropped when a record is decoded, see [`crate::codec`].)
    DelegationSigned {
        order_id: OrderId,
        tx_id: TxId,
        signed_tx: String,
        expires_at: DateTime<Utc>,
    },
    /// The signed transaction provably did not land and no longer can.
    DelegationExpired {
        order_id: OrderId,
        tx_id: TxId,
    },
    OrderCompleted {
        order_id: OrderId,
        transaction_hash: TxId,
        block_number: u64,
        completed_at: DateTime<Utc>,
        rental_ends_at: DateTime<Utc>,
    },
    OrderFailed {
        order_id: OrderId,
        reason: FailureReason,
        detail: String,
    },
    OrderRefunded {
        order_id: OrderId,
        user_id: UserId,
        amount: Sun,
    },
    /// The reclaim's transaction was signed, recorded before it is broadcast (as a
    /// delegation's).
    ReclaimSigned {
        order_id: OrderId,
        tx_id: TxId,
        signed_tx: String,
        expires_at: DateTime<Utc>,
    },
    ReclaimExpired {
        order_id: OrderId,
        tx_id: TxId,
    },
    RentalEnded {
        order_id: OrderId,
        reclaim_transaction_hash: TxId,
        ended_at: DateTime<Utc>,
    },

    // ---- API keys -----------------------------------------------------------------
    /// A key was issued. Only the SHA-256 of the key (hex) is recorded; the key itself was
    /// shown once, to the operator who asked for it.
    ApiKeyCreated {
        key_id: ApiKeyId,
        #[serde(flatten)]
        scope: KeyScope,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        key_hash: String,
    },
    ApiKeyRevoked {
        key_id: ApiKeyId,
    },
    /// Keys let in since the last such event: who used the API, and when last.
    ApiKeysUsed {
        uses: Vec<KeyUse>,
    },

    // ---- wallet pool --------------------------------------------------------------
    SupplierWalletRegistered {
        address: TronAddress,
        energy_capacity: EnergyAmount,
    },
    /// The chain's view of a supplier wallet, read back: its capacity is now what it can
    /// still delegate plus what the pool has delegated from it.
    SupplierCapacityObserved {
        address: TronAddress,
        energy_capacity: u64,
    },
    EnergyReserved {
        order_id: OrderId,
        wallet: TronAddress,
        energy: EnergyAmount,
    },
    EnergyReservationRejected {
        order_id: OrderId,
        energy: EnergyAmount,
    },
    ReservedEnergyDelegated {
        order_id: OrderId,
        wallet: TronAddress,
        energy: EnergyAmount,
    },
    ReservationReleased {
        order_id: OrderId,
        wallet: TronAddress,
        energy: EnergyAmount,
    },
    DelegatedEnergyReturned {
        order_id: OrderId,
        wallet: TronAddress,
        energy: EnergyAmount,
    },
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::BalanceCredited { .. } => "BalanceCredited",
            Event::WalletAdded { .. } => "WalletAdded",
            Event::BalanceDebited { .. } => "BalanceDebited",
            Event::BalanceRefunded { .. } => "BalanceRefunded",
            Event::OrderPlaced { .. } => "OrderPlaced",
            Event::OrderProcessing { .. } => "OrderProcessing",
            Event::DelegationSigned { .. } => "DelegationSigned",
            Event::DelegationExpired { .. } => "DelegationExpired",
            Event::OrderCompleted { .. } => "OrderCompleted",
            Event::OrderFailed { .. } => "OrderFailed",
            Event::OrderRefunded { .. } => "OrderRefunded",
            Event::ReclaimSigned { .. } => "ReclaimSigned",
            Event::ReclaimExpired { .. } => "ReclaimExpired",
            Event::RentalEnded { .. } => "RentalEnded",
            Event::SupplierWalletRegistered { .. } => "SupplierWalletRegistered",
            Event::SupplierCapacityObserved { .. } => "SupplierCapacityObserved",
            Event::EnergyReserved { .. } => "EnergyReserved",
            Event::EnergyReservationRejected { .. } => "EnergyReservationRejected",
            Event::ReservedEnergyDelegated { .. } => "ReservedEnergyDelegated",
            Event::ReservationReleased { .. } => "ReservationReleased",
            Event::DelegatedEnergyReturned { .. } => "DelegatedEnergyReturned",
            Event::ApiKeyCreated { .. } => "ApiKeyCreated",
            Event::ApiKeyRevoked { .. } => "ApiKeyRevoked",
            Event::ApiKeysUsed { .. } => "ApiKeysUsed",
        }
    }

    /// The order an event is about, if any.
    pub fn order_id(&self) -> Option<OrderId> {
        match self {
            Event::BalanceCredited { .. }
            | Event::WalletAdded { .. }
            | Event::SupplierWalletRegistered { .. }
            | Event::SupplierCapacityObserved { .. }
            | Event::ApiKeyCreated { .. }
            | Event::ApiKeyRevoked { .. }
            | Event::ApiKeysUsed { .. } => None,
            Event::BalanceDebited { order_id, .. }
            | Event::BalanceRefunded { order_id, .. }
            | Event::OrderPlaced { order_id, .. }
            | Event::OrderProcessing { order_id, .. }
            | Event::DelegationSigned { order_id, .. }
            | Event::DelegationExpired { order_id, .. }
            | Event::OrderCompleted { order_id, .. }
            | Event::OrderFailed { order_id, .. }
            | Event::OrderRefunded { order_id, .. }
            | Event::ReclaimSigned { order_id, .. }
            | Event::ReclaimExpired { order_id, .. }
            | Event::RentalEnded { order_id, .. }
            | Event::EnergyReserved { order_id, .. }
            | Event::EnergyReservationRejected { order_id, .. }
            | Event::ReservedEnergyDelegated { order_id, .. }
            | Event::ReservationReleased { order_id, .. }
            | Event::DelegatedEnergyReturned { order_id, .. } => Some(*order_id),
        }
    }

    /// The aggregate this event belongs to, and its id.
    pub fn aggregate(&self) -> (AggregateKind, String) {
        match self {
            Event::BalanceCredited { user_id, .. }
            | Event::WalletAdded { user_id, .. }
            | Event::BalanceDebited { user_id, .. }
            | Event::BalanceRefunded { user_id, .. } => {
                (AggregateKind::UserAccount, user_id.to_string())
            }
            Event::SupplierWalletRegistered { .. }
            | Event::SupplierCapacityObserved { .. }
            | Event::EnergyReserved { .. }
            | Event::EnergyReservationRejected { .. }
            | Event::ReservedEnergyDelegated { .. }
            | Event::ReservationReleased { .. }
            | Event::DelegatedEnergyReturned { .. } => {
                (AggregateKind::WalletPool, WALLET_POOL_KEY.to_owned())
            }
            Event::ApiKeyCreated { .. }
            | Event::ApiKeyRevoked { .. }
            | Event::ApiKeysUsed { .. } => (AggregateKind::ApiKeys, API_KEYS_KEY.to_owned()),
            other => (
                AggregateKind::Order,
                other
                    .order_id()
                    .expect("every order event names its order")
                    .to_string(),
            ),
        }
    }

    /// A leg's transaction signed: `DelegationSigned` or `ReclaimSigned`.
    pub fn tx_signed(leg: Leg, order_id: OrderId, tx: TxProgress) -> Event {
        let TxProgress {
            tx_id,
            signed_tx,
            expires_at,
        } = tx;
        match leg {
            Leg::Delegation => Event::DelegationSigned {
                order_id,
                tx_id,
                signed_tx,
                expires_at,
            },
            Leg::Reclaim => Event::ReclaimSigned {
                order_id,
                tx_id,
                signed_tx,
                expires_at,
            },
        }
    }

    /// A leg's transaction given up: `DelegationExpired` or `ReclaimExpired`.
    pub fn tx_expired(leg: Leg, order_id: OrderId, tx_id: TxId) -> Event {
        match leg {
            Leg::Delegation => Event::DelegationExpired { order_id, tx_id },
            Leg::Reclaim => Event::ReclaimExpired { order_id, tx_id },
        }
    }

    /// What the event does to one of its order's legs, read as `(Leg, …)`: the one place
    /// where the two legs' events are told apart.
    pub fn leg_change(&self) -> Option<(Leg, LegChange<'_>)> {
        let signed = |tx_id, signed_tx, expires_at| LegChange::Signed {
            tx_id,
            signed_tx,
            expires_at,
        };
        match self {
            Event::DelegationSigned {
                tx_id,
                signed_tx,
                expires_at,
                ..
            } => Some((Leg::Delegation, signed(*tx_id, signed_tx, *expires_at))),
            Event::ReclaimSigned {
                tx_id,
                signed_tx,
                expires_at,
                ..
            } => Some((Leg::Reclaim, signed(*tx_id, signed_tx, *expires_at))),
            Event::DelegationExpired { tx_id, .. } => {
                Some((Leg::Delegation, LegChange::Expired { tx_id: *tx_id }))
            }
            Event::ReclaimExpired { tx_id, .. } => {
                Some((Leg::Reclaim, LegChange::Expired { tx_id: *tx_id }))
            }
            _ => None,
        }
    }

    /// The current schema version written for this event type.
    pub fn schema_version(&self) -> u16 {
        crate::codec::current_version(self.event_type())
    }
}
