//! What sled keeps in memory for what it stores: opens a sled directory with the read models'
//! settings (`flashrent_store::sled_config`, the default cache) and prints the
//! process's anonymous memory after the open, then every tree's keys by family (their first
//! letters) with the mean value size.
//!
//!   cargo build --release --example sled_probe
//!   target/release/examples/sled_probe DATA_DIR/read-models     # a server's read models
//!   target/release/examples/sled_probe /tmp/probe 1000000 300    # N keys of SIZE bytes first
//!
//! The second form writes N keys in order (as UUID v7 order ids come) into a fresh directory,
//! so the memory per key can be read off against N.

use std::collections::BTreeMap;

fn anon_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn open(dir: &str) -> sled::Result<sled::Db> {
    let cache_bytes = flashrent::config::DEFAULT_SLED_CACHE_MB << 20;
    flashrent_store::sled_config(std::path::Path::new(dir), cache_bytes).open()
}

/// A key's family: its leading letters (`o/…` is `o`, `uo/…` is `uo`).
fn family(key: &[u8]) -> String {
    let letters = key.iter().take_while(|b| b.is_ascii_alphabetic()).take(4);
    String::from_utf8_lossy(&letters.copied().collect::<Vec<u8>>()).into_owned()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        return Err("usage: sled_probe DIR [N SIZE]".into());
    };
    if let [_, n, size] = args.as_slice() {
        let (n, size): (u64, usize) = (n.parse()?, size.parse()?);
        let db = open(dir)?;
        let tree = db.open_tree("probe")?;
        for i in 0..n {
            tree.insert(format!("o/{i:016}"), vec![7u8; size])?;
        }
        db.flush()?;
        println!(
            "wrote {n} keys of {size} B: {:.1} MiB anonymous",
            anon_mib()
        );
    }
    let before = anon_mib();
    let db = open(dir)?;
    println!(
        "opened {dir} ({} MiB on disk): {:.1} MiB anonymous ({before:.1} before)",
        db.size_on_disk()? >> 20,
        anon_mib()
    );
    let mut keys = 0u64;
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let mut families: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for entry in tree.iter() {
            let (k, v) = entry?;
            let f = families.entry(family(&k)).or_default();
            f.0 += 1;
            f.1 += v.len() as u64;
        }
        let listed: Vec<String> = families
            .iter()
            .map(|(f, (n, bytes))| format!("{f}: {n} keys of {} B", bytes / n))
            .collect();
        keys += families.values().map(|(n, _)| n).sum::<u64>();
        println!(
            "  {}: {}",
            String::from_utf8_lossy(&name),
            listed.join(", ")
        );
    }
    println!(
        "{keys} keys; {:.1} MiB anonymous after reading them all",
        anon_mib()
    );
    Ok(())
}
