//! Atomic multi-key writes on a sled tree, without sled's batches (see [`AtomicTree`]).

use crate::Pending;
use sled::IVec;
use std::path::PathBuf;
use std::sync::Arc;

/// A sled tree whose multi-key writes are atomic without sled's batches: a write is first
/// recorded whole in a journal file beside the database and synced, then made key by key,
/// then sled is flushed and the journal emptied. After a crash, a complete journal (its
/// checksum holds) is made again at open; every entry is a whole value or a removal, so
/// making it twice is making it once. A torn journal was never followed by any key.
#[derive(Clone)]
pub struct AtomicTree {
    db: sled::Db,
    data: sled::Tree,
    journal: Arc<PathBuf>,
}

/// `len: u64 | crc32(entries): u32 | entries`, each entry as [`encode_entry`] writes it.
const JOURNAL_HEADER: usize = 12;

impl AtomicTree {
    /// Opens the tree `name` of `db`, whose journal is the file `journal`; finishes a write
    /// a crash cut short.
    pub fn open(db: &sled::Db, name: &str, journal: PathBuf) -> std::io::Result<AtomicTree> {
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
pub(crate) fn journal_of<'a>(writes: impl Iterator<Item = (&'a IVec, &'a Pending)>) -> Vec<u8> {
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
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        sled::open(path).unwrap()
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
