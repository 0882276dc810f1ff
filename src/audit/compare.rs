//! Comparing the audit's books with the service's read models: in sled when the data dir's
//! read models can be opened (the service is stopped), else through the HTTP API of the
//! running service (`--api`), else not at all — and the report says which.

use super::fold::AuditReport;
use flashrent_events::UserId;
use flashrent_projections::projector::READ_MODELS;
use flashrent_projections::ReadModels;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `sled`, `api` or `skipped`.
    pub method: &'static str,
    pub note: Option<String>,
    pub users_checked: u64,
    pub differences: Vec<String>,
}

impl Comparison {
    pub fn skipped(why: &str) -> Comparison {
        Comparison {
            method: "skipped",
            note: Some(why.to_owned()),
            users_checked: 0,
            differences: vec![],
        }
    }
}

/// Compares every user's balance and ledger length, in sled or through the API.
pub async fn compare(
    data_dir: &Path,
    log_ends: &[u64],
    report: &AuditReport,
    api: Option<&str>,
    api_key: Option<&str>,
) -> Comparison {
    let dir = data_dir.join("read-models");
    if !dir.exists() {
        return Comparison::skipped("the data dir has no read models");
    }
    match ReadModels::open(&dir, log_ends.len() as u32, 16 << 20) {
        Ok(models) => with_sled(&models, log_ends, report),
        Err(e) => match api {
            Some(base) => with_api(base, api_key, report).await,
            None => Comparison::skipped(&format!(
                "the read models cannot be opened ({e}; is `serve` running? pass --api URL)"
            )),
        },
    }
}

fn with_sled(models: &ReadModels, log_ends: &[u64], report: &AuditReport) -> Comparison {
    let mut out = Comparison {
        method: "sled",
        note: None,
        users_checked: 0,
        differences: vec![],
    };
    let lagging: Vec<String> = log_ends
        .iter()
        .enumerate()
        .filter_map(|(p, end)| {
            let applied = models.checkpoint(READ_MODELS, p as u32).unwrap_or(0);
            (applied != *end).then(|| format!("partition {p}: applied {applied} of {end}"))
        })
        .collect();
    if !lagging.is_empty() {
        out.note = Some(format!(
            "the read models are not at the log's end ({}); differences may be lag",
            lagging.join(", ")
        ));
    }
    let stored = match models.balances() {
        Ok(b) => b,
        Err(e) => {
            out.differences
                .push(format!("cannot read the balances: {e}"));
            return out;
        }
    };
    let stored: BTreeMap<UserId, (u64, u64)> = stored
        .into_iter()
        .map(|b| (b.user_id, (b.balance.as_sun(), b.ledger_entries)))
        .collect();
    for (user, books) in &report.balances {
        out.users_checked += 1;
        let ours = (books.balance_sun, books.ledger_entries);
        match stored.get(user) {
            Some(theirs) if *theirs == ours => {}
            Some((bal, n)) => out.differences.push(format!(
                "user {user}: read model balance {bal} SUN with {n} ledger entries, audit {} SUN with {}",
                ours.0, ours.1
            )),
            None => out
                .differences
                .push(format!("user {user}: no balance in the read models")),
        }
    }
    let audited: std::collections::HashSet<_> = report.balances.iter().map(|(u, _)| *u).collect();
    for user in stored.keys().filter(|u| !audited.contains(u)) {
        out.differences.push(format!(
            "user {user}: balance in the read models, none in the log"
        ));
    }
    out
}

async fn with_api(base: &str, api_key: Option<&str>, report: &AuditReport) -> Comparison {
    let mut out = Comparison {
        method: "api",
        note: Some(
            "the service keeps writing; a difference may be a change made after the audit opened the log"
                .into(),
        ),
        users_checked: 0,
        differences: vec![],
    };
    let http = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Comparison::skipped(&format!("no HTTP client: {e}")),
    };
    let base = base.trim_end_matches('/');
    for (user, books) in &report.balances {
        if *user == UserId::OPERATOR {
            continue;
        }
        out.users_checked += 1;
        let mut req = http.get(format!("{base}/api/users/{}/balance", user.get()));
        if let Some(k) = api_key {
            req = req.header("X-API-Key", k);
        }
        // The ledger's length too: entry `n` (the audit's count) must be its last one.
        let n = books.ledger_entries;
        let mut ledger = http.get(format!(
            "{base}/api/users/{}/ledger?from={}&limit=2",
            user.get(),
            n.max(1)
        ));
        if let Some(k) = api_key {
            ledger = ledger.header("X-API-Key", k);
        }
        let theirs = async {
            let r = req.send().await?.error_for_status()?;
            let v: serde_json::Value = r.json().await?;
            let l: serde_json::Value = ledger.send().await?.error_for_status()?.json().await?;
            let seqs: Vec<u64> = l["entries"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e["seq"].as_u64()).collect())
                .unwrap_or_default();
            if seqs != [n] {
                return Ok(Err(format!(
                    "user {user}: API ledger from entry {n} has {seqs:?}, the audit counts {n} entries"
                )));
            }
            Ok::<_, reqwest::Error>(Ok(v["balance_sun"].as_u64()))
        }
        .await;
        let theirs = match theirs {
            Ok(Err(difference)) => {
                out.differences.push(difference);
                continue;
            }
            Ok(Ok(b)) => Ok(b),
            Err(e) => Err(e),
        };
        match theirs {
            Ok(Some(b)) if b == books.balance_sun => {}
            Ok(Some(b)) => out.differences.push(format!(
                "user {user}: API balance {b} SUN, audit {} SUN",
                books.balance_sun
            )),
            Ok(None) => out
                .differences
                .push(format!("user {user}: the API answered without balance_sun")),
            Err(e) => out
                .differences
                .push(format!("user {user}: the API failed: {e}")),
        }
    }
    out
}
