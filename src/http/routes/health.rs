use crate::http::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;
use std::sync::atomic::Ordering;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The process is up", body = crate::http::openapi::Healthy),
    ),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready once the read models have caught up with the log at startup.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Read models caught up; saga_in_flight tells the saga's work", body = crate::http::openapi::Ready),
        (status = 503, description = "not_ready"),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.ready.load(Ordering::Acquire) {
        HttpResponse::Ok()
            .json(json!({"status": "ready", "saga_in_flight": state.saga.in_flight()}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"error": "not_ready", "message": "read models are catching up"}))
    }
}
