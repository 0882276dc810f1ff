//! The chain port: what the saga needs from TRON. `tron::TronClient` implements it against a
//! java-tron full node over HTTP — a real one, or the devnet (`crate::devnet`).

pub mod demo;
pub mod tron;

use chrono::{DateTime, Utc};
use flashrent_events::{EnergyAmount, OrderId, TronAddress, TxId};
use std::time::Duration;

/// Energy delegated (or taken back) from a supplier wallet to a renter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub from: TronAddress,
    pub to: TronAddress,
    pub energy: EnergyAmount,
    /// How long the renter is protected by TRON's delegation lock (0 for none).
    pub lock_seconds: u64,
    /// For a reclaim: the id of the confirmed delegation it takes back.
    pub delegation_tx: Option<TxId>,
    /// The order it is for, written into the transaction: no two orders' transactions are
    /// ever the same bytes, whichever instance signs them and when.
    pub order: OrderId,
}

/// A transaction signed locally: its id, its bytes as hex, and when it stops being valid;
/// the shape an order records of each leg's transaction.
pub use flashrent_events::TxProgress as SignedTransaction;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// The chain has not seen it (yet, or ever: compare with its expiry).
    Unknown,
    /// Seen but not yet in a block.
    Pending,
    Confirmed {
        block: u64,
    },
    Failed {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHead {
    pub number: u64,
    pub time: DateTime<Utc>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    /// Try again later (network trouble, node busy).
    #[error("chain temporarily unavailable: {0}")]
    Retryable(String),
    /// The node refuses this (validation failure, insufficient stake). For a broadcast, that
    /// node's view only: another may hold the transaction already.
    #[error("chain refused: {0}")]
    Refused(String),
    /// The node calls the transaction stale (expired, unknown reference block). Never proof
    /// that it can never land: the node may lag or sit on a fork, and java-tron answers
    /// "expired" for one that landed too. Only the chain's head past the expiry is.
    #[error("the node calls the transaction stale: {0}")]
    Stale(String),
}

#[async_trait::async_trait]
pub trait Chain: Send + Sync + 'static {
    /// Whether the address exists on chain (energy cannot be delegated to one that does not).
    async fn is_activated(&self, address: &TronAddress) -> Result<bool, ChainError>;
    async fn sign_delegation(
        &self,
        delegation: &Delegation,
    ) -> Result<SignedTransaction, ChainError>;
    async fn sign_reclaim(&self, delegation: &Delegation) -> Result<SignedTransaction, ChainError>;
    /// Sends a signed transaction. Sending the same bytes again is harmless.
    async fn broadcast(&self, tx: &SignedTransaction) -> Result<(), ChainError>;
    async fn status(&self, tx_id: &TxId) -> Result<TxStatus, ChainError>;
    /// The chain's latest block. Its timestamp tells whether a transaction can still be
    /// included: one whose expiration is older cannot, whatever the local clock says.
    async fn head_block(&self) -> Result<BlockHead, ChainError>;
    /// How every transaction in block `number` settled, by transaction id: one request per
    /// block, however many transactions are waiting on it.
    async fn block_outcomes(&self, number: u64) -> Result<Vec<(TxId, TxStatus)>, ChainError>;
    /// The chain's typical time from broadcast to confirmation (its block interval), for
    /// estimates shown to users and for how the saga waits.
    fn expected_confirmation(&self) -> Duration;
    /// Supplier wallets this chain can sign for, with the energy each can delegate now.
    async fn supplier_inventory(&self) -> Result<Vec<(TronAddress, EnergyAmount)>, ChainError> {
        Ok(vec![])
    }
}
