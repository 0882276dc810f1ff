//! The audit's output: a readable table, JSON, or CSV (the ledger with `--user`, else the
//! findings). Writes to any `io::Write`, so tests can read what an operator would see.

use super::fold::{Finding, LedgerLine, Severity};
use super::{AuditRun, Format};
use std::io::{self, Write};

fn trx(sun: i128) -> String {
    let sign = if sun < 0 { "-" } else { "" };
    let a = sun.unsigned_abs();
    format!("{sign}{}.{:06}", a / 1_000_000, a % 1_000_000)
}

fn events_per_sec(run: &AuditRun) -> u64 {
    let secs = run.elapsed.as_secs_f64();
    if secs > 0.0 {
        (run.report.summary.events as f64 / secs) as u64
    } else {
        0
    }
}

pub fn write(run: &AuditRun, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Table => table(run, out),
        Format::Json => {
            let doc = serde_json::json!({
                "balanced": run.report.balanced(),
                "ok": run.ok(),
                "summary": run.report.summary,
                "findings": run.report.findings,
                "ledger": run.report.ledger,
                "comparison": run.comparison,
                "elapsed_ms": run.elapsed.as_millis() as u64,
                "events_per_sec": events_per_sec(run),
            });
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)
        }
        Format::Csv => match &run.report.ledger {
            Some(lines) => ledger_csv(lines, out),
            None => findings_csv(&run.report.findings, out),
        },
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

fn ledger_csv(lines: &[LedgerLine], out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "at,event,delta_sun,balance_after_sun,order_id,reference,transaction_hash,partition,offset,event_id")?;
    for l in lines {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            l.at.to_rfc3339(),
            l.event,
            l.delta_sun,
            l.balance_after_sun,
            opt(&l.order_id),
            csv_field(&opt(&l.reference)),
            csv_field(&opt(&l.transaction_hash)),
            l.position.partition,
            l.position.offset,
            l.event_id
        )?;
    }
    Ok(())
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::InFlight => "in_flight",
    }
}

fn findings_csv(findings: &[Finding], out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "severity,code,user_id,order_id,partition,offset,event_id,detail"
    )?;
    for f in findings {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            severity(f.severity),
            f.code,
            opt(&f.user_id),
            opt(&f.order_id),
            opt(&f.position.map(|p| p.partition)),
            opt(&f.position.map(|p| p.offset)),
            opt(&f.event_id),
            csv_field(&f.detail)
        )?;
    }
    Ok(())
}

fn table(run: &AuditRun, out: &mut dyn Write) -> io::Result<()> {
    let s = &run.report.summary;
    writeln!(
        out,
        "replayed {} records ({} events, {} balance changes) in {:.2}s — {} events/s",
        s.records,
        s.events,
        s.balance_events,
        run.elapsed.as_secs_f64(),
        events_per_sec(run)
    )?;
    writeln!(
        out,
        "users {}  orders {} (paid {}, completed {}, refunded {}, in flight {})",
        s.users, s.orders, s.paid_orders, s.completed, s.refunded, s.in_flight
    )?;
    writeln!(
        out,
        "credits {} − deductions {} + refunds {} = balances {} TRX",
        trx(s.credits_sun as i128),
        trx(s.deductions_sun as i128),
        trx(s.refunds_sun as i128),
        trx(s.balances_sun as i128)
    )?;
    writeln!(out, "pool energy held by active orders: {}", s.energy_held)?;
    if let Some(lines) = &run.report.ledger {
        writeln!(out)?;
        writeln!(
            out,
            "{:<24} {:<16} {:>18} {:>18}  {:<36} transaction",
            "time", "event", "delta TRX", "balance TRX", "order"
        )?;
        for l in lines {
            writeln!(
                out,
                "{:<24} {:<16} {:>18} {:>18}  {:<36} {}",
                l.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                l.event,
                trx(l.delta_sun),
                trx(l.balance_after_sun as i128),
                opt(&l.order_id),
                l.transaction_hash
                    .clone()
                    .or_else(|| l.reference.as_ref().map(|r| format!("ref {r}")))
                    .unwrap_or_default()
            )?;
        }
    }
    if !run.report.findings.is_empty() {
        writeln!(out)?;
        // Every error; orders in flight only as a sample (the JSON and CSV list them all).
        let mut in_flight_shown = 0;
        for f in &run.report.findings {
            if f.severity == Severity::InFlight {
                in_flight_shown += 1;
                if in_flight_shown > 10 {
                    continue;
                }
            }
            let at = f
                .position
                .map(|p| format!("p{}@{}", p.partition, p.offset))
                .unwrap_or_default();
            writeln!(
                out,
                "{:<9} {:<36} user {:<8} order {:<36} {:<10} {}",
                severity(f.severity),
                f.code,
                opt(&f.user_id),
                opt(&f.order_id),
                at,
                f.detail
            )?;
        }
        if in_flight_shown > 10 {
            writeln!(
                out,
                "… and {} more orders in flight (--format csv lists them all)",
                in_flight_shown - 10
            )?;
        }
    }
    let c = &run.comparison;
    writeln!(out)?;
    match c.method {
        "skipped" => writeln!(
            out,
            "read models: comparison skipped ({})",
            c.note.as_deref().unwrap_or("")
        )?,
        m => {
            writeln!(
                out,
                "read models ({m}): {} users checked, {} differences",
                c.users_checked,
                c.differences.len()
            )?;
            if let Some(n) = &c.note {
                writeln!(out, "  note: {n}")?;
            }
            for d in c.differences.iter().take(50) {
                writeln!(out, "  {d}")?;
            }
        }
    }
    if run.report.balanced() {
        writeln!(out, "BOOKS BALANCE")?;
    } else {
        writeln!(out, "BOOKS DO NOT BALANCE: {} errors", s.errors)?;
    }
    Ok(())
}
