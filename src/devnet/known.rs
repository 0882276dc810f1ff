//! The transactions a devnet node has accepted, by id. A node answers
//! `gettransactionbyid` for every transaction it ever included, so they are never
//! forgotten; with a store, only those changed since the last save stay in memory and the
//! rest are read back from disk (a node with a million transactions would otherwise hold
//! them all in RAM, as java-tron never does).

use flashrent_store::{AtomicTree, Pending};
use serde::{Deserialize, Serialize};
use sled::IVec;
use std::collections::HashMap;

pub type TxId = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub raw: Vec<u8>,
    pub signature: Vec<u8>,
    pub info: Option<Info>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub block: u64,
    pub ts: i64,
    pub failed: Option<String>,
}

/// Key prefix of a transaction in the store.
const TX: u8 = b't';

pub fn key(id: &TxId) -> [u8; 33] {
    let mut k = [TX; 33];
    k[1..].copy_from_slice(id);
    k
}

#[derive(Default)]
pub struct KnownTxs {
    /// Changed since the last save: `None` is a removal not yet written. Without a store,
    /// every transaction lives here.
    hot: HashMap<TxId, Option<Known>>,
    disk: Option<AtomicTree>,
}

impl KnownTxs {
    pub fn in_memory() -> KnownTxs {
        KnownTxs::default()
    }

    pub fn on_disk(tree: AtomicTree) -> KnownTxs {
        KnownTxs {
            hot: HashMap::new(),
            disk: Some(tree),
        }
    }

    pub fn get(&self, id: &TxId) -> Option<Known> {
        if let Some(k) = self.hot.get(id) {
            return k.clone();
        }
        let tree = self.disk.as_ref()?;
        match tree.data().get(key(id)) {
            Ok(Some(v)) => decode(&v),
            Ok(None) => None,
            Err(e) => {
                // A devnet whose disk fails answers like a node that does not know the id.
                tracing::error!(error = %e, "devnet store unreadable");
                None
            }
        }
    }

    pub fn contains(&self, id: &TxId) -> bool {
        if let Some(k) = self.hot.get(id) {
            return k.is_some();
        }
        self.disk.as_ref().is_some_and(|tree| {
            tree.data().contains_key(key(id)).unwrap_or_else(|e| {
                tracing::error!(error = %e, "devnet store unreadable");
                false
            })
        })
    }

    /// Keeps the transactions in `tree` from now on: those in memory are written at the
    /// next save, as changes.
    pub fn keep_in(&mut self, tree: AtomicTree) {
        self.disk = Some(tree);
    }

    pub fn store(&self) -> Option<&AtomicTree> {
        self.disk.as_ref()
    }

    pub fn insert(&mut self, id: TxId, k: Known) {
        self.hot.insert(id, Some(k));
    }

    pub fn remove(&mut self, id: &TxId) {
        if self.disk.is_some() {
            self.hot.insert(*id, None);
        } else {
            self.hot.remove(id);
        }
    }

    pub fn set_info(&mut self, id: &TxId, info: Info) {
        if let Some(mut k) = self.get(id) {
            k.info = Some(info);
            self.insert(*id, k);
        }
    }

    /// Moves the changes since the last save into `writes`; they are read from disk after.
    pub fn drain_into(&mut self, writes: &mut Vec<(IVec, Pending)>) {
        if self.disk.is_none() {
            return;
        }
        for (id, k) in self.hot.drain() {
            writes.push((IVec::from(&key(&id)[..]), k.map(|k| IVec::from(encode(&k)))));
        }
    }
}

/// `raw` and `signature` with u32 lengths, then the inclusion if any, as JSON (rare and
/// small: the block, its time and a failure message).
fn encode(k: &Known) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + k.raw.len() + k.signature.len() + 48);
    for part in [&k.raw, &k.signature] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    if let Some(info) = &k.info {
        out.extend_from_slice(&serde_json::to_vec(info).expect("an inclusion serializes"));
    }
    out
}

fn decode(mut bytes: &[u8]) -> Option<Known> {
    let mut part = || {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let p = bytes.get(4..4 + len)?.to_vec();
        bytes = &bytes[4 + len..];
        Some(p)
    };
    let raw = part()?;
    let signature = part()?;
    let info = if bytes.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(bytes).ok()?)
    };
    Some(Known {
        raw,
        signature,
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(info: Option<Info>) -> Known {
        Known {
            raw: vec![1, 2, 3],
            signature: vec![9; 65],
            info,
        }
    }

    #[test]
    fn the_encoding_reads_back() {
        for k in [
            known(None),
            known(Some(Info {
                block: 7,
                ts: 1_700_000_000_000,
                failed: Some("out of energy".into()),
            })),
        ] {
            assert_eq!(decode(&encode(&k)), Some(k));
        }
        assert_eq!(decode(&[0, 0, 0, 9, 1]), None);
    }

    #[test]
    fn saved_transactions_leave_memory_and_are_still_known() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let tree = AtomicTree::open(&db, "devnet", dir.path().join("devnet.journal")).unwrap();
        let mut txs = KnownTxs::on_disk(tree.clone());
        let (a, b) = ([1u8; 32], [2u8; 32]);
        txs.insert(a, known(None));
        txs.insert(b, known(None));
        let mut writes = Vec::new();
        txs.drain_into(&mut writes);
        tree.write(writes.iter().map(|(k, v)| (k, v))).unwrap();
        assert!(txs.hot.is_empty());

        let info = Info {
            block: 3,
            ts: 5,
            failed: None,
        };
        txs.set_info(&a, info.clone());
        txs.remove(&b);
        assert_eq!(txs.get(&a).unwrap().info, Some(info.clone()));
        assert!(!txs.contains(&b));
        let mut writes = Vec::new();
        txs.drain_into(&mut writes);
        tree.write(writes.iter().map(|(k, v)| (k, v))).unwrap();

        let reopened = KnownTxs::on_disk(tree);
        assert_eq!(reopened.get(&a).unwrap().info, Some(info));
        assert_eq!(reopened.get(&b), None);
    }
}
