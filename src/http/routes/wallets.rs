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
    params(("user_id" = crate::http::openapi::UserIdParam, Path)),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The user's wallets, in the order added", body = crate::http::openapi::Wallets),
        (status = 400, description = "invalid_user_id"),
        (status = 403, description = "forbidden_user"),
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
    #[schema(schema_with = crate::http::openapi::field::address)]
    wallet_address: String,
}

#[utoipa::path(
    post,
    path = "/api/wallets/users/{user_id}",
    tag = "wallets",
    params(("user_id" = crate::http::openapi::UserIdParam, Path)),
    request_body = AddWallet,
    security((), ("api_key" = [])),
    responses(
        (status = 201, description = "Added", body = crate::http::openapi::Wallet),
        (status = 400, description = "invalid_user_id, invalid_wallet_address"),
        (status = 403, description = "forbidden_user"),
        (status = 409, description = "wallet_already_exists, too_many_wallets"),
        (status = 503, description = "service_unavailable"),
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
