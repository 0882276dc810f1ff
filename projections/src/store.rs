//! Opening the sled store and the queries the HTTP layer asks of it.

use crate::keys;
use crate::views::*;
use flashrent_events::{EpochFence, OrderId, OrderStatus, PartitionId, UserId};
use flashrent_store::{merged_range, AtomicTree, FlushDue, Overlay, SledStore};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("read-model store: {0}")]
    Sled(#[from] sled::Error),
    #[error("read-model store: {0}")]
    Io(#[from] std::io::Error),
    #[error("read-model value at {key} is not valid: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

/// A value read at `key`, decoded with `decode`; one that does not decode names its key.
pub(crate) fn decoded<T>(
    key: &[u8],
    value: Option<impl AsRef<[u8]>>,
    decode: impl FnOnce(&[u8]) -> serde_json::Result<T>,
) -> Result<Option<T>, StoreError> {
    value
        .map(|v| {
            decode(v.as_ref()).map_err(|source| StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into(),
                source,
            })
        })
        .transpose()
}

/// The first key after every key under `prefix` (`None`: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A position, epoch or count as stored: 8 big-endian bytes. Missing or malformed is 0.
pub fn stored_u64(value: Option<impl AsRef<[u8]>>) -> u64 {
    value
        .and_then(|v| v.as_ref().try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// The read models, plus how far each partition has been applied (for read-your-writes).
#[derive(Clone)]
pub struct ReadModels {
    /// The data dir's sled database, which the read models share with the writers'
    /// snapshots.
    store: SledStore,
    /// The read-model tree, written atomically.
    pub(crate) atomic: AtomicTree,
    /// What steps applied that the tree does not hold yet; every read looks here first.
    pub(crate) overlay: Arc<Overlay>,
    pub(crate) applied: Arc<Vec<watch::Sender<u64>>>,
    /// One applier of a partition at a time: its projector task, or the live applier.
    pub(crate) stepping: Arc<Vec<std::sync::Mutex<()>>>,
}

/// One raw entry of the read-model tree.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The tree's name; `rebuild` drops it whole. A new name is a new format: the tree starts
/// empty, so every projector starts again from offset 0, and the old tree is dropped.
const TREE: &str = "read_models_v6";
const FORMER_TREES: [&str; 5] = [
    "read_models_v1",
    "read_models_v2",
    "read_models_v3",
    "read_models_v4",
    "read_models_v5",
];

impl ReadModels {
    /// Opens the read models in a sled database of their own in `dir`.
    pub fn open(dir: &Path, partitions: u32, cache_bytes: u64) -> Result<ReadModels, StoreError> {
        ReadModels::open_in(&SledStore::open(dir, cache_bytes)?, partitions)
    }

    /// Opens the read models' tree in `store`.
    pub fn open_in(store: &SledStore, partitions: u32) -> Result<ReadModels, StoreError> {
        for former in FORMER_TREES {
            if store.drop_tree(former)? {
                tracing::warn!(
                    tree = former,
                    "read models of an older format dropped; they are rebuilt from the log"
                );
            }
        }
        let models = ReadModels {
            store: store.clone(),
            atomic: store.tree(TREE)?,
            overlay: Arc::new(Overlay::new()),
            applied: Arc::new((0..partitions).map(|_| watch::channel(0).0).collect()),
            stepping: Arc::new((0..partitions).map(|_| std::sync::Mutex::new(())).collect()),
        };
        Ok(models)
    }

    /// Drops every read model and every projector position. Nothing may be writing them
    /// (the service is stopped).
    pub fn drop_all(&mut self) -> Result<(), StoreError> {
        self.overlay.clear();
        self.store.drop_tree(TREE)?;
        self.atomic = self.store.tree(TREE)?;
        for a in self.applied.iter() {
            a.send_replace(0);
        }
        Ok(())
    }

    /// Writes everything applied to sled and syncs it.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.overlay.flush(&self.atomic)?;
        self.store.flush()?;
        Ok(())
    }

    /// At shutdown, once nothing applies records any more: stops the background flusher,
    /// writes everything applied to sled and syncs it.
    pub fn close(&self) -> Result<(), StoreError> {
        self.overlay.close(&self.atomic)?;
        self.store.flush()?;
        Ok(())
    }

    /// The value at `key` as the projectors last left it (pending, or in sled).
    pub(crate) fn get_raw(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.overlay.get_or_stored(self.atomic.data(), key)?)
    }

    /// Every entry of `[from, to)` (to the end when `None`), in key order or (`rev`) reversed.
    pub(crate) fn range(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        rev: bool,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> {
        merged_range(self.atomic.data(), &self.overlay, from, to, rev)
            .map(|r| r.map_err(StoreError::from))
    }

    /// Every entry under `prefix`, in key order.
    pub(crate) fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> {
        let end = prefix_end(prefix);
        self.range(prefix, end.as_deref(), false)
    }

    /// Makes a step's changes visible, and has them written to sled when enough waited.
    pub(crate) fn stage(
        &self,
        writes: impl IntoIterator<Item = (sled::IVec, Option<sled::IVec>)>,
    ) -> Result<(), StoreError> {
        match self.overlay.put_all(writes) {
            FlushDue::No => {}
            FlushDue::Soon => self.overlay.flush_in_background(self.atomic.clone()),
            FlushDue::Now => self.overlay.flush(&self.atomic)?,
        }
        Ok(())
    }

    pub fn checkpoint(&self, projector: &str, partition: PartitionId) -> Result<u64, StoreError> {
        Ok(stored_u64(
            self.get_raw(&keys::checkpoint(projector, partition))?,
        ))
    }

    /// Where the partition's current writer takes commands, from its latest claim.
    pub fn owner(&self, partition: PartitionId) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_raw(&keys::owner(partition))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The writer epoch of `partition` as the projector last saw it.
    pub fn fence(&self, projector: &str, partition: PartitionId) -> Result<EpochFence, StoreError> {
        let epoch = stored_u64(self.get_raw(&keys::fence(projector, partition))?);
        Ok(EpochFence { epoch })
    }

    /// Waits until the records of `partition` up to and including `offset` are applied.
    pub async fn wait_applied(&self, partition: PartitionId, offset: u64) {
        if let Some(a) = self.applied.get(partition as usize) {
            let mut rx = a.subscribe();
            let _ = rx.wait_for(|applied| *applied > offset).await;
        }
    }

    pub fn applied(&self, partition: PartitionId) -> u64 {
        self.applied
            .get(partition as usize)
            .map_or(0, |a| *a.borrow())
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        decoded(key, self.get_raw(key)?, |v| serde_json::from_slice(v))
    }

    pub fn order(&self, id: &OrderId) -> Result<Option<OrderView>, StoreError> {
        let key = keys::order(id);
        decoded(&key, self.get_raw(&key)?, OrderView::decode)
    }

    /// The order's API body as stored, without decoding it.
    pub fn order_body(&self, id: &OrderId) -> Result<Option<StoredOrder>, StoreError> {
        Ok(self.get_raw(&keys::order(id))?.map(StoredOrder))
    }

    pub fn balance(&self, user: UserId) -> Result<Option<BalanceView>, StoreError> {
        self.get(&keys::balance(user))
    }

    pub fn wallets(&self, user: UserId) -> Result<Vec<WalletView>, StoreError> {
        Ok(self.get(&keys::wallets(user))?.unwrap_or_default())
    }

    /// A user's orders, newest first, optionally of one status; `after` is the last order id
    /// of the previous page.
    pub fn user_orders(
        &self,
        user: UserId,
        status: Option<OrderStatus>,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<(OrderId, StoredOrder)>, StoreError> {
        let prefix = keys::user_orders_prefix(user);
        let end = match after {
            Some(id) => keys::user_order(user, &id),
            None => {
                let mut e = prefix.clone();
                e.push(0xff);
                e
            }
        };
        let mut out = Vec::new();
        for item in self.range(&prefix, Some(&end), true) {
            let (key, _) = item?;
            let Some(id) = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|t| OrderId::parse(t).ok())
            else {
                continue;
            };
            let Some(order) = self.order_body(&id)? else {
                continue;
            };
            if let Some(wanted) = status {
                let status = crate::stored_order::status_of(order.body()).map_err(|source| {
                    StoreError::Corrupt {
                        key: String::from_utf8_lossy(&keys::order(&id)).into(),
                        source,
                    }
                })?;
                if status != wanted {
                    continue;
                }
            }
            out.push((id, order));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// A user's ledger, oldest first, from entry `from_seq` on.
    pub fn ledger(
        &self,
        user: UserId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut out = Vec::new();
        let mut end = keys::ledger_prefix(user);
        end.push(0xff);
        for item in self
            .range(&keys::ledger(user, from_seq), Some(&end), false)
            .take(limit)
        {
            let (k, v) = item?;
            out.push(
                serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into(),
                    source,
                })?,
            );
        }
        Ok(out)
    }

    /// Every user's balance, by user id (for the audit's comparison).
    pub fn balances(&self) -> Result<Vec<BalanceView>, StoreError> {
        self.scan(b"b/")
    }

    pub fn pool_wallets(&self) -> Result<Vec<PoolWalletView>, StoreError> {
        self.scan(keys::POOL_PREFIX)
    }

    /// Every API key ever issued, revoked ones too, by id (so oldest first).
    pub fn api_keys(&self) -> Result<Vec<ApiKeyView>, StoreError> {
        self.scan(keys::API_KEY_PREFIX)
    }

    /// The key whose SHA-256 is `hash` (hex), revoked or not.
    pub fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyView>, StoreError> {
        match self.get::<flashrent_events::ApiKeyId>(&keys::api_key_hash(hash))? {
            Some(id) => self.get(&keys::api_key(&id)),
            None => Ok(None),
        }
    }

    /// Whether any API key was ever issued: from then on, client routes need a key.
    pub fn any_api_key(&self) -> Result<bool, StoreError> {
        Ok(self
            .scan_prefix(keys::API_KEY_PREFIX)
            .next()
            .transpose()?
            .is_some())
    }

    /// Orders with unfinished work, for the saga to resume after a restart.
    pub fn active_orders(&self) -> Result<Vec<OrderId>, StoreError> {
        self.active_orders_after(None, usize::MAX)
    }

    /// Up to `limit` orders with unfinished work after `after` (from the first when `None`),
    /// oldest first.
    pub fn active_orders_after(
        &self,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<OrderId>, StoreError> {
        let from = after.map_or(keys::ACTIVE_PREFIX.to_vec(), |id| keys::active_chunk(&id));
        let end = prefix_end(keys::ACTIVE_PREFIX);
        let mut out = Vec::new();
        for item in self.range(&from, end.as_deref(), false) {
            let (_, chunk) = item?;
            for id in crate::active::ids(&chunk) {
                if after.is_some_and(|a| id <= a) {
                    continue;
                }
                if out.len() == limit {
                    return Ok(out);
                }
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Completed rentals whose end time has come, oldest first.
    pub fn due_rentals(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<OrderId>, StoreError> {
        let end = keys::rental_end(
            now,
            &OrderId::parse("ffffffff-ffff-ffff-ffff-ffffffffffff").expect("max uuid"),
        );
        let mut out = Vec::new();
        for item in self
            .range(keys::RENTAL_END_PREFIX, Some(&end), false)
            .take(limit)
        {
            let (k, _) = item?;
            let id = k
                .rsplit(|b| *b == b'/')
                .next()
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(|t| OrderId::parse(t).ok());
            out.extend(id);
        }
        Ok(out)
    }

    /// How many orders have each status (statuses no order has are left out).
    pub fn status_counts(&self) -> Result<Vec<(OrderStatus, u64)>, StoreError> {
        let mut out = Vec::new();
        for item in self.scan_prefix(b"s/") {
            let (k, v) = item?;
            let status = std::str::from_utf8(&k[2..])
                .ok()
                .and_then(OrderStatus::parse)
                .ok_or_else(|| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into(),
                    source: serde::de::Error::custom("no such order status"),
                })?;
            out.push((status, stored_u64(Some(v))));
        }
        Ok(out)
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for item in self.scan_prefix(prefix) {
            let (k, v) = item?;
            out.push(
                serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into(),
                    source,
                })?,
            );
        }
        Ok(out)
    }

    /// Every key and value, for comparing two builds of the read models.
    pub fn dump(&self) -> Result<Vec<KeyValue>, StoreError> {
        self.overlay.flush(&self.atomic)?;
        self.atomic
            .data()
            .iter()
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StoreError::from)
            })
            .collect()
    }
}

/// An order as stored (see [`crate::stored_order`]), read without decoding.
#[derive(Clone)]
pub struct StoredOrder(sled::IVec);

impl StoredOrder {
    /// The API's JSON body of the order.
    pub fn body(&self) -> &[u8] {
        crate::stored_order::body_of(&self.0)
    }
}

impl AsRef<[u8]> for StoredOrder {
    /// The API body: what a response sends.
    fn as_ref(&self) -> &[u8] {
        self.body()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_models_of_a_former_format_are_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let old = db.open_tree(FORMER_TREES[0]).unwrap();
            old.insert(b"c/read_models/00000000", &7u64.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let models = ReadModels::open(dir.path(), 1, 1 << 20).unwrap();
        assert!(!models
            .store
            .tree_names()
            .iter()
            .any(|n| n == FORMER_TREES[0]));
        // Nothing of the old tree counts: every projector starts again from offset 0.
        assert_eq!(models.checkpoint("read_models", 0).unwrap(), 0);
    }

    #[test]
    fn the_active_set_pages_oldest_first_across_chunks_and_flushes() {
        use crate::apply::Staged;
        let dir = tempfile::tempdir().unwrap();
        let models = ReadModels::open(dir.path(), 1, 1 << 20).unwrap();
        // Ids 5 ms apart, so they spread over many 16 ms chunks, several to a chunk; added
        // in a scrambled order, over several steps, some flushed to sled and some not.
        let ids: Vec<OrderId> = (0..200u64)
            .map(|i| {
                let ts = uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    1_700_000_000,
                    i as u32 * 5_000_000,
                );
                OrderId::from_uuid(uuid::Uuid::new_v7(ts))
            })
            .collect();
        let mut scrambled = ids.clone();
        scrambled.sort_by_key(|id| id.as_uuid().as_bytes()[15]);
        for (n, step) in scrambled.chunks(37).enumerate() {
            let mut staged = Staged::new(&models);
            for id in step {
                staged.set_active(id, true).unwrap();
                staged.set_active(id, true).unwrap();
            }
            models.stage(staged.into_writes()).unwrap();
            if n % 2 == 0 {
                models.flush().unwrap();
            }
        }
        let mut staged = Staged::new(&models);
        for id in ids.iter().step_by(3) {
            staged.set_active(id, false).unwrap();
        }
        models.stage(staged.into_writes()).unwrap();
        let want: Vec<OrderId> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, id)| *id)
            .collect();
        assert_eq!(models.active_orders().unwrap(), want);
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = models.active_orders_after(after, 7).unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().copied();
            paged.extend(page);
        }
        assert_eq!(paged, want);
        // Taken out of the last chunk, its key goes.
        let mut staged = Staged::new(&models);
        for id in &want {
            staged.set_active(id, false).unwrap();
        }
        models.stage(staged.into_writes()).unwrap();
        models.flush().unwrap();
        assert!(models.active_orders().unwrap().is_empty());
        assert_eq!(models.scan_prefix(keys::ACTIVE_PREFIX).count(), 0);
    }
}
