//! A user's receiving wallets (seed §1).

use super::{meta, Reply};
use crate::http::error::ApiError;
use crate::http::extract::{self, Client};
use crate::http::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use flashrent_projections::WalletView;
use serde::Deserialize;
use serde_json::json;

fn render(w: &WalletView) -> serde_json::Value {
    json!({"id": w.id, "wallet_address": w.wallet_address, "created_at": w.created_at})
}

#[utoipa::path(
    get,
    path = "/api/wallets/users/{user_id}",
    tag = "wallets",
    params(("user_id" = String, Path, description = "A user id: a positive decimal number")),
    security((), ("api_key" = [])),
    responses(
        (status = 200, body = crate::http::openapi::Wallets),
        (status = 400, description = "Malformed input (invalid_json, invalid_field, invalid_* codes)", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "unauthorized: missing or wrong admin token / API key", body = crate::http::openapi::ErrorBody),
        (status = 403, description = "forbidden_user: a user's API key used for another user", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn list(client: Client, state: web::Data<AppState>, path: web::Path<String>) -> Reply {
    let user = extract::user_id(&path)?;
    client.acts_for(user)?;
    let wallets = state.models.wallets(user)?;
    Ok(HttpResponse::Ok().json(json!({"wallets": wallets.iter().map(render).collect::<Vec<_>>()})))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct AddWallet {
    wallet_address: String,
}

#[utoipa::path(
    post,
    path = "/api/wallets/users/{user_id}",
    tag = "wallets",
    params(("user_id" = String, Path, description = "A user id: a positive decimal number")),
    request_body = AddWallet,
    security((), ("api_key" = [])),
    responses(
        (status = 201, body = crate::http::openapi::Wallet),
        (status = 400, description = "Malformed input (invalid_json, invalid_field, invalid_* codes)", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "unauthorized: missing or wrong admin token / API key", body = crate::http::openapi::ErrorBody),
        (status = 403, description = "forbidden_user: a user's API key used for another user", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "wallet_already_exists / too_many_wallets", body = crate::http::openapi::ErrorBody),
        (status = 413, description = "payload_too_large: body over 16 KiB", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "service_unavailable: the event log cannot take writes (Retry-After)", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn add(
    client: Client,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Reply {
    let user = extract::user_id(&path)?;
    client.acts_for(user)?;
    let b: AddWallet = extract::json_body(&body)?;
    let address = extract::address("wallet_address", &b.wallet_address)?;
    let done = state.engine.add_wallet(meta(&req), user, address).await?;
    crate::consistency::projected(&state.models, &done).await;
    let wallet = state
        .models
        .wallets(user)?
        .into_iter()
        .find(|w| w.wallet_address == address)
        .ok_or_else(|| ApiError::internal("added wallet missing from the read model"))?;
    Ok(HttpResponse::Created().json(render(&wallet)))
}
