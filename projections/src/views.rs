//! The shapes stored in the read models. The HTTP layer renders them into the API's JSON.

use chrono::{DateTime, Utc};
use flashrent_events::{
    ApiKeyId, EnergyAmount, FailureReason, KeyScope, Leg, OrderId, OrderKind, OrderStatus,
    RentalDuration, Sun, TronAddress, TxId, TxProgress, UserId,
};
use serde::{Deserialize, Serialize};

/// Stored by [`crate::stored_order`] in the API's shape; it has no serde form of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderView {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub kind: OrderKind,
    pub status: OrderStatus,
    pub energy_amount: EnergyAmount,
    pub duration: RentalDuration,
    pub receive_address: TronAddress,
    pub price: Sun,
    pub paid: bool,
    pub created_at: DateTime<Utc>,
    pub estimated_completion: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub supplier_wallet: Option<TronAddress>,
    /// The delegation transaction signed for this order, until it settles (its id is the
    /// API's `pending_transaction`; its signed bytes, public once broadcast, are kept so a
    /// restart can send them again).
    pub delegation: Option<TxProgress>,
    pub transaction_hash: Option<TxId>,
    pub block_number: Option<u64>,
    pub completed_at: Option<DateTime<Utc>>,
    pub rental_ends_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<FailureReason>,
    /// The order's `failure_message`: [`FailureReason::message`], never a node's text.
    pub failure_detail: Option<String>,
    pub failed_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
    /// The reclaim transaction signed for this rental, until it settles (never shown).
    pub reclaim: Option<TxProgress>,
    pub reclaim_transaction_hash: Option<TxId>,
    pub rental_ended_at: Option<DateTime<Utc>>,
}

impl OrderView {
    /// The leg's transaction, signed and not yet settled.
    pub fn leg(&self, leg: Leg) -> Option<&TxProgress> {
        match leg {
            Leg::Delegation => self.delegation.as_ref(),
            Leg::Reclaim => self.reclaim.as_ref(),
        }
    }

    pub fn leg_mut(&mut self, leg: Leg) -> &mut Option<TxProgress> {
        match leg {
            Leg::Delegation => &mut self.delegation,
            Leg::Reclaim => &mut self.reclaim,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceView {
    pub user_id: UserId,
    pub balance: Sun,
    pub last_updated: DateTime<Utc>,
    pub ledger_entries: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub delta: i64,
    pub balance_after: Sun,
    /// `credit`, `order_payment` or `refund`.
    pub cause: String,
    pub order_id: Option<OrderId>,
    pub reference: Option<String>,
    pub event_id: uuid::Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletView {
    pub id: u32,
    pub wallet_address: TronAddress,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolWalletView {
    pub address: TronAddress,
    pub energy_capacity: u64,
    pub reserved: u64,
    pub delegated: u64,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PoolWalletView {
    pub fn available(&self) -> u64 {
        self.energy_capacity
            .saturating_sub(self.reserved + self.delegated)
    }
}

/// An API key as operators see it: never the key, nor its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyView {
    pub id: ApiKeyId,
    #[serde(flatten)]
    pub scope: KeyScope,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}
