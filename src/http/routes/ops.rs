//! `GET /metrics`: the process's metrics in the Prometheus text format, with what is read at
//! scrape time (orders by status, projector lag, the saga's work, reactors' dropped records).

use crate::http::AppState;
use crate::metrics::METRICS;
use actix_web::{web, HttpResponse};

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &*METRICS;
    if let Ok(counts) = state.models.status_counts() {
        m.set_status_counts(counts);
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
    for (reactor, dropped) in state.reactors.dropped() {
        m.reactor_dropped
            .with_label_values(&[reactor])
            .set(dropped as i64);
    }
    match m.text() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            HttpResponse::InternalServerError().finish()
        }
    }
}
