//! The notifier's own durable state, apart from the service's: its position in each log
//! partition, what it knows of each order, and the outbox of each receiver — all in one sled
//! tree, so reading a run of records (queueing its notifications and advancing the position)
//! is one atomic batch. Dead letters are files, so an operator can list and replay them while
//! the notifier runs (sled allows one process per database).

use super::message::{Message, OrderInfo};
use flashrent_events::{EpochFence, OrderId, PartitionId};
use flashrent_projections::stored_u64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("notifier store: {0}")]
    Sled(#[from] sled::Error),
    #[error("notifier store value at {key} is not valid: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("dead letters: {0}")]
    Io(#[from] std::io::Error),
}

/// One notification for one receiver, waiting to be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub event_id: uuid::Uuid,
    pub order_id: OrderId,
    pub event: String,
    pub url: String,
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before this time (Unix ms).
    pub due_ms: i64,
    pub last_error: Option<String>,
}

/// A delivery given up after too many failures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub delivery: Delivery,
    pub dead_at: chrono::DateTime<chrono::Utc>,
}

/// A receiver's id: a short hash of its URL (queue keys sort by receiver, then by sequence).
pub fn receiver_id(url: &str) -> String {
    hex::encode(&Sha256::digest(url.as_bytes())[..8])
}

fn fence_key(p: PartitionId) -> Vec<u8> {
    format!("c/{p:08}/epoch").into_bytes()
}

fn checkpoint_key(p: PartitionId) -> Vec<u8> {
    format!("c/{p:08}").into_bytes()
}
fn order_key(id: &OrderId) -> Vec<u8> {
    format!("o/{id}").into_bytes()
}
pub fn queue_prefix(rid: &str) -> Vec<u8> {
    format!("q/{rid}/").into_bytes()
}
fn queue_key(rid: &str, seq: u64) -> Vec<u8> {
    format!("q/{rid}/{seq:020}").into_bytes()
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        // Its queue holds every callback URL whole, credentials included.
        crate::config::create_private_dir(dir)?;
        std::fs::create_dir_all(dir.join("dead-letters"))?;
        std::fs::create_dir_all(dir.join("replay"))?;
        let db = sled::Config::new()
            .path(dir.join("state"))
            .cache_capacity(16 << 20)
            .open()?;
        let tree = db.open_tree("notify_v1")?;
        Ok(Store {
            db,
            tree,
            dir: dir.to_owned(),
        })
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn checkpoint(&self, p: PartitionId) -> Result<u64, StoreError> {
        Ok(stored_u64(self.tree.get(checkpoint_key(p))?))
    }

    /// The partition's writer epoch as of the checkpoint.
    pub fn fence(&self, p: PartitionId) -> Result<EpochFence, StoreError> {
        let epoch = stored_u64(self.tree.get(fence_key(p))?);
        Ok(EpochFence { epoch })
    }

    pub fn order(&self, id: &OrderId) -> Result<Option<OrderInfo>, StoreError> {
        let key = order_key(id);
        self.tree
            .get(&key)?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into(),
                    source,
                })
            })
            .transpose()
    }

    /// Records what a run of records gave, atomically: new orders, the deliveries of their
    /// notifications (one per receiver, in order), and the partition's next offset.
    /// Returns the receivers that got something.
    pub fn commit(
        &self,
        partition: PartitionId,
        next: u64,
        fence: EpochFence,
        orders: &HashMap<OrderId, OrderInfo>,
        messages: &[(Message, Vec<String>)],
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut batch = sled::Batch::default();
        let mut touched = Vec::new();
        for (id, info) in orders {
            batch.insert(order_key(id), serde_json::to_vec(info).expect("serializes"));
        }
        for (m, urls) in messages {
            for url in urls {
                let rid = receiver_id(url);
                let d = Delivery {
                    event_id: m.event_id,
                    order_id: m.order_id,
                    event: m.kind.to_owned(),
                    url: url.clone(),
                    body: m.body.clone(),
                    attempts: 0,
                    due_ms: now_ms,
                    last_error: None,
                };
                // sled's ids only grow, across restarts too: queue order is append order.
                let seq = self.db.generate_id()?;
                batch.insert(
                    queue_key(&rid, seq),
                    serde_json::to_vec(&d).expect("serializes"),
                );
                if !touched.contains(&rid) {
                    touched.push(rid);
                }
            }
        }
        batch.insert(checkpoint_key(partition), next.to_be_bytes().to_vec());
        if fence.epoch > 0 {
            batch.insert(fence_key(partition), fence.epoch.to_be_bytes().to_vec());
        }
        self.tree.apply_batch(batch)?;
        Ok(touched)
    }

    /// The oldest delivery waiting for a receiver.
    pub fn head(&self, rid: &str) -> Result<Option<(Vec<u8>, Delivery)>, StoreError> {
        match self.tree.scan_prefix(queue_prefix(rid)).next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                let d = serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into(),
                    source,
                })?;
                Ok(Some((k.to_vec(), d)))
            }
        }
    }

    /// Every receiver with something queued.
    pub fn receivers(&self) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = Vec::new();
        for item in self.tree.scan_prefix(b"q/") {
            let (k, _) = item?;
            let rid = String::from_utf8_lossy(&k[2..])
                .split('/')
                .next()
                .unwrap_or("")
                .to_owned();
            if out.last() != Some(&rid) {
                out.push(rid);
            }
        }
        Ok(out)
    }

    /// How many deliveries are queued, over all receivers.
    pub fn queued(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.tree.scan_prefix(b"q/") {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// The receiver acknowledged it: it is never sent again.
    pub fn ack(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree.remove(key)?;
        self.tree.flush()?;
        Ok(())
    }

    pub fn retry_later(&self, key: &[u8], d: &Delivery) -> Result<(), StoreError> {
        self.tree
            .insert(key, serde_json::to_vec(d).expect("serializes"))?;
        Ok(())
    }

    /// Moves a delivery to the dead letters (written and synced before it leaves the queue).
    pub fn dead_letter(&self, key: &[u8], d: &Delivery) -> Result<(), StoreError> {
        let letter = DeadLetter {
            delivery: d.clone(),
            dead_at: chrono::Utc::now(),
        };
        let name = format!("{}-{}.json", d.event_id, receiver_id(&d.url));
        write_synced(
            &self.dir.join("dead-letters"),
            &name,
            &serde_json::to_vec_pretty(&letter).expect("serializes"),
        )?;
        self.tree.remove(key)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Takes replay requests (dead letters an operator moved to `replay/`) back into the
    /// queues, attempts reset. Returns the receivers that got something.
    pub fn take_replays(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let mut touched = Vec::new();
        for entry in std::fs::read_dir(self.dir.join("replay"))? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let letter: DeadLetter = match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(l) => l,
                None => continue,
            };
            let mut d = letter.delivery;
            d.attempts = 0;
            d.due_ms = now_ms;
            d.last_error = None;
            let rid = receiver_id(&d.url);
            let seq = self.db.generate_id()?;
            self.tree.insert(
                queue_key(&rid, seq),
                serde_json::to_vec(&d).expect("serializes"),
            )?;
            self.tree.flush()?;
            std::fs::remove_file(&path)?;
            if !touched.contains(&rid) {
                touched.push(rid);
            }
        }
        Ok(touched)
    }
}

fn write_synced(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The dead letters in `dir` (the notifier's directory), oldest first. Works while the
/// notifier runs.
pub fn list_dead_letters(dir: &Path) -> Result<Vec<(String, DeadLetter)>, StoreError> {
    let mut out = Vec::new();
    let dl = dir.join("dead-letters");
    if !dl.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dl)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let letter: DeadLetter =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                key: name.clone(),
                source,
            })?;
        out.push((name.trim_end_matches(".json").to_owned(), letter));
    }
    out.sort_by_key(|(_, l)| l.dead_at);
    Ok(out)
}

/// Asks the notifier to send dead letters again: those whose id (file name) or event id
/// starts with one of `ids`, or all. Returns how many were queued for replay.
pub fn replay_dead_letters(dir: &Path, ids: &[String], all: bool) -> Result<usize, StoreError> {
    std::fs::create_dir_all(dir.join("replay"))?;
    let mut n = 0;
    for (name, _) in list_dead_letters(dir)? {
        if all
            || ids
                .iter()
                .any(|i| !i.is_empty() && name.starts_with(i.as_str()))
        {
            let file = format!("{name}.json");
            std::fs::rename(
                dir.join("dead-letters").join(&file),
                dir.join("replay").join(&file),
            )?;
            n += 1;
        }
    }
    Ok(n)
}
