//! The HTTP API. This file is the whole route table; each resource's handlers live in
//! `routes/`. Requests are parsed into domain values at the edge (`extract`), commands go
//! to the engine, and reads come from the sled read models.

pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;

use crate::chain::Chain;
use crate::config::Secret;
use crate::domain::pricing::PriceTable;
use crate::engine::Engine;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use error::ApiError;
use flashrent_projections::ReadModels;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub struct AppState {
    pub engine: Engine,
    pub models: ReadModels,
    pub prices: PriceTable,
    pub admin_token: Secret,
    pub api_keys: Vec<Secret>,
    pub chain: Arc<dyn Chain>,
    pub ready: Arc<AtomicBool>,
    pub saga: crate::saga::Saga,
}

pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    use routes::*;
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(crate::metrics::render))
        .service(
            web::scope("/api")
                .route("/openapi.json", web::get().to(openapi::openapi_json))
                .route("/wallets/users/{user_id}", web::get().to(wallets::list))
                .route("/wallets/users/{user_id}", web::post().to(wallets::add))
                .route("/users/{user_id}/balance", web::get().to(balance::get))
                .route("/users/{user_id}/ledger", web::get().to(balance::ledger))
                .route(
                    "/users/{user_id}/orders",
                    web::get().to(orders::list_for_user),
                )
                .route("/users/{user_id}/deduct", web::post().to(orders::deduct))
                .route("/orders", web::post().to(orders::create))
                .route("/orders/{order_id}", web::get().to(orders::get))
                .route("/quote", web::get().to(pool::quote))
                .route(
                    "/wallet-pool/check-availability",
                    web::post().to(pool::check_availability),
                )
                .route(
                    "/wallet-pool/delegate-energy",
                    web::post().to(pool::delegate_energy),
                )
                .route(
                    "/admin/users/{user_id}/credit",
                    web::post().to(admin::credit),
                )
                .route(
                    "/admin/wallet-pool/wallets",
                    web::post().to(admin::register_supplier),
                )
                .route(
                    "/admin/wallet-pool/wallets",
                    web::get().to(admin::list_suppliers),
                ),
        )
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::from_status(
                actix_web::http::StatusCode::NOT_FOUND,
                "",
            ))
        }));
}

/// Renders every error in our shape and the client's language. Errors raised by actix
/// itself (oversized body, bad method) are rewritten into the same shape.
pub async fn localize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let english = req
        .headers()
        .get(actix_web::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("en"));
    let res = match next.call(req).await {
        Ok(res) => res,
        Err(e) => return Err(e),
    };
    let rewritten: Option<HttpResponse> = match res.response().error() {
        Some(err) => match err.as_error::<ApiError>() {
            Some(api) if english => Some(api.response(true)),
            Some(_) => None,
            None => Some(ApiError::from_status(res.status(), &err.to_string()).response(english)),
        },
        None => None,
    };
    Ok(match rewritten {
        Some(r) => res.into_response(r),
        None => res.map_into_boxed_body(),
    })
}
