//! Journaled storage on sled, below both the write side (writers' snapshots) and the read
//! side (read models) of flashrent, and the devnet's chain: a data dir's one sled database
//! ([`SledStore`]), trees whose multi-key writes are atomic ([`AtomicTree`]), and a
//! write-behind table in front of such a tree ([`Overlay`]) with reads merged over both.

mod atomic;
mod db;
mod overlay;

pub use atomic::AtomicTree;
pub use db::{sled_config, SledStore};
pub use overlay::{merged_range, FlushDue, Overlay, Pending};
