pub mod admin;
pub mod balance;
pub mod cluster;
pub mod health;
pub mod keys;
pub mod ops;
pub mod orders;
pub mod pool;
pub mod wallets;

use super::error::ApiError;
use crate::engine::CommandMeta;
use actix_web::HttpRequest;
use uuid::Uuid;

/// The request's correlation id: the client's `X-Request-Id` if it is a UUID, else a new one.
pub fn meta(req: &HttpRequest) -> CommandMeta {
    let correlation = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok())
        .unwrap_or_else(Uuid::now_v7);
    CommandMeta::new(correlation)
}

pub type Reply = Result<actix_web::HttpResponse, ApiError>;
