//! `flashrent rebuild`: the read models dropped and made again from the log, and with
//! `--verify`, compared key by key with the ones they replace.

use crate::settings::StoreSettings;
use crate::store::{catch_up, open_store, Store};
use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet};

pub struct RebuildReport {
    pub records: u64,
    /// With `verify`: how many keys differ between the old and the rebuilt read models.
    pub differences: Option<usize>,
}

/// Drops the read models and the writers' snapshots, and rebuilds the read models from
/// offset 0 (the writers fold the log at the next start). `serve` must be stopped.
pub async fn rebuild(store: &StoreSettings, verify: bool) -> anyhow::Result<RebuildReport> {
    let Store {
        log,
        sled,
        mut models,
    } = open_store(store).await?;
    let before = if verify {
        // Bring the old models up to the end of the log first, so both cover the same records.
        catch_up(log.as_ref(), &models).await?;
        Some(models.dump()?)
    } else {
        None
    };
    models.drop_all()?;
    crate::engine::drop_snapshots(&sled).context("dropping the writers' snapshots")?;
    let records = catch_up(log.as_ref(), &models).await?;
    models.close()?;
    let differences = before
        .map(|before| -> anyhow::Result<usize> {
            let diff = differing_keys(before, models.dump()?);
            for k in diff.iter().take(20) {
                tracing::error!(key = %String::from_utf8_lossy(k), "read model differs after rebuild");
            }
            Ok(diff.len())
        })
        .transpose()?;
    log.close();
    Ok(RebuildReport {
        records,
        differences,
    })
}

/// The keys whose values differ between two dumps (or that only one has), in key order.
fn differing_keys<K: Ord + Clone, V: PartialEq>(before: Vec<(K, V)>, after: Vec<(K, V)>) -> Vec<K> {
    let old: BTreeMap<_, _> = before.into_iter().collect();
    let new: BTreeMap<_, _> = after.into_iter().collect();
    let keys: BTreeSet<_> = old.keys().chain(new.keys()).cloned().collect();
    keys.into_iter()
        .filter(|k| old.get(k) != new.get(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_differ_or_only_one_side_has_are_reported() {
        let before = vec![(1, "a"), (2, "b"), (3, "c")];
        let after = vec![(1, "a"), (2, "x"), (4, "d")];
        assert_eq!(differing_keys(before, after), vec![2, 3, 4]);
    }
}
