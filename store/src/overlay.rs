//! Writes that sled does not hold yet: an in-memory table in front of a tree (the read
//! models', a writer's snapshot), written to sled in one atomic write now and then.
//!
//! Why: a sled batch costs far more than its inserts. sled seals and syncs its log buffer
//! around every batch (on its I/O threads, each of which a batch wakes), and every insert
//! copies a tree node; a write per projector step would pay that for every order, and write
//! the same hot keys (a user's balance, the pool's wallet, an order a saga step changes
//! again) over and over. Here a step only merges its changes into the table, readers look in
//! the table before sled, and a flush writes the table atomically, each key once.
//!
//! Correctness does not depend on the table: it holds only what can be derived again. A
//! flush writes the projectors' checkpoints with the data they cover atomically (see
//! [`AtomicTree`]), so after a crash sled holds a consistent earlier state and the
//! projectors replay the log from its checkpoints.
//!
//! A flush is not a sled batch: while sled applies a batch, every read in the process
//! waits (a batch takes sled's global write lock), and the read models' own steps read.

use crate::AtomicTree;
use sled::IVec;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A key's pending value: `None` removes it.
pub type Pending = Option<IVec>;
type Table = BTreeMap<IVec, Pending>;

/// Keys in the table before a flush is started. With [`FLUSH_EVERY`], how many rewrites of
/// one key (an order's steps, a balance) a flush coalesces into one sled insert, each a copy
/// of a tree leaf: a larger window takes more orders for a little more memory
/// (`bench/RESULTS.md`, run AB).
const FLUSH_AT_KEYS: usize = 32_768;
/// Keys after which the step that adds more writes the table itself (backpressure when
/// flushes fall behind), bounding the table's memory.
const HARD_LIMIT_KEYS: usize = 4 * FLUSH_AT_KEYS;
/// The longest a change waits in memory before it is flushed.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Tables {
    /// What steps write into.
    active: Table,
    /// What a flush is writing to sled now, or wrote last: still read, under `active`. Sled
    /// holds the same once the flush is done, but keeping it saves the hottest keys a trip
    /// into sled.
    flushed: Option<Arc<Table>>,
}

pub struct Overlay {
    tables: RwLock<Tables>,
    /// Held by the one flush writing to sled.
    flush: Mutex<Instant>,
    flush_running: AtomicBool,
    /// The background flusher, if one was started: joined by [`Overlay::close`].
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set by [`Overlay::close`]: no flusher starts any more, and a running one returns.
    closing: AtomicBool,
}

impl Default for Overlay {
    fn default() -> Overlay {
        Overlay::new()
    }
}

impl Overlay {
    pub fn new() -> Overlay {
        Overlay {
            tables: RwLock::default(),
            flush: Mutex::new(Instant::now()),
            flush_running: AtomicBool::new(false),
            flusher: Mutex::new(None),
            closing: AtomicBool::new(false),
        }
    }

    /// The pending value of `key`: `Some(None)` if it is removed, `None` if the table has no
    /// word on it (sled's value stands).
    pub fn get(&self, key: &[u8]) -> Option<Pending> {
        let t = self.tables.read().expect("overlay lock");
        if let Some(v) = t.active.get(key) {
            return Some(v.clone());
        }
        t.flushed.as_ref().and_then(|f| f.get(key).cloned())
    }

    /// The value of `key` as the table and then `tree` hold it.
    pub fn get_or_stored(&self, tree: &sled::Tree, key: &[u8]) -> sled::Result<Option<IVec>> {
        match self.get(key) {
            Some(pending) => Ok(pending),
            None => tree.get(key),
        }
    }

    /// The pending entries of `[from, to)` (`to` unbounded when `None`), newest value of each.
    pub fn range(&self, from: &[u8], to: Option<&[u8]>) -> Vec<(IVec, Pending)> {
        let t = self.tables.read().expect("overlay lock");
        let bounds = || {
            (
                Bound::Included(from),
                to.map_or(Bound::Unbounded, Bound::Excluded),
            )
        };
        let mut merged: BTreeMap<IVec, Pending> = BTreeMap::new();
        if let Some(f) = &t.flushed {
            for (k, v) in f.range::<[u8], _>(bounds()) {
                merged.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in t.active.range::<[u8], _>(bounds()) {
            merged.insert(k.clone(), v.clone());
        }
        merged.into_iter().collect()
    }

    /// Merges a step's changes in; they are visible to readers from now on. Returns whether
    /// a flush is due.
    pub fn put_all(&self, writes: impl IntoIterator<Item = (IVec, Pending)>) -> FlushDue {
        let mut t = self.tables.write().expect("overlay lock");
        t.active.extend(writes);
        let keys = t.active.len();
        drop(t);
        if keys >= HARD_LIMIT_KEYS {
            FlushDue::Now
        } else if keys >= FLUSH_AT_KEYS
            || self
                .flush
                .try_lock()
                .is_ok_and(|last| last.elapsed() >= FLUSH_EVERY)
        {
            FlushDue::Soon
        } else {
            FlushDue::No
        }
    }

    /// Writes everything pending to `tree`, atomically. One flush at a time; a failed one
    /// leaves its entries pending (under anything written since).
    pub fn flush(&self, tree: &AtomicTree) -> sled::Result<()> {
        let mut last = self.flush.lock().expect("overlay flush lock");
        let table = {
            let mut t = self.tables.write().expect("overlay lock");
            if t.active.is_empty() {
                *last = Instant::now();
                return Ok(());
            }
            let table = Arc::new(std::mem::take(&mut t.active));
            t.flushed = Some(table.clone());
            table
        };
        let result = tree.write(table.iter());
        if result.is_err() {
            let mut t = self.tables.write().expect("overlay lock");
            for (k, v) in table.iter() {
                t.active.entry(k.clone()).or_insert_with(|| v.clone());
            }
            t.flushed = None;
        }
        *last = Instant::now();
        result
    }

    /// Makes sure a flusher runs: a thread that flushes, then again at most every
    /// [`FLUSH_EVERY`] (sooner once [`FLUSH_AT_KEYS`] wait) while anything is pending, and
    /// ends when nothing is.
    pub fn flush_in_background(self: &Arc<Self>, tree: AtomicTree) {
        if self.closing.load(Ordering::Acquire) || self.flush_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("read-model-flush".into())
            .spawn(move || this.flush_while_pending(&tree));
        match spawned {
            // The one before it has returned (the flag was down).
            Ok(handle) => *self.flusher.lock().expect("overlay flusher lock") = Some(handle),
            Err(_) => self.flush_running.store(false, Ordering::Release),
        }
    }

    /// Stops the background flusher (waiting for a flush under way) and writes what is
    /// pending to `tree`. Nothing is flushed in the background after this.
    pub fn close(&self, tree: &AtomicTree) -> sled::Result<()> {
        self.closing.store(true, Ordering::Release);
        let flusher = self.flusher.lock().expect("overlay flusher lock").take();
        if let Some(flusher) = flusher {
            let _ = flusher.join();
        }
        self.flush(tree)
    }

    fn flush_while_pending(&self, tree: &AtomicTree) {
        let closing = || self.closing.load(Ordering::Acquire);
        loop {
            let started = Instant::now();
            if let Err(e) = self.flush(tree) {
                tracing::error!(error = %e, "writing the read models to sled failed; trying again");
            }
            while started.elapsed() < FLUSH_EVERY
                && self.pending_keys() < FLUSH_AT_KEYS
                && !closing()
            {
                std::thread::sleep(FLUSH_EVERY / 10);
            }
            if closing() {
                // What is left, `close` writes itself.
                self.flush_running.store(false, Ordering::Release);
                return;
            }
            if self.pending_keys() == 0 {
                self.flush_running.store(false, Ordering::Release);
                // Written just before the flag went down, its writer saw a flusher running.
                if self.pending_keys() == 0 || self.flush_running.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        }
    }

    fn pending_keys(&self) -> usize {
        self.tables.read().expect("overlay lock").active.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        let t = self.tables.read().expect("overlay lock");
        t.active.is_empty() && t.flushed.as_ref().is_none_or(|f| f.is_empty())
    }

    /// Forgets everything pending (the read models are being dropped).
    pub fn clear(&self) {
        let _one = self.flush.lock().expect("overlay flush lock");
        *self.tables.write().expect("overlay lock") = Tables::default();
    }
}

/// What a step's writes made of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDue {
    No,
    /// Old or large enough: flush in the background.
    Soon,
    /// Over its bound: the step flushes before it returns.
    Now,
}

/// `[from, to)` of sled merged with the pending entries over it, in key order (`rev`:
/// descending); removed keys are left out.
pub fn merged_range(
    tree: &sled::Tree,
    overlay: &Overlay,
    from: &[u8],
    to: Option<&[u8]>,
    rev: bool,
) -> impl Iterator<Item = sled::Result<(IVec, IVec)>> {
    let pending = overlay.range(from, to);
    let stored = match to {
        Some(to) => tree.range(from..to),
        None => tree.range(from..),
    };
    Merge::new(stored, pending, rev)
}

type Entries = Box<dyn Iterator<Item = sled::Result<(IVec, IVec)>>>;

struct Merge {
    stored: std::iter::Peekable<Entries>,
    pending: std::iter::Peekable<std::vec::IntoIter<(IVec, Pending)>>,
    rev: bool,
}

impl Merge {
    fn new(stored: sled::Iter, mut pending: Vec<(IVec, Pending)>, rev: bool) -> Merge {
        let stored: Entries = if rev {
            Box::new(stored.rev())
        } else {
            Box::new(stored)
        };
        if rev {
            pending.reverse();
        }
        Merge {
            stored: stored.peekable(),
            pending: pending.into_iter().peekable(),
            rev,
        }
    }
}

impl Iterator for Merge {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.stored.peek(), self.pending.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.stored.next(),
                (Some(Ok(_)), None) => return self.stored.next(),
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(Ok((s, _))), Some((p, _))) => {
                    let o = s.as_ref().cmp(p.as_ref());
                    if self.rev {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            match order {
                std::cmp::Ordering::Less => return self.stored.next(),
                std::cmp::Ordering::Equal => {
                    // The pending value replaces the stored one.
                    self.stored.next();
                    if let Some((k, Some(v))) = self.pending.next() {
                        return Some(Ok((k, v)));
                    }
                }
                std::cmp::Ordering::Greater => {
                    if let Some((k, Some(v))) = self.pending.next() {
                        return Some(Ok((k, v)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(s: &str) -> IVec {
        IVec::from(s.as_bytes())
    }

    #[test]
    fn a_range_merges_pending_values_and_removals_over_sled_in_both_directions() {
        let dir = tempfile::tempdir().unwrap();
        let tree = sled::open(dir.path()).unwrap().open_tree("t").unwrap();
        for k in ["a", "c", "e", "g"] {
            tree.insert(k, "old").unwrap();
        }
        let overlay = Overlay::new();
        overlay.put_all([
            (iv("b"), Some(iv("new"))),
            (iv("c"), Some(iv("new"))),
            (iv("e"), None),
            (iv("h"), Some(iv("new"))),
        ]);
        let seen = |rev| -> Vec<(String, String)> {
            merged_range(&tree, &overlay, b"a", Some(b"h"), rev)
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (
                        String::from_utf8(k.to_vec()).unwrap(),
                        String::from_utf8(v.to_vec()).unwrap(),
                    )
                })
                .collect()
        };
        let forward = vec![
            ("a".to_owned(), "old".to_owned()),
            ("b".to_owned(), "new".to_owned()),
            ("c".to_owned(), "new".to_owned()),
            ("g".to_owned(), "old".to_owned()),
        ];
        assert_eq!(seen(false), forward);
        let mut backward = forward;
        backward.reverse();
        assert_eq!(seen(true), backward);
    }

    #[test]
    fn a_flush_writes_everything_pending_and_readers_see_the_same_before_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let atomic = AtomicTree::open(&db, "t", dir.path().join("t.journal")).unwrap();
        let tree = atomic.data().clone();
        tree.insert("gone", "old").unwrap();
        let overlay = Overlay::new();
        overlay.put_all([(iv("k"), Some(iv("v"))), (iv("gone"), None)]);
        assert_eq!(overlay.get(b"k"), Some(Some(iv("v"))));
        assert_eq!(overlay.get(b"gone"), Some(None));
        assert_eq!(overlay.get(b"other"), None);
        overlay.flush(&atomic).unwrap();
        // Still read from memory after the flush, and sled has the same.
        assert_eq!(overlay.get(b"k"), Some(Some(iv("v"))));
        overlay.put_all([(iv("k2"), Some(iv("v2")))]);
        overlay.flush(&atomic).unwrap();
        assert_eq!(overlay.get(b"k"), None, "a flush lets the one before go");
        assert_eq!(tree.get("k").unwrap(), Some(iv("v")));
        assert_eq!(tree.get("gone").unwrap(), None);
    }
}
