//! The HTTP API. This file is the whole route table; each resource's handlers live in
//! `routes/`. Requests are parsed into domain values at the edge (`extract`), commands go
//! to the engine, and reads come from the sled read models.

pub mod access;
pub mod error;
pub mod extract;
pub mod guard;
pub mod openapi;
pub mod routes;
pub mod track;

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
    /// `callback_url`s may name loopback, private or link-local targets (tests only).
    pub allow_private_callbacks: bool,
    pub chain: Arc<dyn Chain>,
    pub ready: Arc<AtomicBool>,
    pub saga: crate::saga::Saga,
    /// The reactors' fan-out, for what `/metrics` tells of it.
    pub reactors: flashrent_projections::ReactorSink,
    /// Where this instance takes requests (what its claims on a shared log name).
    pub instance_url: String,
    /// Whether other instances write partitions of this log (Kafka): only then can a command
    /// land on an instance that does not write its partition.
    pub shared_log: bool,
    /// How long a client may take to send a request body.
    pub client_timeout: std::time::Duration,
    /// Whether any API key was ever issued (then client routes need a key).
    pub keys_issued: access::KeysIssued,
    /// Issued keys let in since their use was last recorded.
    pub key_usage: access::KeyUsage,
    pub order_limits: access::OrderLimits,
}

pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    use routes::*;
    use web::{delete, get, post, scope};
    // One resource per path, the hot order routes first: actix tries dynamic paths in order,
    // each a regex match.
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .service(resource("/api/orders/{order_id}").route(get().to(orders::get)))
        .service(resource("/api/orders").route(post().to(orders::create)))
        .service(
            scope("/api/users/{user_id}")
                .service(resource("/balance").route(get().to(balance::get)))
                .service(resource("/ledger").route(get().to(balance::ledger)))
                .service(resource("/orders").route(get().to(orders::list_for_user)))
                .service(resource("/deduct").route(post().to(orders::deduct))),
        )
        .service(
            resource("/api/wallets/users/{user_id}")
                .route(get().to(wallets::list))
                .route(post().to(wallets::add)),
        )
        .service(resource("/api/quote").route(get().to(pool::quote)))
        .service(resource("/api/openapi.json").route(get().to(openapi::openapi_json)))
        .service(
            scope("/api/wallet-pool")
                .service(resource("/check-availability").route(post().to(pool::check_availability)))
                .service(resource("/delegate-energy").route(post().to(pool::delegate_energy))),
        )
        .service(
            scope("/api/admin")
                .service(resource("/users/{user_id}/credit").route(post().to(admin::credit)))
                .service(
                    resource("/wallet-pool/wallets")
                        .route(post().to(admin::register_supplier))
                        .route(get().to(admin::list_suppliers)),
                )
                .service(
                    resource("/api-keys")
                        .route(post().to(keys::issue))
                        .route(get().to(keys::list)),
                )
                .service(resource("/api-keys/{key_id}").route(delete().to(keys::revoke)))
                .service(resource("/partitions").route(get().to(cluster::partitions))),
        )
        .service(resource("/healthz").route(get().to(health::healthz)))
        .service(resource("/readyz").route(get().to(health::readyz)))
        .service(resource("/metrics").route(get().to(ops::metrics)))
        // Between instances only (`cluster::remote`); not part of the public API.
        .service(resource(crate::cluster::remote::PATH).route(post().to(cluster::command)))
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::from_status(
                actix_web::http::StatusCode::NOT_FOUND,
                "",
            ))
        }));
}

/// The one middleware every request passes: latency metrics around localized errors around
/// the body guard, composed as plain async functions in this order (one layer for actix to
/// call). Each resource of the route table catches its handlers' panics
/// (see [`resource`]).
pub async fn edge(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    track::track(req, |req| {
        localize(req, |req| guard::body(req, |req| next.call(req)))
    })
    .await
}

/// A resource of the route table whose handlers' panics are answered with a 500 in our shape
/// ([`guard::catch_panics`]). The catch sits on each resource, after routing, rather than
/// around the whole app: answering needs the request, and actix routes a request only while
/// nothing else holds it.
fn resource(
    path: &str,
) -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource(path).wrap(actix_web::middleware::from_fn(guard::answer_panics))
}

/// Renders every error in our shape and the client's language. Errors raised by actix
/// itself (oversized body, bad method) are rewritten into the same shape.
pub async fn localize<F>(
    req: ServiceRequest,
    next: impl FnOnce(ServiceRequest) -> F,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error>
where
    F: std::future::Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>>,
{
    let english = req
        .headers()
        .get(actix_web::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("en"));
    // Every log line of the request carries these; handlers fill in the ids they parse.
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.path(),
        user_id = tracing::field::Empty,
        order_id = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let res = match tracing::Instrument::instrument(next(req), span.clone()).await {
        Ok(res) => res,
        Err(e) => return Err(e),
    };
    tracing::debug!(parent: &span, status = res.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request done");
    let rewritten: Option<HttpResponse> = match res.response().error() {
        Some(err) => match err.as_error::<ApiError>() {
            Some(api) if english => Some(api.response(true)),
            Some(_) => None,
            None => Some(ApiError::from_status(res.status(), &err.to_string()).response(english)),
        },
        // A resource answers a method it does not take with a bare 405 and its `Allow`.
        None if res.status() == actix_web::http::StatusCode::METHOD_NOT_ALLOWED => {
            let mut r = ApiError::from_status(res.status(), "").response(english);
            if let Some(allow) = res.headers().get(actix_web::http::header::ALLOW) {
                r.headers_mut()
                    .insert(actix_web::http::header::ALLOW, allow.clone());
            }
            Some(r)
        }
        None => None,
    };
    Ok(match rewritten {
        Some(r) => res.into_response(r),
        None => res.map_into_boxed_body(),
    })
}
