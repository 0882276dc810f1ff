//! The audit as a pure fold over the log: [`Books::apply`] takes one record at a time (in
//! partition order), [`Books::finish`] turns what was seen into an [`AuditReport`]. No I/O,
//! no clock: "now" comes in with the options, so the same log always gives the same report.
//!
//! What is proven, per user: every balance event's `balance_after` is the previous balance
//! plus its delta, no balance is ever negative, and credits − deductions + refunds equals the
//! last balance. Per order: at most one deduction, equal to the price; at most one refund,
//! equal to the deduction, only of a paid order, never of a completed one; every deduction
//! ends completed (with a transaction hash) or refunded — or is still in flight. Per order in
//! the pool: every reserved unit is delegated or released (or still held by an active order),
//! never more delegated or released than reserved, never more returned than delegated.
//!
//! All of a user's balance and order events live in the user's partition, so the per-user
//! checks only need each partition in order; the pool checks compare totals at the end.

use chrono::{DateTime, Duration, Utc};
use flashrent_events::{
    CommandRecord, Envelope, Event, OrderId, OrderKind, PartitionId, TxId, UserId,
};
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// Where a record sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    pub partition: PartitionId,
    pub offset: u64,
}

/// What part of the log the report shows. The books are always folded from offset 0 (a
/// balance can only be proven from the beginning); the window narrows the ledger lines and
/// the findings raised by single events to those at or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Window {
    #[default]
    All,
    /// Records at or after this offset, in every partition.
    FromOffset(u64),
    /// Events that occurred at or after this time.
    Since(DateTime<Utc>),
}

impl Window {
    fn contains(&self, pos: Position, at: DateTime<Utc>) -> bool {
        match self {
            Window::All => true,
            Window::FromOffset(o) => pos.offset >= *o,
            Window::Since(t) => at >= *t,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The time the audit runs at; orders due long before it without an outcome are errors.
    pub now: DateTime<Utc>,
    /// How long after its estimated completion an unfinished paid order still counts as in flight.
    pub in_flight_grace: Duration,
    /// Report every order without an outcome as an error, however recent.
    pub strict: bool,
    /// Keep this user's ledger lines for the report.
    pub user: Option<UserId>,
    pub window: Window,
}

impl AuditOptions {
    pub fn new(now: DateTime<Utc>) -> AuditOptions {
        AuditOptions {
            now,
            in_flight_grace: Duration::hours(1),
            strict: false,
            user: None,
            window: Window::All,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The books do not balance.
    Error,
    /// Not (yet) wrong: an order still in flight. An error with `--strict`.
    InFlight,
}

/// One thing the audit found, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// When the event the finding is about occurred.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    pub detail: String,
}

/// One balance change of the user asked for with `--user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerLine {
    pub at: DateTime<Utc>,
    pub event: &'static str,
    pub delta_sun: i128,
    pub balance_after_sun: u64,
    pub order_id: Option<OrderId>,
    pub reference: Option<String>,
    /// The delegation's transaction hash, for a payment whose order completed.
    pub transaction_hash: Option<String>,
    pub position: Position,
    pub event_id: Uuid,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserBalance {
    pub user_id: String,
    /// The last recorded `balance_after`.
    pub balance_sun: u64,
    pub credits_sun: u128,
    pub deductions_sun: u128,
    pub refunds_sun: u128,
    pub ledger_entries: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub records: u64,
    pub events: u64,
    pub balance_events: u64,
    pub users: u64,
    pub orders: u64,
    pub paid_orders: u64,
    pub completed: u64,
    pub refunded: u64,
    pub in_flight: u64,
    pub credits_sun: u128,
    pub deductions_sun: u128,
    pub refunds_sun: u128,
    pub balances_sun: u128,
    /// Pool energy still reserved or delegated for orders that are still active.
    pub energy_held: u128,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub summary: Summary,
    pub findings: Vec<Finding>,
    /// Every user's books, sorted by user id (used to compare with the read models).
    #[serde(skip)]
    pub balances: Vec<(UserId, UserBalance)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<Vec<LedgerLine>>,
    /// The end offset of each partition the replay went up to.
    pub log_ends: Vec<u64>,
}

impl AuditReport {
    /// True when no finding is an error (with `strict`, in-flight orders count as errors).
    pub fn balanced(&self) -> bool {
        self.summary.errors == 0
    }
}

#[derive(Debug, Default)]
struct UserBooks {
    /// Balance computed from the amounts, checked against each `balance_after`.
    balance: i128,
    last_recorded: u64,
    credits: u128,
    deductions: u128,
    refunds: u128,
    entries: u64,
}

#[derive(Debug)]
struct OrderBooks {
    user: UserId,
    kind: OrderKind,
    price: u64,
    due: DateTime<Utc>,
    placed_at: (Position, DateTime<Utc>),
    debits: u32,
    debited: u64,
    debit_at: Option<(Position, Uuid, DateTime<Utc>)>,
    balance_refunds: u32,
    order_refunds: u32,
    completed: bool,
    transaction_hash: Option<TxId>,
    failed: bool,
    rental_ended: bool,
}

impl OrderBooks {
    fn finished(&self) -> bool {
        self.balance_refunds > 0
            || self.order_refunds > 0
            || self.rental_ended
            || (self.failed && self.debits == 0)
    }
}

#[derive(Debug, Default)]
struct PoolUse {
    reserved: u128,
    delegated: u128,
    released: u128,
    returned: u128,
    first: Option<(Position, DateTime<Utc>)>,
}

/// The state of the fold.
#[derive(Debug)]
pub struct Books {
    opts: AuditOptions,
    summary: Summary,
    users: HashMap<UserId, UserBooks>,
    orders: HashMap<OrderId, OrderBooks>,
    pool: HashMap<OrderId, PoolUse>,
    /// Which order each chain transaction completed or reclaimed: one transaction moves one
    /// order's energy, so a second order naming it was never served (or never reclaimed).
    transactions: HashMap<TxId, OrderId>,
    findings: Vec<Finding>,
    ledger: Vec<LedgerLine>,
}

struct Ctx<'a> {
    pos: Position,
    env: &'a Envelope,
    in_window: bool,
}

impl Books {
    pub fn new(opts: AuditOptions) -> Books {
        Books {
            opts,
            summary: Summary::default(),
            users: HashMap::new(),
            orders: HashMap::new(),
            pool: HashMap::new(),
            transactions: HashMap::new(),
            findings: Vec::new(),
            ledger: Vec::new(),
        }
    }

    /// A record that could not be decoded: the audit cannot vouch for anything in it.
    pub fn undecodable(&mut self, pos: Position, why: &str) {
        self.summary.records += 1;
        self.findings.push(Finding {
            code: "undecodable_record",
            severity: Severity::Error,
            user_id: None,
            order_id: None,
            position: Some(pos),
            at: None,
            event_id: None,
            detail: why.to_owned(),
        });
    }

    /// Folds one record. Records of one partition must come in offset order.
    pub fn apply(&mut self, pos: Position, record: &CommandRecord) {
        self.summary.records += 1;
        for env in &record.events {
            self.summary.events += 1;
            let ctx = Ctx {
                pos,
                env,
                in_window: self.opts.window.contains(pos, env.occurred_at),
            };
            self.apply_event(&ctx);
        }
    }

    fn claim_transaction(&mut self, ctx: &Ctx, tx: &TxId, order: OrderId) {
        let key = *tx;
        match self.transactions.get(&key) {
            Some(first) if *first != order => {
                let detail = format!("{tx} already counted for order {first}");
                self.finding(ctx, "transaction_shared_by_orders", None, detail);
            }
            Some(_) => {}
            None => {
                self.transactions.insert(key, order);
            }
        }
    }

    fn finding(&mut self, ctx: &Ctx, code: &'static str, user: Option<UserId>, detail: String) {
        if !ctx.in_window {
            return;
        }
        self.findings.push(Finding {
            code,
            severity: Severity::Error,
            user_id: user,
            order_id: ctx.env.event.order_id(),
            position: Some(ctx.pos),
            at: Some(ctx.env.occurred_at),
            event_id: Some(ctx.env.event_id),
            detail,
        });
    }

    /// The order's use of pool energy, noting where it started.
    fn pool_use(&mut self, ctx: &Ctx, order_id: OrderId) -> &mut PoolUse {
        let u = self.pool.entry(order_id).or_default();
        u.first.get_or_insert((ctx.pos, ctx.env.occurred_at));
        u
    }

    /// Energy delegated and released together may never exceed what was reserved.
    fn check_reservation(&mut self, ctx: &Ctx, order_id: OrderId, code: &'static str) {
        let u = &self.pool[&order_id];
        if u.delegated + u.released > u.reserved {
            let d = format!(
                "delegated+released {} > reserved {}",
                u.delegated + u.released,
                u.reserved
            );
            self.finding(ctx, code, None, d);
        }
    }

    fn apply_event(&mut self, ctx: &Ctx) {
        match &ctx.env.event {
            Event::BalanceCredited {
                user_id,
                amount,
                reference,
                balance_after,
            } => {
                self.balance_change(
                    ctx,
                    *user_id,
                    i128::from(amount.as_sun()),
                    balance_after.as_sun(),
                    Some(reference.clone()),
                );
                self.users.entry(*user_id).or_default().credits += u128::from(amount.as_sun());
            }
            Event::BalanceDebited {
                user_id,
                order_id,
                amount,
                balance_after,
            } => {
                let amount = amount.as_sun();
                self.balance_change(
                    ctx,
                    *user_id,
                    -i128::from(amount),
                    balance_after.as_sun(),
                    None,
                );
                self.users.entry(*user_id).or_default().deductions += u128::from(amount);
                let problem = match self.orders.get_mut(order_id) {
                    None => Some(("deduction_without_order", "no OrderPlaced before it".into())),
                    Some(o) => {
                        o.debits += 1;
                        o.debited += amount;
                        o.debit_at
                            .get_or_insert((ctx.pos, ctx.env.event_id, ctx.env.occurred_at));
                        if o.debits > 1 {
                            Some(("double_deduction", format!("deduction #{}", o.debits)))
                        } else if o.user != *user_id {
                            Some(("deduction_from_other_user", format!("order of {}", o.user)))
                        } else if o.kind == OrderKind::Manual {
                            Some(("deduction_for_manual_order", String::new()))
                        } else if o.price != amount {
                            Some((
                                "deduction_amount_mismatch",
                                format!("deducted {amount} SUN, price {} SUN", o.price),
                            ))
                        } else {
                            None
                        }
                    }
                };
                if let Some((code, detail)) = problem {
                    self.finding(ctx, code, Some(*user_id), detail);
                }
            }
            Event::BalanceRefunded {
                user_id,
                order_id,
                amount,
                balance_after,
            } => {
                let amount = amount.as_sun();
                self.balance_change(
                    ctx,
                    *user_id,
                    i128::from(amount),
                    balance_after.as_sun(),
                    None,
                );
                self.users.entry(*user_id).or_default().refunds += u128::from(amount);
                let problem = match self.orders.get_mut(order_id) {
                    None => Some(("refund_without_order", String::new())),
                    Some(o) => {
                        o.balance_refunds += 1;
                        if o.balance_refunds > 1 {
                            Some(("double_refund", format!("refund #{}", o.balance_refunds)))
                        } else if o.debits == 0 {
                            Some(("refund_without_deduction", String::new()))
                        } else if o.completed {
                            Some(("refund_of_completed_order", String::new()))
                        } else if o.debited != amount {
                            Some((
                                "refund_amount_mismatch",
                                format!("refunded {amount} SUN, deducted {} SUN", o.debited),
                            ))
                        } else {
                            None
                        }
                    }
                };
                if let Some((code, detail)) = problem {
                    self.finding(ctx, code, Some(*user_id), detail);
                }
            }
            Event::OrderPlaced {
                order_id,
                user_id,
                kind,
                price,
                estimated_completion,
                ..
            } => {
                if self.orders.contains_key(order_id) {
                    self.finding(ctx, "order_placed_twice", Some(*user_id), String::new());
                    return;
                }
                self.orders.insert(
                    *order_id,
                    OrderBooks {
                        user: *user_id,
                        kind: *kind,
                        price: price.as_sun(),
                        due: *estimated_completion,
                        placed_at: (ctx.pos, ctx.env.occurred_at),
                        debits: 0,
                        debited: 0,
                        debit_at: None,
                        balance_refunds: 0,
                        order_refunds: 0,
                        completed: false,
                        transaction_hash: None,
                        failed: false,
                        rental_ended: false,
                    },
                );
            }
            Event::OrderCompleted {
                order_id,
                transaction_hash,
                ..
            } => {
                let problem = match self.orders.get_mut(order_id) {
                    None => Some(("outcome_without_order", String::new())),
                    Some(o) => {
                        let was = o.completed;
                        o.completed = true;
                        o.transaction_hash = Some(*transaction_hash);
                        if o.balance_refunds > 0 || o.order_refunds > 0 {
                            Some((
                                "refund_of_completed_order",
                                "completed after a refund".into(),
                            ))
                        } else if was {
                            Some(("completed_twice", String::new()))
                        } else {
                            None
                        }
                    }
                };
                if let Some((code, detail)) = problem {
                    self.finding(ctx, code, None, detail);
                }
                self.claim_transaction(ctx, transaction_hash, *order_id);
            }
            Event::OrderFailed { order_id, .. } => {
                if let Some(o) = self.orders.get_mut(order_id) {
                    o.failed = true;
                } else {
                    self.finding(ctx, "outcome_without_order", None, String::new());
                }
            }
            Event::OrderRefunded { order_id, .. } => {
                let problem = match self.orders.get_mut(order_id) {
                    None => Some("outcome_without_order"),
                    Some(o) => {
                        o.order_refunds += 1;
                        if o.order_refunds > 1 {
                            Some("double_refund")
                        } else if o.completed {
                            Some("refund_of_completed_order")
                        } else {
                            None
                        }
                    }
                };
                if let Some(code) = problem {
                    self.finding(ctx, code, None, "OrderRefunded".into());
                }
            }
            Event::RentalEnded {
                order_id,
                reclaim_transaction_hash,
                ..
            } => {
                if let Some(o) = self.orders.get_mut(order_id) {
                    o.rental_ended = true;
                }
                self.claim_transaction(ctx, reclaim_transaction_hash, *order_id);
            }
            Event::EnergyReserved {
                order_id, energy, ..
            } => {
                self.pool_use(ctx, *order_id).reserved += u128::from(energy.get());
            }
            Event::ReservedEnergyDelegated {
                order_id, energy, ..
            } => {
                self.pool_use(ctx, *order_id).delegated += u128::from(energy.get());
                self.check_reservation(ctx, *order_id, "energy_delegated_beyond_reservation");
            }
            Event::ReservationReleased {
                order_id, energy, ..
            } => {
                self.pool_use(ctx, *order_id).released += u128::from(energy.get());
                self.check_reservation(ctx, *order_id, "energy_released_beyond_reservation");
            }
            Event::DelegatedEnergyReturned {
                order_id, energy, ..
            } => {
                let u = self.pool_use(ctx, *order_id);
                u.returned += u128::from(energy.get());
                if u.returned > u.delegated {
                    let d = format!("returned {} > delegated {}", u.returned, u.delegated);
                    self.finding(ctx, "energy_returned_beyond_delegation", None, d);
                }
            }
            Event::WalletAdded { .. }
            | Event::OrderProcessing { .. }
            | Event::DelegationSigned { .. }
            | Event::DelegationExpired { .. }
            | Event::ReclaimSigned { .. }
            | Event::ReclaimExpired { .. }
            | Event::SupplierWalletRegistered { .. }
            | Event::SupplierCapacityObserved { .. }
            | Event::EnergyReservationRejected { .. }
            // Who may call the API moves no money.
            | Event::ApiKeyCreated { .. }
            | Event::ApiKeyRevoked { .. }
            | Event::ApiKeysUsed { .. } => {}
        }
    }

    fn balance_change(
        &mut self,
        ctx: &Ctx,
        user: UserId,
        delta: i128,
        recorded_after: u64,
        reference: Option<String>,
    ) {
        self.summary.balance_events += 1;
        let books = self.users.entry(user).or_default();
        let computed = books.balance + delta;
        books.entries += 1;
        books.last_recorded = recorded_after;
        // Carry on from what was recorded, so one bad event is one finding, not a cascade;
        // the end-of-log sum check still catches a tampered amount.
        books.balance = i128::from(recorded_after);
        if computed < 0 {
            self.finding(
                ctx,
                "negative_balance",
                Some(user),
                format!("balance would be {computed} SUN"),
            );
        } else if computed != i128::from(recorded_after) {
            self.finding(
                ctx,
                "balance_after_mismatch",
                Some(user),
                format!("recorded {recorded_after} SUN, previous balance + delta = {computed} SUN"),
            );
        }
        if self.opts.user == Some(user) && ctx.in_window {
            self.ledger.push(LedgerLine {
                at: ctx.env.occurred_at,
                event: ctx.env.event.event_type(),
                delta_sun: delta,
                balance_after_sun: recorded_after,
                order_id: ctx.env.event.order_id(),
                reference,
                transaction_hash: None,
                position: ctx.pos,
                event_id: ctx.env.event_id,
            });
        }
    }

    /// The end-of-log checks, and the report.
    pub fn finish(mut self) -> AuditReport {
        let mut end_findings = Vec::new();
        let mut s = std::mem::take(&mut self.summary);
        s.users = self.users.len() as u64;
        s.orders = self.orders.len() as u64;

        let mut balances: Vec<(UserId, UserBalance)> = Vec::with_capacity(self.users.len());
        for (user, b) in &self.users {
            s.credits_sun += b.credits;
            s.deductions_sun += b.deductions;
            s.refunds_sun += b.refunds;
            s.balances_sun += u128::from(b.last_recorded);
            let sum = b.credits as i128 - b.deductions as i128 + b.refunds as i128;
            if sum != i128::from(b.last_recorded) {
                end_findings.push(Finding {
                    code: "books_do_not_balance",
                    severity: Severity::Error,
                    user_id: Some(*user),
                    order_id: None,
                    position: None,
                    at: None,
                    event_id: None,
                    detail: format!(
                        "credits {} − deductions {} + refunds {} = {sum} SUN, balance {} SUN",
                        b.credits, b.deductions, b.refunds, b.last_recorded
                    ),
                });
            }
            balances.push((
                *user,
                UserBalance {
                    user_id: user.to_string(),
                    balance_sun: b.last_recorded,
                    credits_sun: b.credits,
                    deductions_sun: b.deductions,
                    refunds_sun: b.refunds,
                    ledger_entries: b.entries,
                },
            ));
        }
        balances.sort_by_key(|(u, _)| *u);

        let deadline = self.opts.now - self.opts.in_flight_grace;
        for (id, o) in &self.orders {
            if o.debits > 0 {
                s.paid_orders += 1;
            }
            if o.completed && o.balance_refunds == 0 {
                s.completed += 1;
            }
            if o.balance_refunds > 0 {
                s.refunded += 1;
            }
            if o.order_refunds != o.balance_refunds && o.debits > 0 {
                end_findings.push(Finding {
                    code: "refund_records_disagree",
                    severity: Severity::Error,
                    user_id: Some(o.user),
                    order_id: Some(*id),
                    position: Some(o.placed_at.0),
                    at: Some(o.placed_at.1),
                    event_id: None,
                    detail: format!(
                        "{} OrderRefunded, {} BalanceRefunded",
                        o.order_refunds, o.balance_refunds
                    ),
                });
            }
            let outcome = o.completed || o.balance_refunds > 0;
            if o.debits > 0 && !outcome {
                s.in_flight += 1;
                let overdue = o.due < deadline;
                let (code, severity) = if overdue {
                    ("deduction_without_outcome", Severity::Error)
                } else if self.opts.strict {
                    ("order_in_flight", Severity::Error)
                } else {
                    ("order_in_flight", Severity::InFlight)
                };
                let (position, event_id, at) = o
                    .debit_at
                    .map_or((None, None, None), |(p, e, t)| (Some(p), Some(e), Some(t)));
                end_findings.push(Finding {
                    code,
                    severity,
                    user_id: Some(o.user),
                    order_id: Some(*id),
                    position,
                    at,
                    event_id,
                    detail: format!(
                        "paid {} SUN, {}, due {}",
                        o.debited,
                        if o.failed {
                            "failed, not refunded"
                        } else {
                            "no outcome"
                        },
                        o.due.to_rfc3339()
                    ),
                });
            }
        }

        for (id, u) in &self.pool {
            let active = self.orders.get(id).is_some_and(|o| !o.finished());
            let unaccounted = u.reserved.saturating_sub(u.delegated + u.released);
            let unreturned = u.delegated.saturating_sub(u.returned);
            if active {
                s.energy_held += unaccounted + unreturned;
                continue;
            }
            let ended = self.orders.get(id).is_some_and(|o| o.rental_ended);
            let problem = if unaccounted > 0 {
                Some((
                    "reserved_energy_unaccounted",
                    format!(
                        "{unaccounted} of {} reserved energy neither delegated nor released",
                        u.reserved
                    ),
                ))
            } else if ended && unreturned > 0 {
                Some((
                    "delegated_energy_not_returned",
                    format!("{unreturned} delegated energy not returned after the rental ended"),
                ))
            } else {
                None
            };
            if let Some((code, detail)) = problem {
                end_findings.push(Finding {
                    code,
                    severity: Severity::Error,
                    user_id: self.orders.get(id).map(|o| o.user),
                    order_id: Some(*id),
                    position: u.first.map(|f| f.0),
                    at: u.first.map(|f| f.1),
                    event_id: None,
                    detail,
                });
            }
        }

        end_findings.sort_by(|a, b| (a.position, a.code).cmp(&(b.position, b.code)));
        let mut findings = std::mem::take(&mut self.findings);
        findings.extend(end_findings.into_iter().filter(|f| {
            // End-of-log findings tied to an event outside the window are not shown.
            match self.opts.window {
                Window::All => true,
                Window::FromOffset(o) => f.position.is_none_or(|p| p.offset >= o),
                Window::Since(t) => f.at.is_none_or(|at| at >= t),
            }
        }));
        s.errors = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count() as u64;

        let ledger = self.opts.user.map(|_| {
            let mut lines = std::mem::take(&mut self.ledger);
            for l in &mut lines {
                if l.event == "BalanceDebited" {
                    l.transaction_hash = l
                        .order_id
                        .and_then(|id| self.orders.get(&id))
                        .and_then(|o| o.transaction_hash.map(|t| t.to_string()));
                }
            }
            lines
        });
        AuditReport {
            summary: s,
            findings,
            balances,
            ledger,
            log_ends: Vec::new(),
        }
    }
}
