//! A writer's state on disk. Without it a writer holds every account, order and reservation
//! of its partition in memory, and folds the partition's whole history each time it takes
//! the partition. With it, the writer holds only what it touched since its last snapshot:
//! every [`SNAPSHOT_EVERY`] events it waits until everything it decided is durable, writes
//! what it touched, with the offset and fence the log stood at, in one sled batch, and lets
//! it go. An aggregate needed again is read back before a command or an event touches it,
//! and taking the partition reads the snapshot and folds only the log after it.
//!
//! The snapshot is derived from the log like a read model: at its offset it equals the fold
//! of the records before, and dropping it (`flashrent rebuild`, a format change, a value
//! that does not decode) only costs a fold from offset 0.

use crate::domain::account::UserAccount;
use crate::domain::order::Order;
use crate::domain::pool::{Reservation, SupplierWallet};
use crate::domain::{user_of, PartitionState};
use flashrent_events::{EpochFence, Event, Offset, OrderId, TronAddress, UserId};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Events a writer evolves between two snapshots, by default. What it holds in memory is
/// what they touched (a few thousand orders); a snapshot costs one wait for the log and
/// one batch.
pub const SNAPSHOT_EVERY: u64 = 20_000;

/// Bumped whenever a stored shape changes: a snapshot of another format is dropped.
const FORMAT: &[u8] = b"writer-snapshot-1";
const FORMAT_KEY: &[u8] = b"format";
const AT: &[u8] = b"at";
const POOL: &[u8] = b"pool";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("writer snapshot store: {0}")]
    Sled(#[from] sled::Error),
    #[error("writer snapshot value at {key} is not valid: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

/// Where the log stood when the snapshot was written.
#[derive(Serialize, Deserialize)]
struct At {
    next: Offset,
    epoch: u64,
}

/// The pool without its per-order entries, which are stored one key each.
#[derive(Serialize, Deserialize)]
struct PoolCore {
    wallets: BTreeMap<TronAddress, SupplierWallet>,
    version: u64,
}

/// A partition as its snapshot left it: the state to fold the rest of the log into.
pub struct Restored {
    pub state: PartitionState,
    pub fence: EpochFence,
    pub next: Offset,
}

/// Pages a writer's aggregates between its state and its snapshot. Without a tree (tests of
/// the engine alone) it keeps everything in memory, as a writer did before snapshots.
pub struct Pager {
    tree: Option<sled::Tree>,
    /// Accounts and orders read back or created since the last snapshot: what the state
    /// holds, and what the next snapshot writes.
    users: HashSet<UserId>,
    orders: HashSet<OrderId>,
    evolved: u64,
    every: u64,
}

fn account_key(user: UserId) -> Vec<u8> {
    format!("a{user}").into_bytes()
}

fn order_key(order: &OrderId) -> Vec<u8> {
    format!("o{order}").into_bytes()
}

fn reservation_key(order: &OrderId) -> Vec<u8> {
    format!("r{order}").into_bytes()
}

fn rejected_key(order: &OrderId) -> Vec<u8> {
    format!("x{order}").into_bytes()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("writer state serializes")
}

impl Pager {
    pub fn in_memory() -> Pager {
        Pager {
            tree: None,
            users: HashSet::new(),
            orders: HashSet::new(),
            evolved: 0,
            every: u64::MAX,
        }
    }

    /// Snapshots into `tree` every `every` events.
    pub fn on_disk(tree: sled::Tree, every: u64) -> Pager {
        Pager {
            tree: Some(tree),
            every: every.max(1),
            ..Pager::in_memory()
        }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, SnapshotError> {
        let Some(tree) = &self.tree else {
            return Ok(None);
        };
        match tree.get(key)? {
            None => Ok(None),
            Some(v) => {
                serde_json::from_slice(&v)
                    .map(Some)
                    .map_err(|source| SnapshotError::Corrupt {
                        key: String::from_utf8_lossy(key).into_owned(),
                        source,
                    })
            }
        }
    }

    /// A failure leaves nothing of the snapshot to trust: it is dropped, so the next load
    /// folds the partition from offset 0.
    fn or_discard<T>(&mut self, result: Result<T, SnapshotError>) -> Result<T, SnapshotError> {
        if result.is_err() {
            self.discard();
        }
        result
    }

    /// Starts a (re)load: forgets what the last state touched, and gives the snapshot's
    /// state if there is one of this format.
    pub fn restore(&mut self) -> Result<Option<Restored>, SnapshotError> {
        self.forget();
        let restored = self.restored();
        self.or_discard(restored)
    }

    fn restored(&self) -> Result<Option<Restored>, SnapshotError> {
        let Some(tree) = &self.tree else {
            return Ok(None);
        };
        let at = match tree.get(FORMAT_KEY)?.as_deref() == Some(FORMAT) {
            true => self.get::<At>(AT)?,
            false => None,
        };
        let Some(at) = at else {
            // Another format, or what a cut-short discard left: nothing in it counts.
            if !tree.is_empty() {
                tracing::info!("dropping a writer snapshot of another format");
                tree.clear()?;
            }
            return Ok(None);
        };
        let mut state = PartitionState::default();
        if let Some(core) = self.get::<PoolCore>(POOL)? {
            state.pool.wallets = core.wallets;
            state.pool.version = core.version;
        }
        Ok(Some(Restored {
            state,
            fence: EpochFence { epoch: at.epoch },
            next: at.next,
        }))
    }

    /// Reads back what `user` and `order` have on disk, unless the state already holds it.
    pub fn touch(
        &mut self,
        state: &mut PartitionState,
        user: Option<UserId>,
        order: Option<OrderId>,
    ) -> Result<(), SnapshotError> {
        let read = self.read_back(state, user, order);
        self.or_discard(read)
    }

    fn read_back(
        &mut self,
        state: &mut PartitionState,
        user: Option<UserId>,
        order: Option<OrderId>,
    ) -> Result<(), SnapshotError> {
        if self.tree.is_none() {
            return Ok(());
        }
        if let Some(user) = user {
            if !self.users.contains(&user) {
                if let Some(acc) = self.get::<UserAccount>(&account_key(user))? {
                    state.accounts.insert(user, acc);
                }
                self.users.insert(user);
            }
        }
        if let Some(id) = order {
            if !self.orders.contains(&id) {
                if let Some(o) = self.get::<Order>(&order_key(&id))? {
                    state.orders.insert(id, o);
                }
                // Only the pool's partition has reservations to read back.
                if state.pool.version > 0 {
                    if let Some(r) = self.get::<Reservation>(&reservation_key(&id))? {
                        state.pool.reservations.insert(id, r);
                    }
                    if self.get::<()>(&rejected_key(&id))?.is_some() {
                        state.pool.rejected.insert(id);
                    }
                }
                self.orders.insert(id);
            }
        }
        Ok(())
    }

    /// Applies `event` to the state, reading back what it touches first, and returns the
    /// event's sequence number in its aggregate.
    pub fn evolve(
        &mut self,
        state: &mut PartitionState,
        event: &Event,
    ) -> Result<u64, SnapshotError> {
        self.touch(state, user_of(event), event.order_id())?;
        let sequence = state.version_of(event) + 1;
        state.evolve(event);
        self.evolved += 1;
        Ok(sequence)
    }

    /// Whether enough was evolved since the last snapshot to write one.
    pub fn due(&self) -> bool {
        self.tree.is_some() && self.evolved >= self.every
    }

    /// Writes what the state touched as of `next` (every record before it durable and
    /// folded in, none after), then lets it go from memory.
    pub fn save(
        &mut self,
        state: &mut PartitionState,
        fence: EpochFence,
        next: Offset,
    ) -> Result<(), SnapshotError> {
        let written = self.write(state, fence, next);
        self.or_discard(written)
    }

    fn write(
        &mut self,
        state: &mut PartitionState,
        fence: EpochFence,
        next: Offset,
    ) -> Result<(), SnapshotError> {
        let Some(tree) = &self.tree else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for user in self.users.drain() {
            if let Some(acc) = state.accounts.get(&user) {
                batch.insert(account_key(user), encode(acc));
            }
        }
        let pool_here = state.pool.version > 0;
        for id in self.orders.drain() {
            if let Some(o) = state.orders.get(&id) {
                batch.insert(order_key(&id), encode(o));
            }
            if pool_here {
                match state.pool.reservations.get(&id) {
                    Some(r) => batch.insert(reservation_key(&id), encode(r)),
                    None => batch.remove(reservation_key(&id)),
                }
                if state.pool.rejected.contains(&id) {
                    batch.insert(rejected_key(&id), encode(&()));
                }
            }
        }
        if pool_here {
            let core = PoolCore {
                wallets: state.pool.wallets.clone(),
                version: state.pool.version,
            };
            batch.insert(POOL, encode(&core));
        }
        let at = At {
            next,
            epoch: fence.epoch,
        };
        batch.insert(AT, encode(&at));
        batch.insert(FORMAT_KEY, FORMAT);
        tree.apply_batch(batch)?;
        state.accounts = Default::default();
        state.orders = Default::default();
        state.pool.reservations = Default::default();
        state.pool.rejected = Default::default();
        self.evolved = 0;
        Ok(())
    }

    /// Drops the snapshot: the next load folds the partition from offset 0.
    fn discard(&mut self) {
        if let Some(tree) = &self.tree {
            // The format key first: a clear cut short must not leave a snapshot that reads.
            if let Err(e) = tree.remove(FORMAT_KEY).and_then(|_| tree.clear()) {
                tracing::error!(error = %e, "cannot drop a writer snapshot");
            }
        }
        self.forget();
    }

    /// Forgets what the state touched: it is about to be replaced.
    fn forget(&mut self) {
        self.users.clear();
        self.orders.clear();
        self.evolved = 0;
    }
}
