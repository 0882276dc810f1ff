//! Read models of flashrent, kept in sled and derived only from the event log: orders,
//! balances with their ledger, users' wallets, and the wallet pool. Any of them can be
//! dropped and rebuilt from offset 0 with the same result.
//!
//! Everything lives in one sled tree under key prefixes, so that one projector step (the
//! read-model changes of a run of records plus the projector's new position) is a single
//! atomic `apply_batch`: a record is either fully applied with its checkpoint or not at all,
//! and applying it again is skipped by the checkpoint.

pub mod apply;
pub mod keys;
pub mod projector;
pub mod store;
pub mod stored_order;
pub mod views;

pub use projector::{spawn_projectors, ProjectedRecord, Projector, READ_MODELS};
pub use store::{stored_u64, ReadModels, StoreError, StoredOrder};
pub use views::{BalanceView, LedgerEntry, OrderView, PoolWalletView, WalletView};
