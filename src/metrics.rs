//! Operations telemetry: the process's Prometheus registry and what fills it.
//!
//! Three sources: the HTTP layer times every request by route (`http::track`); an observer,
//! a reactor fed by the projection, counts order outcomes and chain confirmations (it keeps
//! only in-memory counters, like any Prometheus counter they restart from zero); the rest
//! (orders by status, projector lag, saga work in flight) is read when `GET /metrics` is
//! scraped (`http::routes::ops`).

use chrono::{DateTime, Utc};
use flashrent_events::{Event, FailureReason, OrderId, OrderStatus};
use flashrent_projections::{ProjectedRecord, Reactor};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::LazyLock;

pub struct Metrics {
    pub registry: Registry,
    pub http_duration: HistogramVec,
    pub orders: IntGaugeVec,
    pub order_outcomes: IntCounterVec,
    pub delegations: IntCounterVec,
    pub confirmation: prometheus::Histogram,
    pub projector_lag: IntGaugeVec,
    pub saga_in_flight: IntGauge,
    pub reclaims_refused: IntGauge,
    pub energy_rate_refused: IntCounter,
    pub observed_events: IntCounter,
    /// Records a lossy reactor had no room for, per reactor (set at scrape time).
    pub reactor_dropped: IntGaugeVec,
    pub success_ratio: prometheus::Gauge,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new_custom(Some("flashrent".into()), None)?;
    let http_duration = HistogramVec::new(
        HistogramOpts::new(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route pattern, method and status",
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]),
        &["method", "route", "status"],
    )?;
    let orders = IntGaugeVec::new(
        Opts::new("orders", "Orders by current status (read models)"),
        &["status"],
    )?;
    let order_outcomes = IntCounterVec::new(
        Opts::new(
            "order_outcomes_total",
            "Orders that reached an outcome since this process started: completed, failed, refunded",
        ),
        &["outcome"],
    )?;
    let delegations = IntCounterVec::new(
        Opts::new(
            "chain_delegations_total",
            "Delegation transactions by outcome: confirmed, expired (not landed), failed",
        ),
        &["outcome"],
    )?;
    let confirmation = prometheus::Histogram::with_opts(
        HistogramOpts::new(
            "chain_confirmation_seconds",
            "Time from a delegation's broadcast to the order's completion",
        )
        .buckets(vec![
            0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ]),
    )?;
    let projector_lag = IntGaugeVec::new(
        Opts::new(
            "projector_lag_records",
            "Records in the log not yet applied to the read models, per partition",
        ),
        &["partition"],
    )?;
    let saga_in_flight = IntGauge::new("saga_in_flight", "Orders the saga is working on now")?;
    let reclaims_refused = IntGauge::new(
        "saga_reclaims_refused",
        "Ended rentals whose reclaim the chain refuses for now (the supplier's energy is still out)",
    )?;
    let energy_rate_refused = IntCounter::new(
        "chain_energy_rate_refused_total",
        "Readings of the chain's energy totals refused for changing the SUN-per-energy rate beyond --tron-max-rate-change (nothing is signed with them)",
    )?;
    let success_ratio = prometheus::Gauge::new(
        "order_success_ratio",
        "Completed orders over all orders that reached an outcome (completed, failed, refunded), all time",
    )?;
    let observed_events = IntCounter::new(
        "metrics_observed_events_total",
        "Events the metrics observer has read from the log",
    )?;
    let reactor_dropped = IntGaugeVec::new(
        Opts::new(
            "reactor_dropped_records",
            "Records a reactor that may lag (the metrics observer) had no room for, since this process started",
        ),
        &["reactor"],
    )?;
    registry.register(Box::new(http_duration.clone()))?;
    registry.register(Box::new(reactor_dropped.clone()))?;
    registry.register(Box::new(orders.clone()))?;
    registry.register(Box::new(order_outcomes.clone()))?;
    registry.register(Box::new(delegations.clone()))?;
    registry.register(Box::new(confirmation.clone()))?;
    registry.register(Box::new(projector_lag.clone()))?;
    registry.register(Box::new(saga_in_flight.clone()))?;
    registry.register(Box::new(reclaims_refused.clone()))?;
    registry.register(Box::new(energy_rate_refused.clone()))?;
    registry.register(Box::new(observed_events.clone()))?;
    registry.register(Box::new(success_ratio.clone()))?;
    for o in ["completed", "failed", "refunded"] {
        order_outcomes.with_label_values(&[o]);
    }
    for o in ["confirmed", "expired", "failed"] {
        delegations.with_label_values(&[o]);
    }
    Ok(Metrics {
        registry,
        http_duration,
        orders,
        order_outcomes,
        delegations,
        confirmation,
        projector_lag,
        saga_in_flight,
        reclaims_refused,
        energy_rate_refused,
        observed_events,
        reactor_dropped,
        success_ratio,
    })
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| build().expect("metric names and labels are valid"));

impl Metrics {
    /// Sets the orders-by-status gauges and the success ratio from the read models' counts.
    pub fn set_status_counts(&self, counts: impl IntoIterator<Item = (OrderStatus, u64)>) {
        let (mut completed, mut ended) = (0u64, 0u64);
        for (status, n) in counts {
            self.orders
                .with_label_values(&[status.as_str()])
                .set(n as i64);
            match status {
                OrderStatus::Completed => {
                    completed += n;
                    ended += n;
                }
                OrderStatus::Failed | OrderStatus::Refunded => ended += n,
                _ => {}
            }
        }
        self.success_ratio.set(if ended == 0 {
            1.0
        } else {
            completed as f64 / ended as f64
        });
    }

    /// Everything registered, in the Prometheus text format.
    pub fn text(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(buf)
    }
}

/// What the observer folds: broadcasts waiting for their outcome.
#[derive(Default)]
pub struct Observer {
    broadcast_at: HashMap<OrderId, DateTime<Utc>>,
}

impl Observer {
    /// Counts one event. Pure apart from the (in-memory) metrics it updates.
    pub fn observe(&mut self, m: &Metrics, event: &Event, at: DateTime<Utc>) {
        m.observed_events.inc();
        match event {
            // Signed, recorded and then at once broadcast (broadcasts are not recorded).
            Event::DelegationSigned { order_id, .. } => {
                self.broadcast_at.insert(*order_id, at);
            }
            Event::OrderCompleted {
                order_id,
                completed_at,
                ..
            } => {
                m.order_outcomes.with_label_values(&["completed"]).inc();
                m.delegations.with_label_values(&["confirmed"]).inc();
                if let Some(b) = self.broadcast_at.remove(order_id) {
                    let secs = (*completed_at - b).num_milliseconds().max(0) as f64 / 1000.0;
                    m.confirmation.observe(secs);
                }
            }
            Event::DelegationExpired { order_id, .. } => {
                m.delegations.with_label_values(&["expired"]).inc();
                self.broadcast_at.remove(order_id);
            }
            Event::OrderFailed {
                order_id, reason, ..
            } => {
                m.order_outcomes.with_label_values(&["failed"]).inc();
                if *reason != FailureReason::InsufficientPoolEnergy {
                    m.delegations.with_label_values(&["failed"]).inc();
                }
                self.broadcast_at.remove(order_id);
            }
            Event::OrderRefunded { .. } => {
                m.order_outcomes.with_label_values(&["refunded"]).inc();
            }
            _ => {}
        }
    }
}

/// The metrics observer is a reactor beside the saga, with a queue of its own that drops
/// what it has no room for ([`flashrent_projections::Delivery::Lossy`]): counters that lag
/// never hold up fulfilment. The records come from the projectors and the writers' own
/// applies, so each is counted once, and a fenced writer's are not counted at all.
impl Reactor for Observer {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn react(&mut self, record: &ProjectedRecord) {
        for env in &record.record.events {
            self.observe(&METRICS, &env.event, env.occurred_at);
        }
    }
}
