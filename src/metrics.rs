//! Operations telemetry: `GET /metrics` in the Prometheus text format.
//!
//! Three sources: a middleware times every request by route; an observer follows the log
//! from where it stood at startup and counts order outcomes and chain confirmations (it
//! keeps only in-memory counters, like any Prometheus counter they restart from zero);
//! the rest (orders by status, projector lag, saga work in flight) is read at scrape time.

use crate::http::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use flashrent_events::{Event, FailureReason, OrderId, OrderStatus};
use flashrent_projections::ProjectedRecord;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::LazyLock;
use std::time::Instant;
use tokio::sync::mpsc;

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
    registry.register(Box::new(http_duration.clone()))?;
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
        success_ratio,
    })
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| build().expect("metric names and labels are valid"));

/// Middleware: observes every request's latency under its route pattern (never the raw
/// path, so ids do not explode the label set).
pub async fn track<B: MessageBody, F>(
    req: ServiceRequest,
    next: impl FnOnce(ServiceRequest) -> F,
) -> Result<ServiceResponse<B>, actix_web::Error>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    let started = Instant::now();
    let method = method_label(req.method());
    let res = next(req).await;
    // Asked after routing: the router then names the resource it matched. Asked before,
    // actix matches the path against every route's regex a second time.
    let (route, status) = match &res {
        Ok(r) => (r.request().match_pattern(), r.status()),
        Err(e) => (None, e.as_response_error().status_code()),
    };
    METRICS
        .http_duration
        .with_label_values(&[
            method,
            route.as_deref().unwrap_or("unmatched"),
            status.as_str(),
        ])
        .observe(started.elapsed().as_secs_f64());
    res
}

/// The method as a label: the standard ones by name, any other as `other`, so invented
/// methods cannot grow the label set without bound.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("other", |(_, name)| name)
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    let m = &*METRICS;
    if let Ok(counts) = state.models.status_counts() {
        let (mut completed, mut ended) = (0u64, 0u64);
        for (status, n) in counts {
            m.orders.with_label_values(&[status.as_str()]).set(n as i64);
            match status {
                OrderStatus::Completed => {
                    completed += n;
                    ended += n;
                }
                OrderStatus::Failed | OrderStatus::Refunded => ended += n,
                _ => {}
            }
        }
        m.success_ratio.set(if ended == 0 {
            1.0
        } else {
            completed as f64 / ended as f64
        });
    }
    let log = state.engine.log();
    for p in 0..log.partition_count() {
        let end = log.end_offset(p).await.unwrap_or(0);
        let applied = state.models.applied(p);
        m.projector_lag
            .with_label_values(&[&p.to_string()])
            .set(end.saturating_sub(applied) as i64);
    }
    m.saga_in_flight.set(state.saga.in_flight() as i64);
    m.reclaims_refused.set(state.saga.reclaims_refused() as i64);
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut buf) {
        tracing::error!(error = %e, "cannot encode the metrics");
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(buf)
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

/// Counts the events of every record the read models apply, then passes the record on to
/// `next` (the saga). The records come from the projectors and the writers' own applies, so
/// each is counted once, and a fenced writer's are not counted at all.
pub fn spawn_observer(
    mut records: mpsc::Receiver<ProjectedRecord>,
    next: mpsc::Sender<ProjectedRecord>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut observer = Observer::default();
        while let Some(r) = records.recv().await {
            for env in &r.record.events {
                observer.observe(&METRICS, &env.event, env.occurred_at);
            }
            if next.send(r).await.is_err() {
                return;
            }
        }
    })
}
