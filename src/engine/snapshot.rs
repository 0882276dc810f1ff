//! A writer's state on disk. Without it a writer holds every account, order and reservation
//! of its partition in memory, and folds the partition's whole history each time it takes
//! the partition. With it, every [`SNAPSHOT_EVERY`] events the writer waits until
//! everything it decided is durable and writes what changed since the last snapshot, with
//! the offset and fence the log stood at; it then lets go of what it has not touched for a
//! whole snapshot period, once it holds more than a period's worth. An aggregate needed
//! again is read back before a command or an event touches it, and taking the partition
//! reads the snapshot and folds only the log after it.
//!
//! A snapshot is merged into an in-memory table in front of the tree (an [`Overlay`], as
//! the read models have) and written to sled atomically on a thread of its own, so the
//! writer does not wait for sled: what it let go is read back from that table until sled
//! has it. Sled only ever holds a whole snapshot, the latest one it was given or an earlier
//! one. Each partition's snapshot is a tree of its own in the data dir's sled database,
//! beside the read models (sharing its page cache).
//!
//! The snapshot is derived from the log like a read model: at its offset it equals the fold
//! of the records before, and dropping it (`flashrent rebuild`, a format change, a value
//! that does not decode) only costs a fold from offset 0.

use crate::domain::account::UserAccount;
use crate::domain::order::Order;
use crate::domain::pool::{Reservation, SupplierWallet};
use crate::domain::{user_of, PartitionState};
use flashrent_events::{EpochFence, Event, Offset, OrderId, PartitionId, TronAddress, UserId};
use flashrent_store::{AtomicTree, Overlay, SledStore};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Events a writer evolves between two snapshots, by default. A snapshot costs one wait for
/// the log and the encoding of what changed; what the writer holds in memory is what it
/// touched in the last two periods, once that is more than this many aggregates. Fewer
/// events hold less memory but take fewer orders (`bench/RESULTS.md`, run Q).
pub const SNAPSHOT_EVERY: u64 = 2_048;

/// The snapshot trees' names: `writer-snapshots/<partition>`.
const TREES: &str = "writer-snapshots/";
/// Where an older format kept the snapshots (among the read models' trees). Dropped at
/// open: the writers fold the log again instead.
const FORMER_TREES: &str = "derived/writer-";

/// The snapshot tree of `partition` in `store`.
pub fn tree(store: &SledStore, partition: PartitionId) -> std::io::Result<AtomicTree> {
    store.tree(&format!("{TREES}{partition}"))
}

/// Drops the snapshots an older format left.
pub fn drop_former(store: &SledStore) -> std::io::Result<()> {
    if store.drop_trees(FORMER_TREES)? > 0 {
        tracing::info!("dropped writer snapshots of an older format; the writers fold the log");
    }
    Ok(())
}

/// Drops every writer's snapshot (`flashrent rebuild`): the next start folds the whole log.
/// No writer may be running on `store`.
pub fn drop_snapshots(store: &SledStore) -> std::io::Result<()> {
    store.drop_trees(TREES)?;
    store.drop_trees(FORMER_TREES)?;
    Ok(())
}

/// Bumped whenever a stored shape changes: a snapshot of another format is dropped.
const FORMAT: &[u8] = b"writer-snapshot-1";
const FORMAT_KEY: &[u8] = b"format";
const AT: &[u8] = b"at";
const POOL: &[u8] = b"pool";
/// The API keys, whole: a few thousand at most, written when they changed.
const API_KEYS: &[u8] = b"api-keys";

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
/// the engine alone) it keeps everything in memory.
pub struct Pager {
    store: Option<Store>,
    /// Accounts and orders the state holds (or knows are on disk nowhere), with the number
    /// of the snapshot period they were last touched in.
    held: HashMap<Aggregate, u64>,
    /// Changed since the last snapshot: what the next one writes.
    dirty: HashSet<Aggregate>,
    /// The current snapshot period.
    period: u64,
    evolved: u64,
    every: u64,
}

/// The snapshot tree, behind the table of what sled does not hold yet.
struct Store {
    atomic: AtomicTree,
    pending: Arc<Overlay>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Aggregate {
    Account(UserId),
    Order(OrderId),
    ApiKeys,
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
            store: None,
            held: HashMap::new(),
            dirty: HashSet::new(),
            period: 0,
            evolved: 0,
            every: u64::MAX,
        }
    }

    /// Snapshots into `tree` every `every` events.
    pub fn on_disk(atomic: AtomicTree, every: u64) -> Pager {
        Pager {
            store: Some(Store {
                atomic,
                pending: Arc::new(Overlay::new()),
            }),
            every: every.max(1),
            ..Pager::in_memory()
        }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, SnapshotError> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        match store.pending.get_or_stored(store.atomic.data(), key)? {
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
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let format = store
            .pending
            .get_or_stored(store.atomic.data(), FORMAT_KEY)?;
        let at = match format.as_deref() == Some(FORMAT) {
            true => self.get::<At>(AT)?,
            false => None,
        };
        let Some(at) = at else {
            // Another format, or what a cut-short discard left: nothing in it counts.
            if !store.atomic.data().is_empty() || !store.pending.is_empty() {
                tracing::info!("dropping a writer snapshot of another format");
                store.pending.clear();
                store.atomic.data().clear()?;
            }
            return Ok(None);
        };
        let mut state = PartitionState::default();
        if let Some(core) = self.get::<PoolCore>(POOL)? {
            state.pool.wallets = core.wallets;
            state.pool.version = core.version;
        }
        if let Some(keys) = self.get(API_KEYS)? {
            state.api_keys = keys;
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
        if self.store.is_none() {
            return Ok(());
        }
        if let Some(user) = user {
            let agg = Aggregate::Account(user);
            if !self.held.contains_key(&agg) {
                if let Some(acc) = self.get::<UserAccount>(&account_key(user))? {
                    state.accounts.insert(user, acc);
                }
            }
            self.held.insert(agg, self.period);
        }
        if let Some(id) = order {
            let agg = Aggregate::Order(id);
            if !self.held.contains_key(&agg) {
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
            }
            self.held.insert(agg, self.period);
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
        let user = user_of(event);
        let order = event.order_id();
        match (order, crate::domain::order::start(event).is_some()) {
            // An order's first event: there is nothing of it on disk to read back.
            (Some(id), true) if self.store.is_some() => {
                self.touch(state, user, None)?;
                self.held.insert(Aggregate::Order(id), self.period);
            }
            _ => self.touch(state, user, order)?,
        }
        let sequence = state.version_of(event) + 1;
        state.evolve(event);
        if self.store.is_some() {
            self.dirty.extend(user.map(Aggregate::Account));
            self.dirty.extend(order.map(Aggregate::Order));
            if event.aggregate().0 == flashrent_events::AggregateKind::ApiKeys {
                self.dirty.insert(Aggregate::ApiKeys);
            }
        }
        self.evolved += 1;
        Ok(sequence)
    }

    /// Whether enough was evolved since the last snapshot to write one.
    pub fn due(&self) -> bool {
        self.store.is_some() && self.evolved >= self.every
    }

    /// Writes what changed as of `next` (every record before it durable and folded in, none
    /// after), then lets go of what was not touched in this period or the last.
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
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut writes: Vec<(sled::IVec, Option<sled::IVec>)> = Vec::new();
        let mut put = |key: Vec<u8>, value: Option<Vec<u8>>| {
            writes.push((key.into(), value.map(Into::into)));
        };
        let pool_here = state.pool.version > 0;
        for agg in self.dirty.drain() {
            match agg {
                Aggregate::Account(user) => {
                    if let Some(acc) = state.accounts.get(&user) {
                        put(account_key(user), Some(encode(acc)));
                    }
                }
                Aggregate::ApiKeys => put(API_KEYS.to_vec(), Some(encode(&state.api_keys))),
                Aggregate::Order(id) => {
                    if let Some(o) = state.orders.get(&id) {
                        put(order_key(&id), Some(encode(o)));
                    }
                    if pool_here {
                        let reservation = state.pool.reservations.get(&id).map(encode);
                        put(reservation_key(&id), reservation);
                        if state.pool.rejected.contains(&id) {
                            put(rejected_key(&id), Some(encode(&())));
                        }
                    }
                }
            }
        }
        if pool_here {
            let core = PoolCore {
                wallets: state.pool.wallets.clone(),
                version: state.pool.version,
            };
            put(POOL.to_vec(), Some(encode(&core)));
        }
        let at = At {
            next,
            epoch: fence.epoch,
        };
        put(AT.to_vec(), Some(encode(&at)));
        put(FORMAT_KEY.to_vec(), Some(FORMAT.to_vec()));
        // The overlay has it from here; sled gets it whole, in one atomic write, in the
        // background.
        store.pending.put_all(writes);
        store.pending.flush_in_background(store.atomic.clone());
        self.evolved = 0;
        self.let_go_of_the_idle(state);
        self.period += 1;
        Ok(())
    }

    /// Once the state holds more than a period's worth, lets go of what neither this period
    /// nor the last touched: it is all in the snapshot just written.
    fn let_go_of_the_idle(&mut self, state: &mut PartitionState) {
        if (self.held.len() as u64) <= self.every {
            return;
        }
        let period = self.period;
        self.held.retain(|agg, touched| {
            let keep = *touched + 1 >= period;
            if !keep {
                match agg {
                    // Never held per period: the keys are kept whole, like the pool's wallets.
                    Aggregate::ApiKeys => {}
                    Aggregate::Account(user) => {
                        state.accounts.remove(user);
                    }
                    Aggregate::Order(id) => {
                        state.orders.remove(id);
                        state.pool.reservations.remove(id);
                        state.pool.rejected.remove(id);
                    }
                }
            }
            keep
        });
    }

    /// Writes what is pending of the last snapshot to sled, and starts no background flush
    /// after it: the writer stops.
    pub fn close(&mut self) {
        if let Some(store) = &self.store {
            if let Err(e) = store.pending.close(&store.atomic) {
                // The snapshot on disk stays the one before: the next start folds more log.
                tracing::warn!(error = %e, "cannot write the last writer snapshot");
            }
        }
    }

    /// Drops the snapshot: the next load folds the partition from offset 0.
    fn discard(&mut self) {
        if let Some(store) = &self.store {
            // What is pending first (waiting out a flush under way), then the format key: a
            // clear cut short must not leave a snapshot that reads.
            store.pending.clear();
            let tree = store.atomic.data();
            if let Err(e) = tree.remove(FORMAT_KEY).and_then(|_| tree.clear()) {
                tracing::error!(error = %e, "cannot drop a writer snapshot");
            }
        }
        self.forget();
    }

    /// Forgets what the state holds: it is about to be replaced.
    fn forget(&mut self) {
        self.held.clear();
        self.dirty.clear();
        self.evolved = 0;
    }
}
