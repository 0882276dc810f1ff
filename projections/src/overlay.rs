//! Writes the projectors have applied that sled does not hold yet: an in-memory table in
//! front of the read-model tree, written to sled in one atomic write now and then.
//!
//! Why: a sled batch costs far more than its inserts. sled seals and syncs its log buffer
//! around every batch (on its I/O threads, each of which a batch wakes), and every insert
//! copies a tree node; a step per record paid that for every order, and wrote the same hot
//! keys (a user's balance, the pool's wallet, an order a saga step changes again) over and
//! over. Here a step only merges its changes into the table, readers look in the table
//! before sled, and a flush writes the table atomically, each key once.
//!
//! Correctness does not depend on the table: it holds only what can be derived again. A
//! flush writes the projectors' checkpoints with the data they cover atomically (see
//! [`AtomicTree`]), so after a crash sled holds a consistent earlier state and the
//! projectors replay the log from its checkpoints.
//!
//! A flush is not a sled batch: while sled applies a batch, every read in the process
//! waits (a batch takes sled's global write lock), and the read models' own steps read.

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
/// of a tree leaf: 32k keys and 500 ms took ~5% more saturating orders than 16k and 200 ms
/// (three alternate 60 s runs each) for ~18 MiB more memory (`bench/RESULTS.md`, run AB).
const FLUSH_AT_KEYS: usize = 32_768;
/// Keys after which the step that adds more writes the table itself (backpressure when
/// flushes fall behind), bounding the table's memory (131,072 keys, as when flushes started
/// at half as many).
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
        if self.flush_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("read-model-flush".into())
            .spawn(move || this.flush_while_pending(&tree));
        if spawned.is_err() {
            self.flush_running.store(false, Ordering::Release);
        }
    }

    fn flush_while_pending(&self, tree: &AtomicTree) {
        loop {
            let started = Instant::now();
            if let Err(e) = self.flush(tree) {
                tracing::error!(error = %e, "writing the read models to sled failed; trying again");
            }
            while started.elapsed() < FLUSH_EVERY && self.pending_keys() < FLUSH_AT_KEYS {
                std::thread::sleep(FLUSH_EVERY / 10);
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

/// A sled tree whose multi-key writes are atomic without sled's batches: a write is first
/// recorded whole in a journal file beside the database and synced, then made key by key,
/// then sled is flushed and the journal emptied. After a crash, a complete journal (its
/// checksum holds) is made again at open; every entry is a whole value or a removal, so
/// making it twice is making it once. A torn journal was never followed by any key.
#[derive(Clone)]
pub struct AtomicTree {
    db: sled::Db,
    data: sled::Tree,
    journal: Arc<std::path::PathBuf>,
}

/// `len: u64 | crc32(entries): u32 | entries`, each entry as [`encode_entry`] writes it.
const JOURNAL_HEADER: usize = 12;

impl AtomicTree {
    /// Opens the tree `name` of `db`, whose journal is the file `journal`; finishes a write
    /// a crash cut short.
    pub fn open(
        db: &sled::Db,
        name: &str,
        journal: std::path::PathBuf,
    ) -> std::io::Result<AtomicTree> {
        let tree = AtomicTree {
            db: db.clone(),
            data: db.open_tree(name).map_err(std::io::Error::other)?,
            journal: Arc::new(journal),
        };
        tree.recover()?;
        Ok(tree)
    }

    pub fn data(&self) -> &sled::Tree {
        &self.data
    }

    /// Makes `writes` (a value, or `None` to remove the key) all or none.
    pub fn write<'a>(
        &self,
        writes: impl Iterator<Item = (&'a IVec, &'a Pending)> + Clone,
    ) -> sled::Result<()> {
        self.put_journal(&journal_of(writes.clone()))?;
        self.make(writes)?;
        // Emptied but not synced: until it is, making it again is harmless.
        std::fs::write(&*self.journal, []).map_err(sled::Error::Io)?;
        Ok(())
    }

    fn put_journal(&self, bytes: &[u8]) -> sled::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&*self.journal)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        Ok(())
    }

    /// Writes every entry to the tree, then flushes sled.
    fn make<'a>(&self, writes: impl Iterator<Item = (&'a IVec, &'a Pending)>) -> sled::Result<()> {
        for (k, v) in writes {
            match v {
                Some(v) => self.data.insert(k, v.clone())?,
                None => self.data.remove(k)?,
            };
        }
        self.db.flush()?;
        Ok(())
    }

    /// Makes again a write a crash interrupted, if its journal is whole.
    fn recover(&self) -> std::io::Result<()> {
        let bytes = match std::fs::read(&*self.journal) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A new journal: its directory entry must be durable before it is relied on.
                self.put_journal(&[]).map_err(std::io::Error::other)?;
                if let Some(dir) = self.journal.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let entries = (bytes.len() >= JOURNAL_HEADER)
            .then(|| {
                let len = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
                let crc = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
                let body = &bytes[JOURNAL_HEADER..];
                (body.len() == len && crc32fast::hash(body) == crc)
                    .then(|| decode_entries(body))
                    .flatten()
            })
            .flatten();
        match entries {
            Some(entries) => {
                let keys = entries.len();
                self.make(entries.iter().map(|(k, v)| (k, v)))
                    .map_err(std::io::Error::other)?;
                tracing::warn!(journal = %self.journal.display(), keys, "made again a read-model write a crash interrupted");
            }
            // Empty, or torn while it was written: nothing after it was.
            None if !bytes.is_empty() => {
                tracing::warn!(journal = %self.journal.display(), "dropping a torn journal (its write had not begun)")
            }
            None => {}
        }
        self.put_journal(&[]).map_err(std::io::Error::other)
    }
}

/// The journal of `writes`: its header, then each entry.
fn journal_of<'a>(writes: impl Iterator<Item = (&'a IVec, &'a Pending)>) -> Vec<u8> {
    let mut journal = vec![0u8; JOURNAL_HEADER];
    for (k, v) in writes {
        encode_entry(&mut journal, k, v);
    }
    let len = (journal.len() - JOURNAL_HEADER) as u64;
    let crc = crc32fast::hash(&journal[JOURNAL_HEADER..]);
    journal[..8].copy_from_slice(&len.to_be_bytes());
    journal[8..12].copy_from_slice(&crc.to_be_bytes());
    journal
}

fn encode_entry(out: &mut Vec<u8>, key: &[u8], value: &Pending) {
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    match value {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
        None => out.push(0),
    }
}

fn decode_entries(mut buf: &[u8]) -> Option<Vec<(IVec, Pending)>> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if buf.len() < n {
            return None;
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Some(head)
    }
    fn len(buf: &mut &[u8]) -> Option<usize> {
        take(buf, 4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let klen = len(&mut buf)?;
        let key = IVec::from(take(&mut buf, klen)?);
        let value = match take(&mut buf, 1)?[0] {
            0 => None,
            1 => {
                let vlen = len(&mut buf)?;
                Some(IVec::from(take(&mut buf, vlen)?))
            }
            _ => return None,
        };
        out.push((key, value));
    }
    Some(out)
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

    /// Opens a database again in this process: sled lets go of its file lock only once its
    /// background threads are done with the dropped one, a moment after the drop.
    fn reopen(path: &std::path::Path) -> sled::Db {
        for _ in 0..50 {
            if let Ok(db) = sled::open(path) {
                return db;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sled::open(path).unwrap()
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

    #[test]
    fn a_whole_journal_left_by_a_crash_is_made_again_at_open_and_a_torn_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("t.journal");
        let writes: Vec<(IVec, Pending)> = vec![
            (iv("a"), Some(iv("1"))),
            (iv("big"), Some(IVec::from(vec![7u8; 300_000]))),
            (iv("gone"), None),
        ];
        let whole = journal_of(writes.iter().map(|(k, v)| (k, v)));
        {
            let db = sled::open(dir.path().join("db")).unwrap();
            let atomic = AtomicTree::open(&db, "t", journal.clone()).unwrap();
            atomic.data().insert("gone", "old").unwrap();
            atomic.data().insert("a", "old").unwrap();
            db.flush().unwrap();
        }
        // Torn: cut short while it was written, so none of its keys was touched.
        std::fs::write(&journal, &whole[..whole.len() - 10]).unwrap();
        {
            let db = reopen(&dir.path().join("db"));
            let atomic = AtomicTree::open(&db, "t", journal.clone()).unwrap();
            assert_eq!(atomic.data().get("a").unwrap(), Some(iv("old")));
            assert_eq!(atomic.data().get("gone").unwrap(), Some(iv("old")));
        }
        // Whole: the crash came after it was synced, somewhere among its keys.
        std::fs::write(&journal, &whole).unwrap();
        let db = reopen(&dir.path().join("db"));
        let atomic = AtomicTree::open(&db, "t", journal.clone()).unwrap();
        assert_eq!(atomic.data().get("a").unwrap(), Some(iv("1")));
        assert_eq!(atomic.data().get("big").unwrap().unwrap().len(), 300_000);
        assert_eq!(atomic.data().get("gone").unwrap(), None);
        assert_eq!(
            std::fs::read(&journal).unwrap().len(),
            0,
            "emptied once made"
        );
    }

    #[test]
    fn a_write_leaves_every_key_in_sled_and_an_empty_journal() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let atomic = AtomicTree::open(&db, "t", dir.path().join("t.journal")).unwrap();
        let writes: Vec<(IVec, Pending)> = vec![(iv("x"), Some(iv("1"))), (iv("y"), None)];
        atomic.data().insert("y", "old").unwrap();
        atomic.write(writes.iter().map(|(k, v)| (k, v))).unwrap();
        assert_eq!(atomic.data().get("x").unwrap(), Some(iv("1")));
        assert_eq!(atomic.data().get("y").unwrap(), None);
        assert!(std::fs::read(dir.path().join("t.journal"))
            .unwrap()
            .is_empty());
    }
}
