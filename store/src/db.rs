//! The one sled database of a data dir, and the journaled trees in it.

use crate::AtomicTree;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a data dir's sled database is opened; `cache_bytes` bounds sled's page cache (its
/// default, 1 GiB, is far above our budget).
pub fn sled_config(dir: &Path, cache_bytes: u64) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        // What it holds (read models, writers' snapshots) is derived from the log, never the
        // only copy: trade space for speed.
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(Some(1000))
}

/// A sled database and the directory of its trees' journals (beside sled's own files).
/// Each part of the service that keeps state here opens its own named tree; they share the
/// page cache.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    dir: Arc<PathBuf>,
}

impl SledStore {
    /// Opens the database in `dir` with [`sled_config`].
    pub fn open(dir: &Path, cache_bytes: u64) -> sled::Result<SledStore> {
        SledStore::open_with(dir, sled_config(dir, cache_bytes))
    }

    /// Opens the database in `dir` with settings of its own (`config`'s path is set to `dir`).
    pub fn open_with(dir: &Path, config: sled::Config) -> sled::Result<SledStore> {
        Ok(SledStore {
            db: config.path(dir).open()?,
            dir: Arc::new(dir.to_owned()),
        })
    }

    /// The journaled tree `name`; finishes a write a crash cut short.
    pub fn tree(&self, name: &str) -> std::io::Result<AtomicTree> {
        AtomicTree::open(&self.db, name, self.journal(name))
    }

    /// Drops the tree `name`; whether there was one. Nothing may be writing to it.
    pub fn drop_tree(&self, name: &str) -> std::io::Result<bool> {
        // The journal first: a write a crash left in it must not be made again into the
        // new, empty tree of the same name.
        let journal = self.journal(name);
        if journal.exists() {
            std::fs::write(&journal, [])?;
        }
        self.db.drop_tree(name).map_err(std::io::Error::other)
    }

    /// Drops every tree whose name starts with `prefix`; how many there were.
    pub fn drop_trees(&self, prefix: &str) -> std::io::Result<usize> {
        let mut dropped = 0;
        for name in self.tree_names() {
            if name.starts_with(prefix) && self.drop_tree(&name)? {
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// The names of the trees in the database (sled's default tree among them).
    pub fn tree_names(&self) -> Vec<String> {
        self.db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    /// Writes everything sled holds in memory to disk and syncs it.
    pub fn flush(&self) -> sled::Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// The journal file of a tree's atomic writes: `dir/<tree>.journal`, `/` spelled `-`.
    fn journal(&self, tree: &str) -> PathBuf {
        self.dir.join(format!("{}.journal", tree.replace('/', "-")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_trees_by_prefix_leaves_the_others_and_no_journal_to_make_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let key = sled::IVec::from(&b"k"[..]);
        let value = Some(sled::IVec::from(&b"v"[..]));
        for name in ["snap/0", "snap/1", "models"] {
            let tree = store.tree(name).unwrap();
            tree.write([(&key, &value)].into_iter()).unwrap();
        }
        // A whole journal a crash left behind, as if a write to `snap/0` was cut short.
        let crashed = Some(sled::IVec::from(&b"cut short"[..]));
        let journal = dir.path().join("snap-0.journal");
        std::fs::write(
            &journal,
            crate::atomic::journal_of([(&key, &crashed)].into_iter()),
        )
        .unwrap();
        assert_eq!(store.drop_trees("snap/").unwrap(), 2);
        assert!(std::fs::read(&journal).unwrap().is_empty());
        let names = store.tree_names();
        assert!(!names.iter().any(|n| n.starts_with("snap/")), "{names:?}");
        assert_eq!(store.tree("snap/0").unwrap().data().len(), 0);
        assert_eq!(
            store.tree("models").unwrap().data().get("k").unwrap(),
            value
        );
    }
}
