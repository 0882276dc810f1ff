//! `flashrent audit` against logs seeded with known histories, clean and deliberately corrupted.

mod common;

use chrono::{Duration, Utc};
use flashrent::audit::fold::{AuditOptions, AuditReport, Severity};
use flashrent::audit::replay;
use flashrent::audit::synth::Synth;
use flashrent::audit::synth::SynthOrder;
use flashrent::log::EmbeddedLog;
use flashrent_events::{encode_record, CommandRecord, Event, EventLog, PartitionId, Sun, UserId};
use std::path::Path;
use std::process::Command;

const PARTITIONS: u32 = 4;

type Rec = (PartitionId, CommandRecord);

async fn write_log(data_dir: &Path, records: &[Rec]) {
    let log = EmbeddedLog::open(&data_dir.join("log"), PARTITIONS).unwrap();
    for (p, r) in records {
        log.append(*p, encode_record(r)).await.unwrap();
    }
    log.close();
}

async fn audit(records: &[Rec], opts: AuditOptions) -> AuditReport {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), records).await;
    let log = EmbeddedLog::open_read_only(&dir.path().join("log")).unwrap();
    replay(&log, opts).await.unwrap()
}

fn codes(r: &AuditReport) -> Vec<&'static str> {
    r.findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.code)
        .collect()
}

fn user(n: u64) -> UserId {
    UserId::from_number(n).unwrap()
}

/// Two users: one completed rental, one refunded, one recent order still in flight.
fn clean_history(s: &mut Synth) -> (Vec<Rec>, SynthOrder) {
    let mut recs = vec![
        s.register_supplier(1_000_000_000),
        s.credit(user(1), 20_000_000),
    ];
    recs.extend(s.completed_rental(user(1), 5_850_000));
    recs.push(s.credit(user(2), 10_000_000));
    recs.extend(s.refunded_rental(user(2), 5_850_000));
    let (o, placed) = s.place_paid(user(2), 1_000_000, 20_000);
    recs.push(placed);
    recs.push(s.reserve(&o));
    (recs, o)
}

fn opts_at(now: chrono::DateTime<Utc>) -> AuditOptions {
    AuditOptions::new(now)
}

#[tokio::test]
async fn a_clean_history_balances_and_a_recent_unfinished_order_is_in_flight_not_an_error() {
    let mut s = Synth::new(PARTITIONS, Utc::now());
    let (recs, o) = clean_history(&mut s);
    let report = audit(&recs, opts_at(s.now)).await;
    assert!(report.balanced(), "{:#?}", report.findings);
    let sm = &report.summary;
    assert_eq!(
        (sm.users, sm.orders, sm.completed, sm.refunded, sm.in_flight),
        (2, 3, 1, 1, 1)
    );
    assert_eq!(sm.credits_sun, 30_000_000);
    assert_eq!(sm.balances_sun, 30_000_000 - 5_850_000 - 1_000_000);
    assert_eq!(sm.energy_held, 20_000);
    let f = &report.findings[0];
    assert_eq!(
        (f.code, f.severity, f.order_id),
        ("order_in_flight", Severity::InFlight, Some(o.order_id))
    );
}

#[tokio::test]
async fn strict_mode_counts_an_order_in_flight_as_an_error() {
    let mut s = Synth::new(PARTITIONS, Utc::now());
    let (recs, _) = clean_history(&mut s);
    let mut opts = opts_at(s.now);
    opts.strict = true;
    let report = audit(&recs, opts).await;
    assert_eq!(codes(&report), ["order_in_flight"]);
}

#[tokio::test]
async fn a_double_refund_is_caught() {
    let mut s = Synth::new(PARTITIONS, Utc::now());
    let (mut recs, _) = clean_history(&mut s);
    recs.push(s.credit(user(3), 9_000_000));
    let (o, placed) = s.place_paid(user(3), 4_000_000, 10_000);
    recs.push(placed);
    recs.push(s.fail(&o));
    recs.push(s.refund(&o));
    // The same refund again, with a consistent balance_after: only the order's story betrays it.
    recs.push(s.refund(&o));
    let report = audit(&recs, opts_at(s.now)).await;
    let c = codes(&report);
    assert!(c.contains(&"double_refund"), "{c:?}");
    assert!(!report.balanced());
}

#[tokio::test]
async fn a_deduction_with_no_outcome_long_overdue_is_caught() {
    let start = Utc::now() - Duration::days(3);
    let mut s = Synth::new(PARTITIONS, start);
    let mut recs = vec![s.credit(user(4), 10_000_000)];
    let (o, placed) = s.place_paid(user(4), 5_850_000, 65_000);
    recs.push(placed);
    let report = audit(&recs, opts_at(Utc::now())).await;
    assert_eq!(codes(&report), ["deduction_without_outcome"]);
    assert_eq!(report.findings[0].order_id, Some(o.order_id));
    assert_eq!(report.findings[0].user_id, Some(user(4)));
}

#[tokio::test]
async fn a_tampered_amount_is_caught() {
    let mut s = Synth::new(PARTITIONS, Utc::now());
    let (mut recs, _) = clean_history(&mut s);
    // Someone turns a 20 TRX credit into 200 TRX without touching balance_after.
    for (_, r) in recs.iter_mut() {
        for e in r.events.iter_mut() {
            if let Event::BalanceCredited {
                amount, user_id, ..
            } = &mut e.event
            {
                if *user_id == user(1) {
                    *amount = Sun::from_sun(200_000_000);
                }
            }
        }
    }
    let report = audit(&recs, opts_at(s.now)).await;
    let c = codes(&report);
    assert!(c.contains(&"balance_after_mismatch"), "{c:?}");
    assert!(c.contains(&"books_do_not_balance"), "{c:?}");
}

#[tokio::test]
async fn a_tampered_balance_after_is_caught() {
    let mut s = Synth::new(PARTITIONS, Utc::now());
    let (mut recs, _) = clean_history(&mut s);
    let last_debit = recs
        .iter_mut()
        .flat_map(|(_, r)| r.events.iter_mut())
        .filter_map(|e| match &mut e.event {
            Event::BalanceDebited { balance_after, .. } => Some(balance_after),
            _ => None,
        })
        .last()
        .unwrap();
    *last_debit = Sun::from_sun(last_debit.as_sun() + 1);
    let report = audit(&recs, opts_at(s.now)).await;
    let c = codes(&report);
    assert!(c.contains(&"balance_after_mismatch"), "{c:?}");
    assert!(c.contains(&"books_do_not_balance"), "{c:?}");
}

#[tokio::test]
async fn a_deduction_above_the_price_and_a_negative_balance_are_caught() {
    let mut s = Synth::new(PARTITIONS, Utc::now());
    let mut recs = vec![s.credit(user(5), 1_000_000)];
    let (o, (p, mut placed)) = s.place_paid(user(5), 5_000_000, 65_000);
    if let Event::BalanceDebited { amount, .. } = &mut placed.events[1].event {
        *amount = Sun::from_sun(6_000_000);
    }
    recs.push((p, placed));
    recs.push(s.fail(&o));
    let report = audit(&recs, opts_at(s.now)).await;
    let c = codes(&report);
    assert!(c.contains(&"negative_balance"), "{c:?}");
    assert!(c.contains(&"deduction_amount_mismatch"), "{c:?}");
}

#[tokio::test]
async fn an_order_both_completed_and_refunded_is_caught() {
    let mut s = Synth::new(PARTITIONS, Utc::now());
    let mut recs = vec![s.credit(user(6), 10_000_000)];
    let (o, placed) = s.place_paid(user(6), 5_850_000, 65_000);
    recs.push(placed);
    recs.push(s.complete(&o));
    recs.push(s.refund(&o));
    let report = audit(&recs, opts_at(s.now)).await;
    assert!(codes(&report).contains(&"refund_of_completed_order"));
}

#[tokio::test]
async fn reserved_energy_neither_delegated_nor_released_is_caught_once_the_order_is_over() {
    let mut s = Synth::new(PARTITIONS, Utc::now());
    let mut recs = vec![s.credit(user(7), 10_000_000)];
    let (o, placed) = s.place_paid(user(7), 5_850_000, 65_000);
    recs.push(placed);
    recs.push(s.reserve(&o));
    recs.push(s.fail(&o));
    recs.push(s.refund(&o));
    let report = audit(&recs, opts_at(s.now)).await;
    assert_eq!(codes(&report), ["reserved_energy_unaccounted"]);
}

#[tokio::test]
async fn the_ledger_of_one_user_shows_each_change_with_its_transaction_hash() {
    let mut s = Synth::new(PARTITIONS, Utc::now());
    let (recs, _) = clean_history(&mut s);
    let mut opts = opts_at(s.now);
    opts.user = Some(user(1));
    let report = audit(&recs, opts).await;
    let ledger = report.ledger.unwrap();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0].event, "BalanceCredited");
    assert_eq!(
        (ledger[1].delta_sun, ledger[1].balance_after_sun),
        (-5_850_000, 14_150_000)
    );
    assert_eq!(
        ledger[1].transaction_hash.as_ref().map(|h| h.len()),
        Some(64)
    );
}

fn run_audit(data_dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flashrent"))
        .arg("audit")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_binary_exits_0_on_balanced_books_and_1_on_a_corrupted_log() {
    let mut s = Synth::new(PARTITIONS, Utc::now());
    let (mut recs, _) = clean_history(&mut s);
    let good = tempfile::tempdir().unwrap();
    write_log(good.path(), &recs).await;
    let (code, out) = run_audit(good.path(), &["--format", "json"]);
    assert_eq!(code, 0, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["balanced"], true);
    assert_eq!(doc["comparison"]["method"], "skipped");
    let (code, out) = run_audit(good.path(), &["--user", "1", "--format", "csv"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out
        .lines()
        .nth(2)
        .unwrap()
        .contains(",BalanceDebited,-5850000,14150000,"));

    let (o, _never_appended) = s.place_paid(user(2), 1, 10_000);
    recs.push(s.refund(&o));
    let bad = tempfile::tempdir().unwrap();
    write_log(bad.path(), &recs).await;
    let (code, out) = run_audit(bad.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("refund_without_order"), "{out}");
    assert!(out.contains("BOOKS DO NOT BALANCE"), "{out}");
}

#[tokio::test]
async fn audit_runs_next_to_a_live_service_and_agrees_with_its_read_models() {
    let mut app = common::TestApp::spawn().await;
    assert_eq!(app.credit("123", "25.5", "deposit-1").await.status, 201);
    let r = app.post("/api/orders", &common::seed_order_body()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["order_id"].as_str().unwrap().to_owned();
    app.wait_final(&id).await;

    // The service holds sled: the comparison goes through its API.
    let (code, out) = run_audit(&app.data_dir, &["--api", &app.base]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("read models (api): 1 users checked, 0 differences"),
        "{out}"
    );
    let (code, out) = run_audit(&app.data_dir, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("comparison skipped"), "{out}");

    // Stopped: sled itself is compared.
    let dir = app.data_dir.clone();
    app.stop();
    let (code, out) = run_audit(&dir, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("read models (sled): 1 users checked, 0 differences"),
        "{out}"
    );
}

#[tokio::test]
async fn two_orders_that_name_one_delegation_transaction_are_an_error() {
    let mut s = Synth::new(PARTITIONS, Utc::now());
    let mut recs = vec![
        s.register_supplier(1_000_000_000),
        s.credit(user(5), 20_000_000),
    ];
    let first = s.completed_rental(user(5), 5_850_000);
    let mut second = s.completed_rental(user(5), 5_850_000);
    let shared = first.iter().find_map(|(_, r)| match &r.events[0].event {
        Event::OrderCompleted {
            transaction_hash, ..
        } => Some(*transaction_hash),
        _ => None,
    });
    for (_, r) in &mut second {
        if let Event::OrderCompleted {
            transaction_hash, ..
        } = &mut r.events[0].event
        {
            *transaction_hash = shared.unwrap();
        }
    }
    recs.extend(first);
    recs.extend(second);
    let report = audit(&recs, opts_at(s.now)).await;
    assert_eq!(codes(&report), ["transaction_shared_by_orders"]);
}

#[tokio::test]
async fn the_engines_own_log_with_refunds_and_ended_rentals_audits_clean_even_strict() {
    // Half the chain's transactions fail: delegations and reclaims are signed again, some
    // orders are refunded, and every reclaim still finds its own delegation on chain.
    let mut app = common::TestApp::spawn_with(&[
        ("FLASHRENT_RENTAL_TIME_SCALE", "0.0005"),
        ("FLASHRENT_DEVNET_FAILURE_RATE", "0.5"),
    ])
    .await;
    for u in ["21", "22", "23"] {
        assert_eq!(app.credit(u, "60", &format!("d-{u}")).await.status, 201);
    }
    let mut ids = Vec::new();
    for i in 0..24 {
        let user = ["21", "22", "23"][i % 3];
        let r = app.order(user, 65_000, "1h", "5.85").await;
        if r.status == 201 {
            ids.push(r.body["order_id"].as_str().unwrap().to_owned());
        }
    }
    assert!(ids.len() >= 20, "{} orders placed", ids.len());
    for id in &ids {
        app.wait_order(id, 60, |o| {
            o["status"] == "refunded" || !o["rental_ended_at"].is_null()
        })
        .await;
    }
    let dir = app.data_dir.clone();
    app.stop();
    let (code, out) = run_audit(&dir, &["--strict", "--format", "json"]);
    assert_eq!(code, 0, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["summary"]["orders"].as_u64(), Some(ids.len() as u64));
    assert_eq!(doc["summary"]["in_flight"], 0);
    assert_eq!(doc["summary"]["energy_held"], 0);
    assert_eq!(doc["comparison"]["method"], "sled");
    assert_eq!(
        doc["comparison"]["differences"].as_array().unwrap().len(),
        0
    );
}

#[tokio::test]
async fn a_window_narrows_what_is_shown_but_the_books_are_still_proven_from_the_start() {
    let mut s = Synth::new(PARTITIONS, Utc::now() - Duration::days(2));
    let (credit_p, mut credit) = s.credit(user(12), 10_000_000);
    if let Event::BalanceCredited { amount, .. } = &mut credit.events[0].event {
        *amount = Sun::from_sun(11_000_000);
    }
    let mut recs = vec![(credit_p, credit)];
    s.now = Utc::now();
    let since = s.now;
    recs.extend(s.completed_rental(user(12), 5_850_000));
    let mut opts = opts_at(Utc::now());
    opts.window = flashrent::audit::fold::Window::Since(since);
    opts.user = Some(user(12));
    let report = audit(&recs, opts).await;
    // The tampered credit is before the window: its own finding is not shown, but the
    // user's books are still wrong, and the ledger shows only the window.
    assert_eq!(codes(&report), ["books_do_not_balance"]);
    assert_eq!(report.ledger.as_ref().unwrap().len(), 1);
    assert!(report.findings[0].at.is_none());
}

mod properties {
    use super::*;
    use flashrent::audit::fold::{Books, Position};
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Credit(u64, u64),
        Complete(u64, u64),
        Refund(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1..4u64, 1..50_000_000u64).prop_map(|(u, a)| Op::Credit(u, a)),
            (1..4u64, 1..20_000_000u64).prop_map(|(u, p)| Op::Complete(u, p)),
            (1..4u64, 1..20_000_000u64).prop_map(|(u, p)| Op::Refund(u, p)),
        ]
    }

    /// The records the engine would write for `ops` (orders only when the balance covers them).
    fn history(ops: &[Op]) -> Vec<Rec> {
        let mut s = Synth::new(PARTITIONS, Utc::now());
        let mut recs = vec![s.register_supplier(1 << 40)];
        for op in ops {
            match *op {
                Op::Credit(u, a) => recs.push(s.credit(user(u), a)),
                Op::Complete(u, p) if s.balance(user(u)) >= p => {
                    recs.extend(s.completed_rental(user(u), p))
                }
                Op::Refund(u, p) if s.balance(user(u)) >= p => {
                    recs.extend(s.refunded_rental(user(u), p))
                }
                _ => {}
            }
        }
        recs
    }

    fn fold(recs: &[Rec]) -> AuditReport {
        let mut books = Books::new(AuditOptions::new(Utc::now()));
        let mut next = [0u64; PARTITIONS as usize];
        for (p, r) in recs {
            let pos = Position {
                partition: *p,
                offset: next[*p as usize],
            };
            next[*p as usize] += 1;
            books.apply(pos, r);
        }
        books.finish()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_history_the_engine_could_write_balances(ops in prop::collection::vec(op(), 1..40)) {
            let report = fold(&history(&ops));
            prop_assert!(report.balanced(), "{:#?}", report.findings);
            let s = &report.summary;
            prop_assert_eq!(s.credits_sun + s.refunds_sun - s.deductions_sun, s.balances_sun);
        }

        #[test]
        fn changing_any_one_amount_is_caught(
            ops in prop::collection::vec(op(), 1..40),
            pick in any::<prop::sample::Index>(),
            bump in 1..1_000_000u64,
        ) {
            let mut recs = history(&ops);
            let amounts: Vec<(usize, usize)> = recs
                .iter()
                .enumerate()
                .flat_map(|(i, (_, r))| {
                    r.events.iter().enumerate().filter_map(move |(j, e)| match e.event {
                        Event::BalanceCredited { .. }
                        | Event::BalanceDebited { .. }
                        | Event::BalanceRefunded { .. } => Some((i, j)),
                        _ => None,
                    })
                })
                .collect();
            prop_assume!(!amounts.is_empty());
            let (i, j) = amounts[pick.index(amounts.len())];
            match &mut recs[i].1.events[j].event {
                Event::BalanceCredited { amount, .. }
                | Event::BalanceDebited { amount, .. }
                | Event::BalanceRefunded { amount, .. } => *amount = Sun::from_sun(amount.as_sun() + bump),
                _ => unreachable!(),
            }
            prop_assert!(!fold(&recs).balanced());
        }
    }
}
