//! Writes a synthetic but valid history of at least N events through the real `EventLog`
//! API, for measuring `flashrent audit`:
//!
//! ```sh
//! cargo run --release --example audit_gen -- /tmp/audit-bench 1000000
//! time target/release/flashrent audit --data-dir /tmp/audit-bench --no-compare
//! ```
//!
//! Users are credited, then place orders of which nine in ten complete (and their rental
//! ends) and one in ten fails and is refunded. Records go in batches so the group commit
//! makes each batch durable with one sync.

use chrono::{Duration, Utc};
use flashrent::audit::synth::Synth;
use flashrent::log::EmbeddedLog;
use flashrent_events::{encode_record, EventLog, UserId};
use std::path::PathBuf;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: audit_gen DATA_DIR [EVENTS]"));
    let target: u64 = args
        .next()
        .map_or(1_000_000, |n| n.parse().expect("a number"));
    let partitions = 8;
    let log = EmbeddedLog::open(&dir.join("log"), partitions).expect("open the log");
    let mut s = Synth::new(partitions, Utc::now() - Duration::days(30));
    let users: u64 = (target / 200).max(1);
    let mut events = 0u64;
    let mut batch = vec![s.register_supplier(1_000_000_000_000)];
    for u in 1..=users {
        batch.push(s.credit(UserId::from_number(u).unwrap(), 1_000_000_000));
    }
    let mut n = 0u64;
    while events < target {
        n += 1;
        let user = UserId::from_number(1 + n % users).unwrap();
        if n.is_multiple_of(10) {
            batch.extend(s.refunded_rental(user, 5_850_000));
        } else {
            batch.extend(s.completed_rental(user, 5_850_000));
        }
        if batch.len() >= 10_000 || events + 8 >= target {
            let futs: Vec<_> = batch
                .drain(..)
                .map(|(p, r)| {
                    events += r.events.len() as u64;
                    log.append(p, encode_record(&r))
                })
                .collect();
            for f in futs {
                f.await.expect("append");
            }
        }
    }
    let futs: Vec<_> = batch
        .drain(..)
        .map(|(p, r)| {
            events += r.events.len() as u64;
            log.append(p, encode_record(&r))
        })
        .collect();
    for f in futs {
        f.await.expect("append");
    }
    log.close();
    println!(
        "wrote {events} events ({n} orders, {users} users) to {}",
        dir.display()
    );
}
