//! Read models of flashrent, kept in sled and derived only from the event log: orders,
//! balances with their ledger, users' wallets, and the wallet pool. Any of them can be
//! dropped and rebuilt from offset 0 with the same result.
//!
//! Everything lives in one sled tree under key prefixes. A projector step (the read-model
//! changes of a run of records plus the projector's new position) goes into an in-memory
//! table in front of the tree, which readers see at once ([`flashrent_store::Overlay`]); the table reaches
//! sled in atomic writes, each with the positions of the records it holds, so sled always
//! holds every record up to its checkpoints and none after, and a record applied again is
//! skipped by the checkpoint. The records this process writes are applied by one task for
//! all partitions ([`live`]).

pub mod active;
pub mod apply;
pub mod keys;
pub mod live;
pub mod projector;
pub mod reactor;
pub mod store;
pub mod stored_order;
pub mod views;

pub use live::LiveApplier;
pub use projector::{
    spawn_projectors, PartitionProjector, ProjectedRecord, Projector, StepOutcome, READ_MODELS,
};
pub use reactor::{Delivery, Reactor, ReactorSink, Reactors};
pub use store::{stored_u64, ReadModels, StoreError, StoredOrder};
pub use views::{ApiKeyView, BalanceView, LedgerEntry, OrderView, PoolWalletView, WalletView};
