//! Balances and their ledger (seed §2.1).

use super::Reply;
use crate::http::error::trx_json;
use crate::http::extract::{self, Client};
use crate::http::AppState;
use actix_web::{web, HttpResponse};
use flashrent_events::Sun;
use serde::Deserialize;
use serde_json::json;

#[utoipa::path(
    get,
    path = "/api/users/{user_id}/balance",
    tag = "balances",
    params(("user_id" = String, Path, description = "A user id: a positive decimal number")),
    security((), ("api_key" = [])),
    responses(
        (status = 200, body = crate::http::openapi::Balance),
        (status = 400, description = "Malformed input (invalid_json, invalid_field, invalid_* codes)", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "unauthorized: missing or wrong admin token / API key", body = crate::http::openapi::ErrorBody),
        (status = 403, description = "forbidden_user: a user's API key used for another user", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn get(client: Client, state: web::Data<AppState>, path: web::Path<String>) -> Reply {
    let user = extract::user_id(&path)?;
    client.acts_for(user)?;
    let view = state.models.balance(user)?;
    let balance = view.as_ref().map_or(Sun::ZERO, |v| v.balance);
    Ok(HttpResponse::Ok().json(json!({
        "user_id": user.get(),
        "balance_trx": trx_json(balance, 6),
        "balance_sun": balance.as_sun(),
        "last_updated": view.map(|v| v.last_updated),
    })))
}

#[derive(Deserialize)]
pub struct LedgerQuery {
    from: Option<u64>,
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/users/{user_id}/ledger",
    tag = "balances",
    params(("user_id" = String, Path, description = "A user id: a positive decimal number"), ("from" = Option<u64>, Query, description = "First entry (seq), default 1"), ("limit" = Option<usize>, Query, description = "1..500, default 50")),
    security((), ("api_key" = [])),
    responses(
        (status = 200, body = crate::http::openapi::Ledger),
        (status = 400, description = "Malformed input (invalid_json, invalid_field, invalid_* codes)", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "unauthorized: missing or wrong admin token / API key", body = crate::http::openapi::ErrorBody),
        (status = 403, description = "forbidden_user: a user's API key used for another user", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn ledger(
    client: Client,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<LedgerQuery>,
) -> Reply {
    let user = extract::user_id(&path)?;
    client.acts_for(user)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let entries = state
        .models
        .ledger(user, q.from.unwrap_or(1).max(1), limit)?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq + 1))
        .flatten();
    let rendered: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq,
                "at": e.at,
                "delta_sun": e.delta,
                "delta_trx": serde_json::from_str::<serde_json::Value>(&format!("{}{}", if e.delta < 0 { "-" } else { "" }, Sun::from_sun(e.delta.unsigned_abs()).trx_text(0))).unwrap_or_default(),
                "balance_after_trx": trx_json(e.balance_after, 6),
                "balance_after_sun": e.balance_after.as_sun(),
                "cause": e.cause,
                "order_id": e.order_id,
                "reference": e.reference,
                "event_id": e.event_id,
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .json(json!({"user_id": user.to_string(), "entries": rendered, "next_from": next})))
}
