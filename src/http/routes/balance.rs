//! Balances and their ledger (seed §2.1).

use super::Reply;
use crate::http::error::trx_json;
use crate::http::extract::{self, Client, QueryParams};
use crate::http::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use flashrent_events::Sun;
use serde_json::json;

#[utoipa::path(
    get,
    path = "/api/users/{user_id}/balance",
    tag = "balances",
    params(("user_id" = crate::http::openapi::UserIdParam, Path)),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The balance (zero for a user never credited)", body = crate::http::openapi::Balance),
        (status = 400, description = "invalid_user_id"),
        (status = 403, description = "forbidden_user"),
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

#[utoipa::path(
    get,
    path = "/api/users/{user_id}/ledger",
    tag = "balances",
    params(
        ("user_id" = crate::http::openapi::UserIdParam, Path),
        ("from" = Option<crate::http::openapi::SeqParam>, Query, description = "The first entry's seq (0 and 1 both mean the first); default 1"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 500, description = "Entries per page, default 50"),
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Oldest first", body = crate::http::openapi::Ledger),
        (status = 400, description = "invalid_user_id, invalid_field"),
        (status = 403, description = "forbidden_user"),
    ),
)]
pub async fn ledger(
    client: Client,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Reply {
    let user = extract::user_id(&path)?;
    client.acts_for(user)?;
    let q = QueryParams::parse(&req)?;
    let from = q.integer("from", 0..=u64::MAX)?.unwrap_or(1).max(1);
    let limit = q.integer("limit", 1..=500)?.unwrap_or(50) as usize;
    let entries = state.models.ledger(user, from, limit)?;
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
